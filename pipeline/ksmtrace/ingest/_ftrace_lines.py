"""ftrace event lines -> canonical rows: the engine the ftrace and function_graph formats share.

A tracefs ``trace`` / ``trace_pipe`` file and the lines of a function_graph file that are no graph line (headers,
ordinary events, a latency ``<stack trace>`` block) are the same text: ``parse_lines`` turns a frame of such lines
into event rows in named stages, ``iter_line_frames`` cuts a source into frames of whole lines (stack records kept
whole), ``events_to_arrow`` gives the Arrow table. The ``ftrace`` and ``funcgraph`` format modules use it; neither
imports the other.

Covers the nop/event tracer, the function tracer (``func <-parent``), the latency
layout (irqsoff, wakeup, ``latency-format``), kprobe/kretprobe/fprobe/uprobe
lines, trace_printk lines, ``<stack trace>`` blocks (frames become the record's
``callchain``), ``CPU:N [LOST M EVENTS]`` and ``##### CPU N buffer started ####``
markers, with or without the ``#`` header.

Speed: every chunk (8 MB of whole lines) is split into a polars column and parsed
with literal finds and fixed-position slices for the common ``%16s-%-7d [%03d]``
layout; only the lines that do not fit it go through the general (backtracking)
regular expression, and only the lines that fail that one through the latency and
marker patterns. No Python code runs per line except for header lines and the
few lines at a chunk end that carry a stack trace over to the next chunk.

The ftrace format goes faster still where the compiled module is built
(``native/ftrace_lines.c``): ``iter_byte_chunks`` gives the same chunks as raw bytes and
``parse_chunk`` lets C parse the printable-ASCII event lines of the common and the
GENERAL_RE layouts (the same rules, emulated exactly), while every other line (headers,
markers, stack records and frames, latency lines, non-ASCII, numbers out of range)
goes by line number through ``parse_lines``; the rows merge in line order and are
identical either way (tests/test_native_ftrace.py).
"""
from __future__ import annotations

import re
from typing import Iterator

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import FRAME
from .base import INT32_MAX, INT64_MAX, OUT_OF_RANGE, TRACER_HEADER_RE, ParseStats, exact_ns, int_in, take_junk
from ._native import load
from .fields import MAP_TYPE, kv_to_map, parse_fields
from .source import TraceSource

# ---------------------------------------------------------------- patterns

#: general prefix of an event line (§2.2): comm may contain anything, so anchor on the CPU bracket
GENERAL_RE = (
    r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*(?P<tgid>\d+|-+)\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:(?P<flags>[.A-Za-z0-9]{4,7})\s+)?(?P<ts>\d+(?:\.\d+)?):(?: (?P<rest>.*))?$"
)
#: GENERAL_RE without its ``rest`` group: the same match (``rest`` takes anything after ": "), found without the
#: capture engine running over the payload; ``rest`` is the text after ``_pre``
_GENERAL_PREFIX_RE = "^(?P<_pre>" + GENERAL_RE[1:].replace(r":(?: (?P<rest>.*))?$", r":(?: |$)") + ")"
#: latency layout (§1.4): "%8.8s-%-7d %3d" <flags> " %4lldus%c: "
LATENCY_RE = (
    r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?P<cpu>\d+)(?P<flags>[^\s\d][.A-Za-z0-9]{3,6})\s+"
    r"(?P<lat>\d+)(?:us(?P<mark>.))?:(?: (?P<rest>.*))?$"
)
LOST_RE = r"^\s*CPU:(?P<cpu>\d+) \[LOST (?:(?P<lost>\d+) )?EVENTS\]\s*$"
BUFSTART_RE = r"^\s*#{5} CPU (?P<cpu>\d+) buffer started #{4}\s*$"
FRAME_LINE_RE = r"^\s*=> "
FRAME_RE = (
    r"^\s*=> (?:<(?P<uaddr>[0-9a-fA-Fx]+)>|0x(?P<haddr>[0-9a-fA-F]+)|(?P<sym>[^\s+]+?)(?:\+(?P<off>\S+))?"
    r"(?: \((?P<addr>[0-9a-fA-Fx]+)\))?)\s*$"
)
#: a line that fails every layout but looks like a trace line (malformed, not prose): an ftrace prefix,
#: a timestamp, a latency prefix, or function_graph columns (" 1)  ...  |", "0.123 us  |", "| f() {")
LOOKS_LIKE_TRACE = (
    r"(?:-\d+\s+(?:\(\s*[\d-]+\)\s+)?\[\d+\])|(?:\s\d+\.\d{6,9}:\s)|(?:-\d+\s+\d+[.dDbX][.A-Za-z0-9]{3,6}\s+\d+us)"
    r"|(?:^\s*\d+\)\s.*\|)|(?:\d+(?:\.\d+)? us\s+\|)|(?:\|\s*[^\s(){};]+\(.*\)\s*[{;])|(?:^\s*\|\s+\}\s*(?:/\*.*)?$)"
    r"|(?:^\s*\d+\.\d+\s+\|)"
)
FUNC_RE = r"^(?P<func>[^\s:()]+)(?: <-(?P<parent>\S+))?$"
PROBE_RE = r"^\((?P<loc>[^\s()]+)(?: <- (?P<target>[^\s()]+))?\)(?: |$)"
SYMOFF_RE = r"^(?P<sym>.+?)\+0x[0-9a-fA-F]+/0x[0-9a-fA-F]+$"

STACK_EVENTS = {"<stack trace>": "kernel_stack", "<user stack trace>": "user_stack"}

_HDR_ENTRIES = re.compile(r"entries-in-buffer/entries-written:\s*(\d+)/(\d+)")
_HDR_NCPU = re.compile(r"#P:(\d+)")
_HDR_LATKERNEL = re.compile(r"^#\s*(\S+) latency trace v[\d.]+ on (\S+)")
_HDR_LATENCY = re.compile(r"^#\s*latency:\s*(\d+) us, #(\d+)/(\d+), CPU#(\d+)")

_EVENT_COLS = ["line_no", "ts_ns", "cpu", "pid", "tgid", "comm", "flags", "event", "payload",
               "func", "parent", "kind"]

_SCHEMA = {
    "line_no": pl.Int64, "ts_ns": pl.Int64, "cpu": pl.Int32, "pid": pl.Int32, "tgid": pl.Int32,
    "comm": pl.String, "flags": pl.String, "event": pl.String, "payload": pl.String,
    "func": pl.String, "parent": pl.String, "kind": pl.String,
}


def ts_to_ns(ts: pl.Expr) -> pl.Expr:
    """``"17258.057760"`` -> 17258057760000 exactly (integer arithmetic); ``"123456"`` (counter) -> 123456.

    NULL when the value does not fit int64 ns (see base.exact_ns)."""
    parts = ts.str.split_exact(".", 1)
    return exact_ns(parts.struct.field("field_0"), parts.struct.field("field_1"))


# ---------------------------------------------------------------- header


def _scan_header(lines: list[str], stats: ParseStats, nos: list[int] | None = None) -> int:
    """Header facts into stats.meta. A header whose numbers do not fit (``#P:99999999999``, entries beyond
    int64) gives no fact: the line is counted malformed instead."""
    m = stats.meta
    n_bad = 0
    for i, h in enumerate(lines):
        if _header_out_of_range(h):
            stats.malformed(nos[i] if nos else 0, h, "header number out of range")
            n_bad += 1
            continue
        if (t := TRACER_HEADER_RE.match(h)) and "tracer" not in m:
            m["tracer"] = t.group(1)
        if e := _HDR_ENTRIES.search(h):
            inbuf, written = int(e.group(1)), int(e.group(2))
            m.setdefault("entries_in_buffer", inbuf)
            m.setdefault("entries_written", written)
            if written > inbuf:
                stats.lost(written - inbuf)
                m["overwritten"] = m.get("overwritten", 0) + written - inbuf
        if (p := _HDR_NCPU.search(h)) and "n_cpus" not in m:
            m["n_cpus"] = int(p.group(1))
        if (k := _HDR_LATKERNEL.match(h)) and "kernel" not in m:
            m["kernel"] = k.group(2)
            m.setdefault("tracer", k.group(1))
        if (lt := _HDR_LATENCY.match(h)) and "latency_us" not in m:
            m["latency_us"] = int(lt.group(1))
            shown, total = int(lt.group(2)), int(lt.group(3))
            m["entries_in_buffer"], m["entries_written"] = shown, total
            if total > shown:
                stats.lost(total - shown)
                m["overwritten"] = m.get("overwritten", 0) + total - shown
    return n_bad


def _header_out_of_range(h: str) -> bool:
    if (e := _HDR_ENTRIES.search(h)) and (int_in(e.group(1), 0, INT64_MAX) is None
                                          or int_in(e.group(2), 0, INT64_MAX) is None):
        return True
    if (p := _HDR_NCPU.search(h)) and int_in(p.group(1), 1, INT32_MAX) is None:
        return True
    if (lt := _HDR_LATENCY.match(h)) and any(int_in(lt.group(k), 0, INT64_MAX if k < 4 else INT32_MAX) is None
                                             for k in (1, 2, 3, 4)):
        return True
    return False


# ---------------------------------------------------------------- per-chunk parsing


def _fast_prefix(df: pl.DataFrame) -> pl.DataFrame:
    """Columns ok/comm/pid/cpu/flags/ts/rest for the common fixed layout (ok=False elsewhere)."""
    l = pl.col("l")
    out = df.lazy().with_columns(
        _b=l.str.find("] ", literal=True),
        # first ": " of the line: the end of the timestamp unless comm holds ": " (then the general regex)
        _p=l.str.find(": ", literal=True),
        _ascii=l.str.len_bytes() == l.str.len_chars(),
    ).with_columns(
        _open=l.str.slice(pl.col("_b") - 4, 1),
        _dash=l.str.slice(16, 1),
        _hl=pl.col("_b") - 4,
        _fts=l.str.slice(pl.col("_b") + 2, pl.col("_p") - pl.col("_b") - 2),
        rest=l.str.slice(pl.col("_p") + 2),
        comm=l.str.slice(0, 16).str.strip_chars_start(" "),
        pid=l.str.slice(17, pl.col("_b") - 21).str.strip_chars_end(" ").cast(pl.Int32, strict=False),
        cpu=l.str.slice(pl.col("_b") - 3, 3).cast(pl.Int32, strict=False),
    ).with_columns(
        _sp=pl.col("_fts").str.find(" ", literal=True),
    ).with_columns(
        flags=pl.when(pl.col("_sp") > 0).then(pl.col("_fts").str.slice(0, pl.col("_sp"))),
        ts=pl.col("_fts").str.slice(pl.col("_sp")).str.strip_chars_start(" "),
    ).with_columns(
        ok=(pl.col("_ascii") & (pl.col("_open") == "[") & (pl.col("_dash") == "-")
            & pl.col("_hl").is_in([23, 25]) & pl.col("pid").is_not_null() & pl.col("cpu").is_not_null()
            & (pl.col("_p") > pl.col("_b"))
            & (pl.col("flags").is_null() | pl.col("flags").str.len_bytes().is_between(4, 7))
            & pl.col("ts").str.contains(r"^\d+(?:\.\d+)?$")).fill_null(False),
    ).drop("_b", "_ascii", "_open", "_dash", "_hl", "_p", "_fts", "_sp")
    return out.collect()


def parse_lines(df: pl.DataFrame, stats: ParseStats, counters: dict, graphlike: pl.Series | None = None) -> pl.DataFrame:
    """Parse a frame of lines (columns ``line_no``, ``l``) into event rows.

    ``graphlike``: line numbers that the function_graph parser saw graph columns on (malformed, not prose,
    when no layout takes them).

    Returns a polars frame with the ``_SCHEMA`` columns plus ``fields`` (an Arrow map,
    attached later) and ``callchain``; updates ``stats`` and the non-event ``counters``.
    """
    df = take_junk(df.with_columns(pl.col("l").str.strip_chars_end(" \t\r\n\x0b\x0c")), "l", "line_no", stats)
    ev, rest_lines = _fast_events(df)
    parts = [ev]
    general, rest_lines = _general_events(rest_lines)
    if general is not None:
        parts.append(general)
    latency, rest_lines = _latency_events(rest_lines, stats)
    if latency is not None:
        parts.append(latency)

    ev = pl.concat([p.cast({"_fraclen": pl.UInt32}) for p in parts], how="vertical_relaxed") if len(parts) > 1 else parts[0]
    ev = _drop_out_of_range(ev, stats)
    _timestamp_unit_facts(ev, stats)
    ev = _split_rest(ev.drop("_dot", "_fraclen"))

    extra, frames = _non_event_lines(rest_lines, stats, counters, graphlike)
    if extra:
        ex = pl.concat([e.with_columns(pl.lit(None, pl.String).alias("_k")) if "_k" not in e.columns else e
                        for e in extra], how="diagonal_relaxed")
        if "_v" not in ex.columns:
            ex = ex.with_columns(pl.lit(None, pl.String).alias("_v"))
        ev = pl.concat([ev, ex], how="diagonal_relaxed")
    if len(parts) > 1 or extra:
        ev = ev.sort("line_no")

    return _attach_callchains(ev, frames, stats, counters)


def _fast_events(df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Stage 1: the lines of the common layout (``comm-pid [cpu] flags ts: rest``), parsed by the fast
    prefix; returns those events and the lines left for the slower layouts."""
    fast = _fast_prefix(df)
    # ts is digits with at most one ".": one split gives seconds, fraction, and the unit facts
    ev = fast.lazy().filter(pl.col("ok")).with_columns(
        _ts=pl.col("ts").str.split_exact(".", 1),
    ).select(
        "line_no", "comm", "pid", pl.lit(None, pl.Int32).alias("tgid"), "cpu", "flags",
        exact_ns(pl.col("_ts").struct.field("field_0"), pl.col("_ts").struct.field("field_1")).alias("ts_ns"),
        "rest", pl.col("_ts").struct.field("field_1").is_not_null().alias("_dot"),
        pl.col("_ts").struct.field("field_1").str.len_bytes().alias("_fraclen"),
        pl.col("l").alias("_l"), pl.lit(False).alias("_oor"),
    ).with_columns(_oor=pl.col("ts_ns").is_null()).collect()
    rest_lines = fast.filter(~pl.col("ok")).select("line_no", "l")
    return ev, rest_lines


def _general_events(rest_lines: pl.DataFrame) -> tuple[pl.DataFrame | None, pl.DataFrame]:
    """Stage 2: the lines of the other ftrace layouts (tgid column, no flags ...) by GENERAL_RE; returns
    those events (None when there are none) and the lines still left."""
    part = None
    if rest_lines.height:
        g = rest_lines.with_columns(m=pl.col("l").str.extract_groups(_GENERAL_PREFIX_RE))
        gen_ok = g.filter(pl.col("m").struct.field("pid").is_not_null())
        if gen_ok.height:
            m = pl.col("m").struct
            gen_ok = gen_ok.with_columns(
                m=m.with_fields(rest=pl.col("l").str.slice(m.field("_pre").str.len_chars())))
            part = gen_ok.select(
                "line_no", m.field("comm").alias("comm"), m.field("pid").cast(pl.Int32, strict=False).alias("pid"),
                m.field("tgid").cast(pl.Int32, strict=False).alias("tgid"),
                m.field("cpu").cast(pl.Int32, strict=False).alias("cpu"), m.field("flags").alias("flags"),
                ts_to_ns(m.field("ts")).alias("ts_ns"), m.field("rest").fill_null("").alias("rest"),
                m.field("ts").str.contains(r"\.").alias("_dot"),
                m.field("ts").str.split_exact(".", 1).struct.field("field_1").str.len_bytes().alias("_fraclen"),
                pl.col("l").alias("_l"), m.field("tgid").str.contains(r"^\d+$").fill_null(False).alias("_tgd"),
            ).with_columns(
                _oor=pl.col("pid").is_null() | pl.col("cpu").is_null() | pl.col("ts_ns").is_null()
                | (pl.col("_tgd") & pl.col("tgid").is_null()),
            ).drop("_tgd")
        rest_lines = g.filter(pl.col("m").struct.field("pid").is_null()).select("line_no", "l")
    return part, rest_lines


def _latency_events(rest_lines: pl.DataFrame, stats: ParseStats) -> tuple[pl.DataFrame | None, pl.DataFrame]:
    """Stage 3: the lines of the latency format (``trace_options latency-format``) by LATENCY_RE;
    returns those events (None when there are none) and the lines still left."""
    lat_parts = None
    if rest_lines.height:
        g = rest_lines.with_columns(m=pl.col("l").str.extract_groups(LATENCY_RE))
        lat = g.filter(pl.col("m").struct.field("pid").is_not_null())
        if lat.height:
            m = pl.col("m").struct
            lat_parts = lat.select(
                "line_no", m.field("comm").alias("comm"), m.field("pid").cast(pl.Int32, strict=False).alias("pid"),
                pl.lit(None, pl.Int32).alias("tgid"), m.field("cpu").cast(pl.Int32, strict=False).alias("cpu"),
                m.field("flags").alias("flags"),
                pl.when(m.field("lat").cast(pl.Int64, strict=False) <= INT64_MAX // 1000)
                .then(m.field("lat").cast(pl.Int64, strict=False) * 1000).alias("ts_ns"),
                m.field("rest").fill_null("").alias("rest"), pl.lit(True).alias("_dot"),
                pl.lit(6, pl.UInt32).alias("_fraclen"), pl.col("l").alias("_l"),
            ).with_columns(_oor=pl.col("pid").is_null() | pl.col("cpu").is_null() | pl.col("ts_ns").is_null())
            stats.meta["latency_format"] = True
        rest_lines = g.filter(pl.col("m").struct.field("pid").is_null()).select("line_no", "l")
    return lat_parts, rest_lines


def _drop_out_of_range(ev: pl.DataFrame, stats: ParseStats) -> pl.DataFrame:
    """Stage 4: an event whose numbers do not fit the schema is a malformed line."""
    # numbers that do not fit the schema: the line is malformed, never an event with a NULL or wrapped value
    if ev.get_column("_oor").any():
        oor = ev.filter(pl.col("_oor"))
        stats.malformed_many(oor.get_column("line_no").to_list(), oor.get_column("_l").to_list(), OUT_OF_RANGE)
        ev = ev.filter(~pl.col("_oor"))
    return ev.drop("_oor", "_l")


def _timestamp_unit_facts(ev: pl.DataFrame, stats: ParseStats) -> None:
    """Stage 5: the unit (``counter`` when a timestamp has no fraction) and resolution of the timestamps."""
    # timestamp unit facts
    if ev.height:
        if not ev.get_column("_dot").all():
            stats.meta["ts_unit"] = "counter"
        else:
            fl = ev.get_column("_fraclen").max()
            res = 1 if (fl is not None and fl > 6) else 1000
            cur = stats.meta.get("ts_resolution_ns")
            stats.meta["ts_resolution_ns"] = res if cur is None else min(cur, res)


def _non_event_lines(rest_lines: pl.DataFrame, stats: ParseStats, counters: dict,
                     graphlike: pl.Series | None) -> tuple[list[pl.DataFrame], pl.DataFrame | None]:
    """Stage 6: the lines that are no event: loss and buffer markers (returned as rows to add), stack frames
    (returned), header, blank and prose lines (counted) and malformed lines."""
    # ---- non-event lines: markers, frames, header, blank, prose, malformed
    extra = []
    frames = None
    if rest_lines.height:
        l = pl.col("l")
        cls = rest_lines.with_columns(
            _blank=l.str.strip_chars() == "",
            _lost=l.str.contains(LOST_RE),
            _buf=l.str.contains(BUFSTART_RE),
            _frame=l.str.contains(FRAME_LINE_RE),
        ).with_columns(
            _hdr=l.str.starts_with("#") & ~pl.col("_buf"),
        )
        # a marker whose CPU number does not fit int32 is malformed
        bad_cpu = cls.filter((pl.col("_lost") | pl.col("_buf"))
                             & (pl.col("l").str.extract(r"CPU:?\s*(\d+)", 1).cast(pl.Int32, strict=False).is_null()))
        if bad_cpu.height:
            stats.malformed_many(bad_cpu.get_column("line_no").to_list(), bad_cpu.get_column("l").to_list(),
                                 OUT_OF_RANGE)
            cls = cls.filter(~pl.col("line_no").is_in(bad_cpu.get_column("line_no").implode()))
        lost = cls.filter(pl.col("_lost"))
        if lost.height:
            m = lost.select("line_no", pl.col("l").str.extract_groups(LOST_RE).alias("m"))
            cnt = m.get_column("m").struct.field("lost").cast(pl.Int64, strict=False)
            for c in cnt.to_list():
                stats.lost(c)
            extra.append(m.select(
                "line_no", pl.col("m").struct.field("cpu").cast(pl.Int32, strict=False).alias("cpu"),
                pl.lit("__lost_events").alias("event"), pl.lit("lost").alias("_k"),
                pl.col("m").struct.field("lost").alias("_v"),
            ))
        buf = cls.filter(pl.col("_buf"))
        if buf.height:
            extra.append(buf.select(
                "line_no", pl.col("l").str.extract(BUFSTART_RE, 1).cast(pl.Int32, strict=False).alias("cpu"),
                pl.lit("__buffer_started").alias("event"),
            ))
        hdr = cls.filter(pl.col("_hdr"))
        if hdr.height:
            n_bad = _scan_header(hdr.get_column("l").to_list(), stats, hdr.get_column("line_no").to_list())
            counters["n_header_lines"] = counters.get("n_header_lines", 0) + hdr.height - n_bad
        counters["n_blank_lines"] = counters.get("n_blank_lines", 0) + int(cls.get_column("_blank").sum())
        fr = cls.filter(pl.col("_frame"))
        if fr.height:
            frames = fr.select("line_no", "l")
        other = cls.filter(~(pl.col("_blank") | pl.col("_lost") | pl.col("_buf") | pl.col("_hdr") | pl.col("_frame")))
        if other.height:
            # binary garbage (control bytes) is malformed, never prose
            other = take_junk(other, "l", "line_no", stats, prose_too=True)
            looks = other.get_column("l").str.contains(LOOKS_LIKE_TRACE)
            if graphlike is not None and len(graphlike):  # function_graph columns seen by that parser
                looks = looks | other.get_column("line_no").is_in(graphlike.implode())
            bad = other.filter(looks)
            if bad.height:
                stats.malformed_many(bad.get_column("line_no").to_list(), bad.get_column("l").to_list(),
                                     "unparsed trace line")
            counters["n_ignored_prose"] = counters.get("n_ignored_prose", 0) + (other.height - bad.height)
    return extra, frames


def _attach_callchains(ev: pl.DataFrame, frames: pl.DataFrame | None, stats: ParseStats,
                       counters: dict) -> pl.DataFrame:
    """Stage 7: frames belong to the closest preceding stack record; a frame without one is malformed."""
    # ---- callchains: frames belong to the closest preceding stack record
    ev, n_frames, orphans = _attach_frames(ev, frames)
    # attached frames only: orphan frames are counted malformed
    n_orph = orphans.height if orphans is not None else 0
    if n_frames - n_orph:
        counters["n_stack_frame_lines"] = counters.get("n_stack_frame_lines", 0) + n_frames - n_orph
    if orphans is not None and orphans.height:
        stats.malformed_many(orphans.get_column("line_no").to_list(), orphans.get_column("l").to_list(),
                             "stack frame without a <stack trace> record")
    return ev


def _split_rest(ev: pl.DataFrame) -> pl.DataFrame:
    """``rest`` (text after the timestamp) -> event/payload/func/parent/kind."""
    r = pl.col("rest")
    q = r.str.find(": ", literal=True)
    ev = ev.with_columns(
        _q=q,
    ).with_columns(
        _name=pl.when(pl.col("_q").is_not_null()).then(r.str.slice(0, pl.col("_q"))),
    ).with_columns(
        _isev=pl.col("_name").is_not_null() & ~pl.col("_name").str.contains(r"[\s()]"),
    ).with_columns(
        event=pl.when(pl.col("_isev")).then(pl.col("_name")),
        payload=pl.when(pl.col("_isev")).then(r.str.slice(pl.col("_q") + 2).str.strip_chars_start(" "))
        .otherwise(r),
        func=pl.lit(None, pl.String), parent=pl.lit(None, pl.String), kind=pl.lit(None, pl.String),
    ).drop("_q", "_name")
    odd = ev.get_column("_isev").not_()
    # lines whose rest is "event:" with an empty payload
    if odd.any():
        empty_ev = r.str.contains(r"^[^\s()]+:$")
        ev = ev.with_columns(
            event=pl.when(empty_ev).then(r.str.strip_suffix(":")).otherwise(pl.col("event")),
            payload=pl.when(empty_ev).then(pl.lit("")).otherwise(pl.col("payload")),
            _isev=pl.col("_isev") | empty_ev,
        )
        nonev = ~pl.col("_isev")
        stack = r.replace_strict(STACK_EVENTS, default=None, return_dtype=pl.String)
        fm = r.str.extract_groups(FUNC_RE)
        isfunc = nonev & stack.is_null() & fm.struct.field("func").is_not_null()
        ev = ev.with_columns(
            event=pl.when(nonev & stack.is_not_null()).then(stack)
            .when(isfunc).then(pl.lit("function"))
            .otherwise(pl.col("event")),
            func=pl.when(nonev & stack.is_null()).then(fm.struct.field("func")).otherwise(pl.col("func")),
            parent=pl.when(nonev & stack.is_null()).then(fm.struct.field("parent")).otherwise(pl.col("parent")),
            # function lines carry no payload (an event line named "function" keeps its payload, whatever
            # else its chunk holds); stack records keep "<stack trace>"; others keep the text
            payload=pl.when(isfunc).then(pl.lit(None, pl.String)).otherwise(pl.col("payload")),
        )
        # function names: drop +off/size (as printed in parent)
        ev = ev.with_columns(
            func=pl.when(pl.col("event") == "function")
            .then(pl.col("func").str.replace(r"\+0x[0-9a-fA-F]+/0x[0-9a-fA-F]+$", ""))
            .otherwise(pl.col("func")),
        )
    ev = ev.drop("_isev")
    # probes: payload "(sym+0x4/0x1a0) a=b" or "(caller+off/size <- func) ..."
    p = pl.col("payload")
    if ev.get_column("payload").str.starts_with("(").any():
        pm = p.str.extract_groups(PROBE_RE)
        isp = pl.col("event").is_not_null() & pm.struct.field("loc").is_not_null()
        loc, tgt = pm.struct.field("loc"), pm.struct.field("target")
        ev = ev.with_columns(
            kind=pl.when(isp).then(pl.when(tgt.is_null()).then(pl.lit("entry")).otherwise(pl.lit("return")))
            .otherwise(pl.col("kind")),
            func=pl.when(isp).then(pl.coalesce(tgt, loc).str.replace(r"\+0x[0-9a-fA-F]+/0x[0-9a-fA-F]+$", ""))
            .otherwise(pl.col("func")),
            parent=pl.when(isp & tgt.is_not_null()).then(loc).otherwise(pl.col("parent")),
        )
    # trace_printk with sym-offset: "caller+0x28/0x6c: msg" -> event/func "caller"
    if ev.get_column("event").str.contains("+0x", literal=True).any():
        sm = pl.col("event").str.extract(SYMOFF_RE, 1)
        ev = ev.with_columns(
            func=pl.when(sm.is_not_null()).then(sm).otherwise(pl.col("func")),
            event=pl.when(sm.is_not_null()).then(sm).otherwise(pl.col("event")),
        )
    return ev.drop("rest")


def _attach_frames(ev: pl.DataFrame, frames: pl.DataFrame | None):
    if frames is None or frames.height == 0:
        return ev.with_columns(callchain=pl.lit(None)), 0, None
    # owner = the event row with the greatest line_no below the frame (events are sorted)
    owners = ev.select(pl.col("line_no").alias("_owner"), pl.col("event").alias("_oev"))
    fr = frames.sort("line_no").join_asof(owners, left_on="line_no", right_on="_owner", strategy="backward")
    # a frame belongs to a stack record only if every line between them is a frame: consecutive frame runs
    fr = fr.with_columns(_run=(pl.col("line_no").diff().fill_null(0) != 1).cum_sum())
    fr = fr.with_columns(_first=pl.col("line_no").min().over("_run"))
    ok = fr.filter((pl.col("_owner") == pl.col("_first") - 1) & pl.col("_oev").is_in(list(STACK_EVENTS.values())))
    bad = fr.filter(~((pl.col("_owner") == pl.col("_first") - 1)
                      & pl.col("_oev").is_in(list(STACK_EVENTS.values()))).fill_null(False))
    fm = pl.col("l").str.extract_groups(FRAME_RE)
    chains = ok.select(
        "_owner", "line_no",
        pl.struct(
            addr=pl.coalesce(fm.struct.field("addr"), fm.struct.field("uaddr"), fm.struct.field("haddr")),
            sym=fm.struct.field("sym"),
            off=fm.struct.field("off"),
            dso=pl.lit(None, pl.String),
        ).alias("frame"),
    ).sort("line_no").group_by("_owner", maintain_order=True).agg(pl.col("frame").alias("callchain"))
    ev = ev.join(chains, left_on="line_no", right_on="_owner", how="left")
    return ev, fr.height, bad.select("line_no", "l")


def events_to_arrow(ev: pl.DataFrame) -> pa.Table:
    """Final Arrow table: fields parsed from payload (event rows), callchain as list<FRAME>."""
    cols = {}
    for c in _EVENT_COLS:
        if c in ev.columns:
            cols[c] = ev.get_column(c).cast(_SCHEMA[c]).to_arrow()
    t = pa.table(cols)
    if "_k" in ev.columns:
        marker = ev.get_column("_k").is_not_null()
    else:
        marker = None
    fmap = parse_fields(ev.get_column("payload"), ev.get_column("event"))
    if marker is not None and marker.any():
        # __lost_events rows: {"lost": M} (value NULL when the count is unknown)
        kv = ev.select(pl.when(pl.col("_k").is_not_null())
                       .then(pl.concat_list([pl.struct(key=pl.col("_k"), value=pl.col("_v"))]))
                       .alias("x")).get_column("x")
        fmap = pc.if_else(marker.to_arrow(), kv_to_map(kv), fmap)
    # rows without payload text (function lines, markers) get an empty map
    t = t.append_column("fields", fmap)
    if "callchain" in ev.columns and ev.get_column("callchain").dtype != pl.Null:
        cc = ev.get_column("callchain").to_arrow()
        if isinstance(cc, pa.ChunkedArray):
            cc = cc.combine_chunks()
        cc = cc.cast(pa.list_(FRAME))
        t = t.append_column("callchain", cc)
    return t


# ---------------------------------------------------------------- chunking


def _split_carry(text: str) -> tuple[str, str]:
    """Split off the tail that must wait for the next chunk: a trailing stack record and its frames."""
    end = len(text)
    pos = end
    # walk back over trailing frame lines (and a possibly unterminated last line)
    while pos > 0:
        start = text.rfind("\n", 0, pos - 1 if text[pos - 1:pos] == "\n" else pos) + 1
        line = text[start:pos].rstrip("\r\n")
        if line.lstrip().startswith("=> "):
            pos = start
            continue
        s = line.rstrip()
        if s.endswith("<stack trace>") or s.endswith("<user stack trace>"):
            return text[:start], text[start:]
        break
    return text, ""


def iter_line_frames(source: TraceSource, first_text: str | None = None) -> Iterator[pl.DataFrame]:
    """Chunks of the source as polars frames (line_no, l), stack records kept whole."""
    carry, carry_ln = "", 1
    for chunk in source.chunks():
        text = chunk.data.decode("utf-8", "replace")
        if carry:
            text, first = carry + text, carry_ln
        else:
            first = chunk.first_line_no
        body, carry = _split_carry(text)
        if carry:
            carry_ln = first + body.count("\n")
        if body:
            yield _frame_of(body, first)
    if carry:
        yield _frame_of(carry, carry_ln)


def _frame_of(text: str, first: int) -> pl.DataFrame:
    if text.endswith("\n"):
        text = text[:-1]
    s = pl.Series("l", [text]).str.split("\n").explode()
    return pl.DataFrame({"l": s}).with_row_index("line_no", offset=first).with_columns(
        pl.col("line_no").cast(pl.Int64))


# ---------------------------------------------------------------- bytes-level path (compiled fast path)
#
# ``iter_byte_chunks`` cuts a source into the same chunks as ``iter_line_frames`` (the same stack-record carry),
# as raw bytes; ``parse_chunk`` gives the table ``events_to_arrow(parse_lines(frame))`` gives for such a chunk.
# With the compiled module (native/ftrace_lines.c) it parses the lines it is certain of (printable ASCII event
# lines of the ftrace layouts) in C and hands every other line, by line number, to ``parse_lines``; the two are
# merged in line order. Stack records always go to ``parse_lines``, so their frames attach as before (a frame
# attaches only to the record on the line just before its run of frames: a line taken by C in between leaves
# it unattached in both paths).


def _split_carry_bytes(data: bytes) -> tuple[bytes, bytes]:
    """``_split_carry`` on bytes: the same cut (each line is decoded alone, as the whole text would decode:
    LF never belongs to a UTF-8 sequence)."""
    pos = len(data)
    while pos > 0:
        start = data.rfind(b"\n", 0, pos - 1 if data[pos - 1:pos] == b"\n" else pos) + 1
        line = data[start:pos].decode("utf-8", "replace").rstrip("\r\n")
        if line.lstrip().startswith("=> "):
            pos = start
            continue
        s = line.rstrip()
        if s.endswith("<stack trace>") or s.endswith("<user stack trace>"):
            return data[:start], data[start:]
        break
    return data, b""


def iter_byte_chunks(source: TraceSource) -> Iterator[tuple[bytes, int]]:
    """``iter_line_frames`` as ``(bytes of whole lines, first line number)``: the same chunks."""
    carry, carry_ln = b"", 1
    for chunk in source.chunks():
        data = chunk.data
        if carry:
            data, first = carry + data, carry_ln
        else:
            first = chunk.first_line_no
        body, carry = _split_carry_bytes(data)
        if carry:
            carry_ln = first + body.count(b"\n")
        if body:
            yield body, first
    if carry:
        yield carry, carry_ln


def parse_chunk(data: bytes, first: int, stats: ParseStats, counters: dict) -> pa.Table | None:
    """One chunk of ``iter_byte_chunks`` -> its event table (None when it has no event), as
    ``events_to_arrow(parse_lines(...))`` of its frame; compiled where the module is built and switched on."""
    mod = load("ftrace_lines")
    res = mod.parse_chunk(data, first) if mod is not None else None
    if res is None:
        ev = parse_lines(_frame_of(data.decode("utf-8", "replace"), first), stats, counters)
        return events_to_arrow(ev) if ev.height else None
    py_ev = None
    if res["n_rejected"]:
        text = res["rejected"].decode("utf-8", "replace")
        df = pl.DataFrame({
            "line_no": pl.Series("line_no", np.frombuffer(res["rejected_line_no"], np.int64)),
            "l": pl.Series("l", [text]).str.split("\n").explode(),
        })
        py_ev = parse_lines(df, stats, counters)
        if not py_ev.height:
            py_ev = None
    n = res["n"]
    _add_ts_facts(stats, n, res["all_dot"], res["max_fraclen"])
    if not n:
        return events_to_arrow(py_ev) if py_ev is not None else None
    return _native_table(res, py_ev)


def _add_ts_facts(stats: ParseStats, n: int, all_dot: bool, max_fraclen: int) -> None:
    """Stage 5 (``_timestamp_unit_facts``) for ``n`` more events of the same chunk."""
    if not n:
        return
    if not all_dot:
        stats.meta["ts_unit"] = "counter"
        stats.meta.pop("ts_resolution_ns", None)  # the chunk's facts: no resolution when a timestamp is a counter
    elif stats.meta.get("ts_unit") != "counter":
        res = 1 if max_fraclen > 6 else 1000
        cur = stats.meta.get("ts_resolution_ns")
        stats.meta["ts_resolution_ns"] = res if cur is None else min(cur, res)


_NATIVE_STR = ("comm", "flags", "event", "payload", "func", "parent", "kind")


def _native_arrays(res: dict) -> dict[str, pa.Array]:
    n = res["n"]

    def num(key, typ, validity=None):
        return pa.Array.from_buffers(typ, n, [validity, pa.py_buffer(res[key])])

    cols = {
        "line_no": num("line_no", pa.int64()), "ts_ns": num("ts_ns", pa.int64()), "cpu": num("cpu", pa.int32()),
        "pid": num("pid", pa.int32()),
        "tgid": num("tgid", pa.int32(), None if res["tgid_valid"] is None else pa.py_buffer(res["tgid_valid"])),
    }
    for c in _NATIVE_STR:
        valid, off, data = res[c]
        cols[c] = pa.Array.from_buffers(pa.string(), n, [None if valid is None else pa.py_buffer(valid),
                                                         pa.py_buffer(off), pa.py_buffer(data)])
    return cols


def _native_table(res: dict, py_ev: pl.DataFrame | None) -> pa.Table:
    """The C rows (and the Python rows of the same chunk, merged in line order) as ``events_to_arrow`` gives
    them: the fields of every row parsed together from the merged payload/event columns."""
    cols = _native_arrays(res)
    n = res["n"]
    marker = kv = chain = None
    if py_ev is not None:
        if not py_ev.get_column("line_no").is_sorted():  # parse_lines gives line order; the merge needs it
            py_ev = py_ev.sort("line_no", maintain_order=True)
        p = {c: _arrow_col(py_ev.get_column(c).cast(_SCHEMA[c]), cols[c].type) for c in _EVENT_COLS}
        merge = _interleave(np.frombuffer(res["line_no"], np.int64), p["line_no"].to_numpy())
        cols = {c: merge(cols[c], p[c]) for c in _EVENT_COLS}
        if "_k" in py_ev.columns and py_ev.get_column("_k").is_not_null().any():
            mk = py_ev.get_column("_k").is_not_null().to_arrow()
            marker = merge(pa.repeat(False, n), mk)
            kvs = py_ev.select(pl.when(pl.col("_k").is_not_null())
                               .then(pl.concat_list([pl.struct(key=pl.col("_k"), value=pl.col("_v"))]))
                               .alias("x")).get_column("x")
            kv = merge(pa.nulls(n, MAP_TYPE), kv_to_map(kvs))
        if "callchain" in py_ev.columns and py_ev.get_column("callchain").dtype != pl.Null:
            cc = _arrow_col(py_ev.get_column("callchain"), pa.list_(FRAME))
            chain = merge(pa.nulls(n, pa.list_(FRAME)), cc)
    t = pa.table(cols)
    fmap = parse_fields(pl.from_arrow(cols["payload"]), pl.from_arrow(cols["event"]))
    if marker is not None:
        fmap = pc.if_else(marker, kv, fmap)
    t = t.append_column("fields", fmap)
    if chain is not None:
        t = t.append_column("callchain", chain)
    return t


def _interleave(a_ln: np.ndarray, b_ln: np.ndarray):
    """A function merging an array of rows numbered ``a_ln`` with one of rows numbered ``b_ln`` (both ascending,
    no number in both) in line order. A few runs of ``b`` rows (the usual chunk: headers or some stack records
    among C rows) are spliced in by slices, which copies no more than a concatenation; many by a gather."""
    pos = np.searchsorted(a_ln, b_ln)
    cut = np.flatnonzero(np.diff(pos)) + 1
    if len(cut) >= 256:
        perm = pa.array(np.argsort(np.concatenate([a_ln, b_ln]), kind="stable"))
        return lambda a, b: pa.concat_arrays([a, b]).take(perm)
    starts = [0, *cut.tolist()]
    ends = [*cut.tolist(), len(b_ln)]
    at = pos[starts].tolist()

    def merge(a: pa.Array, b: pa.Array) -> pa.Array:
        parts, prev = [], 0
        for q, s, e in zip(at, starts, ends):
            if q > prev:
                parts.append(a.slice(prev, q - prev))
            parts.append(b.slice(s, e - s))
            prev = q
        if prev < len(a):
            parts.append(a.slice(prev))
        return pa.concat_arrays(parts)

    return merge


def _arrow_col(s: pl.Series, typ: pa.DataType) -> pa.Array:
    a = s.to_arrow()
    if isinstance(a, pa.ChunkedArray):
        a = a.combine_chunks()
    return a.cast(typ)
