"""Ground-truth trace generator (issue #4): a model of rmap_walk_ksm() rendered as real trace text.

``generate(...)`` returns the trace text plus the expected rows of the ``walks``, ``lock_windows`` and
``lock_waits`` views (what docs/walk-rules.md makes of the printed evidence) and the model's full truth.
``write_demo_pair(dir)`` writes a before/after pair for the demo; ``cost_summary`` is the closed form.
"""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from . import oracle as O
from . import render as R
from .model import CALLBACKS, CALLERS, ITER_FIRST, ITER_NEXT, TASKS, WALK, WRITERS, Costs, Layout, Simulator, cost_summary

EVIDENCE = ["tracepoint-v5", "tracepoint-v4", "function-graph", "kprobe", "perf-callchain", "counters",
            "lock-contention"]
FORMATS = {
    "tracepoint-v5": ("ftrace", "perf-script"),
    "tracepoint-v4": ("ftrace", "perf-script"),
    "function-graph": ("function-graph",),
    "kprobe": ("ftrace",),
    "perf-callchain": ("perf-script",),
    "counters": ("ftrace",),
    "lock-contention": ("perf-script", "ftrace"),
}
CALLER_CHOICES = ["migrate", "mixed"] + list(CALLERS)

__all__ = ["generate", "SynthResult", "Layout", "Costs", "cost_summary", "write_demo_pair", "EVIDENCE", "FORMATS",
           "CALLER_CHOICES"]


@dataclass
class SynthResult:
    text: str
    expected_walks: pd.DataFrame
    expected_windows: pd.DataFrame
    expected_waits: pd.DataFrame
    model_walks: pd.DataFrame
    model_windows: pd.DataFrame
    meta: dict = field(default_factory=dict)

    def write(self, path) -> Path:
        """Write the trace (gzip when the name ends in .gz) and PATH.truth/*.csv."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix == ".gz":
            with gzip.open(p, "wt", compresslevel=6) as fh:
                fh.write(self.text)
        else:
            with open(p, "w", buffering=1 << 20) as fh:
                fh.write(self.text)
        if "per_cpu_stats" in self.meta:  # what `ksmtrace capture` writes beside a trace
            Path(str(p) + ".meta.json").write_text(json.dumps({"per_cpu_stats": self.meta["per_cpu_stats"],
                                                               "synth": True}, indent=1))
        d = Path(str(p) + ".truth")
        d.mkdir(exist_ok=True)
        self.expected_walks.to_csv(d / "walks.csv", index=False)
        self.expected_windows.to_csv(d / "lock_windows.csv", index=False)
        self.expected_waits.to_csv(d / "lock_waits.csv", index=False)
        self.model_walks.to_csv(d / "model_walks.csv", index=False)
        self.model_windows.to_csv(d / "model_windows.csv", index=False)
        return p

    def summary(self) -> str:
        mw = self.model_walks
        return (f"{self.meta['evidence']} / {self.meta['format']}: {self.meta['n_lines']} lines, "
                f"{len(mw)} model walks, {len(self.model_windows)} windows, "
                f"{int(mw['iterations'].sum()) if len(mw) else 0} iterations; expected: "
                f"{len(self.expected_walks)} walks, {len(self.expected_windows)} windows, "
                f"{len(self.expected_waits)} lock waits")


def _tasks(caller: str, n_tasks: int):
    if caller == "mixed":
        base = TASKS
        n = max(n_tasks, 4)
        return [base[i % len(base)] for i in range(min(n, len(base)))], None
    if caller == "migrate":
        return TASKS[: max(1, min(n_tasks, 2))], None
    ts = TASKS[: max(1, min(n_tasks, len(TASKS)))]
    return ts, (caller,)


def _model_frames(sim):
    walks, wins = [], []
    for w in sim.walks:
        ws = w.windows
        walks.append(dict(walk_id=w.walk, caller=w.caller, page=w.page, pid=w.pid, comm=w.comm, cpu=w.cpu,
                          end_cpu=w.end_cpu, start_ns=w.start_ns, end_ns=w.end_ns, duration_ns=w.end_ns - w.start_ns,
                          n_windows=len(ws), max_hold_ns=max((x.hold_ns for x in ws), default=None),
                          total_hold_ns=sum(x.hold_ns for x in ws), iterations=sum(x.iterations for x in ws),
                          max_window_iterations=max((x.iterations for x in ws), default=None),
                          rmap_one=sum(x.rmap_one for x in ws),
                          skipped=sum(x.skip_addr + x.skip_mm for x in ws),
                          skip_addr=sum(x.skip_addr for x in ws), skip_mm=sum(x.skip_mm for x in ws),
                          invalid=sum(x.invalid for x in ws), slow_windows=sum(1 for x in ws if x.slow),
                          bailout=w.bailout, early_exit=w.early_exit,
                          passes=1 + int(any(x.pass_no == 1 for x in ws))))
        for x in ws:
            wins.append(dict(walk_id=x.walk, window_no=x.window_no, pass_no=x.pass_no, start_ns=x.start_ns,
                             end_ns=x.end_ns, hold_ns=x.hold_ns, iterations=x.iterations, rmap_one=x.rmap_one,
                             skipped=x.skip_addr + x.skip_mm, skip_addr=x.skip_addr, skip_mm=x.skip_mm,
                             invalid=x.invalid, slow=x.slow, item_addr="0x%x" % x.item_addr))
    return pd.DataFrame(walks), pd.DataFrame(wins)


def _cut(sim, truncate):
    """(start, end) cut points inside the first walk of the first task / the last walk of the last task."""
    if not truncate or not sim.walks:
        return None
    ws = sorted(sim.walks, key=lambda w: w.start_ns)
    lo, hi = -1, 1 << 62
    if truncate in ("start", "both"):
        w = ws[0]
        lo = (w.start_ns + w.end_ns) // 2
    if truncate in ("end", "both"):
        w = max(sim.walks, key=lambda w: w.end_ns)
        hi = (w.start_ns + w.end_ns) // 2
        if hi <= lo:
            hi = w.end_ns - 1
    return lo, hi


def _insert_loss(rows, sim, window_walks: bool):
    """Insert one CPU:N [LOST M EVENTS] marker where the previous and next line lie in the same walks.

    window_walks: counter lines can make walks of single windows, so window bounds count too."""
    bounds = sorted([b for w in sim.walks for b in (w.start_ns, w.end_ns)] +
                    ([b for x in sim.windows for b in (x.start_ns, x.end_ns)] if window_walks else []))
    import bisect
    n = len(rows)
    for i in list(range(n // 2, n)) + list(range(1, n // 2)):
        a, b = rows[i - 1], rows[i]
        if a.ts is None or b.ts is None or a.ev == "__lost_events":
            continue
        lo, hi = min(a.ts, a.t) - 3000, max(b.ts, b.t) + 3000
        j = bisect.bisect_left(bounds, lo)
        if j < len(bounds) and bounds[j] <= hi:
            continue
        # inside some walk (otherwise the marker tests nothing)
        if not any(w.start_ns < a.t and b.t < w.end_ns for w in sim.walks):
            continue
        lr = R.Row(b.t, b.seq, b.cpu, None, None, "__lost_events", dict(lost=17))
        lr.ts = b.ts
        rows.insert(i, lr)
        return rows
    return rows


def _drop(rows, ncpu, cpu, a, b):
    """Remove CPU ``cpu``'s records in [a, b) of the trace's time span (fractions); per-CPU stats to match."""
    if not (0 <= a < b <= 1) or not (0 <= cpu < ncpu):
        raise ValueError(f"drop needs 0 <= a < b <= 1 and a CPU in 0..{ncpu - 1} (got {cpu}:{a}-{b})")
    ts = [r.t for r in rows]
    t0, t1 = min(ts), max(ts)
    lo, hi = t0 + a * (t1 - t0), t0 + b * (t1 - t0) + (1 if b == 1 else 0)
    kept = [r for r in rows if not (r.cpu == cpu and lo <= r.t < hi)]
    n_dropped = len(rows) - len(kept)
    stats = {str(c): {"entries": sum(1 for r in kept if r.cpu == c), "overrun": n_dropped if c == cpu else 0,
                      "commit_overrun": 0, "dropped_events": 0, "read_events": 0} for c in range(ncpu)}
    return kept, stats


def generate(layout: Layout | None = None, *, walks: int = 40, caller: str = "migrate", patched: bool = False,
             evidence: str = "function-graph", fmt: str | None = None, retval: str | None = "6.13",
             iterators: bool = True, seed: int = 0, ns: bool = True, tasks: int = 2, truncate: str | None = None,
             loss: bool = False, noise: bool = True, counter_style: str = "short", tracepoint_counters: bool = False,
             callchain: bool = True, stack: bool = True, fetch_vma: bool = True, tail: bool = True,
             retaddr: bool = False, costs: Costs | None = None, drop: tuple[int, float, float] | None = None,
             cpu_stats: bool = False) -> SynthResult:
    """Simulate ``walks`` walks on ``layout`` and render them as ``evidence`` in ``fmt``.

    retval: None (off), "6.13" (``ret=``) or "6.5" (``= ``) spelling; ns: perf ``--ns`` (else µs);
    truncate: None, "start", "end" or "both"; counter_style: short | long | bpftrace.
    drop: (cpu, a, b): that CPU's records from fraction a to fraction b of the trace's time span vanish
    without a marker, as a ring buffer that overwrote (a = 0: its oldest events) or lost a stretch;
    cpu_stats: also give per-CPU ring-buffer stats (meta["per_cpu_stats"], written to FILE.meta.json as
    `ksmtrace capture` does: overrun = the dropped records of that CPU). The oracle applies the
    completeness rules of queries/02_coverage.sql.
    """
    layout = layout or Layout()
    if evidence not in EVIDENCE:
        raise ValueError(f"unknown evidence {evidence!r}; known: {', '.join(EVIDENCE)}")
    fmt = fmt or FORMATS[evidence][0]
    if fmt not in FORMATS[evidence]:
        raise ValueError(f"evidence {evidence} is not carried by format {fmt}; use one of {FORMATS[evidence]}")
    if caller not in CALLER_CHOICES:
        raise ValueError(f"unknown caller {caller!r}; known: {', '.join(CALLER_CHOICES)}")
    if retval not in (None, "6.13", "6.5"):
        raise ValueError("retval must be None, '6.13' or '6.5'")
    if retaddr and retval == "6.5":
        raise ValueError("funcgraph-retaddr exists from 6.13 on: use retval='6.13' with it")
    if walks < 1 or tasks < 1:
        raise ValueError("walks and tasks must be >= 1")
    costs = costs or Costs()
    task_list, override = _tasks(caller, tasks)
    ncpu = 2 * ((len(task_list) + 1) // 2) + 1  # task pairs share two CPUs; the last CPU: ksmd and writers
    traced: set = set()
    record_iters = False
    if evidence == "function-graph":
        traced = {WALK, "down_read_trylock", "down_read", "rwsem_down_read_slowpath", "up_read",
                  "page_vma_mapped_walk", "folio_not_mapped", "invalid_folio_referenced_vma", *CALLBACKS}
        if iterators:
            traced |= {ITER_FIRST, ITER_NEXT, "__cond_resched", "schedule"}
        record_iters = iterators
        costs = replace(costs, trace_ns=costs.trace_ns or 180.0)
    elif evidence == "kprobe":
        traced = {WALK, "down_read_trylock", "down_read", "up_read", ITER_FIRST, ITER_NEXT,
                  "invalid_folio_referenced_vma", *CALLBACKS}
        record_iters = True
        costs = replace(costs, trace_ns=costs.trace_ns or 300.0)
    elif evidence == "counters" or tracepoint_counters:
        traced = {"counter"}
    sim = Simulator(layout, patched=patched, costs=costs, seed=seed, record_iters=record_iters,
                    traced=frozenset(traced))
    sim.run(walks, task_list, override)
    opts = dict(tasks=task_list, ncpu=ncpu, writers=WRITERS)
    ctx = R.Ctx(sim, opts)
    cut = _cut(sim, truncate)
    waits = []
    if fmt == "function-graph":
        rows = R.fg_rows(ctx, retval=retval, tail=tail, retaddr=retaddr, cut=cut)
    else:
        if evidence in ("tracepoint-v5", "tracepoint-v4"):
            rows = R.tracepoint_rows(ctx, fmt, 5 if evidence.endswith("v5") else 4,
                                     counter_style if tracepoint_counters else None, callchain)
        elif evidence == "kprobe":
            rows = R.kprobe_rows(ctx, fetch_vma)
        elif evidence == "perf-callchain":
            rows = R.perf_callchain_rows(ctx)
        elif evidence == "counters":
            rows = R.counters_rows(ctx, counter_style)
        else:
            rows = R.lock_rows(ctx, fmt, stack, callchain)
        if noise:
            rows += R.noise_rows(ctx, fmt)
        if cut:
            rows = [r for r in rows if cut[0] <= r.t <= cut[1]]
        rows.sort(key=lambda r: (r.t, r.seq))
        for r in rows:
            r.ts = r.t if (fmt == "perf-script" and ns) else R.us_floor(r.t)
    per_cpu_stats = None
    if drop is not None:
        rows, per_cpu_stats = _drop(rows, ncpu, *drop)
        if not cpu_stats:
            per_cpu_stats = None
    if loss and fmt in ("ftrace", "function-graph"):
        rows = _insert_loss(rows, sim, evidence == "counters" or tracepoint_counters)
    # text
    if fmt == "function-graph":
        lines = R.fg_text(ctx, rows)
    elif fmt == "ftrace":
        lines = R.write_ftrace(rows, ncpu)
    else:
        lines = R.write_perf(rows, ns)
    text = "".join(lines)
    # oracle
    ewins = []
    if evidence == "function-graph":
        ew, ewins = O.oracle_funcgraph(rows)
    elif evidence == "kprobe":
        ew, ewins = O.oracle_kprobe(rows)
    elif evidence == "perf-callchain":
        ew, ewins = O.oracle_perf_callchain(rows)
    elif evidence.startswith("tracepoint"):
        ew, _ = O.oracle_tracepoint(rows)
    else:
        ew = []
    if evidence == "lock-contention":
        waits = O.oracle_lock_waits(rows)
    # (e) counter lines: inside other walks, or walks of their own
    losses = O.loss_times(rows)
    wins_of = defaultdict_list()
    for x in ewins:
        wins_of.setdefault(x["walk_id"], []).append(x)
    by_obj = {id(w): wins_of.get(w["walk_id"], []) for w in ew}
    cwins, new = O.attach_counters(ew, by_obj, rows, losses)
    if any(r.f.get("_counter") for r in rows):
        ewins = cwins
    cw, cwin = O.finish_counter_walks(new, len(ew) + 1)
    ew += cw
    ewins += cwin
    O.apply_coverage(ew, rows, per_cpu_stats=per_cpu_stats, snapshot=fmt == "function-graph",
                     res_ns=1 if (fmt == "perf-script" and ns) else 1000)
    model_walks, model_windows = _model_frames(sim)
    meta = dict(evidence=evidence, format=fmt, n_lines=text.count("\n"), patched=patched, seed=seed,
                layout=layout.__dict__, caller=caller, retval=retval, iterators=iterators, ncpu=ncpu,
                truncate=truncate, loss=loss, drop=list(drop) if drop else None)
    if per_cpu_stats is not None:
        meta["per_cpu_stats"] = per_cpu_stats
    return SynthResult(text, O.frame(O.WALK_COLS, ew), O.frame(O.WIN_COLS, ewins), O.frame(O.WAIT_COLS, waits),
                       model_walks, model_windows, meta)


def defaultdict_list():
    return {}


def write_demo_pair(dirpath, *, layout: Layout | None = None, walks: int = 300, seed: int = 1) -> list[Path]:
    """Same split layout, unpatched vs patched, in function_graph (timing run) and perf callchain formats.

    Files: {before,after}.funcgraph.txt.gz and {before,after}.perf-callchain.txt.gz plus .truth folders.
    """
    d = Path(dirpath)
    d.mkdir(parents=True, exist_ok=True)
    layout = layout or Layout(vmas=400, pages=8, items=24)
    out = []
    for label, patched in (("before", False), ("after", True)):
        for ev, name in (("function-graph", "funcgraph"), ("perf-callchain", "perf-callchain")):
            res = generate(layout, walks=walks, caller="migrate", patched=patched, evidence=ev, iterators=False,
                           seed=seed, retval="6.13")
            out.append(res.write(d / f"{label}.{name}.txt.gz"))
    return out
