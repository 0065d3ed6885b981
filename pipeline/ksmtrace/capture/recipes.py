"""``ksmtrace capture --print``: the capture commands as text, for capturing by hand elsewhere.

Adapted from the project's capture reference (capture.md §0-§7) and the counter-line
convention (kernel.md §6.5). ``<workload>`` stands for the command to run.
"""
from __future__ import annotations

PREAMBLE = """\
# ksmtrace capture recipes ({title})
# Run as root. Then: ksmtrace ingest --label LABEL FILE   (keep FILE.meta.json-style provenance:
# uname -r, preemption model, CPU count, tool versions, exact commands).
T=$(awk '$3=="tracefs"{{print $2; exit}}' /proc/mounts)
[ -n "$T" ] || {{ mount -t tracefs nodev /sys/kernel/tracing && T=/sys/kernel/tracing; }}
W='{workload}'     # the workload, e.g. ksmtrace repro --vmas 20000
"""

DOCTOR = """\
## 0. What does this kernel offer?  (or: ksmtrace doctor)
cat $T/available_tracers                       # function_graph listed? -> method function-graph
head -1 $T/available_filter_functions          # EPERM = lockdown: no function tracing, no bpftrace
ls $T/events/rmap 2>/dev/null                  # rmap tracepoint series (v4-v7)? -> method rmap-tracepoints
ls $T/kprobe_events $T/dynamic_events 2>/dev/null
uname -r; nproc; cat /sys/kernel/debug/sched/preempt 2>/dev/null
"""

EVENTS = """\
## events (evidence d without callchains, and f): a private tracefs instance
I=$T/instances/ksmtrace; mkdir $I
echo {buffer_kb} > $I/buffer_size_kb
for e in {events}; do
  echo 1 > $I/events/$e/enable
done
echo 0 > $I/options/hash-ptr                   # real pointers (joinable with perf data)
{filters}echo 'stacktrace if flags & 2' > $I/events/lock/contention_begin/trigger   # attribute READ waits
echo 1 > $I/tracing_on; $W; echo 0 > $I/tracing_on
cat $I/trace > {out}
for c in $I/per_cpu/cpu*; do echo "== $c"; cat $c/stats; done > {out}.bufstats.txt
echo '!stacktrace if flags & 2' > $I/events/lock/contention_begin/trigger
echo 0 > $I/events/enable; rmdir $I
"""

RMAP = """\
## rmap tracepoints (evidence a; kernels carrying series v4-v7)
I=$T/instances/ksmtrace; mkdir $I; echo {buffer_kb} > $I/buffer_size_kb
echo 1 > $I/events/rmap/enable                 # v5-v7: rmap_walk_start + rmap_walk_end; v4: rmap_walk
echo 0 > $I/options/hash-ptr
echo 1 > $I/events/migrate/enable; echo 1 > $I/events/lock/enable
echo 1 > $I/tracing_on; $W; echo 0 > $I/tracing_on
cat $I/trace > {out}; echo 0 > $I/events/enable; rmdir $I
# with callchains (the walk's caller):
perf record -a -g -e rmap:rmap_walk_start -e rmap:rmap_walk_end -o rmap.data -- $W
perf script -i rmap.data --ns -F comm,pid,tid,cpu,time,event,trace,ip,sym > {out}
"""

FUNCGRAPH = """\
## function_graph (evidence b; needs CONFIG_FUNCTION_GRAPH_TRACER)
cd $T
echo 0 > tracing_on; echo nop > current_tracer; echo > trace
echo rmap_walk_ksm > set_graph_function
echo rmap_walk_ksm > set_ftrace_filter
for f in down_read_trylock down_read up_read try_to_migrate_one remove_migration_pte try_to_unmap_one \\
         folio_referenced_one page_idle_clear_pte_refs_one damon_folio_mkold_one damon_folio_young_one \\
         folio_not_mapped page_not_mapped invalid_folio_referenced_vma __cond_resched; do
  echo $f >> set_ftrace_filter 2>/dev/null || echo "not traceable here: $f"   # one name per write
done
# counting run only (never use it for times): add the iterators
#   echo anon_vma_interval_tree_iter_first >> set_ftrace_filter
#   echo anon_vma_interval_tree_iter_next  >> set_ftrace_filter
echo 0 > max_graph_depth
echo {buffer_kb} > buffer_size_kb
echo 1 > options/funcgraph-abstime             # required
echo 1 > options/funcgraph-proc                # required
echo 1 > options/funcgraph-tail
echo 1 > options/funcgraph-retval  2>/dev/null # 6.5+
echo 1 > options/funcgraph-retaddr 2>/dev/null # 6.13+
echo function_graph > current_tracer
echo 1 > tracing_on; $W; echo 0 > tracing_on
cat trace > {out}
echo nop > current_tracer; echo > set_graph_function; echo > set_ftrace_filter
# trace-cmd equivalent (ns timestamps with report -t):
trace-cmd record -p function_graph -g rmap_walk_ksm -l rmap_walk_ksm -l down_read_trylock -l down_read \\
    -l up_read -l try_to_migrate_one -l remove_migration_pte -O funcgraph-tail -o graph.dat -- $W
trace-cmd report -t -i graph.dat > {out}
"""

KPROBES = """\
## kprobe / fprobe events (evidence c; needs CONFIG_KPROBE_EVENTS / CONFIG_FPROBE_EVENTS)
cd $T
echo 'p:ksmp/rmap_walk_ksm rmap_walk_ksm folio=%di rwc=%si' >> kprobe_events
echo 'r:ksmp/rmap_walk_ksm_ret rmap_walk_ksm'               >> kprobe_events
echo 'r:ksmp/rd_try_ret down_read_trylock ret=$retval'      >> kprobe_events
echo 'r:ksmp/rd_slow_ret down_read'                         >> kprobe_events
echo 'p:ksmp/rd_up up_read sem=%di'                         >> kprobe_events
echo 'p:ksmp/mig_one try_to_migrate_one'                    >> kprobe_events
echo 'p:ksmp/rm_pte remove_migration_pte'                   >> kprobe_events
# fprobes with BTF argument names (recent kernels), instead of the lines above:
#   echo 'f:ksmp/walk rmap_walk_ksm folio rmap_one=rwc->rmap_one:symbol' >> dynamic_events
#   echo 'f:ksmp/walk_ret rmap_walk_ksm%return'                          >> dynamic_events
#   echo 'f:ksmp/it_next_ret anon_vma_interval_tree_iter_next%return $retval' >> dynamic_events
echo 1 > events/ksmp/enable
echo 1 > tracing_on; $W; echo 0 > tracing_on
cat trace > {out}
cat kprobe_profile                              # hits and MISSES per probe: keep with the trace
echo 0 > events/ksmp/enable; for p in $(awk '/^[pr]:ksmp/ {{print $1}}' kprobe_events); do echo "-:${{p#*:}}" >> kprobe_events; done
"""

PERF = """\
## perf callchains (evidence d and f; works on stock kernels with tracepoints only)
perf record -a -g -o {out}.perf.data \\
    -e migrate:set_migration_pte{filt} -e migrate:remove_migration_pte{filt} \\
    -e migrate:mm_migrate_pages_start -e migrate:mm_migrate_pages \\
    -e compaction:mm_compaction_begin -e compaction:mm_compaction_end \\
    -e lock:contention_begin -e lock:contention_end -- $W
# run perf script on the recording machine (kernel symbols resolve against this host's kallsyms)
perf script -i {out}.perf.data --ns -F comm,pid,tid,cpu,time,event,trace,ip,sym > {out}
perf script -i {out}.perf.data --header-only > {out}.header.txt
# lock contention summary (callers named correctly with --stack-skip 0):
perf lock record -a -- $W; perf lock contention -i perf.data --stack-skip 0
"""

BPFTRACE = """\
## bpftrace (evidence e; UNTESTED; needs BPF trampolines and BTF). bpftrace >= 0.20 syntax; 0.17-0.19 use
## kfunc:/kretfunc: and args->x. Prints one counter line per lock window (kernel.md §6.5).
cat > ksm_walk.bt <<'BT'
fentry:rmap_walk_ksm { @t0[tid] = nsecs; @cb[tid] = (uint64)args.rwc->rmap_one;
                       @win[tid] = 0; @it[tid] = 0; @one[tid] = 0; @maxh[tid] = 0; }
fexit:down_read_trylock /@t0[tid] && retval == 1/ { @lk[tid] = nsecs; @win[tid]++; }
fexit:down_read         /@t0[tid]/               { @lk[tid] = nsecs; @win[tid]++; @slow[tid]++; }
fentry:up_read          /@t0[tid] && @lk[tid]/   { $h = nsecs - @lk[tid]; if ($h > @maxh[tid]) { @maxh[tid] = $h; } @lk[tid] = 0;
                          printf("ksm_window: hold_ns=%d iterations=%d rmap_one=%d\\n", $h, @itw[tid], @onew[tid]);
                          @itw[tid] = 0; @onew[tid] = 0; }
fexit:anon_vma_interval_tree_iter_first, fexit:anon_vma_interval_tree_iter_next
                        /@t0[tid] && retval != 0/ { @it[tid]++; @itw[tid]++; }
fentry:try_to_migrate_one, fentry:remove_migration_pte, fentry:try_to_unmap_one,
fentry:folio_referenced_one, fentry:page_idle_clear_pte_refs_one
                        /@t0[tid]/               { @one[tid]++; @onew[tid]++; }
fexit:rmap_walk_ksm /@t0[tid]/ {
  printf("ksm_walk: walk_ns=%d windows=%d iters=%d rmap_one=%d hold_max_ns=%d cb=%s\\n",
         nsecs - @t0[tid], @win[tid], @it[tid], @one[tid], @maxh[tid], ksym(@cb[tid]));
  delete(@t0, tid); delete(@cb, tid); delete(@win, tid); delete(@it, tid); delete(@one, tid); delete(@maxh, tid);
}
BT
bpftrace ksm_walk.bt > {out} & BT=$!; sleep 2; $W; kill -INT $BT; wait $BT
"""

COUNTERS = """\
## counter lines (evidence e): the convention ksmtrace reads (kernel.md §6.5)
# One line per lock window, key=value tokens in any order, keys case-insensitive, unknown keys kept:
#   hold_ns=<ns> iterations=<n> skip_addr=<n> skip_mm=<n> rmap_one=<n>
# or the long forms Time_ms=<float ms> Nr_iteration_total= Skip_addr_out_of_range= Skip_mm_mismatch=
# e.g. from trace_printk in a patched rmap_walk_ksm(), one call after each anon_vma_unlock_read():
#   trace_printk("hold_ns=%llu iterations=%lu skip_addr=%lu skip_mm=%lu rmap_one=%lu\\n", ...);
# Check: skip_addr + skip_mm + rmap_one + invalid = iterations.
"""

SECTIONS = {
    "rmap-tracepoints": ("RMAP",), "function-graph": ("FUNCGRAPH",), "kprobes": ("KPROBES",),
    "perf-callchain": ("PERF",), "events": ("EVENTS",),
}


def render(method: str, out: str = "trace.txt", workload: str = "<workload>", buffer_kb: int = 16384,
           addr_range: tuple[int, int] | None = None, events: tuple[str, ...] = ()) -> str:
    """The recipe text for ``method`` (``auto`` = every method, most detailed first)."""
    flt = f"addr >= {addr_range[0]:#x} && addr < {addr_range[1]:#x}" if addr_range else None
    filt = f" --filter '{flt}'" if flt else ""
    filters = "".join(f"echo '{flt}' > $I/events/{e}/filter\n" for e in ("migrate/set_migration_pte",
                                                                         "migrate/remove_migration_pte")) if flt else ""
    fmt = dict(out=out, buffer_kb=buffer_kb, filt=filt, filters=filters, events=" \\\n         ".join(events))
    methods = ["rmap-tracepoints", "function-graph", "kprobes", "perf-callchain", "events"] \
        if method == "auto" else [method]
    parts = [PREAMBLE.format(title="every method" if method == "auto" else "method " + method,
                             workload=workload.replace("'", "'\\''")), DOCTOR]
    blocks = {"RMAP": RMAP, "FUNCGRAPH": FUNCGRAPH, "KPROBES": KPROBES, "PERF": PERF, "EVENTS": EVENTS}
    for m in methods:
        for b in SECTIONS[m]:
            parts.append(blocks[b].format(**fmt))
    parts.append(BPFTRACE.replace("{out}", "bpftrace.txt" if method != "auto" else out))
    parts.append(COUNTERS)
    return "\n".join(parts)
