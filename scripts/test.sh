#!/usr/bin/env bash
# The README's second command: installs what is missing and runs every test.
#
#   scripts/test.sh            everything (what CI runs)
#   scripts/test.sh --quick    the checks and the Rust tests only (no shell runs)
#
# Tests that need root, FUSE, loop devices or qemu run for real; they fail (never skip)
# when the machine cannot give them what they need.
#
# Every check, every Rust test binary and every shell run runs even after a failure; the
# last line is `N passed, N failed` over all of them (each Rust test counts as one, each
# check and shell run as one; a test binary that dies without reporting counts as one
# failure), and the exit status is non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
quick=0
[ "${1:-}" = "--quick" ] && quick=1

step() { printf '\n=== %s\n' "$*"; }
started=$(date +%s)
passed=0
failed=0
failures=()
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); failures+=("$1"); }
summary() {
  step "summary ($(($(date +%s) - started)) s)"
  if [ ${#failures[@]} -gt 0 ]; then
    printf 'failed: %s\n' "${failures[@]}"
  fi
  echo "$passed passed, $failed failed"
  [ "$failed" = 0 ]
  exit $?
}
check() { # check NAME CMD...: one check or shell run, counted as one
  local name=$1
  shift
  step "$name"
  if "$@"; then pass; else
    echo "--- FAILED: $name" >&2
    fail "$name"
  fi
}

step "installing missing packages and clients"
if ! bash scripts/install-deps.sh; then
  fail "installing dependencies (scripts/install-deps.sh)"
  summary
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "atrest: cargo is missing: install Rust (rustup) first" >&2
  fail "cargo present"
  summary
fi
# shellcheck source=scripts/lib/venv.sh
. scripts/lib/venv.sh
# `atrest up` (the demo, the README) listens on any free port here, never on 4566.
export ATREST_LISTEN=127.0.0.1:0

check "format (cargo fmt --check)" cargo fmt --all -- --check
check "lints (cargo clippy -D warnings)" \
  cargo clippy --workspace --all-targets --locked -- -D warnings
check "walls (scripts/walls.sh: kmsd's surface, volume/mount apart, pure cores)" \
  bash scripts/walls.sh

step "building"
if ! cargo build --workspace --all-targets --locked; then
  fail "build"
  summary
fi
# The shell-level tests use the debug binaries: correctness, not speed, is under test
# here (the benchmarks build release), and one build keeps the suite well inside CI's time.
export ATREST_BIN_DIR="$root/target/debug"

step "guest image (for the boot tests)"
export ATREST_GUEST_DIR="$root/target/guest"
if ! bash scripts/make-guest.sh "$ATREST_GUEST_DIR"; then
  fail "guest image (scripts/make-guest.sh)"
fi

# Runs `cargo test ARGS...` and counts its tests: every "test result" line adds its
# passed and failed counts; a test binary that started ("Running ...", "Doc-tests ...")
# and never printed its result (it crashed, or was killed) counts as one failure.
rust_tests() { # rust_tests LABEL ARGS...
  local label=$1
  shift
  local log
  log=$(mktemp)
  step "Rust tests: $label"
  cargo test "$@" 2>&1 | tee "$log"
  local counts
  counts=$(python3 - "$log" <<'PY'
import re, sys
started = reported = ok = bad = 0
names = []
current = None
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"\s+(Running|Doc-tests)\s+(.+?)(?: \(|$)", line)
    if m:
        if current is not None:
            names.append(current)
        started += 1
        current = m.group(2)
        continue
    m = re.match(r"test result: \w+\. (\d+) passed; (\d+) failed", line)
    if m:
        reported += 1
        ok += int(m.group(1))
        bad += int(m.group(2))
        current = None
if current is not None:
    names.append(current)
print(ok, bad, started - reported, " ".join(names))
PY
)
  rm -f "$log"
  local ok bad died names
  read -r ok bad died names <<<"$counts"
  passed=$((passed + ok))
  failed=$((failed + bad + died))
  [ "$bad" = 0 ] || failures+=("$bad Rust test(s) in $label (see 'FAILED' above)")
  [ "$died" = 0 ] || failures+=("$died test binary(ies) in $label died without a result: $names")
  echo "--- $label: $ok passed, $bad failed, $died died"
}

rust_tests "workspace" --workspace --locked --no-fail-fast -- --test-threads=2

if [ "$quick" = 1 ]; then
  summary
fi

# A host whose /dev/kvm is present but broken: qemu under -accel kvm aborts the way a
# nested KVM does (`failed to set MSR`, exit 134). The boot tests must still pass (under
# TCG), which they do only if the KVM probe concludes "no KVM" instead of giving up.
kvm_wrapper=$(mktemp -d)
cat >"$kvm_wrapper/qemu-system-x86_64" <<EOF
#!/bin/sh
case " \$* " in
  *" -accel kvm "*|*" -enable-kvm "*|*"accel=kvm"*)
    echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x0" >&2
    kill -ABRT \$\$ ;;
esac
exec $(command -v qemu-system-x86_64) "\$@"
EOF
chmod +x "$kvm_wrapper/qemu-system-x86_64"
PATH="$kvm_wrapper:$PATH" rust_tests "boot tests with a qemu that aborts under KVM" \
  --locked --no-fail-fast --test boot_guest --test ec2_boot -- --test-threads=2
rm -rf "$kvm_wrapper"

check "lab demo (README's first command)" bash scripts/demo.sh --no-install
for drill in scripts/drill-*.sh; do
  [ -e "$drill" ] || continue
  check "$(basename "$drill" .sh)" bash "$drill" --fresh
done
check "README commands" bash scripts/check-readme.sh

summary
