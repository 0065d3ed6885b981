"""lock_waits keeps its rows through its speed-up (queries/30_lock_waits.sql, bench/bench_derived.py).

* `_lifo_matched()` (10_helpers.sql: the pairs only, after dropping the rows that cannot pair and taking
  adjacent pairs out) pairs as a plain stack does, and as `_lifo_pairs()` does, on random begin/end sequences
  of several keys (NULL lock addresses and timestamps, equal timestamps ordered by line, nesting,
  unmatched ends and begins).
* The callchains are read only for the runs with a wait; what they give still comes from every
  contention_begin of the run: a walker's READ begin whose end the trace lost still marks its lock an
  anon_vma lock, and a run whose only callchain is on such a begin is a run with callchains. Stored
  (ingest: compute_derived) and view rows (`_lock_waits_from_events` over the events) agree.
"""
from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st


from conftest import examples
from walks_support import empty_store_connection, ev, frames, one_run, query


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    c = empty_store_connection(tmp_path_factory, "matched")
    yield c
    c.close()


def stack_pairs(rows):
    """rows: (line, ts, pid, addr, d); in (ts, line) order (a NULL ts after all others, as the SQL orders it)
    an end closes the latest open begin of (pid, addr)."""
    stacks: dict = {}
    pairs = []
    for line, _ts, pid, addr, d in sorted(rows, key=lambda r: (r[1] is None, r[1] or 0, r[0])):  # NULLs last
        s = stacks.setdefault((pid, addr), [])
        if d == 1:
            s.append(line)
        elif s:
            pairs.append((s.pop(), line))
    return sorted(pairs)


rows_st = st.lists(st.tuples(st.one_of(st.integers(0, 6), st.none()), st.integers(1, 2), st.sampled_from(["a", "b", None]),
                             st.sampled_from([1, -1])), min_size=0, max_size=60)

LIFO_IN = ("WITH _lifo_in AS (SELECT {'run_id': 'r', 'pid': pid, 'lock_addr': lock_addr} AS k, ts_ns AS o1, "
           "line_no AS o2, d, {'line': line_no} AS v, line_no FROM lr_df) ")


@settings(max_examples=examples(200), deadline=None)
@given(rows_st)
def test_lifo_matched_pairs_as_a_stack(con, evs):
    rows = [(i + 1, ts, pid, addr, d) for i, (ts, pid, addr, d) in enumerate(evs)]
    df = pd.DataFrame({"line_no": [r[0] for r in rows], "ts_ns": [r[1] for r in rows],
                       "pid": [r[2] for r in rows], "lock_addr": [r[3] for r in rows], "d": [r[4] for r in rows]},
                      columns=["line_no", "ts_ns", "pid", "lock_addr", "d"]).astype(
        {"line_no": "int64", "ts_ns": "Int64", "pid": "int32", "lock_addr": "object", "d": "int32"})
    con.register("lr_df", df)
    try:
        matched = con.execute(LIFO_IN + "SELECT line_no, nxt_v.line FROM _lifo_matched()").fetchall()
        full = con.execute(LIFO_IN + "SELECT line_no, nxt_v.line FROM _lifo_pairs() WHERE d = 1 AND nxt_d = -1"
                           ).fetchall()
    finally:
        con.unregister("lr_df")
    assert sorted(matched) == stack_pairs(rows)
    assert sorted(matched) == sorted(full)


WALKER = ("rwsem_down_read_slowpath", "down_read", "rmap_walk_ksm", "try_to_migrate")
WRITER = ("rwsem_down_write_slowpath", "down_write", "vma_prepare")


def begin(ts, pid, addr, flags, callchain=None, comm="task"):
    return ev(ts, "contention_begin", pid=pid, comm=comm, system="lock", callchain=callchain,
              fields={"lock_addr": addr, "flags": flags}, payload=f"{addr} (flags={flags})")


def end(ts, pid, addr, ret="0", comm="task"):
    return ev(ts, "contention_end", pid=pid, comm=comm, system="lock", fields={"lock_addr": addr, "ret": ret},
              payload=f"{addr} (ret={ret})")


COLS = "pid, comm, lock_addr, flags, start_ns, end_ns, wait_ns, anon_vma_lock, ret, interrupted, caller"


def both(store):
    stored = query(store, f"SELECT {COLS}, callchain FROM lock_waits ORDER BY start_ns, pid")
    view = query(store, f"SELECT {COLS}, callchain FROM _lock_waits_from_events ORDER BY start_ns, pid")
    assert stored == view
    return stored


def test_lost_walker_end_still_marks_the_lock_and_nested_waits_pair(tmp_path):
    rows = [
        end("10.000000", 7, "0xcc"),                                    # end before the trace's begin: no wait
        begin("10.000001", 1, "0xaa", "READ", frames(*WALKER), "ksmd"),  # the walker; its end is lost
        begin("10.000002", 2, "0xaa", "WRITE", None, "writer"),         # a writer behind it, no callchain
        begin("10.000003", 3, "0xbb", "SPIN", frames("_raw_spin_lock", "do_thing")),
        begin("10.000004", 3, "0xbb", "SPIN", frames("_raw_spin_lock", "inner_thing")),  # nested, same lock
        end("10.000005", 3, "0xbb"),                                    # closes the inner wait
        end("10.000007", 2, "0xaa", ret="-4", comm="writer"),
        end("10.000009", 3, "0xbb"),                                    # closes the outer wait
        begin("10.000010", 7, "0xcc", "WRITE", frames(*WRITER)),       # never closed
    ]
    store, _ = one_run(tmp_path, rows)
    got = [(w["pid"], w["lock_addr"], w["start_ns"], w["wait_ns"], w["anon_vma_lock"], w["ret"], w["interrupted"],
            w["caller"], None if w["callchain"] is None else [f["sym"] for f in w["callchain"]])
           for w in both(store)]
    assert got == [
        (2, "0xaa", 10_000_002_000, 5000, True, -4, True, None, None),
        (3, "0xbb", 10_000_003_000, 6000, False, 0, False, "do_thing", ["_raw_spin_lock", "do_thing"]),
        (3, "0xbb", 10_000_004_000, 1000, False, 0, False, "inner_thing", ["_raw_spin_lock", "inner_thing"]),
    ]
    (u,) = query(store, "SELECT unpaired_begins, unpaired_ends FROM _lock_waits_unpaired")
    assert (u["unpaired_begins"], u["unpaired_ends"]) == (2, 1)


def test_attribution_unknown_without_callchains_but_known_from_an_unpaired_begin(tmp_path):
    no_cc = [begin("5.000001", 2, "0xaa", "WRITE"), end("5.000003", 2, "0xaa")]
    store, _ = one_run(tmp_path / "a", no_cc)
    (w,) = both(store)
    assert (w["anon_vma_lock"], w["caller"], w["callchain"]) == (None, None, None)
    # the run's only callchain is on a begin that is no wait (another address): the run has callchains
    other = no_cc + [begin("5.000004", 9, "0xdd", "READ", frames("down_read", "elsewhere"))]
    store, _ = one_run(tmp_path / "b", other)
    (w,) = both(store)
    assert (w["anon_vma_lock"], w["caller"]) == (False, None)
