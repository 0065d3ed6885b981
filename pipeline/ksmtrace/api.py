"""The Python API behind the CLI (usable from a notebook)."""
from __future__ import annotations

import os
from typing import Callable, Iterable

import duckdb
import pandas as pd

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
    return out


def connect(store: Store | str | None = None, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the views of queries/*.sql (runs, events, walks ...)."""
    return db.connect(_store(store), threads=threads)


def runs(store: Store | str | None = None) -> pd.DataFrame:
    with connect(store) as con:
        return con.execute("SELECT * FROM runs ORDER BY ingested_at, run_id").df()


def sql(query: str, store: Store | str | None = None) -> pd.DataFrame:
    with connect(store) as con:
        return con.execute(query).df()
