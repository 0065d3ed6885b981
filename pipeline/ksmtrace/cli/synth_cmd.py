"""ksmtrace synth: a thin wrapper over ksmtrace.api.synth (ground-truth traces, what a VMA layout costs)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..safe_text import terminal


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
    from .. import api

    got = api.synth(vmas=vmas, forks=forks, pages=pages, items=items, child_items=child_items, walks=walks,
                    caller=caller, patched=patched, evidence=evidence, fmt=fmt, retval=retval,
                    retval_style=retval_style, retaddr=retaddr, iterators=iterators, ns=ns, truncate=truncate,
                    loss=loss, counter_style=counter_style, tp_counters=tp_counters, noise=noise, tasks=tasks,
                    seed=seed, out=out, drop=drop, cpu_stats=cpu_stats)
    if out is None:
        print(got)
        return
    res, p = got
    print(f"wrote {terminal(p)} and {terminal(p)}.truth/ ({res.summary()})")


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
