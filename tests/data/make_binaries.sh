#!/bin/sh
# Re-create the small binary fixtures used by tests/test_binary.py (needs root, perf, trace-cmd, tracefs).
# See README.md in this folder for the versions they were made with.
set -eu
cd "$(dirname "$0")"
T=/sys/kernel/tracing

# 1. perf.data with kernel callchains: migrate tracepoints and sched_switch, system wide
perf record -e 'migrate:*' -e sched:sched_switch -a -g -o sched_migrate_callchain.perf.data -- sleep 0.5

# 2. zstd-compressed perf.data (perf record -z), no callchains
perf record -z -e sched:sched_switch -e sched:sched_wakeup -a -o sched_wakeup_zstd.perf.data -- sleep 0.3

# 3. trace.dat (file version 7, zstd) from a private tracefs instance with the stacktrace option, so the
#    report has kernel_stack records with "=> addr" frames. /proc/kallsyms is hidden while extracting
#    (bind-mounted /dev/null in a private mount namespace) to keep the file small: frames stay unsymbolised.
I=$T/instances/ksmtrace_fixture
mkdir -p "$I"
echo 1 > "$I/options/stacktrace"
echo 1 > "$I/events/sched/sched_switch/enable"
echo 1 > "$I/events/sched/sched_wakeup/enable"
sleep 0.2
echo 0 > "$I/tracing_on"
unshare -m sh -c "mount --bind /dev/null /proc/kallsyms && trace-cmd extract -B ksmtrace_fixture -o sched_stack.trace.dat"
rmdir "$I" 2>/dev/null || true
chmod 644 ./*.perf.data ./*.trace.dat
ls -l ./*.perf.data ./*.trace.dat

# 4. the same trace as trace.dat file version 6 (uncompressed pages), gzip-wrapped to keep it small;
#    ksmtrace decompresses it and hands the .dat to trace-cmd
trace-cmd convert -i sched_stack.trace.dat --file-version 6 -o sched_stack_v6.trace.dat
gzip -9 -f sched_stack_v6.trace.dat

# 5. a perf.data with lost events (one-page buffer, a syscall storm), gzip-wrapped
perf record -m 1 -e raw_syscalls:sys_enter -o syscalls_lost.perf.data -- dd if=/dev/zero of=/dev/null bs=1 count=3000
gzip -9 -f syscalls_lost.perf.data
