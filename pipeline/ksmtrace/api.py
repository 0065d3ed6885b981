"""The Python API behind the CLI (usable from a notebook)."""
from __future__ import annotations

import os
from typing import Callable, Iterable

import duckdb
import pandas as pd
import pyarrow as pa

from . import db
from .ingest.run import IngestResult, ingest_one
from .errors import StoreError
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
    if out:
        cov = coverage([r.run_id for r in out], st)
        for r in out:
            r.coverage = cov.get(r.run_id)
    return out


def coverage(run_ids: list[str], store: Store | str | None = None) -> dict[str, dict]:
    """run_id -> its row of the ``run_coverage`` view with its ``cpu_coverage`` rows under "cpus" ({} when the
    views cannot say)."""
    try:
        with connect(store) as con:
            cur = con.execute("SELECT * FROM run_coverage WHERE list_contains(?, run_id)", [run_ids])
            names = [d[0] for d in cur.description]
            out = {row[0]: dict(zip(names, row)) for row in cur.fetchall()}
            cur = con.execute("SELECT * FROM cpu_coverage WHERE list_contains(?, run_id) ORDER BY cpu", [run_ids])
            names = [d[0] for d in cur.description]
            for r in cur.fetchall():
                d = dict(zip(names, r))
                if d["run_id"] in out:
                    out[d["run_id"]].setdefault("cpus", []).append(d)
            return out
    except (duckdb.Error, StoreError):
        return {}


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
