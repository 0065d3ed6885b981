"""Benchmark: `ksmtrace report` on one million walks (500k per side, 2 lock windows each).

The walks are generated directly as DuckDB tables named like the views (no trace, no ingest),
so this times the report alone: queries, statistics, figures and rendering.

    python bench/bench_report.py [--walks 1000000] [--runs-per-side 1] [--format html]
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
from ksmtrace.report import testdata as td  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--walks", type=int, default=1_000_000, help="walks in total (half per side)")
    ap.add_argument("--runs-per-side", type=int, default=1)
    ap.add_argument("--format", default="html", choices=["text", "lkml", "markdown", "html", "json"])
    args = ap.parse_args()
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
