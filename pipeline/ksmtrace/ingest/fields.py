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

Rust's regex engine has no look-around, so the split is done by replacing every
token boundary with a sentinel character and splitting on it.
"""
from __future__ import annotations

import re

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

MAP_TYPE = pa.map_(pa.string(), pa.string())

_SENT = "\x1f"
KEY_RE = r"[A-Za-z_][A-Za-z0-9_.]*"
#: token boundary: spaces (optionally around sched_switch's "==>") followed by "key="
_BOUNDARY = rf" +(?:==> +)?({KEY_RE}=)"
_TOKEN_OK = rf"^{KEY_RE}="
_PREFIXED = rf"^([^\s=:]+): +{KEY_RE}="

_HEX = r"(?:0x)?[0-9a-fA-F]+"

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

_KV = pl.Struct({"key": pl.String, "value": pl.String})


def _generic(p: pl.Expr) -> pl.Expr:
    """payload -> list[struct{key, value}] by the generic rule."""
    toks = p.str.replace_all(_BOUNDARY, _SENT + "${1}").str.split(_SENT)
    return toks.list.eval(
        pl.element().filter(pl.element().str.contains(_TOKEN_OK))
    ).list.eval(
        pl.struct(
            key=pl.element().str.extract(r"^([^=]*)=", 1),
            value=pl.element().str.replace(r"^[^=]*=", "").str.strip_chars_end(" \t").str.strip_suffix(","),
        )
    )


def _pattern(p: pl.Expr, pattern: str) -> pl.Expr:
    """payload -> list[struct{key, value}] from a named-group pattern (empty list if no match)."""
    names = re.compile(pattern).groupindex
    groups = p.str.extract_groups(pattern)
    items = []
    for name in names:
        v = groups.struct.field(name)
        if name in _FLAG_GROUPS:
            v = pl.when(v.is_null()).then(pl.lit("false")).otherwise(pl.lit("true"))
            v = pl.when(p.str.contains(pattern)).then(v).otherwise(pl.lit(None, pl.String))
        items.append(pl.struct(key=pl.lit(name, pl.String), value=v))
    lst = pl.concat_list(items)
    return lst.list.eval(pl.element().filter(pl.element().struct.field("value").is_not_null()))


def _to_map(s: pl.Series) -> pa.Array:
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


def fields_expr(payload: pl.Expr, event: pl.Expr | None = None) -> pl.Expr:
    """The polars expression behind ``parse_fields`` (list[struct{key, value}])."""
    out = _generic(payload)
    pref = payload.str.extract(_PREFIXED, 1)
    out = pl.when(pref.is_not_null()).then(
        pl.concat_list([pl.concat_list([pl.struct(key=pl.lit("prefix", pl.String), value=pref)]), out])
    ).otherwise(out)
    if event is not None:
        for name, pat in EVENT_PATTERNS.items():
            out = pl.when(event == name).then(_pattern(payload, pat)).otherwise(out)
    return out


def parse_fields(payload: pl.Series, event: pl.Series | None = None) -> pa.Array:
    """Parse a column of payloads into an Arrow ``map<string, string>`` array (empty map where nothing parses)."""
    if not isinstance(payload, pl.Series):
        payload = pl.Series("payload", payload, dtype=pl.String)
    cols = {"p": payload.cast(pl.String)}
    if event is not None:
        if not isinstance(event, pl.Series):
            event = pl.Series("event", event, dtype=pl.String)
        cols["e"] = event.cast(pl.String)
    df = pl.DataFrame(cols)
    if df.height == 0:
        return pa.array([], MAP_TYPE)
    if event is not None:
        # only build the per-event branches for events present (keeps the plan small)
        present = set(df.get_column("e").unique().drop_nulls().to_list()) & set(EVENT_PATTERNS)
        expr = _generic_then(pl.col("p"), pl.col("e"), present)
    else:
        expr = fields_expr(pl.col("p"), None)
    res = df.select(expr.alias("f")).get_column("f")
    return _to_map(res)


def _generic_then(payload: pl.Expr, event: pl.Expr, present: set[str]) -> pl.Expr:
    out = fields_expr(payload, None)
    for name in sorted(present):
        out = pl.when(event == name).then(_pattern(payload, EVENT_PATTERNS[name])).otherwise(out)
    return out


def normalize_ptr(s: pl.Expr) -> pl.Expr:
    """Canonical pointer text: lower case, no ``0x``, left-padded to 16 hex digits.

    ``0xffff88811c022d70`` and ``ffff88811c022d70`` both give ``ffff88811c022d70``;
    a hashed ``000000001f538f6f`` stays as is. Non-hex text gives NULL.
    """
    t = s.str.strip_chars().str.to_lowercase().str.strip_prefix("0x")
    return pl.when(t.str.contains(r"^[0-9a-f]{1,16}$")).then(t.str.zfill(16)).otherwise(pl.lit(None, pl.String))


__all__ = ["parse_fields", "fields_expr", "normalize_ptr", "EVENT_PATTERNS", "MAP_TYPE", "KEY_RE"]
