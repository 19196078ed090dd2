#!/usr/bin/env bash
# Builds the atrest demo guest from Debian packages only and caches it.
#
#   scripts/make-guest.sh [--marker TEXT] [--refresh] [DIR]
#   scripts/make-guest.sh [--marker TEXT] --root-image FILE
#
# DIR defaults to $ATREST_GUEST_DIR, then $HOME/guest. Outputs in DIR:
#   vmlinuz      kernel from linux-image-cloud-amd64 (apt-get download + dpkg -x, never installed)
#   initrd.img   busybox initramfs: loads the virtio block drivers, mounts /dev/vda, switch_root
#   root.img     ext4 root filesystem with busybox; its /sbin/init prints
#                "atrest-guest: booted from volume <atrest.volume=...> marker=<TEXT>"
#   kernel-version, marker   what was built
# Idempotent: each output is rebuilt only when its inputs changed (kernel part: the
# guest/initramfs-init script; root part: guest/root-init and the marker). --refresh
# re-downloads the kernel. Concurrent runs on the same DIR serialize on DIR/.lock.
# --root-image FILE builds only a root filesystem image (with the marker) at FILE: no
# kernel, no cache (tests and instances make their own root volumes this way).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
marker="atrest demo guest"
refresh=0
dir=""
root_image=""
while [ $# -gt 0 ]; do
	case "$1" in
	--marker)
		[ $# -ge 2 ] || { echo "make-guest: --marker needs a value" >&2; exit 2; }
		marker="$2"
		shift 2
		;;
	--marker=*) marker="${1#--marker=}"; shift ;;
	--refresh) refresh=1; shift ;;
	--root-image)
		[ $# -ge 2 ] || { echo "make-guest: --root-image needs a file" >&2; exit 2; }
		root_image="$2"
		shift 2
		;;
	-h | --help) sed -n '2,15p' "$0"; exit 0 ;;
	-*) echo "make-guest: unknown option $1" >&2; exit 2 ;;
	*)
		[ -z "$dir" ] || { echo "make-guest: more than one directory given" >&2; exit 2; }
		dir="$1"
		shift
		;;
	esac
done
case "$marker" in
*$'\n'* | *$'\r'*) echo "make-guest: the marker must be a single line" >&2; exit 2 ;;
esac
if [ -n "$root_image" ] && [ -n "$dir" ]; then
	echo "make-guest: --root-image and a directory exclude each other" >&2
	exit 2
fi
dir="${dir:-${ATREST_GUEST_DIR:-$HOME/guest}}"
if [ -z "$root_image" ]; then
	mkdir -p "$dir"
	dir="$(cd "$dir" && pwd)"
fi

log() { echo "make-guest: $*" >&2; }

# --- host packages --------------------------------------------------------------------
# qemu-system-x86 and qemu-utils go in ONE apt command: Debian's qemu-system 7.2 would
# otherwise replace a newer qemu-utils and qemu-img would vanish.
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86 qemu-utils)
command -v qemu-img >/dev/null || need+=(qemu-system-x86 qemu-utils)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
if [ ${#need[@]} -gt 0 ]; then
	mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
	log "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y --no-install-recommends "${need[@]}" >&2 ||
		{ apt-get update >&2 && apt-get install -y --no-install-recommends "${need[@]}" >&2; }
fi
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "make-guest: $busybox missing after installing busybox-static" >&2; exit 1; }

# build_root OUT: an ext4 root filesystem with busybox, our init and the marker.
build_root() {
	local out="$1" r
	r="$(mktemp -d "$out.root.XXXXXX")"
	mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root}
	cp "$busybox" "$r/bin/busybox"
	"$busybox" --list-full | while read -r applet; do
		[ -e "$r/$applet" ] || ln -s /bin/busybox "$r/$applet"
	done
	rm -f "$r/sbin/init"
	cp "$here/guest/root-init" "$r/sbin/init"
	chmod 755 "$r/sbin/init"
	printf '%s\n' "$marker" >"$r/etc/atrest-marker"
	echo atrest-guest >"$r/etc/hostname"
	chmod 1777 "$r/tmp"
	rm -f "$out.tmp"
	truncate -s 16M "$out.tmp"
	mkfs.ext4 -q -F -L atrest-root -d "$r" "$out.tmp"
	rm -rf "$r"
	mv -f "$out.tmp" "$out"
}

if [ -n "$root_image" ]; then
	build_root "$root_image"
	echo "$root_image"
	exit 0
fi

exec 9>"$dir/.lock"
flock 9

work="$(mktemp -d "$dir/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

modules=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk evdev button)

# --- kernel + initramfs ---------------------------------------------------------------
bbver="$(dpkg-query -W -f '${Version}' busybox-static)"
initrd_stamp="$(cat "$here/guest/initramfs-init" <(printf '%s\n' "${modules[@]}" "$bbver") | sha256sum | cut -d' ' -f1)"
if [ "$refresh" = 1 ] || [ ! -s "$dir/vmlinuz" ] || [ ! -s "$dir/initrd.img" ] ||
	[ "$(cat "$dir/.initrd.stamp" 2>/dev/null)" != "$initrd_stamp" ]; then
	pkg="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n 1)"
	if [ -z "$pkg" ]; then
		apt-get update >&2
		pkg="$(apt-cache depends linux-image-cloud-amd64 |
			sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n 1)"
	fi
	[ -n "$pkg" ] || { echo "make-guest: cannot resolve linux-image-cloud-amd64 to a kernel package" >&2; exit 1; }
	log "downloading $pkg"
	# (apt warns that it downloads "unsandboxed as root" into a temp dir: harmless.)
	(cd "$work" && apt-get download "$pkg" >&2)
	deb="$(ls "$work"/linux-image-*.deb)"
	dpkg -x "$deb" "$work/kernel"
	vmlinuz="$(ls "$work"/kernel/boot/vmlinuz-* | head -n 1)"
	kver="${vmlinuz##*/vmlinuz-}"
	moddir="$work/kernel/lib/modules/$kver"

	mkdir -p "$work/initrd/bin" "$work/initrd/lib/modules"
	cp "$busybox" "$work/initrd/bin/busybox"
	cp "$here/guest/initramfs-init" "$work/initrd/init"
	chmod 755 "$work/initrd/init"
	for m in "${modules[@]}"; do
		f="$(find "$moddir/kernel" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" -o -name "$m.ko.gz" | head -n 1)"
		[ -n "$f" ] || { echo "make-guest: module $m not found in $pkg" >&2; exit 1; }
		# busybox insmod takes plain .ko files only: decompress here.
		case "$f" in
		*.ko) cp "$f" "$work/initrd/lib/modules/$m.ko" ;;
		*.ko.xz) xz -dc "$f" >"$work/initrd/lib/modules/$m.ko" ;;
		*.ko.zst) zstd -dcq "$f" >"$work/initrd/lib/modules/$m.ko" ;;
		*.ko.gz) gzip -dc "$f" >"$work/initrd/lib/modules/$m.ko" ;;
		esac
	done
	# Uncompressed cpio: the guest then spends no boot time decompressing it.
	(cd "$work/initrd" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) >"$work/initrd.img"
	cp "$vmlinuz" "$work/vmlinuz"
	mv -f "$work/vmlinuz" "$dir/vmlinuz"
	mv -f "$work/initrd.img" "$dir/initrd.img"
	echo "$kver" >"$dir/kernel-version"
	echo "$initrd_stamp" >"$dir/.initrd.stamp"
	log "kernel $kver, initramfs $(du -k "$dir/initrd.img" | cut -f1) KiB"
fi

# --- root filesystem ------------------------------------------------------------------
root_stamp="$(cat "$here/guest/root-init" <(printf 'marker=%s\nbusybox=%s\n' "$marker" "$bbver") | sha256sum | cut -d' ' -f1)"
if [ "$refresh" = 1 ] || [ ! -s "$dir/root.img" ] ||
	[ "$(cat "$dir/.root.stamp" 2>/dev/null)" != "$root_stamp" ]; then
	build_root "$dir/root.img"
	printf '%s\n' "$marker" >"$dir/marker"
	echo "$root_stamp" >"$dir/.root.stamp"
	log "root.img with marker '$marker'"
fi

echo "$dir"
