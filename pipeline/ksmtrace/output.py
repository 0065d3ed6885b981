"""Rendering result tables as a terminal table, CSV or JSON."""
from __future__ import annotations

import io
import json
import math
import sys

import pandas as pd

FORMATS = ("table", "csv", "json")


def _jsonable(v):
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (pd.Timestamp,)):
        return v.isoformat()
    if hasattr(v, "item"):
        try:
            return v.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "tolist"):
        return _jsonable(v.tolist())
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def render(df: pd.DataFrame, fmt: str = "table", out=None, title: str | None = None) -> None:
    out = out or sys.stdout
    if fmt == "csv":
        buf = io.StringIO()
        df.to_csv(buf, index=False)
        out.write(buf.getvalue())
    elif fmt == "json":
        rows = [{k: _jsonable(v) for k, v in r.items()} for r in df.to_dict(orient="records")]
        out.write(json.dumps(rows, indent=1, default=str) + "\n")
    elif fmt == "table":
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title, show_lines=False, header_style="bold")
        for c in df.columns:
            t.add_column(str(c), overflow="fold",
                         justify="right" if pd.api.types.is_numeric_dtype(df[c]) else "left")
        for r in df.itertuples(index=False):
            t.add_row(*["" if (v is None or (isinstance(v, float) and math.isnan(v))) else str(v) for v in r])
        Console(file=out, width=max(100, Console().width)).print(t)
    else:
        raise ValueError(f"unknown output format {fmt}")
