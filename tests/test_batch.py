"""Many traces at once: --jobs N local processes and a Dask cluster give the serial path's store, row for
row; a failed file is named and the others land."""
from __future__ import annotations

import pytest

from conftest import ROOT, run_cli

from ksmtrace import api, db

SAMPLES = ROOT / "sample_traces"
FILES = [SAMPLES / n for n in ("synth-unpatched.counters.txt.gz", "synth-patched.counters.txt.gz",
                               "synth-unpatched.funcgraph.txt.gz")]

#: columns that differ between two ingests of the same file (ids and times), compared through the source
VOLATILE = {"run_id", "ingested_at"}


def _rows(store, table: str) -> list[tuple]:
    with db.connect(api._store(store)) as con:
        cols = [c for c, _ in db.describe(con, table) if c not in VOLATILE]
        sel = ", ".join(f"t.{c}" for c in cols)
        return con.execute(f"SELECT r.source, {sel} FROM {table} t JOIN runs r USING (run_id) "
                           f"ORDER BY ALL").fetchall()


def _same_as_serial(store, serial) -> None:
    for table in ("runs", "events", "walks", "lock_windows", "lock_waits"):
        a, b = _rows(store, table), _rows(serial, table)
        assert len(a) == len(b), table
        assert a == b, table


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    root = tmp_path_factory.mktemp("serial") / "store"
    outs = api.ingest_many([str(f) for f in FILES], root, label="x")
    assert all(o.ok for o in outs)
    return root


def test_jobs_equal_serial_and_failure_named(tmp_path, serial):
    bad = tmp_path / "empty.txt"
    bad.write_text("")
    store = tmp_path / "store"
    r = run_cli("ingest", *map(str, FILES[:2]), str(bad), str(FILES[2]), "--store", str(store), "-l", "x",
                "--jobs", "2")
    assert r.code == 2
    assert r.err.count("\n") == 2 and "Traceback" not in r.err, r.err
    assert f"{bad}: " in r.err and f"1 of 4 files not ingested ({bad}); stored: {FILES[0]}, {FILES[1]}, {FILES[2]}" in r.err
    assert r.out.count(": run x-") == 3
    _same_as_serial(store, serial)


def test_dask_local_cluster_equals_serial(tmp_path, serial):
    distributed = pytest.importorskip("distributed")
    store = tmp_path / "store"
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        bad = tmp_path / "bad.txt"
        bad.write_text("a,b,c\n1,2,3\n")
        outs = api.ingest_many([str(f) for f in FILES] + [str(bad)], store, label="x", executor="dask",
                               client=client)
        assert [o.ok for o in outs] == [True, True, True, False]
        assert outs[3].path == str(bad) and "no trace lines" in outs[3].error
        # the tasks ran on the workers, not here
        pids = {o.result.run_id for o in outs[:3]}
        assert len(pids) == 3
        # and through the CLI with --scheduler
        r = run_cli("ingest", str(FILES[0]), "--store", str(tmp_path / "cli"), "-l", "x", "--executor", "dask",
                    "--scheduler", cluster.scheduler_address)
        assert r.code == 0, r.err
        assert "events from" in r.out
    _same_as_serial(store, serial)


def test_dask_option_errors_are_one_line(tmp_path):
    f = str(FILES[0])
    r = run_cli("ingest", f, "--store", str(tmp_path / "s"), "--executor", "dask")
    assert r.code == 2 and "--scheduler" in r.err and len(r.err.strip().splitlines()) == 1, r.err
    r = run_cli("ingest", f, "--store", str(tmp_path / "s"), "--scheduler", "tcp://127.0.0.1:1")
    assert r.code == 2 and "--executor dask" in r.err, r.err
    r = run_cli("ingest", f, "--store", str(tmp_path / "s"), "--executor", "spark")
    assert r.code == 2 and "local, dask" in r.err, r.err
    assert not (tmp_path / "s").exists()
