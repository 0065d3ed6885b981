"""The partitioned store: derived tables per run, stamps and rebuild, atomic publication, stale staging,
glob characters in the store path, damaged and unusable stores, migration of the 0.1 layout."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from conftest import ROOT, run_cli
from test_store import TRACE, snapshot
from test_walks_sql import FG_PLAIN, FG_SLOW
from walks_support import add_run, ev, fg, frames

from ksmtrace import db
from ksmtrace.ingest.source import HEAD_BYTES
from ksmtrace.store import EMPTY, Store, partition

DERIVED = list(db.DERIVED)


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT / "pipeline"))


def _trace(tmp_path: Path, name: str, extra: int = 0) -> Path:
    p = tmp_path / name
    p.write_text(TRACE + "".join(f"            ksmd-37      [000] ...1.   459.0{i:05d}: ksm_start_scan: seq {i} "
                                 f"rmap size 0\n" for i in range(extra)))
    return p


def _with_waits(rows: list[dict]) -> list[dict]:
    cc = frames("rwsem_down_read_slowpath", "down_read", "rmap_walk_ksm", "try_to_migrate")
    rows = rows + [
        ev("600.000100", "contention_begin", pid=9, callchain=cc, fields={"lock_addr": "0xffff1", "flags": "READ"}),
        ev("600.000300", "contention_end", pid=9, fields={"lock_addr": "0xffff1", "ret": "0"}),
    ]
    for i, r in enumerate(rows, start=1):
        r["line_no"] = i
    return rows


def _store_with_runs(tmp_path) -> Store:
    st = Store(tmp_path / "store")
    add_run(st, "before", _with_waits(fg(FG_PLAIN)))
    add_run(st, "after", fg(FG_SLOW))
    add_run(st, "after", _with_waits(fg(FG_PLAIN)))
    return st


def test_layout_is_hive_partitioned_and_readable_by_pyarrow(tmp_path):
    st = Store(tmp_path / "store")
    rid = add_run(st, "before patch/v2 %", fg(FG_PLAIN))
    enc = "before%20patch%2Fv2%20%25"
    for table in ["events", "runs"] + DERIVED:
        d = st.root / table / f"label={enc}" / f"run_id={rid}"
        assert d.is_dir() and list(d.glob("*.parquet")), table
    # any Parquet engine decodes the partition values back to the label
    ds = pads.dataset(st.root / "walks", format="parquet", partitioning="hive",
                      exclude_invalid_files=True)
    t = ds.to_table(filter=pads.field("run_id") == rid)
    assert set(t.column("label").to_pylist()) == {"before patch/v2 %"} and t.num_rows == 1
    with db.connect(st) as con:
        assert con.execute("SELECT DISTINCT label FROM walks").fetchall() == [("before patch/v2 %",)]
        assert con.execute("SELECT label FROM runs").fetchall() == [("before patch/v2 %",)]


def test_derived_tables_equal_the_views_over_events(tmp_path):
    """The stored tables are what the queries/ views compute from the events, row for row."""
    st = _store_with_runs(tmp_path)
    with db.connect(st) as con:
        for table, (view, _) in db.DERIVED.items():
            n = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            assert n > 0, table
            for a, b in ((table, view), (view, table)):
                diff = con.execute(f"SELECT count(*) FROM (SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b})").fetchone()[0]
                assert diff == 0, (table, a, b)


def test_label_filter_prunes_other_labels_files(tmp_path):
    st = _store_with_runs(tmp_path)
    # damage every file of label "after": a query on "before" must not open them
    for f in (st.root / "walks" / "label=after").rglob("*.parquet"):
        f.write_bytes(b"not parquet")
    with db.connect(st) as con:
        assert con.execute("SELECT count(*) FROM walks WHERE label = 'before'").fetchone()[0] == 1
        assert con.execute("SELECT count(*) FROM lock_windows WHERE label = 'before'").fetchone()[0] == 2
        with pytest.raises(duckdb.Error):
            con.execute("SELECT count(*) FROM walks").fetchall()


def test_stale_stamp_is_refused_then_rebuild_recomputes(tmp_path):
    st = _store_with_runs(tmp_path)
    with db.connect(st) as con:
        want = con.execute("SELECT * FROM walks ORDER BY run_id, walk_id").fetchall()
    e = st.entries()[0]
    man = json.loads((e.dir / "manifest.json").read_text())
    man["stamp"] = "0" * 16  # made by other SQL
    (e.dir / "manifest.json").write_text(json.dumps(man))
    r = run_cli("sql", "SELECT count(*) FROM walks", "--store", str(st.root))
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err
    assert "1 of 3 runs" in r.err and "ksmtrace rebuild" in r.err and "Traceback" not in r.err
    r = run_cli("rebuild", "--store", str(st.root))
    assert r.code == 0, r.err
    assert "1 runs rebuilt, 2 up to date" in r.out
    with db.connect(st) as con:
        assert con.execute("SELECT * FROM walks ORDER BY run_id, walk_id").fetchall() == want


def test_changed_sql_changes_the_stamp(tmp_path, monkeypatch):
    before = db.stamp()
    q = tmp_path / "q"
    shutil.copytree(db.queries_dir(), q)
    monkeypatch.setattr(db, "queries_dir", lambda: q)
    assert db.stamp() == before
    f = q / "10_config.sql"
    f.write_text(f.read_text() + "\nINSERT OR IGNORE INTO _rmap_one_callbacks VALUES ('my_one', 'mine');\n")
    assert db.stamp() != before
    # the file of the stored views does not change what is computed
    (q / db.STORED_VIEWS_FILE).write_text((q / db.STORED_VIEWS_FILE).read_text() + "\n-- a comment\n")
    f.write_text(f.read_text().replace("('my_one', 'mine')", "('my_one', 'mine2')"))
    s2 = db.stamp()
    (q / db.STORED_VIEWS_FILE).write_text((q / db.STORED_VIEWS_FILE).read_text() + "\n-- another\n")
    assert db.stamp() == s2


@pytest.mark.parametrize("table", ["events", "walks", "lock_waits"])
def test_deleted_file_gives_one_line_error_not_zero_walks(tmp_path, table):
    st = _store_with_runs(tmp_path)
    rid = st.entries()[0].run_id
    (f,) = (st.root / table).glob(f"*/run_id={rid}/*.parquet")
    f.unlink()
    for args in (("report", "-b", "before", "-a", "after"), ("sql", "SELECT count(*) FROM walks")):
        r = run_cli(*args, "--store", str(st.root))
        assert r.code == 2, (args, r.out)
        assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err, r.err
        assert f"{table} file" in r.err and rid in r.err and "missing" in r.err
        assert ("rebuild" in r.err) == (table != "events")
    if table != "events":  # the derived file can be recomputed from the events
        assert run_cli("rebuild", "--store", str(st.root)).code == 0
        assert run_cli("sql", "SELECT count(*) FROM walks", "--store", str(st.root)).code == 0


def test_glob_characters_in_the_store_path(tmp_path):
    trace = _trace(tmp_path, "t.trace")
    other = _trace(tmp_path, "u.trace", extra=1)
    for name, f in (("st1", other), ("st[1]", trace), ("st*", trace), ("st?", other)):
        assert run_cli("ingest", str(f), "--store", str(tmp_path / name), "-l", name).code == 0
    for name in ("st1", "st[1]", "st*", "st?"):
        r = run_cli("sql", "SELECT label, count(*) AS n FROM events GROUP BY label", "--store",
                    str(tmp_path / name), "-f", "csv")
        assert r.code == 0, r.err
        n = 5 if name in ("st1", "st?") else 4
        assert r.out.strip().splitlines()[1:] == [f"{name},{n}"], (name, r.out)


def test_store_path_that_is_a_file(tmp_path):
    trace = _trace(tmp_path, "t.trace")
    f = tmp_path / "afile"
    f.write_text("x")
    for args in (("ingest", str(trace)), ("sql", "SELECT 1"), ("runs",), ("rebuild",)):
        r = run_cli(*args, "--store", str(f))
        assert r.code == 2, args
        assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err, r.err
        assert "not a directory" in r.err
    assert f.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_store(tmp_path):
    trace = _trace(tmp_path, "t.trace")
    store = tmp_path / "store"
    assert run_cli("ingest", str(trace), "--store", str(store)).code == 0
    before = snapshot(store)
    os.chmod(store, 0o555)
    try:
        r = run_cli("ingest", str(_trace(tmp_path, "u.trace", 1)), "--store", str(store))
        assert r.code == 2 and "nothing stored" in r.err and len(r.err.strip().splitlines()) == 1, r.err
        assert run_cli("sql", "SELECT count(*) FROM walks", "--store", str(store)).code == 0
    finally:
        os.chmod(store, 0o755)
    assert snapshot(store) == before


def test_label_too_long_or_empty_is_one_line(tmp_path):
    trace = _trace(tmp_path, "t.trace")
    for label, want in (("x" * 300, "too long"), ("", "must not be empty")):
        r = run_cli("ingest", str(trace), "--store", str(tmp_path / "s"), "-l", label)
        assert r.code == 2 and want in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert not (tmp_path / "s").exists()


def test_concurrent_force_ingests_of_one_file(tmp_path):
    trace = _trace(tmp_path, "t.trace")
    store = tmp_path / "store"
    assert run_cli("ingest", str(trace), "--store", str(store), "-l", "a").code == 0
    procs = [subprocess.Popen([sys.executable, "-m", "ksmtrace", "ingest", str(trace), "--store", str(store),
                               "-l", "a", "--force"], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
        assert b"Traceback" not in err and b"replaced" in out
    r = run_cli("sql", "SELECT count(*) AS runs, sum(n_events) AS ev FROM runs", "--store", str(store), "-f", "csv")
    assert r.out.strip().splitlines()[1] == "1,4"
    r = run_cli("sql", "SELECT count(DISTINCT run_id), count(*) FROM events", "--store", str(store), "-f", "csv")
    assert r.out.strip().splitlines()[1] == "1,4"
    # nothing of the replaced runs is left
    assert len(list((store / "events").glob("label=a/run_id=*"))) == 1
    assert not [d for d in (store / ".tmp").iterdir()] if (store / ".tmp").exists() else True


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_stale_staging_is_cleaned_live_staging_kept(tmp_path):
    trace = _trace(tmp_path, "t.trace")
    store = tmp_path / "store"
    assert run_cli("ingest", str(trace), "--store", str(store)).code == 0
    st = Store(store)
    dead = st.new_staging()
    (dead / "events-00000.parquet").write_bytes(b"half a file")
    owner = json.loads((dead / ".owner.json").read_text())
    owner["pid"] = _dead_pid()
    (dead / ".owner.json").write_text(json.dumps(owner))
    live = st.new_staging()  # owned by this (living) test process: another ingest still writing
    foreign = st.new_staging()
    fo = json.loads((foreign / ".owner.json").read_text())
    fo.update(host="another-host", pid=1)
    (foreign / ".owner.json").write_text(json.dumps(fo))
    old_foreign = st.new_staging()
    fo["created"] = time.time() - 2 * 86400
    (old_foreign / ".owner.json").write_text(json.dumps(fo))
    assert run_cli("ingest", str(_trace(tmp_path, "u.trace", 1)), "--store", str(store)).code == 0
    assert not dead.exists() and not old_foreign.exists()
    assert live.exists() and foreign.exists()


def test_kill_9_mid_ingest_leaves_staging_that_the_next_ingest_removes(tmp_path):
    trace = _trace(tmp_path, "t.trace")
    store = tmp_path / "store"
    assert run_cli("ingest", str(trace), "--store", str(store)).code == 0
    before = snapshot(store)
    # more than the head that format detection reads (source.HEAD_BYTES) arrives, then the writer stalls:
    # the ingest has detected the format and staged, and is blocked reading the rest when it is killed
    big = _trace(tmp_path, "big.trace", 4000)
    assert big.stat().st_size > HEAD_BYTES
    # one writer process that never closes the pipe by itself (however slow the ingest starts on a loaded
    # machine), killed below
    writer = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.stdout.buffer.write(open(sys.argv[1], "
                               "'rb').read()); sys.stdout.flush(); time.sleep(900)", str(big)], stdout=subprocess.PIPE)
    ing = subprocess.Popen([sys.executable, "-m", "ksmtrace", "ingest", "-", "--store", str(store), "-l", "x"],
                           stdin=writer.stdout, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    writer.stdout.close()
    deadline = time.time() + 300
    while time.time() < deadline and ing.poll() is None and not any((store / ".tmp").glob("*/.owner.json")):
        time.sleep(0.1)
    assert ing.poll() is None, ing.communicate()[1]
    time.sleep(0.5)
    ing.send_signal(signal.SIGKILL)
    ing.wait(30)
    writer.kill()
    writer.wait()
    left = [d for d in (store / ".tmp").iterdir()]
    assert left, "the killed ingest had a staging directory"
    assert {k: v for k, v in snapshot(store).items() if not k.startswith(".tmp")} == before
    assert run_cli("ingest", str(_trace(tmp_path, "u.trace", 1)), "--store", str(store)).code == 0
    assert not any(d.exists() for d in left)


CRASH = r"""
import os, sys
sys.path.insert(0, {pipeline!r})
import ksmtrace.store as s
n = [0]
real = os.rename
def rename(a, b):
    real(a, b)
    if "/.tmp/" in str(a) and "run_id=" in str(b) and "/.tmp/" not in str(b):
        n[0] += 1
        if n[0] == {after}:
            os._exit(137)   # as if killed -9 right after this rename
s.os.rename = rename
from ksmtrace.cli import main
sys.exit(main(["ingest", {trace!r}, "--store", {store!r}, "-l", "b"]))
"""


@pytest.mark.parametrize("after", [1, 3, 4])
def test_kill_during_publication_shows_all_or_nothing(tmp_path, after):
    """Die after the 1st, 3rd or 4th of the 5 renames: the run is invisible (runs is renamed last), and the
    next writer removes its orphan partitions."""
    trace = _trace(tmp_path, "t.trace")
    store = tmp_path / "store"
    assert run_cli("ingest", str(trace), "--store", str(store), "-l", "a").code == 0
    victim = _trace(tmp_path, "v.trace", 2)
    p = subprocess.run([sys.executable, "-c", CRASH.format(pipeline=str(ROOT / "pipeline"), after=after,
                                                             trace=str(victim), store=str(store))],
                       capture_output=True, timeout=300)
    assert p.returncode == 137, p.stderr.decode()
    assert len(list((store / "events").glob("label=b/run_id=*"))) == 1  # the orphan is there ...
    for v, want in (("runs", 1), ("events", 4), ("walks", 1)):
        r = run_cli("sql", f"SELECT count(*) FROM {v}", "--store", str(store), "-f", "csv")
        assert r.code == 0, r.err
        assert r.out.strip().splitlines()[1] == str(want), v  # ... but invisible
    assert run_cli("ingest", str(_trace(tmp_path, "w.trace", 1)), "--store", str(store), "-l", "c").code == 0
    assert not list((store / "events").glob("label=b/run_id=*"))
    # and the file that was being ingested can be ingested again (it never landed)
    assert run_cli("ingest", str(victim), "--store", str(store), "-l", "b").code == 0


def _old_layout_store(root: Path, runs: list[tuple[str, list[dict]]]) -> None:
    """A store as ksmtrace 0.1 wrote it: runs/<run_id>/{run.parquet, events-00000.parquet}, runs/_empty."""
    tmp = Store(root.parent / "tmp-new")
    ids = [add_run(tmp, label, rows) for label, rows in runs]
    (root / "runs" / "_empty").mkdir(parents=True)
    pq.write_table(pq.read_table(next(tmp.root.glob("runs/label=_empty/*/run.parquet"))),
                   root / "runs" / "_empty" / "run.parquet")
    for rid in ids:
        d = root / "runs" / rid
        d.mkdir()
        shutil.copy(next(tmp.root.glob(f"runs/*/run_id={rid}/run.parquet")), d / "run.parquet")
        shutil.copy(next(tmp.root.glob(f"events/*/run_id={rid}/events-00000.parquet")), d / "events-00000.parquet")
    shutil.rmtree(tmp.root)


def test_old_layout_is_refused_then_migrated(tmp_path):
    root = tmp_path / "old"
    _old_layout_store(root, [("before", fg(FG_PLAIN)), ("after", fg(FG_SLOW))])
    for args in (("sql", "SELECT 1"), ("ingest", str(_trace(tmp_path, "t.trace")))):
        r = run_cli(*args, "--store", str(root))
        assert r.code == 2 and "0.1" in r.err and "ksmtrace rebuild" in r.err, r.err
        assert len(r.err.strip().splitlines()) == 1
    r = run_cli("rebuild", "--store", str(root))
    assert r.code == 0, r.err
    assert "2 migrated" in r.out
    assert not [d for d in (root / "runs").iterdir() if "=" not in d.name]
    r = run_cli("sql", "SELECT label, duration_ns FROM walks ORDER BY label", "--store", str(root), "-f", "csv")
    assert r.out.strip().splitlines()[1:] == ["after,34020000", "before,34010000"]


def test_remove_run_and_empty_store_views(tmp_path):
    st = _store_with_runs(tmp_path)
    for e in st.entries():
        st.remove_run(e.run_id)
    with db.connect(st) as con:
        for v in ["runs", "events"] + DERIVED:
            assert con.execute(f"SELECT count(*) FROM {v}").fetchone()[0] == 0, v
    assert not list((st.root / "events").glob("label=after/*"))


def test_manifest_lists_files_rows_and_stamp(tmp_path):
    st = Store(tmp_path / "store")
    rid = add_run(st, "x", fg(FG_PLAIN))
    (e,) = st.entries()
    m = e.manifest
    assert m["run_id"] == rid and m["stamp"] == db.stamp()
    for table in ["events"] + DERIVED:
        d = st.root / partition(table, "x", rid)
        assert sorted(p.name for p in d.glob("*.parquet")) == m["tables"][table]["files"]
        assert sum(pq.ParquetFile(d / f).metadata.num_rows for f in m["tables"][table]["files"]) == \
            m["tables"][table]["rows"]
    assert st.runs().column("run_id").to_pylist() == [rid]


def test_empty_derived_files_of_a_new_store_match_computing_them(tmp_path, monkeypatch):
    """The first run into a new store gives the zero-row derived files their columns from its own derived files
    (no second pass of the views); they must read exactly as computing the views over an empty run gives."""
    from ksmtrace.ingest.run import ingest_one

    used = []
    like = db.empty_derived_like
    monkeypatch.setattr(db, "empty_derived_like", lambda *a: (used.append(a), like(*a)))
    first = Store(tmp_path / "first")
    ingest_one(str(_trace(tmp_path, "t.trace")), first, "x")
    assert len(used) == 1
    computed = Store(tmp_path / "computed")
    computed.ensure()  # no run: the views over an empty run
    for table in DERIVED:
        a, b = (st.root / partition(table, EMPTY, EMPTY) / "part-0.parquet" for st in (first, computed))
        assert pq.ParquetFile(a).metadata.num_rows == pq.ParquetFile(b).metadata.num_rows == 0, table
        # names and types; not nullability: DuckDB marks a column NOT NULL only when its plan proves it, so the
        # zero-row files already differed from the runs' own files there (lock_waits.run_id), harmlessly
        assert [(f.name, f.type) for f in pq.read_schema(a)] == [(f.name, f.type) for f in pq.read_schema(b)], table
        with duckdb.connect() as con:
            cols_a, cols_b = (con.execute(f"DESCRIBE SELECT * FROM read_parquet('{f}', hive_partitioning = false)")
                              .fetchall() for f in (a, b))
        assert cols_a == cols_b, table
    with db.connect(first) as con:  # and the store reads: its run's walks, under the views of every table
        assert con.execute("SELECT count(*) FROM walks").fetchone()[0] > 0
        for v in DERIVED:
            con.execute(f"SELECT * FROM {v}").fetchall()
