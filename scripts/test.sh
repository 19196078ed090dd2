#!/usr/bin/env bash
# The README's second command: installs what is missing and runs every test.
#
#   scripts/test.sh            everything (what CI runs)
#   scripts/test.sh --quick    Rust unit and integration tests only
#
# Tests that need root, FUSE, loop devices or qemu run for real; they fail (never skip)
# when the machine cannot give them what they need.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
quick=0
[ "${1:-}" = "--quick" ] && quick=1

step() { printf '\n=== %s\n' "$*"; }
started=$(date +%s)

step "installing missing packages"
bash scripts/install-deps.sh
if ! command -v cargo >/dev/null 2>&1; then
  echo "atrest: cargo is missing: install Rust (rustup) first" >&2
  exit 1
fi

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "building"
cargo build --workspace --all-targets --locked
# The shell-level tests use the debug binaries: correctness, not speed, is under test
# here (the benchmarks build release), and one build keeps the suite well inside CI's time.
export ATREST_BIN_DIR="$root/target/debug"

step "guest image (for the boot tests)"
export ATREST_GUEST_DIR="$root/target/guest"
bash scripts/make-guest.sh "$ATREST_GUEST_DIR"

step "Rust tests"
cargo test --workspace --locked -- --test-threads=2

if [ "$quick" = 1 ]; then
  exit 0
fi

shell_pass=0
shell_fail=0
failed=()
run_shell() { # run_shell NAME CMD...: one shell-level test
  local name=$1; shift
  step "$name"
  if "$@"; then
    shell_pass=$((shell_pass + 1))
  else
    shell_fail=$((shell_fail + 1))
    failed+=("$name")
  fi
}

run_shell "lab demo (README's first command)" bash scripts/demo.sh --no-install
for drill in scripts/drill-*.sh; do
  [ -e "$drill" ] || continue
  run_shell "$(basename "$drill" .sh)" bash "$drill" --fresh
done
run_shell "README commands" bash scripts/check-readme.sh

step "summary ($(( $(date +%s) - started )) s)"
[ ${#failed[@]} -eq 0 ] || printf 'failed: %s\n' "${failed[@]}"
echo "shell: $shell_pass passed, $shell_fail failed"
[ "$shell_fail" = 0 ]
