#!/usr/bin/env bash
# Every snapshot figure of issue 17 beside `cp --sparse=always` of the same image, in one run
# on the same disk: snapshot and create-from-snapshot of an encrypted volume filled with
# random data; a lazy restore (what create-volume does in the volume service), timed until
# the new volume answers its first read (it is attachable then; target < 1 s whatever the
# size) and until its background copy is done; then the incremental snapshots of
# changed-block tracking: nothing changed (target < 50 ms) and 1% of the chunks rewritten
# (target <= 0.02x cp). Every figure includes making its output durable (the store fsyncs
# chunks and manifest, the restores fsync the image; cp is followed by `sync FILE`).
# The volume is filled whole (e.g. `scripts/bench-snapshot.sh 8192`: 8 GiB of random data, so
# cp copies 8 GiB and 1% of the chunks is 82 MiB): the incremental and lazy figures should
# follow the change, not the size. It needs three times the volume free on DIR's disk (source,
# snapshot store, one restore at a time); BENCH_FILL_MIB=N caps the data at N MiB spread evenly
# over the volume (the rest sparse; cp then copies only the data).
# Usage: scripts/bench-snapshot.sh [MiB] [DIR]   (DIR defaults to a temp dir under /var/tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
mib="${1:-1024}"
dir="${2:-$(mktemp -d /var/tmp/atrest-bench-snapshot.XXXXXX)}"
trap 'rm -rf "$dir"' EXIT
data_mib="$mib"
if [[ -n "${BENCH_FILL_MIB:-}" ]]; then
    [[ "$BENCH_FILL_MIB" =~ ^[1-9][0-9]*$ ]] || { echo "bench-snapshot: BENCH_FILL_MIB must be a number of MiB, not '$BENCH_FILL_MIB'" >&2; exit 1; }
    (( BENCH_FILL_MIB < mib )) && data_mib="$BENCH_FILL_MIB"
fi
free_mib=$(df -Pm "$dir" | awk 'NR == 2 { print $4 }')
if (( free_mib < 3 * data_mib + 1024 )); then
    echo "bench-snapshot: $data_mib MiB of data needs $((3 * data_mib + 1024)) MiB free in $dir, which has $free_mib MiB; free some or set BENCH_FILL_MIB" >&2
    exit 1
fi

cargo bench --quiet --bench snapshot --no-run
out="$(BENCH_DIR="$dir" BENCH_MIB="$mib" cargo bench --quiet --bench snapshot 2>/dev/null)"

start=$(date +%s.%N)
cp --sparse=always "$dir/source.img" "$dir/cp-copy.img"
sync "$dir/cp-copy.img"
end=$(date +%s.%N)
cp_s=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.4f", b - a }')

fig() { sed -n "s/^$1 seconds=\([0-9.]*\) .*/\1/p" <<<"$out"; }
cpu() { sed -n "s/^$1 .*cpu_seconds=\([0-9.]*\).*/\1/p" <<<"$out"; }
snap=$(fig snapshot-create)
same=$(fig create-from-snapshot-same-key)
reenc=$(fig create-from-snapshot-re-encrypt)
incr=$(fig snapshot-create-incremental-unchanged)
pct=$(fig snapshot-create-incremental-1pct)
lazy_usable=$(fig create-from-snapshot-lazy-usable)
lazy_copy=$(fig create-from-snapshot-lazy-copy)
pct_read=$(sed -n 's/^incremental-1pct-read-bytes=//p' <<<"$out")
filled=$(sed -n 's/^filled-bytes=//p' <<<"$out")
incr_bytes=$(sed -n 's/^incremental-new-bytes=//p' <<<"$out")
cpus="$(cpu snapshot-create) $(cpu snapshot-create-incremental-unchanged) $(cpu create-from-snapshot-same-key) $(cpu create-from-snapshot-re-encrypt) $(cpu snapshot-create-incremental-1pct) $(cpu create-from-snapshot-lazy-copy)"
if [[ -z "$snap" || -z "$same" || -z "$reenc" || -z "$incr" || -z "$pct" || -z "$lazy_usable" || -z "$lazy_copy" ]]; then
    echo "bench-snapshot: could not parse: $out" >&2
    exit 1
fi
awk -v mib="$mib" -v cp="$cp_s" -v snap="$snap" -v same="$same" -v reenc="$reenc" \
    -v incr="$incr" -v ib="$incr_bytes" -v cpus="$cpus" -v pct="$pct" -v pr="$pct_read" \
    -v filled="$filled" -v lu="$lazy_usable" -v lc="$lazy_copy" 'BEGIN {
    split(cpus, c, " ");
    printf "%d MiB encrypted volume, %d MiB of it random data (wall-clock; cpu = atrest process CPU seconds)\n", mib, filled / 1048576;
    printf "%-44s %8s %10s %12s %6s\n", "", "seconds", "MB/s", "x cp time", "cpu";
    row("cp --sparse=always + sync", cp, "");
    row("create-snapshot (first, full)", snap, c[1]);
    row("create-snapshot (nothing changed)", incr, c[2]);
    row("create-snapshot (1% of chunks changed)", pct, c[5]);
    row("create-volume from snapshot, same key", same, c[3]);
    row("create-volume from snapshot, re-encrypted", reenc, c[4]);
    row("create-volume lazily: background copy", lc, c[6]);
    printf "nothing changed: %.1f ms (target < 50 ms: %s), stored %d new bytes\n", incr * 1000, (incr < 0.05 ? "met" : "NOT MET"), ib;
    printf "1%% changed: read %d MiB, %.4fx cp (target <= 0.02x: %s)\n", pr / 1048576, pct / cp, (pct / cp <= 0.02 ? "met" : "NOT MET");
    printf "create-volume lazily: usable (first read answered) after %.3f s (target < 1 s: %s)\n", lu, (lu < 1 ? "met" : "NOT MET");
}
function row(name, s, cpu) { if (s <= 0) s = 0.0001; printf "%-44s %8.3f %10.0f %12.4f %6s\n", name, s, mib * 1048576 / s / 1e6, s / cp, cpu; }'
