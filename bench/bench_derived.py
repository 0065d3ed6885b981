"""Benchmark of the derived-table step alone: ``ksmtrace.db.compute_derived`` (the walk views of queries/ over
one run's events: ``_ev`` and ``_walk_parts`` once, then walks, lock_windows and lock_waits to Parquet).

    python bench/bench_derived.py STORE [STORE ...] [--repeat 3] [--save DIR] [--compare DIR]

Every run of every STORE (a store made by ``ksmtrace ingest``, e.g. of a bench input kept with
``bench_ingest_ftrace.py --keep DIR``) is linked into a staging directory of its own, as ``ksmtrace rebuild``
does, and its derived tables are computed there in a fresh child process per repeat (spawned, so each pays the
connection and the view definitions as an ingest does). Reported: the wall seconds of ``compute_derived``
(min and median of the repeats), the child's peak RSS, the rows of each table and the load average.

``--save DIR`` keeps the tables of the last repeat as DIR/<run_id>/<table>.parquet; ``--compare DIR`` checks
them against tables saved before (by another version of the SQL): equal row counts and no row of either
side missing from the other (EXCEPT ALL both ways), per table. Exit 1 on a difference.

KSMTRACE_BENCH_THREADS=1 runs DuckDB on one thread: its CPU seconds are then the work itself, which compares
two versions of the SQL on a loaded machine better than wall seconds do.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from _ingest_harness import in_child  # noqa: E402  (sets sys.path to the checkout's pipeline/)


def derive(store_dir: str, label: str, run_id: str, out_dir: str) -> dict:
    """In the child: stage the run (links to its events and run row), compute its derived tables; returns
    {table: rows} and the seconds compute_derived took."""
    import time

    from ksmtrace import db
    from ksmtrace.store import Store, partition

    store = Store(store_dir)
    e = next(x for x in store.entries() if x.run_id == run_id)
    staging = Path(out_dir)
    sev = staging / partition("events", label, run_id)
    sev.mkdir(parents=True)
    for f in sorted((store.root / partition("events", label, run_id)).glob("events-*.parquet")):
        os.symlink(f.resolve(), sev / f.name)
    srun = staging / partition("runs", label, run_id)
    srun.mkdir(parents=True)
    os.symlink((e.dir / "run.parquet").resolve(), srun / "run.parquet")
    t0, c0 = time.perf_counter(), time.process_time()
    if os.environ.get("KSMTRACE_BENCH_THREADS"):  # the connection compute_derived then reuses
        db._compute_connection(staging).execute(f"SET threads = {int(os.environ['KSMTRACE_BENCH_THREADS'])}")
    tables = db.compute_derived(staging, label, run_id)
    return {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0,
            "rows": {t: v["rows"] for t, v in tables.items()}}


def compare(new: Path, ref: Path) -> list[str]:
    """Differences between two saved sets of derived tables (empty when equal row for row)."""
    import duckdb

    con = duckdb.connect()
    out = []
    for f in sorted(ref.glob("*.parquet")):
        g = new / f.name
        if not g.exists():
            out.append(f"{f.name}: missing")
            continue
        a, b = (str(p).replace("'", "''") for p in (g, f))
        na, nb = (con.execute(f"SELECT count(*) FROM '{p}'").fetchone()[0] for p in (a, b))
        sa = [(r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM '{a}'").fetchall()]
        sb = [(r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM '{b}'").fetchall()]
        if sa != sb:
            out.append(f"{f.name}: columns differ: {sa} vs {sb}")
            continue
        extra = con.execute(f"SELECT count(*) FROM (FROM '{a}' EXCEPT ALL FROM '{b}')").fetchone()[0]
        lost = con.execute(f"SELECT count(*) FROM (FROM '{b}' EXCEPT ALL FROM '{a}')").fetchone()[0]
        if na != nb or extra or lost:
            out.append(f"{f.name}: {na} rows vs {nb}; {extra} only in new, {lost} only in reference")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stores", nargs="+", help="store directories (every run of each is benchmarked)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of compute_derived per run, each in a fresh "
                                                          "process [3]")
    ap.add_argument("--save", help="keep the computed tables in DIR/<run_id>/<table>.parquet")
    ap.add_argument("--compare", help="compare the computed tables with those saved in DIR/<run_id>/")
    a = ap.parse_args()
    from ksmtrace import db
    from ksmtrace.store import Store, partition

    bad = 0
    tmp = Path(tempfile.mkdtemp(prefix="ksmtrace-bench-derived-"))
    try:
        for s in a.stores:
            for e in Store(s).entries():
                times, cpus, rss = [], [], []
                for i in range(max(1, a.repeat)):
                    out = tmp / f"{e.run_id}-{i}"
                    wall, _cpu, r, res = in_child("bench_derived", "derive", s, e.label, e.run_id, str(out))
                    times.append(res["seconds"]); cpus.append(res["cpu"])
                    rss.append(r)
                rows = ", ".join(f"{t} {n}" for t, n in res["rows"].items())
                print(f"{s} {e.run_id} ({e.manifest.get('tables', {}).get('events', {}).get('rows')} events): "
                      f"derived {min(times):.2f}s min, {statistics.median(times):.2f}s median of {len(times)} "
                      f"({' '.join(f'{t:.2f}' for t in times)}); CPU {min(cpus):.2f}s min; peak RSS {max(rss):.0f} MiB; {rows}; "
                      f"load average {os.getloadavg()[0]:.1f}", flush=True)
                kept = tmp / f"{e.run_id}-kept"
                kept.mkdir()
                for table in db.DERIVED:
                    shutil.copy(out / partition(table, e.label, e.run_id) / "part-0.parquet",
                                kept / f"{table}.parquet")
                if a.save:
                    dst = Path(a.save) / e.run_id
                    shutil.rmtree(dst, ignore_errors=True)
                    shutil.copytree(kept, dst)
                if a.compare:
                    diff = compare(kept, Path(a.compare) / e.run_id)
                    bad += bool(diff)
                    print("  compare: " + ("; ".join(diff) if diff else "identical (rows, EXCEPT ALL both ways)"),
                          flush=True)
                for i in range(max(1, a.repeat)):
                    shutil.rmtree(tmp / f"{e.run_id}-{i}", ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
