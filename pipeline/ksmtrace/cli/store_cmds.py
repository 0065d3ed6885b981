"""ksmtrace ingest / runs / sql."""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .. import api, batch, db
from ..errors import KsmtraceError
from ..ingest import format_names
from ..output import render
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

    prog = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), transient=True)
    state = {"task": None}

    def on_start(name, size):
        if state["task"] is not None:
            prog.remove_task(state["task"])
        state["task"] = prog.add_task(f"ingest {Path(name).name}", total=size)

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

    Prints a summary per run: events, malformed lines (with the first line numbers) and lost events. Each run's walks, lock windows and lock waits are computed once, here, and stored beside its events. With several files, a file that fails is named on stderr and the others still land (exit code 2).
    """  # noqa: E501 (one line per paragraph: typer keeps the line breaks)
    st = store_of(store)
    for p in paths:  # refuse early, before anything is written
        if p != "-" and not Path(p).exists():
            raise KsmtraceError(f"{p}: no such file")
    if executor not in ("local", "dask"):
        raise KsmtraceError(f"--executor {executor!r} is not one of local, dask")
    if scheduler and executor != "dask":
        raise KsmtraceError("--scheduler needs --executor dask")
    if len(paths) == 1 and executor == "local":  # one file: its error is the command's error
        show = progress if progress is not None else (sys.stderr.isatty() and (
            paths[0] == "-" or Path(paths[0]).stat().st_size > PROGRESS_MIN_BYTES))
        with _progress(bool(show)) as (on_start, on_bytes):
            res = api.ingest(paths, st, label=label, fmt=fmt, force=force, partial=partial,
                             on_bytes=on_bytes, on_start=on_start)[0]
        print(("replaced " if res.replaced else "") + res.summary())
        return
    if "-" in paths:
        raise KsmtraceError("'-' (stdin) can only be ingested on its own")

    def report(o) -> None:
        if o.ok:
            print(("replaced " if o.result.replaced else "") + o.result.summary(), flush=True)
        else:
            msg = o.error if o.error.startswith(o.path) else f"{o.path}: {o.error}"
            print(f"ksmtrace: error: {msg}", file=sys.stderr, flush=True)

    outs = api.ingest_many(paths, st, label=label, fmt=fmt, force=force, partial=partial, jobs=jobs,
                           executor=executor, scheduler=scheduler, on_outcome=report)
    failed = batch.failed_summary(outs)
    if failed:
        raise KsmtraceError(failed)


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
) -> None:
    """Run a DuckDB query over the store's views (or print their definitions)."""
    check_format(fmt)
    st = store_of(store)
    if print_views:
        sys.stdout.write(db.views_sql(st))
        return
    if not query:
        raise typer.BadParameter("give a QUERY or --print-views")
    import duckdb

    with api.connect(st, views="all" if db.needs_private_views(query) else "public") as con:
        try:
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
