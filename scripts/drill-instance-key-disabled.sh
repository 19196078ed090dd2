#!/usr/bin/env bash
# Drill: the KMS key of an instance's encrypted root volume is disabled.
#
#   scripts/drill-instance-key-disabled.sh
#
# What AWS does, and what this checks atrest does the same:
#   1. LabInstance boots a real guest from a root volume encrypted with alias/DrillKey.
#   2. The key is disabled while the instance runs: it keeps running (its data key is
#      already in memory), and its root stays readable.
#   3. Stop, then start: pending -> stopped, StateReason Client.InternalError, and the
#      encrypted image on disk is byte-for-byte unchanged.
#   4. The key is enabled again: the instance starts and the guest boots.
# Runs on a fresh state directory (or $ATREST_HOME if set), starts kmsd and the volume
# service itself, and cleans up everything it started on exit (also on Ctrl-C).
# Prints what it does and what it observes; exits non-zero naming the step that differs.
# Needs root (FUSE, loop devices), qemu and the packages of scripts/make-guest.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

step=""
say() { printf '\n== %s\n' "$*"; step="$*"; }
observe() { printf '   observed: %s\n' "$*"; }
fail() { printf '\nDRILL FAILED at "%s": %s\n' "$step" "$*" >&2; exit 1; }
expect_eq() { # expect_eq WHAT GOT WANT
  observe "$1 = $2"
  [ "$2" = "$3" ] || fail "$1 is '$2', AWS would show '$3'"
}
# jget JSON PYTHON-EXPRESSION-ON-d: one value out of a JSON document.
jget() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }

cargo build -q --workspace --bins
bin="$PWD/target/debug"
guest="${ATREST_GUEST_DIR:-$PWD/target/tmp/guest}"
scripts/make-guest.sh "$guest" >/dev/null

home="${ATREST_HOME:-}"
own_home=0
if [ -z "$home" ]; then
  home="$(mktemp -d /tmp/atrest-drill.XXXXXX)"
  own_home=1
fi
export ATREST_HOME="$home"
atrest() { "$bin/atrest" "$@"; }
instance=""
cleanup() {
  set +e
  [ -n "$instance" ] && atrest ec2 stop-instances --instance-ids "$instance" >/dev/null 2>&1 &&
    atrest ec2 wait instance-stopped --instance-ids "$instance" >/dev/null 2>&1
  [ -f "$home/run/mount.pid" ] && kill "$(cat "$home/run/mount.pid")" 2>/dev/null
  for _ in $(seq 50); do [ -e "$home/ec2.sock" ] || break; sleep 0.2; done
  [ -f "$home/run/kmsd.pid" ] && kill "$(cat "$home/run/kmsd.pid")" 2>/dev/null
  [ "$own_home" = 1 ] && { umount -l "$home/mnt" 2>/dev/null; rm -rf "$home"; }
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "start kmsd and the volume service on $home"
"$bin/kmsd" --home "$home" --daemonize >/dev/null
atrest mount >/dev/null
observe "ec2.sock and the FUSE mount at $home/mnt are up"

say "create the customer managed key alias/DrillKey"
key=$(jget "$(atrest kms create-key --description 'drill key')" 'd["KeyMetadata"]["Arn"]')
atrest kms create-alias --alias-name alias/DrillKey --target-key-id "$key"
observe "$key"

say "launch LabInstance on an unencrypted root, then swap in an encrypted copy"
tmp="$home/drill-tmp"
mkdir -p "$tmp"
scripts/make-guest.sh --marker "drill marker" --root-image "$tmp/root.img" >/dev/null
out=$(atrest ec2 run-instances --image-id "$tmp/root.img" --boot-image "$guest" \
  --placement AvailabilityZone=us-east-1a \
  --tag-specifications 'ResourceType=instance,Tags=[{Key=Name,Value=LabInstance}]')
instance=$(jget "$out" 'd["Instances"][0]["InstanceId"]')
old_root=$(jget "$out" 'd["Instances"][0]["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]')
atrest ec2 wait instance-running --instance-ids "$instance"
atrest ec2 stop-instances --instance-ids "$instance" >/dev/null
atrest ec2 wait instance-stopped --instance-ids "$instance"
snap=$(jget "$(atrest ec2 create-snapshot --volume-id "$old_root")" 'd["SnapshotId"]')
atrest ec2 wait snapshot-completed --snapshot-ids "$snap"
root=$(jget "$(atrest ec2 create-volume --snapshot-id "$snap" --availability-zone us-east-1a \
  --encrypted --kms-key-id alias/DrillKey)" 'd["VolumeId"]')
atrest ec2 wait volume-available --volume-ids "$root"
atrest ec2 detach-volume --volume-id "$old_root" >/dev/null
atrest ec2 attach-volume --volume-id "$root" --instance-id "$instance" --device /dev/xvda >/dev/null
atrest ec2 start-instances --instance-ids "$instance" >/dev/null
atrest ec2 wait instance-running --instance-ids "$instance"
line=$(atrest ec2 get-console-output --instance-id "$instance" | python3 -c \
  'import json,sys; print([l for l in json.load(sys.stdin)["Output"].splitlines() if "booted from volume" in l][-1])')
observe "$instance runs from $root: $line"
case "$line" in *"$root marker=drill marker"*) ;; *) fail "the guest did not boot from $root";; esac

say "disable the key while the instance runs"
atrest kms disable-key --key-id alias/DrillKey
sleep 1
expect_eq "instance state" "$(jget "$(atrest ec2 describe-instances --instance-ids "$instance")" \
  'd["Reservations"][0]["Instances"][0]["State"]["Name"]')" running
head -c 4096 "$home/mnt/$instance/xvda" >/dev/null || fail "the running instance's root is unreadable"
observe "the served root still reads (the data key is in memory until the instance stops)"

say "stop, then start with the key disabled"
atrest ec2 stop-instances --instance-ids "$instance" >/dev/null
atrest ec2 wait instance-stopped --instance-ids "$instance"
before=$(sha256sum "$home/volumes/$root.img" | cut -d' ' -f1)
start=$(atrest ec2 start-instances --instance-ids "$instance")
expect_eq "start-instances CurrentState" "$(jget "$start" 'd["StartingInstances"][0]["CurrentState"]["Name"]')" pending
for _ in $(seq 100); do
  desc=$(atrest ec2 describe-instances --instance-ids "$instance")
  state=$(jget "$desc" 'd["Reservations"][0]["Instances"][0]["State"]["Name"]')
  [ "$state" = pending ] || break
  sleep 0.2
done
expect_eq "instance state" "$state" stopped
expect_eq "StateReason.Code" "$(jget "$desc" 'd["Reservations"][0]["Instances"][0]["StateReason"]["Code"]')" Client.InternalError
expect_eq "StateReason.Message" "$(jget "$desc" 'd["Reservations"][0]["Instances"][0]["StateReason"]["Message"]')" \
  "Client.InternalError: Client error on launch"
expect_eq "sha256 of the encrypted image" "$(sha256sum "$home/volumes/$root.img" | cut -d' ' -f1)" "$before"
[ ! -e "$home/mnt/$instance/xvda" ] || fail "a served file appeared"
observe "no served file, nothing on disk changed"

say "enable the key and start again"
atrest kms enable-key --key-id alias/DrillKey
atrest ec2 start-instances --instance-ids "$instance" >/dev/null
atrest ec2 wait instance-running --instance-ids "$instance" || fail "the instance did not start"
observe "$(atrest ec2 get-console-output --instance-id "$instance" | python3 -c \
  'import json,sys; print([l for l in json.load(sys.stdin)["Output"].splitlines() if "booted from volume" in l][-1])')"

printf '\nDRILL PASSED: atrest behaved as AWS does when an encrypted root'"'"'s key is disabled.\n'
