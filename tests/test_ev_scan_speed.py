"""The shortcuts queries/11_scan.sql (_ev_scan) takes for speed keep exactly the rows the plain tests keep.

_ev_scan tests a payload for the counter / summary keys with case-sensitive contains() (s=, S=, l=, L=) before
it lowers the payload; that is exact only because DuckDB's lower() maps code point to code point and maps
nothing but 's'/'S' to 's', 'l'/'L' to 'l' and '=' to '='. The first test checks that fact of DuckDB over every
code point; the others compare the ev_kind of hand-picked and generated rows with the plain rule (the lowered
payload contains '_ns=', 'ime_ms=', 'terations=' or 'teration_total=', then the lowered field keys decide).
"""
from __future__ import annotations

import itertools

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from walks_support import ev, frames, one_run, query

#: the plain classification of a row with no kind and no callchain (11_scan.sql before its prefilter)
PLAIN_COUNTER = """
    CASE WHEN kind IS NULL AND fields IS NOT NULL
              AND (payload IS NULL OR contains(lower(payload), '_ns=') OR contains(lower(payload), 'ime_ms=')
                   OR contains(lower(payload), 'terations=') OR contains(lower(payload), 'teration_total='))
         THEN CASE WHEN list_has_any(list_transform(map_keys(fields), lambda x: lower(x)),
                                     ['hold_ns', 'time_ms', 'iterations', 'nr_iteration_total']) THEN 'counter'
                   WHEN list_contains(list_transform(map_keys(fields), lambda x: lower(x)), 'walk_ns')
                       THEN 'summary' END
    END"""


def test_lower_maps_only_s_l_and_equals_to_s_l_and_equals():
    con = duckdb.connect()
    points = "(SELECT i::INTEGER AS i FROM range(1, 1114112) t(i) WHERE i < 55296 OR i > 57343) p"
    # one code point in, one code point out: a substring of lower(x) comes from a substring of x
    assert con.execute(f"SELECT count(*) FROM {points} WHERE length(lower(chr(i))) <> 1").fetchone() == (0,)
    got = con.execute(f"SELECT list(chr(i) ORDER BY i) FROM {points} WHERE lower(chr(i)) IN ('s', 'l', '=')"
                      ).fetchone()[0]
    assert sorted(got) == sorted(["s", "S", "l", "L", "="])


def _kinds(tmp_path, payload_fields):
    rows = [ev(f"1.{i:06d}", "ksm_printk", payload=p, fields=f) for i, (p, f) in enumerate(payload_fields)]
    store, _ = one_run(tmp_path, rows)
    got = {r["line_no"]: r["ev_kind"] for r in query(store, "SELECT line_no, ev_kind::VARCHAR AS ev_kind FROM _ev_scan")}
    want = {r["line_no"]: r["k"] for r in query(store, f"SELECT line_no, {PLAIN_COUNTER} AS k FROM events")}
    return got, {k: v for k, v in want.items() if v is not None}


FRAGMENTS = ["hold_ns=", "HOLD_NS=", "Time_ms=", "TİME_MS=", "iterations=", "İTERATIONS=", "Nr_iteration_total=",
             "NR_ITERATİON_TOTAL=", "walk_ns=", "Walk_NS=", "_nſ=", "_ns =", "s=", "l=", "ns:", "KSM", "x=1", " ",
             "é", "≠", "="]
KEYS = [{"hold_ns": "5"}, {"Time_ms": "0.5"}, {"ITERATIONS": "3"}, {"nr_iteration_total": "7"},
        {"walk_ns": "9", "cb": "try_to_unmap_one"}, {"other": "1"}, {}]


def test_counter_prefilter_keeps_the_plain_rows(tmp_path):
    pairs = [(a + b, f) for (a, b), f in itertools.product(itertools.product(FRAGMENTS, repeat=2), KEYS)]
    pairs += [(None, f) for f in KEYS]
    got, want = _kinds(tmp_path, pairs)
    assert got == want
    # the cases that matter are there: counters and summaries kept, upper case and İ-payloads included
    assert {"counter", "summary"} <= set(want.values())
    assert sum(v == "counter" for v in want.values()) > 100


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.one_of(st.none(), st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)),
                                                       max_size=5).map("".join)),
                          st.sampled_from(KEYS)), min_size=1, max_size=40))
def test_counter_prefilter_keeps_the_plain_rows_generated(tmp_path_factory, payload_fields):
    got, want = _kinds(tmp_path_factory.mktemp("ev"), payload_fields)
    assert got == want


def test_callchain_rows_need_a_walker_frame_and_an_event_not_ignored(tmp_path):
    walker = frames("trace_event_raw_event_migrate", "rmap_walk_anon", "rmap_walk", "try_to_migrate")
    no_walker = frames("trace_event_raw_event_migrate", "rmap_walk", "try_to_migrate")
    null_sym = [{"addr": "ffffffff81000000", "sym": None, "off": None, "dso": None}] + walker
    rows = [
        ev("1.000001", "set_migration_pte", callchain=walker, fields={"addr": "7f00", "pte": "0x1"}),  # 1 kept
        ev("1.000002", "set_migration_pte", callchain=no_walker, fields={"addr": "7f00"}),  # 2 no walker frame
        ev("1.000003", "contention_begin", callchain=walker, fields={"lock": "0x1"}),  # 3 ignored event
        ev("1.000004", "remove_migration_pte", callchain=null_sym, fields={"addr": "7f00"}),  # 4 kept
        ev("1.000005", "remove_migration_pte", callchain=[], fields={"addr": "7f00"}),  # 5 empty callchain
    ]
    store, _ = one_run(tmp_path, rows)
    got = {r["line_no"]: (r["ev_kind"], r["cc_walker"], r["cc_caller"])
           for r in query(store, "SELECT line_no, ev_kind::VARCHAR AS ev_kind, cc_walker, cc_caller FROM _ev_rare()")}
    assert got == {1: ("callchain", "rmap_walk_anon", "try_to_migrate"),
                   4: ("callchain", "rmap_walk_anon", "try_to_migrate")}
