#!/usr/bin/env bash
# Benchmarks kmsd (issue 16): Decrypt and GenerateDataKey ops/s and p50/p99 with 1, 8
# and 64 clients, in the default trail class (sync = "interval") and in "every-event",
# the fdatasync latency of the trails' disk and the bound clients / fdatasync latency
# for every-event, beside it the bound that also counts the CPU time of a group's
# requests (kmsd's and the clients', measured in the run; see kmsd-bench); then the
# same while `dd ... conv=fdatasync` writes 1 GiB at a time to the same disk. Two
# release kmsds run side by side (one per class) on throwaway homes under BENCH_DIR;
# rounds are interleaved and medians printed (see kmsd-bench).
# Targets: interval Decrypt with 8 clients >= 100,000 ops/s and p99 < 1 ms (< 2 ms with
# dd running); every-event >= 0.8x its bound.
# Usage: scripts/bench-kmsd.sh [SECONDS_PER_RUN] (default 2)
# Env: BENCH_DIR (default /var/tmp/atrest-kmsd-bench: put it on the disk to measure),
#      BENCH_ROUNDS (default 3), BENCH_CLIENTS (default 1,8,64), BENCH_DD=0 skips the
#      run beside dd, BENCH_REF_KMSD=PATH: another kmsd binary (e.g. main's, built with
#      `cargo build --release -p kmsd` in its checkout and copied) run beside these in
#      both classes and measured in the same rounds, as the reference "ref" (each figure
#      is also printed as a ratio to it).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${1:-2}"
ROUNDS="${BENCH_ROUNDS:-3}"
CLIENTS="${BENCH_CLIENTS:-1,8,64}"
BENCH_DIR="${BENCH_DIR:-/var/tmp/atrest-kmsd-bench}"
cargo build --release -p kmsd --bins >&2
mkdir -p "$BENCH_DIR"
W="$(mktemp -d "$BENCH_DIR/run.XXXXXX")"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT

start_kmsd() { # CLASS [HOME_NAME BINARY]
  local home="$W/${2:-$1}" bin="${3:-target/release/kmsd}"
  mkdir -p "$home"
  # The embedded default config (kmsd's source of it), with the trail's sync mode set.
  sed "s/^sync = \"interval\"/sync = \"$1\"/" kmsd/src/config_default.toml > "$home/config.toml"
  grep -q "^sync = \"$1\"" "$home/config.toml" || { echo "cannot set trail.sync = $1" >&2; exit 1; }
  RUST_LOG=warn "$bin" --home "$home" 2>"$home/kmsd.log" &
  PIDS+=($!)
  for _ in $(seq 200); do [ -S "$home/kmsd.sock" ] && return; sleep 0.05; done
  echo "kmsd ($1) did not start:" >&2; cat "$home/kmsd.log" >&2; exit 1
}
start_kmsd interval
start_kmsd every-event
REF_TARGETS=()
if [ -n "${BENCH_REF_KMSD:-}" ]; then
  start_kmsd interval ref-interval "$BENCH_REF_KMSD"
  start_kmsd every-event ref-every-event "$BENCH_REF_KMSD"
  REF_TARGETS=(--target "interval/ref=$W/ref-interval/kmsd.sock" --target "every-event/ref=$W/ref-every-event/kmsd.sock")
  echo "reference kmsd \"ref\": $BENCH_REF_KMSD ($("$BENCH_REF_KMSD" --version))"
fi

echo "kmsd $(target/release/kmsd --version | cut -d' ' -f2): $(date -u +%Y-%m-%dT%H:%MZ), kernel $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), ${SECONDS_PER_RUN}s per run, $ROUNDS rounds (median), dir $W ($(df --output=source,fstype "$W" | tail -1 | tr -s ' '))"
bench() {
  target/release/kmsd-bench --target "interval=$W/interval/kmsd.sock" \
    --target "every-event=$W/every-event/kmsd.sock" "${REF_TARGETS[@]}" --fsync-dir "$W" \
    --seconds "$SECONDS_PER_RUN" --rounds "$ROUNDS" "$@"
}
bench --clients "$CLIENTS" --label "== quiet disk"

if [ "${BENCH_DD:-1}" != 0 ]; then
  # dd writing 1 GiB with conv=fdatasync to the same disk, again and again, for the
  # whole run.
  ( while :; do dd if=/dev/zero of="$W/dd.bin" bs=1M count=1024 conv=fdatasync status=none; done ) &
  DD=$!
  PIDS+=($DD)
  sleep 1
  echo
  bench --clients 8 --p99-limit-us 2000 --label "== while dd bs=1M count=1024 conv=fdatasync writes to the same disk, in a loop"
  kill "$DD" 2>/dev/null || true
fi
