#!/usr/bin/env bash
# Build the ksmtrace guest kernels from Debian's linux-source-6.1, one tree, one config, variants that differ
# only by patches to mm/ksm.c (see kernel/README.md).
#
#   kernel/build.sh [VARIANT...]      default: unpatched patched counters-unpatched counters-patched
#
#   unpatched           Debian 6.1 as shipped
#   patched             + patches/0001-ksm-rmap_walk_ksm-query-own-pgoff.patch (the change under review)
#   counters-unpatched  + patches/counters.patch (one trace_printk counter line per lock window)
#   counters-patched    + 0001 + counters.patch
#
# Environment:
#   KSMTRACE_KERNEL_CACHE   build cache, outside the repository (default ~/.cache/ksmtrace/kernels)
#   KSMTRACE_KERNEL_SOURCE  source tarball (default /usr/src/linux-source-6.1.tar.xz, package linux-source-6.1)
#   KSMTRACE_KERNEL_JOBS    make -j (default: nproc)
#   VNG                     the virtme-ng command (default: vng on PATH)
#
# Output: $CACHE/bzImage-<variant> (+ .config-<variant>, .stamp-<variant>) and $CACHE/build-times.log
# (one line per build: variant, seconds, first|incremental). A variant whose config and patches did not
# change since its last build is not rebuilt. Only mm/ksm.c differs between variants, so after the first
# build each variant recompiles mm/ksm.o and relinks.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${KSMTRACE_KERNEL_CACHE:-$HOME/.cache/ksmtrace/kernels}
SRC_TAR=${KSMTRACE_KERNEL_SOURCE:-/usr/src/linux-source-6.1.tar.xz}
JOBS=${KSMTRACE_KERNEL_JOBS:-$(nproc)}
VNG=${VNG:-vng}
FRAGMENT=$HERE/ksmtrace.config
P_RANGE=$HERE/patches/0001-ksm-rmap_walk_ksm-query-own-pgoff.patch
P_COUNTERS=$HERE/patches/counters.patch

die() { echo "kernel/build.sh: $*" >&2; exit 2; }
log() { echo "[$(date -u +%H:%M:%S)] $*"; }

patches_of() {
    case $1 in
        unpatched) ;;
        patched) echo "$P_RANGE" ;;
        counters-unpatched) echo "$P_COUNTERS" ;;
        counters-patched) echo "$P_RANGE"; echo "$P_COUNTERS" ;;
        *) die "unknown variant '$1' (unpatched, patched, counters-unpatched, counters-patched)" ;;
    esac
}

[ $# -gt 0 ] || set -- unpatched patched counters-unpatched counters-patched
for v in "$@"; do patches_of "$v" >/dev/null; done
[ -r "$SRC_TAR" ] || die "no kernel source at $SRC_TAR (apt-get install linux-source-6.1)"
for tool in make gcc bc bison flex pahole cpio patch; do
    command -v "$tool" >/dev/null || die "missing $tool (apt-get install build-essential bc bison flex libelf-dev libssl-dev dwarves cpio kmod)"
done

mkdir -p "$CACHE"
NAME=$(basename "$SRC_TAR" .tar.xz)
TREE=$CACHE/$NAME
ORIG=$CACHE/$NAME.ksm.c.orig
TIMES=$CACHE/build-times.log

if [ ! -f "$TREE/Makefile" ]; then
    log "unpacking $SRC_TAR into $CACHE"
    tar -C "$CACHE" -xf "$SRC_TAR"
fi
[ -f "$ORIG" ] || cp -p "$TREE/mm/ksm.c" "$ORIG"
cd "$TREE"

# One config for every variant (none of the patches touches Kconfig).
CFG_STAMP=$(cat "$FRAGMENT" | sha256sum | cut -c1-16)
if [ ! -f .config ] || [ "$(cat .ksmtrace-config-stamp 2>/dev/null)" != "$CFG_STAMP" ]; then
    command -v "$VNG" >/dev/null || die "no vng on PATH (pip install virtme-ng)"
    log "config: vng --kconfig + $FRAGMENT"
    "$VNG" --kconfig
    grep -E '^CONFIG_[A-Z0-9_]+=' "$FRAGMENT" | while IFS== read -r opt val; do
        case $val in
            y) scripts/config --file .config -e "${opt#CONFIG_}" ;;
            n) scripts/config --file .config -d "${opt#CONFIG_}" ;;
            *) scripts/config --file .config --set-val "${opt#CONFIG_}" "$val" ;;
        esac
    done
    make olddefconfig >/dev/null
    bad=0
    while IFS= read -r line; do
        case $line in
            *=n) grep -qx "${line%=n}=y" .config && { echo "  not unset: $line" >&2; bad=1; } ;;
            *) grep -qx "$line" .config || { echo "  not set after olddefconfig: $line" >&2; bad=1; } ;;
        esac
    done < <(grep -E '^CONFIG_[A-Z0-9_]+=' "$FRAGMENT")
    [ $bad = 0 ] || die "the config fragment does not hold (a dependency is missing)"
    echo "$CFG_STAMP" > .ksmtrace-config-stamp
fi

for v in "$@"; do
    mapfile -t ps < <(patches_of "$v")
    stamp=$( { echo "$CFG_STAMP"; for p in "${ps[@]}"; do basename "$p"; cat "$p"; done; } | sha256sum | cut -c1-16)
    if [ -f "$CACHE/bzImage-$v" ] && [ "$(cat "$CACHE/.stamp-$v" 2>/dev/null)" = "$stamp" ]; then
        log "$v: up to date ($CACHE/bzImage-$v)"
        continue
    fi
    log "$v: mm/ksm.c = Debian 6.1${ps:+ + $(for p in "${ps[@]}"; do basename "$p"; done | paste -sd' ')}"
    cp "$ORIG" mm/ksm.c   # a fresh mtime: make recompiles mm/ksm.o only
    for p in "${ps[@]}"; do
        patch -p1 -F0 --no-backup-if-mismatch --quiet < "$p" || die "$(basename "$p") does not apply to $NAME"
    done
    kind=incremental; [ -f vmlinux ] || kind=first
    t0=$(date +%s)
    make -j"$JOBS" bzImage
    t1=$(date +%s)
    cp arch/x86/boot/bzImage "$CACHE/bzImage-$v"
    cp .config "$CACHE/.config-$v"
    echo "$stamp" > "$CACHE/.stamp-$v"
    echo "$v $((t1 - t0)) $kind $(date -u +%FT%TZ) $(nproc)cpus -j$JOBS" >> "$TIMES"
    log "$v: built in $((t1 - t0)) s ($kind) -> $CACHE/bzImage-$v"
done
cp "$ORIG" mm/ksm.c
