#!/usr/bin/env bash
# Puts atrest on PATH: builds the release binaries (atrest, kmsd, atrest-serve-volume) and
# installs them into PREFIX/bin; with --systemd also kmsd's unit (kmsd/kmsd.service, its
# ExecStart pointed at PREFIX/bin/kmsd) and the kmsd system user it runs as.
#
#   scripts/install.sh                     # PREFIX = /usr/local as root, else ~/.local
#   scripts/install.sh --prefix DIR        # anywhere else (DIR/bin must be on PATH)
#   scripts/install.sh --from target/debug # install binaries already built there
#   scripts/install.sh --systemd           # root: also the unit (not enabled: see below)
#
# The same without this script: `cargo install --locked --path . && cargo install --locked
# --path kmsd` (into ~/.cargo/bin). Rust (cargo) must be installed; the Debian packages
# atrest uses at run time (fuse3, qemu, ...) come from scripts/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
if [ "$(id -u)" = 0 ]; then prefix=/usr/local; else prefix="$HOME/.local"; fi
from=""
systemd=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --from) from="${2:?--from needs a directory}"; shift 2 ;;
    --systemd) systemd=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
bins=(atrest kmsd atrest-serve-volume)

if [ -z "$from" ]; then
  command -v cargo >/dev/null || { echo "install.sh: cargo is not installed (https://rustup.rs)" >&2; exit 1; }
  echo "install.sh: building the release binaries (cargo build --release --locked)"
  cargo build --release --locked --bin atrest --bin atrest-serve-volume -p atrest
  cargo build --release --locked --bin kmsd -p kmsd
  from=target/release
fi
for b in "${bins[@]}"; do
  [ -x "$from/$b" ] || { echo "install.sh: no $b in $from" >&2; exit 1; }
done
install -d "$prefix/bin"
for b in "${bins[@]}"; do
  install -m 0755 "$from/$b" "$prefix/bin/$b"
done
echo "install.sh: installed ${bins[*]} into $prefix/bin"

if [ "$systemd" = 1 ]; then
  [ "$(id -u)" = 0 ] || { echo "install.sh: --systemd needs root" >&2; exit 1; }
  id kmsd >/dev/null 2>&1 ||
    useradd --system --home-dir /var/lib/atrest --shell /usr/sbin/nologin kmsd
  sed "s|/usr/local/bin/kmsd|$prefix/bin/kmsd|" kmsd/kmsd.service >/etc/systemd/system/kmsd.service
  chmod 0644 /etc/systemd/system/kmsd.service
  command -v systemctl >/dev/null && systemctl daemon-reload || true
  echo "install.sh: installed /etc/systemd/system/kmsd.service (user kmsd);"
  echo "  start it with: systemctl enable --now kmsd; let alice call it: usermod -aG kmsd alice"
fi

case ":$PATH:" in
  *":$prefix/bin:"*) echo "install.sh: $prefix/bin is on PATH: try \`atrest --help\`" ;;
  *) echo "install.sh: $prefix/bin is not on PATH; add it: export PATH=\"$prefix/bin:\$PATH\"" ;;
esac
