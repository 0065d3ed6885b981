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
    return out


def ingest_many(paths: Iterable[str], store: Store | str | None = None, label: str = "default",
                fmt: str = "auto", force: bool = False, partial: bool = False, jobs: int = 1,
                executor: str = "local", scheduler: str | None = None, on_outcome=None, client=None):
    """Ingest each path as one run, one task per file (``jobs`` local processes, or a Dask cluster with
    ``executor="dask"`` and ``scheduler`` or ``client``). A failed file is an Outcome with its error; the
    others still land. Returns ksmtrace.batch.Outcome per path, in order."""
    from . import batch

    return batch.ingest_many(paths, _store(store).root, label, fmt=fmt, force=force, partial=partial, jobs=jobs,
                             executor=executor, scheduler=scheduler, on_outcome=on_outcome, client=client)


def rebuild(store: Store | str | None = None, all_runs: bool = False,
            on_run: Callable[[str], None] | None = None) -> dict:
    """Recompute the derived tables of stale runs (all runs with ``all_runs``); migrate a 0.1 store."""
    return _store(store).rebuild(all_runs=all_runs, on_run=on_run)


def connect(store: Store | str | None = None, threads: int | None = None,
            views: str = "all") -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the views of queries/*.sql (runs, events, walks ...); ``views="public"``
    defines only the public views (faster to open)."""
    return db.connect(_store(store), threads=threads, views=views)


def to_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow -> pandas with Arrow-backed dtypes: integers stay exact (no float NaN for NULL ns values)."""
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def runs(store: Store | str | None = None) -> pd.DataFrame:
    with connect(store, views="public") as con:
        return to_frame(con.sql("SELECT * FROM runs ORDER BY ingested_at, run_id").to_arrow_table())


def sql(query: str, store: Store | str | None = None) -> pd.DataFrame:
    """Run ``query`` over the store's views; exact integers (Arrow dtypes) in the result."""
    with connect(store, views="all" if db.needs_private_views(query) else "public") as con:
        return to_frame(con.sql(query).to_arrow_table())
