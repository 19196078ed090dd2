#!/usr/bin/env bash
# PUT and GET throughput of one SSE-KMS object through atrest's S3 endpoint, next to `cp` of
# the same file, and the endpoint's peak memory.
#
#   scripts/bench-s3.sh [--size-mib N] [--dir DIR] [--check]
#
# Builds release binaries, starts kmsd and `atrest s3 serve` on a fresh home under DIR
# (default /var/tmp), and measures:
#   cp            cp FILE COPY (page cache, no fsync), and cp + sync
#   PUT (cli)     atrest s3 cp FILE s3://bench/obj --sse aws:kms  (streams, fsyncs, renames)
#   GET (cli)     atrest s3 cp s3://bench/obj OUT                 (streams to a temp file, renames)
#   GET (curl)    curl of a presigned URL to /dev/null            (the endpoint alone)
#                 and to a file                                    (a reference HTTP client)
#   dd bs=64K     a userspace copy of the file (cp copies inside the kernel)
#   PUT (boto3)   upload_file at boto3's default TransferConfig (multipart above 8 MiB:
#                 8 MiB parts, 10 threads), SSE-KMS
#   GET (boto3)   download_file at the same defaults (ranged GETs of 8 MiB, 10 threads)
#   boto3 alone   the same two transfers against scripts/lib/s3-sink.py, an endpoint that
#                 does nothing (no auth, checksum, encryption or disk): the floor the client
#                 itself sets on this box (over plain HTTP botocore signs the payload, so it
#                 SHA-256es every part, and adds a CRC32 header), which no endpoint can beat
#   peak RSS      VmHWM of the endpoint process after all transfers
# Targets (issue 7: 0.5x cp): a PUT is durable when it answers, so it is held to 0.5x
# cp + sync (0.5x plain cp is printed too); GET to 0.5x cp; endpoint peak RSS under 64 MiB.
# Issue 15: boto3's multipart PUT >= 0.9x cp + sync, its ranged GET >= 0.5x cp, and the
# endpoint's peak RSS through them under 128 MiB.
# "boto3 alone" bounds what the endpoint can reach with boto3: when the client alone is
# under a target, that target is out of reach on this box whatever the endpoint does; the
# share of boto3's time it also spends alone is printed as the client's.
# Env: BENCH_ROUNDS (default 3, after one uncounted warm-up round; each figure is the median).
# --check exits non-zero when a target is missed.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MIB=1024
BASE=/var/tmp
ROUNDS=${BENCH_ROUNDS:-3}
CHECK=0
while [ $# -gt 0 ]; do
    case "$1" in
        --size-mib) SIZE_MIB="$2"; shift 2 ;;
        --dir) BASE="$2"; shift 2 ;;
        --check) CHECK=1; shift ;;
        *) echo "usage: $0 [--size-mib N] [--dir DIR] [--check]" >&2; exit 2 ;;
    esac
done

# boto3 from the project's venv (scripts/lib/venv.sh; made by scripts/install-deps.sh).
. scripts/lib/venv.sh
venv_install >/dev/null
PY="$ATREST_VENV/bin/python"

for tool in curl cmp awk; do
    command -v "$tool" >/dev/null || { echo "bench-s3: needs $tool (apt-get install -y curl)" >&2; exit 1; }
done

cargo build --release --quiet -p atrest --bin atrest -p kmsd --bin kmsd
BIN="$(pwd)/target/release"

WORK="$(mktemp -d "$BASE/atrest-bench-s3.XXXXXX")"
HOME_DIR="$WORK/home"
mkdir -p "$HOME_DIR"
KMSD_PID=""
S3_PID=""
SINK_PID=""
cleanup() {
    [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null && wait "$SINK_PID" 2>/dev/null || true
    [ -n "$S3_PID" ] && kill "$S3_PID" 2>/dev/null && wait "$S3_PID" 2>/dev/null || true
    [ -n "$KMSD_PID" ] && kill "$KMSD_PID" 2>/dev/null && wait "$KMSD_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

atrest() { "$BIN/atrest" --home "$HOME_DIR" "$@"; }
now() { date +%s.%N; }
mibps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / 1048576 / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

"$BIN/kmsd" --home "$HOME_DIR" >"$WORK/kmsd.log" 2>&1 &
KMSD_PID=$!
for _ in $(seq 100); do [ -S "$HOME_DIR/kmsd.sock" ] && break; sleep 0.05; done
"$BIN/atrest" --home "$HOME_DIR" s3 serve --listen 127.0.0.1:0 >"$WORK/s3.log" 2>&1 &
S3_PID=$!
for _ in $(seq 100); do [ -s "$HOME_DIR/s3.addr" ] && break; sleep 0.05; done
[ -s "$HOME_DIR/s3.addr" ] || { echo "bench-s3: endpoint did not start" >&2; cat "$WORK/s3.log" >&2; exit 1; }

KEY_ID=$(atrest kms create-key --description bench --query KeyMetadata.KeyId --output text)
atrest kms create-alias --alias-name alias/BenchKey --target-key-id "$KEY_ID"
atrest s3api create-bucket --bucket bench >/dev/null
# boto3 as a user runs it after `eval "$(atrest env)"`, with no config file of this machine.
eval "$(atrest env)"
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
cat >"$WORK/boto3_transfer.py" <<'EOF'
# put|get FILE KEY: one boto3 transfer at its default TransferConfig; prints its seconds.
import sys, time
import boto3
mode, path, key = sys.argv[1:4]
s3 = boto3.client("s3")
t0 = time.perf_counter()
if mode == "put":
    s3.upload_file(path, "bench", key,
                   ExtraArgs={"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/BenchKey"})
else:
    s3.download_file("bench", key, path)
print(time.perf_counter() - t0)
EOF

SRC="$WORK/src.bin"
echo "bench-s3: writing a ${SIZE_MIB} MiB test file in $WORK"
head -c "$((SIZE_MIB * 1048576))" /dev/urandom >"$SRC"
BYTES=$(stat -c %s "$SRC")
sync

# The do-nothing endpoint boto3 is also timed against (the client's own floor).
"$PY" scripts/lib/s3-sink.py "$WORK/sink.addr" "$BYTES" >"$WORK/sink.log" 2>&1 &
SINK_PID=$!
for _ in $(seq 100); do [ -s "$WORK/sink.addr" ] && break; sleep 0.05; done
[ -s "$WORK/sink.addr" ] || { echo "bench-s3: sink did not start" >&2; cat "$WORK/sink.log" >&2; exit 1; }
sink() { AWS_ENDPOINT_URL="http://$(cat "$WORK/sink.addr")" "$PY" "$WORK/boto3_transfer.py" "$@"; }

# Each figure is the median of ROUNDS runs (the disk and the 2 shared cores are noisy).
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'; }

cp "$SRC" "$WORK/copy.bin"; rm -f "$WORK/copy.bin"; sync # warms the source's pages
CP=(); CPSYNC=(); DD=(); PUT=(); GET=(); CURL=(); CURLF=(); B3PUT=(); B3GET=(); SKPUT=(); SKGET=()
URL=""
# Round 0 is a warm-up, not counted: on this VM the first writes into memory the guest
# has not touched for a while run several times slower (the host backs it again), and the
# GET, which comes after the PUT has taken another GiB, hit that in round 1 (2-3 s
# against 0.6-0.8 s in later rounds).
record() {
    [ "$round" -gt 0 ] || return 0
    local -n samples=$1
    samples+=("$2")
}
# Every timed copy starts with its source in the page cache, as the first cp assumes: this
# VM runs DAMON with a pageout scheme, which drops cached pages it sees idle, so without
# this a step sometimes reads its source from the disk and the others do not.
hot() { cat "$@" >/dev/null; }
objects() { printf '%s\n' "$HOME_DIR"/s3/buckets/bench/objects/*.data; }
for round in $(seq 0 "$ROUNDS"); do
    hot "$SRC"
    t0=$(now); cp "$SRC" "$WORK/copy.bin"; t1=$(now)
    record CP "$(elapsed "$t0" "$t1")"
    rm -f "$WORK/copy.bin"; sync
    hot "$SRC"
    t0=$(now); cp "$SRC" "$WORK/copy.bin"; sync; t1=$(now)
    record CPSYNC "$(elapsed "$t0" "$t1")"
    rm -f "$WORK/copy.bin"; sync
    # cp copies inside the kernel (copy_file_range); a program that reads and writes
    # the bytes itself, as any HTTP client must, is bounded by this instead.
    hot "$SRC"
    t0=$(now); dd if="$SRC" of="$WORK/copy.bin" bs=64K status=none; t1=$(now)
    record DD "$(elapsed "$t0" "$t1")"
    rm -f "$WORK/copy.bin"; sync

    hot "$SRC"
    t0=$(now)
    atrest s3 cp "$SRC" "s3://bench/obj$round" --sse aws:kms --sse-kms-key-id alias/BenchKey --quiet
    t1=$(now)
    record PUT "$(elapsed "$t0" "$t1")"
    HEAD_JSON=$(atrest s3api head-object --bucket bench --key "obj$round")
    case "$HEAD_JSON" in
        *'"ServerSideEncryption": "aws:kms"'*) ;;
        *) echo "bench-s3: object is not SSE-KMS: $HEAD_JSON" >&2; exit 1 ;;
    esac
    sync

    hot $(objects)
    t0=$(now)
    atrest s3 cp "s3://bench/obj$round" "$WORK/out.bin" --quiet
    t1=$(now)
    record GET "$(elapsed "$t0" "$t1")"
    cmp "$SRC" "$WORK/out.bin" || { echo "bench-s3: downloaded object differs" >&2; exit 1; }
    rm -f "$WORK/out.bin"; sync

    URL=$(atrest s3 presign "s3://bench/obj$round" --expires-in 600)
    hot $(objects)
    t0=$(now)
    GOT=$(curl -s -o /dev/null -w '%{size_download}' "$URL")
    t1=$(now)
    record CURL "$(elapsed "$t0" "$t1")"
    [ "$GOT" = "$BYTES" ] || { echo "bench-s3: curl got $GOT of $BYTES bytes" >&2; exit 1; }
    # The same download by curl into a file: what a well-tuned HTTP client reaches here.
    hot $(objects)
    t0=$(now)
    curl -s -o "$WORK/curl.bin" "$URL"
    t1=$(now)
    record CURLF "$(elapsed "$t0" "$t1")"
    rm -f "$WORK/curl.bin"; sync
    atrest s3api delete-object --bucket bench --key "obj$round" >/dev/null

    hot "$SRC"
    record B3PUT "$("$PY" "$WORK/boto3_transfer.py" put "$SRC" "b3obj$round")"
    HEAD_JSON=$(atrest s3api head-object --bucket bench --key "b3obj$round")
    case "$HEAD_JSON" in
        *'"ServerSideEncryption": "aws:kms"'*) ;;
        *) echo "bench-s3: boto3's object is not SSE-KMS: $HEAD_JSON" >&2; exit 1 ;;
    esac
    sync
    hot $(objects)
    record B3GET "$("$PY" "$WORK/boto3_transfer.py" get "$WORK/b3.bin" "b3obj$round")"
    cmp "$SRC" "$WORK/b3.bin" || { echo "bench-s3: boto3's download differs" >&2; exit 1; }
    rm -f "$WORK/b3.bin"; sync
    atrest s3api delete-object --bucket bench --key "b3obj$round" >/dev/null

    hot "$SRC"
    record SKPUT "$(sink put "$SRC" "b3obj$round")"
    record SKGET "$(sink get "$WORK/b3.bin" "b3obj$round")"
    rm -f "$WORK/b3.bin"; sync
done
CP_S=$(median "${CP[@]}"); CPSYNC_S=$(median "${CPSYNC[@]}"); DD_S=$(median "${DD[@]}")
PUT_S=$(median "${PUT[@]}"); GET_S=$(median "${GET[@]}"); CURL_S=$(median "${CURL[@]}")
CURLF_S=$(median "${CURLF[@]}")
B3PUT_S=$(median "${B3PUT[@]}"); B3GET_S=$(median "${B3GET[@]}")
SKPUT_S=$(median "${SKPUT[@]}"); SKGET_S=$(median "${SKGET[@]}")

RSS_KB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$S3_PID/status")
RSS_MIB=$(awk -v k="$RSS_KB" 'BEGIN { printf "%.1f", k / 1024 }')

CP_MIBPS=$(mibps "$BYTES" "$CP_S")
CPSYNC_MIBPS=$(mibps "$BYTES" "$CPSYNC_S")
DD_MIBPS=$(mibps "$BYTES" "$DD_S")
PUT_MIBPS=$(mibps "$BYTES" "$PUT_S")
GET_MIBPS=$(mibps "$BYTES" "$GET_S")
CURL_MIBPS=$(mibps "$BYTES" "$CURL_S")
CURLF_MIBPS=$(mibps "$BYTES" "$CURLF_S")
B3PUT_MIBPS=$(mibps "$BYTES" "$B3PUT_S")
B3GET_MIBPS=$(mibps "$BYTES" "$B3GET_S")
SKPUT_MIBPS=$(mibps "$BYTES" "$SKPUT_S")
SKGET_MIBPS=$(mibps "$BYTES" "$SKGET_S")
PUT_RATIO=$(ratio "$PUT_MIBPS" "$CP_MIBPS")
GET_RATIO=$(ratio "$GET_MIBPS" "$CP_MIBPS")
PUT_RATIO_SYNC=$(ratio "$PUT_MIBPS" "$CPSYNC_MIBPS")
GET_RATIO_SYNC=$(ratio "$GET_MIBPS" "$CPSYNC_MIBPS")
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "object: ${SIZE_MIB} MiB, SSE-KMS (alias/BenchKey), 64 KiB AES-256-GCM chunks; $(nproc) cores, load average $LOAD"
echo "median of $ROUNDS rounds; seconds per round: cp ${CP[*]} | cp+sync ${CPSYNC[*]} | dd ${DD[*]} | PUT ${PUT[*]} | GET ${GET[*]} | curl ${CURL[*]} | curl -o ${CURLF[*]} | boto3 PUT ${B3PUT[*]} | boto3 GET ${B3GET[*]} | boto3 PUT alone ${SKPUT[*]} | boto3 GET alone ${SKGET[*]}"
printf '%-34s %8s MiB/s\n' "cp (page cache)" "$CP_MIBPS"
printf '%-34s %8s MiB/s\n' "cp + sync" "$CPSYNC_MIBPS"
printf '%-34s %8s MiB/s   %sx cp\n' "dd bs=64K (userspace copy)" "$DD_MIBPS" "$(ratio "$DD_MIBPS" "$CP_MIBPS")"
printf '%-34s %8s MiB/s   %sx cp   %sx cp+sync\n' "PUT atrest s3 cp (fdatasync'd)" "$PUT_MIBPS" "$PUT_RATIO" "$PUT_RATIO_SYNC"
printf '%-34s %8s MiB/s   %sx cp   %sx cp+sync\n' "GET atrest s3 cp" "$GET_MIBPS" "$GET_RATIO" "$GET_RATIO_SYNC"
printf '%-34s %8s MiB/s   %sx cp\n' "GET curl presigned > /dev/null" "$CURL_MIBPS" "$(ratio "$CURL_MIBPS" "$CP_MIBPS")"
printf '%-34s %8s MiB/s   %sx cp\n' "GET curl presigned -o FILE" "$CURLF_MIBPS" "$(ratio "$CURLF_MIBPS" "$CP_MIBPS")"
printf '%-34s %8s MiB/s   %sx cp   %sx cp+sync\n' "PUT boto3 upload_file (multipart)" "$B3PUT_MIBPS" "$(ratio "$B3PUT_MIBPS" "$CP_MIBPS")" "$(ratio "$B3PUT_MIBPS" "$CPSYNC_MIBPS")"
printf '%-34s %8s MiB/s   %sx cp\n' "GET boto3 download_file (ranged)" "$B3GET_MIBPS" "$(ratio "$B3GET_MIBPS" "$CP_MIBPS")"
printf '%-34s %8s MiB/s   %sx cp   %sx cp+sync\n' "PUT boto3 alone (do-nothing sink)" "$SKPUT_MIBPS" "$(ratio "$SKPUT_MIBPS" "$CP_MIBPS")" "$(ratio "$SKPUT_MIBPS" "$CPSYNC_MIBPS")"
printf '%-34s %8s MiB/s   %sx cp\n' "GET boto3 alone (do-nothing sink)" "$SKGET_MIBPS" "$(ratio "$SKGET_MIBPS" "$CP_MIBPS")"
# Of boto3's time through the endpoint, the share it also takes against the sink is the client's.
own() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f%% (%.2f of %.2f s)", 100 * a / b, a, b }'; }
echo "boto3 time that is the client's own (alone / through the endpoint): PUT $(own "$SKPUT_S" "$B3PUT_S"), GET $(own "$SKGET_S" "$B3GET_S")"
printf '%-34s %8s MiB\n' "endpoint peak RSS (VmHWM)" "$RSS_MIB"

MISS=0
# A PUT answers 200 only once the object is on disk (fdatasync), so its like-for-like
# reference is cp + sync; a GET writes its file without syncing, like cp.
awk -v r="$PUT_RATIO_SYNC" 'BEGIN { exit !(r >= 0.5) }' || { echo "MISS: PUT below 0.5x cp+sync"; MISS=1; }
awk -v r="$GET_RATIO" 'BEGIN { exit !(r >= 0.5) }' || { echo "MISS: GET below 0.5x cp"; MISS=1; }
awk -v m="$RSS_MIB" 'BEGIN { exit !(m < 64) }' || { echo "MISS: peak RSS not under 64 MiB"; MISS=1; }
awk -v r="$(ratio "$B3PUT_MIBPS" "$CPSYNC_MIBPS")" 'BEGIN { exit !(r >= 0.9) }' || { echo "MISS: boto3 multipart PUT below 0.9x cp+sync"; MISS=1; }
awk -v r="$(ratio "$B3GET_MIBPS" "$CP_MIBPS")" 'BEGIN { exit !(r >= 0.5) }' || { echo "MISS: boto3 ranged GET below 0.5x cp"; MISS=1; }
[ "$MISS" = 0 ] && echo "targets met: PUT >= 0.5x cp+sync, GET >= 0.5x cp, peak RSS < 64 MiB; boto3 PUT >= 0.9x cp+sync, boto3 GET >= 0.5x cp"
if [ "$CHECK" = 1 ] && [ "$MISS" = 1 ]; then exit 1; fi
