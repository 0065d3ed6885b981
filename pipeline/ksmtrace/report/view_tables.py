"""Plain DuckDB tables named like the views (walks, lock_windows, lock_waits, runs), made from frames.

They carry every column the views document (the ``@column`` lines of queries/*.sql), with its type, so
that ``build_report`` runs without a store: the A/A calibration (:mod:`ksmtrace.report.calibration`) builds
its null tables this way, and so do the report tests' fakes (tests/report_fakes.py).
"""
from __future__ import annotations

import pandas as pd

from ..db import documented_columns

#: (name, type) of each table: the columns the view's ``@column`` lines document, in their order
WALK_COLS = documented_columns("walks")
WINDOW_COLS = documented_columns("lock_windows")
WAIT_COLS = documented_columns("lock_waits")
RUN_COLS = documented_columns("runs")


def _create(con, name: str, cols: list[tuple[str, str]], df: pd.DataFrame | None) -> None:
    """Table ``name`` with ``cols`` (those ``df`` lacks are NULL) and then ``df``'s other columns; empty
    without ``df``."""
    if df is None:
        sel = ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in cols)
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT {sel} WHERE false")
        return
    tmp = f"_src_{name}"
    con.register(tmp, df)
    known = {c for c, _ in cols}
    sel = ", ".join(f"CAST({c} AS {t}) AS {c}" if c in df.columns else f"CAST(NULL AS {t}) AS {c}"
                    for c, t in cols)
    sel += "".join(f", {c}" for c in df.columns if c not in known)
    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT {sel} FROM {tmp}")
    con.unregister(tmp)


def create_tables(con, walks: pd.DataFrame | None = None, windows: pd.DataFrame | None = None,
                  waits: pd.DataFrame | None = None, runs: pd.DataFrame | None = None) -> None:
    """Tables walks, lock_windows, lock_waits, runs with the views' documented columns (missing ones NULL)."""
    _create(con, "walks", WALK_COLS, walks)
    _create(con, "lock_windows", WINDOW_COLS, windows)
    _create(con, "lock_waits", WAIT_COLS, waits)
    _create(con, "runs", RUN_COLS, runs)


def combine(*parts: dict) -> dict[str, pd.DataFrame]:
    out = {}
    for key in ("walks", "windows", "runs", "waits"):
        dfs = [p[key] for p in parts if p.get(key) is not None]
        out[key] = pd.concat(dfs, ignore_index=True) if dfs else None
    return out
