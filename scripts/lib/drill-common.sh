# Shared helpers for scripts/drill-*.sh (source it; it is not a program).
#
# A drill prints what it does (`step`), what it saw (`saw`), and stops with a non-zero
# exit naming the surprise (`fail`) when an observation differs from what AWS (or the
# issue) says. With --fresh it starts its own daemons on a temporary HOME and removes
# everything it started on exit, also on Ctrl-C; without it, it uses the daemons that
# `scripts/demo.sh --keep` left running for $ATREST_HOME.
#
# With --aws (drills that say they take it), the calls a drill makes through `call`
# go to the AWS endpoint through the stock `aws` CLI of the project venv
# (scripts/lib/venv.sh), signed with the keys `atrest [--as ARN] env` prints, instead of
# through atrest's own CLI: the troubleshooting articles' own commands.
#
# Binaries come from $ATREST_BIN_DIR if set, else from `cargo build --release`.

set -euo pipefail

DRILL_NAME=$(basename "$0" .sh)
DRILL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DRILL_T0=$(date +%s.%N)
FRESH=0
AWS_MODE=0
DRILL_KMSD_ARGS=()
# What to undo on exit, newest first: shell snippets.
DRILL_CLEANUP=()

# ---- narration -----------------------------------------------------------------------

if [[ -t 1 ]]; then B=$'\e[1m' G=$'\e[32m' R=$'\e[31m' D=$'\e[2m' N=$'\e[0m'; else B= G= R= D= N=; fi
step() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
say()  { printf '    %s\n' "$*"; }
saw()  { printf '    %sobserved:%s %s\n' "$G" "$N" "$*"; }
fail() {
    printf '\n%sSURPRISE (%s): %s%s\n' "$R" "$DRILL_NAME" "$*" "$N" >&2
    exit 1
}
elapsed() { awk -v a="$DRILL_T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
passed() { printf '\n%s%s passed in %s s%s\n' "$G$B" "$DRILL_NAME" "$(elapsed)" "$N"; }

# run CMD...: shows the command, runs it, keeps its stdout in $OUT, stderr in $ERR, exit
# status in $RC (never aborts the drill by itself).
run() {
    printf '    %s$ %s%s\n' "$D" "$*" "$N"
    local o e
    o=$(mktemp) e=$(mktemp)
    set +e
    "$@" >"$o" 2>"$e"
    RC=$?
    set -e
    OUT=$(cat "$o") ERR=$(cat "$e")
    rm -f "$o" "$e"
    return 0
}
# ok CMD...: run, and it must succeed.
ok() {
    run "$@"
    [[ $RC -eq 0 ]] || fail "'$*' failed (exit $RC): $ERR"
}
# refused CODE CMD...: run, and it must fail with the AWS error CODE in its message.
refused() {
    local code=$1
    shift
    run "$@"
    [[ $RC -ne 0 ]] || fail "'$*' succeeded; expected it to be refused with $code"
    grep -q "($code)" <<<"$ERR$OUT" || fail "'$*' was refused, but not with $code: $ERR$OUT"
    saw "refused: $(first_line "$ERR$OUT")"
}
# expect_eq WHAT ACTUAL EXPECTED
expect_eq() {
    [[ "$2" == "$3" ]] || fail "$1 is '$2', expected '$3'"
    saw "$1 = $2"
}
# The first non-empty line of $1.
first_line() { grep -m1 . <<<"$1" || true; }
# json FILTER: reads $OUT as JSON, prints FILTER (a python expression on `d`).
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" <<<"$OUT"; }

# wait_until SECONDS WHAT CMD...: polls CMD every 0.1 s until it succeeds.
wait_until() {
    local limit=$1 what=$2
    shift 2
    local deadline=$(($(date +%s) + limit))
    until "$@" >/dev/null 2>&1; do
        (($(date +%s) < deadline)) || fail "timed out after ${limit}s waiting for $what"
        sleep 0.1
    done
}

# ---- binaries and home ---------------------------------------------------------------

drill_bins() {
    if [[ -z "${ATREST_BIN_DIR:-}" ]]; then
        say "building release binaries (set ATREST_BIN_DIR to skip)"
        (cd "$DRILL_ROOT" && cargo build --release --workspace --bins --quiet)
        ATREST_BIN_DIR=$DRILL_ROOT/target/release
    fi
    for b in atrest kmsd; do
        [[ -x "$ATREST_BIN_DIR/$b" ]] || fail "no $b in $ATREST_BIN_DIR"
    done
    ATREST=$ATREST_BIN_DIR/atrest
    KMSD=$ATREST_BIN_DIR/kmsd
}

# The atrest CLI on this drill's home.
at() { "$ATREST" --home "$H" "$@"; }

on_exit() {
    local rc=$? i
    trap - EXIT INT TERM
    set +e
    for ((i = ${#DRILL_CLEANUP[@]} - 1; i >= 0; i--)); do
        eval "${DRILL_CLEANUP[i]}" >/dev/null 2>&1
    done
    exit "$rc"
}
cleanup_push() { DRILL_CLEANUP+=("$1"); }

# drill_init "$@": parses --fresh, finds binaries, sets H (the home), installs the trap.
drill_init() {
    for a in "$@"; do
        case $a in
        --fresh) FRESH=1 ;;
        --aws) AWS_MODE=1 ;;
        -h | --help)
            sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
            exit 0
            ;;
        *) fail "unknown argument $a (only --fresh and --aws)" ;;
        esac
    done
    [[ $(id -u) -eq 0 ]] || fail "drills need root (FUSE, loop devices)"
    trap on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    drill_bins
    if ((AWS_MODE)); then
        # shellcheck source=venv.sh
        . "$DRILL_ROOT/scripts/lib/venv.sh"
        AWS=$ATREST_VENV/bin/aws
        [[ -x "$AWS" ]] || fail "no aws CLI at $AWS: run scripts/install-deps.sh (it makes the project venv)"
    fi
    if ((FRESH)); then
        H=$(mktemp -d /tmp/atrest-drill.XXXXXX)
        cleanup_push "rm -rf '$H'"
        say "fresh home $H"
    else
        H=${ATREST_HOME:-}
        [[ -n "$H" ]] || fail "without --fresh, set ATREST_HOME to the home 'scripts/demo.sh --keep' printed"
        [[ -S "$H/kmsd.sock" ]] || fail "no kmsd at $H/kmsd.sock (run scripts/demo.sh --keep, or use --fresh)"
        say "using the running daemons of $H"
    fi
}

# ---- daemons -------------------------------------------------------------------------

pid_of() { cat "$H/run/$1.pid" 2>/dev/null; }
alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

# Stops a daemon by its pid file (the one this drill started): TERM, then KILL.
stop_daemon() {
    local pid
    pid=$(pid_of "$1") || return 0
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do alive "$pid" || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
}

start_kmsd() {
    "$KMSD" --home "$H" --daemonize "${DRILL_KMSD_ARGS[@]}" >/dev/null ||
        fail "kmsd did not start (see $H/log/kmsd.log)"
    wait_until 10 "kmsd.sock" test -S "$H/kmsd.sock"
}

# The volume service (FUSE mount, ec2.sock); extra arguments go to `atrest mount`.
start_mount() {
    at mount "$@" >/dev/null || fail "atrest mount did not start (see $H/log/mount.log)"
}

# Every loop device backed by a file under $H/mnt (ours), released.
release_loops() {
    losetup -nO NAME,BACK-FILE 2>/dev/null | awk -v m="$H/mnt/" 'index($2, m) == 1 {print $1}' |
        while read -r d; do
            umount -l "$d" 2>/dev/null
            losetup -d "$d" 2>/dev/null
        done
}

# --fresh: kmsd, and with `mount` the volume service, with `s3` the object endpoint,
# on the temporary home, all stopped and unmounted on exit (--aws: the AWS endpoint
# too, on a free port). Without --fresh: checks they run.
drill_daemons() {
    local want_mount=0 want_s3=$AWS_MODE w
    for w in "$@"; do
        case $w in mount) want_mount=1 ;; s3) want_s3=1 ;; esac
    done
    if ((FRESH)); then
        cleanup_push "stop_daemon kmsd"
        start_kmsd
        saw "kmsd pid $(pid_of kmsd)"
        if ((want_mount)); then
            cleanup_push "stop_daemon mount; fusermount3 -uz '$H/mnt'; umount -l '$H/mnt'"
            cleanup_push "release_loops"
            start_mount
            saw "atrest mount pid $(pid_of mount) serving $H/mnt"
        fi
        if ((want_s3)); then
            "$ATREST" --home "$H" s3 serve --listen 127.0.0.1:0 >"$H/log/s3.log" 2>&1 &
            cleanup_push "kill $!"
            wait_until 10 "the object endpoint ($H/s3.addr)" test -s "$H/s3.addr"
            saw "object endpoint pid $! at $(cat "$H/s3.addr")"
        fi
    else
        ((!want_mount)) || [[ -S "$H/ec2.sock" ]] || fail "no volume service at $H/ec2.sock (atrest mount)"
        ((!want_s3)) || [[ -s "$H/s3.addr" ]] || fail "no object endpoint at $H/s3.addr (atrest s3 serve)"
    fi
}

# The key policy JSON on stdin with account $1 added as the console's "Other AWS accounts"
# adds it (use of the key, and grants for AWS resources), on stdout.
share_key_policy() {
    python3 -c '
import json, sys
other = sys.argv[1]
p = json.load(sys.stdin)
p["Statement"].append({
  "Sid": "Allow use of the key by account " + other,
  "Effect": "Allow",
  "Principal": {"AWS": "arn:aws:iam::%s:root" % other},
  "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
  "Resource": "*"})
p["Statement"].append({
  "Sid": "Allow attachment of persistent resources by account " + other,
  "Effect": "Allow",
  "Principal": {"AWS": "arn:aws:iam::%s:root" % other},
  "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
  "Resource": "*",
  "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}})
json.dump(p, sys.stdout, indent=2)' "$1"
}

# ---- the stock aws CLI (--aws) ---------------------------------------------------------

# aws_as ARN|"" ARGS...: the stock aws CLI as ARN (empty: this uid's own principal), with
# the endpoint and keys `atrest [--as ARN] env` prints and nothing of this machine's
# AWS configuration.
aws_as() {
    local who=$1 envfile
    shift
    envfile="$H/drill-env.$(printf '%s' "$who" | sha256sum | cut -c1-16)"
    if [[ ! -s "$envfile" ]]; then
        if [[ -n "$who" ]]; then at --as "$who" env >"$envfile"; else at env >"$envfile"; fi ||
            fail "atrest env${who:+ --as $who} failed"
    fi
    (
        # shellcheck disable=SC1090
        . "$envfile"
        AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_PAGER= "$AWS" "$@"
    )
}

# call [--as ARN] SERVICE ARGS...: the call through the stock aws CLI with --aws, else
# through atrest's own CLI: the same arguments, the same JSON and error lines.
call() {
    local who=""
    if [[ "${1:-}" == --as ]]; then
        who=$2
        shift 2
    fi
    if ((AWS_MODE)); then
        aws_as "$who" "$@"
    elif [[ -n "$who" ]]; then
        at --as "$who" "$@"
    else
        at "$@"
    fi
}

# put_user_policy ADMIN_ARN ACCOUNT USER NAME FILE: attaches the inline policy FILE to
# USER of ACCOUNT. With --aws it is the stock CLI's `aws iam put-user-policy` as that
# account's administrator ADMIN_ARN (kmsd writes it and it takes effect on the next
# request); without, atrest has no IAM verbs, so the file is dropped into the home's
# IAM directory and kmsd reloads it.
put_user_policy() {
    local admin=$1 account=$2 user=$3 name=$4 file=$5
    if ((AWS_MODE)); then
        ok call --as "$admin" iam put-user-policy --user-name "$user" --policy-name "$name" \
            --policy-document "file://$file"
        ok call --as "$admin" iam get-user-policy --user-name "$user" --policy-name "$name" \
            --query PolicyName --output text
        expect_eq "get-user-policy $user" "$OUT" "$name"
    else
        mkdir -p "$H/iam/$account/users/$user"
        cp "$file" "$H/iam/$account/users/$user/$name.json"
        ok at kms reload-config
    fi
}

# delete_user_policy ADMIN_ARN ACCOUNT USER NAME: put_user_policy undone, the same way.
delete_user_policy() {
    local admin=$1 account=$2 user=$3 name=$4
    if ((AWS_MODE)); then
        ok call --as "$admin" iam delete-user-policy --user-name "$user" --policy-name "$name"
    else
        rm -f "$H/iam/$account/users/$user/$name.json"
        ok at kms reload-config
    fi
}
