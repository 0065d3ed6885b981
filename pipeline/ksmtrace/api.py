"""The Python API behind the CLI (usable from a notebook).

Errors are :class:`ksmtrace.errors.KsmtraceError` with a one-line message: an input that cannot be read
raises ``BadInput`` naming it, a store that cannot take a run (read-only, full, not a directory, a
file name too long) raises ``StoreError`` naming the store path and the OS's reason; nothing is stored
by a failed ingest.
"""
from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Callable, Iterable

import duckdb
import pandas as pd
import pyarrow as pa

from . import db
from .errors import BadInput, KsmtraceError, StoreError, os_error_message
from .ingest.run import IngestResult, ingest_one
from .store import Store, partition_names

#: the longest file name (bytes) of Linux file systems; a run directory is named after its label
NAME_MAX = 255


def _store(store: Store | str | os.PathLike | None) -> Store:
    st = store if isinstance(store, Store) else Store(store)
    if st.root.exists() and not st.root.is_dir():
        raise StoreError(f"{st.root}: not a directory (a store is a directory: give --store a directory)")
    return st


def check_label(label: str) -> None:
    """Refuse a label whose partition directory names (label=<label>, run_id=<id>) would be longer than a
    file name may be."""
    n = max(len(name.encode()) for name in partition_names(label))
    if n > NAME_MAX:
        raise KsmtraceError(f"label of {len(label)} characters is too long: its partition directory name would be "
                            f"{n} bytes, over the {NAME_MAX} a file name may have")


def _is_input(name, path: str) -> bool:
    if path == "-" or name is None:
        return False
    with contextlib.suppress(TypeError, ValueError):
        return os.path.abspath(os.fsdecode(name)) == os.path.abspath(path)
    return False


#: OS errors that say the store cannot take a run, whatever file they name
_STORE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENAMETOOLONG, errno.EMLINK, errno.EFBIG}


def _ingest_error(e: OSError, path: str, st: Store) -> KsmtraceError:
    """The OSError of one ingest as a one-line error: the input's own (``BadInput``), or the store's."""
    if _is_input(e.filename, path):
        return BadInput(f"cannot read {os_error_message(e)}")
    in_store = False
    if e.filename is not None:
        with contextlib.suppress(TypeError, ValueError):
            in_store = Path(os.path.abspath(os.fsdecode(e.filename))).is_relative_to(st.root.absolute())
    if in_store or e.errno in _STORE_ERRNOS or e.filename is None:
        # pyarrow's write errors name no file: name the store
        return StoreError(f"{path}: nothing stored: store {os_error_message(e, st.root)}")
    return BadInput(f"{path}: {os_error_message(e)}")


def ingest(paths: Iterable[str], store: Store | str | None = None, label: str = "default",
           fmt: str = "auto", force: bool = False, partial: bool = False,
           on_bytes: Callable[[int], None] | None = None,
           on_start: Callable[[str, int | None], None] | None = None) -> list[IngestResult]:
    """Ingest each path as one run under ``label``. Raises on the first bad input (a ``KsmtraceError``
    naming it; the runs of the paths before it are stored)."""
    st = _store(store)
    check_label(label)
    out = []
    for p in paths:
        try:
            out.append(ingest_one(str(p), st, label, fmt=fmt, force=force, partial=partial, on_bytes=on_bytes,
                                  on_size=(lambda size, p=p: on_start(str(p), size)) if on_start else None))
        except OSError as e:
            raise _ingest_error(e, str(p), st) from e
    if out:
        cov = coverage([r.run_id for r in out], st)
        for r in out:
            r.coverage = cov.get(r.run_id)
    return out


def coverage(run_ids: list[str], store: Store | str | None = None) -> dict[str, dict]:
    """run_id -> its row of the ``run_coverage`` view with its ``cpu_coverage`` rows under "cpus" ({} when the
    views cannot say)."""
    try:
        with connect(store, views="public") as con:
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
    except (duckdb.Error, KsmtraceError):
        return {}


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
            views: str = "all", read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the views of queries/*.sql (runs, events, walks ...); ``views="public"``
    defines only the public views (faster to open).

    ``read_only``: the connection reads the store's Parquet files and nothing else (no other file, no
    extension install or load, settings locked); see :func:`ksmtrace.db.connect`.
    """
    return db.connect(_store(store), threads=threads, views=views, read_only=read_only)


def to_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow -> pandas with Arrow-backed dtypes: integers stay exact (no float NaN for NULL ns values)."""
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def runs(store: Store | str | None = None) -> pd.DataFrame:
    with connect(store, views="public", read_only=True) as con:
        return to_frame(con.sql("SELECT * FROM runs ORDER BY ingested_at, run_id").to_arrow_table())


def sql(query: str, store: Store | str | None = None, read_only: bool = False) -> pd.DataFrame:
    """Run ``query`` over the store's views; exact integers (Arrow dtypes) in the result.

    ``read_only``: refuse anything but queries (no COPY, ATTACH, INSTALL, SET ...) and any file outside
    the store (see :func:`ksmtrace.db.connect`)."""
    with connect(store, views="all" if db.needs_private_views(query) else "public", read_only=read_only) as con:
        if read_only:
            db.check_read_only(con, query)
        return to_frame(con.sql(query).to_arrow_table())


def ab(before, after, *, run_in_vm: Callable | None = None, say: Callable[[str], None] | None = None, **options):
    """``ksmtrace ab``: boot ``before`` and ``after`` kernel images in turn (A B A B), capture the reproducer
    in each boot, ingest each boot as one run and build the report. ``options`` are the fields of
    :class:`ksmtrace.ab.AbOptions` (runs, vmas, method, label_before, label_after, out, ...); ``run_in_vm``
    replaces :func:`ksmtrace.capture.vm.run_in_vm` (tests), ``say`` receives the progress lines.
    Returns :class:`ksmtrace.ab.AbResult`."""
    from . import ab as _ab

    try:
        opts = _ab.AbOptions(before=before, after=after, **options)
    except TypeError as e:
        raise _ab.AbError(str(e)) from None
    return _ab.run(opts, run_in_vm=run_in_vm, say=say)


def export(fmt: str, out: str | os.PathLike, store: Store | str | None = None, label: str | None = None,
           run: str | None = None):
    """``ksmtrace export``: write the walks, lock windows and lock waits of the store (or of one label / run)
    to ``out`` as a Perfetto protobuf trace (``fmt="perfetto"``) or Chrome JSON (``fmt="chrome-json"``) for
    the Perfetto UI. Returns an :class:`ksmtrace.export.ExportResult` with what was written."""
    from .export import export_trace

    with connect(store) as con:
        return export_trace(con, fmt, out, label=label, run=run)
