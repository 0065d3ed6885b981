"""The store: a directory of Parquet files that anything reading Parquet can query.

Layout::

    STORE/
      runs/<run_id>/run.parquet        one row, RUNS_SCHEMA (the catalog entry)
      runs/<run_id>/events-NNNNN.parquet   EVENTS_SCHEMA rows of that run
      runs/_empty/...                  zero-row files so globs always match
      .lock                            flock(2) taken while the catalog changes
      .tmp/<uuid>/                     runs being written (invisible to readers)

A run is written completely under ``.tmp`` and then made visible by one
``rename(2)`` of its directory, so a crash or Ctrl-C never leaves a half-written
run visible, and two ingests into one store never corrupt it.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DuplicateRun, StoreError
from .schema import EVENTS_SCHEMA, RUNS_SCHEMA

DEFAULT_STORE = "ksmtrace-data"
EMPTY_RUN = "_empty"


def default_store_path() -> Path:
    return Path(os.environ.get("KSMTRACE_STORE") or DEFAULT_STORE)


def slug(label: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.]+", "-", label).strip("-.")
    return s or "run"


def make_run_id(label: str) -> str:
    return f"{slug(label)}-{uuid.uuid4().hex[:10]}"


class Store:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_store_path()

    # -- layout ---------------------------------------------------------------
    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def tmp_dir(self) -> Path:
        return self.root / ".tmp"

    def exists(self) -> bool:
        return (self.runs_dir / EMPTY_RUN / "run.parquet").exists()

    def ensure(self) -> None:
        """Create the layout, including the zero-row files that keep globs valid."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        empty = self.runs_dir / EMPTY_RUN
        if not (empty / "run.parquet").exists():
            tmp = self.tmp_dir / f"empty-{uuid.uuid4().hex}"
            tmp.mkdir(parents=True)
            pq.write_table(EVENTS_SCHEMA.empty_table(), tmp / "events-00000.parquet")
            pq.write_table(RUNS_SCHEMA.empty_table(), tmp / "run.parquet")
            try:
                os.rename(tmp, empty)
            except OSError:  # another process won the race
                shutil.rmtree(tmp, ignore_errors=True)

    # -- locking --------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- writing a run --------------------------------------------------------
    def new_staging(self) -> Path:
        d = self.tmp_dir / uuid.uuid4().hex
        d.mkdir(parents=True)
        return d

    def discard_staging(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)
        for d in (self.tmp_dir,):
            with contextlib.suppress(OSError):
                d.rmdir()

    def find_run(self, sha256: str, label: str) -> str | None:
        runs = self.runs()
        for rid, s, lab in zip(runs.column("run_id").to_pylist(), runs.column("sha256").to_pylist(),
                               runs.column("label").to_pylist()):
            if s == sha256 and lab == label:
                return rid
        return None

    def commit(self, staging: Path, run_row: pa.Table, force: bool = False) -> str:
        """Publish a staged run atomically. ``run_row`` is one row of RUNS_SCHEMA."""
        run_id = run_row.column("run_id")[0].as_py()
        sha = run_row.column("sha256")[0].as_py()
        label = run_row.column("label")[0].as_py()
        with self.locked():
            self.ensure()
            old = self.find_run(sha, label)
            if old and not force:
                raise DuplicateRun(
                    f"{run_row.column('source')[0].as_py()} is already in the store as run {old} "
                    f"(label {label!r}); use --force to replace it"
                )
            pq.write_table(run_row.cast(RUNS_SCHEMA), staging / "run.parquet")
            target = self.runs_dir / run_id
            trash = None
            if old:
                trash = self.tmp_dir / f"old-{uuid.uuid4().hex}"
                os.rename(self.runs_dir / old, trash)
            elif target.exists():
                raise StoreError(f"run id {run_id} exists in {self.root} with other content")
            os.rename(staging, target)
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)
        return run_id

    # -- reading --------------------------------------------------------------
    def runs(self) -> pa.Table:
        if not self.runs_dir.exists():
            return RUNS_SCHEMA.empty_table()
        tables = []
        for d in sorted(self.runs_dir.iterdir()):
            f = d / "run.parquet"
            if d.name != EMPTY_RUN and f.exists():
                tables.append(pq.read_table(f).cast(RUNS_SCHEMA))
        if not tables:
            return RUNS_SCHEMA.empty_table()
        return pa.concat_tables(tables)

    def remove_run(self, run_id: str) -> None:
        with self.locked():
            d = self.runs_dir / run_id
            if not (d / "run.parquet").exists():
                raise StoreError(f"no run {run_id} in {self.root}")
            trash = self.tmp_dir / f"old-{uuid.uuid4().hex}"
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            os.rename(d, trash)
            shutil.rmtree(trash, ignore_errors=True)
