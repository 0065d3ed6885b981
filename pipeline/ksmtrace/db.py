"""DuckDB over a store: the views of ``queries/*.sql``, and the derived tables they compute per run.

The SQL files are the single home of the metric logic. They are found in the
installed package (``ksmtrace/queries``, mapped from the top-level ``queries/``
by pyproject.toml) or, in a source checkout, next to ``pipeline/``.

Two kinds of connection run them:

* ``compute_derived`` runs every file but ``STORED_VIEWS_FILE`` over a store that holds one run (its staging
  directory) and writes that run's walks, lock_windows and lock_waits (``DERIVED``) as Parquet beside its
  events: the walks are reconstructed once per run, at ingest.
* ``connect`` runs every file; ``STORED_VIEWS_FILE`` redefines the public derived views to read those files,
  so a report or a query never recomputes them. The stamp of the SQL that made them (``stamp()``) is kept
  in each run's manifest; ``connect`` refuses a store whose stamps differ and names ``ksmtrace rebuild``.

A new query file that feeds the walks (numbered before ``STORED_VIEWS_FILE``) is part of the computation and
of the stamp without any change here; a new derived table is one entry in ``DERIVED`` and one view in
``STORED_VIEWS_FILE``.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from .errors import StoreError
from .schema import EVENTS_SCHEMA, RUNS_SCHEMA
from .store import MANIFEST, RunEntry, Store, partition, write_empty_run

#: derived table -> (the private view that computes it from events, the order its rows are stored in)
DERIVED: dict[str, tuple[str, str]] = {
    "walks": ("_walks_from_events", "walk_id"),
    "lock_windows": ("_lock_windows_from_events", "walk_id, window_no"),
    "lock_waits": ("_lock_waits_from_events", "start_ns, pid, lock_addr, end_ns"),
}
#: intermediate relations several derived tables read, in order: computed once per run as a temp table that
#: shadows the view of that name (temp table -> the query that fills it). ``_ev`` (the one scan of the events)
#: is a table rather than _walk_parts' MATERIALIZED CTE: its readers scan only their own columns, where a
#: spilled CTE is read back whole by each (20_walks.sql)
SHARED: dict[str, str] = {
    "_ev": "SELECT * FROM main._ev_scan",
    "_walk_parts": "SELECT * FROM _walk_parts_of_ev()",
}
#: the file that points the public derived views at the stored files (not run when computing them)
STORED_VIEWS_FILE = "90_stored_views.sql"
#: bump when the stored form changes without a change of the SQL (it is part of the stamp)
DERIVED_FORMAT = "1"


def queries_dir() -> Path:
    here = Path(__file__).resolve().parent
    for cand in (here / "queries", here.parent.parent / "queries"):
        if cand.is_dir() and any(cand.glob("*.sql")):
            return cand
    raise StoreError("cannot find the ksmtrace SQL files (queries/*.sql); reinstall ksmtrace")


def sql_files() -> list[Path]:
    return sorted(queries_dir().glob("*.sql"))


def compute_files() -> list[Path]:
    """The files that compute the derived tables from events (all but STORED_VIEWS_FILE)."""
    return [f for f in sql_files() if f.name != STORED_VIEWS_FILE]


def stamp() -> str:
    """Hash of what makes the derived tables: the SQL that computes them (config tables included) and the
    canonical schemas they read."""
    h = hashlib.sha256(f"ksmtrace-derived {DERIVED_FORMAT}\n{EVENTS_SCHEMA}\n{RUNS_SCHEMA}\n".encode())
    for f in compute_files():
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _sql_lit(p: Path | str) -> str:
    """A path or text as the body of a SQL string literal ('' for ')."""
    return str(p).replace("'", "''")


def views_sql(store: Store | None = None) -> str:
    """All view definitions as one script, runnable in the duckdb CLI."""
    parts = []
    if store is not None:
        root = _sql_lit(Path(store.root).resolve())
        parts.append(f"SET VARIABLE ksmtrace_store = '{root}';\n")
    for f in sql_files():
        parts.append(f"-- ==== {f.name} ====\n" + f.read_text())
    return "\n".join(parts)


#: DuckDB settings of a read-only connection, applied after the views are defined (DuckDB 1.1+; the
#: settings are documented in DuckDB's "Securing DuckDB" page). With external access off only the store
#: directory can be read (``allowed_directories``), COPY/ATTACH/EXPORT to any other path, INSTALL and
#: LOAD of extensions fail, and ``lock_configuration`` refuses any SET that would undo this.
READ_ONLY_SETTINGS = ("autoinstall_known_extensions = false", "autoload_known_extensions = false",
                      "allow_community_extensions = false", "enable_external_access = false",
                      "lock_configuration = true")

#: statements a read-only connection runs (SELECT covers DESCRIBE, SUMMARIZE, SHOW and FROM-first queries;
#: EXPLAIN only of such a query: ``EXPLAIN ANALYZE COPY ...`` runs the COPY)
READ_ONLY_STATEMENTS = ("SELECT",)
_EXPLAIN = re.compile(r"\s*EXPLAIN\s+(?:ANALY[SZ]E\s+)?(.*)", re.IGNORECASE | re.DOTALL)


def check_read_only(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Refuse ``query`` unless every statement in it is a query (no COPY, CREATE, ATTACH, SET, ...).

    The read-only settings already keep every file but the store's out of reach; this also keeps
    ``COPY ... TO`` from writing into the store directory itself.
    """
    try:
        stmts = con.extract_statements(query)
    except duckdb.Error as e:
        raise StoreError("SQL: " + " ".join(str(e).split())) from None
    for st in stmts:
        kind = st.type.name
        if kind == "EXPLAIN":
            m = _EXPLAIN.match(st.query)
            if m and m.group(1).strip():
                check_read_only(con, m.group(1))
                continue
        if kind not in READ_ONLY_STATEMENTS:
            raise StoreError(f"SQL: read-only mode runs queries only (SELECT, DESCRIBE, EXPLAIN SELECT ...), "
                             f"not {kind}")


def _run_files(con: duckdb.DuckDBPyConnection, files: list[Path]) -> None:
    for f in files:
        try:
            con.execute(f.read_text())
        except duckdb.Error as e:
            con.close()
            raise StoreError(f"{f}: cannot define the views: {' '.join(str(e).split())}") from None


def missing_files(store: Store, e: RunEntry) -> list[tuple[str, Path]]:
    """(table, path) of every file the run's manifest lists that is not there."""
    out = []
    if not (e.dir / "run.parquet").exists():
        out.append(("runs", e.dir / "run.parquet"))
    tables = e.manifest.get("tables", {})
    for table in ("events",) + tuple(DERIVED):
        d = store.root / partition(table, e.label, e.run_id)
        files = tables.get(table, {}).get("files") or []
        if not files:
            out.append((table, d))
        out.extend((table, d / f) for f in files if not (d / f).exists())
    return out


def check(store: Store) -> None:
    """Raise StoreError (one line) when a run's files are missing or its derived tables are stale."""
    cur = stamp()
    entries = store.entries()
    stale = [e for e in entries if e.manifest.get("stamp") != cur]
    for e in entries:
        if not e.manifest:
            raise StoreError(f"run {e.run_id} (label {e.label!r}): {e.dir / MANIFEST} is missing or damaged; "
                             f"re-ingest that input with --force")
        miss = missing_files(store, e)
        if miss:
            table, path = miss[0]
            fix = ("re-ingest that input with --force (or remove the run)" if table in ("events", "runs")
                   else f"recompute it with 'ksmtrace rebuild --store {store.root}'")
            raise StoreError(f"run {e.run_id} (label {e.label!r}): {table} file {path} is missing; {fix}")
    m = store.marker() or {}
    if stale or m.get("stamp") != cur:
        n = f"{len(stale)} of {len(entries)} runs" if stale else "the empty store files"
        raise StoreError(f"the derived tables ({', '.join(DERIVED)}) of {n} were computed by other SQL "
                         f"(queries/*.sql changed): run 'ksmtrace rebuild --store {store.root}'")


#: the files a connection needs for the public views only (runs, events and the stored derived tables):
#: defining the views that compute walks from events costs about a second of binding, which a report or a
#: query of the public views does not need
PUBLIC_FILES = ("00_runs.sql", "01_events.sql", "02_coverage.sql", STORED_VIEWS_FILE)


def needs_private_views(query: str) -> bool:
    """True when a query names a private view or macro (an identifier starting with _)."""
    return re.search(r"(?<![\w.'])_[A-Za-z]\w*", query) is not None


def connect(store: Store, threads: int | None = None, views: str = "all",
            read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the ksmtrace views defined over ``store``: every view
    (``views="all"``), or only the public ones (``"public"``: runs, events, walks, lock_windows, lock_waits).

    ``read_only``: once the views are defined, the connection may read the store directory and nothing
    else: no other file (read_csv('/etc/passwd'), COPY TO, ATTACH), no extension install or load, and
    its settings are locked (:data:`READ_ONLY_SETTINGS`). Pass queries through :func:`check_read_only`
    to refuse statements other than queries too.
    """
    store.check_usable()
    if not store.exists():
        raise StoreError(f"no ksmtrace store at {store.root} (run 'ksmtrace ingest' first, or pass --store)")
    check(store)
    con = duckdb.connect()
    # DuckDB draws its own progress bar on stdout for queries over ~2 s: it would corrupt csv/json output
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("SET VARIABLE ksmtrace_store = ?", [str(Path(store.root).resolve())])
    files = sql_files()
    if views == "public":
        files = [f for f in files if f.name in PUBLIC_FILES]
    _run_files(con, files)
    if read_only:
        root = str(Path(store.root).resolve()).rstrip("/") + "/"  # a directory, not a name prefix (st/ not st2)
        con.execute("SET allowed_directories = ?", [[root]])
        for setting in READ_ONLY_SETTINGS:
            con.execute(f"SET {setting}")
    return con


_local = threading.local()

#: DuckDB's memory limit while a run's derived tables are computed (``KSMTRACE_DUCKDB_MEMORY`` overrides)
COMPUTE_MEMORY_LIMIT = "512MB"


def compute_memory_limit() -> str:
    return os.environ.get("KSMTRACE_DUCKDB_MEMORY") or COMPUTE_MEMORY_LIMIT


def _spill_dir() -> str:
    """Where this connection's DuckDB spill files go: a path of its own under the system's temp directory.
    DuckDB creates it only when a query spills and removes it when the connection closes (at the latest
    when the process exits): a connection cannot change its temp directory once used."""
    import tempfile
    import uuid

    return os.path.join(tempfile.gettempdir(), f"ksmtrace-duckdb-{os.getpid()}-{uuid.uuid4().hex[:12]}")


#: connections being made ahead of use by warm_compute_connection: requesting thread -> (thread, result box)
_pending: dict[int, tuple[threading.Thread, dict]] = {}


def warm_compute_connection() -> None:
    """Start making this thread's computing connection in the background, unless it has one: attaching the
    views' cached catalog takes ~0.03 s, but writing it (the first time for a given SQL) or defining the views
    without it is ~0.7 s of DuckDB parsing and binding, which ingest thereby overlaps with reading and parsing
    its input. The thread's next
    ``_compute_connection`` takes the connection over; a failure there is left for it to raise."""
    me = threading.get_ident()
    con = getattr(_local, "con", None)
    if (con is not None and getattr(_local, "key", None) == (os.getpid(), stamp())) or me in _pending:
        return
    box: dict = {}

    def make() -> None:
        import shutil
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="ksmtrace-views-"))
        try:
            write_empty_run(root)
            box["con"] = _new_compute_connection(root)
        except BaseException:  # noqa: BLE001 - the synchronous path raises it properly
            pass
        finally:
            shutil.rmtree(root, ignore_errors=True)

    # not a daemon: an interpreter that exits (a refused input) waits for it, where a daemon thread stopped
    # inside DuckDB at exit aborts the process ("terminate called after throwing an instance of ...")
    t = threading.Thread(target=make, name="ksmtrace-views", daemon=False)
    _pending[me] = (t, box)
    t.start()


def _compute_connection(root: Path) -> duckdb.DuckDBPyConnection:
    """One connection per process and thread with the computing views (made ahead by
    ``warm_compute_connection``, or here)."""
    key = (os.getpid(), stamp())
    con = getattr(_local, "con", None)
    if con is None or getattr(_local, "key", None) != key:
        con = None
        pending = _pending.pop(threading.get_ident(), None)
        if pending is not None:
            pending[0].join()
            con = pending[1].get("con")
        if con is None:
            con = _new_compute_connection(root)
        _local.con, _local.key = con, key
    con.execute("SET VARIABLE ksmtrace_store = ?", [str(root.resolve())])
    return con


def _new_compute_connection(root: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    # ingest's peak memory is bounded at any input size: DuckDB spills what does not fit (sorts, window
    # partitions) to a directory of this process rather than grow with the run
    try:
        con.execute("SET memory_limit = ?", [compute_memory_limit()])
    except duckdb.Error as e:
        raise StoreError(f"KSMTRACE_DUCKDB_MEMORY={compute_memory_limit()!r} is not a memory size "
                         f"(e.g. 512MB, 2GB): {' '.join(str(e).split())}") from None
    con.execute("SET temp_directory = ?", [_spill_dir()])
    con.execute("SET preserve_insertion_order = false")  # every COPY below has its own ORDER BY
    con.execute("SET VARIABLE ksmtrace_store = ?", [str(root.resolve())])
    files = compute_files()
    path = _cached_catalog(files)
    if path is not None:
        try:
            con.execute(f"ATTACH '{_sql_lit(path)}' AS {CATALOG_NAME} (READ_ONLY)")
            con.execute(f"USE {CATALOG_NAME}")
            return con
        except duckdb.Error:  # a damaged or unreadable file: define the views here, write it again next time
            with contextlib.suppress(OSError):
                path.unlink()
    _run_files(con, files)
    return con


# -- the cached catalog of the computing views ------------------------------------------------------------
# Defining the computing views costs ~0.7 s of DuckDB parsing and binding per connection, every ingest.
# DuckDB keeps view, macro, type and table definitions in a database file and reads them back in ~0.03 s
# (a view is bound again when a query uses it, over whatever ksmtrace_store then names, as when it is defined
# in memory). So the first computing connection of a given SQL writes its catalog to a file of the user's
# cache directory, named by a hash of the SQL files, the canonical schemas and the DuckDB version, and every
# later one attaches that file read-only. The file is written under a temporary name and renamed into place
# (concurrent ingests each write their own, the last rename wins, readers keep the file they opened).
# Anything that goes wrong with it (no writable cache directory, a damaged file, another user's directory)
# falls back to defining the views in the connection; KSMTRACE_VIEW_CACHE=0 switches it off.

#: the name of the attached catalog (the connection's default database while it computes)
CATALOG_NAME = "ksmtrace_views"
#: bump when the cached catalog's form changes without a change of the SQL
CATALOG_FORMAT = "1"


def view_cache_dir() -> Path | None:
    """Where cached catalogs go (KSMTRACE_CACHE_DIR, else $XDG_CACHE_HOME/ksmtrace, else ~/.cache/ksmtrace);
    None when KSMTRACE_VIEW_CACHE=0."""
    if os.environ.get("KSMTRACE_VIEW_CACHE", "1").strip().lower() in ("0", "no", "off", "false"):
        return None
    d = os.environ.get("KSMTRACE_CACHE_DIR")
    if not d:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        d = os.path.join(base, "ksmtrace")
    return Path(d)


def _catalog_key(files: list[Path]) -> str:
    h = hashlib.sha256(f"ksmtrace-catalog {CATALOG_FORMAT} duckdb {duckdb.__version__}\n{EVENTS_SCHEMA}\n"
                       f"{RUNS_SCHEMA}\n".encode())
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:20]


def _cached_catalog(files: list[Path]) -> Path | None:
    """The cached catalog file of ``files``, written now if it is not there; None when there is no usable cache
    directory. A broken SQL file raises StoreError, as defining the views in a connection does."""
    d = view_cache_dir()
    if d is None:
        return None
    path = d / f"views-{_catalog_key(files)}.duckdb"
    try:
        if path.is_file():
            return path if _owned(d) and _owned(path) else None
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not _owned(d):
            return None
    except OSError:
        return None
    import tempfile
    import uuid

    tmp = d / f".views-{uuid.uuid4().hex}.duckdb.tmp"
    root = None
    try:
        root = Path(tempfile.mkdtemp(prefix="ksmtrace-catalog-"))
        write_empty_run(root)
        con = duckdb.connect(str(tmp))
        try:
            con.execute("SET VARIABLE ksmtrace_store = ?", [str(root.resolve())])
            _run_files(con, files)  # (closes con and raises StoreError on a broken file)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, path)
        _prune_catalogs(d, keep=path)
        return path
    except (OSError, duckdb.Error):
        return None
    finally:
        import shutil

        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            with contextlib.suppress(OSError):
                leftover.unlink()
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


#: cached catalogs kept (other SQL versions, other DuckDB versions), the most recently written first
CATALOGS_KEPT = 8


def _prune_catalogs(d: Path, keep: Path) -> None:
    """Remove all but the CATALOGS_KEPT newest catalogs of ``d`` (a process still reading one keeps its open file)."""
    try:
        old = sorted((p for p in d.glob("views-*.duckdb") if p != keep), key=lambda p: p.stat().st_mtime,
                     reverse=True)
    except OSError:
        return
    for p in old[CATALOGS_KEPT - 1:]:
        with contextlib.suppress(OSError):
            p.unlink()


def _owned(p: Path) -> bool:
    """True when ``p`` belongs to this user (a catalog is code: never one another user could have written)."""
    try:
        return not hasattr(os, "geteuid") or p.stat().st_uid == os.geteuid()
    except OSError:
        return False


def compute_derived(root: Path, label: str, run_id: str) -> dict[str, dict]:
    """Compute the derived tables of the one run held by the store at ``root`` (a staging directory) and
    write them as ``root/<table>/label=../run_id=../part-0.parquet``. Returns {table: {files, rows}}."""
    con = _compute_connection(root)
    out = {}
    try:
        for v, query in SHARED.items():
            con.execute(f"CREATE OR REPLACE TEMP TABLE {v} AS {query}")
        for table, (view, order) in DERIVED.items():
            d = root / partition(table, label, run_id)
            d.mkdir(parents=True, exist_ok=True)
            f = d / "part-0.parquet"
            lit = _sql_lit(f)
            con.execute(f"COPY (SELECT * FROM {view} ORDER BY {order}) TO '{lit}' "
                        f"(FORMAT parquet, COMPRESSION zstd)")
            out[table] = {"files": [f.name], "rows": pq.ParquetFile(f).metadata.num_rows}
    except duckdb.Error as e:
        raise StoreError(f"computing the derived tables of run {run_id} failed: {' '.join(str(e).split())}") from None
    finally:
        for v in SHARED:
            try:
                con.execute(f"DROP TABLE IF EXISTS temp.{v}")
            except duckdb.Error:
                pass
    return out


def empty_derived_like(root: Path, label: str, run_id: str, src_root: Path, src_label: str, src_run_id: str) -> None:
    """Zero-row derived tables at ``root`` for (label, run_id), with the columns of the derived files
    ``compute_derived`` just wrote for (src_label, src_run_id) at ``src_root`` (the same SQL: the same columns
    and types as computing them over an empty run, which costs ~0.25 s of query planning)."""
    con = _compute_connection(src_root)
    try:
        for table in DERIVED:
            src = src_root / partition(table, src_label, src_run_id) / "part-0.parquet"
            d = root / partition(table, label, run_id)
            d.mkdir(parents=True, exist_ok=True)
            s_lit, d_lit = _sql_lit(src), _sql_lit(d / "part-0.parquet")
            con.execute(f"COPY (SELECT * FROM read_parquet('{s_lit}', hive_partitioning = false) LIMIT 0) TO '{d_lit}' "
                        f"(FORMAT parquet, COMPRESSION zstd)")
    except duckdb.Error as e:
        raise StoreError(f"writing the empty derived tables failed: {' '.join(str(e).split())}") from None


@dataclass
class ColumnDoc:
    name: str
    type: str
    doc: str


@dataclass
class ViewDoc:
    name: str
    file: str
    summary: str
    needs: str
    columns: list[ColumnDoc]
    #: how many of the columns, from the first, are the view's contract (the ``@column`` lines before its
    #: ``@extras`` line); None for a view without one
    n_contract: int | None = None

    @property
    def contract(self) -> list[ColumnDoc]:
        return self.columns[:self.n_contract] if self.n_contract is not None else []


_TYPES = r"(TIMESTAMP WITH TIME ZONE|STRUCT\(.*?\)\[\]|MAP\(VARCHAR, VARCHAR\)|[A-Z]+(?:\[\])?)"


def view_docs() -> list[ViewDoc]:
    """Parse the ``@view`` / ``@needs`` / ``@column`` / ``@extras`` comments of every SQL file."""
    docs: list[ViewDoc] = []
    for f in sql_files():
        cur: ViewDoc | None = None
        for line in f.read_text().splitlines():
            m = re.match(r"--\s*@view\s+(\w+)", line)
            if m:
                cur = ViewDoc(m.group(1), f.name, "", "", [])
                docs.append(cur)
                continue
            if cur is None:
                continue
            m = re.match(r"--\s*@needs\s+(.*)", line)
            if m:
                cur.needs = m.group(1).strip()
                continue
            m = re.match(r"--\s*@column\s+(\w+)\s+" + _TYPES + r"\s+(.*)", line)
            if m:
                cur.columns.append(ColumnDoc(m.group(1), m.group(2), m.group(3).strip()))
                continue
            if re.match(r"--\s*@extras\b", line):
                cur.n_contract = len(cur.columns)
                continue
            m = re.match(r"--\s?(.*)", line)
            if m and not cur.columns and not cur.needs:
                cur.summary = (cur.summary + " " + m.group(1).strip()).strip()
    return docs


def view_doc(view: str) -> ViewDoc:
    """The documentation of one public view (KeyError when it has none)."""
    for d in view_docs():
        if d.name == view:
            return d
    raise KeyError(view)


def documented_columns(view: str, without: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(name, type) of a view's columns as its ``@column`` lines give them, in order, less ``without``: the one
    list of a view's columns that code and tests outside the SQL use."""
    return [(c.name, c.type) for c in view_doc(view).columns if c.name not in without]


def describe(con: duckdb.DuckDBPyConnection, view: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE {view}").fetchall()]

