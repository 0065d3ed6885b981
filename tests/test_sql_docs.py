"""Every public SQL view is documented, and its @column lines match what DuckDB reports.

Checked over a store that holds a run with several evidence kinds, so that every view binds to real data.
"""
from __future__ import annotations

import pytest

from ksmtrace import db

from test_walks_sql import CC_SET, FG_PLAIN, mig, tp
from walks_support import connection, ev, fg, one_run


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    rows = fg(FG_PLAIN) + [
        tp("500.000001", "rmap_walk_start", pid=7), tp("500.000009", "rmap_walk_end", pid=7),
        mig("500.000100", "set_migration_pte", "7f0000001000", "e7fff7ffdae58e00", CC_SET, pid=8),
        ev("500.000200", "contention_begin", pid=9, fields={"lock_addr": "0xffff1", "flags": "READ"}),
        ev("500.000300", "contention_end", pid=9, fields={"lock_addr": "0xffff1", "ret": "0"}),
        ev("500.000400", "ksm_window", pid=10, payload="hold_ns=5 iterations=2 rmap_one=1",
           fields={"hold_ns": "5", "iterations": "2", "rmap_one": "1"}),
    ]
    for i, r in enumerate(rows, start=1):
        r["line_no"] = i
    store, _ = one_run(tmp_path_factory.mktemp("docs"), rows)
    return connection(store)


def _public_views(con) -> set[str]:
    names = con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal AND schema_name = 'main'").fetchall()
    return {n for (n,) in names if not n.startswith("_")}


def test_every_public_view_is_documented(con):
    documented = {d.name for d in db.view_docs()}
    missing = _public_views(con) - documented
    assert not missing, f"views without an @view block: {sorted(missing)}"
    stale = documented - _public_views(con)
    assert not stale, f"@view blocks for views that do not exist: {sorted(stale)}"


@pytest.mark.parametrize("view", [d.name for d in db.view_docs()])
def test_documented_columns_match_describe(con, view):
    doc = next(d for d in db.view_docs() if d.name == view)
    assert doc.summary, f"{view}: no summary paragraph"
    assert doc.needs, f"{view}: no @needs line"
    assert all(c.doc for c in doc.columns), f"{view}: a column without its meaning"
    # DESCRIBE quotes field names that are SQL keywords (STRUCT(... "off" VARCHAR ...)); the docs do not
    described = [(n, t.replace('"', "")) for n, t in db.describe(con, view)]
    assert [(c.name, c.type) for c in doc.columns] == described
    assert con.execute(f"SELECT count(*) FROM {view}").fetchone()[0] > 0, f"{view}: no row on the test store"


def test_walk_views_contract_columns_come_first(con):
    """docs/walk-rules.md (Conventions): the contract columns (the @column lines before @extras), in this order,
    then extras."""
    contract = {d.name: [(c.name, c.type) for c in d.contract] for d in db.view_docs() if d.n_contract is not None}
    assert set(contract) == {"walks", "lock_windows", "lock_waits"}
    types = {"walk_id": "BIGINT", "window_no": "BIGINT", "pid": "INTEGER", "cpu": "INTEGER", "complete": "BOOLEAN",
             "anon_vma_lock": "BOOLEAN", "comm": "VARCHAR", "evidence": "VARCHAR", "page_type": "VARCHAR"}
    for view, cols in contract.items():
        assert [c for c, _ in cols[:2]] == ["run_id", "label"] and len(cols) >= 10, view
        d = db.describe(con, view)
        assert d[:len(cols)] == cols, view
        for n, t in d:
            if n in types:
                assert t == types[n], (view, n, t)
            elif n.endswith("_ns") or n in ("n_windows", "iterations", "rmap_one", "skipped", "skip_addr", "skip_mm",
                                             "max_window_iterations", "slow_windows", "invalid", "n_events"):
                assert t == "BIGINT", (view, n, t)
