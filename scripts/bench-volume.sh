#!/usr/bin/env bash
# Benchmark of the atrest FUSE volume view against a plain file and qemu-storage-daemon
# (LUKS aes-xts-plain64 + FUSE export), in one run on the same disk:
#   - sequential write of 1 GiB: dd bs=1M conv=notrunc,fdatasync (random data)
#   - cold sequential read of 1 GiB: drop caches, dd bs=1M
#   - fio 4 KiB randrw 70/30, QD32, 2 jobs, direct, through losetup --direct-io=on + ext4
# Each figure is measured BENCH_ROUNDS times, the targets interleaved (forward in odd rounds, backward in even ones; so a noisy
# neighbour hits all of them alike), and the median is printed with the ratios
# atrest/qsd (target >= 2 for every figure) and atrest/plain (targets, issue 17: sequential
# write and cold read >= 0.9, fio >= 0.8), and whether each target is met.
#
# Needs root, /dev/fuse, loop devices, fio, qemu-storage-daemon, qemu-img, mkfs.ext4.
# Env: BENCH_DIR (default /var/tmp/atrest-bench: put it on the disk to measure),
#      BENCH_ROUNDS (default 5), FIO_RUNTIME (seconds per fio run, default 15),
#      FIO_ROUNDS (default BENCH_ROUNDS: fio swings most on a shared box; more rounds narrow
#        its median, and every sample is still printed),
#      BENCH_TARGETS (default "plain qsd atrest"; add atrest-1core for the same server
#        with ATREST_XTS_THREADS=1, i.e. without sectors in parallel, as a reference; add
#        atrest-ref for a second build, ATREST_SERVE_REF, to compare two builds in one run),
#      BENCH_MIXED=1 (also: fio randrw as above while a sequential 1 MiB writer runs in the
#        same file system: does one stream using every core hurt random I/O?),
#      ATREST_SERVE_ARGS (extra atrest-serve-volume options, to compare settings),
#      ATREST_SERVE (a prebuilt atrest-serve-volume binary instead of building one).
# atrest is served by target/release/atrest-serve-volume: an encrypted image with a
# random data key that lives only in that process (docs/MOUNT.md).
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "bench-volume: needs root (losetup, mount, drop_caches)" >&2; exit 1; }
[ -e /dev/fuse ] || { echo "bench-volume: /dev/fuse is missing" >&2; exit 1; }
for c in fio qemu-storage-daemon qemu-img mkfs.ext4 losetup python3; do
  command -v "$c" >/dev/null || { echo "bench-volume: $c missing (scripts/install-deps.sh)" >&2; exit 1; }
done

BENCH_DIR=${BENCH_DIR:-/var/tmp/atrest-bench}
ROUNDS=${BENCH_ROUNDS:-5}
FIO_ROUNDS=${FIO_ROUNDS:-$ROUNDS}
FIO_RUNTIME=${FIO_RUNTIME:-15}
TARGETS=(${BENCH_TARGETS:-plain qsd atrest})
VOL_SIZE=$((2 << 30))
SEQ_MIB=1024
if [ -n "${ATREST_SERVE:-}" ]; then
  SERVE=$ATREST_SERVE # a prebuilt binary, to compare two builds
else
  SERVE=target/release/atrest-serve-volume
  cargo build --release --quiet --bin atrest-serve-volume
fi

W=$BENCH_DIR
rm -rf "$W"
mkdir -p "$W"
PIDS=()
LOOPS=()
cleanup() {
  set +e
  for m in "$W"/ext4-*; do mountpoint -q "$m" 2>/dev/null && umount "$m"; done
  for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null; done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 1
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  for m in "$W/atrest-mnt" "$W/atrest-1core-mnt" "$W/atrest-ref-mnt" "$W/qsd.file"; do
    mountpoint -q "$m" 2>/dev/null && umount -l "$m"
  done
  rm -rf "$W"
}
trap cleanup EXIT

log() { echo "bench-volume: $*" >&2; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# dd prints "N bytes (...) copied, S s, ..."; MB/s computed from bytes and seconds.
dd_mbps() {
  dd "$@" 2>&1 | awk '/copied/ { for (i = 1; i <= NF; i++) if ($i == "s,") s = $(i-1); printf "%.0f", $1 / s / 1e6 }'
}

median() { python3 -c 'import statistics, sys; print(round(statistics.median(float(x) for x in sys.argv[1:])))' "$@"; }

wait_for_mount() {
  for _ in $(seq 100); do mountpoint -q "$1" 2>/dev/null && return 0; sleep 0.1; done
  log "$1 did not get mounted"; return 1
}

declare -A FILE
log "generating 1 GiB of random source data in $W"
head -c $((SEQ_MIB << 20)) /dev/urandom > "$W/src.bin"

for t in "${TARGETS[@]}"; do
  case $t in
  plain)
    truncate -s $VOL_SIZE "$W/plain.raw"
    FILE[plain]=$W/plain.raw
    ;;
  qsd) # LUKS, aes-xts-plain64 with a 512-bit key, exported over FUSE
    # qemu-img's PBKDF timing sometimes fails ("Unable to get accurate CPU usage"): retry.
    for try in 1 2 3 4 5; do
      rm -f "$W/luks.img"
      qemu-img create -q -f luks --object secret,id=sec0,data=bench-passphrase \
        -o key-secret=sec0,cipher-alg=aes-256,cipher-mode=xts,ivgen-alg=plain64,iter-time=250 \
        "$W/luks.img" $VOL_SIZE && break
      [ "$try" = 5 ] && { log "qemu-img create failed 5 times"; exit 1; }
    done
    touch "$W/qsd.file"
    qemu-storage-daemon --object secret,id=sec0,data=bench-passphrase \
      --blockdev driver=file,node-name=file0,filename="$W/luks.img" \
      --blockdev driver=luks,node-name=luks0,file=file0,key-secret=sec0 \
      --export type=fuse,id=exp0,node-name=luks0,mountpoint="$W/qsd.file",writable=on \
      > "$W/qsd.log" 2>&1 &
    PIDS+=($!)
    wait_for_mount "$W/qsd.file"
    FILE[qsd]=$W/qsd.file
    ;;
  atrest | atrest-1core | atrest-ref)
    mkdir -p "$W/$t-mnt"
    threads=${ATREST_XTS_THREADS:-}
    [ "$t" = atrest-1core ] && threads=1
    serve=$SERVE
    if [ "$t" = atrest-ref ]; then
      serve=${ATREST_SERVE_REF:?atrest-ref needs ATREST_SERVE_REF (a prebuilt atrest-serve-volume)}
    fi
    # shellcheck disable=SC2086
    ATREST_XTS_THREADS=$threads $serve --mountpoint "$W/$t-mnt" --image "$W/$t.img" --create $VOL_SIZE \
      ${ATREST_SERVE_ARGS:-} > "$W/$t.out" 2> "$W/$t.log" &
    PIDS+=($!)
    for _ in $(seq 100); do grep -q '^READY ' "$W/$t.out" && break; sleep 0.1; done
    FILE[$t]=$(sed -n 's/^READY //p' "$W/$t.out")
    [ -n "${FILE[$t]}" ] || { cat "$W/$t.log" >&2; exit 1; }
    ;;
  *) log "unknown target $t"; exit 1 ;;
  esac
done

# order R: the targets in the order of round R, forward in odd rounds and backward in even
# ones (A B C, C B A, ...), so no target always runs right after the same other one.
# Whatever a run leaves behind for the next (writeback, a warm or evicted cache) then falls
# on the targets alike: with one fixed order, the target measured right after another
# atrest server lost about half its fio IOPS in every round, whichever build it was
# (2026-12-06, two builds swapped between two runs).
order() {
  local n=${#TARGETS[@]} i
  for ((i = 0; i < n; i++)); do
    if (($1 % 2)); then echo "${TARGETS[$i]}"; else echo "${TARGETS[$((n - 1 - i))]}"; fi
  done
}
declare -A WRITE READ RIOPS WIOPS
for r in $(seq "$ROUNDS"); do
  for t in $(order "$r"); do
    log "round $r [$t] sequential write 1 GiB"
    cat "$W/src.bin" > /dev/null
    WRITE[$t]+=" $(dd_mbps if="$W/src.bin" of="${FILE[$t]}" bs=1M count=$SEQ_MIB conv=notrunc,fdatasync)"
  done
done
for r in $(seq "$ROUNDS"); do
  for t in $(order "$r"); do
    log "round $r [$t] cold sequential read 1 GiB"
    drop_caches
    READ[$t]+=" $(dd_mbps if="${FILE[$t]}" of=/dev/null bs=1M count=$SEQ_MIB)"
  done
done
declare -A DEV
for t in "${TARGETS[@]}"; do
  DEV[$t]=$(losetup --direct-io=on --sector-size 4096 --find --show "${FILE[$t]}")
  LOOPS+=("${DEV[$t]}")
  mkfs.ext4 -q -F -E nodiscard "${DEV[$t]}"
  mkdir -p "$W/ext4-$t"
  mount "${DEV[$t]}" "$W/ext4-$t"
done
for r in $(seq "$FIO_ROUNDS"); do
  for t in $(order "$r"); do
    log "round $r [$t] fio randrw 70/30 4k QD32 x2 direct, loop+ext4, ${FIO_RUNTIME}s"
    # Start clean: without it a target pays for the writeback of the buffered writes the
    # target before it left (qsd's and atrest's images are written through the page cache).
    sync
    fio --name=randrw --directory="$W/ext4-$t" --rw=randrw --rwmixread=70 --bs=4k \
      --ioengine=libaio --iodepth=32 --numjobs=2 --direct=1 --size=256M \
      --runtime="$FIO_RUNTIME" --time_based --group_reporting --output-format=json \
      > "$W/fio.json"
    read -r ri wi < <(python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
print(round(j["read"]["iops"]), round(j["write"]["iops"]))' "$W/fio.json")
    RIOPS[$t]+=" $ri"
    WIOPS[$t]+=" $wi"
  done
done

declare -A MIXR MIXW MIXS
if [ "${BENCH_MIXED:-0}" = 1 ]; then
  for r in $(seq "$ROUNDS"); do
    for t in $(order "$r"); do
      log "round $r [$t] fio randrw (as above) + a sequential 1 MiB writer, ${FIO_RUNTIME}s"
      sync
      fio --directory="$W/ext4-$t" --ioengine=libaio --direct=1 --runtime="$FIO_RUNTIME" \
        --time_based --output-format=json \
        --name=randrw --rw=randrw --rwmixread=70 --bs=4k --iodepth=32 --numjobs=2 \
        --size=256M --group_reporting \
        --name=seq --new_group --rw=write --bs=1M --iodepth=2 --numjobs=1 --size=1G \
        > "$W/fio.json"
      read -r ri wi sm < <(python3 -c '
import json, sys
jobs = {j["jobname"]: j for j in json.load(open(sys.argv[1]))["jobs"]}
r, s = jobs["randrw"], jobs["seq"]
print(round(r["read"]["iops"]), round(r["write"]["iops"]), round(s["write"]["bw_bytes"] / 1e6))' "$W/fio.json")
      MIXR[$t]+=" $ri"
      MIXW[$t]+=" $wi"
      MIXS[$t]+=" $sm"
    done
  done
fi

ratio() { # A/B with two decimals, "-" when either is missing
  [ -n "$1" ] && [ -n "$2" ] || { echo -; return; }
  python3 -c "import sys; print('%.2f' % (float(sys.argv[1]) / max(float(sys.argv[2]), 1e-9)))" "$1" "$2"
}

echo
echo "atrest volume benchmark: $(date -u +%Y-%m-%dT%H:%MZ), kernel $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), $ROUNDS rounds (median; fio $FIO_ROUNDS), dir $W"
[ -n "${ATREST_SERVE_ARGS:-}" ] && echo "atrest-serve-volume options: $ATREST_SERVE_ARGS"
[ -n "${ATREST_XTS:-}${ATREST_XTS_THREADS:-}" ] && echo "XTS settings: ATREST_XTS=${ATREST_XTS:-} ATREST_XTS_THREADS=${ATREST_XTS_THREADS:-}"
printf '%-24s %10s %10s %10s %11s %12s  %s\n' figure plain qsd-luks atrest "atrest/qsd" "atrest/plain" "targets (qsd, plain)"
all_met=1
verdict() { # verdict RATIO MIN: "met" or "NOT met" ("-" without a figure)
  [ "$1" != - ] || { echo -; return; }
  if python3 -c 'import sys; sys.exit(float(sys.argv[1]) < float(sys.argv[2]))' "$1" "$2"; then
    echo met
  else
    echo "NOT met"
  fi
}
row() { # row LABEL ARRAY PLAIN_TARGET
  local -n a=$2
  local p="" q="" s="" rq rp vq vp
  # shellcheck disable=SC2086
  { [ -n "${a[plain]:-}" ] && p=$(median ${a[plain]}); [ -n "${a[qsd]:-}" ] && q=$(median ${a[qsd]});
    [ -n "${a[atrest]:-}" ] && s=$(median ${a[atrest]}); } || true
  rq=$(ratio "$s" "$q")
  rp=$(ratio "$s" "$p")
  vq=$(verdict "$rq" 2)
  vp=$(verdict "$rp" "$3")
  [ "$vq" = met ] && [ "$vp" = met ] || all_met=0
  printf '%-24s %10s %10s %10s %11s %12s  >=2: %s, >=%s: %s\n' "$1" "${p:--}" "${q:--}" "${s:--}" "$rq" "$rp" "$vq" "$3" "$vp"
  echo "    samples: plain [${a[plain]:-}] qsd [${a[qsd]:-}] atrest [${a[atrest]:-}]"
  spread "${a[plain]:-}" "${a[qsd]:-}" "${a[atrest]:-}"
}
# spread PLAIN QSD ATREST (sample lists): how far each target's samples are apart
# ((max-min)/median), and atrest/plain and atrest/qsd taken round by round. The rounds are
# interleaved, so a neighbour that slows one round slows both targets of that round alike:
# the per-round ratios' range says whether the medians' ratio above is a figure or noise.
spread() {
  python3 - "$@" <<'PY'
import statistics, sys
names = ("plain", "qsd", "atrest")
s = {n: [float(x) for x in v.split()] for n, v in zip(names, sys.argv[1:]) if v.split()}
def pct(v):
    return "%.0f%%" % (100 * (max(v) - min(v)) / max(statistics.median(v), 1e-9))
parts = ["%s %s" % (n, pct(v)) for n, v in s.items()]
line = "    spread (max-min)/median: " + ", ".join(parts)
for ref in ("plain", "qsd"):
    a, b = s.get("atrest"), s.get(ref)
    if a and b and len(a) == len(b):
        r = [x / max(y, 1e-9) for x, y in zip(a, b)]
        line += "; atrest/%s by round %.2f-%.2f (median %.2f)" % (ref, min(r), max(r), statistics.median(r))
print(line)
PY
}
row "seq write MB/s" WRITE 0.9
row "cold seq read MB/s" READ 0.9
row "fio randrw read IOPS" RIOPS 0.8
row "fio randrw write IOPS" WIOPS 0.8
if [ "${BENCH_MIXED:-0}" = 1 ]; then
  row "mixed: randrw read IOPS" MIXR 0.8
  row "mixed: randrw write IOPS" MIXW 0.8
  row "mixed: seq write MB/s" MIXS 0.8
fi
echo "all targets: $([ "$all_met" = 1 ] && echo met || echo NOT met)"
compare() { # compare OTHER TITLE: atrest against another atrest target of this run
  local other=$1
  [ -n "${FILE[$other]:-}" ] || return 0
  echo
  echo "$2"
  for pair in "seq write MB/s:WRITE" "cold seq read MB/s:READ" "fio randrw read IOPS:RIOPS" \
    "fio randrw write IOPS:WIOPS" "mixed: randrw read IOPS:MIXR" "mixed: randrw write IOPS:MIXW" \
    "mixed: seq write MB/s:MIXS"; do
    declare -n arr=${pair##*:}
    if [ -n "${arr[atrest]:-}" ] && [ -n "${arr[$other]:-}" ]; then
      # shellcheck disable=SC2086
      a=$(median ${arr[atrest]}); b=$(median ${arr[$other]})
      printf '%-26s %10s %10s %8s   samples: [%s ] [%s ]\n' "${pair%:*}" "$a" "$b" "$(ratio "$a" "$b")" "${arr[atrest]}" "${arr[$other]}"
    fi
    unset -n arr
  done
}
compare atrest-1core "sectors in parallel: atrest (all cores per request) against atrest-1core (ATREST_XTS_THREADS=1), same run"
compare atrest-ref "this build: atrest ($SERVE) against atrest-ref (${ATREST_SERVE_REF:-}), same run, rounds interleaved"
