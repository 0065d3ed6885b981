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


def connect(store: Store, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with every ksmtrace view defined over ``store``."""
    if not store.exists():
        raise StoreError(f"no ksmtrace store at {store.root} (run 'ksmtrace ingest' first, or pass --store)")
    con = duckdb.connect()
    # DuckDB draws its own progress bar on stdout for queries over ~2 s: it would corrupt csv/json output
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("SET VARIABLE ksmtrace_store = ?", [str(Path(store.root).resolve())])
    for f in sql_files():
        try:
            con.execute(f.read_text())
        except duckdb.Error as e:
            con.close()
            raise StoreError(f"{f}: cannot define the views: {' '.join(str(e).split())}") from None
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

