"""``perf script`` text -> canonical events.

One record is an event line plus the callchain frames that follow it (TAB, or
spaces in copied text, then ``addr sym[+off] (dso)``).  Parsing is vectorised:
each chunk of lines is classified with polars regexes, frames are tied to the
preceding event with a running count of event lines, and the callchain column
is assembled from offsets.  The record still open at the end of a chunk (its
frames may continue in the next chunk) is carried over.

Event line (builtin-script.c)::

    comm "%16s " | pid "%5d "/"%7d " or "%5d/%-5d " | cpu "[%03d] " | time "%5lu.%06lu: " (--ns: 9 digits)
    | period "%10llu " | event "%*s: " (right aligned) | payload

``sys:event`` is split into ``system`` and ``event``; sample events
(``cycles:uppp``) keep their name whole in ``event``.  ``pid/tid`` gives
``tgid``/``pid``; a single number is the tid (perf's default field).

Where the compiled module ``native/perf_script.c`` is built (and not switched
off, ``KSMTRACE_NATIVE=0``), it parses the records of the common layouts and
hands every other record, by line number, to the rules below: same rows either
way (see the comment above ``_native_blocks``).
"""
from __future__ import annotations

import re
from typing import Iterator

import numpy as np
import polars as pl
import pyarrow as pa

from ..schema import FRAME, PARSED_SCHEMA
from ._native import load
from ._records import build_callchain, cut_open_record, drop_junk, fields_for, lines_of, run_blocks, ts_ns_expr
from .base import INT32_MAX, INT64_MAX, OUT_OF_RANGE, Parser, ParseStats, add_count, int_in
from .source import CHUNK_BYTES, TraceSource, is_binary_trace

# -- regexes (Rust syntax for polars; also valid for Python's re) ------------------------------------------

EVENT_RE = (
    r"^\s*(?P<comm>.*?)\s+(?P<pid>-?\d+)(?:/(?P<tid>-?\d+))?\s+(?:\[(?P<cpu>\d+)\]\s+)?"
    r"(?:(?P<sec>\d+)\.(?P<frac>\d+):\s+)?(?:(?P<period>\d+)\s+)?"
    r"(?P<ev>[^\s]+?):(?:\s+(?P<payload>.*?))?\s*$"
)
#: the strong form used for sniffing: timestamp required
EVENT_TS_RE = (
    r"^\s*(?P<comm>.*?)\s+(?P<pid>-?\d+)(?:/(?P<tid>-?\d+))?\s+(?:\[(?P<cpu>\d+)\]\s+)?"
    r"(?P<sec>\d+)\.(?P<frac>\d+):\s+(?:(?P<period>\d+)\s+)?(?P<ev>[^\s]+?):(?:\s+(?P<payload>.*?))?\s*$"
)
#: one frame: address, symbol with optional +0xoff, DSO = last balanced parenthesised group
FRAME_RE = (
    r"^\s*(?P<addr>[0-9a-fA-F]+)(?:\s+(?P<sym>.*?)(?:\+(?P<off>0x[0-9a-fA-F]+))?)?"
    r"(?:\s\((?P<dso>(?:[^()]|\([^()]*\))*)\))?\s*$"
)
#: sample modifiers after the event name (cycles:uppp, cpu-clock:uhH): not a "sys:" prefix
MODIFIERS_RE = r"^[ukhIGHpPSDWeb]+$"
#: hardware/software/cache event names (perf list) that take modifiers; tracepoint systems are C identifiers,
#: so a prefix with "-" or "/" is never a tracepoint system either
PMU_EVENTS = ["cycles", "instructions", "branches", "branch-instructions", "branch-misses", "bus-cycles",
              "cache-references", "cache-misses", "ref-cycles", "cpu-cycles", "cpu-clock", "task-clock",
              "page-faults", "faults", "minor-faults", "major-faults", "context-switches", "cs",
              "cpu-migrations", "migrations", "alignment-faults", "emulation-faults", "dummy", "bpf-output",
              "mem-loads", "mem-stores", "slots", "topdown-retiring", "msr", "power"]
LOST_RE = re.compile(r"PERF_RECORD_(?P<kind>[A-Z_]+)(?P<rest>.*)$")
LOST_COUNT_RE = re.compile(r"\blost:?\s+(\d+)")
HEADER_KV_RE = re.compile(r"^#\s*(?P<key>[^:]+?)\s*:\s?(?P<val>.*)$")

_FR_COLS = ["addr", "sym", "off", "dso"]

_EVENT_RX = re.compile(EVENT_RE)
_EVENT_TS_RX = re.compile(EVENT_TS_RE)
_FRAME_RX = re.compile(FRAME_RE)


# -- frames ------------------------------------------------------------------------------------------------

def frames_struct(df: pl.DataFrame) -> pa.StructArray:
    """polars frame columns addr/sym/off/dso -> Arrow StructArray of FRAME."""
    cols = []
    for name in _FR_COLS:
        a = df.get_column(name).to_arrow() if name in df.columns else pa.nulls(df.height, pa.string())
        if isinstance(a, pa.ChunkedArray):
            a = a.combine_chunks()
        cols.append(a.cast(pa.string()))
    return pa.StructArray.from_arrays(cols, fields=list(FRAME))


def parse_frames(text: pl.Series) -> pl.DataFrame:
    """Frame lines -> DataFrame addr, sym, off, dso, ok (empty strings -> NULL).

    Fast path with plain string operations (address, first space, a DSO without nested parentheses
    at the end); lines it cannot take (TAB after the address, ``(dso (deleted))``) go through FRAME_RE.
    """
    st = pl.col("s")
    rest = pl.col("rest")
    lf = text.to_frame("t").lazy().with_columns(s=pl.col("t").str.strip_chars())
    lf = lf.with_columns(sp=st.str.splitn(" ", 2))
    lf = lf.with_columns(addr=pl.col("sp").struct.field("field_0"), rest=pl.col("sp").struct.field("field_1"))
    lf = lf.with_columns(dso=rest.str.extract(r"\s\(([^()]*)\)$", 1))
    lf = lf.with_columns(
        symoff=pl.when(pl.col("dso").is_null()).then(rest).otherwise(
            rest.str.slice(0, rest.str.len_chars() - pl.col("dso").str.len_chars() - 3)),
        fast=pl.col("addr").str.contains(r"^[0-9a-fA-F]+$") & (pl.col("dso").is_not_null() | rest.is_null()
                                                                 | ~rest.str.ends_with(")")),
    )
    lf = lf.with_columns(symoff=pl.col("symoff").str.strip_chars_end())
    lf = lf.with_columns(off=pl.col("symoff").str.extract(r"\+(0x[0-9a-fA-F]+)$", 1))
    lf = lf.with_columns(sym=pl.when(pl.col("off").is_null()).then(pl.col("symoff")).otherwise(
        pl.col("symoff").str.slice(0, pl.col("symoff").str.len_chars() - pl.col("off").str.len_chars() - 1)))
    df = lf.select("t", "addr", "sym", "off", "dso", "fast").collect()
    if not df.get_column("fast").all():
        slow = df.get_column("t").str.extract_groups(FRAME_RE).struct.unnest()
        fast = df.get_column("fast")
        df = df.with_columns([pl.when(fast).then(df.get_column(c)).otherwise(slow.get_column(c)).alias(c)
                              for c in _FR_COLS])
    out = df.with_columns([pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c)
                           for c in ("sym", "off", "dso")])
    return out.select(*_FR_COLS, ok=pl.col("addr").is_not_null())


# -- the parser ----------------------------------------------------------------------------------------------

class PerfScriptParser(Parser):
    name = "perf-script"
    description = "perf script text (default, -F variants, --ns, --header, callchains)"

    @classmethod
    def sniff(cls, head_text: str, head_bytes: bytes) -> int:
        if is_binary_trace(head_bytes):
            return 0
        lines = head_text.split("\n")[:400]
        if lines and lines[0].startswith("# ========") and any(
                ln.startswith(("# perf version", "# os release", "# cmdline")) for ln in lines[:60]):
            return 95
        n_ev = n_frame = n_other = 0
        for ln in lines:
            s = ln.strip()
            if not s or s.startswith("#"):
                continue
            if ln.startswith("\t") and _FRAME_RX.match(ln):
                n_frame += 1
            elif _EVENT_TS_RX.match(ln):
                n_ev += 1
            elif _FRAME_RX.match(ln) and s.endswith(")"):
                n_frame += 1
            elif _EVENT_RX.match(ln) and not re.search(r"-\d+\s+\[\d+\]", ln):
                n_ev += 0.5
            else:
                n_other += 1
        if n_ev >= 1 and (n_ev + n_frame) >= 4 * n_other:
            return 85 if n_ev >= 2 or n_frame else 60
        return 0

    #: bytes per chunk read from the source (tests lower it to exercise records straddling chunks)
    chunk_bytes = CHUNK_BYTES

    def __init__(self):
        self.meta_header: dict = {}
        self.resolution: int | None = None

    def header(self, lines: list[str], stats: ParseStats) -> None:
        """Header lines (the ``# ========`` block of ``perf script --header``) -> stats.meta."""
        hdr = stats.meta.setdefault("perf_header", {})
        events = []
        for ln in lines:
            m = HEADER_KV_RE.match(ln.rstrip())
            if not m or ln.startswith("# ========"):
                continue
            k, v = m.group("key").strip(), m.group("val").strip()
            if k == "event":
                events.append(v)
                continue
            hdr.setdefault(k, v)
        if events:
            stats.meta.setdefault("perf_events", []).extend(events)
        if "os release" in hdr:
            stats.meta["kernel"] = hdr["os release"]
        if "perf version" in hdr:
            stats.meta["perf_version"] = hdr["perf version"]
        if "nrcpus online" in hdr:
            n = int_in(hdr["nrcpus online"], 1, INT32_MAX)  # a value that does not fit is not a fact
            if n is not None:
                stats.meta["n_cpus"] = n
        if "cmdline" in hdr:
            stats.meta["cmdline"] = hdr["cmdline"]
        if not hdr:
            stats.meta.pop("perf_header", None)

    def parse(self, source: TraceSource, stats: ParseStats) -> Iterator[pa.Table]:
        stats.meta.setdefault("tracer", "perf")
        stats.meta.setdefault("ts_unit", "ns")
        native = load("perf_script")
        yield from run_blocks(self, source, stats, None if native is None else _native_blocks(native))
        if self.resolution is not None:
            stats.meta["ts_resolution_ns"] = self.resolution

    def _block(self, lines: pl.Series, nos: np.ndarray, stats: ParseStats, final: bool):
        """Classify and parse ``lines``; returns (tables, carried lines, carried line numbers)."""
        parts, carry, carry_no = self._block_parts(lines, nos, stats, final)
        if parts is None:
            return [], carry, carry_no
        cols, is_rec, rec_rows, callchain, first_frac = parts
        if self.resolution is None and first_frac is not None:
            self.resolution = first_frac[1]
        return [_records_table(cols, is_rec, rec_rows, callchain)], carry, carry_no

    def _block_parts(self, lines: pl.Series, nos: np.ndarray, stats: ParseStats, final: bool):
        """``_block`` up to the fields map: (parts or None, carried lines, carried line numbers), parts =
        (columns, is_rec, rec_rows, callchain, first_frac).

        Stages, top to bottom: classify every line, keep the record still open at the end for the next chunk,
        count the non-event lines, parse the ``PERF_RECORD_*`` lines, drop the records with numbers that do not
        fit (their frames with them), then the event columns and the callchains."""
        lines, nos = drop_junk(lines, nos, stats)
        df = self._classify(lines, nos, stats)
        carry = carry_no = None
        if not final:
            starts = df.get_column("ev").to_numpy() | df.get_column("perfrec").to_numpy()
            split = cut_open_record(df, lines, nos, starts, attached=bool(df.get_column("frame").any()))
            if split is None:
                return None, lines, nos  # no record start in this block: all of it waits for the next chunk
            df, carry, carry_no = split
        _count_non_events(df, stats)
        rec_rows, bad_recs = self._perf_records(df, stats)
        df = _drop_bad_records(df, bad_recs, stats)
        evs = df.filter(pl.col("ev") | pl.col("perfrec"))
        if evs.height == 0:
            return None, carry, carry_no
        g, first_frac = self._event_columns(evs)
        callchain = _callchains(df, g, evs.height, stats)
        is_rec = evs.get_column("perfrec").to_numpy()
        return (_record_columns(g, is_rec, rec_rows), is_rec, rec_rows, callchain, first_frac), carry, carry_no

    def _native_block(self, mod, data: bytes, first: int, carry, carry_no, stats: ParseStats, final: bool):
        """One block through the compiled module: (tables, lines and line numbers the Python rules carry, the
        bytes and first line number of the sure record still open)."""
        r = mod.parse(data, first, final, _PMU_BYTES)
        if r is None:  # the module cannot take this block (int32 offsets): the Python rules take it all
            lines = lines_of(data.decode("utf-8", "replace"))
            nos = np.arange(first, first + len(lines), dtype=np.int64)
            if carry is not None:
                lines, nos = pl.concat([carry, lines]), np.concatenate([carry_no, nos])
            out, carry, carry_no = self._block(lines, nos, stats, final)
            return out, carry, carry_no, b"", 0
        raw, raw_no = b"", 0
        if r["carry_line"] >= 0:
            raw, raw_no = data[r["carry_byte"]:], first + r["carry_line"]
        if r["n_handed"]:
            lines = lines_of(r["handed_text"].decode("utf-8", "replace"))
            nos = np.frombuffer(r["handed_nos"], dtype=np.int64)
            if carry is not None:
                lines, nos = pl.concat([carry, lines]), np.concatenate([carry_no, nos])
        else:
            lines, nos = carry, carry_no
        parts = None
        carry = carry_no = None
        if lines is not None and len(lines):
            # the Python rules cut the block themselves unless its open record is the module's
            parts, carry, carry_no = self._block_parts(lines, nos, stats, final or bool(raw))
        add_count(stats, "n_blank_lines", r["n_blank"])
        add_count(stats, "n_callchain_frame_lines", r["n_frames"])
        ct = _c_table(r)
        if parts is None:
            pt, rec_rows, rec_at, py_frac = None, [], np.zeros(0, np.int64), None
        else:
            cols, is_rec, rec_rows, callchain, py_frac = parts
            pt = _py_table(cols, callchain)
            rec_at = np.flatnonzero(is_rec)
        if self.resolution is None:
            cands = [py_frac] if py_frac is not None else []
            if r["n_events"]:
                cands.append((int(np.frombuffer(r["line_no"], np.int64, 1)[0]),
                              10 ** max(0, 9 - r["first_frac_len"])))
            if cands:
                self.resolution = min(cands)[1]
        if pt is not None:
            tbl, where = _merge(ct, pt)
            rec_at = where[rec_at]
        else:
            tbl = ct
        if tbl.num_rows == 0:
            return [], carry, carry_no, raw, raw_no
        callchain = tbl.column("callchain")
        tbl = tbl.drop_columns(["callchain"])
        out = _with_fields(tbl, _series(tbl.column("payload"), "payload"), _series(tbl.column("event"), "event"),
                           rec_at, rec_rows, callchain)
        return [out], carry, carry_no, raw, raw_no

    def _classify(self, lines: pl.Series, nos: np.ndarray, stats: ParseStats) -> pl.DataFrame:
        """Stage 1: every line is a TAB frame, blank, ``#`` header, ``PERF_RECORD_*``, event or frame (the
        regexes run only on the few lines that are none of the first four); header facts into stats; ``rid``
        numbers the records (an event or ``PERF_RECORD_*`` line opens one, its frames follow)."""
        df = pl.DataFrame({"t": lines, "no": nos})
        t = pl.col("t")
        df = df.with_columns(
            tab=t.str.starts_with("\t"),
            blank=t.str.strip_chars() == "",
            hash=t.str.starts_with("#"),
            perfrec=t.str.contains("PERF_RECORD_", literal=True),
        )
        cand_mask = ~(df.get_column("tab") | df.get_column("blank") | df.get_column("hash") | df.get_column("perfrec"))
        ev = np.zeros(df.height, bool)
        frame = (df.get_column("tab") & ~df.get_column("blank")).to_numpy().copy()  # a lone TAB is a blank line
        if cand_mask.any():
            idx = np.flatnonzero(cand_mask.to_numpy())
            sub = lines.gather(idx).to_frame("t").select(
                ts=t.str.contains(EVENT_TS_RE),
                fr=t.str.contains(FRAME_RE) & t.str.strip_chars_end().str.ends_with(")"),
                any=t.str.contains(EVENT_RE),
            )
            ts_ok = sub.get_column("ts").to_numpy()
            fr_ok = sub.get_column("fr").to_numpy() & ~ts_ok
            ev[idx] = ts_ok | (~fr_ok & sub.get_column("any").to_numpy())
            frame[idx] = fr_ok
        df = df.with_columns(ev=pl.Series(ev), frame=pl.Series(frame))
        hashes = df.filter(pl.col("hash"))
        if hashes.height:
            self.header(hashes.get_column("t").to_list(), stats)
        # records: a PERF_RECORD_* line also opens a record (so frames after it are not orphaned)
        return df.with_columns(rid=(pl.col("ev") | pl.col("perfrec")).cast(pl.Int64).cum_sum() - 1)

    def _perf_records(self, df: pl.DataFrame, stats: ParseStats) -> tuple[list[dict], list[int]]:
        """Stage 4: the ``PERF_RECORD_*`` lines (rare), parsed in Python: (rows, line numbers of those whose
        numbers do not fit, counted malformed)."""
        recs = df.filter(pl.col("perfrec"))
        rec_rows = []
        bad_recs = []
        for no, txt in recs.select("no", "t").iter_rows():
            row = self._perf_record(no, txt, stats)
            if row is None:
                bad_recs.append(no)
            else:
                rec_rows.append(row)
        if bad_recs:
            stats.malformed_many(bad_recs, recs.filter(pl.col("no").is_in(pl.Series(bad_recs, dtype=pl.Int64)
                                                                          .implode())).get_column("t").to_list(),
                                 OUT_OF_RANGE)
        return rec_rows, bad_recs

    def _event_columns(self, evs: pl.DataFrame) -> tuple[pl.DataFrame, tuple[int, int] | None]:
        """Stage 6: the schema's columns of the record lines (EVENT_RE): exact ns timestamps, pid/tgid from
        ``pid/tid``, ``sys:event`` split into system and event (sample events keep their name whole); and,
        while the resolution is not known yet, (line number, resolution) of the first event with a fraction."""
        t = pl.col("t")
        g = evs.select(t.str.extract_groups(EVENT_RE).alias("g"), "no", "perfrec").unnest("g")
        evname = pl.col("ev")
        prefix = evname.str.extract(r"^([^:]*):", 1)
        pmu_like = prefix.is_in(PMU_EVENTS) | prefix.str.contains(r"[-/]")
        has_sys = evname.str.contains(":", literal=True) & ~evname.str.contains("/", literal=True) & \
            ~(pmu_like & evname.str.replace(r"^[^:]*:", "").str.contains(MODIFIERS_RE))
        g = g.with_columns(
            ts_ns=ts_ns_expr(pl.col("sec"), pl.col("frac")),
            cpu=pl.col("cpu").cast(pl.Int32, strict=False),
            pid_i=pl.when(pl.col("tid").is_not_null()).then(pl.col("tid")).otherwise(pl.col("pid"))
            .cast(pl.Int32, strict=False),
            tgid=pl.when(pl.col("tid").is_not_null()).then(pl.col("pid")).otherwise(None).cast(pl.Int32, strict=False),
            system=pl.when(has_sys).then(evname.str.extract(r"^([^:]*):", 1)).otherwise(None),
            event=pl.when(has_sys).then(evname.str.replace(r"^[^:]*:", "")).otherwise(evname),
            payload=pl.col("payload").fill_null(""),
        )
        first_frac = None  # (line number, resolution) of the first event with a fraction of a second
        if self.resolution is None:
            fr = g.filter(pl.col("frac").is_not_null()).select("no", "frac").head(1)
            if fr.height:
                first_frac = (int(fr.item(0, "no")), 10 ** max(0, 9 - len(fr.item(0, "frac"))))
        return g, first_frac

    def _perf_record(self, no: int, txt: str, stats: ParseStats) -> dict | None:
        """A ``PERF_RECORD_*`` line (``--show-lost-events``, ``--show-task-events`` ...); None when one of its
        numbers does not fit the schema (the caller counts it malformed)."""
        m = LOST_RE.search(txt)
        kind = m.group("kind") if m else "UNKNOWN"
        rest = (m.group("rest") if m else "").strip()
        pre = txt[: m.start()] if m else txt
        row: dict = {"line_no": no, "payload": f"PERF_RECORD_{kind} {rest}".rstrip()}
        pm = re.match(r"^\s*(?P<comm>.*?)\s+(?P<pid>-?\d+)(?:/(?P<tid>-?\d+))?\s+(?:\[(?P<cpu>\d+)\]\s+)?"
                      r"(?:(?P<sec>\d+)\.(?P<frac>\d+):)?", pre)
        if pm:
            row["comm"] = pm.group("comm")
            if pm.group("tid"):
                row["pid"], row["tgid"] = int(pm.group("tid")), int(pm.group("pid"))
            else:
                row["pid"] = int(pm.group("pid"))
            if pm.group("cpu"):
                row["cpu"] = int(pm.group("cpu"))
            if pm.group("sec"):
                row["ts_ns"] = int(pm.group("sec")) * 1_000_000_000 + int(pm.group("frac")[:9].ljust(9, "0"))
            if not all(-INT32_MAX - 1 <= row.get(k, 0) <= INT32_MAX for k in ("pid", "tgid", "cpu")) \
                    or not 0 <= row.get("ts_ns", 0) <= INT64_MAX:
                return None
        if kind in ("LOST", "LOST_SAMPLES"):
            c = LOST_COUNT_RE.search(rest)
            n = int(c.group(1)) if c else None
            stats.lost(n)
            row["event"] = "__lost_events"
            row["fields"] = [("lost", str(n))] if n is not None else [("lost", None)]
        else:
            row["event"] = f"PERF_RECORD_{kind}"
            row["fields"] = []
        return row


# -- stages of PerfScriptParser._block that need no parser state ------------------------------------------------

def _count_non_events(df: pl.DataFrame, stats: ParseStats) -> None:
    """Stage 3: known non-event lines counted (every line is an event, one of these, an attached frame or
    malformed); malformed: a line that is none of them, and a frame before any record."""
    add_count(stats, "n_header_lines", int(df.get_column("hash").sum()))
    add_count(stats, "n_blank_lines", int(df.get_column("blank").sum()))
    bad = df.filter(~pl.col("blank") & ~pl.col("hash") & ~pl.col("ev") & ~pl.col("frame") & ~pl.col("perfrec"))
    if bad.height:
        stats.malformed_many(bad.get_column("no").to_list(), bad.get_column("t").to_list(), "perf-unparsed")
    orphans = df.filter(pl.col("frame") & (pl.col("rid") < 0))
    if orphans.height:
        stats.malformed_many(orphans.get_column("no").to_list(), orphans.get_column("t").to_list(),
                             "perf-frame-without-event")


def _drop_bad_records(df: pl.DataFrame, bad_recs: list[int], stats: ParseStats) -> pl.DataFrame:
    """Stage 5: events whose numbers do not fit the schema are malformed lines (never a NULL or wrapped value;
    only lines with a run of 10 digits can hold one), and so are the frames of a malformed record; the other
    records are renumbered."""
    ev_long = df.filter(pl.col("ev") & ~pl.col("perfrec")).filter(pl.col("t").str.contains(r"[0-9]{10}"))
    bad_nos = list(bad_recs)
    if ev_long.height:
        gx = ev_long.select(pl.col("t").str.extract_groups(EVENT_RE).alias("g"), "no", "t").unnest("g")
        oor = gx.filter(
            pl.col("pid").cast(pl.Int32, strict=False).is_null()
            | (pl.col("tid").is_not_null() & pl.col("tid").cast(pl.Int32, strict=False).is_null())
            | (pl.col("cpu").is_not_null() & pl.col("cpu").cast(pl.Int32, strict=False).is_null())
            | (pl.col("sec").is_not_null() & ts_ns_expr(pl.col("sec"), pl.col("frac")).is_null()))
        if oor.height:
            stats.malformed_many(oor.get_column("no").to_list(), oor.get_column("t").to_list(), OUT_OF_RANGE)
            bad_nos += oor.get_column("no").to_list()
    if not bad_nos:
        return df
    dead = pl.col("no").is_in(pl.Series(bad_nos, dtype=pl.Int64).implode())
    df = df.with_columns(_dead=dead)
    dead_rid = df.filter(pl.col("_dead")).get_column("rid").implode()
    dframes = df.filter(pl.col("frame") & ~pl.col("_dead") & pl.col("rid").is_in(dead_rid))
    if dframes.height:
        stats.malformed_many(dframes.get_column("no").to_list(), dframes.get_column("t").to_list(),
                             "frame of a malformed record")
    df = df.filter(~pl.col("_dead") & ~(pl.col("frame") & pl.col("rid").is_in(dead_rid)))
    return df.drop("_dead").with_columns(rid=(pl.col("ev") | pl.col("perfrec")).cast(pl.Int64).cum_sum() - 1)


def _callchains(df: pl.DataFrame, g: pl.DataFrame, n_rec: int, stats: ParseStats) -> pa.Array:
    """Stage 7: the callchain of every record: its frame lines, after a same-line sample frame
    (``cycles:u:  ffffffff9b201293 [unknown] ([unknown])``); a TAB line that is no frame is malformed."""
    fdf = df.filter(pl.col("frame") & (pl.col("rid") >= 0))
    line_frames = parse_frames(fdf.get_column("t")).with_columns(
        rid=fdf.get_column("rid"), no=fdf.get_column("no"), first=pl.lit(False), t=fdf.get_column("t"))
    # a TAB line that is no frame ("\t:") is malformed, counted once: not also a frame line
    badf = line_frames.filter(~pl.col("ok"))
    if badf.height:
        stats.malformed_many(badf.get_column("no").to_list(), badf.get_column("t").to_list(), "perf-frame")
        line_frames = line_frames.filter(pl.col("ok"))
    add_count(stats, "n_callchain_frame_lines", line_frames.height)
    line_frames = line_frames.drop("t")
    same = g.with_row_index("rid").filter(
        pl.col("system").is_null() & pl.col("payload").str.contains(r"^[0-9a-fA-F]+\s+\S") &
        pl.col("payload").str.contains(FRAME_RE) & ~pl.col("perfrec"))
    frames_all = line_frames
    if same.height:
        sf = parse_frames(same.get_column("payload")).with_columns(
            rid=same.get_column("rid").cast(pl.Int64), no=same.get_column("no"), first=pl.lit(True))
        frames_all = pl.concat([sf, line_frames], how="vertical_relaxed").sort(
            ["rid", "first", "no"], descending=[False, True, False])
    # a same-line frame is part of its event line (payload matched FRAME_RE): never a line of its own
    frames_all = frames_all.filter(pl.col("ok"))
    return build_callchain(n_rec, frames_all.get_column("rid").to_numpy(), frames_struct(frames_all))


def _record_columns(g: pl.DataFrame, is_rec: np.ndarray, rec_rows: list[dict]) -> dict[str, pl.Series]:
    """Stage 8a: the record columns (less fields and callchain); the rows of ``PERF_RECORD_*`` lines replace
    the regex result."""
    cols = {
        "line_no": g.get_column("no"),
        "ts_ns": g.get_column("ts_ns"),
        "cpu": g.get_column("cpu"),
        "pid": g.get_column("pid_i"),
        "tgid": g.get_column("tgid"),
        "comm": g.get_column("comm"),
        "system": g.get_column("system"),
        "event": g.get_column("event"),
        "payload": g.get_column("payload"),
    }
    if is_rec.any():
        idx = np.flatnonzero(is_rec)
        for k in cols:
            s = cols[k].to_list()
            for i, row in zip(idx, rec_rows):
                s[i] = row.get(k)
            cols[k] = pl.Series(k, s, dtype=cols[k].dtype)
    return cols


def _with_fields(tbl: pa.Table, payload: pl.Series, event: pl.Series, rec_at: np.ndarray, rec_rows: list[dict],
                 callchain) -> pa.Table:
    """Stage 8b: the fields map of every row (the ``PERF_RECORD_*`` rows at ``rec_at`` get their own), then
    the callchain."""
    fields = fields_for(payload, event)
    if len(rec_at):
        fl = fields.to_pylist()
        for i, row in zip(rec_at, rec_rows):
            fl[i] = row.get("fields") or []
        fields = pa.array(fl, type=fields.type)
    return tbl.append_column("fields", fields).append_column("callchain", callchain)


def _records_table(cols: dict[str, pl.Series], is_rec: np.ndarray, rec_rows: list[dict],
                   callchain: pa.Array) -> pa.Table:
    """Stage 8: the Arrow table of one block's records."""
    return _with_fields(pl.DataFrame(cols).to_arrow(), cols["payload"], cols["event"], np.flatnonzero(is_rec),
                        rec_rows, callchain)


# -- the compiled fast path (native/perf_script.c) ------------------------------------------------------------
#
# The C module takes a block's bytes and returns the records it is sure of as Arrow buffers, and every other line
# (the lines of a record it is not sure of, from its event line on, and the lines before the block's first sure
# event line) with its line number. Those lines, after the lines the Python rules carried from the last block,
# go through PerfScriptParser._block_parts, which so sees the same record boundaries, malformed lines and
# counters as without the module; both row sets are merged in line order and the fields map is parsed over
# the merged rows, as the pure path parses it over a block's rows. A sure record still open at the end of a
# block waits, as bytes, for the next chunk.

_PMU_BYTES = "\n".join(PMU_EVENTS).encode()
_C_COLUMNS = ["line_no", "ts_ns", "cpu", "pid", "tgid", "comm", "system", "event", "payload", "callchain"]
_C_SCHEMA = pa.schema([PARSED_SCHEMA.field(c) for c in _C_COLUMNS])


def _native_blocks(mod):
    def blocks(parser: "PerfScriptParser", source: TraceSource, stats: ParseStats) -> Iterator[pa.Table]:
        raw, raw_no = b"", 0  # the sure record still open at the end of the last block, as bytes
        carry = carry_no = None  # the lines the Python rules carried from the last block
        for chunk in source.chunks(parser.chunk_bytes):
            data, first = chunk.data, chunk.first_line_no
            if raw:
                data, first = raw + data, raw_no
            out, carry, carry_no, raw, raw_no = parser._native_block(mod, data, first, carry, carry_no, stats,
                                                                     final=False)
            yield from out
        if raw:
            out, _, _, _, _ = parser._native_block(mod, raw, raw_no, carry, carry_no, stats, final=True)
            yield from out
        elif carry is not None and len(carry):
            out, _, _ = parser._block(carry, carry_no, stats, final=True)
            yield from out
    return blocks


def _buf(b: bytes | None):
    return None if b is None else pa.py_buffer(b)


def _c_strings(r: dict, name: str, n: int) -> pa.Array:
    return pa.Array.from_buffers(pa.string(), n, [_buf(r[name + "_valid"]), _buf(r[name + "_off"]),
                                                  _buf(r[name + "_data"])], null_count=r[name + "_nulls"])


def _c_ints(r: dict, name: str, typ: pa.DataType, n: int) -> pa.Array:
    valid = r.get(name + "_valid")
    return pa.Array.from_buffers(typ, n, [_buf(valid), _buf(r[name])], null_count=r.get(name + "_nulls", 0))


def _c_table(r: dict) -> pa.Table:
    """The sure records of one ``parse`` result as a table of _C_SCHEMA."""
    n, nf = r["n_events"], r["n_frames"]
    frames = pa.StructArray.from_arrays([_c_strings(r, c, nf) for c in ("addr", "sym", "off", "dso")],
                                        fields=list(FRAME))
    chain = pa.Array.from_buffers(pa.list_(FRAME), n, [_buf(r["chain_valid"]), _buf(r["chain_off"])],
                                  null_count=r["chain_nulls"], children=[frames])
    cols = [_c_ints(r, "line_no", pa.int64(), n), _c_ints(r, "ts_ns", pa.int64(), n),
            _c_ints(r, "cpu", pa.int32(), n), _c_ints(r, "pid", pa.int32(), n), _c_ints(r, "tgid", pa.int32(), n),
            _c_strings(r, "comm", n), _c_strings(r, "system", n), _c_strings(r, "event", n),
            _c_strings(r, "payload", n), chain]
    return pa.Table.from_arrays(cols, schema=_C_SCHEMA)


def _py_table(cols: dict[str, pl.Series], callchain: pa.Array) -> pa.Table:
    t = pl.DataFrame(cols).to_arrow()
    arrays = [t.column(c).cast(_C_SCHEMA.field(c).type) for c in _C_COLUMNS[:-1]]
    return pa.Table.from_arrays(arrays + [callchain], schema=_C_SCHEMA)


def _merge(ct: pa.Table, pt: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """``ct`` and ``pt`` (each in line order) merged in line order; and where each row of ``pt`` went."""
    if pt.num_rows == 0:
        return ct, np.zeros(0, np.int64)
    if ct.num_rows == 0:
        return pt, np.arange(pt.num_rows)
    c_no = ct.column("line_no").to_numpy()
    p_no = pt.column("line_no").to_numpy()
    if p_no[-1] < c_no[0]:
        return pa.concat_tables([pt, ct]), np.arange(pt.num_rows)
    if p_no[0] > c_no[-1]:
        return pa.concat_tables([ct, pt]), ct.num_rows + np.arange(pt.num_rows)
    order = np.argsort(np.concatenate([c_no, p_no]), kind="stable")
    where = np.empty(len(order), np.int64)
    where[order] = np.arange(len(order))
    return pa.concat_tables([ct, pt]).take(pa.array(order)), where[ct.num_rows:]


def _series(col: pa.ChunkedArray, name: str) -> pl.Series:
    return pl.Series(name, col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)


PARSERS = [PerfScriptParser]
