"""``ksmtrace capture --print``: the capture commands as text, for capturing by hand elsewhere.

One recipe per capture method of ``ksmtrace capture`` (the evidence kinds of docs/walk-rules.md), the
counter lines in the convention of docs/walk-rules.md (e). ``<workload>`` stands for the command to run.
"""
from __future__ import annotations

PREAMBLE = """\
# ksmtrace capture recipes ({title})
# Run as root. Then: ksmtrace ingest --label LABEL FILE   (keep FILE.meta.json-style provenance:
# uname -r, preemption model, CPU count, tool versions, exact commands).
T=$(awk '$3=="tracefs"{{print $2; exit}}' /proc/mounts)
[ -n "$T" ] || {{ mount -t tracefs nodev /sys/kernel/tracing && T=/sys/kernel/tracing; }}
W='{workload}'     # the workload, e.g. ksmtrace repro --vmas 20000
OUT=$(realpath -m -- "{out}")   # absolute: the recipes below cd into tracefs, where nothing may be written
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
  if [ -e $I/events/$e/enable ]; then echo 1 > $I/events/$e/enable; else echo "no event $e here"; fi
done
echo 0 > $I/options/hash-ptr                   # real pointers (joinable with perf data)
{filters}# stacks of rwsem waits: flags & 2 = READ (walkers' slow path), & 4 = WRITE (the writers stuck behind a walker)
echo '{trigger}' > $I/events/lock/contention_begin/trigger
echo 1 > $I/tracing_on; $W
for c in $I/per_cpu/cpu*; do echo "== $c"; cat $c/stats; done > "$OUT.bufstats.txt"   # overrun, dropped events
echo 0 > $I/tracing_on
cat $I/trace > "$OUT"
echo '!{trigger}' > $I/events/lock/contention_begin/trigger
echo 0 > $I/events/enable; rmdir $I
"""

RMAP = """\
## rmap tracepoints (evidence a; kernels carrying series v4-v7)
I=$T/instances/ksmtrace; mkdir $I; echo {buffer_kb} > $I/buffer_size_kb
echo 1 > $I/events/rmap/enable                 # v5-v7: rmap_walk_start + rmap_walk_end; v4: rmap_walk
echo 0 > $I/options/hash-ptr
echo 1 > $I/events/migrate/enable; echo 1 > $I/events/lock/enable
echo 1 > $I/tracing_on; $W; echo 0 > $I/tracing_on
cat $I/trace > "$OUT"; echo 0 > $I/events/enable; rmdir $I
# with callchains (the walk's caller):
perf record -a -g -e rmap:rmap_walk_start -e rmap:rmap_walk_end -o "$OUT.perf.data" -- $W
perf script -i "$OUT.perf.data" --ns -F comm,pid,tid,cpu,time,event,trace,ip,sym > "$OUT"
"""

FUNCGRAPH = """\
## function_graph (evidence b; needs CONFIG_FUNCTION_GRAPH_TRACER)
## {fg_title}
cd $T
OLD_KB=$(sed 's/.*expanded: *\\([0-9]*\\).*/\\1/; s/ .*//' buffer_size_kb)   # "7 (expanded: 1408)" -> 1408
echo 0 > tracing_on; echo nop > current_tracer; echo > trace
echo rmap_walk_ksm > set_graph_function
echo rmap_walk_ksm > set_ftrace_filter
for f in {fg_funcs}; do
  echo $f >> set_ftrace_filter 2>/dev/null || echo "not traceable here: $f"   # one name per write
done
echo 0 > max_graph_depth
echo {buffer_kb} > buffer_size_kb              # per CPU; ksmtrace capture sizes it for the layout
echo function_graph > current_tracer           # the funcgraph-* options exist only from here on
echo 1 > options/funcgraph-abstime             # required
echo 1 > options/funcgraph-proc                # required
echo 1 > options/funcgraph-tail
echo 1 > options/funcgraph-retval  2>/dev/null # 6.5+
echo 1 > options/funcgraph-retaddr 2>/dev/null # 6.13+
echo 1 > tracing_on; $W
for c in per_cpu/cpu*; do echo "== $c"; cat $c/stats; done > "$OUT.bufstats.txt"   # lost walks: overrun > 0
echo 0 > tracing_on
cat trace > "$OUT"
echo 0 > options/funcgraph-tail; echo nop > current_tracer
echo > set_graph_function; echo > set_ftrace_filter; echo $OLD_KB > buffer_size_kb
cd - >/dev/null
"""

FG_COUNTING = ("function-graph: walk, lock, iterator and rmap_one functions (counts; the iterators make hold "
               "times many times longer,\n## so take times from function-graph-locks). Small layouts only: "
               "every walk makes items x passes x VMAs iterator calls")
FG_TIMING = "function-graph-locks: walk and lock functions only (hold times without per-iteration overhead)"
FG_COUNT_FUNCS = ("down_read_trylock down_read up_read anon_vma_interval_tree_iter_first "
                  "anon_vma_interval_tree_iter_next \\\n         try_to_migrate_one remove_migration_pte "
                  "try_to_unmap_one folio_referenced_one \\\n         page_idle_clear_pte_refs_one "
                  "damon_folio_mkold_one damon_folio_young_one invalid_folio_referenced_vma")
FG_LOCK_FUNCS = "down_read_trylock down_read up_read"

TRACECMD = """\
# trace-cmd equivalent of function-graph (ns timestamps with report -t):
trace-cmd record -p function_graph -g rmap_walk_ksm -l rmap_walk_ksm -l down_read_trylock -l down_read \\
    -l up_read -l anon_vma_interval_tree_iter_first -l anon_vma_interval_tree_iter_next \\
    -l try_to_migrate_one -l remove_migration_pte -O funcgraph-tail -o "$OUT.dat" -- $W
trace-cmd report -t -i "$OUT.dat" > "$OUT.trace-cmd.txt"
"""

KPROBES = """\
## kprobe / kretprobe events (evidence c; needs CONFIG_KPROBE_EVENTS)
# %di and %si are the x86-64 argument registers: on other architectures write $arg1 and $arg2 instead.
# The iterator returns fetch the returned chain's VMA (anon_vma_chain.vma, offset 0) bounds (vm_start, vm_end
# at offsets 0 and 8 of vm_area_struct) for the address-skip split.
cd $T
OLD_KB=$(sed 's/.*expanded: *\\([0-9]*\\).*/\\1/; s/ .*//' buffer_size_kb)
echo {buffer_kb} > buffer_size_kb              # the lock probes fire system-wide: the default buffer overflows
{kprobe_lines}
echo 1 > events/ksmp/enable
echo 1 > tracing_on; $W
for c in per_cpu/cpu*; do echo "== $c"; cat $c/stats; done > "$OUT.bufstats.txt"
echo 0 > tracing_on
cat trace > "$OUT"
cat kprobe_profile > "$OUT.kprobe_profile.txt"   # hits and MISSES per probe: keep with the trace
echo 0 > events/ksmp/enable; for p in $(awk '/^[pr]:ksmp/ {{print $1}}' kprobe_events); do echo "-:${{p#*:}}" >> kprobe_events; done
echo $OLD_KB > buffer_size_kb
# fprobes with BTF argument names (recent kernels with CONFIG_FPROBE_EVENTS), instead of the kprobes:
#   echo 'f:ksmp/walk rmap_walk_ksm folio rmap_one=rwc->rmap_one:symbol' >> dynamic_events
#   echo 'f:ksmp/walk_ret rmap_walk_ksm%return'                          >> dynamic_events
#   echo 'f:ksmp/it_next_ret anon_vma_interval_tree_iter_next%return $retval' >> dynamic_events
cd - >/dev/null
"""

PERF = """\
## perf callchains (evidence d and f; works on stock kernels with tracepoints only)
perf record -a -g -o "$OUT.perf.data" \\
    -e migrate:set_migration_pte{filt} -e migrate:remove_migration_pte{filt} \\
    -e migrate:mm_migrate_pages_start -e migrate:mm_migrate_pages \\
    -e compaction:mm_compaction_begin -e compaction:mm_compaction_end \\
    -e lock:contention_begin -e lock:contention_end -- $W
# run perf script on the recording machine (kernel symbols resolve against this host's kallsyms)
perf script -i "$OUT.perf.data" --ns -F comm,pid,tid,cpu,time,event,trace,ip,sym > "$OUT"
perf script -i "$OUT.perf.data" --header-only > "$OUT.header.txt"
# lock contention summary (callers named correctly with --stack-skip 0):
perf lock record -a -- $W; perf lock contention -i perf.data --stack-skip 0
"""

COUNTERS = """\
## counter lines (evidence e): the convention ksmtrace reads (docs/walk-rules.md (e))
# One line per lock window, key=value tokens in any order, keys case-insensitive, unknown keys kept:
#   hold_ns=<ns> iterations=<n> skip_addr=<n> skip_mm=<n> rmap_one=<n>
# or the long forms Time_ms=<float ms> Nr_iteration_total= Skip_addr_out_of_range= Skip_mm_mismatch=
# e.g. from trace_printk in a patched rmap_walk_ksm(), one call after each anon_vma_unlock_read():
#   trace_printk("hold_ns=%llu iterations=%lu skip_addr=%lu skip_mm=%lu rmap_one=%lu\\n", ...);
# Check: skip_addr + skip_mm + rmap_one + invalid = iterations.
"""

SECTIONS = {
    "rmap-tracepoints": ("RMAP",), "function-graph": ("FUNCGRAPH", "TRACECMD"), "function-graph-locks": ("FGLOCKS",),
    "kprobes": ("KPROBES",), "perf-callchain": ("PERF",), "events": ("EVENTS",),
}
ALL_METHODS = ["rmap-tracepoints", "function-graph", "function-graph-locks", "kprobes", "perf-callchain", "events"]


def render(method: str, out: str = "trace.txt", workload: str = "<workload>", buffer_kb: int = 16384,
           addr_range: tuple[int, int] | None = None, events: tuple[str, ...] = ()) -> str:
    """The recipe text for ``method`` (``auto`` = every method, most detailed first)."""
    from .capture import RWSEM_WAIT_TRIGGER, kprobe_defs

    flt = f"addr >= {addr_range[0]:#x} && addr < {addr_range[1]:#x}" if addr_range else None
    filt = f" --filter '{flt}'" if flt else ""
    filters = "".join(f"echo '{flt}' > $I/events/{e}/filter\n" for e in ("migrate/set_migration_pte",
                                                                         "migrate/remove_migration_pte")) if flt else ""
    kp = "\n".join(f"echo '{d}' >> kprobe_events" for d in kprobe_defs("x86_64"))
    fmt = dict(out=out, buffer_kb=buffer_kb, filt=filt, filters=filters, events=" \\\n         ".join(events),
               trigger=RWSEM_WAIT_TRIGGER, kprobe_lines=kp)
    methods = ALL_METHODS if method == "auto" else [method]
    parts = [PREAMBLE.format(title="every method" if method == "auto" else "method " + method,
                             workload=workload.replace("'", "'\\''"), out=out.replace('"', '\\"')), DOCTOR]
    blocks = {"RMAP": RMAP, "KPROBES": KPROBES, "PERF": PERF, "EVENTS": EVENTS, "TRACECMD": TRACECMD,
              "FUNCGRAPH": FUNCGRAPH.replace("{fg_title}", FG_COUNTING).replace("{fg_funcs}", FG_COUNT_FUNCS),
              "FGLOCKS": FUNCGRAPH.replace("{fg_title}", FG_TIMING).replace("{fg_funcs}", FG_LOCK_FUNCS)}
    for m in methods:
        for b in SECTIONS[m]:
            parts.append(blocks[b].format(**fmt))
    from . import bpftrace

    parts.append(bpftrace.recipe())
    parts.append(COUNTERS)
    return "\n".join(parts)
