#!/usr/bin/env bash
# What one Decrypt costs kmsd (issue 16), in counts that hold on a loaded machine where
# ops/s do not: kmsd's instructions per Decrypt (valgrind --tool=callgrind, zeroed after
# a warm-up) and its system calls, futex calls, context switches and CPU time per
# Decrypt (perf stat tracepoints on the running kmsd, and the kmsd-bench clients' CPU
# time beside it). Each figure is divided by the trail lines kmsd wrote meanwhile (one
# per Decrypt with `kmsd-bench --decrypt-only`). 8 clients, default trail class.
# Usage: scripts/bench-kmsd-cost.sh [SECONDS] (default 3)
# Env: BENCH_REF_KMSD=PATH: another kmsd binary (e.g. main's) measured the same way in the
#      same run, alternating with this build; BENCH_ROUNDS (default 2) rounds of perf stat;
#      BENCH_CALLGRIND=0 skips callgrind; BENCH_DIR (default /var/tmp/atrest-kmsd-cost).
# perf stat needs the syscalls and sched tracepoints (root, or perf_event_paranoid <= -1).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${1:-3}"
ROUNDS="${BENCH_ROUNDS:-2}"
BENCH_DIR="${BENCH_DIR:-/var/tmp/atrest-kmsd-cost}"
cargo build --release -p kmsd --bins >&2
BENCH=target/release/kmsd-bench
mkdir -p "$BENCH_DIR"
W="$(mktemp -d "$BENCH_DIR/run.XXXXXX")"
KMSD_PID=
cleanup() {
  [ -n "$KMSD_PID" ] && kill "$KMSD_PID" 2>/dev/null && wait "$KMSD_PID" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT

lines() { cat "$1"/trail/* 2>/dev/null | wc -l; }

start() { # HOME BINARY [WRAPPER...]
  local home=$1 bin=$2
  shift 2
  rm -rf "$home"
  mkdir -p "$home"
  cp kmsd/src/config_default.toml "$home/config.toml"
  RUST_LOG=warn "$@" "$bin" --home "$home" 2>"$home/kmsd.log" &
  KMSD_PID=$!
  for _ in $(seq 600); do [ -S "$home/kmsd.sock" ] && return; sleep 0.1; done
  echo "kmsd did not start:" >&2
  cat "$home/kmsd.log" >&2
  exit 1
}

stop() {
  kill "$KMSD_PID" 2>/dev/null || true
  wait "$KMSD_PID" 2>/dev/null || true
  KMSD_PID=
}

load() { # HOME SECONDS
  "$BENCH" --target "interval=$1/kmsd.sock" --fsync-dir "$1" --rounds 1 --clients 8 \
    --decrypt-only --seconds "$2" 2>&1 | grep -E '^interval ' | head -1 || true
}

callgrind() { # NAME BINARY
  local home="$W/cg-$1"
  start "$home" "$2" valgrind --tool=callgrind --callgrind-out-file="$home/cg.out"
  load "$home" 2 >/dev/null
  callgrind_control -z "$KMSD_PID" >/dev/null 2>&1
  local l0 l1
  l0=$(lines "$home")
  load "$home" "$SECONDS_PER_RUN" >/dev/null
  l1=$(lines "$home")
  callgrind_control -d "$KMSD_PID" >/dev/null 2>&1
  sleep 1
  stop
  local ir
  ir=$(callgrind_annotate "$home/cg.out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done {gsub(",", "", $1); print $1; done = 1}')
  awk -v n="$1" -v ir="$ir" -v e="$((l1 - l0))" \
    'BEGIN { printf "%-5s instructions per Decrypt (callgrind): %.1fk (%d Decrypts)\n", n, ir / e / 1000, e }'
}

EVENTS=raw_syscalls:sys_enter,syscalls:sys_enter_futex,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_pwrite64,sched:sched_switch,task-clock

counts() { # NAME BINARY
  local home="$W/stat-$1"
  start "$home" "$2"
  load "$home" 1 >/dev/null
  perf stat -e "$EVENTS" -p "$KMSD_PID" -o "$home/kmsd.stat" &
  local sp=$! l0 l1
  sleep 0.3
  l0=$(lines "$home")
  perf stat -e task-clock -o "$home/bench.stat" \
    "$BENCH" --target "interval=$home/kmsd.sock" --fsync-dir "$home" --rounds 1 --clients 8 \
    --decrypt-only --seconds "$SECONDS_PER_RUN" >/dev/null 2>&1
  l1=$(lines "$home")
  kill -INT "$sp"
  wait "$sp" || true
  stop
  awk -v n="$1" -v e="$((l1 - l0))" '
    /task-clock|sys_enter|sched_switch/ { gsub(",", "", $1); v[$2] = $1 }
    END {
      printf "%-5s per Decrypt: %.2f syscalls (recvfrom %.2f, sendto %.2f, pwrite %.2f, futex %.3f), %.2f context switches, kmsd CPU %.1f us", n,
        v["raw_syscalls:sys_enter"] / e, v["syscalls:sys_enter_recvfrom"] / e, v["syscalls:sys_enter_sendto"] / e,
        v["syscalls:sys_enter_pwrite64"] / e, v["syscalls:sys_enter_futex"] / e, v["sched:sched_switch"] / e,
        v["msec"] * 1000 / e
    }' "$home/kmsd.stat"
  awk -v e="$((l1 - l0))" '/task-clock|msec/ { gsub(",", "", $1); printf ", clients CPU %.1f us (%d Decrypts)\n", $1 * 1000 / e, e; exit }' "$home/bench.stat"
}

BUILDS=("this=target/release/kmsd")
[ -n "${BENCH_REF_KMSD:-}" ] && BUILDS+=("ref=$BENCH_REF_KMSD")
echo "kmsd cost per Decrypt: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), 8 clients, ${SECONDS_PER_RUN}s per run"
if [ "${BENCH_CALLGRIND:-1}" != 0 ]; then
  for b in "${BUILDS[@]}"; do callgrind "${b%%=*}" "${b#*=}"; done
fi
for r in $(seq "$ROUNDS"); do
  for b in "${BUILDS[@]}"; do counts "${b%%=*}" "${b#*=}"; done
done
echo "load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
