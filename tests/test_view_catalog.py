"""The cached catalog of the computing views (ksmtrace.db._cached_catalog): the first computing connection of
a given SQL writes the view definitions to a DuckDB file in the cache directory, later ones attach it. The
derived tables must not depend on it, and nothing that goes wrong with it may stop an ingest."""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

import duckdb
import pytest

from conftest import ROOT

from ksmtrace import db
from ksmtrace.errors import StoreError
from ksmtrace.ingest.run import ingest_one
from ksmtrace.store import Store, write_empty_run

SAMPLES = ROOT / "sample_traces"
#: one real capture of each evidence kind the samples hold (function_graph, kprobes, perf lock waits, counters)
REAL = ["real-6.1-fg200.funcgraph.txt.zst", "real-6.1-kp200.kprobes.txt.zst", "real-6.18-unsplit.perf.txt.zst",
        "real-6.1-bt200.counters.txt.zst"]


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("KSMTRACE_CACHE_DIR", str(d))
    monkeypatch.delenv("KSMTRACE_VIEW_CACHE", raising=False)
    monkeypatch.setattr(db, "_local", threading.local())  # no computing connection made before this test
    return d


def _empty_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    write_empty_run(root)
    return root


def _catalogs(d: Path) -> list[Path]:
    return sorted(d.glob("views-*.duckdb")) if d.is_dir() else []


def _defines(monkeypatch) -> list:
    """Records every time the SQL files are run (the views defined rather than attached)."""
    calls: list = []
    run = db._run_files
    monkeypatch.setattr(db, "_run_files", lambda con, files: (calls.append(len(files)), run(con, files)))
    return calls


def test_the_second_connection_attaches_the_catalog_the_first_wrote(tmp_path, cache, monkeypatch):
    root = _empty_root(tmp_path)
    calls = _defines(monkeypatch)
    first = db._new_compute_connection(root)
    assert len(_catalogs(cache)) == 1 and calls == [len(db.compute_files())]  # written once, into the file
    second = db._new_compute_connection(root)
    assert calls == [len(db.compute_files())]  # ... and not defined again
    for con in (first, second):
        assert con.execute("SELECT current_database()").fetchone()[0] == db.CATALOG_NAME
        assert con.execute("SELECT count(*) FROM _walks_from_events").fetchone()[0] == 0
    assert not [p for p in cache.iterdir() if p.suffix != ".duckdb"]  # no temporary or WAL file left


@pytest.mark.parametrize("name", REAL)
def test_derived_tables_are_the_same_with_and_without_the_catalog(tmp_path, cache, monkeypatch, name):
    tables = {}
    for mode in ("1", "0"):
        monkeypatch.setenv("KSMTRACE_VIEW_CACHE", mode)
        monkeypatch.setattr(db, "_local", threading.local())
        st = Store(tmp_path / f"store-{mode}")
        ingest_one(str(SAMPLES / name), st, "x")
        tables[mode] = st
    assert len(_catalogs(cache)) == 1
    con = duckdb.connect()
    rows = 0
    for t in db.DERIVED:
        a, b = (f"SELECT * EXCLUDE (run_id) FROM read_parquet('{tables[m].root}/{t}/label=x/*/*.parquet', "
                f"hive_partitioning = false)" for m in ("1", "0"))
        n = con.execute(f"SELECT count(*) FROM ({a})").fetchone()[0]
        assert n == con.execute(f"SELECT count(*) FROM ({b})").fetchone()[0], t
        assert con.execute(f"SELECT count(*) FROM ({a} EXCEPT ALL {b})").fetchone()[0] == 0, t
        assert con.execute(f"SELECT count(*) FROM ({b} EXCEPT ALL {a})").fetchone()[0] == 0, t
        rows += n
    assert rows > 0


def test_a_damaged_catalog_is_not_used_and_is_written_again(tmp_path, cache, monkeypatch):
    root = _empty_root(tmp_path)
    db._new_compute_connection(root)
    (path,) = _catalogs(cache)
    path.write_bytes(b"not a DuckDB file\n" * 100)
    con = db._new_compute_connection(root)  # the views defined in the connection instead
    assert con.execute("SELECT count(*) FROM _walks_from_events").fetchone()[0] == 0
    assert con.execute("SELECT current_database()").fetchone()[0] == "memory"
    assert not path.exists()
    con = db._new_compute_connection(root)
    assert path.exists() and con.execute("SELECT current_database()").fetchone()[0] == db.CATALOG_NAME


@pytest.mark.parametrize("where", ["a-file", "switched-off"])
def test_without_a_usable_cache_directory_the_views_are_defined_in_the_connection(tmp_path, monkeypatch, where):
    monkeypatch.setattr(db, "_local", threading.local())
    if where == "a-file":  # the cache path lies under a regular file: mkdir fails (NotADirectoryError)
        (tmp_path / "file").write_text("x")
        monkeypatch.setenv("KSMTRACE_CACHE_DIR", str(tmp_path / "file" / "cache"))
    else:
        monkeypatch.setenv("KSMTRACE_CACHE_DIR", str(tmp_path / "cache"))
        monkeypatch.setenv("KSMTRACE_VIEW_CACHE", "0")
    con = db._new_compute_connection(_empty_root(tmp_path))
    assert con.execute("SELECT current_database()").fetchone()[0] == "memory"
    assert con.execute("SELECT count(*) FROM _walks_from_events").fetchone()[0] == 0
    assert not (tmp_path / "cache").exists()


def _queries_copy(tmp_path: Path, monkeypatch, edit) -> Path:
    q = tmp_path / "queries"
    shutil.copytree(db.queries_dir(), q)
    edit(q)
    monkeypatch.setattr(db, "queries_dir", lambda: q)
    return q


def test_changed_sql_gets_a_catalog_of_its_own(tmp_path, cache, monkeypatch):
    root = _empty_root(tmp_path)
    db._new_compute_connection(root)
    (before,) = _catalogs(cache)

    def edit(q):
        f = q / "20_walks.sql"
        f.write_text(f.read_text() + "\nCREATE OR REPLACE VIEW _catalog_probe AS SELECT 42 AS answer;\n")

    _queries_copy(tmp_path, monkeypatch, edit)
    con = db._new_compute_connection(root)
    assert con.execute("SELECT answer FROM _catalog_probe").fetchone()[0] == 42
    assert len(_catalogs(cache)) == 2 and before.exists()


def test_broken_sql_is_one_error_and_leaves_no_file(tmp_path, cache, monkeypatch):
    def edit(q):
        (q / "20_walks.sql").write_text("CREATE VIEW broken AS SELEC 1;\n")

    _queries_copy(tmp_path, monkeypatch, edit)
    with pytest.raises(StoreError, match="20_walks.sql: cannot define the views"):
        db._new_compute_connection(_empty_root(tmp_path))
    assert list(cache.iterdir()) == []


def test_old_catalogs_are_pruned(tmp_path, cache, monkeypatch):
    cache.mkdir()
    for i in range(db.CATALOGS_KEPT + 3):
        (cache / f"views-old{i:02d}.duckdb").write_bytes(b"")
    db._new_compute_connection(_empty_root(tmp_path))
    assert len(_catalogs(cache)) == db.CATALOGS_KEPT
