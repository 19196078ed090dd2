#!/usr/bin/env bash
# Drill: the KMS key is disabled while an instance runs on a volume it encrypts.
#
# As in AWS: the running instance keeps working (its data key is already in memory),
# and atrest says so; stop, then start fails (pending -> stopped, Client.InternalError);
# re-enable the key and the instance starts again with its data intact.
# The --strict-revocation variant (`atrest mount --strict-revocation`): right after
# the key is disabled, the data key is dropped and I/O fails with EKEYREVOKED.
#
# The instance has no boot profile (no guest to boot): its root is served and a shell
# reads and writes it, which is what the key decides.
#
# Usage: scripts/drill-key-disabled-while-running.sh [--fresh]
source "$(dirname "$0")/lib/drill-common.sh"
drill_init "$@"
drill_daemons mount
W=$(mktemp -d)
cleanup_push "rm -rf '$W'"

instance_json() { at ec2 describe-instances --instance-ids "$1"; }
# I/O that bypasses the page cache, so it really reaches the volume service.
write_block() { dd if="$2" of="$1" bs=4096 count=1 seek="$3" oflag=direct conv=notrunc,fsync status=none; }
read_block() { dd if="$1" of="$2" bs=4096 count=1 skip="$3" iflag=direct status=none; }
head -c 4096 /dev/urandom >"$W/a"
head -c 4096 /dev/urandom >"$W/b"

step "An instance running on an encrypted root (no boot profile)"
ok at kms create-key --description "drill-key-disabled-while-running" --query KeyMetadata.KeyId --output text
KEY=$OUT
ok at ec2 create-volume --availability-zone us-east-1a --size 1 --encrypted --kms-key-id "$KEY"
VOL=$(grep -o 'vol-[0-9a-f]*' <<<"$OUT" | head -n1)
ok at ec2 run-instances --root-volume-id "$VOL" --placement AvailabilityZone=us-east-1a
INST=$(json 'd["Instances"][0]["InstanceId"]')
[[ -n "$INST" ]] || fail "run-instances printed no instance ID: $OUT"
cleanup_push "at ec2 terminate-instances --instance-ids $INST"
wait_until 20 "$INST to be running" bash -c "[[ \$($ATREST --home $H ec2 describe-instances --instance-ids $INST | grep -c '\"running\"') -gt 0 ]]"
ROOT=$H/mnt/$INST/xvda
[[ -e "$ROOT" ]] || fail "$INST is running but its root is not served at $ROOT"
ok write_block "$ROOT" "$W/a" 10
saw "$INST running, root $VOL served at $ROOT; wrote block 10"

step "Disable the key while it runs"
ok at kms disable-key --key-id "$KEY"
ok at kms describe-key --key-id "$KEY" --query KeyMetadata.KeyState --output text
expect_eq "KeyState" "$OUT" Disabled
sleep 1

step "It keeps working (as in AWS), and atrest says so"
ok read_block "$ROOT" "$W/a.back" 10
cmp -s "$W/a" "$W/a.back" || fail "block 10 reads back different while the key is disabled"
ok write_block "$ROOT" "$W/b" 11
saw "read and write through $ROOT still succeed"
wait_until 5 "the volume service to log the disabled key" grep -q "keeps working until it is detached" "$H/log/mount.log"
saw "mount.log: $(grep "keeps working until" "$H/log/mount.log" | tail -n1 | sed 's/\x1b\[[0-9;]*m//g; s/^.* WARN [^ ]* //')"
# What the user sees: `atrest status` lists the served volume with its key state, and
# says on stderr that it keeps working until it is detached.
key_state_shown() { # key_state_shown VOL STATE: atrest status lists VOL with that KeyState
    # (status exits 3 when not all three daemons run: only its output matters here)
    { "$ATREST" --home "$H" status 2>/dev/null || true; } | python3 -c "import json,sys; sys.exit(not any(v['VolumeId'] == sys.argv[1] and v['KeyState'] == sys.argv[2] for v in json.load(sys.stdin)['VolumeService']['Served']))" "$1" "$2"
}
wait_until 5 "atrest status to show the disabled key" key_state_shown "$VOL" Disabled
run at status
expect_eq "atrest status: KeyState of $VOL" "$(json '[v["KeyState"] for v in d["VolumeService"]["Served"] if v["VolumeId"] == "'"$VOL"'"][0]')" Disabled
NOTICE=$(json '[v["Notice"] for v in d["VolumeService"]["Served"] if v["VolumeId"] == "'"$VOL"'"][0]')
grep -q "keeps working until it is detached" <<<"$NOTICE" || fail "atrest status does not say $VOL keeps working: $NOTICE"
grep -q "$VOL: the KMS key is Disabled" <<<"$ERR" || fail "atrest status says nothing on stderr: $ERR"
saw "$(first_line "$ERR")"
ok instance_json "$INST"
expect_eq "state" "$(json 'd["Reservations"][0]["Instances"][0]["State"]["Name"]')" running

step "Stop, then start: pending -> stopped with Client.InternalError"
ok at ec2 stop-instances --instance-ids "$INST"
wait_until 20 "$INST to stop" bash -c "$ATREST --home $H ec2 describe-instances --instance-ids $INST | grep -q '\"stopped\"'"
[[ ! -e "$ROOT" ]] || fail "$ROOT is still served after the instance stopped"
ok at ec2 start-instances --instance-ids "$INST"
grep -q '"pending"' <<<"$OUT" || fail "start-instances did not answer pending: $OUT"
saw "start-instances answered pending"
wait_until 20 "$INST to settle" bash -c "$ATREST --home $H ec2 describe-instances --instance-ids $INST | grep -q '\"stopped\"'"
ok instance_json "$INST"
expect_eq "state" "$(json 'd["Reservations"][0]["Instances"][0]["State"]["Name"]')" stopped
expect_eq "StateReason.Code" "$(json 'd["Reservations"][0]["Instances"][0]["StateReason"]["Code"]')" Client.InternalError
expect_eq "StateReason.Message" "$(json 'd["Reservations"][0]["Instances"][0]["StateReason"]["Message"]')" "Client.InternalError: Client error on launch"

step "Re-enable the key: it starts, and the data is intact"
ok at kms enable-key --key-id "$KEY"
ok at ec2 start-instances --instance-ids "$INST"
wait_until 20 "$INST to be running" bash -c "$ATREST --home $H ec2 describe-instances --instance-ids $INST | grep -q '\"running\"'"
ok read_block "$ROOT" "$W/a.back" 10
ok read_block "$ROOT" "$W/b.back" 11
cmp -s "$W/a" "$W/a.back" && cmp -s "$W/b" "$W/b.back" || fail "blocks 10/11 differ after the restart"
saw "$INST running again; both blocks (one written while the key was disabled) read back intact"
ok at ec2 stop-instances --instance-ids "$INST"
wait_until 20 "$INST to stop" bash -c "$ATREST --home $H ec2 describe-instances --instance-ids $INST | grep -q '\"stopped\"'"

step "--strict-revocation: the data key is dropped as soon as the key is disabled"
MPID=$(pid_of mount)
if ! tr '\0' ' ' <"/proc/$MPID/cmdline" 2>/dev/null | grep -q -- --strict-revocation; then
    if ((FRESH)); then
        say "restarting the volume service with --strict-revocation"
        stop_daemon mount
        start_mount --strict-revocation
    else
        say "NOT CHECKED: the running volume service was not started with --strict-revocation"
        say "(run with --fresh, or restart it with 'atrest mount --strict-revocation')."
        passed
        exit 0
    fi
fi
saw "atrest mount pid $(pid_of mount) with --strict-revocation"
ok at ec2 create-volume --availability-zone us-east-1a --size 1 --encrypted --kms-key-id "$KEY"
VOL2=$(grep -o 'vol-[0-9a-f]*' <<<"$OUT" | head -n1)
cleanup_push "at detach --force $VOL2"
ok at attach "$VOL2"
FILE=$OUT
ok write_block "$FILE" "$W/a" 3
saw "$VOL2 attached here at $FILE; wrote block 3"
# A descriptor opened before the key is disabled, reading with O_DIRECT every 10 ms
# until a read fails: prints the errno.
python3 - "$FILE" "$W/opened" >"$W/held.out" 2>&1 <<'EOF' &
import errno, mmap, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
os.preadv(fd, [buf], 3 * 4096)
open(sys.argv[2], "w").close()
deadline = time.time() + 10
while time.time() < deadline:
    try:
        os.preadv(fd, [buf], 3 * 4096)
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e.errno)), "(" + os.strerror(e.errno) + ")")
        sys.exit(0)
    time.sleep(0.01)
print("still readable 10 s later")
sys.exit(1)
EOF
HELD=$!
cleanup_push "kill $HELD"
wait_until 5 "a descriptor held open on $FILE" test -e "$W/opened"
T0=$(date +%s%N)
ok at kms disable-key --key-id "$KEY"
wait "$HELD" || fail "a descriptor opened before DisableKey could still read: $(cat "$W/held.out")"
MS=$((($(date +%s%N) - T0) / 1000000))
grep -q "^EKEYREVOKED" "$W/held.out" || fail "reads failed, but not with EKEYREVOKED: $(cat "$W/held.out")"
saw "the descriptor opened before: reads fail with $(cat "$W/held.out") within ${MS} ms of DisableKey"
run read_block "$FILE" "$W/x" 3
[[ $RC -ne 0 ]] && grep -qi "revoked" <<<"$ERR" || fail "a new read after revocation did not fail with EKEYREVOKED: $ERR"
saw "new opens fail: $(first_line "$ERR")"
run write_block "$FILE" "$W/b" 4
[[ $RC -ne 0 ]] && grep -qi "revoked" <<<"$ERR" || fail "a write after revocation did not fail with EKEYREVOKED: $ERR"
saw "writes fail too: $(first_line "$ERR")"
run at status
grep -q "$VOL2: .*strict revocation dropped the data key" <<<"$ERR" || fail "atrest status does not say the data key of $VOL2 was dropped: $ERR"
saw "$(first_line "$ERR")"
saw "mount.log: $(grep "strict revocation dropped" "$H/log/mount.log" | tail -n1 | sed 's/\x1b\[[0-9;]*m//g; s/^.* WARN [^ ]* //')"

step "Re-enable, detach and attach again: works, data intact"
ok at kms enable-key --key-id "$KEY"
ok at detach "$VOL2"
ok at attach "$VOL2"
FILE=$OUT
ok read_block "$FILE" "$W/a.back" 3
cmp -s "$W/a" "$W/a.back" || fail "block 3 differs after re-attaching"
saw "block 3 reads back intact through $FILE"
ok at detach "$VOL2"

passed
