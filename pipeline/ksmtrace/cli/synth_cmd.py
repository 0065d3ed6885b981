"""ksmtrace synth: ground-truth traces of rmap_walk_ksm() walks, and what a VMA layout costs."""
from __future__ import annotations

import re

from pathlib import Path
from typing import Optional

import typer

from ..errors import KsmtraceError
from ..safe_text import terminal


def _ns(v: int) -> str:
    if v >= 1_000_000:
        return f"{v / 1e6:.3f} ms"
    if v >= 1_000:
        return f"{v / 1e3:.2f} µs"
    return f"{v} ns"


def cost_table(layout, caller: str) -> str:
    from ..synth import cost_summary

    s = cost_summary(layout, caller)
    u, p = s["unpatched"], s["patched"]
    rows = [("windows", "windows"), ("iterations", "iterations"), ("max iterations / window", "max_window_iterations"),
            ("address skips", "skip_addr"), ("mm skips", "skip_mm"), ("rmap_one calls", "rmap_one"),
            ("walk time (est.)", "walk_ns"), ("max hold (est.)", "max_hold_ns"), ("early exit", "early_exit")]
    w = max(len(r[0]) for r in rows)
    out = [f"layout: {layout.vmas} VMAs, {layout.forks} forks, {layout.pages} pages x {layout.items} rmap_items"
           f"{f' + {layout.child_items} per child' if layout.child_items else ''}; one {caller} walk (untraced, "
           f"16.6 ns per iteration)",
           f"{'':{w}}  {'unpatched [0,ULONG_MAX]':>24}  {'patched [idx,idx]':>18}"]
    for name, k in rows:
        a, b = u[k], p[k]
        if k.endswith("_ns"):
            a, b = _ns(a), _ns(b)
        out.append(f"{name:{w}}  {str(a):>24}  {str(b):>18}")
    return "\n".join(out)


def synth(
    vmas: int = typer.Option(64, "--vmas", help="VMAs of the mm (mprotect splits sharing one anon_vma)."),
    forks: int = typer.Option(0, "--forks", help="Forked children linked into the parent's anon_vma tree."),
    pages: int = typer.Option(4, "--pages", help="KSM pages walked."),
    items: int = typer.Option(16, "--items", help="rmap_items of the parent per KSM page (K)."),
    child_items: int = typer.Option(0, "--child-items", help="rmap_items per child per page (on the child's anon_vma)."),
    walks: int = typer.Option(40, "--walks", help="Walks to simulate."),
    caller: str = typer.Option("migrate", "--caller", help="migrate (try_to_migrate + remove_migration_ptes), mixed, "
                               "try_to_migrate, remove_migration_ptes, folio_referenced or page_idle."),
    patched: bool = typer.Option(False, "--patched/--unpatched", help="Query [idx, idx] (patched) or [0, ULONG_MAX]."),
    evidence: str = typer.Option("function-graph", "--evidence", help="tracepoint-v5, tracepoint-v4, function-graph, "
                                 "kprobe, perf-callchain, counters or lock-contention."),
    fmt: Optional[str] = typer.Option(None, "--format", help="ftrace, perf-script or function-graph [default: the "
                                      "evidence's usual format]."),
    retval: bool = typer.Option(True, "--retval/--no-retval", help="function_graph: funcgraph-retval on/off."),
    retval_style: str = typer.Option("6.13", "--retval-style", help="6.13 (ret=0x1) or 6.5 (= 0x1)."),
    retaddr: bool = typer.Option(False, "--retaddr", help="function_graph: funcgraph-retaddr comments (6.13+)."),
    iterators: bool = typer.Option(True, "--iterators/--no-iterators", help="function_graph: trace the interval-tree "
                                   "iterators (counting run) or not (timing run)."),
    ns: bool = typer.Option(True, "--ns/--us", help="perf script timestamps in ns (--ns) or µs."),
    truncate: Optional[str] = typer.Option(None, "--truncate", help="start, end or both: the trace begins/ends mid-walk."),
    loss: bool = typer.Option(False, "--loss", help="Insert a CPU:N [LOST M EVENTS] marker inside a walk."),
    drop: Optional[str] = typer.Option(None, "--drop", help="CPU:A-B: drop that CPU's records from fraction A to "
                                       "B of the trace's time span, without a marker (an overwritten ring buffer: "
                                       "A = 0), e.g. 1:0-0.5."),
    cpu_stats: bool = typer.Option(False, "--cpu-stats", help="With --drop: write per-CPU ring-buffer stats "
                                   "(overrun) to OUT.meta.json, as ksmtrace capture does."),
    counter_style: str = typer.Option("short", "--counter-style", help="Counter lines: short (hold_ns=...), long "
                                      "(Time_ms=...) or bpftrace (ksm_window:/ksm_walk:)."),
    tp_counters: bool = typer.Option(False, "--tp-counters", help="tracepoint evidence: add counter lines inside walks."),
    noise: bool = typer.Option(True, "--noise/--no-noise", help="sched_switch, ksm_*, migrate and compaction events."),
    tasks: int = typer.Option(2, "--tasks", help="Walking tasks (2 CPUs each)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (output is deterministic given it)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the trace here (.gz compresses) and "
                                       "OUT.truth/*.csv; without it print the layout's cost summary only."),
) -> None:
    """Generate a ground-truth trace, or (without --out) show what a VMA layout costs with and without the patch."""
    from ..synth import CALLER_CHOICES, Layout, generate

    try:
        layout = Layout(vmas=vmas, forks=forks, pages=pages, items=items, child_items=child_items)
    except ValueError as e:
        raise KsmtraceError(str(e))
    if caller not in CALLER_CHOICES:
        raise KsmtraceError(f"unknown --caller {caller!r}; known: {', '.join(CALLER_CHOICES)}")
    if out is None:
        one = {"migrate": "remove_migration_ptes", "mixed": "remove_migration_ptes"}.get(caller, caller)
        print(cost_table(layout, one))
        return
    if retval_style not in ("6.13", "6.5"):
        raise KsmtraceError("--retval-style must be 6.13 or 6.5")
    if truncate not in (None, "start", "end", "both"):
        raise KsmtraceError("--truncate must be start, end or both")
    if counter_style not in ("short", "long", "bpftrace"):
        raise KsmtraceError("--counter-style must be short, long or bpftrace")
    drop_t = None
    if drop is not None:
        m = re.fullmatch(r"\s*(\d+)\s*:\s*([0-9.]+)\s*-\s*([0-9.]+)\s*", drop)
        if not m:
            raise KsmtraceError(f"--drop must be CPU:A-B with fractions 0 <= A < B <= 1 (got {drop!r})")
        drop_t = (int(m.group(1)), float(m.group(2)), float(m.group(3)))
    elif cpu_stats:
        raise KsmtraceError("--cpu-stats needs --drop")
    try:
        res = generate(layout, walks=walks, caller=caller, patched=patched, evidence=evidence, fmt=fmt,
                       retval=retval_style if retval else None, iterators=iterators, seed=seed, ns=ns, tasks=tasks,
                       truncate=truncate, loss=loss, noise=noise, counter_style=counter_style,
                       tracepoint_counters=tp_counters, retaddr=retaddr, drop=drop_t, cpu_stats=cpu_stats)
    except ValueError as e:
        raise KsmtraceError(str(e))
    try:
        p = res.write(out)
    except OSError as e:
        raise KsmtraceError(f"{out}: {e.strerror or e}")
    print(f"wrote {terminal(p)} and {terminal(p)}.truth/ ({res.summary()})")


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
