"""Property test of the join-free LIFO pairing (running-sum stack trick) used for lock waits, rmap tracepoints
and probes: against a plain Python stack, on random begin/end sequences with unmatched ends and begins."""
from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from walks_support import empty_store_connection


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    c = empty_store_connection(tmp_path_factory, "pairing")
    yield c
    c.close()


def reference(rows):
    """rows in time order: (line, pid, addr, d); an end closes the latest open begin of (pid, addr)."""
    stacks: dict = {}
    pairs, unmatched_ends = [], []
    for line, pid, addr, d in rows:
        s = stacks.setdefault((pid, addr), [])
        if d == 1:
            s.append(line)
        elif s:
            pairs.append((s.pop(), line))
        else:
            unmatched_ends.append(line)
    open_begins = sorted(b for s in stacks.values() for b in s)
    return sorted(pairs), sorted(unmatched_ends), open_begins


events = st.lists(st.tuples(st.integers(1, 3), st.sampled_from(["a", "b"]), st.sampled_from([1, -1])),
                  min_size=0, max_size=40)


@settings(max_examples=150, deadline=None)
@given(events)
def test_lifo_pairing_matches_a_stack(con, evs):
    rows = [(i + 1, pid, addr, d) for i, (pid, addr, d) in enumerate(evs)]
    df = pd.DataFrame({
        "run_id": "r", "label": "l", "line_no": [r[0] for r in rows], "ts_ns": [r[0] * 1000 for r in rows],
        "cpu": 0, "pid": [r[1] for r in rows], "comm": "x",
        "event": ["contention_begin" if r[3] == 1 else "contention_end" for r in rows],
        "lock_addr": [r[2] for r in rows], "flags": "READ", "ret": 0, "d": [r[3] for r in rows],
    }, columns=["run_id", "label", "line_no", "ts_ns", "cpu", "pid", "comm", "event", "lock_addr", "flags", "ret",
                "d"])
    con.register("lr_df", df)
    try:
        got = con.execute(
            "WITH _lock_rows AS (SELECT * FROM lr_df) "
            "SELECT line_no, d, level, nxt_d, lead_line FROM ("
            "  SELECT *, lead(line_no) OVER (PARTITION BY run_id, pid, lock_addr, level ORDER BY ts_ns, line_no)"
            "         AS lead_line FROM _lock_pairs())").fetchall()
    finally:
        con.unregister("lr_df")
    pairs = sorted((ln, nl) for ln, d, lvl, nd, nl in got if d == 1 and nd == -1)
    unmatched = sorted(ln for ln, d, lvl, nd, nl in got if d == -1 and lvl is None)
    open_b = sorted(ln for ln, d, lvl, nd, nl in got if d == 1 and nd != -1)
    assert (pairs, unmatched, open_b) == reference(rows)
