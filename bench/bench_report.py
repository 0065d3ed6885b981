"""Benchmark: `ksmtrace report` and queries of the walk views.

Default mode: the report on one million walks (500k per side, 2 lock windows each), generated directly as
DuckDB tables named like the views (no trace, no ingest), so this times the report alone: queries,
statistics, figures and rendering.

    python bench/bench_report.py [--walks 1000000] [--runs-per-side 1] [--format html]

Store mode (--capture FILE, or --capture-events N to generate a function_graph capture of N records with
bench/gen_large_trace.py): ingest the capture as two runs (labels before and after) into a fresh store, then
time, each in a fresh connection as `ksmtrace sql` and `ksmtrace report` open one,
  * the stored derived tables (what the views read since walks are computed once per run at ingest), and
  * the baseline in the same run: the same queries with walks / lock_windows / lock_waits recomputed from
    the events by the same SQL (_walks_from_events ...), as every query did before.

    python bench/bench_report.py --capture-events 1600000      # ~190 MB function_graph, 1.6 M records
    python bench/bench_report.py --real-mb 181                  # the real 6.1 capture tiled to 181 MB
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pipeline"))

import duckdb  # noqa: E402

from ksmtrace.report import build_report, write  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import report_fakes as td  # noqa: E402


QUERIES = {
    "select * from walks": "SELECT * FROM walks",
    "select count(*) from lock_windows": "SELECT count(*) FROM lock_windows",
    "walk stats per label": "SELECT label, count(*), median(duration_ns), max(max_hold_ns) FROM walks GROUP BY label",
}


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _connect(store, baseline: bool):
    from ksmtrace import db

    con = db.connect(store, views="all" if baseline else "public")
    if baseline:  # every query recomputes from the events, as before the derived tables
        for table, (view, _) in db.DERIVED.items():
            con.execute(f"CREATE OR REPLACE TEMP VIEW {table} AS SELECT * FROM {view}")
    return con


def store_mode(args) -> None:
    from ksmtrace import api
    from ksmtrace.store import Store

    with tempfile.TemporaryDirectory(prefix="ksmtrace-bench-report-") as tmp:
        cap = Path(args.capture) if args.capture else Path(tmp) / "capture.txt"
        if args.real_mb:  # the real 6.1 function_graph capture, tiled in time to the size asked
            sys.path.insert(0, str(Path(__file__).parent))
            import _ingest_harness as h

            src = Path(__file__).resolve().parent.parent / "sample_traces" / "real-6.1-fg200.funcgraph.txt.zst"
            h.tile(h.read_capture(src), "function-graph", cap, args.real_mb)
        elif not args.capture:
            import subprocess

            subprocess.run([sys.executable, str(Path(__file__).parent / "gen_large_trace.py"), "--events",
                            str(args.capture_events), "--format", "function-graph", "--out", str(cap)], check=True,
                           stdout=subprocess.DEVNULL)
        size = cap.stat().st_size
        store = Store(args.store or Path(tmp) / "store")
        t_ing = []
        if store.exists() and store.entries():  # --store DIR of an earlier run: reuse its two runs
            n_events = sum(e.manifest["tables"]["events"]["rows"] for e in store.entries()) // 2
        else:
            for label in ("before", "after"):
                el, res = _timed(lambda: api.ingest([str(cap)], store, label=label))
                t_ing.append(el)
            n_events = res[0].n_events
        print(f"command: python bench/bench_report.py " + " ".join(sys.argv[1:]))
        ing = " + ".join(f"{t:.1f} s" for t in t_ing) if t_ing else "(store reused)"
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; capture {size / 1e6:.0f} MB, "
              f"{n_events:,} events per run, 2 runs; ingest incl. derived tables {ing}")
        from ksmtrace.report import build_report, render

        # the statistics and rendering modules load once per process, whichever path reads the walks: load
        # them before timing, so that both columns time the same work (printed: part of any `ksmtrace report`)
        el_imp, _ = _timed(lambda: (__import__("scipy.stats"), __import__("ksmtrace.report.render_text")))
        print(f"importing scipy.stats and the text renderer: {el_imp:.2f} s (not in the figures below)")
        rows = {}
        for mode in ("stored", "baseline"):
            for name, q in QUERIES.items():
                def run(q=q):
                    with _connect(store, mode == "baseline") as con:
                        return con.execute(q).fetchall()
                el, out = _timed(run)
                rows[(mode, name)] = (el, len(out))

            def report():  # `ksmtrace report --before before --after after` printed to the terminal
                with _connect(store, mode == "baseline") as con:
                    rep = build_report(con, "before", "after")
                return render(rep, "text")
            el, rep = _timed(report)
            rows[(mode, "ksmtrace report (text)")] = (el, 0)
        print(f"{'':34s} {'stored':>9s} {'baseline':>9s}  speed-up  target")
        targets = {"select * from walks": 1.0, "ksmtrace report (text)": 3.0}
        for name in list(QUERIES) + ["ksmtrace report (text)"]:
            a, b = rows[("stored", name)][0], rows[("baseline", name)][0]
            tgt = targets.get(name)
            verdict = "" if tgt is None else f"<= {tgt:.0f} s {'OK' if a <= tgt else 'OVER'}"
            print(f"{name:34s} {a:8.2f}s {b:8.2f}s  {b / a:7.1f}x  {verdict}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--walks", type=int, default=1_000_000, help="walks in total (half per side)")
    ap.add_argument("--runs-per-side", type=int, default=1)
    ap.add_argument("--format", default="html", choices=["text", "lkml", "markdown", "html", "json"])
    ap.add_argument("--capture", help="store mode: a trace file to ingest as the runs before and after")
    ap.add_argument("--capture-events", type=int, help="store mode: generate a function_graph capture of N records")
    ap.add_argument("--real-mb", type=float, help="store mode: the real 6.1 function_graph capture "
                    "(sample_traces/real-6.1-fg200) tiled in time to this many MB")
    ap.add_argument("--store", type=Path, help="store mode: keep the store here (and reuse it when it has runs)")
    args = ap.parse_args()
    if args.capture or args.capture_events or args.real_mb:
        return store_mode(args)
    per_run = args.walks // 2 // args.runs_per_side

    t0 = time.perf_counter()
    b = td.gen_side("before", n_runs=args.runs_per_side, walks_per_run=per_run, seed=1)
    a = td.gen_side("after", n_runs=args.runs_per_side, walks_per_run=per_run, walk_median_ns=1e6, iterations=3,
                    seed=2)
    d = td.combine(b, a)
    con = duckdb.connect()
    td.create_tables(con, d["walks"], d["windows"], td.gen_waits("before", b["runs"].run_id[0], 1000),
                     d["runs"])
    n_walks = len(d["walks"])
    n_windows = len(d["windows"])
    del d, a, b
    t_gen = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"report.{ {'markdown': 'md', 'lkml': 'txt', 'text': 'txt'}.get(args.format, args.format) }"
        t1 = time.perf_counter()
        rep = build_report(con, "before", "after")
        t_model = time.perf_counter() - t1
        t2 = time.perf_counter()
        write(rep, args.format, out=out, benchstat=Path(tmp) / "bench.txt")
        t_write = time.perf_counter() - t2
        size = out.stat().st_size
    total = t_model + t_write
    print(f"command: python bench/bench_report.py --walks {args.walks} --runs-per-side {args.runs_per_side} "
          f"--format {args.format}")
    print(f"machine: {os.cpu_count()} CPUs; data: {n_walks:,} walks, {n_windows:,} lock windows "
          f"(generated in {t_gen:.1f} s, not counted)")
    print(f"build_report: {t_model:.2f} s   render+figures+benchstat ({args.format}, {size:,} bytes): "
          f"{t_write:.2f} s   total: {total:.2f} s  ({'OK' if total <= 10 else 'OVER'} the 10 s budget)")


if __name__ == "__main__":
    main()
