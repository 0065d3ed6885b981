"""Many traces at once: one task per file (ingest, then its derived tables), serially, on N local
processes, or on a Dask distributed cluster that shares the store's file system.

Every executor runs the same function, ``ingest_task``; a failed file is an outcome with its error, so
the other files still land. The store lock (flock(2) on STORE/.lock) serialises only the publication.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterable

from .errors import KsmtraceError, MissingTool

EXECUTORS = ("local", "dask")


@dataclass
class Outcome:
    """What became of one input file: its IngestResult, or the one-line reason it failed."""
    path: str
    result: object | None = None   # ksmtrace.ingest.run.IngestResult
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def ingest_task(path: str, store_root: str, label: str, fmt: str = "auto", force: bool = False,
                partial: bool = False) -> Outcome:
    """Ingest one file into the store at ``store_root`` (picklable: runs in a worker process or a Dask worker)."""
    from .ingest.run import ingest_one
    from .store import Store

    try:
        return Outcome(path, result=ingest_one(path, Store(store_root), label, fmt=fmt, force=force,
                                               partial=partial))
    except KsmtraceError as e:
        return Outcome(path, error=str(e))
    except OSError as e:
        return Outcome(path, error=f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
    except Exception as e:  # a bug: still one line per file, and the other files go on
        return Outcome(path, error=f"internal error: {type(e).__name__}: {e}")


def _abs(p: str) -> str:
    return p if p == "-" else os.path.abspath(p)


def check_options(paths: list[str], executor: str, scheduler: str | None) -> None:
    """The one check of ingest's executor options (and of '-', which can only be ingested on its own)."""
    if executor not in EXECUTORS:
        raise KsmtraceError(f"--executor {executor!r} is not one of {', '.join(EXECUTORS)}")
    if scheduler and executor != "dask":
        raise KsmtraceError("--scheduler needs --executor dask")
    if "-" in paths and len(paths) > 1:
        raise KsmtraceError("'-' (stdin) can only be ingested on its own")


def ingest_many(paths: Iterable[str], store_root: str | os.PathLike, label: str, fmt: str = "auto",
                force: bool = False, partial: bool = False, jobs: int = 1, executor: str = "local",
                scheduler: str | None = None, on_outcome: Callable[[Outcome], None] | None = None,
                client=None) -> list[Outcome]:
    """Ingest every path, one task per file; returns the outcomes in the order of ``paths``.

    ``executor="local"`` with ``jobs > 1`` uses a process pool; ``executor="dask"`` submits the tasks to the
    Dask scheduler at ``scheduler`` (or to ``client``, a distributed.Client). Paths and the store are made
    absolute, so workers with another working directory find them."""
    paths = [str(p) for p in paths]
    root = os.path.abspath(store_root)
    args = [(_abs(p), root, label, fmt, force, partial) for p in paths]
    check_options(paths, executor, scheduler)
    if jobs < 1:
        raise KsmtraceError(f"--jobs {jobs}: give at least 1")
    if executor == "dask":
        outs = _dask(args, scheduler, client, on_outcome)
    elif jobs == 1 or len(paths) == 1:
        outs = []
        for a in args:
            o = ingest_task(*a)
            outs.append(o)
            if on_outcome:
                on_outcome(o)
    else:
        outs = _pool(args, jobs, on_outcome)
    # report the paths as the user gave them
    for o, p in zip(outs, paths):
        o.path = p
    return outs


def _pool(args: list[tuple], jobs: int, on_outcome) -> list[Outcome]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: a forked child would inherit DuckDB and polars thread pools in an unknown state
    with ProcessPoolExecutor(max_workers=min(jobs, len(args)), mp_context=multiprocessing.get_context("spawn")) as ex:
        futs = {ex.submit(ingest_task, *a): i for i, a in enumerate(args)}
        outs: list[Outcome | None] = [None] * len(args)
        try:
            for f in as_completed(futs):
                i = futs[f]
                try:
                    o = f.result()
                except Exception as e:  # the worker died (killed, out of memory)
                    o = Outcome(args[i][0], error=f"worker failed: {type(e).__name__}: {e}")
                outs[i] = o
                if on_outcome:
                    on_outcome(o)
        except BaseException:
            ex.shutdown(wait=True, cancel_futures=True)
            raise
    return outs  # type: ignore[return-value]


def _dask(args: list[tuple], scheduler: str | None, client, on_outcome) -> list[Outcome]:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise MissingTool("--executor dask needs the packages dask and distributed: "
                          "pip install 'ksmtrace[dask]'") from None
    own = client is None
    if own:
        if not scheduler:
            raise KsmtraceError("--executor dask needs --scheduler ADDR (e.g. tcp://10.0.0.1:8786)")
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as e:
            raise KsmtraceError(f"--scheduler {scheduler}: cannot connect to the Dask scheduler: {e}") from None
    try:
        futs = [client.submit(ingest_task, *a, pure=False, key=f"ksmtrace-ingest-{i}-{os.urandom(4).hex()}")
                for i, a in enumerate(args)]
        index = {f.key: i for i, f in enumerate(futs)}
        outs: list[Outcome | None] = [None] * len(args)
        for f in as_completed(futs):
            i = index[f.key]
            try:
                o = f.result()
            except Exception as e:  # the worker died or could not run the task
                o = Outcome(args[i][0], error=f"Dask task failed: {type(e).__name__}: {e}")
            outs[i] = o
            if on_outcome:
                on_outcome(o)
        return outs  # type: ignore[return-value]
    finally:
        if own:
            client.close()
