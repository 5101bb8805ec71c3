#!/bin/sh
# Extracts the uncompressed ELF vmlinux from a bzImage (the compressed payload its setup header points
# to) so qemu can boot it through the PVH entry point, skipping in-guest decompression.
# Usage: vmlinux.sh BZIMAGE OUT   (exit 1 when the result is not an ELF with a Xen PVH note)
set -eu
img=$1 out=$2
u8() { od -An -t u1 -j "$1" -N 1 "$img" | tr -d ' '; }
u32() { od -An -t u4 -j "$1" -N 4 "$img" | tr -d ' '; }
[ "$(od -An -c -j 514 -N 4 "$img" | tr -d ' ')" = HdrS ] || { echo "vmlinux: $img is not a bzImage" >&2; exit 1; }
setup_sects=$(u8 497); [ "$setup_sects" -eq 0 ] && setup_sects=4
start=$(( (setup_sects + 1) * 512 + $(u32 584) ))   # payload_offset (0x248)
len=$(u32 588)                                      # payload_length (0x24c)
magic=$(od -An -t x1 -j "$start" -N 4 "$img" | tr -d ' ')
case "$magic" in
  fd377a58) dec="xz -dc" ;;
  28b52ffd) dec="zstd -qdc" ;;
  1f8b*) dec="gzip -dc" ;;
  04224d18) dec="lz4 -dc" ;;
  *) echo "vmlinux: unknown payload compression (magic $magic)" >&2; exit 1 ;;
esac
tmp="$out.tmp.$$"
# The payload ends with the 4-byte uncompressed size, which decompressors call trailing garbage.
tail -c +"$((start + 1))" "$img" | head -c "$len" | $dec > "$tmp" 2>/dev/null || true
if [ "$(od -An -c -N 4 "$tmp" | tr -d ' ')" = 177ELF ] && LC_ALL=C readelf -n "$tmp" 2>/dev/null | grep -E 'Xen' | grep -qiE '0x00000012|PHYS32'; then   # XEN_ELFNOTE_PHYS32_ENTRY
  mv "$tmp" "$out"
else
  rm -f "$tmp"; echo "vmlinux: no PVH-capable ELF in $img" >&2; exit 1
fi
