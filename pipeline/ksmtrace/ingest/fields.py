"""Vectorised ``key=value`` extraction from event payloads (shared by every text parser).

``parse_fields(payload, event)`` turns a column of payload strings into an Arrow
``map<string, string>`` column without a Python loop per row:

* **generic rule**: a token starts at the beginning of the payload or after one or
  more spaces, and is ``key=`` (key ``[A-Za-z_][A-Za-z0-9_.]*``); the value is everything
  up to the next token, with trailing spaces and one trailing ``,`` removed
  (``addr=7f95..., pte=...``). So ``comm=my prog-x pid=1`` gives ``comm -> "my prog-x"``
  and ``my_field=foo=bar`` gives ``my_field -> "foo=bar"``. Text before the first key
  (``(sym+0x4/0x1a0)`` of a probe, ``pwmchip0.0:``) is not a field; sched_switch's
  `` ==> `` separator is dropped.
* **key-prefixed payloads** ``name: k=v ...`` (pwm, many drivers) also get ``prefix -> name``.
* **per-event patterns** for payloads without ``key=value`` form, derived from the
  kernel print formats (``EVENT_PATTERNS``): ``contention_begin``/``contention_end``,
  the ``ksm_*`` events, ``sys_enter``/``sys_exit``.

Values are kept exactly as printed (pointers are not rewritten); ``normalize_ptr``
gives a canonical form for joins when needed.

Rust's regex engine has no look-around, so instead of a regex split the payloads are
split at single spaces into one long column of tokens (a token that is not ``key=``
continues the previous value); events with many rows in a chunk whose payloads have
the same keys as their first row take a faster path (one ``splitn`` and fixed-offset
slices). Results are built in long form (row, ord, key, value) and turned into the
Arrow map with one offsets array.

Where the compiled split is built (``ingest/native/fields.c``, loaded with ``_native.load("fields")``), it
takes the payload and event columns' Arrow buffers and gives the map's buffers in one pass: the generic rule,
the prefix rule and the per-event patterns, written from the regexes of ``EVENT_PATTERNS`` (it is used only
while they are the ones it was written from). Rows it is not sure of (a non-ASCII character where a regex class
is Unicode, a value ending in a tab, where the template path and the generic rule differ) get the rules above,
as the whole column would have given them, so the maps are the same with it and without it.
"""
from __future__ import annotations

import re

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from ._native import load

MAP_TYPE = pa.map_(pa.string(), pa.string())

KEY_RE = r"[A-Za-z_][A-Za-z0-9_.]*"
_TOKEN_OK = rf"^{KEY_RE}="
_PREFIXED = rf"^([^\s=:]+): +{KEY_RE}="

#: event name -> anchored regex with named groups (group name = field key).
#: A group that does not participate (optional prefix) gives no entry.
EVENT_PATTERNS: dict[str, str] = {
    "contention_begin": r"^(?P<lock_addr>\S+) \(flags=(?P<flags>[^)]*)\)",
    "contention_end": r"^(?P<lock_addr>\S+) \(ret=(?P<ret>-?\d+)\)",
    "ksm_start_scan": r"^seq (?P<seq>-?\d+) rmap size (?P<rmap_size>-?\d+)",
    "ksm_stop_scan": r"^seq (?P<seq>-?\d+) rmap size (?P<rmap_size>-?\d+)",
    "ksm_enter": r"^mm (?P<mm>\S+)",
    "ksm_exit": r"^mm (?P<mm>\S+)",
    "ksm_merge_one_page": (r"^(?P<ksm_page>ksm )?pfn (?P<pfn>\d+) rmap_item (?P<rmap_item>\S+) mm (?P<mm>\S+) "
                           r"error (?P<error>-?\d+)"),
    "ksm_merge_with_ksm_page": (r"^(?P<ksm_page>ksm )?pfn (?P<pfn>\d+) rmap_item (?P<rmap_item>\S+) "
                                r"mm (?P<mm>\S+) error (?P<error>-?\d+)"),
    "ksm_remove_ksm_page": r"^pfn (?P<pfn>\d+)",
    "ksm_remove_rmap_item": r"^pfn (?P<pfn>\d+) rmap_item (?P<rmap_item>\S+) mm (?P<mm>\S+)",
    "ksm_advisor": (r"^ksm scan time (?P<scan_time>-?\d+) pages_to_scan (?P<pages_to_scan>\d+) "
                    r"cpu percent (?P<cpu_percent>\d+)"),
    "sys_enter": r"^NR (?P<nr>-?\d+) \((?P<args>[^)]*)\)",
    "sys_exit": r"^NR (?P<nr>-?\d+) = (?P<ret>-?\d+)",
}

#: fields whose group matched a literal marker: the value is "true"/"false" rather than the text
_FLAG_GROUPS = {"ksm_page"}



def _generic_long(payload: pl.Series) -> pl.DataFrame:
    """Generic rule, in long form: one (row, ord, key, value) row per field.

    Split at single spaces, mark the tokens that start with ``key=``; a token that does
    not continues the previous field's value (``comm=my prog-x``), except at the start
    of a payload, where the text before the first key is not a field.
    """
    toks = (
        pl.DataFrame({"t": payload.str.split(" ")})
        .with_row_index("row")
        .explode("t")
        # drop sched_switch's "==>" before marking row starts (a payload opening with "==>" must not
        # continue the previous row's last value)
        .filter(pl.col("t").is_not_null() & (pl.col("t") != "==>"))
        .with_columns(
            _k=pl.col("t").str.contains(_TOKEN_OK),
            _rs=pl.col("row") != pl.col("row").shift(1, fill_value=-1),
        )
        .with_columns(_start=pl.col("_k") | pl.col("_rs"))
        .with_columns(_gid=pl.col("_start").cum_sum())
        # groups opened by a non-key token at the payload start are not fields
        .filter(pl.when(pl.col("_start")).then(pl.col("_k")).otherwise(None).forward_fill())
    )
    if toks.height == 0:
        return pl.DataFrame(schema={"row": pl.UInt32, "ord": pl.UInt32, "key": pl.String, "value": pl.String})
    if not toks.get_column("_start").all():
        # rare: values with spaces; join the continuation tokens of those groups
        multi = toks.filter(~pl.col("_start")).get_column("_gid").unique()
        many = toks.filter(pl.col("_gid").is_in(multi.implode()))
        joined = many.group_by("_gid", maintain_order=True).agg(pl.col("row").first(), pl.col("t").str.join(" "))
        single = toks.filter(~pl.col("_gid").is_in(multi.implode())).select("_gid", "row", "t")
        toks = pl.concat([single, joined.select("_gid", "row", "t")]).sort("_gid")
    else:
        toks = toks.select("_gid", "row", "t")
    pos = pl.col("t").str.find("=", literal=True)
    return toks.select(
        "row",
        pl.col("_gid").cast(pl.UInt32).alias("ord"),
        pl.col("t").str.slice(0, pos).alias("key"),
        pl.col("t").str.slice(pos + 1).str.strip_chars_end(" \t").str.strip_suffix(",")
        .str.strip_chars_end(" \t").alias("value"),
    )


def _pattern_long(payload: pl.Series, rows: pl.Series, pattern: str) -> pl.DataFrame:
    """Per-event pattern on a subset of rows, long form (row, ord, key, value)."""
    names = list(re.compile(pattern).groupindex)
    sub = payload.gather(rows)
    g = pl.DataFrame({"row": rows, "m": sub.str.extract_groups(pattern)}).unnest("m")
    if any(n in _FLAG_GROUPS for n in names):
        # a literal-marker group (ksm_page) is "true"/"false" on the rows the pattern matched
        g = g.with_columns(_matched=sub.str.contains(pattern))
    parts = []
    for i, name in enumerate(names):
        v = pl.col(name)
        if name in _FLAG_GROUPS:
            v = pl.when(pl.col("_matched")).then(pl.when(v.is_null()).then(pl.lit("false")).otherwise(pl.lit("true")))
        parts.append(g.select("row", pl.lit(i, pl.UInt32).alias("ord"), pl.lit(name, pl.String).alias("key"),
                              v.cast(pl.String).alias("value")))
    return pl.concat(parts).filter(pl.col("value").is_not_null())


def _prefix_long(payload: pl.Series) -> pl.DataFrame:
    pref = payload.str.extract(_PREFIXED, 1)
    idx = pref.is_not_null().arg_true()
    return pl.DataFrame({"row": idx.cast(pl.UInt32), "ord": pl.Series([0] * len(idx), dtype=pl.UInt32),
                         "key": pl.Series(["prefix"] * len(idx), dtype=pl.String), "value": pref.gather(idx)})


_TOKEN_RE = re.compile(_TOKEN_OK)
#: events with at least this many rows in a chunk get the template fast path
TEMPLATE_MIN_ROWS = 32


def _template_of(sample: str) -> list[str | None] | None:
    """Key sequence of a payload whose tokens are all ``key=value`` (or the ``==>`` separator), else None."""
    toks = sample.split(" ")
    keys: list[str | None] = []
    for t in toks:
        if t == "==>":
            keys.append(None)
            continue
        m = _TOKEN_RE.match(t)
        if not m:
            return None
        keys.append(t[: t.index("=")])
    named = [k for k in keys if k is not None]
    return keys if named and len(set(named)) == len(named) else None


def _template_long(payload: pl.Series, rows: pl.Series, keys: list[str | None]) -> tuple[pl.DataFrame, pl.Series]:
    """Fast path for rows whose payload is exactly ``k1=v1 k2=v2 ...`` with the template's keys and no
    spaces inside values: one literal split and fixed-offset slices. Returns (long frame, rows that did not fit)."""
    k = len(keys)
    sub = payload.gather(rows)
    parts = sub.str.splitn(" ", k).struct.unnest() if k > 1 else pl.DataFrame({"field_0": sub})
    ok = pl.lit(True)
    for i, key in enumerate(keys):
        c = pl.col(f"field_{i}")
        ok = ok & (c == "==>" if key is None else c.str.starts_with(key + "="))
    ok = ok & ~pl.col(f"field_{k - 1}").str.contains(" ", literal=True)
    parts = parts.with_columns(row=rows, _ok=ok.fill_null(False))
    if parts.get_column("_ok").all():
        good, bad_rows = parts, rows.clear()
    else:
        good = parts.filter(pl.col("_ok"))
        bad_rows = parts.filter(~pl.col("_ok")).get_column("row")
    longs = []
    for i, key in enumerate(keys):
        if key is None:
            continue
        v = pl.col(f"field_{i}").str.slice(len(key) + 1)
        col = good.get_column(f"field_{i}")
        if col.str.ends_with(",").any() or col.str.contains("\t", literal=True).any():
            # the generic rule's value end: trailing tabs, one ",", trailing tabs (a value has no space here)
            v = v.str.strip_chars_end(" \t").str.strip_suffix(",").str.strip_chars_end(" \t")
        longs.append(good.select(
            "row", pl.lit(i, pl.UInt32).alias("ord"), pl.lit(key, pl.String).alias("key"), v.alias("value")))
    return (pl.concat(longs) if longs else _EMPTY_LONG.clone()), bad_rows


_EMPTY_LONG = pl.DataFrame(schema={"row": pl.UInt32, "ord": pl.UInt32, "key": pl.String, "value": pl.String})
#: what fields_long gives when nothing parses (the same columns and types as when something does)
_NO_FIELDS = pl.DataFrame(schema={"row": pl.UInt32, "ord": pl.Int64, "key": pl.String, "value": pl.String})

_BOUNDARY_RE = re.compile(rf"(?:^| )({KEY_RE})=")


def _spaced_template_of(sample: str) -> list[str] | None:
    """Key sequence of a payload that starts with ``key=`` and whose values may contain spaces
    (``comm=my prog-x pid=1``): the keys at token boundaries, else None."""
    if "==>" in sample or not _TOKEN_RE.match(sample):
        return None
    keys = [m.group(1) for m in _BOUNDARY_RE.finditer(sample)]
    return keys if keys and len(set(keys)) == len(keys) else None


def _spaced_template_long(payload: pl.Series, rows: pl.Series, keys: list[str]) -> tuple[pl.DataFrame, pl.Series]:
    """Rows whose payload is ``k1=v1 k2=v2 ...`` with the template's keys, values possibly holding
    spaces: literal finds of ``" k="`` and slices. A row fits when its token-boundary keys are exactly the
    template's (same count, found in order) and it has no ``==>``, which is when the generic rule gives the
    same fields. Returns (long frame, rows that did not fit)."""
    p = pl.col("p")
    k = len(keys)
    cols = {"_s0": pl.lit(0, pl.UInt32)}
    for i in range(1, k):
        cols[f"_s{i}"] = p.str.find(" " + keys[i] + "=", literal=True).cast(pl.UInt32)
    sub = pl.DataFrame({"row": rows, "p": payload.gather(rows)}).with_columns(**cols)
    # finds give byte offsets, slices take characters: ASCII payloads only
    ok = p.str.starts_with(keys[0] + "=") & (p.str.len_bytes() == p.str.len_chars()) \
        & ~p.str.contains("==>", literal=True) \
        & (p.str.count_matches(_BOUNDARY_RE.pattern) == k)
    for i in range(1, k):
        ok = ok & (pl.col(f"_s{i}") > pl.col(f"_s{i - 1}"))
    sub = sub.with_columns(_ok=ok.fill_null(False))
    good = sub.filter(pl.col("_ok"))
    bad_rows = sub.filter(~pl.col("_ok")).get_column("row")
    longs = []
    for i, key in enumerate(keys):
        start = pl.col(f"_s{i}") + (len(key) + 1 + (1 if i else 0))
        v = p.str.slice(start, pl.col(f"_s{i + 1}") - start) if i + 1 < k else p.str.slice(start)
        longs.append(good.select(
            "row", pl.lit(i, pl.UInt32).alias("ord"), pl.lit(key, pl.String).alias("key"),
            v.str.strip_chars_end(" \t").str.strip_suffix(",").str.strip_chars_end(" \t").alias("value")))
    return pl.concat(longs), bad_rows


def fields_long(payload: pl.Series, event: pl.Series | None = None) -> pl.DataFrame:
    """All fields of ``payload`` as a long frame (row, ord, key, value), sorted by row then field order."""
    payload = payload.cast(pl.String)
    event = None if event is None else event.cast(pl.String)
    nat = _native_split(payload, event)
    return _pure_long(payload, event) if nat is None else _native_long(payload, event, *nat)


def _native_long(payload: pl.Series, event: pl.Series | None, m: pa.MapArray, unsure: np.ndarray) -> pl.DataFrame:
    """The compiled split's map in long form, with the unsure rows from the Python rules."""
    counts = np.diff(np.asarray(m.offsets))
    rows = np.repeat(np.arange(len(m), dtype=np.uint32), counts)
    starts = np.repeat(np.asarray(m.offsets)[:-1].astype(np.int64), counts)
    lg = pl.DataFrame({"row": rows, "ord": np.arange(len(rows), dtype=np.int64) - starts,
                       "key": pl.Series(m.keys), "value": pl.Series(m.items)},
                      schema={"row": pl.UInt32, "ord": pl.Int64, "key": pl.String, "value": pl.String})
    if len(unsure):
        rest = _pure_long(payload, event, only=unsure)
        lg = pl.concat([lg, rest.select(pl.col("row").cast(pl.UInt32), pl.col("ord").cast(pl.Int64), "key",
                                        "value")]).sort("row", maintain_order=True)
    return lg if lg.height else _NO_FIELDS.clone()


def _pure_long(payload: pl.Series, event: pl.Series | None, only: np.ndarray | None = None) -> pl.DataFrame:
    """The Python rules. ``only`` (row numbers): the fields of those rows alone, as the whole column would give
    them (the template path of an event is still chosen from all its rows)."""
    n = len(payload)
    keep = None
    if only is not None:
        keep = np.zeros(n, dtype=bool)
        keep[only] = True

    def mine(r: pl.Series) -> pl.Series:
        return r if keep is None else r.filter(pl.Series(keep[r.to_numpy()]))

    parts = []
    handled = np.zeros(n, dtype=bool)
    if event is not None:
        groups = (pl.DataFrame({"e": event.cast(pl.String)}).with_row_index("row")
                  .group_by("e").agg(pl.col("row"), pl.len().alias("n")).filter(pl.col("e").is_not_null()))
        rows_col = groups.get_column("row")
        for i, (name, cnt) in enumerate(zip(groups.get_column("e").to_list(), groups.get_column("n").to_list())):
            if name in EVENT_PATTERNS:
                r = rows_col[i]
                handled[r.to_numpy()] = True
                r = mine(r)
                if len(r):
                    parts.append(_pattern_long(payload, r, EVENT_PATTERNS[name]))
            elif cnt >= TEMPLATE_MIN_ROWS:
                r = rows_col[i]
                first = payload[int(r[0])]
                keys = _template_of(first) if first is not None else None
                skeys = None
                if keys is None:
                    skeys = _spaced_template_of(first) if first is not None else None
                    if skeys is None:
                        continue
                handled[r.to_numpy()] = True
                r = mine(r)
                if not len(r):
                    continue
                lg, bad = _template_long(payload, r, keys) if keys is not None else \
                    _spaced_template_long(payload, r, skeys)
                parts.append(lg)
                if len(bad):
                    handled[bad.to_numpy()] = False
    if keep is not None:
        handled |= ~keep
    rest = pl.Series(np.flatnonzero(~handled), dtype=pl.UInt32) if handled.any() else None
    sub = payload if rest is None else payload.gather(rest)
    generic_only = not parts
    if len(sub):
        for lg in (_prefix_long(sub).with_columns(pl.col("ord").cast(pl.Int64) - 1)
                   if sub.str.contains(":", literal=True).any() else None, _generic_long(sub)):
            if lg is None or lg.height == 0:
                continue
            if rest is not None:
                lg = lg.with_columns(row=rest.gather(lg.get_column("row")))
            parts.append(lg)
    parts = [p.select(pl.col("row").cast(pl.UInt32), pl.col("ord").cast(pl.Int64), "key", "value") for p in parts]
    if not parts:
        return _NO_FIELDS.clone()
    if len(parts) == 1 and generic_only:
        return parts[0]
    # stable sort on the row alone: within a row, parts and fields are already in order
    return pl.concat(parts).sort("row", maintain_order=True)


def _arrow_col(s: pl.Series) -> tuple:
    """(offsets or views, data, validity, offset, kind) of a String Series' Arrow array, for the compiled split:
    kind 2 is polars' own string_view layout (no copy), 1 large_string, 0 string."""
    try:
        a = s.to_arrow(compat_level=pl.CompatLevel.newest())
    except (AttributeError, TypeError):  # a polars without compat levels
        a = s.to_arrow()
    if isinstance(a, pa.ChunkedArray):
        a = a.combine_chunks()
    if a.type == pa.string_view():
        valid, views, *data = a.buffers()
        return (views, tuple(data), valid, a.offset, 2)
    if a.type not in (pa.large_string(), pa.string()):
        a = a.cast(pa.large_string())
    valid, offsets, data = a.buffers()
    if data is None:  # no characters at all
        data = pa.py_buffer(b"")
    return (offsets, data, valid, a.offset, 1 if a.type == pa.large_string() else 0)


def _native_module():
    mod = load("fields")
    # the C patterns are written from these regexes: a changed EVENT_PATTERNS switches the compiled split off
    if mod is None or mod.PATTERN_REGEX != EVENT_PATTERNS:
        return None
    return mod


def _native_split(payload: pl.Series, event: pl.Series | None) -> tuple[pa.MapArray, np.ndarray] | None:
    """The compiled split: (map array with empty maps on the unsure rows, the unsure row numbers), or None
    (not built, switched off, or a column it cannot take)."""
    mod = _native_module()
    n = len(payload)
    if mod is None or n == 0 or (event is not None and len(event) != n):
        return None
    try:
        moff, koff, kdat, voff, vdat, ne, uns = mod.split(
            n, _arrow_col(payload), None if event is None else _arrow_col(event))
    except OverflowError:  # a chunk beyond int32 offsets: the Python rules
        return None
    keys = pa.Array.from_buffers(pa.string(), ne, [None, pa.py_buffer(koff), pa.py_buffer(kdat)])
    vals = pa.Array.from_buffers(pa.string(), ne, [None, pa.py_buffer(voff), pa.py_buffer(vdat)])
    offsets = pa.Array.from_buffers(pa.int32(), n + 1, [None, pa.py_buffer(moff)])
    m = pa.MapArray.from_arrays(offsets, keys, vals, type=MAP_TYPE)
    return m, np.frombuffer(uns, dtype=np.int32)


def long_to_map(long: pl.DataFrame, n: int) -> pa.Array:
    """(row, key, value) frame sorted by row -> arrow map array of length n (empty maps elsewhere)."""
    counts = np.bincount(long.get_column("row").to_numpy(), minlength=n)[:n] if long.height else np.zeros(n, np.int64)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    keys = long.get_column("key").to_arrow()
    vals = long.get_column("value").to_arrow()
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    if isinstance(vals, pa.ChunkedArray):
        vals = vals.combine_chunks()
    return pa.MapArray.from_arrays(pa.array(offsets), keys.cast(pa.string()), vals.cast(pa.string()), type=MAP_TYPE)


def kv_to_map(s: pl.Series) -> pa.Array:
    """polars list[struct{key, value}] -> arrow map<string, string> (null list -> empty map)."""
    arr = s.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    if n == 0:
        return pa.array([], MAP_TYPE)
    lengths = pc.fill_null(pc.list_value_length(arr), 0).cast(pa.int64())
    offsets = pa.concat_arrays([pa.array([0], pa.int64()), pc.cumulative_sum(lengths)]).cast(pa.int32())
    flat = pc.list_flatten(arr)
    keys = pc.struct_field(flat, [0]).cast(pa.string())
    vals = pc.struct_field(flat, [1]).cast(pa.string())
    return pa.MapArray.from_arrays(offsets, keys, vals, type=MAP_TYPE)


def parse_fields(payload: pl.Series, event: pl.Series | None = None) -> pa.Array:
    """Parse a column of payloads into an Arrow ``map<string, string>`` array (empty map where nothing parses)."""
    if not isinstance(payload, pl.Series):
        payload = pl.Series("payload", payload, dtype=pl.String)
    if event is not None and not isinstance(event, pl.Series):
        event = pl.Series("event", event, dtype=pl.String)
    n = len(payload)
    if n == 0:
        return pa.array([], MAP_TYPE)
    payload = payload.cast(pl.String)
    event = None if event is None else event.cast(pl.String)
    nat = _native_split(payload, event)
    if nat is None:
        return long_to_map(_pure_long(payload, event), n)
    m, unsure = nat
    if not len(unsure):
        return m
    return long_to_map(_native_long(payload, event, m, unsure), n)


def normalize_ptr(s: pl.Expr) -> pl.Expr:
    """Canonical pointer text: lower case, no ``0x``, left-padded to 16 hex digits.

    ``0xffff88811c022d70`` and ``ffff88811c022d70`` both give ``ffff88811c022d70``;
    a hashed ``000000001f538f6f`` stays as is. Non-hex text gives NULL.
    """
    t = s.str.strip_chars().str.to_lowercase().str.strip_prefix("0x")
    return pl.when(t.str.contains(r"^[0-9a-f]{1,16}$")).then(t.str.zfill(16)).otherwise(pl.lit(None, pl.String))


__all__ = ["parse_fields", "fields_long", "long_to_map", "kv_to_map", "normalize_ptr", "EVENT_PATTERNS", "MAP_TYPE", "KEY_RE"]
