#!/usr/bin/env python3
"""Benchmark: function_graph ingest against a naive line-by-line Python ``re`` loop, in the same run.

Input: the real function_graph capture of a 6.1 kernel (``sample_traces/real-6.1-fg200.funcgraph.txt.zst``,
abstime + cpu + proc + duration columns, ``ksmtrace capture --evidence function-graph`` in the VM) tiled in time
to ``--size-mb`` (each copy's timestamps shifted past the previous copy's), or any function_graph text given
with ``--input``.

The naive loop is what a quick script does: one ``re`` match per line, a per-task stack for the depth, the
same columns written to Parquet with the same schema. Both run in their own child process; each reports wall
time, CPU time and its peak RSS.

    python bench/bench_ingest_funcgraph.py --size-mb 200
    KSMTRACE_NATIVE=0 python bench/bench_ingest_funcgraph.py --size-mb 200   # without the compiled parser
"""
from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import time
from pathlib import Path

from _ingest_harness import ROOT, in_child, read_capture, report, tile

SAMPLE = ROOT / "sample_traces" / "real-6.1-fg200.funcgraph.txt.zst"

NAIVE_RE = re.compile(r"^\s*(?:(\d+)\.(\d+)\s+\|)?\s*(\d+)\)\s+(?:(.*?)-(\d+)\s+\|)?\s*(?:[+!#*@$]\s*)?"
                      r"(?:(\d+)\.(\d+) us)?\s*\|(\s*)(.*?)\s*$")


def naive_parse(path: str, out: str) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ksmtrace.ingest.base import conform
    from ksmtrace.schema import PARSED_SCHEMA

    w = pq.ParquetWriter(out, PARSED_SCHEMA, compression="zstd")
    names = ["line_no", "ts_ns", "cpu", "pid", "comm", "event", "func", "depth", "kind", "duration_ns"]
    cols: dict[str, list] = {k: [] for k in names}
    stacks: dict[int, list] = {}
    n = 0

    def flush():
        w.write_table(conform(pa.table({k: pa.array(v, type=PARSED_SCHEMA.field(k).type) for k, v in cols.items()})))
        for v in cols.values():
            v.clear()

    with open(path, encoding="utf-8", errors="replace") as f:
        for ln, line in enumerate(f, 1):
            m = NAIVE_RE.match(line)
            if not m:
                continue
            sec, frac, cpu, comm, pid, dus, dfrac, _ind, text = m.groups()
            pid_i = int(pid) if pid else -1
            st = stacks.setdefault(pid_i, [])
            if text.endswith("{"):
                kind, func, depth = "entry", text[: text.index("(")], len(st)
                st.append(func)
            elif text.endswith(";"):
                kind, func, depth = "leaf", text[: text.index("(")], len(st)
            elif text.startswith("}"):
                kind, func = "exit", (st.pop() if st else None)
                depth = len(st)
            else:
                continue
            cols["line_no"].append(ln)
            cols["ts_ns"].append(int(sec) * 10**9 + int(frac.ljust(9, "0")) if sec else None)
            cols["cpu"].append(int(cpu))
            cols["pid"].append(int(pid) if pid else None)
            cols["comm"].append(comm.strip() if comm else None)
            cols["event"].append("funcgraph_exit" if kind == "exit" else "funcgraph_entry")
            cols["func"].append(func)
            cols["depth"].append(depth)
            cols["kind"].append(kind)
            cols["duration_ns"].append(int(dus) * 1000 + int(dfrac.ljust(3, "0")[:3]) if dus else None)
            n += 1
            if len(cols["line_no"]) >= 200_000:
                flush()
    flush()
    w.close()
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=float, default=200.0)
    ap.add_argument("--input", help="a function_graph text to use as it is (default: the real 6.1 capture, tiled)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ksmtrace-bench-fg-"))
    try:
        if a.input:
            src = Path(a.input)
        else:
            src = tmp / "fg.txt"
            k = tile(read_capture(SAMPLE), "function-graph", src, a.size_mb)
            print(f"input: {SAMPLE.name} tiled {k}x")
        size = src.stat().st_size / 1e6
        from ksmtrace.ingest import _native

        compiled = "funcgraph" in _native.built() and _native.enabled()
        print(f"function_graph, {size:.1f} MB; compiled parser {'on' if compiled else 'off'}")
        t0 = time.perf_counter()
        naive = in_child("bench_ingest_funcgraph", "naive_parse", str(src), str(tmp / "naive.parquet"))
        ours = in_child("_ingest_harness", "ksmtrace_ingest", str(src), str(tmp / "store"), "function-graph")
        report("function_graph", size, naive, ours)
        print(f"  (bench took {time.perf_counter() - t0:.0f}s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
