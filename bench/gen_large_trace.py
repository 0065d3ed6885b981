#!/usr/bin/env python3
"""Write a large synthetic trace fast: simulate a template once, then tile it in time (vectorised, streamed).

    python bench/gen_large_trace.py --events 10000000 --format ftrace --out /tmp/big.txt
    python bench/gen_large_trace.py --events 2000000 --format function-graph --out /tmp/fg.txt --truth

Formats: ftrace (mixed evidence: rmap tracepoints v5, counter lines inside walks, kprobe/kretprobe lines on the
lock functions, iterators and callbacks, lock contention with stack traces, sched/ksm/migrate/compaction noise),
function-graph (counting run with iterators and retval), perf-script (migrate callchains + rmap tracepoints
+ lock contention with callchains, --ns).  --truth writes OUT.truth/*.csv for the single-evidence formats
(function-graph, and perf-script restricted to perf callchains with --evidence perf-callchain): the template's
expected rows shifted per tile.  Caveat: in tiled truth the perf-callchain ``complete`` flag of the template's
first/last walk is repeated in every tile.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "pipeline"))

from ksmtrace.synth import Layout, generate  # noqa: E402
from ksmtrace.synth import render as R  # noqa: E402
from ksmtrace.synth.model import CALLBACKS, ITER_FIRST, ITER_NEXT, TASKS, WALK, WRITERS, Costs, Simulator  # noqa: E402

#: (prefix)(seconds, with its padding)(.fraction and the rest)
TS_RE = {
    "ftrace": re.compile(r"^(.*?\] \S+ )( *\d+)(\.\d{6}: .*)$", re.S),
    "function-graph": re.compile(r"^()( *\d+)(\.\d{6} \|.*)$", re.S),
    "perf-script": re.compile(r"^(.*?\] )( *\d+)(\.\d{6,9}: .*)$", re.S),
}


def mixed_ftrace_template(layout, walks, seed):
    """One simulation rendered as several evidence kinds in one tracefs file."""
    traced = {WALK, "down_read_trylock", "down_read", "up_read", ITER_FIRST, ITER_NEXT,
              "invalid_folio_referenced_vma", "counter", *CALLBACKS}
    sim = Simulator(layout, patched=False, costs=Costs(trace_ns=300.0), seed=seed, record_iters=True,
                    traced=frozenset(traced))
    tasks = TASKS[:4]
    sim.run(walks, tasks)
    ctx = R.Ctx(sim, dict(tasks=tasks, ncpu=5, writers=WRITERS))
    rows = (R.tracepoint_rows(ctx, "ftrace", 5, "short", False) + R.kprobe_rows(ctx, True)
            + R.lock_rows(ctx, "ftrace", True, False) + R.noise_rows(ctx, "ftrace"))
    rows.sort(key=lambda r: (r.t, r.seq))
    return "".join(R.write_ftrace(rows, 5)), None


def template(fmt, evidence, layout, walks, seed):
    if fmt == "ftrace" and evidence == "mixed":
        return mixed_ftrace_template(layout, walks, seed)
    if fmt == "perf-script" and evidence == "mixed":
        sim = Simulator(layout, patched=False, costs=Costs(), seed=seed, record_iters=False, traced=frozenset())
        tasks = TASKS[:4]
        sim.run(walks, tasks)
        ctx = R.Ctx(sim, dict(tasks=tasks, ncpu=5, writers=WRITERS))
        rows = (R.perf_callchain_rows(ctx) + R.tracepoint_rows(ctx, "perf-script", 5, None, True)
                + R.lock_rows(ctx, "perf-script", False, True) + R.noise_rows(ctx, "perf-script"))
        rows.sort(key=lambda r: (r.t, r.seq))
        return "".join(R.write_perf(rows, True)), None
    res = generate(layout, walks=walks, evidence=evidence, fmt=fmt, seed=seed, caller="mixed", ns=True)
    return res.text, res


def tile(text, fmt, n_events, out, res=None, truth=False):
    """Repeat the template's body shifted by whole seconds: only the seconds field changes, so each tile is
    the template with a few placeholders replaced (str.replace runs at memory speed)."""
    lines = text.splitlines(keepends=True)
    head = "".join(ln for ln in lines if ln.startswith("#"))
    rx = TS_RE[fmt]
    secs = []
    n_ev = 0
    parsed = []
    for ln in lines:
        if ln.startswith("#"):
            continue
        m = rx.match(ln) if not ln.startswith("\t") else None
        if m:
            parsed.append((m.group(1), int(m.group(2)), m.group(3)))
            secs.append(int(m.group(2)))
            n_ev += 1
        else:
            parsed.append((ln, None, None))
    lo = min(secs)
    hi = max(secs)
    S = hi - lo + 1  # whole seconds per tile
    ph = lambda d: chr(0xE000 + d)  # noqa: E731
    tmpl = "".join(p if sec is None else p + ph(sec - lo) + rest for p, sec, rest in parsed)
    tiles = max(1, -(-n_events // max(n_ev, 1)))
    t0 = time.time()
    with open(out, "w", buffering=16 << 20) as fh:
        fh.write(head)
        for k in range(tiles):
            chunk = tmpl
            for d in range(S):
                chunk = chunk.replace(ph(d), "%5d" % (lo + d + k * S))
            fh.write(chunk)
    dt = time.time() - t0
    if truth and res is not None:
        d = Path(str(out) + ".truth")
        d.mkdir(exist_ok=True)
        shift = S * 1_000_000_000
        for name, df in (("walks", res.expected_walks), ("lock_windows", res.expected_windows),
                         ("lock_waits", res.expected_waits)):
            parts = []
            for k in range(tiles):
                x = df.copy()
                for c in ("start_ns", "end_ns", "walk_start_ns", "walk_end_ns"):
                    if c in x:
                        x[c] = x[c] + k * shift
                if "walk_id" in x:
                    x["walk_id"] = x["walk_id"] + k * (len(res.expected_walks) + 1)
                parts.append(x)
            pd.concat(parts).to_csv(d / f"{name}.csv", index=False)
    return tiles, tiles * n_ev, dt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=10_000_000, help="approximate number of trace records")
    ap.add_argument("--format", default="ftrace", choices=["ftrace", "function-graph", "perf-script"])
    ap.add_argument("--evidence", default="mixed", help="mixed, or a single evidence kind of the format")
    ap.add_argument("--vmas", type=int, default=64)
    ap.add_argument("--forks", type=int, default=0)
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--pages", type=int, default=4)
    ap.add_argument("--walks", type=int, default=24, help="walks in the template")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--truth", action="store_true")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    ev = a.evidence
    if a.format == "function-graph":
        ev = "function-graph"
    t0 = time.time()
    layout = Layout(vmas=a.vmas, forks=a.forks, items=a.items, pages=a.pages)
    walks = a.walks
    while True:  # a template of at least ~20k records keeps the per-tile overhead small
        text, res = template(a.format, ev, layout, walks, a.seed)
        n = sum(1 for ln in text.splitlines() if ln and ln[0] not in "#\t")
        if n >= 20_000 or n * 4 > a.events or walks >= 20_000:
            break
        walks *= max(2, min(16, 20_000 // max(n, 1)))
    t1 = time.time()
    tiles, n, dt = tile(text, a.format, a.events, a.out, res, a.truth)
    size = Path(a.out).stat().st_size
    print(f"{a.out}: {n:,} records ({tiles} tiles of the template), {size / 2**20:.0f} MiB; template "
          f"{t1 - t0:.1f} s, tiling {dt:.1f} s ({n / max(dt, 1e-9) / 1e6:.2f} M records/s)")


if __name__ == "__main__":
    main()
