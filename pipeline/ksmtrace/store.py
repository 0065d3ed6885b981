"""The store: a hive-partitioned directory of Parquet files that any Parquet engine can read.

Layout (``<enc>`` is the label percent-encoded, which DuckDB, Spark and pyarrow decode back)::

    STORE/
      ksmtrace-store.json                        layout version and the stamp of the empty files
      runs/label=<enc>/run_id=<id>/run.parquet   one row, RUNS_SCHEMA (the catalogue entry)
      runs/label=<enc>/run_id=<id>/manifest.json the run's files, row counts and derived-table stamp
      events/label=<enc>/run_id=<id>/events-NNNNN.parquet   EVENTS_SCHEMA rows of the run
      walks/label=<enc>/run_id=<id>/part-0.parquet          derived tables, computed once at ingest by
      lock_windows/...  lock_waits/...                      the views of queries/ (see db.compute_derived)
      <table>/label=_empty/run_id=_empty/        zero-row files, so that globs match in an empty store
      .lock                                      flock(2) taken while the catalogue changes
      .tmp/<uuid>/                               runs being written (invisible to readers)

A run is written completely under ``.tmp/<uuid>`` as a store of its own (same layout), its derived tables
are computed there, and it is then published under the lock: the partitions of the other tables are renamed
in first, the ``runs`` partition last. That one ``rename(2)`` of the runs partition is the commit point: the
views read only rows of runs present in ``runs``, so a crash or kill -9 at any moment leaves either the whole
run visible or none of it; leftovers of a dead writer are removed by the next writer (``clean_stale``).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import BadInput, DuplicateRun, StoreError
from .schema import EVENTS_SCHEMA, RUNS_SCHEMA

DEFAULT_STORE = "ksmtrace-data"
LAYOUT = 2
MARKER = "ksmtrace-store.json"
EMPTY = "_empty"
MANIFEST = "manifest.json"
OWNER = ".owner.json"
#: the tables every run has; the derived ones are listed in db.DERIVED
BASE_TABLES = ("events", "runs")
#: a staging dir of another host (whose pid we cannot check) is stale after this long
STALE_FOREIGN_S = 24 * 3600
#: longest percent-encoded label (it is a directory name; most file systems allow 255 bytes)
NAME_MAX = 255


def default_store_path() -> Path:
    return Path(os.environ.get("KSMTRACE_STORE") or DEFAULT_STORE)


def slug(label: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.]+", "-", label).strip("-.")
    return s or "run"


def make_run_id(label: str) -> str:
    return f"{slug(label)[:40]}-{uuid.uuid4().hex[:10]}"


def encode_label(label: str) -> str:
    """The label as a hive partition value: percent-encoded (readers decode it back to the label)."""
    if not label:
        raise BadInput("the label must not be empty")
    enc = urllib.parse.quote(label, safe="")
    if len(f"label={enc}") > NAME_MAX:
        raise BadInput(f"label of {len(label)} characters is too long: its partition directory name would be "
                       f"{len(enc) + 6} bytes, over the {NAME_MAX} a file name may have")
    return enc


def partition_names(label: str) -> list[str]:
    """The directory names a run of ``label`` gets (``label=<enc>``, ``run_id=<id>``), for length checks."""
    return [f"label={urllib.parse.quote(label, safe='')}", f"run_id={make_run_id(label)}"]


def partition(table: str, label: str, run_id: str) -> Path:
    """``<table>/label=<enc>/run_id=<id>``, relative to a store root."""
    return Path(table) / f"label={encode_label(label)}" / f"run_id={run_id}"


def _empty_partition(table: str) -> Path:
    return partition(table, EMPTY, EMPTY)


def write_empty_run(root: Path, label: str = EMPTY, run_id: str = EMPTY) -> None:
    """An empty events file and an empty run row as the partitions of one run under ``root``: the least a
    directory needs for the views of queries/ to be defined over it (their Parquet globs must match a file)."""
    for table, name, schema in (("events", "events-00000.parquet", EVENTS_SCHEMA),
                                ("runs", "run.parquet", RUNS_SCHEMA)):
        d = root / partition(table, label, run_id)
        d.mkdir(parents=True)
        pq.write_table(schema.empty_table(), d / name)


@dataclass
class RunEntry:
    """One published run, as its runs partition and manifest describe it."""
    run_id: str
    label: str
    dir: Path            # STORE/runs/label=../run_id=..
    manifest: dict

    def files(self, table: str) -> list[str]:
        return list(self.manifest.get("tables", {}).get(table, {}).get("files", []))


def _pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if start is not None:
        now = _proc_start(pid)
        if now is not None and now != start:  # the pid was reused by another process
            return False
    return True


def _proc_start(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22: start time in clock ticks since boot


class Store:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_store_path()

    # -- layout ---------------------------------------------------------------
    @property
    def tmp_dir(self) -> Path:
        return self.root / ".tmp"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def marker(self) -> dict | None:
        try:
            d = json.loads((self.root / MARKER).read_text())
        except (OSError, ValueError):
            return None
        return d if isinstance(d, dict) else None

    def exists(self) -> bool:
        m = self.marker()
        return m is not None and m.get("layout") == LAYOUT

    def is_old_layout(self) -> bool:
        """A store of ksmtrace 0.1 (runs/<run_id>/run.parquet + events-*.parquet in one directory)."""
        if self.exists() or not self.runs_dir.is_dir():
            return False
        with contextlib.suppress(OSError):
            return any(d.is_dir() and "=" not in d.name and (d / "run.parquet").exists()
                       for d in self.runs_dir.iterdir())
        return False

    def check_usable(self, write: bool = False) -> None:
        """Raise StoreError (one clear line) for a root that is a file, an old layout, or not writable."""
        r = self.root
        if r.exists() and not r.is_dir():
            raise StoreError(f"{r} is not a directory: --store must name a store directory")
        if self.is_old_layout():
            raise StoreError(f"{r} has the layout of ksmtrace 0.1 (runs/<run_id>/); migrate it with "
                             f"'ksmtrace rebuild --store {r}'")

    def ensure(self, like: tuple[Path, str, str] | None = None) -> None:
        """Create the layout, with the zero-row files that keep the views' globs valid. ``like`` (staging
        directory, label, run id) names a run whose derived tables were just computed by the current SQL: the
        empty derived files then take their columns from its files instead of running the views once more."""
        self.check_usable(write=True)
        from . import db

        stamp = db.stamp()
        m = self.marker()
        if m is not None and m.get("layout") == LAYOUT and m.get("stamp") == stamp:
            return
        with self.locked():
            m = self.marker()
            if m is None or m.get("layout") != LAYOUT or m.get("stamp") != stamp:
                self._write_empty(stamp, like)

    def _write_empty(self, stamp: str, like: tuple[Path, str, str] | None = None) -> None:
        from . import db

        tmp = self.new_staging()
        try:
            write_empty_run(tmp)
            if like is not None:
                db.empty_derived_like(tmp, EMPTY, EMPTY, *like)
            else:
                db.compute_derived(tmp, EMPTY, EMPTY)
            for table in BASE_TABLES + tuple(db.DERIVED):
                src, dst = tmp / _empty_partition(table), self.root / _empty_partition(table)
                dst.parent.mkdir(parents=True, exist_ok=True)
                if dst.exists():  # stale empty files (other SQL): replace them
                    trash = self.tmp_dir / f"old-{uuid.uuid4().hex}"
                    os.rename(dst, trash)
                    shutil.rmtree(trash, ignore_errors=True)
                os.rename(src, dst)
            _write_json(self.root / MARKER, {"layout": LAYOUT, "stamp": stamp})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- locking --------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """flock(2) on STORE/.lock; re-entrant within one Store object."""
        if getattr(self, "_lock_depth", 0):
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._lock_depth = 1
            yield
        finally:
            self._lock_depth = 0
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- staging --------------------------------------------------------------
    def new_staging(self) -> Path:
        """A private directory under .tmp, recording its owner (host, pid, start time) for clean_stale."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        d = self.tmp_dir / uuid.uuid4().hex
        d.mkdir()
        try:
            _write_json(d / OWNER, {"host": socket.gethostname(), "pid": os.getpid(),
                                    "start": _proc_start(os.getpid()), "created": time.time()})
        except BaseException:  # disk full: leave nothing behind
            shutil.rmtree(d, ignore_errors=True)
            raise
        return d

    def discard_staging(self, staging: Path) -> None:
        """Remove a staging directory (.tmp stays: a failed ingest leaves the store as it was)."""
        shutil.rmtree(staging, ignore_errors=True)

    def clean_stale(self) -> list[str]:
        """Remove what dead writers left (call under the lock): staging dirs whose owner process is gone (or,
        from another host, older than a day), trash dirs, and partitions of runs that were never committed."""
        removed = []
        if self.tmp_dir.is_dir():
            for d in self.tmp_dir.iterdir():
                if _staging_is_stale(d):
                    shutil.rmtree(d, ignore_errors=True)
                    removed.append(str(d))
        committed = {e.run_id for e in self.entries()} | {EMPTY}
        from . import db

        for table in ("events",) + tuple(db.DERIVED):
            tdir = self.root / table
            if not tdir.is_dir():
                continue
            for ldir in tdir.iterdir():
                if not ldir.is_dir():
                    continue
                for rdir in ldir.iterdir():
                    rid = rdir.name.partition("=")[2]
                    if rdir.name.startswith("run_id=") and rid not in committed:
                        self._trash(rdir)
                        removed.append(str(rdir))
                with contextlib.suppress(OSError):
                    ldir.rmdir()  # an empty label directory
        return removed

    def _trash(self, d: Path) -> None:
        trash = self.tmp_dir / f"old-{uuid.uuid4().hex}"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        os.rename(d, trash)
        shutil.rmtree(trash, ignore_errors=True)

    # -- the catalogue ----------------------------------------------------------
    def entries(self) -> list[RunEntry]:
        """The published runs (readers call this without the lock: a run vanishing meanwhile is skipped)."""
        out = []
        if not self.runs_dir.is_dir():
            return out
        ldirs = sorted(self.runs_dir.iterdir())
        for ldir in ldirs:
            if not ldir.name.startswith("label=") or ldir.name == f"label={EMPTY}":
                continue
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                for rdir in sorted(ldir.iterdir()):
                    if not rdir.name.startswith("run_id="):
                        continue
                    try:
                        man = json.loads((rdir / MANIFEST).read_text())
                    except FileNotFoundError:
                        if rdir.exists():  # partition without manifest: damaged (reported by db.check)
                            man = {}
                        else:
                            continue
                    except ValueError:
                        man = {}
                    out.append(RunEntry(rdir.name.partition("=")[2],
                                        urllib.parse.unquote(ldir.name.partition("=")[2]), rdir, man))
        return out

    def find_run(self, sha256: str, label: str) -> str | None:
        for e in self.entries():
            if e.manifest.get("sha256") == sha256 and e.label == label:
                return e.run_id
        return None

    def runs(self) -> pa.Table:
        tables = []
        for e in self.entries():
            with contextlib.suppress(FileNotFoundError):
                tables.append(pq.read_table(e.dir / "run.parquet").cast(RUNS_SCHEMA))
        if not tables:
            return RUNS_SCHEMA.empty_table()
        return pa.concat_tables(tables)

    # -- writing a run --------------------------------------------------------
    def commit(self, staging: Path, run_row: pa.Table, force: bool = False) -> str:
        """Publish a staged run (``staging`` holds its events-*.parquet); returns the run id."""
        return self.publish(staging, run_row, force=force)[0]

    def publish(self, staging: Path, run_row: pa.Table, force: bool = False) -> tuple[str, bool]:
        """Compute the run's derived tables in ``staging``, then publish it atomically under the lock.

        Returns (run_id, replaced). The duplicate lookup (same sha256 and label) runs inside the lock."""
        from . import db

        run_row = run_row.cast(RUNS_SCHEMA)
        run_id = run_row.column("run_id")[0].as_py()
        sha = run_row.column("sha256")[0].as_py()
        label = run_row.column("label")[0].as_py()
        source = run_row.column("source")[0].as_py()
        manifest = self._stage(staging, run_row)
        manifest["stamp"] = db.stamp()
        manifest["tables"].update(db.compute_derived(staging, label, run_id))
        _write_json(staging / partition("runs", label, run_id) / MANIFEST, manifest)
        with self.locked():
            self.ensure(like=(staging, label, run_id))
            self.clean_stale()
            old = self.find_run(sha, label)
            if old and not force:
                raise DuplicateRun(f"{source} is already in the store as run {old} (label {label!r}); "
                                   f"use --force to replace it")
            old_entry = next((e for e in self.entries() if e.run_id == old), None) if old else None
            self._rename_in(staging, label, run_id)
            if old_entry is not None:
                self._remove_entry(old_entry)
        shutil.rmtree(staging, ignore_errors=True)  # .tmp itself stays, as an empty directory
        return run_id, old is not None

    def _stage(self, staging: Path, run_row: pa.Table) -> dict:
        """Move staging/events-*.parquet into the hive layout inside staging, write run.parquet."""
        run_id = run_row.column("run_id")[0].as_py()
        label = run_row.column("label")[0].as_py()
        ev = staging / partition("events", label, run_id)
        ev.mkdir(parents=True, exist_ok=True)
        files = []
        for f in sorted(staging.glob("events-*.parquet")):
            os.rename(f, ev / f.name)
        for f in sorted(ev.glob("events-*.parquet")):
            files.append(f.name)
        rp = staging / partition("runs", label, run_id)
        rp.mkdir(parents=True, exist_ok=True)
        pq.write_table(run_row, rp / "run.parquet")
        return {"layout": LAYOUT, "run_id": run_id, "label": label, "sha256": run_row.column("sha256")[0].as_py(),
                "tables": {"events": {"files": files, "rows": run_row.column("n_events")[0].as_py()},
                           "runs": {"files": ["run.parquet"], "rows": 1}}}

    def _rename_in(self, staging: Path, label: str, run_id: str) -> None:
        """Rename the staged partitions into the store: every table but runs, then runs (the commit point)."""
        from . import db

        for table in ("events",) + tuple(db.DERIVED) + ("runs",):
            src = staging / partition(table, label, run_id)
            if not src.exists():
                continue
            dst = self.root / partition(table, label, run_id)
            if dst.exists():
                raise StoreError(f"run id {run_id} exists in {self.root} with other content")
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.rename(src, dst)

    def _remove_entry(self, e: RunEntry) -> None:
        """Unpublish a run: its runs partition first (the run disappears at once), then its other partitions."""
        from . import db

        self._trash(e.dir)
        for table in ("events",) + tuple(db.DERIVED):
            d = self.root / partition(table, e.label, e.run_id)
            if d.exists():
                self._trash(d)
        with contextlib.suppress(OSError):
            e.dir.parent.rmdir()

    def remove_run(self, run_id: str) -> None:
        with self.locked():
            e = next((x for x in self.entries() if x.run_id == run_id), None)
            if e is None:
                raise StoreError(f"no run {run_id} in {self.root}")
            self._remove_entry(e)

    # -- rebuilding the derived tables ----------------------------------------------
    def rebuild(self, all_runs: bool = False, on_run: Callable[[str], None] | None = None) -> dict:
        """Recompute the derived tables of the runs whose stamp differs (every run with ``all_runs``), and
        migrate a store of the 0.1 layout. Returns counts: migrated, rebuilt, up_to_date."""
        from . import db

        old = self.is_old_layout()
        if not old:
            self.check_usable(write=True)
        out = {"migrated": 0, "rebuilt": 0, "up_to_date": 0}
        with self.locked():
            if old:
                out["migrated"] = self._migrate(on_run)
            self.ensure()
            self.clean_stale()
            cur = db.stamp()
            for e in self.entries():
                if not all_runs and e.manifest.get("stamp") == cur and not db.missing_files(self, e):
                    out["up_to_date"] += 1
                    continue
                if on_run:
                    on_run(e.run_id)
                self._rebuild_entry(e)
                out["rebuilt"] += 1
        return out

    def _rebuild_entry(self, e: RunEntry) -> None:
        from . import db

        ev_dir = self.root / partition("events", e.label, e.run_id)
        ev_files = sorted(ev_dir.glob("events-*.parquet")) if ev_dir.is_dir() else []
        if not ev_files or not (e.dir / "run.parquet").exists():
            raise StoreError(f"run {e.run_id} (label {e.label!r}): its events are missing; re-ingest the input "
                             f"with --force, or remove the run")
        staging = self.new_staging()
        try:
            sev = staging / partition("events", e.label, e.run_id)
            sev.mkdir(parents=True)
            for f in ev_files:
                _link_or_copy(f, sev / f.name)
            srun = staging / partition("runs", e.label, e.run_id)
            srun.mkdir(parents=True)
            _link_or_copy(e.dir / "run.parquet", srun / "run.parquet")
            tables = db.compute_derived(staging, e.label, e.run_id)
            man = dict(e.manifest)
            man.setdefault("tables", {})
            man["tables"]["events"] = {"files": [f.name for f in ev_files],
                                       "rows": man["tables"].get("events", {}).get("rows")}
            man["tables"].update(tables)
            man["stamp"] = db.stamp()
            for table in db.DERIVED:
                dst = self.root / partition(table, e.label, e.run_id)
                if dst.exists():
                    self._trash(dst)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.rename(staging / partition(table, e.label, e.run_id), dst)
            _write_json(e.dir / MANIFEST, man)  # the new stamp last: a crash before it means "rebuild again"
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _migrate(self, on_run: Callable[[str], None] | None) -> int:
        """0.1 layout -> this one: each runs/<run_id>/ becomes a run published in the hive layout."""
        n = 0
        self.ensure_marker_free()
        done = {e.run_id for e in self.entries()}
        for d in sorted(self.runs_dir.iterdir()):
            if "=" in d.name or not d.is_dir():
                continue
            if d.name == EMPTY or d.name in done or not (d / "run.parquet").exists():
                self._trash(d)
                continue
            if on_run:
                on_run(d.name)
            row = pq.read_table(d / "run.parquet").cast(RUNS_SCHEMA)
            staging = self.new_staging()
            try:
                for f in sorted(d.glob("events-*.parquet")):
                    _link_or_copy(f, staging / f.name)
                label = row.column("label")[0].as_py()
                run_id = row.column("run_id")[0].as_py()
                manifest = self._stage(staging, row)
                from . import db

                manifest["stamp"] = db.stamp()
                manifest["tables"].update(db.compute_derived(staging, label, run_id))
                _write_json(staging / partition("runs", label, run_id) / MANIFEST, manifest)
                self._rename_in(staging, label, run_id)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            self._trash(d)
            n += 1
        return n

    def ensure_marker_free(self) -> None:
        """During a migration the marker is written only once every old run has moved (ensure() after)."""
        with contextlib.suppress(FileNotFoundError):
            (self.root / MARKER).unlink()


def _staging_is_stale(d: Path) -> bool:
    if d.name.startswith("old-"):
        return True  # trash of a replace/remove that was killed before its rmtree
    try:
        owner = json.loads((d / OWNER).read_text())
        created = float(owner.get("created", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        # no owner file: made by ksmtrace 0.1, or the owner was killed between mkdir and writing the file
        try:
            return time.time() - d.stat().st_mtime > 600
        except OSError:
            return False
    if owner.get("host") == socket.gethostname():
        pid = owner.get("pid")
        return not (isinstance(pid, int) and _pid_alive(pid, owner.get("start")))
    return time.time() - created > STALE_FOREIGN_S


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(json.dumps(obj, sort_keys=True, default=str))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
