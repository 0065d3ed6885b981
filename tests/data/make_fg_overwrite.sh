#!/bin/sh
# Re-create tests/data/fg_overwrite.trace.gz (+ .meta.json): a real function_graph capture on Debian's 6.1
# kernel whose CPU 0 buffer overwrote silently (see tests/data/README.md). Needs qemu-system-x86 and
# virtme-ng (pip install virtme-ng) on PATH and /boot/vmlinuz-6.1.0-*-amd64; takes a few minutes under TCG.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
kernel=${KERNEL:-$(ls /boot/vmlinuz-6.1.0-*-amd64 | tail -n 1)}
timeout ${TIMEOUT:-1500} vng --run "$kernel" --disable-kvm --memory 3G --cpus 2 \
    --numa 1536M,cpus=0 --numa 1536M,cpus=1 --rwdir "$out" -- \
    "PAGES=${PAGES:-2000} VMAS=${VMAS:-4} FLIP_AT=${FLIP_AT:-50000} BUF0_KB=${BUF0_KB:-384} BUF1_KB=${BUF1_KB:-1024} \
     python3 $here/fg_overwrite_guest.py $out" </dev/null
gzip -9 -n -c "$out/fg_overwrite.trace" > "$here/fg_overwrite.trace.gz"
cp "$out/fg_overwrite.trace.meta.json" "$here/fg_overwrite.trace.meta.json"
ls -l "$here/fg_overwrite.trace.gz"
rm -rf "$out"
