#!/bin/sh
# Builds the guest initramfs for scripts/vm/run.sh: static busybox, scripts/vm/init as /init, and the
# kernel modules needed to reach the host's files (virtio PCI, console and block, 9p, overlay, ext4) decompressed,
# in dependency order.
# Usage: initramfs.sh KERNEL_ROOT KERNEL_VERSION OUT.cpio
#   KERNEL_ROOT: an extracted kernel package (KERNEL_ROOT/lib/modules/KERNEL_VERSION), or "" for a kernel
#   with everything built in.
set -eu
kroot=$1 kver=$2 out=$3
here=$(cd "$(dirname "$0")" && pwd)
busybox=$(command -v busybox || true)
[ -n "$busybox" ] || { echo "initramfs: busybox not found (apt-get install busybox-static)" >&2; exit 1; }
if ! file_out=$(LC_ALL=C readelf -d "$busybox" 2>&1) || printf '%s' "$file_out" | grep -q NEEDED; then
  echo "initramfs: $busybox is not statically linked (apt-get install busybox-static)" >&2; exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$work/proc" "$work/sys" "$work/dev" "$work/modules" "$work/newroot" "$work/tmp"
cp "$busybox" "$work/bin/busybox"
ln -s busybox "$work/bin/sh"
cp "$here/init" "$work/init"
chmod 755 "$work/init"

mods="$kroot/lib/modules/$kver"
if [ -n "$kroot" ] && [ -d "$mods" ]; then
  [ -f "$mods/modules.dep" ] || depmod -b "$kroot" "$kver"
  : > "$work/modules.load"
  # Required first, then what the tests use when the kernel has it (a missing one is skipped).
  for m in virtio_pci virtio_console virtio_blk 9pnet_virtio 9p overlay ext4 \
           veth sch_ingress cls_bpf act_bpf; do
    modprobe -d "$kroot" -S "$kver" --show-depends "$m" 2>/dev/null || true
  done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }' > "$work/list"
  while read -r ko; do
    base=$(basename "$ko")
    name=${base%.xz}; name=${name%.zst}; name=${name%.gz}
    case "$base" in
      *.ko.xz) xz -dc "$ko" > "$work/modules/$name" ;;
      *.ko.zst) zstd -qdc "$ko" > "$work/modules/$name" ;;
      *.ko.gz) gzip -dc "$ko" > "$work/modules/$name" ;;
      *) cp "$ko" "$work/modules/$name" ;;
    esac
    echo "$name" >> "$work/modules.load"
  done < "$work/list"
  rm -f "$work/list"
fi

# Uncompressed: unpacking is faster than decompressing under TCG, and it is only a few MB.
tmp="$out.tmp.$$"
(cd "$work" && find . -mindepth 1 | sort | if command -v cpio >/dev/null; then
   cpio --quiet -o -H newc -R 0:0; else "$busybox" cpio -o -H newc -R 0:0; fi) > "$tmp"
mv "$tmp" "$out"
