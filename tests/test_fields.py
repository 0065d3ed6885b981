"""ksmtrace.ingest.fields: generic key=value rule, per-event patterns, map output."""
from __future__ import annotations

import polars as pl
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ksmtrace.ingest.fields import MAP_TYPE, normalize_ptr, parse_fields

from conftest import examples


def one(payload, event=None):
    ev = None if event is None else pl.Series([event], dtype=pl.String)
    arr = parse_fields(pl.Series([payload], dtype=pl.String), ev)
    assert arr.type == MAP_TYPE
    return arr.to_pylist()[0]


def test_generic_spaces_and_equals_in_values():
    assert one("comm=my prog-x pid=1") == [("comm", "my prog-x"), ("pid", "1")]
    assert one("my_field=foo=bar") == [("my_field", "foo=bar")]
    assert one("vec=1 [action=TIMER]") == [("vec", "1 [action=TIMER]")]


def test_trailing_comma_and_padding_stripped():
    assert one("addr=7f956e0b2000, pte=e7fff7ffdae58e00 order=0") == [
        ("addr", "7f956e0b2000"), ("pte", "e7fff7ffdae58e00"), ("order", "0")]
    assert one("node=0 zone=Normal   order=3") == [("node", "0"), ("zone", "Normal"), ("order", "3")]


def test_sched_switch_arrow_is_not_part_of_a_value():
    f = dict(one("prev_comm=swapper/0 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=bash next_pid=7",
                 "sched_switch"))
    assert f["prev_state"] == "R" and f["next_comm"] == "bash" and f["next_pid"] == "7"


def test_prefixed_and_probe_payloads():
    assert one("pwmchip0.0: period=10 duty_cycle=5") == [("prefix", "pwmchip0.0"), ("period", "10"),
                                                          ("duty_cycle", "5")]
    assert one("(rmap_walk_ksm+0x4/0x1a0) folio=0xffffea0004a35e40 try_lock=0", "walk") == [
        ("folio", "0xffffea0004a35e40"), ("try_lock", "0")]


def test_per_event_patterns():
    assert one("000000001f538f6f (flags=READ|WRITE)", "contention_begin") == [
        ("lock_addr", "000000001f538f6f"), ("flags", "READ|WRITE")]
    assert one("00000000d6391453 (ret=-4)", "contention_end") == [("lock_addr", "00000000d6391453"), ("ret", "-4")]
    assert one("seq 834 rmap size 0", "ksm_start_scan") == [("seq", "834"), ("rmap_size", "0")]
    assert one("mm 0000000013462d9c", "ksm_enter") == [("mm", "0000000013462d9c")]
    assert dict(one("ksm pfn 2021953 rmap_item 0000000097b825a5 mm 0000000013462d9c error 0",
                    "ksm_merge_with_ksm_page")) == {
        "ksm_page": "true", "pfn": "2021953", "rmap_item": "0000000097b825a5", "mm": "0000000013462d9c",
        "error": "0"}
    assert dict(one("pfn 1 rmap_item 2 mm 3 error -12", "ksm_merge_with_ksm_page"))["ksm_page"] == "false"
    assert one("NR 172 = 0", "sys_exit") == [("nr", "172"), ("ret", "0")]
    # without the event name no per-event pattern applies, and nothing parses
    assert one("000000001f538f6f (flags=READ)") == []


def test_nothing_parses_gives_empty_map_and_nulls_are_ok():
    arr = parse_fields(pl.Series(["plain text", None, ""], dtype=pl.String))
    assert arr.to_pylist() == [[], [], []]
    assert parse_fields(pl.Series([], dtype=pl.String)).to_pylist() == []


def test_normalize_ptr():
    s = pl.Series(["0xFFFF88811c022d70", "ffff88811c022d70", "1f538f6f", "zz"])
    assert pl.select(normalize_ptr(pl.lit(s))).to_series().to_list() == [
        "ffff88811c022d70", "ffff88811c022d70", "000000001f538f6f", None]


KEY = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
# values: no leading/trailing space, no " key=" inside, no trailing comma
VAL = st.from_regex(r"[A-Za-z0-9/<>()\[\]:.+-]([A-Za-z0-9/<>()\[\]:.=+-]| (?![A-Za-z_]))*", fullmatch=True).filter(
    lambda v: not v.endswith(" ") and not v.endswith(",") and " ==>" not in v and len(v) < 40)


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.tuples(KEY, VAL), min_size=1, max_size=6), st.booleans())
def test_roundtrip_generic(kvs, commas):
    sep = ", " if commas else " "
    payload = sep.join(f"{k}={v}" for k, v in kvs)
    assert one(payload, "some_event") == [(k, v) for k, v in kvs]


def test_vectorised_many_rows_keep_row_alignment():
    pays = [f"a={i} b=x y" if i % 3 else "nothing" for i in range(1000)]
    got = parse_fields(pl.Series(pays)).to_pylist()
    for i, g in enumerate(got):
        assert g == ([("a", str(i)), ("b", "x y")] if i % 3 else [])
    assert isinstance(parse_fields(pl.Series(pays)), pa.Array)


def test_template_fast_path_matches_generic(monkeypatch):
    """Events with many rows take the split/slice template path; results equal the generic rule,
    including rows that do not fit the template (spaces in values, other keys)."""
    import sys

    F = sys.modules[parse_fields.__module__]

    pays = []
    for i in range(200):
        if i % 17 == 0:
            pays.append(f"comm=my prog-{i} pid={i} prio=120")
        elif i % 13 == 0:
            pays.append(f"other={i}")
        else:
            pays.append(f"comm=prog{i} pid={i} prio=120")
    sw = [f"prev_comm=a prev_pid={i} prev_state=R ==> next_comm=b next_pid={i + 1}" for i in range(100)]
    p = pl.Series(pays + sw)
    e = pl.Series(["sched_wakeup"] * 200 + ["sched_switch"] * 100)
    fast = parse_fields(p, e).to_pylist()
    monkeypatch.setattr(F, "TEMPLATE_MIN_ROWS", 10**9)
    slow = parse_fields(p, e).to_pylist()
    assert fast == slow
    assert fast[17] == [("comm", "my prog-17"), ("pid", "17"), ("prio", "120")]
    assert fast[200][2] == ("prev_state", "R") and fast[200][3] == ("next_comm", "b")


def test_a_value_ending_in_a_tab_reads_the_same_in_a_big_event_group_and_alone(monkeypatch):
    """A row's fields do not depend on how many rows its event has in the chunk: the template path (32+ rows)
    ends a value as the generic rule does (trailing tabs, one comma, trailing tabs)."""
    import sys

    F = sys.modules[parse_fields.__module__]
    pays = [f"a=x{i}\t, b={i}\t c=z" if i % 3 == 0 else f"a=x{i} b={i} c=z" for i in range(60)]
    p, e = pl.Series(pays), pl.Series(["ev"] * 60)
    big = parse_fields(p, e).to_pylist()
    monkeypatch.setattr(F, "TEMPLATE_MIN_ROWS", 10**9)
    assert big == parse_fields(p, e).to_pylist()
    assert big[0] == [("a", "x0"), ("b", "0"), ("c", "z")]
    assert [parse_fields(pl.Series([x]), pl.Series(["ev"])).to_pylist()[0] for x in pays] == big


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(st.lists(KEY, min_size=1, max_size=5, unique=True),
       st.lists(st.lists(VAL, min_size=5, max_size=5), min_size=40, max_size=60))
def test_fast_paths_equal_generic_rule_with_spaces_in_values(keys, rows):
    """Many rows of one event (the template and values-with-spaces fast paths) parse exactly as the
    generic rule does, and as the payloads were rendered."""
    import sys

    F = sys.modules[parse_fields.__module__]
    pays = [" ".join(f"{k}={v}" for k, v in zip(keys, vals)) for vals in rows]
    p, e = pl.Series(pays), pl.Series(["some_event"] * len(pays))
    fast = parse_fields(p, e).to_pylist()
    old = F.TEMPLATE_MIN_ROWS
    F.TEMPLATE_MIN_ROWS = 10**9
    try:
        slow = parse_fields(p, e).to_pylist()
    finally:
        F.TEMPLATE_MIN_ROWS = old
    assert fast == slow == [list(zip(keys, vals)) for vals in rows]


def test_payload_starting_with_arrow_does_not_leak_into_previous_row():
    got = parse_fields(pl.Series(["a=1 b=x y", "==> next_comm=b next_pid=2"])).to_pylist()
    assert got == [[("a", "1"), ("b", "x y")], [("next_comm", "b"), ("next_pid", "2")]]
