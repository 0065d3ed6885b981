"""The Python API behind the CLI (usable from a notebook)."""
from __future__ import annotations

import os
from typing import Callable, Iterable

import duckdb
import pandas as pd
import pyarrow as pa

from . import db
from .ingest.run import IngestResult, ingest_one
from .store import Store


def _store(store: Store | str | os.PathLike | None) -> Store:
    return store if isinstance(store, Store) else Store(store)


def ingest(paths: Iterable[str], store: Store | str | None = None, label: str = "default",
           fmt: str = "auto", force: bool = False, partial: bool = False,
           on_bytes: Callable[[int], None] | None = None,
           on_start: Callable[[str, int | None], None] | None = None) -> list[IngestResult]:
    """Ingest each path as one run under ``label``. Raises on the first bad input."""
    st = _store(store)
    out = []
    for p in paths:
        out.append(ingest_one(str(p), st, label, fmt=fmt, force=force, partial=partial, on_bytes=on_bytes,
                              on_size=(lambda size, p=p: on_start(str(p), size)) if on_start else None))
        out[-1].coverage = coverage(out[-1].run_id, st)
    return out


def coverage(run_id: str, store: Store | str | None = None) -> dict | None:
    """The run's row of the ``run_coverage`` view with its ``cpu_coverage`` rows under "cpus" (None when the
    views cannot say)."""
    try:
        with connect(store) as con:
            cur = con.execute("SELECT * FROM run_coverage WHERE run_id = ?", [run_id])
            names = [d[0] for d in cur.description]
            row = cur.fetchone()
            if row is None:
                return None
            c = dict(zip(names, row))
            cur = con.execute("SELECT * FROM cpu_coverage WHERE run_id = ? ORDER BY cpu", [run_id])
            names = [d[0] for d in cur.description]
            c["cpus"] = [dict(zip(names, r)) for r in cur.fetchall()]
            return c
    except duckdb.Error:
        return None


def connect(store: Store | str | None = None, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the views of queries/*.sql (runs, events, walks ...)."""
    return db.connect(_store(store), threads=threads)


def to_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow -> pandas with Arrow-backed dtypes: integers stay exact (no float NaN for NULL ns values)."""
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def runs(store: Store | str | None = None) -> pd.DataFrame:
    with connect(store) as con:
        return to_frame(con.sql("SELECT * FROM runs ORDER BY ingested_at, run_id").to_arrow_table())


def sql(query: str, store: Store | str | None = None) -> pd.DataFrame:
    """Run ``query`` over the store's views; exact integers (Arrow dtypes) in the result."""
    with connect(store) as con:
        return to_frame(con.sql(query).to_arrow_table())
