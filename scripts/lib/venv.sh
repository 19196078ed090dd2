# The project's Python venv: the real AWS clients the tests and benchmarks drive (the `aws`
# CLI, boto3, aws-encryption-sdk-cli; moto for one benchmark), pinned in
# scripts/requirements*.txt. Sourced by scripts; never relies on a Python client that
# happens to be installed on the machine.
#
#   . scripts/lib/venv.sh       sets ATREST_VENV and puts its bin/ first on PATH
#   venv_install               makes or updates the venv (scripts/install-deps.sh calls it)
#   venv_install_bench         adds the benchmark-only packages (moto[server])
#
# ATREST_VENV may name another directory (default: REPO/.venv).

_venv_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export ATREST_VENV="${ATREST_VENV:-$_venv_repo/.venv}"

# venv_sync REQUIREMENTS STAMP: installs REQUIREMENTS unless STAMP says it already did.
_venv_sync() {
  local req=$1 stamp=$2 want
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ -x "$ATREST_VENV/bin/python" ] && [ "$(cat "$ATREST_VENV/$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  if [ ! -x "$ATREST_VENV/bin/python" ]; then
    echo "atrest: making the Python venv $ATREST_VENV" >&2
    python3 -m venv "$ATREST_VENV" || return 1
  fi
  echo "atrest: installing pinned Python clients from $(basename "$req") into $ATREST_VENV" >&2
  "$ATREST_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-input -r "$req" || return 1
  echo "$want" >"$ATREST_VENV/$stamp"
}

venv_install() {
  _venv_sync "$_venv_repo/scripts/requirements.txt" .atrest-requirements
}

venv_install_bench() {
  venv_install && _venv_sync "$_venv_repo/scripts/requirements-bench.txt" .atrest-requirements-bench
}

case ":$PATH:" in
  *":$ATREST_VENV/bin:"*) ;;
  *) export PATH="$ATREST_VENV/bin:$PATH" ;;
esac
