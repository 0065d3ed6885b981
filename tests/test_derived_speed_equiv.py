"""The derived tables keep their results through the speed-ups of their SQL (bench/bench_derived.py).

* The ingest path (``db.compute_derived``: ``_ev`` and ``_walk_parts`` as temp tables) and the view path
  (``_walks_from_events`` & co. over ``connect``: the same macros over a MATERIALIZED CTE) give the same rows,
  EXCEPT ALL both ways, for a trace of every evidence kind.
* function_graph walk membership is found by an ASOF join to the task's walker rows (13_funcgraph_walks.sql);
  the corners a running window gave for free hold: a trace without the proc column (pid NULL) is one task,
  and a walker entry without a depth takes the depth of the task's last entry that has one.
"""
from __future__ import annotations

import pytest

from ksmtrace import api
from ksmtrace.store import Store

from walks_support import connection, fg, one_run, query

synth = pytest.importorskip("ksmtrace.synth")

FG_WALK = """
458.203500 1 0 entry rmap_walk_ksm - - try_to_migrate+0x8e/0xc0
458.203501 1 1 leaf down_read_trylock 0.180
458.203501 1 1 leaf anon_vma_interval_tree_iter_first 0.410
458.203502 1 1 leaf anon_vma_interval_tree_iter_next 0.160
458.203634 1 1 entry try_to_migrate_one
458.203635 1 2 leaf page_vma_mapped_walk 0.600
458.203637 1 1 exit try_to_migrate_one 2.950
458.203637 1 1 leaf folio_not_mapped 0.120
458.203638 1 1 leaf anon_vma_interval_tree_iter_next 0.170
458.203639 1 1 leaf up_read 0.150
458.237510 1 0 exit rmap_walk_ksm 34010.00
"""

WALK_COLS = ("evidence, start_ns, end_ns, duration_ns, complete, n_windows, max_hold_ns, total_hold_ns, iterations, "
             "rmap_one, skipped, caller, slow_windows, bailout, invalid, early_exit")


def test_function_graph_without_pid_is_one_task(tmp_path):
    with_pid, without = fg(FG_WALK), fg(FG_WALK)
    for r in without:
        r["pid"] = None
    (a,) = query(one_run(tmp_path / "a", with_pid)[0], f"SELECT pid, {WALK_COLS} FROM walks")
    (b,) = query(one_run(tmp_path / "b", without)[0], f"SELECT pid, {WALK_COLS} FROM walks")
    assert (a.pop("pid"), b.pop("pid")) == (10396, None)
    # one window: trylock return 458203501180 .. up_read 458203639000; iterator calls 3, the last followed by
    # up_read -> 2 iterations; one rmap_one (the nested try_to_migrate_one)
    assert (a["n_windows"], a["iterations"], a["rmap_one"], a["total_hold_ns"]) == (1, 2, 1, 137820)
    assert a == b


def test_function_graph_walker_entry_without_depth(tmp_path):
    rows = fg(FG_WALK) + fg(FG_WALK.replace("458.2", "459.2"), first_line=100)
    second_entry = rows[len(rows) // 2]
    assert (second_entry["func"], second_entry["kind"]) == ("rmap_walk_ksm", "entry")
    second_entry["depth"] = None
    walks = query(one_run(tmp_path, rows)[0], "SELECT walk_id, n_windows, iterations, rmap_one FROM walks "
                                              "WHERE start_ns IS NOT NULL ORDER BY walk_id")
    # the second walk's children (depth 1) are its own: the task's last entry with a depth had depth 0
    assert [(w["walk_id"], w["n_windows"], w["iterations"], w["rmap_one"]) for w in walks] == [
        (1, 1, 2, 1), (100, 1, 2, 1)]


KINDS = [(ev, synth.FORMATS[ev][0]) for ev in synth.EVIDENCE]


@pytest.mark.parametrize("evidence,fmt", KINDS, ids=[f"{e}-{f}" for e, f in KINDS])
def test_ingest_path_equals_view_path(tmp_path, evidence, fmt):
    res = synth.generate(synth.Layout(vmas=12, pages=3, items=4, forks=1, child_items=2), walks=8,
                         evidence=evidence, fmt=fmt, caller="mixed", seed=7, truncate="both")
    p = tmp_path / "trace.txt"
    p.write_text(res.text)
    store = Store(tmp_path / "store")
    api.ingest([str(p)], store=store, label="synth", fmt="auto")
    con = connection(store)
    n = 0
    for stored, computed in (("walks", "_walks_from_events"), ("lock_windows", "_lock_windows_from_events"),
                             ("lock_waits", "_lock_waits_from_events")):
        counts = con.execute(f"SELECT (SELECT count(*) FROM {stored}), (SELECT count(*) FROM {computed})").fetchone()
        assert counts[0] == counts[1], (stored, counts)
        for a, b in ((stored, computed), (computed, stored)):
            (extra,) = con.execute(f"SELECT count(*) FROM (FROM {a} EXCEPT ALL FROM {b})").fetchone()
            assert extra == 0, f"{extra} rows of {a} not in {b}"
        n += counts[0]
    assert n > 0
