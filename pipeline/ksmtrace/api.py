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


def check_ingest(paths: list[str], label: str, executor: str = "local", scheduler: str | None = None) -> None:
    """The checks of ``ksmtrace ingest``'s options that need no file: the label, the executor options."""
    from . import batch

    check_label(label)
    batch.check_options([str(p) for p in paths], executor, scheduler)


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


def sql_table(query: str | None, store: Store | str | None = None, read_only: bool = False) -> pa.Table | None:
    """Run ``query`` over the store's views; the result as an Arrow table (None for a statement without
    one). A DuckDB error raises one ``KsmtraceError`` line (``SQL: ...``).

    ``read_only``: refuse anything but queries (no COPY, ATTACH, INSTALL, SET ...) and any file outside
    the store (see :func:`ksmtrace.db.connect`)."""
    if not query:
        raise KsmtraceError("give a QUERY or --print-views")
    with connect(store, views="all" if db.needs_private_views(query) else "public", read_only=read_only) as con:
        try:
            if read_only:
                db.check_read_only(con, query)
            rel = con.sql(query)
            return rel.to_arrow_table() if rel is not None else None
        except duckdb.Error as e:
            raise KsmtraceError("SQL: " + " ".join(str(e).split())) from None


def sql(query: str | None = None, store: Store | str | None = None, read_only: bool = False,
        print_views: bool = False) -> pd.DataFrame | str | None:
    """``ksmtrace sql``: run ``query`` over the store's views; exact integers (Arrow dtypes) in the result
    (see :func:`sql_table`). ``print_views``: return the SQL defining the views instead (for the duckdb
    CLI)."""
    if print_views:
        return db.views_sql(_store(store))
    table = sql_table(query, store, read_only=read_only)
    return to_frame(table) if table is not None else None


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


def report(before: str | None = None, after: str | None = None, aa: str | None = None,
           store: Store | str | None = None, page_type: str = "ksm", fmt: str = "text",
           out: str | os.PathLike | None = None, benchstat: str | os.PathLike | None = None,
           plots: str | os.PathLike | None = None, stdout=None) -> list[Path]:
    """``ksmtrace report``: compare the walks of two labels (or, with ``aa=LABEL``, the two halves of one)
    and write the report in ``fmt`` to ``out`` (``stdout`` when None), figures into ``plots`` and run-level
    metrics in Go benchmark format to ``benchstat``. Returns the files written. The arguments are checked
    (:func:`ksmtrace.report.check_arguments`) before the store is read; a failed write raises one
    ``KsmtraceError`` naming the files asked for and the OS's reason."""
    from .report import build_report, check_arguments, write

    check_arguments(before, after, aa, page_type, fmt)
    # the report reads the public views only; the store's content is not ours: a read-only connection
    with connect(store, views="public", read_only=True) as con:
        rep = build_report(con, before, after, page_type, aa=aa)
    try:
        return write(rep, fmt, out=out, plots_dir=plots, benchstat=benchstat, stdout=stdout)
    except OSError as e:  # disk full, read-only, name too long ...: name the file (or the files) asked for
        asked = ", ".join(str(p) for p in (out, benchstat, plots) if p is not None) or "stdout"
        raise KsmtraceError(f"report not written: {os_error_message(e, asked)}") from None


# The commands whose library lives elsewhere: the same parameters as the command, one function each.

def synth(vmas: int = 64, forks: int = 0, pages: int = 4, items: int = 16, child_items: int = 0, walks: int = 40,
          caller: str = "migrate", patched: bool = False, evidence: str = "function-graph", fmt: str | None = None,
          retval: bool = True, retval_style: str = "6.13", retaddr: bool = False, iterators: bool = True,
          ns: bool = True, truncate: str | None = None, loss: bool = False, counter_style: str = "short",
          tp_counters: bool = False, noise: bool = True, tasks: int = 2, seed: int = 0,
          out: str | os.PathLike | None = None, drop: str | None = None, cpu_stats: bool = False):
    """``ksmtrace synth``: with ``out``, generate a ground-truth trace (written to ``out``, the truth to
    ``OUT.truth/``) and return the :class:`ksmtrace.synth.SynthResult` and the path written as a pair;
    without ``out``, return the cost summary of the layout as text. Bad options raise ``KsmtraceError``."""
    from .output import synth_cost_table
    from .synth import CALLER_CHOICES, Layout, generate

    try:
        layout = Layout(vmas=vmas, forks=forks, pages=pages, items=items, child_items=child_items)
    except ValueError as e:
        raise KsmtraceError(str(e)) from None
    if caller not in CALLER_CHOICES:
        raise KsmtraceError(f"unknown --caller {caller!r}; known: {', '.join(CALLER_CHOICES)}")
    if out is None:
        one = {"migrate": "remove_migration_ptes", "mixed": "remove_migration_ptes"}.get(caller, caller)
        return synth_cost_table(layout, one)
    if retval_style not in ("6.13", "6.5"):
        raise KsmtraceError("--retval-style must be 6.13 or 6.5")
    if truncate not in (None, "start", "end", "both"):
        raise KsmtraceError("--truncate must be start, end or both")
    if counter_style not in ("short", "long", "bpftrace"):
        raise KsmtraceError("--counter-style must be short, long or bpftrace")
    drop_t = None
    if drop is not None:
        import re

        m = re.fullmatch(r"\s*(\d+)\s*:\s*([0-9.]+)\s*-\s*([0-9.]+)\s*", drop)
        if not m:
            raise KsmtraceError(f"--drop must be CPU:A-B with fractions 0 <= A < B <= 1 (got {drop!r})")
        drop_t = (int(m.group(1)), float(m.group(2)), float(m.group(3)))
    elif cpu_stats:
        raise KsmtraceError("--cpu-stats needs --drop")
    try:
        res = generate(layout, walks=walks, caller=caller, patched=patched, evidence=evidence, fmt=fmt,
                       retval=retval_style if retval else None, iterators=iterators, seed=seed, ns=ns, tasks=tasks,
                       truncate=truncate, loss=loss, noise=noise, counter_style=counter_style,
                       tracepoint_counters=tp_counters, retaddr=retaddr, drop=drop_t, cpu_stats=cpu_stats)
    except ValueError as e:
        raise KsmtraceError(str(e)) from None
    try:
        return res, res.write(out)
    except OSError as e:
        raise KsmtraceError(f"{out}: {e.strerror or e}") from None


def repro(vmas: int, pages: int | None = None, forks: int = 0, trigger: str = "compact", hold: float = 0.0,
          compact_passes: int = 1, attempts: int = 1, pages_to_scan: int = 5000, sleep_ms: int = 10,
          merge_timeout: float = 180.0, move_ksm_pages: int | None = None, addr: int | str | None = None):
    """``ksmtrace repro``: build the KSM split-VMA layout, merge it and trigger walks (needs root); see
    :func:`ksmtrace.capture.repro.run`. ``addr`` is an int or text (decimal or 0x...)."""
    from .capture import repro as r
    from .capture.env import CaptureError

    if isinstance(addr, str):
        try:
            addr = int(addr, 0)
        except ValueError:
            raise CaptureError(f"--addr {addr!r} is not an integer (decimal or 0x...)") from None
    opts = r.ReproOptions(vmas=vmas, pages=pages, forks=forks, trigger=trigger, hold=hold,
                          compact_passes=compact_passes, attempts=attempts, pages_to_scan=pages_to_scan,
                          sleep_millisecs=sleep_ms, merge_timeout=merge_timeout, move_ksm_pages=move_ksm_pages,
                          addr=addr)
    return r.run(opts)


def doctor(fmt: str = "text") -> str:
    """``ksmtrace doctor``: what this kernel can record, rendered as ``fmt`` (text or json)."""
    from .capture import doctor as d
    from .capture.env import CaptureError

    if fmt not in ("text", "json"):
        raise CaptureError(f"--format {fmt!r} is not one of text, json")
    return d.render(d.probe(), fmt)


def capture(out: str | os.PathLike | None = None, method: str = "auto", duration: float | None = None,
            print_only: bool = False, keep_data: bool = True, filter_addr: str | None = None,
            buffer_kb: int | None = None, command: list[str] | None = None):
    """``ksmtrace capture``: record a trace while ``command`` runs (needs root); with ``print_only`` return
    the recipes as text instead. See :mod:`ksmtrace.capture.capture`."""
    from .capture import capture as c

    opts = c.CaptureOptions(out=out, method=method, duration=duration, command=list(command or []),
                            keep_data=keep_data, filter_addr=c.parse_range(filter_addr), buffer_kb=buffer_kb)
    if print_only:
        return c.print_recipe(opts)
    return c.run(opts)


def vm(kernel: str = "auto", memory: str = "3G", cpus: int = 2, numa_nodes: int = 2, kvm: str = "auto",
       timeout: float = 900.0, quiet: bool = False, command: list[str] | None = None,
       on_output: Callable[[str], None] | None = None, cwd: str | os.PathLike | None = None):
    """``ksmtrace vm``: run ``command`` as root in a QEMU guest (see :func:`ksmtrace.capture.vm.run_in_vm`);
    the guest's lines go to ``on_output`` unless ``quiet``."""
    from .capture import vm as v

    return v.run_in_vm(list(command or []), kernel=kernel, memory=memory, cpus=cpus, numa_nodes=numa_nodes,
                       kvm=kvm, timeout=timeout, cwd=Path(cwd) if cwd is not None else Path.cwd(),
                       on_output=None if quiet else on_output)


def demo(out: str | os.PathLike = "ksmtrace-demo", store: Store | str | None = None) -> None:
    """``ksmtrace demo``: ingest the bundled sample pairs, print their reports, write HTML and LKML reports
    into ``out`` (see :mod:`ksmtrace.cli.demo`)."""
    from .demo import run_demo

    run_demo(Path(out), Path(store) if store is not None else None)
