"""The walk macros that skip the bulk of a counting trace give exactly what their row-by-row forms gave
(tests/oracles/*_rowwise.sql: the macros at commit 45f8237), on generated traces:

* function_graph (queries/13_funcgraph_walks.sql): runs of iterator leaves folded into one child row each;
* kprobes (queries/14_probe_walks.sql): the window passes run over the marks only, each iterator return
  attached to the task's mark before it.

The traces: well-formed walks of several tasks interleaved line by line, with lock windows, iterator runs,
callbacks, invalid_vma calls, nested children (function_graph), rmap_item address probes and rwsem calls of
other tasks (kprobes), then damaged at random (lines dropped, depths changed, retvals removed, functions
swapped, pid NULL), and wholly random rows.
"""
from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, examples
from ksmtrace.schema import EVENTS_SCHEMA

from walks_support import COLS, empty_store_connection

ORACLES = [ROOT / "tests" / "oracles" / f for f in ("fg_walks_rowwise.sql", "probe_walks_rowwise.sql")]
WALKERS = ["rmap_walk_ksm", "rmap_walk_anon"]
ITERS = ["anon_vma_interval_tree_iter_first", "anon_vma_interval_tree_iter_next"]
FUNCS = WALKERS + ITERS + ["down_read_trylock", "down_read", "up_read", "try_to_migrate_one",
                           "remove_migration_pte", "invalid_folio_referenced_vma", "folio_not_mapped",
                           "page_vma_mapped_walk"]
RETVALS = [None, "0", "0x0", "1", "0xffff8881", "-11"]


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    c = empty_store_connection(tmp_path_factory, "rowwise")
    for f in ORACLES:
        c.execute(f.read_text())
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


def _same(con, rows, macro="_fg_out"):
    """(rows, rows only in the new, rows only in the old, columns) of the macro and of its row-by-row form."""
    con.register("gen_events", pa.Table.from_pylist(rows, schema=EVENTS_SCHEMA))
    con.execute("CREATE OR REPLACE TEMP TABLE events AS SELECT * FROM gen_events")
    con.execute("CREATE OR REPLACE TEMP TABLE _ev AS SELECT * FROM main._ev_scan")
    new, old = f"{macro}()", f"{macro}_rowwise()"
    n_new = con.execute(f"SELECT count(*) FROM {new}").fetchall()[0][0]
    n_old = con.execute(f"SELECT count(*) FROM {old}").fetchall()[0][0]
    extra = con.execute(f"SELECT count(*) FROM (FROM {new} EXCEPT ALL FROM {old})").fetchall()[0][0]
    lost = con.execute(f"SELECT count(*) FROM (FROM {old} EXCEPT ALL FROM {new})").fetchall()[0][0]
    cols = con.execute(f"DESCRIBE FROM {new}").fetchall()
    ocols = con.execute(f"DESCRIBE FROM {old}").fetchall()
    return (n_new, extra, lost, cols), (n_old, 0, 0, ocols)


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.data_too_large])
@given(rows=traces())
def test_iterator_runs_equal_row_by_row(con, rows):
    got, want = _same(con, rows)
    assert got == want


@settings(max_examples=examples(40), deadline=None)
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
    it = con.execute("SELECT list(iterations ORDER BY walk_id) FROM _fg_out() WHERE part = 'walk'").fetchall()[0][0]
    assert it == [5, 5, 5]


# ---- kprobes -------------------------------------------------------------------------------------------------

PROBE_RETS = [None, "0", "0x0", "1", "0x1", "0xff3a4a40c2a5b100"]


def _probe(line_no, pid, kind, func, off=0, ret=None, addr=None, vm=None, caller="rmap_walk_ksm+0x7e/0x1a0"):
    r = {k: None for k in COLS}
    fields = {}
    if ret is not None:
        fields["ret"] = ret
    if addr is not None:
        fields["addr"] = addr
    if vm is not None:
        fields["vm_start"], fields["vm_end"] = vm
    if kind == "entry":
        payload = f"({func}+0x{off:x}/0x1a0)"
    else:
        payload = f"({caller} <- {func})"
    payload += "".join(f" {k}={v}" for k, v in fields.items())
    r.update(run_id="r1", label="l", line_no=line_no, ts_ns=5_000_000 + 700 * line_no, cpu=line_no % 2, pid=pid,
             comm="ksm_rmap", event=f"{func[:8]}_{kind}", kind=kind, func=func,
             parent=caller if kind == "return" else None, payload=payload, fields=list(fields.items()) or None)
    return r


VMS = [None, ("0x7f0000000000", "0x7f0000100000"), ("0x7f3a00000000", "0x7f3a00001000"), ("0x0", "0x0")]


@st.composite
def probe_walk(draw):
    """(kind, func, off, ret, addr, vm) of one walk: entry, item probes, windows of iterator returns, return."""
    out = [("entry", "rmap_walk_ksm", draw(st.sampled_from([0, 4])), None, None, None)]
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            out.append(("entry", "rmap_walk_ksm", 0x5a, None,
                        draw(st.sampled_from(["0x7f3a00000000", "0x7f0000000800", "zz"])), None))
        if draw(st.booleans()):
            out.append(("return", "down_read_trylock", 0, draw(st.sampled_from(["1", "0", None])), None, None))
        else:
            out.append(("return", "down_read", 0, None, None, None))
        for _ in range(draw(st.integers(0, 4))):
            kind = draw(st.sampled_from(["iters", "iters", "cb", "inv", "other"]))
            if kind == "iters":
                for _ in range(draw(st.integers(1, 8))):
                    out.append(("return", draw(st.sampled_from(ITERS)), 0, draw(st.sampled_from(PROBE_RETS)),
                                None, draw(st.sampled_from(VMS))))
            elif kind == "cb":
                out.append(("entry", "try_to_migrate_one", 0, None, None, None))
            elif kind == "inv":
                out.append(("return", "invalid_folio_referenced_vma", 0, draw(st.sampled_from(PROBE_RETS)), None,
                            None))
            else:
                out.append((draw(st.sampled_from(["entry", "return"])), draw(st.sampled_from(ITERS)), 0,
                            None, None, None))
        if draw(st.booleans()):
            out.append(("entry", "up_read", 0, None, None, None))
    out.append(("return", "rmap_walk_ksm", 0, None, None, None))
    return out


PROBE_FUNCS = ["rmap_walk_ksm", "down_read_trylock", "down_read", "up_read", "try_to_migrate_one",
               "invalid_folio_referenced_vma"] + ITERS


@st.composite
def probe_traces(draw):
    tasks = draw(st.lists(st.sampled_from([201, 202, 203, None]), min_size=1, max_size=3, unique=True))
    per_task = {t: [l for _ in range(draw(st.integers(1, 3))) for l in draw(probe_walk())] for t in tasks}
    # rwsem calls of a task that never walks
    per_task[999] = [(k, f, 0, r, None, None) for k, f, r in
                     draw(st.lists(st.tuples(st.sampled_from(["entry", "return"]), st.sampled_from(PROBE_FUNCS[1:]),
                                             st.sampled_from(PROBE_RETS)), max_size=10))]
    order = draw(st.permutations([t for t in per_task for _ in per_task[t]]))
    pos = {t: 0 for t in per_task}
    out = []
    for t in order:
        k, f, off, ret, addr, vm = per_task[t][pos[t]]
        pos[t] += 1
        act = draw(st.sampled_from(["keep"] * 12 + ["drop", "ret", "func", "extra"]))
        if act == "drop":
            continue
        if act == "ret":
            ret = None
        elif act == "func":
            f = draw(st.sampled_from(PROBE_FUNCS))
        out.append((t, k, f, off, ret, addr, vm))
        if act == "extra":
            out.append((draw(st.sampled_from(list(per_task))), draw(st.sampled_from(["entry", "return"])),
                        draw(st.sampled_from(PROBE_FUNCS)), draw(st.sampled_from([0, 4, 0x5a])),
                        draw(st.sampled_from(PROBE_RETS)), draw(st.sampled_from([None, "0x7f3a00000000"])),
                        draw(st.sampled_from(VMS))))
    return [_probe(i + 1, t, k, f, off, ret, addr, vm) for i, (t, k, f, off, ret, addr, vm) in enumerate(out)]


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.data_too_large])
@given(rows=probe_traces())
def test_probe_marks_equal_row_by_row(con, rows):
    got, want = _same(con, rows, "_pr_out")
    assert got == want


def test_generated_probe_traces_hold_walks(con):
    """A probe walk of two windows with an rmap_item address: the generator's shapes give what the rules say."""
    spec = [("entry", "rmap_walk_ksm", 4, None, None, None), ("entry", "rmap_walk_ksm", 0x5a, None, "0x7f3a00000000", None)]
    for _ in range(2):
        spec += [("return", "down_read_trylock", 0, "1", None, None)]
        spec += [("return", ITERS[1], 0, "0xff01", None, ("0x7f3a00000000", "0x7f3a00001000"))] * 3
        spec += [("return", ITERS[1], 0, "0xff02", None, ("0x7f0000000000", "0x7f0000001000"))] * 2
        spec += [("entry", "try_to_migrate_one", 0, None, None, None), ("entry", "up_read", 0, None, None, None)]
    spec += [("return", "rmap_walk_ksm", 0, None, None, None)]
    rows = [_probe(i + 1, 300, *x) for i, x in enumerate(spec)]
    rows.insert(3, _probe(0, 999, "return", "down_read_trylock", 0, "1"))  # another task's rwsem call
    for i, r in enumerate(rows):
        r["line_no"] = i + 1
    got, want = _same(con, rows, "_pr_out")
    assert got == want and got[0] == 3  # 1 walk + 2 windows
    w = con.execute("SELECT n_windows, iterations, rmap_one, skip_addr FROM _pr_out() WHERE part = 'walk'").fetchall()
    assert w == [(2, 10, 2, 4)]
