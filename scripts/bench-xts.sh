#!/usr/bin/env bash
# XTS-AES-256 throughput of 4 KiB sectors: atrest's sector crypto beside
# `openssl speed -evp aes-256-xts -bytes 4096` (the reference), measured in the same run.
#
# One core (taskset -c 0), CPU time as the divisor (openssl speed's default), so other load
# on the box skews neither side. BENCH_ROUNDS rounds (default 5), the targets interleaved in
# each round; medians are printed with every raw sample. Also printed: the candidates
# measured for the choice of implementation (src/volume/xts/mod.rs: the portable pure-Rust
# path and OpenSSL's EVP through the `openssl` crate), and, on a machine with several CPUs,
# the wall-clock throughput of 1 MiB requests with sectors in parallel against one core
# (wall clock: run it on an otherwise idle machine).
#
# Target: atrest >= 0.9 x OpenSSL, encrypt and decrypt (issue 17).
# Usage: scripts/bench-xts.sh [SECONDS per measurement, default 2]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-2}"
rounds="${BENCH_ROUNDS:-5}"
command -v openssl >/dev/null || { echo "bench-xts: openssl missing (scripts/install-deps.sh)" >&2; exit 1; }

cargo bench --quiet --bench xts --no-run
bench() { BENCH_SECONDS="$secs" cargo bench --quiet --bench xts -- "$@" 2>/dev/null; }
# openssl prints e.g. "AES-256-XTS    6890491.67k": thousands of bytes per second -> MB/s.
ossl() {
  taskset -c 0 openssl speed "$@" -evp aes-256-xts -bytes 4096 -seconds "$secs" 2>/dev/null |
    awk 'tolower($1)=="aes-256-xts" {sub(/k$/,"",$2); printf "%.0f\n", $2 / 1000}' | tail -1
}

declare -A S # S[name op] = " sample sample ..."
add() { S["$1"]+=" $2"; }
parse() { # parse OUTPUT: "name op MBps=N" lines into S
  while read -r name op val; do
    [[ $val == MBps=* ]] && add "$name $op" "${val#MBps=}"
  done <<<"$1"
}
backend=""
for r in $(seq "$rounds"); do
  echo "bench-xts: round $r/$rounds (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  out="$(BENCH_SECONDS="$secs" taskset -c 0 cargo bench --quiet --bench xts -- core 2>/dev/null)"
  parse "$out"
  backend="$(sed -n 's/^atrest-xts backend=//p' <<<"$out")"
  add "openssl encrypt" "$(ossl)"
  add "openssl decrypt" "$(ossl -decrypt)"
  if [ "$(nproc)" -gt 1 ]; then
    parse "$(bench parallel)"
  fi
done

median() { python3 -c 'import statistics, sys; print(round(statistics.median(float(x) for x in sys.argv[1:])))' "$@"; }
m() { # median of S[$1], empty if none
  [ -n "${S[$1]:-}" ] || return 0
  # shellcheck disable=SC2086
  median ${S[$1]}
}
ratio() { python3 -c 'import sys; print("%.2f" % (float(sys.argv[1]) / float(sys.argv[2])))' "$1" "$2"; }
for key in "atrest-xts encrypt" "atrest-xts decrypt" "openssl encrypt" "openssl decrypt"; do
  [ -n "$(m "$key")" ] || { echo "bench-xts: no figure for $key" >&2; exit 1; }
done

echo
echo "XTS-AES-256, 4096-byte sectors: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $rounds rounds x ${secs}s (median; MB/s = 10^6 bytes per CPU-second, one core)"
has() { grep -q -m1 -w "$1" /proc/cpuinfo && echo yes || echo no; }
echo "atrest implementation: $backend; CPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), VAES $(has vaes), VPCLMULQDQ $(has vpclmulqdq), AVX-512 $(has avx512f)"
printf '%-30s %10s %10s %8s   %s\n' "" MB/s openssl ratio samples
met=1
for op in encrypt decrypt; do
  ref=$(m "openssl $op")
  for name in atrest-xts candidate-portable candidate-openssl-evp; do
    v=$(m "$name $op")
    [ -n "$v" ] || continue
    rt=$(ratio "$v" "$ref")
    printf '%-30s %10s %10s %8s   [%s ] openssl [%s ]\n' "$name $op" "$v" "$ref" "$rt" "${S[$name $op]}" "${S[openssl $op]}"
    if [ "$name" = atrest-xts ] && ! python3 -c 'import sys; sys.exit(float(sys.argv[1]) < 0.9)' "$rt"; then
      met=0
    fi
  done
done
echo "target atrest >= 0.90 x OpenSSL (encrypt and decrypt): $([ $met = 1 ] && echo met || echo NOT met)"

if [ -n "$(m "one-core-4k-calls encrypt")" ]; then
  one=$(m "one-core-4k-calls encrypt")
  echo
  echo "1 MiB requests, wall clock, whole machine ($(nproc) CPUs):"
  printf '%-34s %10s %8s   %s\n' "" MB/s "x 1 core" samples
  for key in "one-core-4k-calls encrypt" "parallel-1mib-requests encrypt" "parallel-1mib-requests decrypt" "spawn-2-threads-per-1mib encrypt"; do
    v=$(m "$key")
    [ -n "$v" ] || continue
    printf '%-34s %10s %8s   [%s ]\n' "$key" "$v" "$(ratio "$v" "$one")" "${S[$key]}"
  done
fi
