#!/usr/bin/env python3
"""Micro-benchmark: ``fields.parse_fields`` (the key=value split of every event payload) on the payload and
event columns of an ftrace ingest, with the compiled split (``ingest/native/fields.c``) and without it.

The input is one of bench_ingest_ftrace.py's mixes (``--mix``, generated or tiled to ``--size-mb``) or an
ftrace text file (``--input``). Its lines are cut into the same chunks, and parsed into the same payload/event
columns, as the real ingest does; then every chunk's fields are parsed ``--repeat`` times each way (best run
kept; wall and CPU seconds, so a loaded machine shows as wall >> CPU). Both ways must give equal maps.

    python bench/bench_fields.py --mix bench --size-mb 50
    python bench/bench_fields.py --input /path/to/trace.txt
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import bench_ingest_ftrace as ft  # noqa: F401  (puts pipeline/ on sys.path through _ingest_harness)
import polars as pl

from ksmtrace.ingest import _ftrace_lines, _native, fields
from ksmtrace.ingest.base import ParseStats
from ksmtrace.ingest.source import open_source


def columns(path: Path) -> list[tuple[pl.Series, pl.Series]]:
    src = open_source(str(path))
    stats, counters = ParseStats(), {}
    out = []
    for df in _ftrace_lines.iter_line_frames(src):
        ev = _ftrace_lines.parse_lines(df, stats, counters)
        out.append((ev.get_column("payload"), ev.get_column("event")))
    return out


def best(chunks, repeat: int) -> tuple[float, float]:
    wall = cpu = float("inf")
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        for p, e in chunks:
            fields.parse_fields(p, e)
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mix", choices=ft.MIXES, default="bench")
    ap.add_argument("--size-mb", type=float, default=50.0)
    ap.add_argument("--input", type=Path, help="an ftrace text file instead of a mix")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ksmtrace-bench-fields-") as tmp:
        path = a.input
        if path is None:
            path = Path(tmp) / f"{a.mix}.txt"
            if ft.make_input(a.mix, path, a.size_mb) is None:
                raise SystemExit(f"bench_fields: the source of mix {a.mix} is missing")
        size = path.stat().st_size / 1e6
        chunks = columns(path)
    rows = sum(len(p) for p, _ in chunks)
    pay_mb = sum(p.str.len_bytes().sum() or 0 for p, _ in chunks) / 1e6
    if _native.load("fields") is None:
        raise SystemExit("bench_fields: the compiled fields module is not built or is switched off")
    prev = _native.use(False)
    try:
        pure = best(chunks, a.repeat)
        want = [fields.parse_fields(p, e) for p, e in chunks]
        _native.use(True)
        nat = best(chunks, a.repeat)
        got = [fields.parse_fields(p, e) for p, e in chunks]
    finally:
        _native.use(prev)
    assert all(g.equals(w) for g, w in zip(got, want)), "compiled and Python field maps differ"
    print(f"input {path.name if a.input else a.mix}: {size:.1f} MB of text, {len(chunks)} chunks, {rows} events, "
          f"{pay_mb:.1f} MB of payload")
    for name, (wall, cpu) in (("python", pure), ("compiled", nat)):
        print(f"  parse_fields {name:8s}: wall {wall:6.3f} s  CPU {cpu:6.3f} s  ({size / wall:7.0f} MB/s of text)")
    print(f"  speed-up: wall {pure[0] / nat[0]:.1f}x, CPU {pure[1] / nat[1]:.1f}x")


if __name__ == "__main__":
    main()
