"""Shared parts of the ingest benchmarks: inputs (real captures tiled in time), child processes that report
their own wall time and peak RSS, and the result lines every bench prints.

Every figure is measured in a fresh child process (``multiprocessing`` spawn): ksmtrace's ingest
(``ingest_one`` into a temporary store: parse, Parquet, the run's derived tables) and the naive baseline of the
same run, so both pay their imports and neither inherits the other's memory. Peak RSS is the child's own
``getrusage(RUSAGE_SELF).ru_maxrss``.
"""
from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import re
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "pipeline"))
sys.path.insert(0, str(ROOT / "bench"))


def _child(module: str, fn: str, args: tuple, q) -> None:
    f = getattr(importlib.import_module(module), fn)
    t0, c0 = time.perf_counter(), time.process_time()
    out = f(*args)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    q.put((wall, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, out))


def in_child(module: str, fn: str, *args):
    """Run ``module.fn(*args)`` in a spawned child: (wall s, CPU s, peak RSS MiB, result)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(module, fn, args, q))
    p.start()
    res = q.get()
    p.join()
    if p.exitcode:
        raise SystemExit(f"benchmark child {module}.{fn} failed (exit {p.exitcode})")
    return res


def ksmtrace_ingest(path: str, store_dir: str, fmt: str = "auto"):
    """The real ingest (what ``ksmtrace ingest PATH`` runs): (events, malformed, format, seconds spent in the
    run's derived tables (walk views, DuckDB), seconds of imports)."""
    t0 = time.perf_counter()
    # as the ksmtrace command starts (ksmtrace.cli.entry): OpenBLAS single-threaded, imports without the GC
    from ksmtrace.cli import imports_without_gc, prepare_process

    prepare_process()
    with imports_without_gc():
        from ksmtrace import db
        from ksmtrace.ingest.run import ingest_one
        from ksmtrace.store import Store

    t_imp = time.perf_counter() - t0
    spent = [0.0]
    compute = db.compute_derived

    def timed(*a, **k):
        t = time.perf_counter()
        try:
            return compute(*a, **k)
        finally:
            spent[0] += time.perf_counter() - t

    db.compute_derived = timed
    r = ingest_one(path, Store(store_dir), "bench", fmt=fmt)
    return r.n_events, r.n_malformed, r.format, spent[0], t_imp


#: "<seconds>.<fraction>" of a line's timestamp, by format: the part before the seconds is kept
TS_OF = {
    "ftrace": re.compile(rb"^(.*?\] (?:\S+ +)?)( *)(\d+)(\.\d+: )", re.M),
    "function-graph": re.compile(rb"^( *)()(\d+)(\.\d+ \|)", re.M),
    "perf-script": re.compile(rb"^(\S.*? \d+(?:/\d+)? +(?:\[\d+\] +)?)( *)(\d+)(\.\d+: )", re.M),
}


def read_capture(src: Path) -> bytes:
    """A real capture's text, decompressed if it is ``.zst``."""
    data = src.read_bytes()
    if src.suffix == ".zst":
        import zstandard

        data = zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 31)
    return data


def tile(src: bytes, fmt: str, out: Path, size_mb: float) -> int:
    """Write ``src`` (a real capture) again and again to ``out`` until it holds ``size_mb`` MB, each copy's
    timestamps shifted past the previous copy's (the ``#`` header once). Returns the number of copies."""
    lines = src.split(b"\n")
    n_hdr = 0
    while n_hdr < len(lines) and lines[n_hdr].startswith(b"#"):
        n_hdr += 1
    hdr, body = b"\n".join(lines[:n_hdr]), b"\n".join(lines[n_hdr:])
    if not body.endswith(b"\n"):
        body += b"\n"
    secs = [int(m.group(3)) for m in TS_OF[fmt].finditer(body)]
    span = (max(secs) - min(secs) + 10) if secs else 10
    rx = TS_OF[fmt]
    k = 0
    with open(out, "wb") as f:
        if hdr:
            f.write(hdr + b"\n")
        while f.tell() < size_mb * 1e6:
            off = k * span
            f.write(body if off == 0 else rx.sub(
                lambda m: m.group(1) + m.group(2) + str(int(m.group(3)) + off).encode() + m.group(4), body))
            k += 1
    return k


def report(name: str, size_mb: float, naive, ours) -> dict:
    """Print the bench's result lines; returns the figures. ``parse`` is the ingest less the run's derived
    tables (SQL over the stored events) and the imports: reading, parsing and writing Parquet."""
    nw, nc, nr, nn = naive
    kw, kc, kr, (ne, nm, fmt, t_sql, t_imp) = ours
    parse = kw - t_sql - t_imp
    print(f"  naive loop : {nw:7.2f}s wall {nc:7.2f}s CPU  {size_mb / nw:7.1f} MB/s  peak RSS {nr:5.0f} MiB  "
          f"({nn} rows)")
    print(f"  ksmtrace   : {kw:7.2f}s wall {kc:7.2f}s CPU  {size_mb / kw:7.1f} MB/s  peak RSS {kr:5.0f} MiB  "
          f"({ne} events, {nm} malformed, {fmt})")
    print(f"    of which : {t_imp:5.2f}s imports, {t_sql:5.2f}s derived tables (walk views, DuckDB), "
          f"{parse:5.2f}s read+parse+Parquet = {size_mb / parse:.1f} MB/s")
    print(f"  ratio      : {nw / kw:.1f}x the naive loop (wall), parse alone {nw / parse:.1f}x; "
          f"load average {os.getloadavg()[0]:.1f}")
    return {"name": name, "mb": size_mb, "naive_mbps": size_mb / nw, "mbps": size_mb / kw, "rss_mib": kr,
            "ratio": nw / kw, "parse_mbps": size_mb / parse, "parse_ratio": nw / parse}


def report_alone(name: str, size_mb: float, ours) -> None:
    """The result lines of the real ingest without a baseline (``--skip-naive``: memory on big inputs)."""
    kw, kc, kr, (ne, nm, fmt, t_sql, t_imp) = ours
    print(f"  ksmtrace   : {kw:7.2f}s wall {kc:7.2f}s CPU  {size_mb / kw:7.1f} MB/s  peak RSS {kr:5.0f} MiB  "
          f"({ne} events, {nm} malformed, {fmt}); derived tables {t_sql:.2f}s; load average "
          f"{os.getloadavg()[0]:.1f}")
