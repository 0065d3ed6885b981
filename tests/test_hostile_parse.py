"""Hostile input for the ingest side: a table of audited cases with exact counts, hypothesis fuzzing of every
text parser and of format detection, and CLI cases that need a real process (permissions, FIFOs, memory).

What every case asserts:

* no exception but the project's one-line errors (``KsmtraceError``; the CLI: exit 2, no traceback);
* every line is accounted for: rows + known non-event lines (``meta['n_*_lines']``, prose) + malformed ==
  lines read;
* exact malformed counts, and no event with a wrapped timestamp or a NULL pid that the line did print.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import ROOT, examples, run_cli
from ksmtrace.errors import KsmtraceError
from ksmtrace.ingest import detect, get
from ksmtrace.ingest.base import ParseStats, conform
from ksmtrace.ingest.source import MAX_LINE_BYTES, TraceSource, is_probably_binary

NONEVENT_KEYS = ("n_header_lines", "n_blank_lines", "n_ignored_prose", "n_stack_frame_lines", "n_separator_lines",
                 "n_overrun_lines", "n_callchain_frame_lines", "n_preamble_lines", "n_attached_lines")


def parse_bytes(data: bytes, fmt: str | None = None, partial: bool = False):
    """(format name, rows, stats, source) for ``data`` parsed in-process; fmt None = detection."""
    src = TraceSource(stream=io.BytesIO(data), name="t", partial=partial)
    cls = get(fmt) if fmt else detect(src.head_text, src.head, "t")
    stats = ParseStats()
    tabs = [conform(t) for t in cls().parse(src, stats)]
    tbl = pa.concat_tables(tabs) if tabs else conform(pa.table({"line_no": pa.array([], pa.int64())}))
    return cls.name, tbl, stats, src


def accounted(tbl: pa.Table, stats: ParseStats, src: TraceSource) -> None:
    nonev = sum(stats.meta.get(k, 0) for k in NONEVENT_KEYS)
    assert tbl.num_rows + nonev + stats.n_malformed == src.n_lines, (
        tbl.num_rows, {k: stats.meta.get(k) for k in NONEVENT_KEYS if k in stats.meta}, stats.n_malformed,
        src.n_lines)


# ---------------------------------------------------------------- line makers

def ft(i: int, sec: str | None = None, pid: str = "0", cpu: str = "001") -> bytes:
    ts = sec if sec is not None else f"{100 + i}.{i % 1000000:06d}"
    return (f"          <idle>-{pid:<7} [{cpu}] d..2. {ts}: sched_switch: prev_comm=a prev_pid=0 ==> "
            f"next_comm=b next_pid={i}").encode()


FT_HDR = b"# tracer: nop\n#\n# entries-in-buffer/entries-written: 3/3   #P:2\n#\n"


def fg(i: int, abs_ts: str | None = None, pid: str = "123", dur: str = "0.180") -> bytes:
    ts = abs_ts if abs_ts is not None else f"{100 + i}.{i % 1000000:06d}"
    return f" {ts} |   1)  bash-{pid}   |   {dur} us    |  kfree();".encode()


FG_HDR = b"# tracer: function_graph\n#\n#     TIME        CPU  TASK/PID         DURATION                  FUNCTION CALLS\n"


def pf(i: int, sec: str | None = None, pid: str = "4711", cpu: str = "001") -> bytes:
    ts = sec if sec is not None else f"{100 + i}.{i:09d}"
    return f"            bash {pid}/{pid} [{cpu}] {ts}: migrate:set_migration_pte: addr=7f00{i:x} pte=1 order=0".encode()


def tc(i: int, sec: str | None = None, pid: str = "4711", cpu: str = "001") -> bytes:
    ts = sec if sec is not None else f"{100 + i}.{i:06d}"
    return f"            bash-{pid}  [{cpu}] {ts}: sched_wakeup:         comm=bash pid={i} prio=120".encode()


TC_PRE = b"version = 6\ncpus=2\n"


def body(maker, n: int, pre: bytes = b"") -> bytes:
    return pre + b"\n".join(maker(i) for i in range(n)) + b"\n"


# ---------------------------------------------------------------- the table

NUL_LINE = b"\x00" * 40
LONG = b"x" * (MAX_LINE_BYTES + 10)
GARBAGE = bytes(range(1, 9)) * 6 + b"\x7f\x1f\x1e"

CASES = [
    # (id, format, data, expected events, expected malformed)
    ("entries-overflow", "ftrace", b"# tracer: nop\n# entries-in-buffer/entries-written: 93/99999999999999999999   #P:2\n"
     + body(ft, 3), 3, 1),
    ("ncpus-overflow", "ftrace", b"# tracer: nop\n# entries-in-buffer/entries-written: 3/3   #P:99999999999\n"
     + body(ft, 3), 3, 1),
    ("lost-count-overflow", "ftrace", FT_HDR + body(ft, 2) + b"CPU:1 [LOST 99999999999999999999999 EVENTS]\n", 3, 0),
    ("three-nul-lines-in-head", None, FT_HDR + ft(0) + b"\n" + NUL_LINE + b"\n" + ft(1) + b"\n" + NUL_LINE + b"\n"
     + NUL_LINE + b"\n" + body(ft, 20), 22, 3),
    ("nul-inside-event-line", "ftrace", FT_HDR + ft(0) + b"\x00tail\n" + body(ft, 2), 2, 1),
    ("binary-garbage-line", "ftrace", FT_HDR + body(ft, 2) + GARBAGE + b"\n" + body(ft, 2), 4, 1),
    ("fgraph-like-garbage-in-ftrace", "ftrace", FT_HDR + body(ft, 2) + b" 1)   0.123 us    |  }\n"
     + b" 0)               |  ???? junk\n" + body(ft, 1), 3, 2),
    ("fgraph-garbage-in-fgraph", "function-graph", FG_HDR + body(fg, 3) + b" 120.000000 |   1)  bash-123   |  "
     b"             |  @@@ not a call\n", 3, 1),
    ("12-digit-seconds", "ftrace", FT_HDR + ft(0, sec="999999999999.123456") + b"\n" + body(ft, 2), 2, 1),
    ("pid-2^31", "ftrace", FT_HDR + ft(0, pid="2147483648") + b"\n" + body(ft, 2), 2, 1),
    ("cpu-overflow", "ftrace", FT_HDR + ft(0, cpu="99999999999") + b"\n" + body(ft, 2), 2, 1),
    ("overlong-ftrace", "ftrace", FT_HDR + body(ft, 2) + LONG + b"\n" + body(ft, 2), 4, 1),
    ("overlong-last-line", "ftrace", FT_HDR + body(ft, 2) + LONG, 2, 1),
    ("fgraph-ts-overflow", "function-graph", FG_HDR + fg(0, abs_ts="999999999999.000001") + b"\n" + body(fg, 2), 2, 1),
    ("fgraph-pid-overflow", "function-graph", FG_HDR + fg(0, pid="99999999999") + b"\n" + body(fg, 2), 2, 1),
    ("fgraph-dur-overflow", "function-graph", FG_HDR + fg(0, dur="99999999999999999") + b"\n" + body(fg, 2), 2, 1),
    ("fgraph-nul", "function-graph", FG_HDR + body(fg, 2) + NUL_LINE + b"\n" + LONG + b"\n" + body(fg, 1), 3, 2),
    ("perf-ts-overflow", "perf-script", body(pf, 3) + pf(9, sec="999999999999.000000001") + b"\n", 3, 1),
    ("perf-pid-overflow", "perf-script", body(pf, 3) + pf(9, pid="2147483648") + b"\n"
     + b"\tffffffff81000000 rmap_walk_ksm+0x1 ([kernel.kallsyms])\n", 3, 2),
    ("perf-nul-and-long", "perf-script", body(pf, 3) + NUL_LINE + b"\n" + LONG + b"\n" + body(pf, 1), 4, 2),
    # a TAB line that is no frame: malformed once, not also a callchain frame line (found by fuzzing)
    ("perf-tab-colon", "perf-script", pf(0) + b"\n\t:", 1, 1),
    ("perf-record-overflow", "perf-script", body(pf, 2)
     + b"            bash 99999999999 [001] 1.0: PERF_RECORD_LOST lost: 3\n", 2, 1),
    ("tracecmd-cpus-overflow", "trace-cmd-report", b"version = 6\ncpus=99999999999\n" + body(tc, 3), 3, 1),
    ("tracecmd-pid-overflow", "trace-cmd-report", TC_PRE + body(tc, 2) + tc(5, pid="99999999999") + b"\n"
     + b" => rmap_walk_ksm (ffffffff81000000)\n" + body(tc, 1), 3, 2),
    ("tracecmd-ts-overflow", "trace-cmd-report", TC_PRE + body(tc, 2) + tc(5, sec="999999999999.000001") + b"\n", 2, 1),
    ("tracecmd-nul-and-long", "trace-cmd-report", TC_PRE + body(tc, 2) + NUL_LINE + b"\n" + LONG + b"\n"
     + body(tc, 1), 3, 2),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_table(case):
    _, fmt, data, n_events, n_malformed = case
    name, tbl, stats, src = parse_bytes(data, fmt)
    if fmt is None:
        assert name == "ftrace"
    assert stats.n_malformed == n_malformed, stats.malformed_examples
    assert tbl.num_rows == n_events
    accounted(tbl, stats, src)
    # nothing stored has a NULL pid or timestamp where a trace line printed one
    ev = tbl.filter(pa.compute.invert(pa.compute.starts_with(tbl.column("event").fill_null(""), "__")))
    assert ev.column("ts_ns").null_count == 0
    assert ev.column("pid").null_count == 0
    for e in stats.malformed_examples:
        assert "\x00" not in e["text"] and len(e["text"]) <= 300


def test_lost_overflow_is_unknown_not_wrapped():
    _, tbl, stats, _ = parse_bytes(FT_HDR + body(ft, 2) + b"CPU:1 [LOST 99999999999999999999999 EVENTS]\n", "ftrace")
    assert stats.lost_unknown and stats.n_lost_events == 0


def test_header_overflow_gives_no_fact():
    _, _, stats, _ = parse_bytes(b"# tracer: nop\n# entries-in-buffer/entries-written: 3/3   #P:99999999999\n"
                                 + body(ft, 3), "ftrace")
    assert "n_cpus" not in stats.meta and "entries_written" not in stats.meta
    assert stats.malformed_examples[0]["reason"] == "header number out of range"


def test_timestamp_limits_are_exact():
    data = FT_HDR + ft(0, sec="9223372036.854775") + b"\n" + ft(1, sec="9223372036.854776") + b"\n" \
        + ft(2, sec="0000000017258.057760") + b"\n"
    _, tbl, stats, _ = parse_bytes(data, "ftrace")
    assert tbl.column("ts_ns").to_pylist() == [9223372036854775000, 17258057760000]
    assert stats.n_malformed == 1
    # the largest pid that fits is kept exactly
    _, tbl, stats, _ = parse_bytes(FT_HDR + ft(0, pid="2147483647") + b"\n", "ftrace")
    assert tbl.column("pid").to_pylist() == [2147483647] and stats.n_malformed == 0


def test_cr_only_file_splits_into_lines():
    data = (FT_HDR + body(ft, 5)).replace(b"\n", b"\r")
    name, tbl, stats, src = parse_bytes(data)
    assert name == "ftrace" and tbl.num_rows == 5 and stats.n_malformed == 0 and src.n_lines == 9
    assert tbl.column("ts_ns").to_pylist() == [100_000_000_000 + i * 1_000_000_000 + i * 1000 for i in range(5)]
    # CRLF is unchanged, also across a chunk boundary
    crlf = (FT_HDR + body(ft, 5)).replace(b"\n", b"\r\n")
    _, tbl2, stats2, src2 = parse_bytes(crlf)
    assert tbl2.num_rows == 5 and stats2.n_malformed == 0 and src2.n_lines == 9


def test_three_nul_lines_do_not_make_a_trace_binary():
    head = FT_HDR + body(ft, 3) + (NUL_LINE + b"\n") * 3 + body(ft, 30)
    assert len(head) < 8192 and not is_probably_binary(head)
    assert is_probably_binary(os.urandom(4096))
    assert is_probably_binary(bytes(4096))
    elf = (ROOT / "tests" / "data" / "sched_stack.trace.dat").read_bytes()[:65536]
    assert is_probably_binary(elf)


def test_overlong_line_example_is_short_and_says_why():
    _, _, stats, _ = parse_bytes(FT_HDR + body(ft, 1) + LONG + b"\n", "ftrace")
    (ex,) = stats.malformed_examples
    assert ex["line_no"] == 6 and "cap" in ex["reason"] and ex["text"].startswith(f"{len(LONG)} bytes")


def test_overlong_lines_anywhere_in_a_chunk():
    """Lines just over the cap, exactly at it, and many of them, at every offset of the chunks."""
    cap = MAX_LINE_BYTES
    parts = [ft(0), b"a" * cap, ft(1), b"b" * (cap + 1), b"c" * (cap // 2 + 7), b"d" * (3 * cap), ft(2)]
    data = FT_HDR + b"\n".join(parts) + b"\n"
    src = TraceSource(stream=io.BytesIO(data), name="t")
    lines = b"".join(c.data for c in src.chunks(chunk_bytes=cap // 3)).split(b"\n")[:-1]
    assert len(lines) == src.n_lines == 4 + len(parts) and src.n_overlong == 2
    assert lines[5] == b"a" * cap and lines[8] == b"c" * (cap // 2 + 7)
    assert lines[7].startswith(b"\x00ksmtrace:overlong\x00") and lines[9].startswith(b"\x00ksmtrace:overlong\x00")


def _gz_members(*parts: bytes) -> bytes:
    return b"".join(gzip.compress(p) for p in parts)


def _readable_lines(gz: bytes) -> int:
    """Complete lines ``gzip -dc`` prints for a damaged .gz (zlib, member by member)."""
    out = b""
    while gz:
        d = zlib.decompressobj(wbits=31)
        try:
            out += d.decompress(gz)
        except zlib.error:
            break
        if not d.eof:
            break
        gz = d.unused_data
        if not gz.startswith(b"\x1f\x8b"):
            break
    return out.count(b"\n")


def test_partial_keeps_every_readable_line():
    data = FT_HDR + body(ft, 7760)
    gz = gzip.compress(data)
    cut = gz[: int(len(gz) * 0.9)]
    want = _readable_lines(cut)
    assert want * 120 > 256 << 10  # more than the old 256 KiB
    with pytest.raises(KsmtraceError, match="--partial"):
        parse_bytes(cut, "ftrace")
    _, tbl, stats, src = parse_bytes(cut, "ftrace", partial=True)
    assert src.truncated
    assert tbl.num_rows + stats.meta["n_header_lines"] == want  # every complete line, none lost
    assert stats.n_malformed == 1 and "truncation" in stats.malformed_examples[0]["reason"]  # the cut last line
    accounted(tbl, stats, src)


@pytest.mark.parametrize("kind", ["xz", "bz2", "zst"])
def test_partial_other_compressions(kind):
    data = FT_HDR + body(ft, 20000)  # bzip2 blocks are 900 kB: a cut block gives nothing, as with bzip2 -dc
    if kind == "xz":
        import lzma
        c = lzma.compress(data)
    elif kind == "bz2":
        import bz2
        c = bz2.compress(data)
    else:
        import zstandard
        c = zstandard.ZstdCompressor().compress(data)
    full = parse_bytes(c, "ftrace")[1]
    assert full.num_rows == 20000
    _, tbl, stats, src = parse_bytes(c[: len(c) * 2 // 3], "ftrace", partial=True)
    assert src.truncated and 0 < tbl.num_rows < 20000
    accounted(tbl, stats, src)


def test_gzip_members_and_trailing_garbage_like_gzip():
    a, b = FT_HDR + body(ft, 10), body(ft, 5)
    _, tbl, stats, src = parse_bytes(_gz_members(a, b) + b"trailing junk \x01\x02", "ftrace")
    assert tbl.num_rows == 15 and stats.n_malformed == 0 and src.warnings and "trailing garbage" in src.warnings[0]
    _, tbl, _, src = parse_bytes(_gz_members(a) + bytes(1000), "ftrace")  # zero padding: silently accepted
    assert tbl.num_rows == 10 and not src.warnings


def test_decompression_bomb_stays_small_in_process():
    """A line of 64 MiB inside a .gz is streamed past (the RSS test below uses 300 MB in a child)."""
    co = zlib.compressobj(9, wbits=31)
    gz = co.compress(FT_HDR + body(ft, 2)) + b"".join(co.compress(b"A" * (1 << 20)) for _ in range(64)) \
        + co.compress(b"\n" + body(ft, 2)) + co.flush()
    assert len(gz) < 200_000
    _, tbl, stats, src = parse_bytes(gz, "ftrace")
    assert tbl.num_rows == 4 and stats.n_malformed == 1 and src.n_overlong == 1


# ---------------------------------------------------------------- hypothesis: every parser, and detection

def _num(draw, normal: str) -> str:
    return draw(st.sampled_from([normal, normal, normal, "2147483648", "99999999999", "9223372036854775808",
                                 "0", "00000000000000000001"]))


@st.composite
def hostile_lines(draw, maker, good_weight: int = 6):
    """A list of lines: valid lines of one format mixed with hostile ones (NUL, control bytes, huge numbers,
    function_graph-like garbage, random bytes, CR, blank)."""
    n = draw(st.integers(1, 40))
    out = []
    for i in range(n):
        k = draw(st.integers(0, good_weight + 7))
        if k < good_weight:
            out.append(maker(draw, i))
        elif k == good_weight:
            out.append(b"\x00" * draw(st.integers(1, 50)))
        elif k == good_weight + 1:
            out.append(draw(st.binary(max_size=80)).replace(b"\n", b""))
        elif k == good_weight + 2:
            out.append(b"")
        elif k == good_weight + 3:
            out.append(draw(st.sampled_from([b" 0)               |  ???", b" 1)   0.123 us    |  }",
                                             b"| kfree();", b" 12.5 us  |  x", b"#P:99999999999",
                                             b"# entries-in-buffer/entries-written: 1/99999999999999999999"])))
        elif k == good_weight + 4:
            line = maker(draw, i)
            pos = draw(st.integers(0, len(line)))
            out.append(line[:pos] + draw(st.sampled_from([b"\x00", b"\x1b[2K", b"\r", b"\xff\xfe", b"\t"]))
                       + line[pos:])
        elif k == good_weight + 5:
            out.append(maker(draw, i)[: draw(st.integers(0, 60))])
        else:
            out.append(draw(st.text(max_size=60)).encode("utf-8", "replace").replace(b"\n", b" "))
    return out


def _ft_line(draw, i):
    sec = draw(st.sampled_from([None, None, "999999999999.123456", "9223372036.854776", "1", "17258.0577601234"]))
    return ft(i, sec=sec, pid=_num(draw, "42"), cpu=_num(draw, "001"))


def _fg_line(draw, i):
    sec = draw(st.sampled_from([None, None, "999999999999.000001"]))
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return fg(i, abs_ts=sec, pid=_num(draw, "123"), dur=draw(st.sampled_from(["0.180", "99999999999999999"])))
    ts = sec or f"{100 + i}.{i:06d}"
    return [f" {ts} |   1)  bash-123   |               |  f{i}() {{".encode(),
            f" {ts} |   1)  bash-123   |   1.000 us    |  }}".encode(),
            f" 1)  bash-{_num(draw, '9')}  =>  kcompact-{_num(draw, '33')}".encode()][kind - 1]


def _pf_line(draw, i):
    if draw(st.integers(0, 3)) == 0:
        return b"\t" + f"ffffffff8100{i:04x} rmap_walk_ksm+0x{i:x} ([kernel.kallsyms])".encode()
    sec = draw(st.sampled_from([None, None, "999999999999.000000001"]))
    return pf(i, sec=sec, pid=_num(draw, "4711"), cpu=_num(draw, "001"))


def _tc_line(draw, i):
    k = draw(st.integers(0, 4))
    if k == 0:
        return f" => rmap_walk_ksm+0x{i:x} (ffffffff81000000)".encode()
    if k == 1:
        return f"CPU:{_num(draw, '1')} [{_num(draw, '3')} EVENTS DROPPED]".encode()
    sec = draw(st.sampled_from([None, None, "999999999999.000001"]))
    return tc(i, sec=sec, pid=_num(draw, "4711"), cpu=_num(draw, "001"))


def _counter_line(draw, i):
    vals = {k: _num(draw, str(i)) for k in ("hold_ns", "iterations", "skip_addr", "rmap_one")}
    payload = " ".join(f"{k}={v}" for k, v in vals.items())
    return (f"   ksm_rmap_repro-{_num(draw, '10396')} [001] ...1. {100 + i}.{i:06d}: rmap_walk_ksm: {payload}"
            ).encode()


FORMATS = {
    "ftrace": (_ft_line, FT_HDR),
    "function-graph": (_fg_line, FG_HDR),
    "perf-script": (_pf_line, b""),
    "trace-cmd-report": (_tc_line, TC_PRE),
    "counters": (_counter_line, FT_HDR),
}
ENDINGS = [b"\n", b"\r\n", b"\r"]


def _check_parse(data: bytes, fmt: str | None):
    try:
        name, tbl, stats, src = parse_bytes(data, fmt)
    except KsmtraceError as e:  # the project's one-line error
        assert "\n" not in str(e)
        return None
    accounted(tbl, stats, src)
    rows = tbl.to_pydict()
    for ev, ts, pid in zip(rows["event"], rows["ts_ns"], rows["pid"]):
        if ts is not None:
            assert 0 <= ts < 1 << 63
        if pid is not None:
            assert -(1 << 31) <= pid < 1 << 31
    return name, tbl, stats


@pytest.mark.parametrize("fmt", list(FORMATS))
@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_fuzz_parser(fmt, data):
    maker, pre = FORMATS[fmt]
    lines = data.draw(hostile_lines(maker))
    nl = data.draw(st.sampled_from(ENDINGS))
    blob = pre + nl.join(lines) + data.draw(st.sampled_from([nl, b""]))
    res = _check_parse(blob, "ftrace" if fmt == "counters" else fmt)
    if res is None:
        return
    _, tbl, stats = res
    # every line holding a NUL is counted malformed (never an event, never prose)
    split = b"".join(c.data for c in TraceSource(stream=io.BytesIO(blob), name="t").chunks()).split(b"\n")
    assert stats.n_malformed >= sum(1 for ln in split if b"\x00" in ln)


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=3000),
                 st.lists(st.sampled_from([ft(1), fg(1), pf(1), tc(1), b"", b"\x00\x00", b"cpus=2", b"version = 6",
                                           b"# tracer: function_graph", b"# tracer: nop", b"#P:99999999999",
                                           b"\x1f\x8b\x08", b"PERFILE2", b"\x17\x08Dtracing6"]),
                          max_size=30).map(b"\n".join)))
def test_fuzz_detection(blob):
    """Format detection on anything: a parser or a one-line BadInput, and that parser never tracebacks."""
    try:
        src = TraceSource(stream=io.BytesIO(blob), name="t")
        cls = detect(src.head_text, src.head, "t")
    except KsmtraceError as e:
        assert "\n" not in str(e)
        return
    if cls.name in ("trace-dat", "perf-data"):
        return  # converted by external tools: tests/test_binary.py
    _check_parse(blob, cls.name)


@settings(max_examples=examples(60), deadline=None)
@given(st.lists(st.text(max_size=40), max_size=20), st.lists(st.sampled_from(
    ["rmap_walk_ksm", "ksm_merge_one_page", "contention_begin", "sys_enter", "x", None]), max_size=20))
def test_fuzz_counter_fields(payloads, events):
    """The key=value splitter (counter lines, every payload) takes any text."""
    import polars as pl

    from ksmtrace.ingest.fields import parse_fields

    n = min(len(payloads), len(events))
    out = parse_fields(pl.Series(payloads[:n], dtype=pl.String), pl.Series(events[:n], dtype=pl.String))
    assert len(out) == n


# ---------------------------------------------------------------- CLI: real processes

def _trace_file(path: Path, n: int = 50) -> Path:
    path.write_bytes(FT_HDR + body(ft, n))
    return path


def test_nul_tail_of_1gb_is_streamed(tmp_path, store_dir):
    p = _trace_file(tmp_path / "t.txt", 1000)
    size = p.stat().st_size
    with open(p, "r+b") as f:
        f.truncate(size + (1 << 30))  # sparse: costs no disk
    t0 = time.monotonic()
    r = run_cli("ingest", str(p), "--store", str(store_dir))
    assert r.code == 0 and "Traceback" not in r.err, r.err
    assert "1000 events from 1005 lines, 1 malformed (lines 1005)" in r.out
    assert time.monotonic() - t0 < 120
    r = run_cli("sql", "SELECT malformed_examples FROM runs", "--store", str(store_dir), "-f", "json")
    assert "a run of 1073741824 NUL bytes" in r.out


def _peak_rss_child(args: list[str]) -> tuple[int, int, str, str]:
    """Run the CLI in a child; (exit code, peak RSS in MiB of that child alone, stdout, stderr)."""
    code = ("import resource, subprocess, sys, json; p = subprocess.run(sys.argv[1:], capture_output=True); "
            "print(json.dumps([p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, "
            "p.stdout.decode(), p.stderr.decode()]))")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "pipeline"))
    out = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "ksmtrace", *args],
                         capture_output=True, env=env, timeout=600).stdout
    return tuple(json.loads(out))  # type: ignore[return-value]


def test_gz_with_one_300mb_line_does_not_blow_memory(tmp_path, store_dir):
    p = tmp_path / "bomb.gz"
    co = zlib.compressobj(9, wbits=31)
    with open(p, "wb") as f:
        f.write(co.compress(FT_HDR + body(ft, 3)))
        block = b"A" * (1 << 20)
        for _ in range(300):
            f.write(co.compress(block))
        f.write(co.compress(b"\n" + body(ft, 3)) + co.flush())
    assert p.stat().st_size < 400_000
    code, rss, out, err = _peak_rss_child(["ingest", str(p), "--store", str(store_dir)])
    assert code == 0 and "Traceback" not in err, err
    assert "6 events from 11 lines, 1 malformed (lines 8)" in out
    assert rss < 700, f"peak RSS {rss} MiB"  # the line alone would be 300 MiB, ~21x that before the cap


def test_permission_denied_is_one_line(tmp_path, store_dir):
    p = _trace_file(tmp_path / "secret.txt")
    p.chmod(0)
    prefix: list[str] = []
    if os.geteuid() == 0:
        # root reads anything: drop the capabilities that bypass file modes (the CLI still runs as root)
        import shutil

        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv (util-linux): cannot make the open fail")
        prefix = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                  "--bounding-set=-dac_override,-dac_read_search"]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "pipeline"))
    r = subprocess.run(prefix + [sys.executable, "-m", "ksmtrace", "ingest", str(p), "--store", str(store_dir)],
                       capture_output=True, env=env, timeout=300)
    err = r.stderr.decode()
    assert r.returncode == 2 and "Traceback" not in err, err
    (line,) = err.strip().splitlines()
    assert line.endswith(f"{p}: cannot open: Permission denied")
    assert not store_dir.exists()


def test_character_device_refused(store_dir):
    r = run_cli("ingest", "/dev/null", "--store", str(store_dir))
    assert r.code == 2 and "character device" in r.err and "Traceback" not in r.err


def test_fifo_without_writer_says_so_then_reads(tmp_path, store_dir):
    fifo = tmp_path / "f.fifo"
    os.mkfifo(fifo)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "pipeline"))
    proc = subprocess.Popen([sys.executable, "-m", "ksmtrace", "ingest", str(fifo), "--store", str(store_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        err = b""
        deadline = time.monotonic() + 60
        os.set_blocking(proc.stderr.fileno(), False)
        while b"waiting for a writer" not in err and time.monotonic() < deadline:
            time.sleep(0.1)
            err += proc.stderr.read() or b""
        assert b"waiting for a writer on FIFO" in err
        with open(fifo, "wb") as w:
            w.write(FT_HDR + body(ft, 7))
        out, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, rest
    assert b"7 events from 11 lines" in out


def test_process_substitution_pipe_works(tmp_path, store_dir):
    gz = tmp_path / "t.txt.gz"
    gz.write_bytes(gzip.compress(FT_HDR + body(ft, 9)))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "pipeline"))
    r = subprocess.run(["bash", "-c", f'"{sys.executable}" -m ksmtrace ingest <(zcat "{gz}") --store "{store_dir}"'],
                       capture_output=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert b"9 events from 13 lines" in r.stdout and b"waiting" not in r.stderr


@pytest.mark.parametrize("sidecar, warn", [
    ({"cpus": "many", "kernel": "6.18.0"}, "field 'cpus' ignored"),
    ({"cpus": 99999999999}, "field 'cpus' ignored"),
    ({"cpus": True, "partial": "yes", "kernel": 618}, "field 'kernel' ignored"),
    ("[" * 100000 + "]" * 100000, "ignored: nested deeper"),
    ({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": {"k": {"l": {"m": {"n": {"o": {"p": {"q": 1}}}}}}}}}}}}}}}}},
     "ignored: nested deeper"),
    ("{not json", "ignored: not valid JSON"),
    ([1, 2], "ignored: not a JSON object"),
    (b"\xff\xfe{}", "ignored: not valid JSON"),
])
def test_hostile_sidecar_is_a_warning_not_a_traceback(tmp_path, store_dir, sidecar, warn):
    p = _trace_file(tmp_path / "t.txt", 5)
    side = tmp_path / "t.txt.meta.json"
    if isinstance(sidecar, bytes):
        side.write_bytes(sidecar)
    else:
        side.write_text(sidecar if isinstance(sidecar, str) else json.dumps(sidecar))
    r = run_cli("ingest", str(p), "--store", str(store_dir))
    assert r.code == 0 and "Traceback" not in r.err, r.err
    assert warn in r.out and "5 events" in r.out
    r = run_cli("sql", "SELECT n_cpus, kernel FROM runs", "--store", str(store_dir), "-f", "csv")
    n_cpus, kernel = r.out.strip().splitlines()[1].split(",")
    assert n_cpus == "2"  # from the trace's own #P:2 header, never the sidecar's bad value
    if isinstance(sidecar, dict) and isinstance(sidecar.get("kernel"), str):
        assert kernel == sidecar["kernel"]  # good fields of a sidecar with a bad one are kept


# ---------------------------------------------------------------- the source's line rules, as a property

@settings(max_examples=examples(150), deadline=None)
@example(lines=[b"(\xb5/\xfd", b"\x00\x00\x00"], final_nl=False, block=1, gz=False)  # zstd magic, then junk
@example(lines=[b"\xfd7zXZ\x00", b"\x00" * 300], final_nl=True, block=3, gz=False)  # xz magic at the start
@example(lines=[b"BZh text that is not bzip2", b"\x00" * 300, b"x"], final_nl=True, block=5, gz=False)
@given(lines=st.lists(st.one_of(st.binary(max_size=20), st.binary(min_size=200, max_size=700),
                                st.integers(0, 600).map(lambda n: b"\x00" * n)), max_size=25),
       final_nl=st.booleans(), block=st.integers(1, 400), gz=st.booleans())
def test_source_splits_caps_and_counts_every_line(lines, final_nl, block, gz):
    """With a 256-byte cap and tiny reads: every line comes out unchanged, or (over the cap) as one marker line;
    the line count is exact; nothing is held beyond the cap."""
    from unittest import mock

    from ksmtrace.ingest import source

    lines = [ln.replace(b"\n", b"").replace(b"\r", b"") for ln in lines]
    data = b"\n".join(lines) + (b"\n" if final_nl and lines else b"")
    want = data.split(b"\n")
    if want and want[-1] == b"" and data.endswith(b"\n"):
        want.pop()
    if not data:
        want = []
    blob = gzip.compress(data) if gz else data
    with mock.patch.object(source, "MAX_LINE_BYTES", 256), mock.patch.object(source, "CHUNK_BYTES", block), \
            mock.patch.object(source, "HEAD_BYTES", 16), mock.patch.object(source, "_DECODE_STEP", 37):
        if not gz and source.compression_of(data[:10]):
            # bytes that start with a compression header are that compressed format, not lines (as zstd -dc
            # or xz -dc read them): decoded, or refused in one line
            try:
                src = TraceSource(stream=io.BytesIO(blob), name="t")
                b"".join(c.data for c in src.chunks(chunk_bytes=block))
            except KsmtraceError as e:
                assert "\n" not in str(e)
            return
        src = TraceSource(stream=io.BytesIO(blob), name="t")
        out = b"".join(c.data for c in src.chunks(chunk_bytes=block))
    got = out.split(b"\n")
    if out.endswith(b"\n"):
        got.pop()
    if not out:
        got = []
    assert len(got) == len(want) == src.n_lines
    for w, g in zip(want, got):
        if len(w) > 256:
            assert g.startswith(source.OVERLONG_MARK) and len(g) <= 256
            assert (b"a run of %d NUL bytes" % len(w)) in g if w == bytes(len(w)) else b"%d bytes" % len(w) in g
        else:
            assert g == w
    assert src.n_overlong == sum(1 for w in want if len(w) > 256)
    assert src.sha256 == __import__("hashlib").sha256(data).hexdigest() and src.n_bytes == len(data)


def test_compressed_stream_arriving_byte_by_byte():
    """A pipe may deliver the magic bytes one read at a time: the gzip is still recognised."""

    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes):
            self.data = data

        def readable(self):
            return True

        def readinto(self, b):
            if not self.data:
                return 0
            b[:1], self.data = self.data[:1], self.data[1:]
            return 1

    data = FT_HDR + body(ft, 30)
    src = TraceSource(stream=Trickle(gzip.compress(data)), name="pipe")
    assert src.compression == "gz"
    assert b"".join(c.data for c in src.chunks()) == data


@pytest.mark.parametrize("kind, accepted", [("bz2", True), ("xz", False), ("zst", False)])
def test_trailing_garbage_as_each_tool_does(kind, accepted):
    """bzip2 -dc ignores trailing garbage with a warning (as gzip -dc); xz -dc and zstd -dc refuse it."""
    import bz2
    import lzma

    import zstandard

    data = FT_HDR + body(ft, 10)
    comp = {"bz2": bz2.compress, "xz": lzma.compress, "zst": zstandard.ZstdCompressor().compress}[kind]
    blob = comp(data[:300]) + comp(data[300:]) + b"junk\x01"
    if accepted:
        _, tbl, stats, src = parse_bytes(blob, "ftrace")
        assert tbl.num_rows == 10 and stats.n_malformed == 0 and "trailing garbage" in src.warnings[0]
    else:
        with pytest.raises(KsmtraceError, match="truncated or corrupt"):
            parse_bytes(blob, "ftrace")
        _, tbl, stats, src = parse_bytes(blob, "ftrace", partial=True)  # both streams were read
        assert tbl.num_rows == 10 and src.truncated


# ---------------------------------------------------------------- exact counts under fuzzing

FRAME_OF = {"perf-script": lambda i: f"\tffffffff8100{i:04x} rmap_walk_ksm+0x{i:x} ([kernel.kallsyms])".encode(),
            "trace-cmd-report": lambda i: f" => rmap_walk_ksm+0x{i:x} (ffffffff81000000)".encode()}
GOOD_OF = {"ftrace": lambda i: ft(i), "function-graph": lambda i: fg(i), "perf-script": lambda i: pf(i),
           "trace-cmd-report": lambda i: tc(i)}
BAD_OF = {
    "ftrace": [lambda i: ft(i, sec="999999999999.123456"), lambda i: ft(i, pid="2147483648"),
               lambda i: ft(i, cpu="99999999999")],
    "function-graph": [lambda i: fg(i, abs_ts="999999999999.000001"), lambda i: fg(i, pid="2147483648"),
                       lambda i: fg(i, dur="99999999999999999")],
    "perf-script": [lambda i: pf(i, sec="999999999999.000000001"), lambda i: pf(i, pid="2147483648"),
                    lambda i: pf(i, cpu="99999999999")],
    "trace-cmd-report": [lambda i: tc(i, sec="999999999999.000001"), lambda i: tc(i, pid="2147483648"),
                         lambda i: tc(i, cpu="99999999999")],
}
PRE_OF = {"ftrace": FT_HDR, "function-graph": FG_HDR, "perf-script": b"", "trace-cmd-report": TC_PRE}


@pytest.mark.parametrize("fmt", list(GOOD_OF))
@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.too_slow])
# CR-only file with NUL runs: split at CR as the LF file is (it was one line when the head looked binary)
@example(units=[("nul", 2, 0), ("nul", 2, 0)], nl=b"\r", chunk=None)
@given(units=st.lists(st.tuples(st.sampled_from(["good", "bad", "nul", "blank", "long"]), st.integers(0, 2),
                                st.integers(0, 2)), min_size=1, max_size=30),
       nl=st.sampled_from(ENDINGS), chunk=st.sampled_from([None, 300, 4096]))
def test_fuzz_exact_counts(fmt, units, nl, chunk):
    """Lines whose fate is known (events, NUL lines, blank lines, lines with numbers that do not fit, over-long
    lines; records with frames for perf and trace-cmd): the parser's counts are exactly the expected ones, for
    every line ending and chunking."""
    from unittest import mock

    from ksmtrace.ingest import source

    units = [("good", 0, 0)] + units  # a text trace (a file of NUL lines alone is binary, refused elsewhere)
    lines, want_rows, want_bad = [], 0, 0
    has_frames = fmt in FRAME_OF
    for i, (kind, variant, n_frames) in enumerate(units):
        frames = [FRAME_OF[fmt](i * 10 + k) for k in range(n_frames)] if has_frames else []
        if kind == "good":
            lines += [GOOD_OF[fmt](i)] + frames
            want_rows += 1
        elif kind == "bad":
            lines += [BAD_OF[fmt][variant](i)] + frames
            want_bad += 1 + len(frames)  # a record's frames share its fate
        elif kind == "nul":
            lines.append(b"\x00" * (1 + variant * 30))
            want_bad += 1
        elif kind == "blank":
            lines.append(b" " * variant)
        else:
            lines.append(b"y" * (2100 + variant))
            want_bad += 1
    blob = PRE_OF[fmt].replace(b"\n", nl) + nl.join(lines) + nl
    with mock.patch.object(source, "MAX_LINE_BYTES", 2048):
        src = TraceSource(stream=io.BytesIO(blob), name="t")
        cls = get(fmt)
        p = cls()
        if chunk and hasattr(p, "chunk_bytes"):
            p.chunk_bytes = chunk
        stats = ParseStats()
        tabs = [conform(t) for t in p.parse(src, stats)]
    rows = sum(t.num_rows for t in tabs)
    assert (rows, stats.n_malformed) == (want_rows, want_bad), stats.malformed_examples
    tbl = pa.concat_tables(tabs) if tabs else conform(pa.table({"line_no": pa.array([], pa.int64())}))
    accounted(tbl, stats, src)
