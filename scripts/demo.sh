#!/usr/bin/env bash
# The README's first command: installs what is missing, builds atrest, and walks the
# AWS "encryption at rest" lab end to end on this machine, for real.
#
#   scripts/demo.sh               run the lab on a fresh state directory, then clean up
#   scripts/demo.sh --keep        leave everything running and print how to explore it
#   scripts/demo.sh --no-install  skip apt (the test suite calls it this way)
#
# Every step checks what it observed against what AWS would show and exits non-zero,
# naming the step, on any difference.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

keep=0
install=1
for arg in "$@"; do
  case "$arg" in
  --keep) keep=1 ;;
  --no-install) install=0 ;;
  -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
  *) echo "demo: unknown option $arg" >&2; exit 2 ;;
  esac
done

# ---------------------------------------------------------------- narration helpers
bold=$(printf '\033[1m'); dim=$(printf '\033[2m'); red=$(printf '\033[31m'); green=$(printf '\033[32m'); off=$(printf '\033[0m')
if [ ! -t 1 ]; then bold=""; dim=""; red=""; green=""; off=""; fi
step_name="set-up"
task() { step_name="$1"; printf '\n%s==== %s%s\n' "$bold" "$1" "$off"; }
# say TEXT: narration, printed as a shell comment (every line the demo prints is labelled:
# `====` a task, `$` a command, `|` its output, `ok:` a check, `#` narration).
say() { printf '  %s# %s%s\n' "$dim" "$*" "$off"; }
ok() { printf '%s  ok: %s%s\n' "$green" "$*" "$off"; }
fail() {
  printf '%sdemo: FAILED at %s: %s%s\n' "$red" "$step_name" "$*" "$off" >&2
  exit 1
}
# quoted CMD...: the command as it can be pasted back into a shell (a word with
# anything but letters, digits and ./:=@%+,_- in it is single-quoted).
quoted() {
  local w out=()
  for w in "$@"; do
    if [[ $w =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      out+=("$w")
    else
      out+=("'${w//\'/\'\\\'\'}'")
    fi
  done
  printf '%s' "${out[*]}"
}
# cmdline CMD...: the command, labelled and quoted.
cmdline() { printf '%s  $ %s%s\n' "$dim" "$(quoted "$@")" "$off"; }
# output TEXT: a command's output, each line labelled as output.
output() { [ -z "$1" ] || printf '%s\n' "$1" | sed 's/^/  | /'; }
# show CMD...: print the command as a user would type it, run it, show its output.
show() {
  cmdline "$@"
  local __out __rc=0
  __out=$("$@" 2>&1) || __rc=$?
  output "$__out"
  return "$__rc"
}
# capture VAR CMD...: run, keep stdout in VAR, echo it; fails the step if CMD fails.
capture() {
  local __var=$1; shift
  cmdline "$@"
  local __out
  if ! __out=$("$@" 2>&1); then
    output "$__out"
    fail "command failed: $(quoted "$@")"
  fi
  output "$__out"
  printf -v "$__var" '%s' "$__out"
}
# capture_err VAR CMD...: the command must FAIL; its stderr+stdout go to VAR.
capture_err() {
  local __var=$1; shift
  cmdline "$@"
  local __out
  if __out=$("$@" 2>&1); then
    output "$__out"
    fail "expected this to be refused: $(quoted "$@")"
  fi
  output "$__out"
  printf -v "$__var" '%s' "$__out"
}
# http_get VAR URL FILE: an unsigned GET with curl, shown as the command that can be pasted;
# its output is the HTTP status (in VAR) and, unless 200, the body (kept in FILE).
http_get() {
  local __var=$1 __code
  cmdline curl -s -o "$3" -w '%{http_code}\n' "$2"
  __code=$(curl -s -o "$3" -w '%{http_code}' "$2") || __code=000
  output "$__code"
  if [ "$__code" != 200 ]; then output "$(cat "$3")"; fi
  printf -v "$__var" '%s' "$__code"
}
contains() { # contains HAYSTACK NEEDLE WHAT
  case "$1" in *"$2"*) ok "$3" ;; *) fail "$3: expected to see '$2'" ;; esac
}
json() { # json FIELD-EXPR < JSON  (python3 expression over `d`)
  python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}

# ---------------------------------------------------------------- install and build
task "Set-up: packages, build, demo guest"
if [ "$install" = 1 ]; then
  cmdline bash scripts/install-deps.sh
  bash scripts/install-deps.sh 2>&1 | sed 's/^/  | /'
fi
if [ -z "${ATREST_BIN_DIR:-}" ]; then
  say "building release binaries (first time: several minutes on 2 cores)"
  # --workspace: the root package alone has no kmsd. cargo's lines go to a log; one
  # line is redrawn with the count (a line every 50 crates when not on a terminal), and
  # the log's end is shown if the build fails.
  build_log=$(mktemp /tmp/atrest-build.XXXXXX)
  cmdline cargo build --release --locked --workspace --bins
  if ! cargo build --release --locked --workspace --bins 2>&1 | tee "$build_log" |
    awk -v tty="$([ -t 1 ] && echo 1)" '/^ *Compiling /{n++; if (tty) printf "\r  | compiling: %d crates", n; else if (n % 50 == 0) printf "  | compiling: %d crates\n", n; fflush()}
      END{if (tty && n) printf "\n"; printf "  | compiled %d crates\n", n}'; then
    tail -n 40 "$build_log" | sed 's/^/  | /'
    rm -f "$build_log"
    fail "cargo build failed"
  fi
  rm -f "$build_log"
  ATREST_BIN_DIR="$repo/target/release"
fi
for bin in atrest kmsd; do
  [ -x "$ATREST_BIN_DIR/$bin" ] || fail "no $bin in $ATREST_BIN_DIR"
done
export PATH="$ATREST_BIN_DIR:$PATH"
guest="${ATREST_GUEST_DIR:-$repo/target/guest}"
bash scripts/make-guest.sh "$guest" >/dev/null
ok "atrest $(atrest --version | awk '{print $2}'), guest in $guest"

export ATREST_HOME
ATREST_HOME=$(mktemp -d /tmp/atrest-lab.XXXXXX)
# The lab's endpoint takes any free port (an `atrest up` of your own may hold 4566);
# ATREST_LISTEN=ADDR chooses one. `atrest env` and `atrest status` name the one bound.
export ATREST_LISTEN="${ATREST_LISTEN:-127.0.0.1:0}"
cleanup() {
  local rc=$?
  if [ "$keep" = 1 ] && [ "$rc" = 0 ]; then return; fi
  atrest down >/dev/null 2>&1 || true
  rm -rf "$ATREST_HOME"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

show atrest up
capture status atrest status

# The lab's principal: the role that is both key administrator and key user.
lab_role="arn:aws:iam::111122223333:role/voclabs"
as_lab=(--as "$lab_role")
zone=us-east-1a
bucket="imagebucket-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"

task "Set-up: the lab's starting architecture (an empty bucket, LabInstance on an unencrypted root)"
capture out atrest "${as_lab[@]}" s3api create-bucket --bucket "$bucket"
capture out atrest "${as_lab[@]}" ec2 run-instances --image-id "$guest" \
  --placement "AvailabilityZone=$zone" \
  --tag-specifications 'ResourceType=instance,Tags=[{Key=Name,Value=LabInstance}]'
instance=$(printf '%s' "$out" | json 'd["Instances"][0]["InstanceId"]')
wait_state() { # wait_state INSTANCE STATE SECONDS
  local deadline=$(( $(date +%s) + $3 )) s=""
  while [ "$(date +%s)" -lt "$deadline" ]; do
    s=$(atrest ec2 describe-instances --instance-ids "$1" | json 'd["Reservations"][0]["Instances"][0]["State"]["Name"]')
    [ "$s" = "$2" ] && return 0
    sleep 0.5
  done
  fail "instance $1 is '$s', expected '$2' within $3 s"
}
wait_state "$instance" running 120
root_vol=$(atrest ec2 describe-instances --instance-ids "$instance" |
  json '[m["Ebs"]["VolumeId"] for m in d["Reservations"][0]["Instances"][0]["BlockDeviceMappings"] if m["DeviceName"]=="/dev/xvda"][0]')
capture console atrest ec2 get-console-output --instance-id "$instance" --output text
contains "$console" "atrest-guest: booted from volume $root_vol" "LabInstance booted from its unencrypted root $root_vol"

# ---------------------------------------------------------------- Task 1
task "Task 1: create the customer managed key alias/MyKMSKey"
capture out atrest "${as_lab[@]}" kms create-key --description "Lab key for encryption at rest" \
  --key-administrators "$lab_role" --key-users "$lab_role"
key_arn=$(printf '%s' "$out" | json 'd["KeyMetadata"]["Arn"]')
key_id=$(printf '%s' "$out" | json 'd["KeyMetadata"]["KeyId"]')
capture out atrest "${as_lab[@]}" kms create-alias --alias-name alias/MyKMSKey --target-key-id "$key_id"
capture out atrest "${as_lab[@]}" kms get-key-policy --key-id alias/MyKMSKey --policy-name default --output text
contains "$out" "Allow access for Key Administrators" "key policy names the key administrators"
contains "$out" "Allow use of the key" "key policy names the key users"
contains "$out" "Allow attachment of persistent resources" "key users may attach persistent resources"

# ---------------------------------------------------------------- Task 2
task "Task 2: the bucket's default encryption, and an image uploaded with SSE-KMS"
capture out atrest "${as_lab[@]}" s3api get-bucket-encryption --bucket "$bucket"
contains "$out" '"SSEAlgorithm": "AES256"' "new buckets encrypt with SSE-S3 by default"
image="$ATREST_HOME/clock.png"
python3 "$repo/scripts/lib/make-png.py" "$image"
capture out atrest "${as_lab[@]}" s3api put-object --bucket "$bucket" --key clock.png --body "$image" \
  --content-type image/png --server-side-encryption aws:kms --ssekms-key-id alias/MyKMSKey
capture out atrest "${as_lab[@]}" s3api head-object --bucket "$bucket" --key clock.png
contains "$out" '"ServerSideEncryption": "aws:kms"' "the object is encrypted with SSE-KMS"
contains "$out" "\"SSEKMSKeyId\": \"$key_arn\"" "under alias/MyKMSKey (named by its ARN)"

# ---------------------------------------------------------------- Task 3
task "Task 3: the object URL, unsigned"
endpoint=$(cat "$ATREST_HOME/s3.addr")
url="http://$endpoint/$bucket/clock.png"
http_get code "$url" "$ATREST_HOME/body"; body=$(cat "$ATREST_HOME/body")
[ "$code" = 403 ] || fail "unsigned GET gave $code, expected 403"
contains "$body" "<Code>AccessDenied</Code>" "S3 refuses: AccessDenied"
say "Turning off Block Public Access, enabling ACLs, making the object public:"
capture out atrest "${as_lab[@]}" s3api put-public-access-block --bucket "$bucket" \
  --public-access-block-configuration BlockPublicAcls=false,IgnorePublicAcls=false,BlockPublicPolicy=false,RestrictPublicBuckets=false
capture out atrest "${as_lab[@]}" s3api put-bucket-ownership-controls --bucket "$bucket" \
  --ownership-controls 'Rules=[{ObjectOwnership=BucketOwnerPreferred}]'
capture out atrest "${as_lab[@]}" s3api put-object-acl --bucket "$bucket" --key clock.png --acl public-read
http_get code "$url" "$ATREST_HOME/body"; body=$(cat "$ATREST_HOME/body")
[ "$code" = 400 ] || fail "public unsigned GET gave $code, expected 400"
contains "$body" "<Code>InvalidArgument</Code>" "S3 refuses: InvalidArgument"
contains "$body" "require AWS Signature Version 4" "SSE-KMS objects need SigV4"

# ---------------------------------------------------------------- Task 4
task "Task 4: open the object with a presigned URL"
capture presigned atrest "${as_lab[@]}" s3 presign "s3://$bucket/clock.png" --expires-in 300
http_get code "$presigned" "$ATREST_HOME/clock-download.png"
[ "$code" = 200 ] || fail "presigned GET gave $code"
cmp -s "$image" "$ATREST_HOME/clock-download.png" || fail "the downloaded image differs from the upload"
ok "the image came back byte-identical ($(stat -c %s "$image") bytes)"

# ---------------------------------------------------------------- Task 5
task "Task 5: the trail: who used the key, for what"
capture trail atrest cloudtrail lookup-events \
  --lookup-attributes AttributeKey=EventSource,AttributeValue=kms.amazonaws.com --max-results 50 \
  --query 'Events[*].[EventTime,EventName,Username]' --output table
object_arn="arn:aws:s3:::$bucket/clock.png"
events=$(atrest cloudtrail lookup-events --lookup-attributes AttributeKey=EventSource,AttributeValue=kms.amazonaws.com --max-results 50)
check_event() { # check_event NAME: a successful kms event for the object, by the lab role, with the key
  local found
  found=$(printf '%s' "$events" | python3 -c '
import json, sys
name, role, key, obj = sys.argv[1:5]
d = json.load(sys.stdin)
for e in d["Events"]:
    r = json.loads(e["CloudTrailEvent"])
    if r.get("eventName") != name or r.get("errorCode"):
        continue
    ctx = (r.get("requestParameters") or {}).get("encryptionContext") or {}
    keys = [x.get("ARN") for x in r.get("resources") or []]
    if ctx.get("aws:s3:arn") == obj and key in keys and role.split("/")[-1] in json.dumps(r["userIdentity"]):
        print(r["eventTime"], name, r["userIdentity"].get("arn"), key, obj)
        sys.exit(0)
sys.exit(1)' "$1" "$lab_role" "$key_arn" "$object_arn") || fail "no successful $1 by $lab_role with $key_arn for $object_arn"
  say "the trail's $1 event: time, principal, key, object"
  output "$found"
}
check_event GenerateDataKey
check_event Decrypt
ok "GenerateDataKey (upload) and Decrypt (download) are in the trail with the principal, key and object ARN"

# ---------------------------------------------------------------- Task 6
task "Task 6: encrypt LabInstance's root volume"
capture out atrest "${as_lab[@]}" ec2 stop-instances --instance-ids "$instance"
wait_state "$instance" stopped 60
capture out atrest "${as_lab[@]}" ec2 create-snapshot --volume-id "$root_vol" --description "LabInstance root" \
  --tag-specifications 'ResourceType=snapshot,Tags=[{Key=Name,Value=Unencrypted Root Snapshot}]'
snap=$(printf '%s' "$out" | json 'd["SnapshotId"]')
wait_snapshot() {
  local deadline=$(( $(date +%s) + 120 )) s=""
  while [ "$(date +%s)" -lt "$deadline" ]; do
    s=$(atrest ec2 describe-snapshots --snapshot-ids "$1" | json 'd["Snapshots"][0]["State"]')
    [ "$s" = completed ] && return 0
    sleep 0.5
  done
  fail "snapshot $1 is '$s', expected completed"
}
wait_snapshot "$snap"
capture out atrest "${as_lab[@]}" ec2 create-volume --snapshot-id "$snap" --availability-zone "$zone" \
  --encrypted --kms-key-id alias/MyKMSKey \
  --tag-specifications 'ResourceType=volume,Tags=[{Key=Name,Value=Encrypted Root Volume}]'
new_vol=$(printf '%s' "$out" | json 'd["VolumeId"]')
wait_volume() {
  local deadline=$(( $(date +%s) + 120 )) s=""
  while [ "$(date +%s)" -lt "$deadline" ]; do
    s=$(atrest ec2 describe-volumes --volume-ids "$1" | json 'd["Volumes"][0]["State"]')
    [ "$s" = available ] && return 0
    sleep 0.5
  done
  fail "volume $1 is '$s', expected available"
}
wait_volume "$new_vol"
capture out atrest "${as_lab[@]}" ec2 create-tags --resources "$root_vol" --tags 'Key=Name,Value=Unencrypted Root Volume'
capture out atrest "${as_lab[@]}" ec2 detach-volume --volume-id "$root_vol"
wait_detached() {
  local deadline=$(( $(date +%s) + 60 )) s=""
  while [ "$(date +%s)" -lt "$deadline" ]; do
    s=$(atrest ec2 describe-volumes --volume-ids "$1" | json 'd["Volumes"][0]["State"]')
    [ "$s" = available ] && return 0
    sleep 0.5
  done
  fail "volume $1 is '$s' after detach, expected available"
}
wait_detached "$root_vol"
capture out atrest "${as_lab[@]}" ec2 attach-volume --volume-id "$new_vol" --instance-id "$instance" --device /dev/xvda
capture out atrest ec2 describe-volumes --volume-ids "$new_vol"
[ "$(printf '%s' "$out" | json 'd["Volumes"][0]["Encrypted"]')" = True ] || fail "the new root is not encrypted"
[ "$(printf '%s' "$out" | json 'd["Volumes"][0]["KmsKeyId"]')" = "$key_arn" ] || fail "the new root is not under alias/MyKMSKey"
ok "$new_vol is LabInstance's /dev/xvda, encrypted with $key_arn"

# ---------------------------------------------------------------- Task 7
task "Task 7: disable the key: the instance cannot start, the object cannot be read"
capture out atrest "${as_lab[@]}" kms disable-key --key-id alias/MyKMSKey
capture out atrest "${as_lab[@]}" ec2 start-instances --instance-ids "$instance"
contains "$out" '"Name": "pending"' "start-instances answers pending"
wait_state "$instance" stopped 60
capture out atrest ec2 describe-instances --instance-ids "$instance"
reason=$(printf '%s' "$out" | json 'd["Reservations"][0]["Instances"][0]["StateReason"]["Code"]')
[ "$reason" = Client.InternalError ] || fail "StateReason is '$reason', expected Client.InternalError"
ok "LabInstance went pending -> stopped: Client.InternalError"
capture presigned atrest "${as_lab[@]}" s3 presign "s3://$bucket/clock.png" --expires-in 300
http_get code "$presigned" "$ATREST_HOME/body"; body=$(cat "$ATREST_HOME/body")
[ "$code" = 400 ] || fail "read with a disabled key gave $code, expected 400"
contains "$body" "<Code>KMS.DisabledException</Code>" "the object read fails: KMS.DisabledException"
capture out atrest cloudtrail lookup-events --max-results 20 \
  --query 'Events[*].[EventTime,EventName,Username]' --output table
printf '%s' "$(atrest cloudtrail lookup-events --max-results 50)" | python3 -c '
import json, sys
inst = sys.argv[1]
evs = [json.loads(e["CloudTrailEvent"]) for e in json.load(sys.stdin)["Events"]][::-1]  # oldest first
names = [(r["eventName"], r.get("errorCode")) for r in evs]
want = ["DisableKey", "StartInstances", "CreateGrant"]
i = 0
for n, err in names:
    if i < len(want) and n == want[i] and (n != "CreateGrant" or err):
        i += 1
if i < len(want):
    print("trail order:", names, file=sys.stderr); sys.exit(1)
' "$instance" || fail "the trail does not show DisableKey, StartInstances and a failed CreateGrant in that order"
ok "trail: DisableKey, StartInstances, then CreateGrant refused"

task "Task 7 (cont.): re-enable the key: the instance boots from the encrypted root"
capture out atrest "${as_lab[@]}" kms enable-key --key-id alias/MyKMSKey
capture out atrest "${as_lab[@]}" ec2 start-instances --instance-ids "$instance"
wait_state "$instance" running 120
capture console atrest ec2 get-console-output --instance-id "$instance" --output text
contains "$console" "atrest-guest: booted from volume $new_vol" "the guest booted from the encrypted root $new_vol"
http_get code "$presigned" "$ATREST_HOME/body"
[ "$code" = 200 ] || fail "the object still does not open after re-enabling the key ($code)"
cmp -s "$image" "$ATREST_HOME/body" || fail "the object differs after re-enabling the key"
ok "the object opens again"

task "Done"
say "Every task behaved as AWS does."
if [ "$keep" = 1 ]; then
  cat <<EOF

Everything is still running. Explore it with:
  export ATREST_HOME=$ATREST_HOME PATH=$ATREST_BIN_DIR:\$PATH
  atrest status
  atrest ec2 describe-instances
  ls -l $ATREST_HOME/mnt/$instance/          # the plaintext view of the encrypted root
  curl -s '$url'                              # the object URL (400: SigV4 required)
  atrest cloudtrail lookup-events --query 'Events[*].[EventTime,EventName,Username]' --output table
Stop everything with: atrest down
EOF
fi
