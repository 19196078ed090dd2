#!/usr/bin/env bash
# Instance start benchmark: `atrest ec2 start-instances` -> the demo guest's line, for
# an instance whose root is an encrypted volume (Decrypt, FUSE, loop device, qemu),
# next to qemu booting the same root image as a plain file, interleaved.
#
#   scripts/bench-instance.sh [RUNS]      (default 5 of each)
#
# Environment: ATREST_GUEST_DIR (guest cache, default target/tmp/guest, as the tests),
# ATREST_BENCH_MAX_RATIO (default 1.3). Exits non-zero if the target is missed. Prints
# one "BENCH {...}" JSON line with the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
export ATREST_GUEST_DIR="${ATREST_GUEST_DIR:-$PWD/target/tmp/guest}"
export ATREST_BENCH_RUNS="${1:-5}"
scripts/make-guest.sh "$ATREST_GUEST_DIR" >/dev/null
echo "bench-instance: host load: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores" >&2
cargo test --release -p atrest --test ec2_bench -- --ignored --nocapture --test-threads=1 2>&1 |
	grep -E '^(run |plain file|start-instances|ratio|BENCH|thread|test result)' || {
	echo "bench-instance: benchmark failed" >&2
	exit 1
}
