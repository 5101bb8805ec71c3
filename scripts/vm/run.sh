#!/bin/sh
# Runs the tap suite (or a command, or an interactive shell) as root inside a qemu VM booted with a
# chosen Debian kernel. See scripts/vm/README.md.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
prog=tsbpf-vm

usage() {
  cat <<'USAGE'
usage: scripts/vm/run.sh [options] [--] [test files...]
  --kernel K      debian-6.1 | debian-6.12 (default) | debian-X.Y | PATH (a linux-image .deb, an extracted
                  package directory with boot/ and lib/modules/, or a bzImage/vmlinux with 9p, overlay and
                  virtio built in)
  --mem MIB       guest memory (default 1536)
  --cpus N        guest CPUs (default 2)
  --cpu MODEL     qemu CPU model (default qemu64 plus SSE4.2 under TCG, host under KVM)
  --timeout SEC   kill qemu after SEC seconds (default 3600; 0 = none)
  --shell         interactive shell in the guest instead of the tests (serial console on stdio;
                  Ctrl-A x quits qemu)
  --cmd 'CMD'     run a shell command in the checkout instead of the tests
  --kvm           use KVM instead of TCG (does not work on every host)
  --append ARGS   extra kernel command line arguments
  --no-image      read node_modules and node over 9p instead of from an ext4 image (slower)
  --coverage      keep tap's coverage (off in the VM by default: it only slows the run down)
  --tap-timeout S tap's per-file timeout in the VM (default 1200: JavaScript runs 10-25x slower under TCG)
  --verbose       print the qemu command line, keep the kernel console log
  --all           run the whole suite (hours under TCG) instead of the default subset
Test files are passed to tap; none means the subset listed in scripts/vm/tests (the hooks this host lacks,
networking, and a few kernel-dependent files). Exits with the command's exit code.
Cache: $TSBPF_VM_CACHE, else /var/cache/tsbpf-vm (root) or ~/.cache/tsbpf-vm.
USAGE
}

kernel=debian-6.12 mem=1536 cpus=2 cpu= tap_timeout=1200 timeout=3600 mode=run cmd= accel=tcg append= verbose=0 image=1 coverage=0 all=0
while [ $# -gt 0 ]; do
  case "$1" in
    --kernel) kernel=$2; shift 2 ;;
    --kernel=*) kernel=${1#*=}; shift ;;
    --mem) mem=$2; shift 2 ;;
    --mem=*) mem=${1#*=}; shift ;;
    --cpus) cpus=$2; shift 2 ;;
    --cpu) cpu=$2; shift 2 ;;
    --cpus=*) cpus=${1#*=}; shift ;;
    --timeout) timeout=$2; shift 2 ;;
    --timeout=*) timeout=${1#*=}; shift ;;
    --shell) mode=shell; shift ;;
    --cmd) cmd=$2; shift 2 ;;
    --cmd=*) cmd=${1#*=}; shift ;;
    --kvm) accel=kvm; shift ;;
    --append) append=$2; shift 2 ;;
    --append=*) append=${1#*=}; shift ;;
    --verbose|-v) verbose=1; shift ;;
    --no-image) image=0; shift ;;
    --coverage) coverage=1; shift ;;
    --tap-timeout) tap_timeout=$2; shift 2 ;;
    --all) all=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    -*) echo "$prog: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) break ;;
  esac
done

say() { echo "$prog: $*" >&2; }
die() { say "$*"; exit 2; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found (apt-get install $2)"; }
need qemu-system-x86_64 qemu-system-x86
need busybox busybox-static
need dpkg-deb dpkg
need depmod kmod
need readelf binutils
case "$repo" in *[[:space:]]*) die "the checkout path must not contain white space: $repo" ;; esac

if [ -n "${TSBPF_VM_CACHE:-}" ]; then cache=$TSBPF_VM_CACHE
elif [ "$(id -u)" = 0 ]; then cache=/var/cache/tsbpf-vm
else cache=${XDG_CACHE_HOME:-$HOME/.cache}/tsbpf-vm
fi
mkdir -p "$cache/kernels"
cache=$(cd "$cache" && pwd)
case "$cache" in *[[:space:]]*) die "the cache path must not contain white space: $cache" ;; esac

t0=$(date +%s)

# --- kernel: sets kroot (extracted package, or empty), kver, kimage (what qemu boots) -----------------

# Extracts a linux-image .deb into $cache/kernels/VERSION (once) and prepares it: modules.dep and,
# when possible, the uncompressed PVH vmlinux.
install_deb() { # DEB KVER
  dst=$cache/kernels/$2
  [ -f "$dst/.ok" ] && return 0
  tmp=$dst.tmp.$$
  rm -rf "$tmp"; mkdir -p "$tmp"
  dpkg-deb -x "$1" "$tmp" || { rm -rf "$tmp"; die "cannot extract $1"; }
  [ -f "$tmp/boot/vmlinuz-$2" ] || { rm -rf "$tmp"; die "$1 has no boot/vmlinuz-$2"; }
  depmod -b "$tmp" "$2"
  "$here/vmlinux.sh" "$tmp/boot/vmlinuz-$2" "$tmp/boot/vmlinux-$2" 2>/dev/null || true
  touch "$tmp/.ok"
  rm -rf "$dst"; mv "$tmp" "$dst"
}

debian_kernel() { # X.Y
  series=$(printf '%s' "$1" | sed 's/\./\\./g')
  pkg=$(apt-cache search --names-only "^linux-image-$series[.-][^ ]*-amd64\$" 2>/dev/null | awk '{print $1}' |
        grep -Ev -- '-(cloud|rt|dbg|unsigned)-' | grep -E "^linux-image-$series\\.[0-9]" | sort -V | tail -1 || true)
  if [ -z "$pkg" ]; then
    # No apt metadata (offline, or not Debian): the newest cached kernel of that series.
    kver=$(ls "$cache/kernels" 2>/dev/null | grep -E "^$series\\.[0-9][^ ]*-amd64\$" | grep -v '\.tmp\.' | sort -V | tail -1 || true)
    [ -n "$kver" ] && [ -f "$cache/kernels/$kver/.ok" ] || die "no linux-image-$1.*-amd64 package in apt (apt-get update?) and none cached"
    return 0
  fi
  kver=${pkg#linux-image-}
  [ -f "$cache/kernels/$kver/.ok" ] && return 0
  say "downloading $pkg"
  mkdir -p "$cache/debs"
  (cd "$cache/debs" && apt-get download -q "$pkg" >/dev/null 2>&1) || die "apt-get download $pkg failed (apt-get update?)"
  deb=$(ls "$cache/debs/${pkg}_"*.deb | head -1)
  install_deb "$deb" "$kver"
  rm -f "$deb"
}

kroot= kver= kimage=
case "$kernel" in
  debian-*)
    debian_kernel "${kernel#debian-}"
    kroot=$cache/kernels/$kver ;;
  *.deb)
    [ -f "$kernel" ] || die "no such file: $kernel"
    kver=$(dpkg-deb -f "$kernel" Package | sed 's/^linux-image-//')
    install_deb "$kernel" "$kver"
    kroot=$cache/kernels/$kver ;;
  *)
    if [ -d "$kernel" ]; then
      kroot=$(cd "$kernel" && pwd)
      kver=$(ls "$kroot/lib/modules" 2>/dev/null | head -1)
      [ -n "$kver" ] || die "$kernel has no lib/modules/VERSION"
      [ -f "$kroot/lib/modules/$kver/modules.dep" ] || die "run: depmod -b $kroot $kver"
      case "$kroot" in *[[:space:]]*) die "the kernel path must not contain white space" ;; esac
    elif [ -f "$kernel" ]; then
      kimage=$(cd "$(dirname "$kernel")" && pwd)/$(basename "$kernel")
    else
      die "unknown kernel: $kernel (debian-6.1, debian-6.12, or a path)"
    fi ;;
esac
if [ -z "$kimage" ]; then
  if [ -f "$kroot/boot/vmlinux-$kver" ]; then kimage=$kroot/boot/vmlinux-$kver
  else kimage=$(ls "$kroot/boot/vmlinuz-$kver" "$kroot"/boot/vmlinuz* 2>/dev/null | head -1)
  fi
  [ -n "$kimage" ] && [ -f "$kimage" ] || die "no kernel image under $kroot/boot"
fi

# --- initramfs, cached per kernel and per version of the builder ------------------------------------
ihash=$(cat "$here/init" "$here/initramfs.sh" "$(command -v busybox)" | sha256sum | cut -c1-12)
if [ -n "$kroot" ] && [ -w "$kroot" ]; then initrd=$kroot/initramfs-$ihash.cpio
else initrd=$cache/initramfs-${kver:-builtin}-$ihash.cpio
fi
if [ ! -f "$initrd" ]; then
  "$here/initramfs.sh" "$kroot" "$kver" "$initrd" || die "building the initramfs failed"
fi

# --- node_modules + node image, cached per checkout and per content -------------------------------
node=$(command -v node || true)
[ -n "$node" ] && node=$(readlink -f "$node")
case "$node" in *[[:space:]]*) image=0 ;; esac
img=
if [ "$image" = 1 ] && [ -n "$node" ] && [ -d "$repo/node_modules" ]; then
  mkdir -p "$cache/images"
  rkey=$(printf '%s' "$repo" | sha256sum | cut -c1-8)
  ckey=$( { ls -l --time-style=+%s.%N "$node" "$repo/node_modules/.package-lock.json" 2>/dev/null
            cat "$repo/node_modules/.package-lock.json" 2>/dev/null; cat "$here/image.sh"; } | sha256sum | cut -c1-12)
  img=$cache/images/nm-$rkey-$ckey.ext4
  if [ ! -f "$img" ]; then
    say "building the node_modules image"
    if "$here/image.sh" "$repo/node_modules" "$node" "$img"; then
      for old in "$cache/images/nm-$rkey-"*.ext4; do [ "$old" = "$img" ] || rm -f "$old"; done
    else
      say "building the image failed; reading node_modules over 9p"; img=
    fi
  fi
fi

# --- the run's directory: state shared with the guest (command, environment, exit code), console log --
run=$(mktemp -d "${TMPDIR:-/tmp}/tsbpf-vm.XXXXXX")
state=$run/state
mkdir -p "$state"
log=$run/console.log
keep=0
cleanup() { [ "$keep" = 1 ] || rm -rf "$run"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }   # shell-quote one word
{
  echo "export PATH=$(q "$PATH")"
  echo "export HOME=/root LANG=C.UTF-8 TSBPF_VM=1 TSBPF_VM_KERNEL=$(q "$kver")"
  # Type-checking every test file again under TCG costs minutes; the host run type-checks the same sources.
  echo "export TS_NODE_TRANSPILE_ONLY=1"
  echo "export TSBPF_REPO=$(q "$repo")"
  [ -n "${CI:-}" ] && echo "export CI=$(q "$CI")"
  [ "$mode" = shell ] && echo "export TERM=$(q "${TERM:-linux}")"
  true
} > "$state/env"
{
  echo 'cut -d" " -f1 /proc/uptime > /run/tsbpf-vm/started'
  echo 'ulimit -l unlimited 2>/dev/null || true'
  if [ -n "$cmd" ]; then
    printf '%s\n' "$cmd"
  else
    # The checkout's own tap (what `npx tap` runs), without loading npm first.
    if [ $# -eq 0 ] && [ "$all" = 0 ]; then
      # shellcheck disable=SC2046
      set -- $(grep -v '^#' "$here/tests")
    fi
    [ "$coverage" = 1 ] || set -- --disable-coverage "$@"
    set -- --timeout="$tap_timeout" "$@"
    printf 'if [ -x node_modules/.bin/tap ]; then set -- node_modules/.bin/tap; else set -- npx tap; fi\n'
    printf 'exec "$@"'
    for a in "$@"; do printf ' %s' "$(q "$a")"; done
    printf '\n'
  fi
} > "$state/cmd"

# --- qemu ---------------------------------------------------------------------------------------------
set -- qemu-system-x86_64 -nodefaults -no-user-config -display none -no-reboot \
  -M q35 -m "$mem" -smp "$cpus"
# Under TCG a plain x86-64-v2 CPU runs node faster than "-cpu max" (whose AVX is emulated).
if [ "$accel" = kvm ]; then set -- "$@" -accel kvm -cpu "${cpu:-host}"
else set -- "$@" -accel tcg -cpu "${cpu:-qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt}"; fi
if [ "$(od -An -c -N 4 "$kimage" | tr -d ' ')" = 177ELF ] && [ -f /usr/share/qemu/qboot.rom ]; then
  set -- "$@" -bios /usr/share/qemu/qboot.rom      # PVH entry: the small BIOS is enough, and faster
fi
cmdline="console=ttyS0 panic=-1 rdinit=/init mitigations=off tsc=reliable no_timer_check"
cmdline="$cmdline i8042.noaux i8042.nokbd i8042.nopnp 8250.nr_uarts=1 random.trust_cpu=on"
cmdline="$cmdline TSBPF_REPO=$repo TSBPF_KVER=$kver TSBPF_KDIR=$kroot TSBPF_MODE=$mode"
if [ -n "$img" ]; then
  cmdline="$cmdline TSBPF_IMAGE=1 TSBPF_NODE=$node"
  set -- "$@" -drive "file=$img,if=none,id=nm,format=raw,readonly=on" -device virtio-blk-pci,drive=nm
fi
[ "$mode" = shell ] && cmdline="$cmdline quiet"
[ -n "$append" ] && cmdline="$cmdline $append"
set -- "$@" -kernel "$kimage" -initrd "$initrd" -append "$cmdline" \
  -fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap \
  -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
  -fsdev local,id=repo,path="$repo",security_model=none,multidevs=remap \
  -device virtio-9p-pci,fsdev=repo,mount_tag=repo \
  -fsdev local,id=state,path="$state",security_model=none \
  -device virtio-9p-pci,fsdev=state,mount_tag=state \
  -device virtio-serial-pci \
  -chardev file,id=out,path=/proc/self/fd/3 \
  -device virtserialport,chardev=out,name=vm.stdout
if [ "$mode" = shell ]; then
  set -- "$@" -chardev stdio,id=con,mux=on,signal=off -serial chardev:con -mon chardev=con,mode=readline
else
  set -- "$@" -serial "file:$log" -monitor none
fi
[ "$timeout" -gt 0 ] 2>/dev/null && set -- timeout -k 10 "$timeout" "$@"

[ "$verbose" = 1 ] && say "kernel $kver ($kimage), $mem MiB, $cpus CPU(s), $accel; $*"
say "booting ${kver:-$kimage} ($accel, $mem MiB, $cpus CPUs)"
t1=$(date +%s)
set +e
if [ "$mode" = shell ]; then
  "$@"
  qrc=$?
else
  # qemu writes the guest's output to fd 3. Through a pipe to cat, not our stdout itself: qemu reopens
  # /proc/self/fd/3, and a reopened regular file would have its own offset (and overwrite, or be
  # overwritten by, what we print).
  exec 4>&1
  { "$@" 3>&1 >&4 4>&-; echo $? > "$run/qemu.rc"; } | cat
  exec 4>&-
  qrc=$(cat "$run/qemu.rc" 2>/dev/null || echo 125)
fi
set -e
t2=$(date +%s)

if [ -f "$state/rc" ]; then
  rc=$(cat "$state/rc")
  started=$(cat "$state/started" 2>/dev/null || echo '?')
  say "exit $rc; kernel $kver: command started ${started}s after boot, qemu ran $((t2 - t1))s, $((t2 - t0))s in all"
  if [ "$rc" != 0 ] || [ "$verbose" = 1 ]; then keep=1; say "kernel console log: $log"; fi
  exit "$rc"
fi
if [ "$mode" = shell ] && [ "$qrc" = 0 ]; then exit 0; fi
keep=1
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then say "timed out after ${timeout}s; qemu killed"; rc=124
else say "the guest stopped without an exit code (qemu exit $qrc)"; rc=125
fi
say "kernel console log: $log"
tail -n 20 "$log" 2>/dev/null | sed "s/^/$prog console: /" >&2 || true
exit "$rc"
