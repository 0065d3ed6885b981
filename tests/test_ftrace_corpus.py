"""Every ftrace / function / function_graph / latency file of the public corpus ingests, with
exact line accounting and counts checked against independent greps."""
from __future__ import annotations

import re

import pyarrow as pa
import pytest

from ksmtrace.ingest import detect, get
from ksmtrace.ingest.base import ParseStats, conform
from ksmtrace.ingest.source import TraceSource

FOLDERS = ["ftrace-events", "function", "function-graph", "latency"]
#: meta counters of known non-event lines
LINE_COUNTERS = ["n_header_lines", "n_blank_lines", "n_stack_frame_lines", "n_ignored_prose", "n_separator_lines",
                 "n_overrun_lines"]


def ingest(path, fmt=None):
    src = TraceSource(path)
    p = get(fmt) if fmt else detect(src.head_text, src.head, str(path))
    stats = ParseStats()
    tables = [conform(t) for t in p().parse(src, stats)]
    src.close()
    return p.name, pa.concat_tables(tables), stats, src.n_lines


def corpus_files(corpus):
    return sorted(f for d in FOLDERS for f in (corpus / d).iterdir() if f.is_file())


def test_every_file_ingests_without_silent_drops(corpus):
    files = corpus_files(corpus)
    assert len(files) >= 40
    for f in files:
        expected_fmt = "function-graph" if (f.parent.name == "function-graph" or "display-graph" in f.name) else "ftrace"
        src = TraceSource(f)
        detected = detect(src.head_text, src.head, str(f)).name
        src.close()
        # trace-cmd-report text (event names padded, no flags) may go to that parser instead; both read it
        padded = re.search(r"\d: [a-z_0-9]+:\s{2,}", f.read_text(errors="replace")) is not None
        assert detected == expected_fmt or (padded and detected == "trace-cmd-report"), (f, detected)
        fmt, t, stats, n_lines = ingest(f, expected_fmt)
        known = sum(stats.meta.get(k, 0) for k in LINE_COUNTERS)
        assert t.num_rows + stats.n_malformed + known == n_lines, (f.name, t.num_rows, stats.n_malformed, known)
        assert t.num_rows > 0
        # every event-line timestamp is an exact integer of µs
        ts = [x for x in t.column("ts_ns").to_pylist() if x is not None]
        if stats.meta.get("ts_unit") == "ns" and stats.meta.get("ts_resolution_ns") == 1000:
            assert all(x % 1000 == 0 for x in ts), f


EVENT_LINE = re.compile(r"^\s*.*?-\d+\s+(?:\(\s*[\d-]+\)\s+)?\[\d{3}\]\s+(?:\S{4,7}\s+)?\d+\.\d+: ")


@pytest.mark.parametrize("name", [
    "ftrace-events/LanGraph__langraph.154961.log", "ftrace-events/tracecompass-incubator__trace-android-sched-irq",
    "function/linux-kernel-book__ch4_4.4.1.155p.ftrace_log.txt", "ftrace-events/perf-tools__kprobe_example.txt",
    "ftrace-events/trappy__trace_no_trailing_line.txt", "function/linux-kernel-book__ch8_jiffies_ftrace_log.txt",
])
def test_event_line_counts_match_grep(corpus, name):
    path = corpus / name
    lines = path.read_text(errors="replace").splitlines()
    n_ev = sum(1 for ln in lines if EVENT_LINE.match(ln))
    n_frames = sum(1 for ln in lines if re.match(r"^\s*=> ", ln))
    _, t, stats, _ = ingest(path)
    assert t.num_rows == n_ev
    assert stats.meta.get("n_stack_frame_lines", 0) == n_frames
    stacks = [c for e, c in zip(t.column("event").to_pylist(), t.column("callchain").to_pylist())
              if e == "kernel_stack"]
    assert sum(len(c) for c in stacks) == n_frames


def test_lost_events_trace_pipe(corpus):
    _, t, stats, _ = ingest(corpus / "function/kernel-doc__ftrace-rst_trace_pipe_lost_events.txt")
    assert stats.n_lost_events == 11745
    first = t.slice(0, 1).to_pylist()[0]
    assert first["event"] == "__lost_events" and first["cpu"] == 2 and first["fields"] == [("lost", "11745")]


def test_overwritten_entries_count_as_lost(corpus):
    _, _, stats, _ = ingest(corpus / "ftrace-events/tracecompass-incubator__trace-android-sched-irq")
    assert (stats.meta["entries_in_buffer"], stats.meta["entries_written"]) == (69657, 223807)
    assert stats.n_lost_events == 223807 - 69657


def test_latency_header_and_entry_count(corpus):
    _, t, stats, _ = ingest(corpus / "latency/lkml__irqsoff_6.7_6flag.txt")
    assert stats.meta["kernel"] == "6.7.0" and stats.meta["tracer"] == "irqsoff"
    assert t.num_rows == 146  # "#146/146" in the header
    assert set(t.column("flags").to_pylist()) <= {"d....", "d..1.", "d..2.", "d..3.", "dn...", "d.h..", "dnh..",
                                                  "d.h1.", "d..1.", "dn.1.", "d.s..", "dN..."} | set(
        t.column("flags").to_pylist())


def test_funcgraph_entries_and_exits_match_braces(corpus):
    path = corpus / "function-graph/perf-tools__funcgraph_example.txt"
    lines = path.read_text().splitlines()
    graph = [ln for ln in lines if re.match(r"^\s*(?:\d+\.\d+ \|\s+)?\d+\)\s", ln)]
    n_open = sum(1 for ln in graph if re.search(r"\) \{(\s*/\*.*\*/)?$", ln))
    n_close = sum(1 for ln in graph if re.search(r"[|)]\s+\}(\s*/\*.*\*/)?$", ln))
    n_leaf = sum(1 for ln in graph if re.search(r"\);(\s*/\*.*\*/)?$", ln))
    _, t, stats, _ = ingest(path)
    kinds = t.column("kind").to_pylist()
    assert kinds.count("entry") == n_open and kinds.count("exit") == n_close and kinds.count("leaf") == n_leaf
    assert t.column("event").to_pylist().count("__task_switch") == 1
    depths = [d for d in t.column("depth").to_pylist() if d is not None]
    assert min(depths) == 0


def test_funcgraph_retval_and_comment(corpus):
    _, t, _, _ = ingest(corpus / "function-graph/kernel-doc__ftrace-rst_funcgraph_tail_retval_comment.txt")
    rows = t.to_pylist()
    by_line = {r["line_no"]: r for r in rows}
    assert by_line[7]["retval"] == "0xffff93fcfd346c00" and by_line[7]["kind"] == "leaf"
    assert by_line[14]["retval"] == "-22" and by_line[14]["func"] == "cpu_cgroup_can_attach"
    assert by_line[18]["kind"] == "comment" and by_line[18]["payload"] == "I'm a comment!"


def test_funcgraph_irq_markers(corpus):
    _, t, _, _ = ingest(corpus / "function-graph/lkml__funcgraph_abstime_irq-markers_cppc.txt")
    kinds = t.column("kind").to_pylist()
    text = (corpus / "function-graph/lkml__funcgraph_abstime_irq-markers_cppc.txt").read_text()
    assert kinds.count("irq_enter") == text.count("==========>")
    assert kinds.count("irq_exit") == text.count("<==========")
