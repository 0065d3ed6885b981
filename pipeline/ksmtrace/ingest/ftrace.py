"""tracefs text: the ``trace`` file (any tracer but function_graph) and ``trace_pipe``.

The format's sniffer and parser; the line rules (layouts, markers, stack traces, probes, trace_printk) are in
``_ftrace_lines`` (shared with the function_graph format). Chunks are parsed on a small thread pool and merged
in input order; with the compiled module (``native/ftrace_lines.c``) a chunk's bytes go to ``parse_chunk``,
without it its lines to ``parse_lines``: the same rows either way.
"""
from __future__ import annotations

import re
from typing import Iterator

import polars as pl
import pyarrow as pa

from ._native import load
from ._ftrace_lines import events_to_arrow, iter_byte_chunks, iter_line_frames, parse_chunk, parse_lines
from .base import TRACER_HEADER_RE, Parser, ParseStats
from .source import TraceSource, is_probably_binary


# ---------------------------------------------------------------- parser


class FtraceParser(Parser):
    name = "ftrace"
    description = "tracefs trace / trace_pipe text (event, function, latency tracers; probes; trace_printk)"

    @classmethod
    def sniff(cls, head_text: str, head_bytes: bytes) -> int:
        if is_probably_binary(head_bytes):
            return 0
        lines = head_text.splitlines()[:400]
        tracer = None
        for ln in lines[:50]:
            m = TRACER_HEADER_RE.match(ln)
            if m:
                tracer = m.group(1)
                break
        if tracer == "function_graph":
            return 10
        sample = "\n".join(lines)
        n_ev = len(re.findall(r"(?m)^\s*.*?-\d+\s+(?:\(\s*[\d-]+\)\s+)?\[\d{3,}\]\s+(?:[.A-Za-z0-9]{4,7}\s+)?\d+(?:\.\d+)?: ",
                              sample))
        n_lat = len(re.findall(r"(?m)^\s*\S.*?-\d+\s+\d+[.dDbX][.A-Za-z0-9]{3,6}\s+\d+us.: ", sample))
        n_perf = len(re.findall(r"(?m)^\s*\S.*?\s+\d+(?:/\d+)?\s+(?:\[\d+\]\s+)?\d+\.\d+:\s+\S+:\S+: ", sample))
        n_tcmd = len(re.findall(r"(?m)^cpus=\d+\s*$", sample))
        if n_tcmd and not tracer:
            return 0  # trace-cmd report text: its own parser
        if re.search(r"(?m)^\s*\d+\)\s.*\|", sample) and re.search(r"FUNCTION CALLS", sample):
            return 10
        if tracer:
            return 90 if (n_ev or n_lat or len(lines) < 20) else 60
        if re.search(r"(?m)^CPU:\d+ \[LOST (\d+ )?EVENTS\]", sample):
            return 80
        if n_ev > n_perf and n_ev:
            # trace-cmd report with its "event:   padded" style still parses here, but with lower confidence
            padded = len(re.findall(r"\]\s+\d+\.\d+: [a-z_0-9]+:\s{2,}", sample))
            return 40 if padded > n_ev // 2 else 80
        if n_lat:
            return 70
        return 0

    def parse(self, source: TraceSource, stats: ParseStats) -> Iterator[pa.Table]:
        counters: dict[str, int] = {}
        stats.meta.setdefault("ts_unit", "ns")

        def work(df: pl.DataFrame):
            st, cn = ParseStats(), {}
            ev = parse_lines(df, st, cn)
            return (events_to_arrow(ev) if ev.height else None), st, cn

        def work_bytes(item: tuple[bytes, int]):
            st, cn = ParseStats(), {}
            return parse_chunk(item[0], item[1], st, cn), st, cn

        # the compiled module parses the raw bytes of a chunk (the lines it is certain of; parse_lines the
        # rest); without it, the chunk is decoded and split into a polars frame for parse_lines
        if load("ftrace_lines") is not None:
            chunks, fn = iter_byte_chunks(source), work_bytes
        else:
            chunks, fn = iter_line_frames(source), work
        # chunks are parsed in worker threads (polars, pyarrow and the C module release the GIL) while the
        # caller writes the previous table; results are merged in input order
        for table, st, cn in ordered_map(fn, chunks):
            merge_stats(stats, st)
            for k, v in cn.items():
                counters[k] = counters.get(k, 0) + v
            if table is not None and table.num_rows:
                yield table
        for k, v in counters.items():
            stats.meta[k] = v
        if stats.meta.get("ts_unit") == "counter":
            stats.meta.pop("ts_resolution_ns", None)
        elif "ts_resolution_ns" not in stats.meta:
            stats.meta["ts_resolution_ns"] = 1000


def ordered_map(fn, items, workers: int | None = None, ahead: int = 2):
    """``map(fn, items)`` on a small thread pool, in order, with at most ``ahead`` pending results."""
    import collections
    import os
    from concurrent.futures import ThreadPoolExecutor

    # one worker per core: polars runs each chunk's expressions on its own pool as well and the Parquet
    # writer has a thread, so more workers only add contention (measured on 2 cores: -3% CPU, -60 MiB RSS)
    workers = workers or min(4, os.cpu_count() or 1)
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers) as ex:
        pending: collections.deque = collections.deque()
        for it in items:
            pending.append(ex.submit(fn, it))
            while len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


_FIRST_WINS = ("tracer", "n_cpus", "kernel", "entries_in_buffer", "entries_written", "latency_us")


def merge_stats(into: ParseStats, part: ParseStats) -> None:
    """Fold one chunk's ParseStats into the run's (chunks merged in input order)."""
    into.n_malformed += part.n_malformed
    room = 20 - len(into.malformed_examples)
    if room > 0:
        into.malformed_examples.extend(part.malformed_examples[:room])
    into.n_lost_events += part.n_lost_events
    into.lost_unknown = into.lost_unknown or part.lost_unknown
    for k, v in part.meta.items():
        if k in _FIRST_WINS:
            into.meta.setdefault(k, v)
        elif k == "ts_resolution_ns":
            cur = into.meta.get(k)
            into.meta[k] = v if cur is None else min(cur, v)
        elif k == "ts_unit":
            if v == "counter":
                into.meta[k] = v
        elif k in ("overwritten", "overruns"):
            into.meta[k] = into.meta.get(k, 0) + v if k == "overwritten" else max(into.meta.get(k, 0), v)
        else:
            into.meta[k] = v


PARSERS = [FtraceParser]
