#!/bin/sh
# Builds a read-only ext4 image holding the checkout's node_modules and the node binary, for
# scripts/vm/run.sh (the guest mounts it from a virtio disk instead of reading thousands of small
# files over 9p).
# Usage: image.sh NODE_MODULES_DIR NODE_BINARY OUT.ext4
set -eu
nm=$1 node=$2 out=$3
command -v mkfs.ext4 >/dev/null 2>&1 || PATH=$PATH:/sbin:/usr/sbin
command -v mkfs.ext4 >/dev/null 2>&1 || { echo "image: mkfs.ext4 not found (apt-get install e2fsprogs)" >&2; exit 1; }
stage=$(mktemp -d "$(dirname "$out")/stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
# Hard links when the cache is on the same file system as the checkout (instant), else a copy.
cp -al "$nm" "$stage/node_modules" 2>/dev/null || { rm -rf "$stage/node_modules"; cp -a "$nm" "$stage/node_modules"; }
cp "$node" "$stage/node"
kib=$(du -sk "$stage" | cut -f1)
files=$(find "$stage" | wc -l)
tmp="$out.tmp.$$"
rm -f "$tmp"
mkfs.ext4 -q -F -L tsbpf-nm -b 4096 -m 0 -N $((files + files / 4 + 1024)) -O ^has_journal \
  -E root_owner=0:0 -d "$stage" "$tmp" "$((kib + kib / 5 + 32768))K" >/dev/null
mv "$tmp" "$out"
