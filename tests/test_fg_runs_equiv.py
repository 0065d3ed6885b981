"""function_graph walks: runs of iterator leaves folded into one child row each (queries/13_funcgraph_walks.sql,
``iterator_runs``) give exactly what the row-by-row form gave (tests/oracles/fg_walks_rowwise.sql, the
macro at commit 45f8237), on generated traces: well-formed walks of several tasks interleaved line by line,
with lock windows, iterator runs, callbacks, invalid_vma calls and nested children, then damaged at random
(lines dropped, depths changed, retvals removed, functions swapped, pid NULL), and wholly random rows.
"""
from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, examples
from ksmtrace import db
from ksmtrace.schema import EVENTS_SCHEMA
from ksmtrace.store import Store

from walks_support import COLS

ORACLE = ROOT / "tests" / "oracles" / "fg_walks_rowwise.sql"
WALKERS = ["rmap_walk_ksm", "rmap_walk_anon"]
ITERS = ["anon_vma_interval_tree_iter_first", "anon_vma_interval_tree_iter_next"]
FUNCS = WALKERS + ITERS + ["down_read_trylock", "down_read", "up_read", "try_to_migrate_one",
                           "remove_migration_pte", "invalid_folio_referenced_vma", "folio_not_mapped",
                           "page_vma_mapped_walk"]
RETVALS = [None, "0", "0x0", "1", "0xffff8881", "-11"]


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("store"))
    store.ensure()  # the empty store files the views of queries/ read
    c = duckdb.connect()
    c.execute("SET VARIABLE ksmtrace_store = ?", [str(store.root)])
    db._run_files(c, db.compute_files())
    c.execute(ORACLE.read_text())
    return c


def _row(line_no, pid, depth, kind, func, dur=None, retval=None):
    r = {k: None for k in COLS}
    r.update(run_id="r1", label="l", line_no=line_no, ts_ns=1_000_000 + 1000 * line_no, cpu=line_no % 2,
             pid=pid, comm="ksmd", event="funcgraph_exit" if kind == "exit" else "funcgraph_entry",
             kind=kind, func=func, depth=depth, duration_ns=dur, retval=retval)
    return r


@st.composite
def walk_lines(draw, depth):
    """(depth, kind, func, dur, retval) of one walk: walker entry, windows of iterator runs, exit."""
    out = [(depth, "entry", draw(st.sampled_from(WALKERS)), None, None)]
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            out.append((depth + 1, "leaf", "down_read_trylock", 200, draw(st.sampled_from(["1", "0", None]))))
        else:
            out.append((depth + 1, "leaf", "down_read", 300, None))
        for _ in range(draw(st.integers(0, 5))):
            kind = draw(st.sampled_from(["iters", "iters", "cb", "inv", "nested", "other"]))
            if kind == "iters":
                for _ in range(draw(st.integers(1, 8))):
                    out.append((depth + 1, "leaf", draw(st.sampled_from(ITERS)), 150,
                                draw(st.sampled_from(RETVALS))))
            elif kind == "cb":
                out.append((depth + 1, "leaf", draw(st.sampled_from(["try_to_migrate_one", "remove_migration_pte"])),
                            900, draw(st.sampled_from(RETVALS))))
            elif kind == "inv":
                out.append((depth + 1, "leaf", "invalid_folio_referenced_vma", 90, draw(st.sampled_from(RETVALS))))
            elif kind == "nested":
                f = draw(st.sampled_from(FUNCS[2:]))
                out.append((depth + 1, "entry", f, None, None))
                for _ in range(draw(st.integers(0, 3))):
                    out.append((depth + 2, "leaf", draw(st.sampled_from(FUNCS)), 100, draw(st.sampled_from(RETVALS))))
                out.append((depth + 1, "exit", f, 2000, draw(st.sampled_from(RETVALS))))
            else:
                out.append((depth + 1, "leaf", "folio_not_mapped", 80, None))
        if draw(st.booleans()):
            out.append((depth + 1, "leaf", "up_read", 150, None))
    out.append((depth, "exit", out[0][2], 50_000, None))
    return out


@st.composite
def traces(draw):
    tasks = draw(st.lists(st.sampled_from([101, 102, 103, None]), min_size=1, max_size=3, unique=True))
    per_task = {t: [l for _ in range(draw(st.integers(1, 3))) for l in draw(walk_lines(draw(st.integers(0, 2))))]
                for t in tasks}
    # interleave the tasks' lines, keeping each task's order
    order = draw(st.permutations([t for t in tasks for _ in per_task[t]]))
    pos = {t: 0 for t in tasks}
    lines = []
    for t in order:
        lines.append((t, *per_task[t][pos[t]]))
        pos[t] += 1
    # damage: drop, re-depth, strip retvals, swap functions, add random rows
    out = []
    for ln in lines:
        act = draw(st.sampled_from(["keep"] * 12 + ["drop", "depth", "ret", "func", "extra"]))
        t, d, k, f, dur, rv = ln
        if act == "drop":
            continue
        if act == "depth":
            d = draw(st.sampled_from([None, 0, 1, 2, 3]))
        elif act == "ret":
            rv = None
        elif act == "func":
            f = draw(st.sampled_from(FUNCS))
        out.append((t, d, k, f, dur, rv))
        if act == "extra":
            out.append((draw(st.sampled_from(tasks)), draw(st.sampled_from([None, 0, 1, 2, 3])),
                        draw(st.sampled_from(["entry", "leaf", "exit"])), draw(st.sampled_from(FUNCS)),
                        draw(st.sampled_from([None, 100])), draw(st.sampled_from(RETVALS))))
    return [_row(i + 1, t, d, k, f, dur, rv) for i, (t, d, k, f, dur, rv) in enumerate(out)]


def _same(con, rows):
    con.register("gen_events", pa.Table.from_pylist(rows, schema=EVENTS_SCHEMA))
    con.execute("CREATE OR REPLACE TEMP TABLE events AS SELECT * FROM gen_events")
    con.execute("CREATE OR REPLACE TEMP TABLE _ev AS SELECT * FROM main._ev_scan")
    new = con.execute("SELECT count(*) FROM _fg_out()").fetchone()[0]
    old = con.execute("SELECT count(*) FROM _fg_out_rowwise()").fetchone()[0]
    extra = con.execute("SELECT count(*) FROM (FROM _fg_out() EXCEPT ALL FROM _fg_out_rowwise())").fetchone()[0]
    lost = con.execute("SELECT count(*) FROM (FROM _fg_out_rowwise() EXCEPT ALL FROM _fg_out())").fetchone()[0]
    cols = [d[0] for d in con.execute("DESCRIBE FROM _fg_out()").fetchall()]
    ocols = [d[0] for d in con.execute("DESCRIBE FROM _fg_out_rowwise()").fetchall()]
    return (new, extra, lost, cols), (old, 0, 0, ocols)


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.data_too_large])
@given(rows=traces())
def test_iterator_runs_equal_row_by_row(con, rows):
    got, want = _same(con, rows)
    assert got == want


@settings(max_examples=examples(60), deadline=None)
@given(rows=st.lists(st.tuples(st.sampled_from([7, 8, None]), st.sampled_from([None, 0, 1, 2]),
                               st.sampled_from(["entry", "leaf", "exit"]), st.sampled_from(FUNCS),
                               st.sampled_from([None, 100]), st.sampled_from(RETVALS)), max_size=60))
def test_random_rows_equal_row_by_row(con, rows):
    got, want = _same(con, [_row(i + 1, *r) for i, r in enumerate(rows)])
    assert got == want


def test_generated_traces_hold_walks(con):
    """The generator makes what the property tests need: walks with windows and folded runs of iterators."""
    rows = []
    for w in range(3):
        base = len(rows)
        spec = [(0, "entry", "rmap_walk_ksm", None, None), (1, "leaf", "down_read_trylock", 200, "1")]
        spec += [(1, "leaf", "anon_vma_interval_tree_iter_next", 150, "0x1")] * 5
        spec += [(1, "leaf", "try_to_migrate_one", 900, "1"), (1, "leaf", "anon_vma_interval_tree_iter_next", 150, "0"),
                 (1, "leaf", "up_read", 150, None), (0, "exit", "rmap_walk_ksm", 5000, None)]
        rows += [_row(base + i + 1, 100, *s) for i, s in enumerate(spec)]
    got, want = _same(con, rows)
    assert got == want and got[0] == 6  # 3 walks + 3 windows
    it = con.execute("SELECT list(iterations ORDER BY walk_id) FROM _fg_out() WHERE part = 'walk'").fetchone()[0]
    assert it == [5, 5, 5]
