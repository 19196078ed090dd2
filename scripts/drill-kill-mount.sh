#!/usr/bin/env bash
# Drill: kill -9 of the volume service (`atrest mount`) while an ext4 on a loop device
# over a served volume is being written.
#
# What must hold: the restarted service recovers the stale mountpoint by itself and
# serves the volume again (new Decrypt); the filesystem mounts (journal replay),
# everything that was fsync'd before the kill is there byte for byte, and after
# unmounting `e2fsck -fn` finds it clean.
#
# Usage: scripts/drill-kill-mount.sh [--fresh]
source "$(dirname "$0")/lib/drill-common.sh"
drill_init "$@"
drill_daemons mount
W=$(mktemp -d)
FS=$W/fs
mkdir -p "$FS"
cleanup_push "rm -rf '$W'"

step "An encrypted volume attached here with a loop device, ext4 on it, mounted"
ok at kms create-key --description "drill-kill-mount" --query KeyMetadata.KeyId --output text
KEY=$OUT
ok at ec2 create-volume --availability-zone us-east-1a --size 1 --encrypted --kms-key-id "$KEY"
VOL=$(grep -o 'vol-[0-9a-f]*' <<<"$OUT" | head -n1)
cleanup_push "at detach --force $VOL; at ec2 delete-volume --volume-id $VOL"
ok at attach --loop "$VOL"
LOOP=$OUT
cleanup_push "umount -l '$FS'"
ok mkfs.ext4 -q -F "$LOOP"
ok mount "$LOOP" "$FS"
saw "$VOL on $LOOP, ext4 mounted on $FS"

step "Write data and fsync it, then keep writing in the background"
ok dd if=/dev/urandom of="$FS/fsynced.bin" bs=1M count=8 conv=fsync status=none
mkdir "$FS/tree"
for i in $(seq 20); do head -c $((i * 1000)) /dev/urandom >"$FS/tree/f$i"; done
ok sync -f "$FS/tree"
(cd "$FS" && sha256sum fsynced.bin tree/*) >"$W/sums"
saw "8 MiB file written with conv=fsync, 20 files synced; checksums kept outside"
# The writer fsyncs every file and notes its checksum only once fsync has returned.
(
    i=0
    while :; do
        i=$((i + 1))
        dd if=/dev/urandom of="$FS/inflight.$i" bs=64k count=16 conv=fsync status=none 2>/dev/null || break
        (cd "$FS" && sha256sum "inflight.$i") >>"$W/acked"
    done
) &
WRITER=$!
cleanup_push "kill $WRITER"
wait_until 20 "the background writer's first fsync'd files" test -s "$W/acked"
sleep 1

step "kill -9 the volume service mid-write"
MPID=$(pid_of mount)
alive "$MPID" || fail "atrest mount (pid '$MPID') is not running"
kill -KILL "$MPID"
saw "SIGKILL sent to atrest mount pid $MPID"
wait_until 10 "pid $MPID to die" bash -c "! kill -0 $MPID"
wait "$WRITER" 2>/dev/null || true
saw "the writer stopped at its first failed write; $(wc -l <"$W/acked") of its files were fsync'd before the kill"
cat "$W/acked" >>"$W/sums"
run stat "$H/mnt"
saw "the mountpoint is stale: $(first_line "$ERR$OUT")"

step "Let go of the dead filesystem and loop device"
ok umount -l "$FS"
ok losetup -d "$LOOP"
saw "ext4 unmounted, $LOOP released"

step "Restart the volume service: it recovers the stale mountpoint and serves the volume again"
if ((FRESH)); then start_mount; else at mount >/dev/null || fail "atrest mount did not restart"; fi
saw "atrest mount pid $(pid_of mount)"
grep -q "stale" "$H/log/mount.log" && saw "mount.log: $(grep stale "$H/log/mount.log" | tail -n1 | sed 's/\x1b\[[0-9;]*m//g; s/^.*WARN *//')"
wait_until 10 "the volume to be served again" test -e "$H/mnt/local"
ok at detach "$VOL"
ok at attach --loop "$VOL"
LOOP=$OUT
saw "reattached: $VOL on $LOOP"

step "Mount it again (journal replay): the fsync'd data is all there"
ok mount "$LOOP" "$FS"
(cd "$FS" && sha256sum -c --quiet "$W/sums") || fail "fsync'd data differs after the crash"
saw "all $(wc -l <"$W/sums") fsync'd files byte-identical (the 21 written first and every file the writer saw fsync'd)"
ok umount "$FS"

step "e2fsck -fn: clean"
ok e2fsck -fn "$LOOP"
saw "$(grep -v '^Pass\|^e2fsck' <<<"$OUT" | tail -n1)"
ok at detach "$VOL"

passed
