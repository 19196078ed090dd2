#!/usr/bin/env bash
# Boot-time benchmark: launch -> the demo guest's "atrest-guest: booted from volume"
# line, booting the same root image as a plain file and through a loop device.
#
#   scripts/bench-boot.sh [RUNS]        (default 5 boots of each, interleaved)
#
# Environment: ATREST_GUEST_DIR (guest cache, default target/tmp/guest, as the tests),
# ATREST_BENCH_MAX_RATIO (default 1.3). Exits non-zero if the loop path misses the
# target. Prints one "BENCH {...}" JSON line with the figures.
#
# The full start-instances path (grant, decrypt, FUSE file, loop device, qemu) is
# measured by the ec2 layer against the plain-file median printed here: time
# `atrest ec2 start-instances` to the line appearing in `get-console-output` and
# compare with "plain file median" (see docs/BOOT.md, "Benchmark").
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${1:-5}"
export ATREST_GUEST_DIR="${ATREST_GUEST_DIR:-$PWD/target/tmp/guest}"  # shared with the tests
export ATREST_BENCH_RUNS="$runs"

echo "bench-boot: building the demo guest into $ATREST_GUEST_DIR" >&2
scripts/make-guest.sh "$ATREST_GUEST_DIR" >/dev/null
echo "bench-boot: host load: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores" >&2
cargo test --release -p atrest --test boot_bench -- --ignored --nocapture --test-threads=1 2>&1 |
	grep -E '^(run |accelerator|plain file|loop device|ratio|BENCH|thread|test result)' || {
	echo "bench-boot: benchmark failed" >&2
	exit 1
}
