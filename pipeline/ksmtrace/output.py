"""Rendering result tables (Arrow) as a terminal table, CSV or JSON, keeping integers exact.

Values (and column names) are data, never markup: the table format shows every value through
:func:`ksmtrace.safe_text.rich_text`, so ``[/i]`` or ``[x]`` print as they are and control characters
(ESC, CR ...) are shown escaped (``\\x1b``). JSON keeps values exact (``json.dumps`` escapes control
characters as ``\\u001b``). CSV keeps values exact when it goes to a file or a pipe; when it goes
straight to a terminal, control characters are shown escaped as in the table, so no value can move the
cursor or rewrite a line.
"""
from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
import math
import sys

import pandas as pd
import pyarrow as pa

from .safe_text import rich_text, terminal

FORMATS = ("table", "csv", "json")


def _plain(v, type_: pa.DataType | None = None):
    """A JSON-able Python value: exact ints, maps as objects, times as ISO strings."""
    if v is None:
        return None
    if type_ is not None and pa.types.is_map(type_) and isinstance(v, list):
        return {str(k): _plain(x, type_.item_type) for k, x in v}
    if isinstance(v, decimal.Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        inner = type_.value_type if type_ is not None and pa.types.is_list(type_) else None
        return [_plain(x, inner) for x in v]
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _rows(t: pa.Table) -> list[list]:
    types = [f.type for f in t.schema]
    return [[_plain(v, ty) for v, ty in zip(r, types)] for r in zip(*[c.to_pylist() for c in t.columns])] \
        if t.num_columns else []


def as_arrow(data) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pd.DataFrame):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise TypeError(f"cannot render {type(data)}")


def render(data, fmt: str = "table", out=None, title: str | None = None) -> None:
    out = out or sys.stdout
    t = as_arrow(data)
    names = t.column_names
    rows = _rows(t)
    tty = hasattr(out, "isatty") and out.isatty()
    if fmt == "csv":
        shown = terminal if tty else str
        w = csv.writer(out, lineterminator="\n")
        w.writerow([shown(n) for n in names])
        for r in rows:
            w.writerow([shown(_cell(v)) for v in r])
    elif fmt == "json":
        out.write(json.dumps([dict(zip(names, r)) for r in rows], indent=1) + "\n")
    elif fmt == "table":
        from rich.console import Console
        from rich.table import Table

        tab = Table(title=rich_text(title) if title is not None else None, header_style="bold")
        for f in t.schema:
            numeric = pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type)
            tab.add_column(rich_text(f.name), overflow="fold", justify="right" if numeric else "left")
        for r in rows:
            tab.add_row(*[rich_text(_cell(v)) for v in r])
        Console(file=out, width=None if tty else 220, soft_wrap=False).print(tab)
        if not rows:
            out.write("(no rows)\n")
    else:
        raise ValueError(f"unknown output format {fmt}")
