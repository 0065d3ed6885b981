"""Record-oriented text (an event line, then the frame lines of its callchain): the pieces the perf-script and
trace-cmd report formats share.

* ``run_blocks``: feeds a parser's ``_block(lines, line_nos, stats, final)`` chunk by chunk in a worker thread,
  carrying the record still open at the end of a chunk (its frames may continue in the next one);
* ``lines_of``: chunk text -> a Series of lines; ``drop_junk``: NUL and marker lines counted malformed;
* ``ts_ns_expr``: ``sec.frac`` -> exact int64 ns; ``fields_for``: payload -> fields map;
* ``build_callchain``: frames -> the callchain list column;
* ``cut_open_record``: a block split before the record still open at its end (which waits for the next chunk).

Neither format imports the other.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import polars as pl
import pyarrow as pa

from ..schema import FRAME
from .base import ParseStats, ahead, count_junk, exact_ns, junk_reason, junk_text
from .source import TraceSource


def lines_of(text: str) -> pl.Series:
    """Split decoded chunk text into a Series of lines (no trailing empty line, CR stripped)."""
    if text.endswith("\n"):
        text = text[:-1]
    s = pl.Series("line", [text], dtype=pl.String).str.split("\n").explode()
    return s.str.strip_suffix("\r")


#: a block of attached lines with no record start waits for the next chunk only up to this many lines
MAX_WAITING_LINES = 4_000_000


def cut_open_record(df: pl.DataFrame, lines: pl.Series, nos: np.ndarray, starts: np.ndarray,
                    attached: bool):
    """Split a classified block before the record still open at its end (its frames may continue in the next
    chunk): returns (the block's rows to parse now, carried lines, carried line numbers), or None when the
    whole block must wait (``attached`` lines and no record start, ``starts`` all False) and is not too long
    to wait."""
    opens = np.flatnonzero(starts)
    if len(opens):
        cut = int(opens[-1])
    elif attached and df.height < MAX_WAITING_LINES:
        return None
    else:  # nothing to attach to a later record: parse it all now
        cut = df.height
    return df.slice(0, cut), lines.slice(cut), nos[cut:]


def ts_ns_expr(sec: pl.Expr, frac: pl.Expr) -> pl.Expr:
    """``sec.frac`` (any number of fraction digits up to 9) -> exact int64 ns; NULL when it does not fit."""
    return pl.when(frac.is_not_null()).then(exact_ns(sec, frac)).otherwise(pl.lit(None, pl.Int64))


def drop_junk(lines: pl.Series, nos: np.ndarray, stats: ParseStats) -> tuple[pl.Series, np.ndarray]:
    """Count NUL lines and the source's marker lines as malformed and take them out (see base.junk_reason)."""
    has = lines.str.contains("\x00", literal=True)
    if not has.any():
        return lines, nos
    df = pl.DataFrame({"t": lines, "no": nos}).with_columns(r=junk_reason(pl.col("t")))
    bad = df.filter(pl.col("r").is_not_null())
    count_junk(stats, bad.get_column("no").to_list(), bad.select(junk_text(pl.col("t"))).to_series().to_list(),
               bad.get_column("r").to_list())
    keep = df.get_column("r").is_null()
    return lines.filter(keep), nos[keep.to_numpy()]


def fields_for(payload: pl.Series, event: pl.Series) -> pa.Array:
    from .fields import parse_fields

    return parse_fields(payload, event)


def build_callchain(n_records: int, frame_rid: np.ndarray, frames: pa.StructArray) -> pa.Array:
    """ListArray<FRAME> of ``n_records`` entries; ``frame_rid`` (sorted) says which record each frame is in.

    Records without frames get NULL.
    """
    counts = np.bincount(frame_rid, minlength=n_records).astype(np.int32) if len(frame_rid) else \
        np.zeros(n_records, np.int32)
    offsets = np.zeros(n_records + 1, np.int32)
    np.cumsum(counts, out=offsets[1:])
    mask = pa.array(counts == 0)
    return pa.ListArray.from_arrays(pa.array(offsets), frames, type=pa.list_(FRAME), mask=mask)


def _blocks(parser, source: TraceSource, stats: ParseStats) -> Iterator[pa.Table]:
    """Feed ``parser._block`` chunk by chunk, carrying the record still open at the end of each chunk."""
    carry: pl.Series | None = None
    carry_no: np.ndarray | None = None
    for chunk in source.chunks(parser.chunk_bytes):
        lines = lines_of(chunk.data.decode("utf-8", "replace"))
        nos = np.arange(chunk.first_line_no, chunk.first_line_no + len(lines), dtype=np.int64)
        if carry is not None:
            lines = pl.concat([carry, lines])
            nos = np.concatenate([carry_no, nos])
        out, carry, carry_no = parser._block(lines, nos, stats, final=False)
        yield from out
    if carry is not None and len(carry):
        out, _, _ = parser._block(carry, carry_no, stats, final=True)
        yield from out


def run_blocks(parser, source: TraceSource, stats: ParseStats, blocks=None) -> Iterator[pa.Table]:
    """``_blocks`` (or ``blocks(parser, source, stats)``, a format's own generator of tables) in a worker
    thread, one table ahead, so that parsing the next chunk overlaps with the consumer writing the previous
    one (polars and pyarrow release the GIL)."""
    yield from ahead((blocks or _blocks)(parser, source, stats), 2, "ksmtrace-parse")
