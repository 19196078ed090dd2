#!/usr/bin/env bash
# Snapshot and create-from-snapshot of a 1 GiB encrypted volume filled with random data,
# beside `cp --sparse=always` of the same image, in one run on the same disk. Every figure
# includes making its output durable (the store fsyncs chunks and manifest, the restore
# fsyncs the image; cp is followed by `sync FILE`).
# A lazy restore (what create-volume does in the volume service) is timed twice: until the new
# volume answers its first read (it is attachable then; target < 1 s whatever the size), and
# until its background copy is done. `scripts/bench-snapshot.sh 8192` shows the same at 8 GiB.
# Usage: scripts/bench-snapshot.sh [MiB] [DIR]   (DIR defaults to a temp dir under /var/tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
mib="${1:-1024}"
dir="${2:-$(mktemp -d /var/tmp/atrest-bench-snapshot.XXXXXX)}"
trap 'rm -rf "$dir"' EXIT

cargo bench --quiet --bench snapshot --no-run
out="$(BENCH_DIR="$dir" BENCH_MIB="$mib" cargo bench --quiet --bench snapshot 2>/dev/null)"

start=$(date +%s.%N)
cp --sparse=always "$dir/source.img" "$dir/cp-copy.img"
sync "$dir/cp-copy.img"
end=$(date +%s.%N)
cp_s=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')

fig() { sed -n "s/^$1 seconds=\([0-9.]*\) .*/\1/p" <<<"$out"; }
cpu() { sed -n "s/^$1 .*cpu_seconds=\([0-9.]*\).*/\1/p" <<<"$out"; }
snap=$(fig snapshot-create)
same=$(fig create-from-snapshot-same-key)
reenc=$(fig create-from-snapshot-re-encrypt)
incr=$(fig snapshot-create-incremental-unchanged)
lazy_usable=$(fig create-from-snapshot-lazy-usable)
lazy_copy=$(fig create-from-snapshot-lazy-copy)
incr_bytes=$(sed -n 's/^incremental-new-bytes=//p' <<<"$out")
cpus="$(cpu snapshot-create) $(cpu snapshot-create-incremental-unchanged) $(cpu create-from-snapshot-same-key) $(cpu create-from-snapshot-re-encrypt) $(cpu create-from-snapshot-lazy-copy)"
if [[ -z "$snap" || -z "$same" || -z "$reenc" ]]; then
    echo "bench-snapshot: could not parse: $out" >&2
    exit 1
fi
awk -v mib="$mib" -v cp="$cp_s" -v snap="$snap" -v same="$same" -v reenc="$reenc" \
    -v incr="$incr" -v ib="$incr_bytes" -v cpus="$cpus" -v lu="$lazy_usable" -v lc="$lazy_copy" 'BEGIN {
    split(cpus, c, " ");
    printf "%d MiB encrypted volume, filled with random data (wall-clock; cpu = atrest process CPU seconds)\n", mib;
    printf "%-44s %8s %10s %12s %6s\n", "", "seconds", "MB/s", "x cp time", "cpu";
    row("cp --sparse=always + sync", cp, "");
    row("create-snapshot (first, full)", snap, c[1]);
    row("create-snapshot (second, nothing changed)", incr, c[2]);
    row("create-volume from snapshot, same key", same, c[3]);
    row("create-volume from snapshot, re-encrypted", reenc, c[4]);
    row("create-volume lazily: background copy", lc, c[5]);
    printf "second snapshot stored %d new bytes\n", ib;
    printf "create-volume lazily: usable (first read answered) after %.3f s (target < 1 s: %s)\n", lu, (lu < 1 ? "met" : "NOT MET");
}
function row(name, s, cpu) { printf "%-44s %8.2f %10.0f %12.2f %6s\n", name, s, mib * 1048576 / s / 1e6, s / cp, cpu; }'
