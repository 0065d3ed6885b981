"""What every input-format module implements, and the shared run accounting.

A format module defines one ``Parser`` subclass:

* ``name``: the ``--format`` value (``ftrace``, ``perf-script`` ...);
* ``sniff(head_text, head_bytes) -> int``: 0 (not mine) to 100 (certainly mine);
* ``parse(source, stats) -> Iterator[pa.Table]``: tables whose columns are a
  subset of ``schema.PARSED_SCHEMA``; missing columns become NULL.

Parsers count what they could not parse through ``stats.malformed(...)``, loss
markers through ``stats.lost(...)``, and put header facts into ``stats.meta``.
Never drop a line silently: every line is an event, a known non-event (header,
blank, prose outside any trace block) or a malformed line.

Shared rules for every text parser (helpers below):

* ``junk_lines``: a line holding a NUL byte (the kernel never prints one; NUL runs
  come from crashes and preallocated files), a marker line of the source (a line
  over the 1 MiB cap, a line cut by a truncation) or, where a parser would call it
  prose, a line that is more than 1/8 control bytes, is one malformed line with its
  own reason: never an event, never prose.
* ``exact_ns``: ``sec.frac`` to exact int64 ns; a timestamp that does not fit int64
  ns (more than 9223372036 s, e.g. 12-digit seconds) is NULL and the parser counts
  its line malformed ("number out of range") instead of storing a wrapped value.
* pid, tgid and cpu are int32 in the schema (the kernel's pid_t and cpu are 32-bit
  ints; PID_MAX_LIMIT is 2^22): a line whose pid/tgid/cpu does not fit is malformed
  ("number out of range"), never an event with a NULL pid.
"""
from __future__ import annotations

import json
import queue
import re
import threading
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

import pyarrow as pa

import polars as pl

from ..schema import PARSED_SCHEMA
from .source import CUT_MARK, MAX_LINE_BYTES, OVERLONG_MARK, TraceSource

MAX_EXAMPLES = 20
INT64_MAX = (1 << 63) - 1
INT32_MAX = (1 << 31) - 1
#: largest whole second whose ns value fits int64
_MAX_SEC = INT64_MAX // 1_000_000_000
_MAX_SEC_FRAC = INT64_MAX - _MAX_SEC * 1_000_000_000
#: the ``# tracer: NAME`` header line of ftrace text (trace, trace_pipe with headers, function_graph)
TRACER_HEADER_RE = re.compile(r"^#\s*tracer:\s*(\S+)")

OUT_OF_RANGE = "number out of range (timestamp beyond int64 ns, or pid/tgid/cpu beyond int32)"

_OVERLONG = OVERLONG_MARK.decode()
_CUT = CUT_MARK.decode()
#: control bytes that make a non-event line binary junk (TAB, LF, VT, FF, CR excluded)
_CTRL_RE = "[\x00-\x08\x0e-\x1f\x7f\ufffd]"


def junk_reason(col: pl.Expr, prose_too: bool = False) -> pl.Expr:
    """Reason a line is junk (see the module doc), or NULL. ``prose_too`` adds the control-byte rule."""
    e = (pl.when(col.str.starts_with(_OVERLONG)).then(pl.lit(f"line longer than the {MAX_LINE_BYTES}-byte cap"))
         .when(col.str.starts_with(_CUT)).then(pl.lit("line cut by the truncation of the input"))
         .when(col.str.contains("\x00", literal=True)).then(pl.lit("NUL bytes in a text line")))
    if prose_too:
        e = e.when(col.str.count_matches(_CTRL_RE) * 8 > col.str.len_chars()).then(pl.lit("binary garbage"))
    return e.otherwise(pl.lit(None, pl.String))


def junk_text(col: pl.Expr) -> pl.Expr:
    """The example text shown for a junk line: markers without their NUL-delimited tag."""
    return col.str.strip_prefix(_OVERLONG).str.strip_prefix(_CUT).str.replace_all("\x00", "\\0", literal=True)


def count_junk(stats: "ParseStats", nos, texts, reasons) -> None:
    """Count junk lines (sequences of line numbers, texts, reasons) as malformed."""
    for reason in dict.fromkeys(reasons):
        sel = [i for i, r in enumerate(reasons) if r == reason]
        stats.malformed_many([nos[i] for i in sel], [texts[i] for i in sel], reason)


def take_junk(df: pl.DataFrame, text: str, no: str, stats: "ParseStats", prose_too: bool = False) -> pl.DataFrame:
    """Count the junk lines of ``df`` as malformed and return the other rows (fast when there are none)."""
    col = pl.col(text)
    if not df.height or not df.select((col.str.contains("\x00", literal=True)
                                       | (col.str.count_matches(_CTRL_RE) > 0 if prose_too else pl.lit(False)))
                                      .any()).item():
        return df
    j = df.with_columns(_junk=junk_reason(col, prose_too))
    bad = j.filter(pl.col("_junk").is_not_null())
    if bad.height:
        count_junk(stats, bad.get_column(no).to_list(), bad.select(junk_text(col)).to_series().to_list(),
                   bad.get_column("_junk").to_list())
    return j.filter(pl.col("_junk").is_null()).drop("_junk")


def add_count(stats: "ParseStats", key: str, n: int) -> None:
    """Add ``n`` to the line counter ``stats.meta[key]`` (known non-event lines: header, blank ...)."""
    if n:
        stats.meta[key] = stats.meta.get(key, 0) + n


def exact_ns(sec: pl.Expr, frac: pl.Expr) -> pl.Expr:
    """``sec`` digits and ``frac`` digits (NULL: no fraction; the raw counter value is kept) -> exact int64 ns.

    NULL when the value does not fit int64 (callers count that line malformed)."""
    s = sec.cast(pl.Int64, strict=False)
    f = frac.str.slice(0, 9).str.pad_end(9, "0").cast(pl.Int64, strict=False)
    fits = (s < _MAX_SEC) | ((s == _MAX_SEC) & (f <= _MAX_SEC_FRAC))
    return pl.when(frac.is_null()).then(s).when(fits).then(s * 1_000_000_000 + f) \
        .otherwise(pl.lit(None, pl.Int64))


def int_in(text: str | None, lo: int, hi: int) -> int | None:
    """``int(text)`` when it is decimal digits in [lo, hi], else None."""
    if text is None:
        return None
    t = str(text).strip()
    if not t.isdigit() or len(t) > 20:
        return None
    v = int(t)
    return v if lo <= v <= hi else None


@dataclass
class ParseStats:
    n_malformed: int = 0
    malformed_examples: list[dict] = field(default_factory=list)
    n_lost_events: int = 0
    lost_unknown: bool = False
    #: header facts: tracer, n_cpus, kernel, ts_unit, ts_resolution_ns and anything else (stored as JSON)
    meta: dict[str, Any] = field(default_factory=dict)

    def malformed(self, line_no: int, text: str, reason: str = "unparsed") -> None:
        self.n_malformed += 1
        if len(self.malformed_examples) < MAX_EXAMPLES:
            self.malformed_examples.append({"line_no": int(line_no), "text": text[:300], "reason": reason})

    def malformed_many(self, line_nos, texts, reason: str = "unparsed") -> None:
        """Vectorised variant: sequences of line numbers and texts."""
        n = len(line_nos)
        self.n_malformed += n
        room = MAX_EXAMPLES - len(self.malformed_examples)
        for ln, t in list(zip(line_nos, texts))[: max(room, 0)]:
            self.malformed_examples.append({"line_no": int(ln), "text": str(t)[:300], "reason": reason})

    def lost(self, count: int | None) -> None:
        """Add a loss marker's count (None: unknown). A count beyond int64 is an unknown loss."""
        if count is None or not 0 <= int(count) <= INT64_MAX:
            self.lost_unknown = True
        else:
            self.n_lost_events = min(self.n_lost_events + int(count), INT64_MAX)

    def examples_json(self) -> str:
        return json.dumps(self.malformed_examples)


class Parser:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    @classmethod
    def sniff(cls, head_text: str, head_bytes: bytes) -> int:
        return 0

    def parse(self, source: TraceSource, stats: ParseStats) -> Iterator[pa.Table]:
        raise NotImplementedError


def conform(table: pa.Table) -> pa.Table:
    """Return ``table`` with exactly the PARSED_SCHEMA columns, in order, cast to their types."""
    n = table.num_rows
    cols = []
    for f in PARSED_SCHEMA:
        if f.name in table.column_names:
            col = table.column(f.name)
            if col.type != f.type:
                col = col.cast(f.type)
            cols.append(col)
        else:
            cols.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(cols, schema=PARSED_SCHEMA)


def repeat_str(value: str, n: int) -> pa.Array:
    """A string array of ``value`` n times, from its two buffers (numpy offsets, the bytes repeated): unlike
    ``pa.repeat`` it does not make pyarrow import pandas (a quarter of a second, on the ingest's critical path)."""
    import numpy as np

    b = value.encode()
    if (n + 1) * len(b) >= 2 ** 31:
        return pa.repeat(value, n).cast(pa.string())
    offsets = np.arange(0, (n + 1) * len(b), len(b), dtype=np.int32) if b else np.zeros(n + 1, np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(b * n)])


def ahead(items: Iterator, n: int = 2, name: str = "ksmtrace-ahead") -> Iterator:
    """``items`` produced in a worker thread, at most ``n`` ahead of the consumer; its exception re-raised here.
    Closing the consumer stops the worker. The formats run their reading or parsing one step ahead of the
    consumer with it (polars, pyarrow, hashlib and the compiled parsers release the GIL)."""
    q: queue.Queue = queue.Queue(maxsize=n)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for x in items:
                if not put(("x", x)):
                    return
            put(("done", None))
        except BaseException as e:  # handed to the consumer
            put(("err", e))

    th = threading.Thread(target=work, name=name, daemon=True)
    th.start()
    finished = False
    try:
        while True:
            kind, v = q.get()
            if kind == "x":
                yield v
            else:
                finished = True
                if kind == "err":
                    raise v
                return
    finally:
        stop.set()
        if finished:  # else the worker may be blocked in a read (a stalled pipe): it stops at its next item
            th.join()
