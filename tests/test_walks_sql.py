"""The walk views (queries/1*.sql .. 3*.sql) on tiny hand-written events tables.

Every expected value is computed by hand from the printed numbers; the comments show the arithmetic.
Rules: docs/walk-rules.md (a)-(f).
"""
from __future__ import annotations

from test_walks_support import ev, fg, frames, one_run, query

# ---------------------------------------------------------------------------------------------- (a)


def tp(ts, event, folio="ffffea0004a3c740", rwc="ffffc90001e3b9d8", page_type="ksm", **kw):
    return ev(ts, event, fields={"folio": folio, "rwc": rwc, "page_type": page_type, "locked": "false"}, **kw)


def walks_by_id(store, where=""):
    return {r["walk_id"]: r for r in query(store, f"SELECT * FROM walks {where} ORDER BY walk_id")}


def test_tracepoint_v5_pairs_unpaired_and_cpu(tmp_path):
    rows = [
        tp("17258.000100", "rmap_walk_end", pid=467, cpu=2),                     # 1: end without start
        tp("17258.057760", "rmap_walk_start", pid=467, cpu=3),                   # 2: walk A start, CPU 3
        tp("17258.100000", "rmap_walk_start", pid=500, cpu=0, folio="f2"),      # 3: other pid: unpaired start
        tp("17258.762880", "rmap_walk_end", pid=467, cpu=1),                     # 4: walk A end on CPU 1
        tp("17259.000000", "rmap_walk_start", pid=467, cpu=1, page_type="anon", folio="f3"),  # 5
        tp("17259.000007", "rmap_walk_end", pid=467, cpu=1, page_type="anon", folio="f3"),    # 6
    ]
    store, rid = one_run(tmp_path, rows)
    w = walks_by_id(store)
    assert set(w) == {1, 2, 3, 5}
    # A: 17258.762880 - 17258.057760 = 0.705120 s = 705120000 ns; cpu = the start's CPU
    a = w[2]
    assert (a["start_ns"], a["end_ns"], a["duration_ns"], a["cpu"], a["complete"]) == (
        17258057760000, 17258762880000, 705120000, 3, True)
    assert a["evidence"] == "tracepoint" and a["page_type"] == "ksm" and a["pid"] == 467
    for c in ("n_windows", "max_hold_ns", "total_hold_ns", "iterations", "max_window_iterations", "rmap_one",
              "skipped", "skip_addr", "skip_mm", "caller"):
        assert a[c] is None, c
    # unpaired end: end set, start/duration NULL, incomplete
    assert (w[1]["start_ns"], w[1]["end_ns"], w[1]["duration_ns"], w[1]["complete"]) == (
        None, 17258000100000, None, False)
    # unpaired start
    assert (w[3]["start_ns"], w[3]["end_ns"], w[3]["duration_ns"], w[3]["complete"], w[3]["pid"]) == (
        17258100000000, None, None, False, 500)
    # page_type comes from the event: 7 µs anon walk
    assert (w[5]["page_type"], w[5]["duration_ns"]) == ("anon", 7000)


def test_tracepoint_lifo_per_key_and_key_separation(tmp_path):
    rows = [
        tp("1.000001", "rmap_walk_start"),                # 1 outer
        tp("1.000002", "rmap_walk_start", folio="f9"),    # 2 other key
        tp("1.000003", "rmap_walk_start"),                # 3 inner (same key)
        tp("1.000010", "rmap_walk_end"),                  # 4 closes 3 (LIFO)
        tp("1.000020", "rmap_walk_end", folio="f9"),      # 5 closes 2
        tp("1.000030", "rmap_walk_end"),                  # 6 closes 1
        tp("1.000040", "rmap_walk_end"),                  # 7 unmatched
    ]
    store, _ = one_run(tmp_path, rows)
    w = walks_by_id(store)
    assert {k: (v["start_ns"], v["end_ns"]) for k, v in w.items()} == {
        1: (1000001000, 1000030000), 2: (1000002000, 1000020000), 3: (1000003000, 1000010000),
        7: (None, 1000040000)}


def test_tracepoint_v4_single_event_and_callchain_caller(tmp_path):
    cc = frames("trace_event_raw_event_rmap_walk", "rmap_walk", "try_to_migrate", "migrate_pages_batch")
    rows = [ev("17258.762880", "rmap_walk", pid=467, cpu=3, callchain=cc,
               fields={"folio": "ffffea0004a3c740", "rwc": "ffffc90001e3b9d8", "duration_ns": "705119858",
                       "page_type": "ksm", "locked": "false"})]
    store, _ = one_run(tmp_path, rows)
    (w,) = query(store, "SELECT * FROM walks")
    # start = 17258762880000 - 705119858 = 17258057760142
    assert (w["start_ns"], w["end_ns"], w["duration_ns"], w["complete"]) == (
        17258057760142, 17258762880000, 705119858, True)
    assert w["caller"] == "try_to_migrate"  # first frame outward from rmap_walk* that is not rmap_walk*


def test_lost_events_make_overlapping_walks_incomplete(tmp_path):
    rows = [
        tp("1.000000", "rmap_walk_start", cpu=0),          # 1: walk 1 [1.000000, 1.000100]
        ev("1.000050", "__lost_events", cpu=3, fields={"lost": "5"}),   # 2: loss inside walk 1, other CPU
        tp("1.000100", "rmap_walk_end", cpu=0),            # 3
        tp("1.000200", "rmap_walk_start", cpu=0),          # 4: walk 4 [1.000200, 1.000300]
        ev(None, "__lost_events", cpu=0, fields={"lost": "1"}),         # 5: no ts: placed by line number
        tp("1.000300", "rmap_walk_end", cpu=0),            # 6
        tp("1.000400", "rmap_walk_start", cpu=0),          # 7: walk 7, no loss
        tp("1.000500", "rmap_walk_end", cpu=0),            # 8
    ]
    store, _ = one_run(tmp_path, rows)
    w = walks_by_id(store)
    assert {k: v["complete"] for k, v in w.items()} == {1: False, 4: False, 7: True}
    assert w[1]["duration_ns"] == 100000


# ---------------------------------------------------------------------------------------------- (b)

# a function_graph walk layout without retval, completed with a second window
FG_PLAIN = """
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
458.203640 1 1 leaf __cond_resched 0.120
458.203641 1 1 leaf down_read_trylock 0.160
458.203641 1 1 leaf anon_vma_interval_tree_iter_first 0.150
458.203642 1 1 leaf anon_vma_interval_tree_iter_next 0.150
458.203643 1 1 leaf anon_vma_interval_tree_iter_next 0.150
458.203644 1 1 leaf up_read 0.150
458.237510 1 0 exit rmap_walk_ksm 34010.00
"""


def test_funcgraph_plain_layout(tmp_path):
    store, _ = one_run(tmp_path, fg(FG_PLAIN))
    (w,) = query(store, "SELECT * FROM walks")
    lw = query(store, "SELECT * FROM lock_windows ORDER BY window_no")
    # window 1: start = 458.203501 + 0.180 us = 458203501180; end = up_read entry 458203639000
    #   hold = 137820; iterator calls 3 (first, next, next), the last followed by up_read -> 3 - 1 = 2
    #   rmap_one = 1 (try_to_migrate_one, nested form); skipped = 2 - 1 - 0 = 1
    # window 2: start = 458203641160, end = 458203644000, hold = 2840; calls 3 -> 2 iterations, 0 rmap_one
    assert [(x["window_no"], x["start_ns"], x["end_ns"], x["hold_ns"], x["iterations"], x["rmap_one"],
             x["skipped"], x["skip_addr"], x["skip_mm"], x["slow"]) for x in lw] == [
        (1, 458203501180, 458203639000, 137820, 2, 1, 1, None, None, False),
        (2, 458203641160, 458203644000, 2840, 2, 0, 2, None, None, False)]
    assert all(x["walk_id"] == w["walk_id"] == 1 for x in lw)
    assert (w["evidence"], w["start_ns"], w["end_ns"], w["duration_ns"], w["complete"]) == (
        "function-graph", 458203500000, 458237510000, 34010000, True)
    # total = 137820 + 2840 = 140660; iterations 2 + 2 = 4; skipped = 4 - 1 - 0 = 3
    assert (w["n_windows"], w["max_hold_ns"], w["total_hold_ns"], w["iterations"], w["max_window_iterations"],
            w["rmap_one"], w["skipped"], w["skip_addr"], w["skip_mm"]) == (2, 137820, 140660, 4, 2, 1, 3, None, None)
    assert (w["caller"], w["slow_windows"], w["bailout"], w["invalid"], w["early_exit"]) == (
        "try_to_migrate", 0, False, 0, False)


# a function_graph layout filtered to the lock functions and callbacks, with retval (6.13+), slow path
FG_SLOW = """
458.300000 1 0 entry rmap_walk_ksm
458.300001 1 1 leaf down_read_trylock 0.191 0x1
458.300132 1 1 leaf try_to_migrate_one 2.410 0x1
458.300132 1 1 leaf folio_not_mapped 0.110 0x0
458.300133 1 1 leaf up_read 0.168
458.300133 1 1 leaf down_read_trylock 0.175 0x0
458.300134 1 1 entry down_read
458.300134 1 2 leaf rwsem_down_read_slowpath 7950.321
458.308085 1 1 exit down_read 7951.002
458.308090 1 1 leaf try_to_migrate_one 1.000 0x1
458.308092 1 1 leaf up_read 0.100
458.334020 1 0 exit rmap_walk_ksm 34020.00 0xffffea0004a35e40
"""


def test_funcgraph_slow_path_with_retval_and_no_iterators(tmp_path):
    store, _ = one_run(tmp_path, fg(FG_SLOW))
    (w,) = query(store, "SELECT * FROM walks")
    lw = query(store, "SELECT * FROM lock_windows ORDER BY window_no")
    # window 1: 458.300001 + 0.191 us = 458300001191 -> up_read 458300133000: hold 131809
    # window 2 (slow): starts at down_read's closing line 458308085000 -> up_read 458308092000: hold 7000
    # the iterators are not traced anywhere in the run: iterations / skipped NULL, not 0
    assert [(x["start_ns"], x["end_ns"], x["hold_ns"], x["iterations"], x["rmap_one"], x["skipped"], x["slow"])
            for x in lw] == [(458300001191, 458300133000, 131809, None, 1, None, False),
                             (458308085000, 458308092000, 7000, None, 1, None, True)]
    # max = 131809, total = 131809 + 7000 = 138809
    assert (w["n_windows"], w["max_hold_ns"], w["total_hold_ns"], w["iterations"], w["max_window_iterations"],
            w["rmap_one"], w["skipped"], w["slow_windows"], w["early_exit"], w["bailout"]) == (
        2, 131809, 138809, None, None, 2, None, 1, None, False)
    assert (w["duration_ns"], w["caller"]) == (34020000, None)


def test_funcgraph_bailout_invalid_partial_walks_and_tasks(tmp_path):
    spec_a = """
100.000010 0 0 exit rmap_walk_ksm 12.000
100.000100 0 0 entry rmap_walk_ksm
100.000101 0 1 leaf down_read_trylock 0.200
100.000102 0 1 leaf anon_vma_interval_tree_iter_first 0.100
100.000103 0 1 leaf invalid_folio_referenced_vma 0.100
100.000104 0 1 leaf anon_vma_interval_tree_iter_next 0.100
100.000105 0 1 leaf invalid_folio_referenced_vma 0.100
100.000106 0 1 leaf folio_referenced_one 0.500
100.000107 0 1 leaf anon_vma_interval_tree_iter_next 0.100
100.000108 0 1 leaf up_read 0.100
100.000109 0 1 leaf down_read_trylock 0.100
100.000120 0 0 exit rmap_walk_ksm 20.000
100.000200 0 0 entry rmap_walk_ksm
100.000201 0 1 leaf down_read_trylock 0.100
"""
    # task B interleaves (another pid, other CPU): one bailout walk with retval
    spec_b = """
100.000150 1 0 entry rmap_walk_ksm
100.000151 1 1 leaf down_read_trylock 0.100 0x0
100.000152 1 0 exit rmap_walk_ksm 2.000
"""
    rows = fg(spec_a, pid=7) + fg(spec_b, pid=8, first_line=100)
    store, _ = one_run(tmp_path, rows)
    w = walks_by_id(store)
    assert set(w) == {1, 2, 13, 100}
    # exit without entry: duration from the line, start NULL, counts unknown
    assert (w[1]["start_ns"], w[1]["end_ns"], w[1]["duration_ns"], w[1]["complete"], w[1]["n_windows"]) == (
        None, 100000010000, 12000, False, None)
    # walk 2: one window 100.000101 + 0.2 us -> up_read 100.000108: hold 6800
    #   iterator calls 3, last one followed by up_read -> 2 iterations
    #   first invalid_vma (no retval) is followed by an iterator before any rmap_one -> rejected (invalid 1)
    #   second is followed by folio_referenced_one -> not rejected; rmap_one 1; skipped = 2 - 1 - 1 = 0
    #   the second trylock has no retval and is the walk's last child -> failed -> bailout
    w2 = w[2]
    assert (w2["n_windows"], w2["max_hold_ns"], w2["iterations"], w2["rmap_one"], w2["invalid"], w2["skipped"],
            w2["bailout"], w2["early_exit"], w2["duration_ns"], w2["complete"]) == (
        1, 6800, 2, 1, 1, 0, True, False, 20000, True)
    # entry without exit: end/duration NULL, incomplete; its trylock is the last child -> no window
    assert (w[13]["start_ns"], w[13]["end_ns"], w[13]["duration_ns"], w[13]["complete"], w[13]["n_windows"]) == (
        100000200000, None, None, False, 0)
    # task B: trylock returned 0 and is followed by the walk end -> bailout, no window
    assert (w[100]["pid"], w[100]["cpu"], w[100]["n_windows"], w[100]["bailout"], w[100]["duration_ns"]) == (
        8, 1, 0, True, 2000)


def test_funcgraph_walk_moves_cpu_and_retval_iterators(tmp_path):
    # iterators with retval: count the non-zero returns; the walk exits early (rmap_one returned false)
    spec = """
5.000000 0 0 entry rmap_walk_ksm
5.000001 0 1 leaf down_read_trylock 0.100 0x1
5.000002 0 1 leaf anon_vma_interval_tree_iter_first 0.100 0xffff888100000000
5.000003 0 1 leaf anon_vma_interval_tree_iter_next 0.100 0xffff888100000040
5.000004 1 1 leaf try_to_unmap_one 0.500 0x0
5.000006 1 1 leaf up_read 0.100
5.000010 1 0 exit rmap_walk_ksm 10.000
"""
    store, _ = one_run(tmp_path, fg(spec))
    (w,) = query(store, "SELECT * FROM walks")
    # hold = 5.000006 - (5.000001 + 0.1 us) = 4900; 2 non-zero iterator returns; skipped = 2 - 1 = 1
    assert (w["cpu"], w["n_windows"], w["max_hold_ns"], w["iterations"], w["rmap_one"], w["skipped"],
            w["early_exit"]) == (0, 1, 4900, 2, 1, 1, True)


# ---------------------------------------------------------------------------------------------- (c)


def probe(ts, name, loc, target=None, pid=10396, **fields):
    """A probe row as the ftrace parser gives it: func = sym, kind entry|return, parent = caller."""
    payload = f"({loc} <- {target})" if target else f"({loc})"
    if fields:
        payload += " " + " ".join(f"{k}={v}" for k, v in fields.items())
    sym = (target or loc).split("+")[0]
    return ev(ts, name, pid=pid, payload=payload, func=sym, kind="return" if target else "entry",
              parent=loc if target else None, fields=fields or None)


def test_kprobe_walk_windows_and_skip_split(tmp_path):
    rows = [
        probe("458.203500", "walk", "rmap_walk_ksm+0x4/0x1a0", folio="0xffffea0004a35e40"),           # 1
        probe("458.203500", "ksm_item", "rmap_walk_ksm+0x9a/0x1a0", addr="0x7f0000001000"),           # 2
        probe("458.203501", "rd_try_ret", "rmap_walk_ksm+0xb1/0x1a0", "down_read_trylock", ret="1"),  # 3
        probe("458.203502", "it_first_ret", "rmap_walk_ksm+0xc0/0x1a0", "anon_vma_interval_tree_iter_first",
              ret="0xffff888100000000", vm_start="0x7f0000000000", vm_end="0x7f0000001000"),         # 4 addr out
        probe("458.203503", "it_next_ret", "rmap_walk_ksm+0xd0/0x1a0", "anon_vma_interval_tree_iter_next",
              ret="0xffff888100000040", vm_start="0x7f0000001000", vm_end="0x7f0000002000"),         # 5 hit
        probe("458.203504", "mig_one", "try_to_migrate_one+0x4/0x6f0"),                               # 6
        probe("458.203506", "it_next_ret", "rmap_walk_ksm+0xd0/0x1a0", "anon_vma_interval_tree_iter_next",
              ret="0xffff888100000080", vm_start="0x7f0000001000", vm_end="0x7f0000002000"),         # 7 mm skip
        probe("458.203507", "it_next_ret", "rmap_walk_ksm+0xd0/0x1a0", "anon_vma_interval_tree_iter_next",
              ret="0x0"),                                                                             # 8 end
        probe("458.203508", "rd_up", "up_read+0x4/0x80"),                                             # 9
        probe("458.203509", "rd_try_ret", "rmap_walk_ksm+0xb1/0x1a0", "down_read_trylock", ret="0"),  # 10
        probe("458.203510", "rd_up", "up_read+0x4/0x80", pid=99),                                     # 11 other pid
        probe("458.203520", "rd_slow_ret", "rmap_walk_ksm+0xb8/0x1a0", "down_read"),                  # 12
        probe("458.203530", "it_first_ret", "rmap_walk_ksm+0xc0/0x1a0", "anon_vma_interval_tree_iter_first",
              ret="0x0"),                                                                             # 13
        probe("458.203531", "rd_up", "up_read+0x4/0x80"),                                             # 14
        probe("458.237510", "walk_ret", "try_to_migrate+0x8e/0xc0", "rmap_walk_ksm"),                 # 15
    ]
    store, _ = one_run(tmp_path, rows)
    (w,) = query(store, "SELECT * FROM walks")
    lw = query(store, "SELECT * FROM lock_windows ORDER BY window_no")
    # window 1: 458.203501 -> 458.203508 = 7000 ns; iterations = 3 non-zero returns (lines 4, 5, 7)
    #   rmap_one 1 (line 6); skipped 3 - 1 = 2; addr 0x7f0000001000 is outside [..0000, ..1000) on line 4
    #   only -> skip_addr 1, skip_mm = 2 - 1 = 1
    # window 2 (slow, down_read return): 458.203520 -> 458.203531 = 11000; no iterations
    assert [(x["start_ns"], x["end_ns"], x["hold_ns"], x["iterations"], x["rmap_one"], x["skipped"],
             x["skip_addr"], x["skip_mm"], x["slow"], x["evidence"]) for x in lw] == [
        (458203501000, 458203508000, 7000, 3, 1, 2, 1, 1, False, "kprobe"),
        (458203520000, 458203531000, 11000, 0, 0, 0, 0, 0, True, "kprobe")]
    # walk: 458.237510 - 458.203500 = 34010000; totals 7000 + 11000 = 18000
    assert (w["evidence"], w["walk_id"], w["duration_ns"], w["caller"], w["complete"], w["n_windows"],
            w["max_hold_ns"], w["total_hold_ns"], w["iterations"], w["max_window_iterations"], w["rmap_one"],
            w["skipped"], w["skip_addr"], w["skip_mm"], w["slow_windows"], w["early_exit"]) == (
        "kprobe", 1, 34010000, "try_to_migrate", True, 2, 11000, 18000, 3, 3, 1, 2, 1, 1, 1, False)


def test_kprobe_unpaired_and_no_iterators(tmp_path):
    rows = [
        probe("1.000000", "r_rmap_walk_ksm_0", "remove_migration_ptes+0x5a/0x90", "rmap_walk_ksm"),  # 1 no entry
        probe("1.000010", "p_rmap_walk_ksm_0", "rmap_walk_ksm+0x0/0x1a0", rwc="0xffffc90001e3b9d8"),  # 2
        probe("1.000011", "rd_try_ret", "rmap_walk_ksm+0xb1/0x1a0", "down_read_trylock", ret="1"),  # 3
        probe("1.000015", "rd_up", "up_read+0x4/0x80"),                                               # 4
        probe("1.000020", "r_rmap_walk_ksm_0", "remove_migration_ptes+0x5a/0x90", "rmap_walk_ksm"),  # 5
        probe("1.000030", "p_rmap_walk_ksm_0", "rmap_walk_ksm+0x0/0x1a0", rwc="0xffffc90001e3b9d8"),  # 6 no return
    ]
    store, _ = one_run(tmp_path, rows)
    w = walks_by_id(store)
    assert (w[1]["start_ns"], w[1]["end_ns"], w[1]["complete"], w[1]["caller"]) == (
        None, 1000000000, False, "remove_migration_ptes")
    # 1.000020 - 1.000010 = 10000; one window of 4000; iterators not probed: iterations NULL
    assert (w[2]["duration_ns"], w[2]["complete"], w[2]["n_windows"], w[2]["max_hold_ns"], w[2]["iterations"],
            w[2]["skipped"], w[2]["rmap_one"]) == (10000, True, 1, 4000, None, None, 0)
    assert (w[6]["start_ns"], w[6]["end_ns"], w[6]["complete"]) == (1000030000, None, False)


# ---------------------------------------------------------------------------------------------- (d)

SET_PTE = "e7fff7ffdae58e00"      # docs/walk-rules.md (d): (~(pte >> 9)) & (2^34 - 1) = 0x128d38
REMOVE_PTE = "8000000128d38025"   # (pte >> 12) & (2^40 - 1) = 0x128d38
CC_SET = frames("try_to_migrate_one", "rmap_walk_ksm", "try_to_migrate", "migrate_pages_batch")
CC_REMOVE = frames("remove_migration_pte", "rmap_walk_ksm", "remove_migration_ptes", "migrate_pages_batch")


def mig(ts, event, addr, pte, cc, pid=9000, cpu=1):
    return ev(ts, event, pid=pid, cpu=cpu, system="migrate", callchain=cc,
              fields={"addr": addr, "pte": pte, "order": "0"})


def test_perf_callchain_grouping(tmp_path):
    rows = [
        ev("375.500000", "mm_compaction_begin", pid=9000, system="compaction"),               # 1 run's first ts
        mig("375.507736", "set_migration_pte", "5643534d7000", SET_PTE, CC_SET, cpu=0),      # 2 walk A
        mig("375.507900", "set_migration_pte", "5643534d8000", SET_PTE, CC_SET),             # 3
        mig("375.508100", "set_migration_pte", "5643534d9000", SET_PTE, CC_SET),             # 4
        mig("375.508200", "remove_migration_pte", "5643534d7000", REMOVE_PTE, CC_REMOVE),    # 5 walk B (event)
        mig("375.508300", "remove_migration_pte", "5643534d8000", REMOVE_PTE, CC_REMOVE),    # 6
        ev("375.508400", "mm_migrate_pages", pid=9000, system="migrate"),                     # 7 breaker
        mig("375.508500", "remove_migration_pte", "5643534d8000", REMOVE_PTE, CC_REMOVE),    # 8 walk C
        mig("375.508600", "remove_migration_pte", "5643534d8000", REMOVE_PTE, CC_REMOVE),    # 9 walk D (addr repeats)
        mig("375.508700", "remove_migration_pte", "5643534d9000", REMOVE_PTE, CC_REMOVE),    # 10
        mig("375.508800", "remove_migration_pte", "5643534d9000", "8000000128d39025", CC_REMOVE),  # 11 E: other PFN
        ev("375.508900", "contention_begin", pid=9000, system="lock", callchain=CC_SET,
           fields={"lock_addr": "0xffff88811c022d70", "flags": "READ"}),                      # 12 not (d) evidence
        ev("375.600000", "ksm_exit", pid=37),                                                 # 13 run's last ts
    ]
    store, _ = one_run(tmp_path, rows)
    w = walks_by_id(store)
    assert set(w) == {2, 5, 8, 9, 11}
    a = w[2]
    # A: 375.508100 - 375.507736 = 364000 (lower bound); gaps 164000 and 200000
    assert (a["evidence"], a["caller"], a["page_type"], a["cpu"], a["start_ns"], a["end_ns"], a["duration_ns"],
            a["n_events"], a["n_windows"], a["max_hold_ns"], a["total_hold_ns"], a["rmap_one"], a["iterations"],
            a["skipped"], a["complete"]) == (
        "perf-callchain", "try_to_migrate", "ksm", 0, 375507736000, 375508100000, 364000, 3, 2, 200000, 364000,
        3, None, None, True)
    assert (w[5]["caller"], w[5]["n_events"], w[5]["duration_ns"]) == ("remove_migration_ptes", 2, 100000)
    # a one-event walk has no gap: 0 windows, holds NULL
    assert (w[8]["n_events"], w[8]["n_windows"], w[8]["max_hold_ns"], w[8]["duration_ns"]) == (1, 0, None, 0)
    assert (w[9]["n_events"], w[9]["duration_ns"]) == (2, 100000)
    assert w[11]["n_events"] == 1
    lw = query(store, "SELECT window_no, start_ns, end_ns, hold_ns FROM lock_windows WHERE walk_id = 2 ORDER BY 1")
    assert [tuple(x.values()) for x in lw] == [(1, 375507736000, 375507900000, 164000),
                                               (2, 375507900000, 375508100000, 200000)]


def test_perf_callchain_addr_repeat_is_sequential_and_trace_edges(tmp_path):
    A, B = "7f0000001000", "7f0000002000"
    rows = [mig(f"2.00000{i}", "set_migration_pte", a, SET_PTE, CC_SET, pid=1)
            for i, a in enumerate([A, A, A, B, B], start=1)]
    store, _ = one_run(tmp_path, rows)
    w = walks_by_id(store)
    # greedy: [A] [A] [A B] [B]  (a naive "k-th occurrence" split would give [A] [A] [A B B])
    assert {k: v["n_events"] for k, v in w.items()} == {1: 1, 2: 1, 3: 2, 5: 1}
    # the first walk starts at the run's first ts, the last ends at its last ts: not wholly inside
    assert {k: v["complete"] for k, v in w.items()} == {1: False, 2: True, 3: True, 5: False}


# ---------------------------------------------------------------------------------------------- (e)


def test_counter_lines_standalone(tmp_path):
    rows = [
        # counter lines as trace_printk prints them (the event name is the calling function)
        ev("3000.000273", "rmap_walk_ksm", pid=33, cpu=0, comm="kcompactd0",
           payload="Time_ms=221.104 Nr_iteration_total=20228 Skip_addr_out_of_range=20227 Skip_mm_mismatch=0",
           fields={"Time_ms": "221.104", "Nr_iteration_total": "20228", "Skip_addr_out_of_range": "20227",
                   "Skip_mm_mismatch": "0"}),
        ev("3000.000861", "rmap_walk_ksm", pid=33, cpu=1, comm="kcompactd0",
           payload="hold_ns=194860173 iterations=19590 skip_addr=19589 skip_mm=0 rmap_one=1",
           fields={"hold_ns": "194860173", "iterations": "19590", "skip_addr": "19589", "skip_mm": "0",
                   "rmap_one": "1"}),
    ]
    store, _ = one_run(tmp_path, rows)
    w = walks_by_id(store)
    # line 1: 221.104 ms = 221104000 ns; start = 3000000273000 - 221104000 = 2999779169000
    # skipped = skip_addr + skip_mm = 20227; rmap_one not printed -> NULL
    assert (w[1]["evidence"], w[1]["start_ns"], w[1]["end_ns"], w[1]["duration_ns"], w[1]["complete"],
            w[1]["n_windows"], w[1]["max_hold_ns"], w[1]["iterations"], w[1]["skipped"], w[1]["skip_addr"],
            w[1]["skip_mm"], w[1]["rmap_one"]) == (
        "counters", 2999779169000, 3000000273000, 221104000, True, 1, 221104000, 20228, 20227, 20227, 0, None)
    # line 2: start = 3000000861000 - 194860173 = 2999806000827
    assert (w[2]["start_ns"], w[2]["duration_ns"], w[2]["rmap_one"], w[2]["skipped"], w[2]["cpu"]) == (
        2999806000827, 194860173, 1, 19589, 1)
    lw = {r["walk_id"]: r for r in query(store, "SELECT * FROM lock_windows")}
    assert (lw[1]["counters_consistent"], lw[2]["counters_consistent"]) == (None, True)
    assert (lw[2]["start_ns"], lw[2]["hold_ns"], lw[2]["evidence"], lw[2]["window_no"]) == (
        2999806000827, 194860173, "counters", 1)


def test_counter_lines_grouped_by_summary_and_inside_other_walks(tmp_path):
    win = lambda ts, h, it, one, pid=50: ev(ts, "ksm_window", pid=pid, payload=f"hold_ns={h} iterations={it} rmap_one={one}",
                                            fields={"hold_ns": str(h), "iterations": str(it), "rmap_one": str(one)})
    rows = [
        win("10.000010", 3000, 5, 1),                                      # 1 \ grouped by the summary (line 3)
        win("10.000020", 4000, 6, 0),                                      # 2 /
        ev("10.000030", "ksm_walk", pid=50, payload="walk_ns=25000 windows=2 iters=11 rmap_one=1",
           fields={"walk_ns": "25000", "windows": "2", "iters": "11", "rmap_one": "1", "hold_max_ns": "4000",
                   "cb": "try_to_migrate_one"}),                           # 3
        win("10.000040", 1000, 2, 2),                                      # 4 no summary follows: own walk
        tp("11.000000", "rmap_walk_start", pid=60),                        # 5 tracepoint walk
        win("11.000002", 1000, 9, 1, pid=60),                              # 6 \ inside it: its windows
        win("11.000005", 2000, 4, 1, pid=60),                              # 7 /
        win("11.000006", 500, 1, 1, pid=61),                               # 8 other pid: own walk
        tp("11.000009", "rmap_walk_end", pid=60),                          # 9
    ]
    store, _ = one_run(tmp_path, rows)
    w = walks_by_id(store)
    assert set(w) == {1, 4, 5, 8}
    # grouped: end = 10.000030, duration = walk_ns 25000, start = 10000030000 - 25000 = 10000005000
    # holds 3000 + 4000; iterations 5 + 6 = 11; rmap_one 1; skipped (5-1) + (6-0) = 10
    g = w[1]
    assert (g["evidence"], g["start_ns"], g["end_ns"], g["duration_ns"], g["complete"], g["n_windows"],
            g["max_hold_ns"], g["total_hold_ns"], g["iterations"], g["max_window_iterations"], g["rmap_one"],
            g["skipped"], g["caller"]) == (
        "counters", 10000005000, 10000030000, 25000, True, 2, 4000, 7000, 11, 6, 1, 10, "try_to_migrate")
    assert (w[4]["duration_ns"], w[4]["start_ns"], w[4]["n_windows"]) == (1000, 10000039000, 1)
    # tracepoint walk filled by its two lines: 2 windows, max 2000, total 3000, iterations 13, rmap_one 2,
    # skipped (9-1) + (4-1) = 11; its own duration 11.000009 - 11.000000 = 9000
    t = w[5]
    assert (t["evidence"], t["duration_ns"], t["n_windows"], t["max_hold_ns"], t["total_hold_ns"], t["iterations"],
            t["max_window_iterations"], t["rmap_one"], t["skipped"], t["skip_addr"]) == (
        "tracepoint", 9000, 2, 2000, 3000, 13, 9, 2, 11, None)
    lw = query(store, "SELECT window_no, start_ns, end_ns, hold_ns, iterations FROM lock_windows "
                      "WHERE walk_id = 5 ORDER BY window_no")
    # window 1: end 11.000002, start = 11000002000 - 1000 = 11000001000
    assert [tuple(x.values()) for x in lw] == [(1, 11000001000, 11000002000, 1000, 9),
                                               (2, 11000003000, 11000005000, 2000, 4)]
    assert w[8]["pid"] == 61


# ---------------------------------------------------------------------------------------------- (f)


def cb(ts, pid, addr, flags, cc=None, comm="ksm_rmap", **kw):
    return ev(ts, "contention_begin", pid=pid, comm=comm, callchain=cc, fields={"lock_addr": addr, "flags": flags},
              **kw)


def ce(ts, pid, addr, ret="0", **kw):
    return ev(ts, "contention_end", pid=pid, fields={"lock_addr": addr, "ret": ret}, **kw)


def test_lock_waits_pairing_attribution_and_caller(tmp_path):
    AV, MM = "0xffff88811c022d70", "0xffff888100aa0000"
    walker_cc = frames("__traceiter_contention_begin", "rwsem_down_read_slowpath", "down_read", "rmap_walk_ksm",
                       "try_to_migrate")
    writer_cc = frames("rwsem_down_write_slowpath", "down_write", "vma_prepare", "__split_vma")
    rows = [
        ce("516.800000", 11, AV),                                     # 1 end without begin
        cb("516.827366", 11216, AV, "READ", walker_cc),               # 2 walker waits (slow window)
        cb("516.827370", 11216, "0xffff88813f000000", "SPIN", frames("native_queued_spin_lock_slowpath",
                                                                     "_raw_spin_lock_irq", "rwsem_down_read_slowpath")),
        ce("516.827371", 11216, "0xffff88813f000000"),                 # 4 closes the nested spin (3)
        cb("516.827400", 300, AV, "WRITE", writer_cc, comm="mprotect"),  # 5 writer on the same rwsem
        cb("516.827500", 301, MM, "WRITE", frames("rwsem_down_write_slowpath", "down_write", "do_mprotect_pkey")),
        ce("516.830000", 11216, AV),                                  # 7 closes 2
        ce("516.835000", 300, AV, ret="-4"),                          # 8 closes 5, interrupted
        cb("516.900000", 302, AV, "READ"),                            # 9 never ends
    ]
    store, _ = one_run(tmp_path, rows)
    lw = {r["start_ns"]: r for r in query(store, "SELECT * FROM lock_waits")}
    assert set(lw) == {516827366000, 516827370000, 516827400000}
    r = lw[516827366000]
    # 516.830000 - 516.827366 = 2634 us
    assert (r["pid"], r["lock_addr"], r["flags"], r["end_ns"], r["wait_ns"], r["anon_vma_lock"], r["ret"],
            r["interrupted"], r["caller"]) == (11216, AV, "READ", 516830000000, 2634000, True, 0, False,
                                               "rmap_walk_ksm")
    s = lw[516827370000]
    assert (s["wait_ns"], s["anon_vma_lock"], s["caller"]) == (1000, False, None)
    wr = lw[516827400000]
    assert (wr["comm"], wr["wait_ns"], wr["anon_vma_lock"], wr["ret"], wr["interrupted"], wr["caller"]) == (
        "mprotect", 7600000, True, -4, True, "vma_prepare")
    (u,) = query(store, "SELECT unpaired_begins, unpaired_ends FROM _lock_waits_unpaired")
    assert (u["unpaired_begins"], u["unpaired_ends"]) == (2, 1)  # lines 6 and 9; line 1


def test_lock_waits_without_callchains_attribution_unknown(tmp_path):
    rows = [cb("1.000000", 5, "000000001f538f6f", "READ"), ce("1.000004", 5, "000000001f538f6f")]
    store, _ = one_run(tmp_path, rows)
    (r,) = query(store, "SELECT * FROM lock_waits")
    assert (r["wait_ns"], r["anon_vma_lock"], r["caller"], r["callchain"]) == (4000, None, None, None)


def test_views_empty_store_and_two_runs_keep_ids_apart(tmp_path):
    from ksmtrace.store import Store
    from test_walks_support import add_run

    store = Store(tmp_path / "s")
    store.ensure()
    for v in ("walks", "lock_windows", "lock_waits"):
        assert query(store, f"SELECT count(*) AS n FROM {v}")[0]["n"] == 0
    r1 = add_run(store, "before", fg(FG_PLAIN))
    r2 = add_run(store, "after", fg(FG_SLOW))
    w = query(store, "SELECT run_id, label, walk_id, duration_ns FROM walks ORDER BY label")
    assert [(x["run_id"], x["label"], x["duration_ns"]) for x in w] == [(r2, "after", 34020000),
                                                                       (r1, "before", 34010000)]
    lw = query(store, "SELECT label, count(*) AS n FROM lock_windows GROUP BY 1 ORDER BY 1")
    assert [(x["label"], x["n"]) for x in lw] == [("after", 2), ("before", 2)]


def test_retval_zero_and_key_case_helpers(tmp_path):
    from ksmtrace.store import Store

    store = Store(tmp_path / "s")
    store.ensure()
    cases = {"0": True, "0x0": True, "0x00": True, "-0": True, "0x1": False, "0x10": False, "10": False,
             "-22": False, "-4": False, "0xffffea0004a35e40": False, "0x0000000000000001": False, "": False}
    for v, want in cases.items():
        assert query(store, f"SELECT _is_zero('{v}') AS z")[0]["z"] is want, v
    assert query(store, "SELECT _is_zero(NULL) AS z")[0]["z"] is None
    m = query(store, "SELECT _lower_keys(MAP {'Time_ms': '1.5', 'hold_ns': '3'}) AS m")[0]["m"]
    assert dict(m) == {"time_ms": "1.5", "hold_ns": "3"}
