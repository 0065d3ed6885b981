"""ksmtrace ingest / runs / sql."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .. import api, db
from ..errors import KsmtraceError, os_error_message
from ..ingest import format_names
from ..output import render
from ..safe_text import terminal
from .common import FormatOpt, StoreOpt, check_format, store_of

PROGRESS_MIN_BYTES = 32 << 20


@contextlib.contextmanager
def _progress(enabled: bool):
    """Yields (on_start, on_bytes) callbacks driving a rich progress bar on stderr."""
    if not enabled:
        yield None, None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    prog = Progress(TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), transient=True)
    state = {"task": None}

    def on_start(name, size):
        if state["task"] is not None:
            prog.remove_task(state["task"])
        state["task"] = prog.add_task(f"ingest {terminal(Path(name).name)}", total=size)

    def on_bytes(n):
        if state["task"] is not None:
            prog.advance(state["task"], n)

    with prog:
        yield on_start, on_bytes


def ingest(
    paths: List[str] = typer.Argument(..., help="Trace files; '-' reads stdin; .gz .xz .zst .bz2 are decompressed."),
    store: Optional[Path] = StoreOpt,
    label: str = typer.Option("default", "--label", "-l", help="Label of these runs, e.g. before or after."),
    fmt: str = typer.Option("auto", "--format", help="Input format (auto detects it). Known: "
                            + ", ".join(format_names()) + "."),
    force: bool = typer.Option(False, "--force", help="Replace a run of the same file and label."),
    partial: bool = typer.Option(False, "--partial", help="Keep what a truncated compressed file holds; the run is marked partial."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bar [default: on for large inputs on a terminal]."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Ingest this many files at once (one process per file, each also computing the file's walks)."),
    executor: str = typer.Option("local", "--executor", help="local (this machine, --jobs processes) or dask (the tasks go to the Dask cluster at --scheduler; the store must be on a file system the workers share)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler address for --executor dask, e.g. tcp://10.0.0.1:8786."),
) -> None:
    """Ingest trace files into the store, one run per file.

    Prints a summary per run: events, malformed lines (with the first line numbers) and lost events. Each run's walks, lock windows and lock waits are computed once, here, and stored beside its events. A file that cannot be ingested is named on stderr and the next file is tried; the command exits 2 if any failed, naming what landed (a store that cannot take runs, e.g. read-only or full, stops the rest). --jobs N ingests N files at a time; --executor dask sends one task per file to a Dask cluster.
    """  # noqa: E501 (one line per paragraph: typer keeps the line breaks)
    from .commands import say

    st = store_of(store)
    api.check_label(label)
    if executor not in ("local", "dask"):
        raise KsmtraceError(f"--executor {executor!r} is not one of local, dask")
    if scheduler and executor != "dask":
        raise KsmtraceError("--scheduler needs --executor dask")
    if "-" in paths and len(paths) > 1:
        raise KsmtraceError("'-' (stdin) can only be ingested on its own")
    stored: list[str] = []
    failed: list[str] = []
    skipped: list[str] = []
    if executor == "local" and (jobs == 1 or len(paths) == 1):
        show = progress if progress is not None else (sys.stderr.isatty() and any(_large(p) for p in paths))
        with _progress(bool(show)) as (on_start, on_bytes):
            for i, p in enumerate(paths):
                try:
                    res = api.ingest([p], st, label=label, fmt=fmt, force=force, partial=partial,
                                     on_bytes=on_bytes, on_start=on_start)[0]
                except (KsmtraceError, OSError) as e:
                    failed.append(p)
                    if len(paths) == 1:
                        raise
                    say(f"error: {e if isinstance(e, KsmtraceError) else os_error_message(e)}")
                    if isinstance(e, KsmtraceError) and not e.per_input:
                        skipped = list(paths[i + 1:])
                        break
                    continue
                stored.append(p)
                print(terminal(("replaced " if res.replaced else "") + res.summary()), flush=True)
    else:
        def report(o) -> None:
            if o.ok:
                stored.append(o.path)
                print(terminal(("replaced " if o.result.replaced else "") + o.result.summary()), flush=True)
            else:
                failed.append(o.path)
                say(f"error: {o.error if o.error.startswith(o.path) else f'{o.path}: {o.error}'}")

        api.ingest_many(paths, st, label=label, fmt=fmt, force=force, partial=partial, jobs=jobs,
                               executor=executor, scheduler=scheduler, on_outcome=report)
        order = {p: i for i, p in enumerate(paths)}
        stored.sort(key=order.get)
        failed.sort(key=order.get)
    if failed:
        msg = f"{len(failed)} of {len(paths)} files not ingested ({', '.join(failed)})"
        if skipped:
            msg += f"; not tried: {', '.join(skipped)}"
        msg += f"; stored: {', '.join(stored)}" if stored else "; nothing stored"
        raise KsmtraceError(msg)


def _large(p: str) -> bool:
    if p == "-":
        return True
    try:
        return os.stat(p).st_size > PROGRESS_MIN_BYTES
    except OSError:
        return False


def rebuild(
    store: Optional[Path] = StoreOpt,
    all_runs: bool = typer.Option(False, "--all", help="Recompute every run, not only the stale ones."),
) -> None:
    """Recompute the stored walks, lock windows and lock waits of runs made by other SQL.

    Needed after queries/*.sql change (ksmtrace names it when a stamp differs); also migrates a store of the 0.1 layout (runs/<run_id>/) to the partitioned one.
    """  # noqa: E501
    st = store_of(store)
    out = api.rebuild(st, all_runs=all_runs, on_run=lambda rid: print(f"rebuilding {rid}", file=sys.stderr))
    msg = f"{out['rebuilt']} runs rebuilt, {out['up_to_date']} up to date"
    if out["migrated"]:
        msg += f", {out['migrated']} migrated from the 0.1 layout"
    print(msg)


def runs(store: Optional[Path] = StoreOpt, fmt: str = FormatOpt) -> None:
    """List the runs in the store."""
    check_format(fmt)
    df = api.runs(store_of(store))
    if fmt == "table":
        df = df.assign(span_s=(df["last_ts_ns"] - df["first_ts_ns"]) / 1e9)[
            ["run_id", "label", "format", "n_events", "n_malformed", "n_lost_events", "span_s", "tracer", "n_cpus",
             "kernel", "partial", "source"]]
    render(df, fmt)


def sql(
    query: Optional[str] = typer.Argument(None, help="SQL over the views runs, events, walks, lock_windows, lock_waits."),
    store: Optional[Path] = StoreOpt,
    fmt: str = FormatOpt,
    print_views: bool = typer.Option(False, "--print-views", help="Print the SQL defining the views, for the duckdb CLI."),
    read_only: bool = typer.Option(False, "--read-only", "--safe", help="Run queries only, reading the store and nothing else: no COPY/ATTACH/INSTALL/SET, no other file, no extension (what 'ksmtrace report' uses)."),
) -> None:
    """Run a DuckDB query over the store's views (or print their definitions).

    The query runs with your rights: without --read-only DuckDB SQL can read and write any file you can (read_csv('/etc/passwd'), COPY ... TO 'file'), ATTACH databases and INSTALL/LOAD extensions from the network. Use --read-only for SQL you did not write.
    """  # noqa: E501 (one line per paragraph: typer keeps the line breaks)
    check_format(fmt)
    st = store_of(store)
    if print_views:
        sys.stdout.write(db.views_sql(st))
        return
    if not query:
        raise typer.BadParameter("give a QUERY or --print-views")
    import duckdb

    with api.connect(st, views="all" if db.needs_private_views(query) else "public", read_only=read_only) as con:
        try:
            if read_only:
                db.check_read_only(con, query)
            rel = con.sql(query)
            table = rel.to_arrow_table() if rel is not None else None
        except duckdb.Error as e:
            raise KsmtraceError("SQL: " + " ".join(str(e).split())) from None
    if table is not None:
        render(table, fmt)


def register(app: typer.Typer) -> None:
    app.command()(ingest)
    app.command()(runs)
    app.command()(sql)
    app.command()(rebuild)
