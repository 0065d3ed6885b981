"""DuckDB over a store: the views of ``queries/*.sql``.

The SQL files are the single home of the metric logic. They are found in the
installed package (``ksmtrace/queries``, mapped from the top-level ``queries/``
by pyproject.toml) or, in a source checkout, next to ``pipeline/``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from .errors import StoreError
from .store import Store


def queries_dir() -> Path:
    here = Path(__file__).resolve().parent
    for cand in (here / "queries", here.parent.parent / "queries"):
        if cand.is_dir() and any(cand.glob("*.sql")):
            return cand
    raise StoreError("cannot find the ksmtrace SQL files (queries/*.sql); reinstall ksmtrace")


def sql_files() -> list[Path]:
    return sorted(queries_dir().glob("*.sql"))


def views_sql(store: Store | None = None) -> str:
    """All view definitions as one script, runnable in the duckdb CLI."""
    parts = []
    if store is not None:
        root = str(Path(store.root).resolve()).replace("'", "''")
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


def connect(store: Store, threads: int | None = None, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with every ksmtrace view defined over ``store``.

    ``read_only``: once the views are defined, the connection may read the store directory and nothing
    else: no other file (read_csv('/etc/passwd'), COPY TO, ATTACH), no extension install or load, and
    its settings are locked (:data:`READ_ONLY_SETTINGS`). Pass queries through :func:`check_read_only`
    to refuse statements other than queries too.
    """
    if not store.exists():
        raise StoreError(f"no ksmtrace store at {store.root} (run 'ksmtrace ingest' first, or pass --store)")
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("SET VARIABLE ksmtrace_store = ?", [str(Path(store.root).resolve())])
    for f in sql_files():
        try:
            con.execute(f.read_text())
        except duckdb.Error as e:
            con.close()
            raise StoreError(f"{f}: cannot define the views: {' '.join(str(e).split())}") from None
    if read_only:
        root = str(Path(store.root).resolve()).rstrip("/") + "/"  # a directory, not a name prefix (st/ not st2)
        con.execute("SET allowed_directories = ?", [[root]])
        for setting in READ_ONLY_SETTINGS:
            con.execute(f"SET {setting}")
    return con


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


_TYPES = r"(TIMESTAMP WITH TIME ZONE|STRUCT\(.*?\)\[\]|MAP\(VARCHAR, VARCHAR\)|[A-Z]+(?:\[\])?)"


def view_docs() -> list[ViewDoc]:
    """Parse the ``@view`` / ``@needs`` / ``@column`` comments of every SQL file."""
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
            m = re.match(r"--\s?(.*)", line)
            if m and not cur.columns and not cur.needs:
                cur.summary = (cur.summary + " " + m.group(1).strip()).strip()
    return docs


def describe(con: duckdb.DuckDBPyConnection, view: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(f"DESCRIBE {view}").fetchall()]

