"""Plain DuckDB tables named like the views (walks, lock_windows, lock_waits, runs), made from frames.

They carry the contract columns of the views (docs/walk-rules.md, the ``@column`` docs of queries/*.sql)
so that ``build_report`` runs without a store: the A/A calibration (:mod:`ksmtrace.report.calibration`)
builds its null tables this way, and so do the report tests' fakes (tests/report_fakes.py).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

WALK_COLS = [
    ("run_id", "VARCHAR"), ("label", "VARCHAR"), ("walk_id", "BIGINT"), ("evidence", "VARCHAR"),
    ("page_type", "VARCHAR"), ("pid", "INTEGER"), ("comm", "VARCHAR"), ("cpu", "INTEGER"),
    ("start_ns", "BIGINT"), ("end_ns", "BIGINT"), ("duration_ns", "BIGINT"), ("complete", "BOOLEAN"),
    ("n_windows", "BIGINT"), ("max_hold_ns", "BIGINT"), ("total_hold_ns", "BIGINT"), ("iterations", "BIGINT"),
    ("max_window_iterations", "BIGINT"), ("rmap_one", "BIGINT"), ("skipped", "BIGINT"), ("skip_addr", "BIGINT"),
    ("skip_mm", "BIGINT"), ("caller", "VARCHAR"),
]
WINDOW_COLS = [
    ("run_id", "VARCHAR"), ("label", "VARCHAR"), ("walk_id", "BIGINT"), ("window_no", "BIGINT"),
    ("start_ns", "BIGINT"), ("end_ns", "BIGINT"), ("hold_ns", "BIGINT"), ("iterations", "BIGINT"),
    ("rmap_one", "BIGINT"), ("skipped", "BIGINT"), ("skip_addr", "BIGINT"), ("skip_mm", "BIGINT"),
]
WAIT_COLS = [
    ("run_id", "VARCHAR"), ("label", "VARCHAR"), ("pid", "INTEGER"), ("comm", "VARCHAR"), ("lock_addr", "VARCHAR"),
    ("flags", "VARCHAR"), ("start_ns", "BIGINT"), ("end_ns", "BIGINT"), ("wait_ns", "BIGINT"),
    ("anon_vma_lock", "BOOLEAN"), ("caller", "VARCHAR"),
]
RUN_COLS = [
    ("run_id", "VARCHAR"), ("label", "VARCHAR"), ("source", "VARCHAR"), ("format", "VARCHAR"),
    ("n_lost_events", "BIGINT"), ("first_ts_ns", "BIGINT"), ("last_ts_ns", "BIGINT"), ("tracer", "VARCHAR"),
    ("n_cpus", "INTEGER"), ("kernel", "VARCHAR"), ("ts_unit", "VARCHAR"), ("ts_resolution_ns", "BIGINT"),
    ("partial", "BOOLEAN"), ("lost_unknown", "BOOLEAN"), ("meta", "VARCHAR"),
]


def _create(con, name: str, cols, df: pd.DataFrame | None, extra_ok: bool = True) -> None:
    df = pd.DataFrame(columns=[c for c, _ in cols]) if df is None else df
    tmp = f"_src_{name}"
    con.register(tmp, df)
    sel = ", ".join(f"CAST({c} AS {t}) AS {c}" if c in df.columns else f"CAST(NULL AS {t}) AS {c}"
                    for c, t in cols)
    extra = [c for c in df.columns if c not in {c for c, _ in cols}] if extra_ok else []
    if extra:
        sel += ", " + ", ".join(extra)
    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT {sel} FROM {tmp}")
    con.unregister(tmp)


def create_tables(con, walks: pd.DataFrame | None = None, windows: pd.DataFrame | None = None,
                  waits: pd.DataFrame | None = None, runs: pd.DataFrame | None = None) -> None:
    """Tables walks, lock_windows, lock_waits, runs with the contract columns (missing ones NULL)."""
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
