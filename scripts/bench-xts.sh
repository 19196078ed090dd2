#!/usr/bin/env bash
# XTS-AES-256 throughput of 4 KiB sectors on one core: atrest's sector crypto beside
# `openssl speed -evp aes-256-xts -bytes 4096`, measured in the same run, with the ratio.
# Both divide by CPU time (openssl speed's default), so other load on the box skews neither.
# Target: atrest >= 0.6 x OpenSSL. Usage: scripts/bench-xts.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-3}"

cargo bench --quiet --bench xts --no-run
ours="$(BENCH_SECONDS="$secs" taskset -c 0 cargo bench --quiet --bench xts 2>/dev/null)"
enc="$(sed -n 's/^atrest-xts encrypt MBps=\([0-9.]*\)$/\1/p' <<<"$ours")"
dec="$(sed -n 's/^atrest-xts decrypt MBps=\([0-9.]*\)$/\1/p' <<<"$ours")"

# OpenSSL prints e.g. "AES-256-XTS    6890491.67k": thousands of bytes per second.
ossl_enc_k="$(taskset -c 0 openssl speed -evp aes-256-xts -bytes 4096 -seconds "$secs" 2>/dev/null |
    awk 'tolower($1)=="aes-256-xts" {sub(/k$/,"",$2); print $2}' | tail -1)"
ossl_dec_k="$(taskset -c 0 openssl speed -decrypt -evp aes-256-xts -bytes 4096 -seconds "$secs" 2>/dev/null |
    awk 'tolower($1)=="aes-256-xts" {sub(/k$/,"",$2); print $2}' | tail -1)"
if [[ -z "$enc" || -z "$dec" || -z "$ossl_enc_k" || -z "$ossl_dec_k" ]]; then
    echo "bench-xts: could not parse a figure (atrest: '$ours', openssl: '$ossl_enc_k' '$ossl_dec_k')" >&2
    exit 1
fi
awk -v e="$enc" -v d="$dec" -v oe="$ossl_enc_k" -v od="$ossl_dec_k" 'BEGIN {
    oe /= 1000; od /= 1000;
    printf "XTS-AES-256, 4096-byte sectors, one core (MB/s = 10^6 bytes per CPU-second)\n";
    printf "%-10s %12s %12s %8s\n", "", "atrest", "openssl", "ratio";
    printf "%-10s %12.0f %12.0f %8.2f\n", "encrypt", e, oe, e / oe;
    printf "%-10s %12.0f %12.0f %8.2f\n", "decrypt", d, od, d / od;
    ok = (e / oe >= 0.6 && d / od >= 0.6);
    printf "target >= 0.60 of OpenSSL: %s\n", ok ? "met" : "NOT met";
}'
