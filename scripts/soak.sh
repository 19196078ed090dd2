#!/usr/bin/env bash
# Soak (issue 18): a bounded run of many clients against one atrest HOME while one daemon
# is killed with SIGKILL every minute, then every acknowledged write is read back.
#
#   - 64 clients (threads of scripts/lib/soak.py, each with its own connection):
#     32 KMS (Encrypt, Decrypt checked, GenerateDataKey, CreateKey) and 24 S3 (PUT, GET
#     checked, DELETE) through the AWS endpoint with boto3, and 8 doing volume I/O
#     (pwrite + fdatasync of 4 KiB blocks, pread checked) on an encrypted volume attached
#     here and served by the FUSE mount;
#   - every KILL_EVERY seconds, kill -9 of kmsd, the volume service and the endpoint in
#     turn, each brought back by `atrest up`;
#   - prints requests served by kind, errors by kind (what the kills cost), the kills,
#     RSS and open descriptors of each daemon over time (target: flat for each process),
#     and, after the run, every acknowledged S3 PUT and DELETE, KMS Encrypt and CreateKey
#     and volume write read back (target: 0 lost). Exits 1 if anything was lost.
#
# Not run by scripts/test.sh (it takes minutes). Needs root, FUSE (as the volume tests).
#
# Usage: scripts/soak.sh
# Env: SOAK_SECONDS (default 600), SOAK_KILL_EVERY (default 60), SOAK_CREATE_KEYS (CreateKey
#      weight among KMS calls, default 1 in 100; 0 keeps the key count fixed), SOAK_CLIENTS (default 64,
#      split 1/2 KMS, 3/8 S3, 1/8 volume), SOAK_PROFILE=dev (debug builds), ATREST_BIN_DIR
#      (use these atrest and kmsd binaries instead of building).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TOTAL="${SOAK_SECONDS:-600}"
KILL_EVERY="${SOAK_KILL_EVERY:-60}"
CLIENTS="${SOAK_CLIENTS:-64}"
# shellcheck source=scripts/lib/venv.sh
. scripts/lib/venv.sh
venv_install >&2

if [ -n "${ATREST_BIN_DIR:-}" ]; then
  BIN=$ATREST_BIN_DIR
elif [ "${SOAK_PROFILE:-release}" = dev ]; then
  BIN=target/debug
  cargo build -p kmsd --bin kmsd -p atrest --bin atrest >&2
else
  BIN=target/release
  cargo build --release -p kmsd --bin kmsd -p atrest --bin atrest >&2
fi
BIN=$(cd "$BIN" && pwd)
for b in atrest kmsd; do [ -x "$BIN/$b" ] || { echo "soak: no $b in $BIN" >&2; exit 1; }; done
export PATH="$BIN:$PATH"

W=$(mktemp -d /tmp/atrest-soak.XXXXXX)
export ATREST_HOME="$W/home"
mkdir -p "$ATREST_HOME"
VOL=
cleanup() {
  [ -n "$VOL" ] && atrest detach --force "$VOL" >/dev/null 2>&1
  atrest down >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A fixed free port, so that the endpoint comes back where the clients expect it.
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export ATREST_LISTEN="127.0.0.1:$PORT"
atrest up >&2
eval "$(atrest env)"

KEY=$(atrest kms create-key --description soak --query KeyMetadata.KeyId --output text)
BUCKET="soak-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
atrest s3api create-bucket --bucket "$BUCKET" >/dev/null
VOL=$(atrest ec2 create-volume --availability-zone us-east-1a --size 1 --encrypted \
  --kms-key-id "$KEY" --query VolumeId --output text)
VOLPATH=$(atrest attach "$VOL")
[ -e "$VOLPATH" ] || { echo "soak: attach printed '$VOLPATH', which does not exist" >&2; exit 1; }
echo "soak: HOME $ATREST_HOME, endpoint $AWS_ENDPOINT_URL, key $KEY, bucket $BUCKET, volume $VOL at $VOLPATH" >&2

KMS=$((CLIENTS / 2)) S3=$((CLIENTS * 3 / 8))
VOLC=$((CLIENTS - KMS - S3))
python3 - "$W/config.json" <<EOF
import json, sys
json.dump({
    "home": "$ATREST_HOME", "atrest": "$BIN/atrest",
    "endpoint": "$AWS_ENDPOINT_URL", "region": "$AWS_DEFAULT_REGION",
    "access_key_id": "$AWS_ACCESS_KEY_ID", "secret_access_key": "$AWS_SECRET_ACCESS_KEY",
    "key_id": "$KEY", "bucket": "$BUCKET", "volume_path": "$VOLPATH",
    # 8 clients x 4096 blocks x 4 KiB = 128 MiB of the 1 GiB volume.
    "volume_blocks_per_client": 4096,
    "mix": {"kms": $KMS, "s3": $S3, "volume": $VOLC},
    "seconds": $SECONDS_TOTAL, "kill_every": $KILL_EVERY, "sample_every": 10,
}, open(sys.argv[1], "w"))
EOF
rc=0
python3 scripts/lib/soak.py "$W/config.json" || rc=$?
exit "$rc"
