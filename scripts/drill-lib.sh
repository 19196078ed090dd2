# Shared helpers of the scripts/drill-*.sh drills (sourced, not run).
#
# A drill prints each step, runs it, and compares what it observes with what AWS
# would show; any difference is a "SURPRISE" and the drill exits non-zero.
# `--fresh` starts a private kmsd on a temporary home (removed on exit); without it
# the drill uses the kmsd of $ATREST_HOME (or the default home), which must run.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LAB=111122223333
OTHER=444455556666
FRESH=0
for arg in "$@"; do
  case "$arg" in
    --fresh) FRESH=1 ;;
    -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg (use --fresh)" >&2; exit 2 ;;
  esac
done

# Binaries: $ATREST_BIN_DIR, else build the debug ones.
if [ -z "${ATREST_BIN_DIR:-}" ]; then
  (cd "$ROOT" && cargo build -q -p atrest -p kmsd --bins)
  ATREST_BIN_DIR="$ROOT/target/debug"
fi
ATREST_BIN="$ATREST_BIN_DIR/atrest"
KMSD_BIN="$ATREST_BIN_DIR/kmsd"

KMSD_PID=""
CLEANUP_FILES=()
cleanup() {
  local rc=$?
  for f in "${CLEANUP_FILES[@]+"${CLEANUP_FILES[@]}"}"; do rm -f "$f"; done
  if [ "$FRESH" = 1 ]; then
    if [ -n "$KMSD_PID" ]; then kill "$KMSD_PID" 2>/dev/null || true; wait "$KMSD_PID" 2>/dev/null || true; fi
    rm -rf "$DRILL_HOME"
  elif [ "${#CLEANUP_FILES[@]}" -gt 0 ]; then
    "$ATREST_BIN" --home "$DRILL_HOME" kms reload-config >/dev/null 2>&1 || true
  fi
  exit "$rc"
}

if [ "$FRESH" = 1 ]; then
  DRILL_HOME="$(mktemp -d)"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  RUST_LOG=warn "$KMSD_BIN" --home "$DRILL_HOME" 2>"$DRILL_HOME/kmsd.log" &
  KMSD_PID=$!
  for _ in $(seq 200); do [ -S "$DRILL_HOME/kmsd.sock" ] && break; sleep 0.05; done
  [ -S "$DRILL_HOME/kmsd.sock" ] || { echo "kmsd did not start; see $DRILL_HOME/kmsd.log" >&2; exit 1; }
else
  DRILL_HOME="${ATREST_HOME:-${XDG_STATE_HOME:-$HOME/.local/state}/atrest}"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  [ -S "$DRILL_HOME/kmsd.sock" ] || { echo "no kmsd at $DRILL_HOME/kmsd.sock: start it, or run with --fresh" >&2; exit 1; }
fi
# A unique suffix, so drills can run again against the same kmsd.
RUN_ID="$(date +%s)-$$"

step() { printf '\n== %s\n' "$*"; }
say() { printf '   %s\n' "$*"; }
surprise() { printf '   SURPRISE: %s\n' "$*" >&2; exit 1; }

# at PRINCIPAL CMD...: runs `atrest --as PRINCIPAL CMD...` (PRINCIPAL "-" for
# yourself), echoing it; OUT, ERR and RC hold the result.
at() {
  local who="$1"; shift
  local as=()
  [ "$who" != "-" ] && as=(--as "$who")
  printf '   $ atrest %s%s\n' "${as[*]:+${as[*]} }" "$*"
  set +e
  OUT="$("$ATREST_BIN" --home "$DRILL_HOME" "${as[@]+"${as[@]}"}" "$@" 2>"$DRILL_HOME/.drill-err")"
  RC=$?
  set -e
  ERR="$(cat "$DRILL_HOME/.drill-err")"
  rm -f "$DRILL_HOME/.drill-err"
}

# expect_ok: the last command succeeded.
expect_ok() {
  [ "$RC" = 0 ] || surprise "expected success, got exit $RC: $ERR"
  say "ok"
}

# expect_error CODE [TEXT]: the last command failed with AWS error CODE (and TEXT).
expect_error() {
  [ "$RC" != 0 ] || surprise "expected $1, but the call succeeded: $OUT"
  case "$ERR" in *"($1)"*) ;; *) surprise "expected $1, got: $ERR" ;; esac
  if [ -n "${2:-}" ]; then
    case "$ERR" in *"$2"*) ;; *) surprise "expected the message to contain '$2', got: $ERR" ;; esac
  fi
  say "refused as expected: $(echo "$ERR" | sed -n 's/^An error occurred //p')"
}

# attach_policy ACCOUNT USER NAME JSON: attaches an IAM policy to a user (the
# drop-in HOME/iam/ACCOUNT/users/USER/NAME.json) and reloads kmsd; removed on exit.
attach_policy() {
  local dir="$DRILL_HOME/iam/$1/users/$2"
  mkdir -p "$dir"
  printf '%s\n' "$4" >"$dir/$3.json"
  CLEANUP_FILES+=("$dir/$3.json")
  say "attached IAM policy $3 to arn:aws:iam::$1:user/$2:"
  printf '%s\n' "$4" | sed 's/^/      /'
  at - kms reload-config
  expect_ok
}

# json EXPR: evaluates a python expression on the last JSON output (`d`).
json() { printf '%s' "$OUT" | python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# trail_event NAME: the newest trail record with eventName NAME, as JSON in OUT.
trail_event() {
  at - cloudtrail lookup-events --lookup-attributes "AttributeKey=EventName,AttributeValue=$1" --max-results 1
  expect_ok
  OUT="$(json 'd["Events"][0]["CloudTrailEvent"] if d["Events"] else "{}"')"
}
