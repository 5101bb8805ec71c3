#!/usr/bin/env bash
# Build every bpf/*.c into OUTDIR/<name>.o (default OUTDIR: bpf/).
#   npm run build:bpf            # or: bash bpf/build.sh [OUTDIR]
# Output is deterministic: the source directory is mapped to "bpf" in the
# debug info / BTF line info, so any checkout produces byte-identical .o.
set -euo pipefail

CLANG="${CLANG:-clang-19}"
SRCDIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
OUTDIR="${1:-$SRCDIR}"

if ! command -v "$CLANG" >/dev/null 2>&1; then
	echo "build.sh: '$CLANG' not found; it is needed to compile the BPF objects." >&2
	echo "          Install it with: apt-get install clang-19   (or set CLANG=/path/to/clang)" >&2
	exit 1
fi

mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd -P)"

ARCH="$(uname -m)"
case "$ARCH" in
	x86_64)  TARGET_ARCH=x86 ;;
	aarch64) TARGET_ARCH=arm64 ;;
	*)       TARGET_ARCH="$ARCH" ;;
esac

CFLAGS=(
	-g -O2 -target bpf -mcpu=v3
	"-D__TARGET_ARCH_${TARGET_ARCH}"
	"-I/usr/include/${ARCH}-linux-gnu"
	-Wall -Werror
	# reproducibility: no absolute checkout path in DWARF / BTF
	"-fdebug-prefix-map=${SRCDIR}=bpf"
	-fdebug-compilation-dir=.
	-fno-ident
)

shopt -s nullglob
srcs=("$SRCDIR"/*.c)
if [ ${#srcs[@]} -eq 0 ]; then
	echo "build.sh: no .c files in $SRCDIR" >&2
	exit 1
fi

cd "$SRCDIR"
status=0
for src in "${srcs[@]}"; do
	name="$(basename "$src" .c)"
	out="$OUTDIR/$name.o"
	if "$CLANG" "${CFLAGS[@]}" -c "$name.c" -o "$out.tmp"; then
		mv -f "$out.tmp" "$out"
		echo "  BPF  $name.c -> $out"
	else
		rm -f "$out.tmp"
		echo "build.sh: failed to compile $name.c" >&2
		status=1
	fi
done
exit $status
