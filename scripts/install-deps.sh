#!/usr/bin/env bash
# Installs what atrest needs: Debian packages (apt) and the pinned Python clients the tests
# drive (a venv, scripts/lib/venv.sh); quiet when all is there.
# Used by both README commands (scripts/demo.sh and scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
want() { # want CMD PACKAGE: queue PACKAGE unless CMD exists
  have_cmd "$1" || need+=("$2")
}
want fusermount3 fuse3
want busybox busybox-static
want cpio cpio
want mkfs.ext4 e2fsprogs
want e2fsck e2fsprogs
want fio fio
want curl curl
want losetup mount
want prlimit util-linux
want openssl openssl
want python3 python3
want zstd zstd
want xz xz-utils
want rclone rclone
want s3cmd s3cmd
python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
python3 -c 'import cryptography' >/dev/null 2>&1 || need+=(python3-cryptography)
# Build: aws-lc-sys compiles AWS-LC (the volumes' XTS) with the C compiler; the tests and
# benches use the system OpenSSL as an XTS oracle through the `openssl` crate (headers
# found with pkg-config).
want cc gcc
want pkg-config pkg-config
pkg-config --exists openssl 2>/dev/null || need+=(libssl-dev)

# qemu: Debian 12's qemu-system (7.2) must come with a qemu-utils of the same version.
# Images that ship a newer backported qemu-utils make apt refuse the pair ("held broken
# packages"), so both are pinned to the qemu-system candidate in one command.
qemu_ok=1
have_cmd qemu-system-x86_64 && have_cmd qemu-img && have_cmd qemu-storage-daemon || qemu_ok=0

if [ ${#need[@]} -gt 0 ] || [ "$qemu_ok" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  # Wait for another apt/dpkg (unattended upgrades, a second checkout) instead of failing.
  apt=(apt-get -o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0 -qq)
  # apt and debconf chatter goes to a log, shown only if a step fails.
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  quietly() { "$@" >>"$log" 2>&1 || { cat "$log" >&2; echo "atrest: failed: $*" >&2; exit 1; }; }
  echo "atrest: installing missing Debian packages: ${need[*]} $([ "$qemu_ok" = 1 ] || echo qemu-system-x86 qemu-utils)" >&2
  quietly $SUDO "${apt[@]}" update
  if [ ${#need[@]} -gt 0 ]; then
    quietly $SUDO "${apt[@]}" install -y --no-install-recommends "${need[@]}"
  fi
  if [ "$qemu_ok" = 0 ]; then
    v=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/{print $2}')
    quietly $SUDO "${apt[@]}" install -y --no-install-recommends --allow-downgrades \
      "qemu-system-x86=$v" "qemu-system-common=$v" "qemu-utils=$v" "qemu-block-extra=$v"
  fi
fi
for c in fusermount3 qemu-system-x86_64 qemu-img qemu-storage-daemon busybox fio mkfs.ext4 curl rclone s3cmd; do
  have_cmd "$c" || { echo "atrest: $c is still missing after apt-get install" >&2; exit 1; }
done

# The Python clients (pinned), into the project venv.
# shellcheck source=scripts/lib/venv.sh
. scripts/lib/venv.sh
venv_install
