"""The compiled key=value split (ingest/native/fields.c) gives the same maps as the Python rules of
ksmtrace.ingest.fields: generated payloads (hostile ones included), the payloads of every real trace in
sample_traces/ and of the public corpus, and broken Arrow buffers (an error, never a crash)."""
from __future__ import annotations

import contextlib

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import ROOT, examples
from ksmtrace.ingest import _native, detect, fields
from ksmtrace.ingest.base import ParseStats
from ksmtrace.ingest.source import TraceSource

MOD = _native.load("fields")
pytestmark = pytest.mark.skipif(MOD is None, reason="the compiled fields module is not built or is switched off (KSMTRACE_NATIVE=0)")


@contextlib.contextmanager
def native(on: bool):
    prev = _native.use(on)
    try:
        yield
    finally:
        _native.use(prev)


def long_rows(lg: pl.DataFrame) -> list[tuple]:
    """(row, key, value) in field order (ord values differ between the paths; their order within a row does not)."""
    lg = lg.with_row_index("_i").sort(["row", "ord", "_i"])
    return list(zip(lg.get_column("row").to_list(), lg.get_column("key").to_list(), lg.get_column("value").to_list()))


def assert_same(payloads, events=None):
    p = payloads if isinstance(payloads, pl.Series) else pl.Series("payload", payloads, dtype=pl.String)
    e = events if events is None or isinstance(events, pl.Series) else pl.Series("event", events, dtype=pl.String)
    with native(False):
        want = fields.parse_fields(p, e)
        want_lf = fields.fields_long(p, e)
    with native(True):
        got = fields.parse_fields(p, e)
        got_lf = fields.fields_long(p, e)
    assert got_lf.schema == want_lf.schema
    got_long, want_long = long_rows(got_lf), long_rows(want_lf)
    assert got.type == want.type == fields.MAP_TYPE
    if not got.equals(want):
        g, w = got.to_pylist(), want.to_pylist()
        bad = next(i for i in range(len(g)) if g[i] != w[i])
        raise AssertionError(f"row {bad}: payload {p[bad]!r} event {None if e is None else e[bad]!r}\n"
                             f"  native {g[bad]!r}\n  pure   {w[bad]!r}")
    assert got_long == want_long


# ---------------------------------------------------------------- generated payloads

KEYS = st.sampled_from(["a", "comm", "pid", "prev_state", "x.y", "_k", "K9", "addr", "next_comm"]) | st.from_regex(
    r"[A-Za-z_][A-Za-z0-9_.]{0,5}", fullmatch=True)
ATOMS = ["", " ", "  ", ",", ", ", "=", "==>", "==", "=>", "\t", "\t,", ",\t", ")", "(", ":", ": ", "-", "0", "12",
         "x", "ff", "é", "\u00a0", "\u3000", "\u2028", "\u0663", "\U0001f600", "\x00", "\x01", "\n", "\r", "\x0b",
         "\x1c", "\x7f", "\x85", "ksm ", "pfn", "(flags=", "(ret=", "a=", " b=", "my prog-x"]
TEXT = st.lists(st.sampled_from(ATOMS) | st.text(max_size=3), max_size=6).map("".join)
NOSPACE = st.lists(st.sampled_from([a for a in ATOMS if " " not in a]) | st.text(max_size=3).filter(
    lambda t: " " not in t), max_size=4).map("".join)
SEPS = st.sampled_from([" ", " ", " ", "  ", ", ", ",", "\t", " ==> ", " ==>", "==> ", ""])


@st.composite
def generic_payload(draw):
    parts = []
    if draw(st.booleans()):
        # text before the first key: a probe's (sym+off), a "name:" prefix, anything
        parts.append(draw(st.sampled_from(["(rmap_walk_ksm+0x4/0x1a0)", "pwmchip0.0:", "é:", "a\u00a0b:", "x:",
                                           "==>", ":", "name:"]) | TEXT))
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.integers(0, 9))
        if kind < 7:
            parts.append(f"{draw(KEYS)}={draw(TEXT if kind < 3 else NOSPACE)}")
        elif kind == 7:
            parts.append("==>")
        else:
            parts.append(draw(TEXT))
    out = ""
    for i, t in enumerate(parts):
        out += (draw(SEPS) if i else "") + t
    return out + draw(st.sampled_from(["", "", " ", ",", "\t", "  ", " ==>"]))


DIG = st.sampled_from(["0", "7", "-4", "12345", "", "-", "--1", "1a", "\u0663", "0x1f"]) | TEXT
WORD = st.sampled_from(["000000001f538f6f", "ffff88811c022d70", "", "a b", "x\ty", "é", "\u00a0", ")"]) | NOSPACE
SKELETONS = {
    "contention_begin": [WORD, " (flags=", st.sampled_from(["READ", "WRITE|SPIN", "", "a)b", "é"]) | TEXT, ")"],
    "contention_end": [WORD, " (ret=", DIG, ")"],
    "ksm_start_scan": ["seq ", DIG, " rmap size ", DIG],
    "ksm_stop_scan": ["seq ", DIG, " rmap size ", DIG],
    "ksm_enter": ["mm ", WORD],
    "ksm_exit": ["mm ", WORD],
    "ksm_merge_one_page": [st.sampled_from(["", "ksm ", "ksm", "ksm  "]), "pfn ", DIG, " rmap_item ", WORD, " mm ",
                           WORD, " error ", DIG],
    "ksm_merge_with_ksm_page": [st.sampled_from(["", "ksm ", "KSM "]), "pfn ", DIG, " rmap_item ", WORD, " mm ", WORD,
                                " error ", DIG],
    "ksm_remove_ksm_page": ["pfn ", DIG],
    "ksm_remove_rmap_item": ["pfn ", DIG, " rmap_item ", WORD, " mm ", WORD],
    "ksm_advisor": ["ksm scan time ", DIG, " pages_to_scan ", DIG, " cpu percent ", DIG],
    "sys_enter": ["NR ", DIG, " (", TEXT, ")"],
    "sys_exit": ["NR ", DIG, " = ", DIG],
}
assert set(SKELETONS) == set(fields.EVENT_PATTERNS)


@st.composite
def pattern_payload(draw, event):
    s = "".join(p if isinstance(p, str) else draw(p) for p in SKELETONS[event])
    cut = draw(st.sampled_from([None, None, None, "cut", "tail", "head"]))
    if cut == "cut":
        s = s[:draw(st.integers(0, len(s)))]
    elif cut == "tail":
        s += draw(TEXT)
    elif cut == "head":
        s = draw(TEXT) + s
    return s


GENERIC_EVENTS = ["sched_switch", "sched_wakeup", "my_probe", "", "ksm"]
EVENTS = st.sampled_from(GENERIC_EVENTS + sorted(fields.EVENT_PATTERNS) + [None])


def payload_for(event):
    if event in fields.EVENT_PATTERNS:
        return pattern_payload(event) | generic_payload()
    return generic_payload()


@st.composite
def chunk(draw):
    """Rows of a few events; some groups are big enough (>= TEMPLATE_MIN_ROWS) for the template paths, with
    rows that keep the first row's keys and vary the values (tabs, commas, spaces, non-ASCII)."""
    rows: list[tuple[str | None, str | None]] = []
    for _ in range(draw(st.integers(1, 4))):
        ev = draw(EVENTS)
        size = draw(st.sampled_from([1, 2, 5, fields.TEMPLATE_MIN_ROWS + 3]))
        keys = draw(st.lists(KEYS, min_size=1, max_size=4))
        arrow = draw(st.sampled_from([None, 0, 1, len(keys)]))
        for i in range(size):
            how = draw(st.integers(0, 9))
            if how < 5 and ev not in fields.EVENT_PATTERNS:
                toks = [f"{k}={draw(NOSPACE if how < 4 else TEXT)}" for k in keys]
                if arrow is not None:
                    toks.insert(min(arrow, len(toks)), "==>")
                rows.append((ev, " ".join(toks)))
            elif how < 9:
                rows.append((ev, draw(payload_for(ev))))
            else:
                rows.append((ev, draw(st.sampled_from([None, "", " ", "==>", "a=", "\t"]))))
    order = draw(st.permutations(range(len(rows))))
    return [rows[i] for i in order]


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunk())
@example([("sched_switch", "prev_comm=a prev_state=R ==> next_comm=b")])
@example([("x", f"a={i}\t b=1") for i in range(40)])
@example([("x", f"a={i}\t,") for i in range(40)])
@example([("x", f"a={i},\t b={i}") for i in range(40)] + [("x", "a=1 b=2")])
@example([("x", "é\u00a0: a=1"), ("x", "é: a=1"), ("x", "\u00a0: a=1"), ("x", "n\u2028x: a=1 b=2")])
@example([("contention_begin", "\u00a0 (flags=READ)"), ("ksm_enter", "mm a\u0663"), ("ksm_start_scan", "seq \u0663 rmap size 1")])
@example([("sys_enter", "NR 1 ()"), ("sys_exit", "NR -1 = -22x"), ("ksm_merge_one_page", "ksm pfn 1 rmap_item r mm m error -")])
@example([(None, None), ("", ""), (None, "a=1"), ("ksm_enter", None)])
@example([("ksm_enter", None), ("x", None)])
@example([("ksm_enter", "no match")])
def test_native_split_matches_python_rules(rows):
    assert_same([p for _, p in rows], [e for e, _ in rows])


@settings(max_examples=examples(100), deadline=None)
@given(st.lists(generic_payload() | st.none(), max_size=20))
def test_without_event_names(payloads):
    assert_same(payloads)


VALID = {
    "contention_begin": "000000001f538f6f (flags=READ|WRITE)", "contention_end": "00000000d6391453 (ret=-4)",
    "ksm_start_scan": "seq 834 rmap size 0", "ksm_stop_scan": "seq -1 rmap size 12", "ksm_enter": "mm 13462d9c",
    "ksm_exit": "mm 0000000013462d9c",
    "ksm_merge_one_page": "ksm pfn 2021953 rmap_item 0000000097b825a5 mm 0000000013462d9c error 0",
    "ksm_merge_with_ksm_page": "pfn 1 rmap_item 2 mm 3 error -12", "ksm_remove_ksm_page": "pfn 77",
    "ksm_remove_rmap_item": "pfn 5 rmap_item ab mm cd",
    "ksm_advisor": "ksm scan time -3 pages_to_scan 100 cpu percent 7", "sys_enter": "NR 172 (1, 2, 3)",
    "sys_exit": "NR 172 = 0",
    "sched_switch": "prev_comm=my prog prev_pid=0 prev_state=R+ ==> next_comm=bash next_pid=7",
    "pwm": "pwmchip0.0: period=10 duty_cycle=5,", "probe": "(sym+0x4/0x1a0) folio=0xffff, try_lock=0 s=a=b",
}
assert set(fields.EVENT_PATTERNS) <= set(VALID)
#: one character inserted at every position of a valid payload: every ASCII space and control class, non-ASCII
#: spaces and digits, the characters the patterns and the generic rule look for
INSERT = [" ", "\t", "\n", "\x0b", "\x0c", "\r", "\x1c", "\x00", "\x7f", "\x85", "é", "\u00a0", "\u2003",
          "\u0663", ")", "(", "-", "0", "a", "=", ",", ":", "==>"]


def test_every_one_character_edit_of_a_valid_payload():
    pays, evs = [], []
    for ev, s in VALID.items():
        for i in range(len(s) + 1):
            for c in INSERT:
                pays.append(s[:i] + c + s[i:])
            if i < len(s):
                pays.append(s[:i] + s[i + 1:])
        evs += [ev] * (len(pays) - len(evs))
    assert_same(pays, evs)
    # and the same rows as one event's big group (the template paths of the Python rules)
    assert_same(pays, ["one_event"] * len(pays))


def test_fields_long_matches_on_a_big_mixed_chunk():
    rng = np.random.default_rng(7)
    pays, evs = [], []
    for i in range(3000):
        r = rng.integers(0, 6)
        if r == 0:
            evs.append("contention_begin"), pays.append(f"{i:016x} (flags=READ)")
        elif r == 1:
            evs.append("sched_switch"), pays.append(f"prev_comm=a b prev_pid={i} prev_state=R+ ==> next_comm=c")
        elif r == 2:
            evs.append("sched_wakeup"), pays.append(f"comm=x pid={i} prio=120" + ("\t" if i % 97 == 0 else ""))
        elif r == 3:
            evs.append("probe"), pays.append(f"(sym+0x4/0x10) arg1={i} s=\"é\"")
        elif r == 4:
            evs.append("pwm"), pays.append(f"pwmchip{i}: period={i} duty_cycle=5")
        else:
            evs.append(None), pays.append(None if i % 2 else "plain text")
    assert_same(pays, evs)


def test_unsure_rows_are_few_and_ascii_rows_are_never_unsure():
    p = pl.Series(["a=1\t b=2", "é: a=1", "ok=1", "mm é", "x=é y=ü"])
    e = pl.Series(["x", "x", "x", "ksm_enter", "x"])
    with native(True):
        _m, unsure = fields._native_split(p, e)
    assert unsure.tolist() == [0, 1, 3]


# ---------------------------------------------------------------- Arrow inputs the split must take or refuse


def _col(a: pa.Array):
    if a.type == pa.string_view():
        valid, views, *data = a.buffers()
        return (views, tuple(data), valid, a.offset, 2)
    valid, offsets, data = a.buffers()
    return (offsets, data, valid, a.offset, int(a.type == pa.large_string()))


@pytest.mark.parametrize("typ", [pa.string(), pa.large_string(), pa.string_view()])
def test_sliced_arrays_and_validity(typ):
    vals = [None, "a=1 b=2", "skip me", "pfn 3", "k=v a=much longer value than twelve bytes", None, "mm x"]
    evs = ["x", "x", None, "ksm_remove_ksm_page", "y", "x", "ksm_enter"]
    a = pa.array(vals, typ).slice(1, 5)
    e = pa.array(evs, typ).slice(1, 5)
    moff, koff, kdat, voff, vdat, ne, uns = MOD.split(5, _col(a), _col(e))
    keys = pa.Array.from_buffers(pa.string(), ne, [None, pa.py_buffer(koff), pa.py_buffer(kdat)])
    items = pa.Array.from_buffers(pa.string(), ne, [None, pa.py_buffer(voff), pa.py_buffer(vdat)])
    m = pa.MapArray.from_arrays(pa.Array.from_buffers(pa.int32(), 6, [None, pa.py_buffer(moff)]), keys, items)
    assert m.to_pylist() == [[("a", "1"), ("b", "2")], [], [("pfn", "3")],
                             [("k", "v"), ("a", "much longer value than twelve bytes")], []]
    assert not uns


def test_broken_buffers_raise_instead_of_reading_out_of_bounds():
    good = pa.array(["a=1", "b=2"], pa.string())
    valid, offsets, data = good.buffers()
    bad_off = pa.py_buffer(np.array([0, 3, 99], dtype=np.int32).tobytes())
    back_off = pa.py_buffer(np.array([0, 3, 1], dtype=np.int32).tobytes())
    neg_off = pa.py_buffer(np.array([-5, 3, 6], dtype=np.int32).tobytes())
    with pytest.raises(ValueError):
        MOD.split(2, (bad_off, data, None, 0, False), None)
    with pytest.raises(ValueError):
        MOD.split(2, (back_off, data, None, 0, False), None)
    with pytest.raises(ValueError):
        MOD.split(2, (neg_off, data, None, 0, False), None)
    with pytest.raises(ValueError):
        MOD.split(5, (offsets, data, None, 0, False), None)  # offsets shorter than the rows
    with pytest.raises(ValueError):
        MOD.split(2, (offsets, data, pa.py_buffer(b""), 0, False), None)  # validity too short
    with pytest.raises(ValueError):
        MOD.split(2, (offsets, data, None, 0, False), (bad_off, data, None, 0, False))
    with pytest.raises(TypeError):
        MOD.split(2, "nope", None)
    # string_view: a view naming a missing buffer, pointing past its buffer, or of negative length
    def view(length, idx, off):
        return np.array([length, 0, idx, off], dtype=np.int32).tobytes()

    data_buf = pa.py_buffer(b"x" * 20)
    for v in (view(16, 1, 0), view(16, 0, 10), view(-1, 0, 0), view(16, -1, 0)):
        with pytest.raises(ValueError):
            MOD.split(1, (pa.py_buffer(v), (data_buf,), None, 0, 2), None)
    with pytest.raises(ValueError):
        MOD.split(2, (pa.py_buffer(view(3, 0, 0)), (data_buf,), None, 0, 2), None)  # fewer views than rows
    with pytest.raises(TypeError):
        MOD.split(1, (pa.py_buffer(view(3, 0, 0)), data_buf, None, 0, 2), None)  # data not a tuple
    # and a large_string read as string (8-byte offsets as 4-byte ones) is range-checked, not trusted
    big = pa.array(["a=1", "b=2"], pa.large_string())
    _v, boff, bdat = big.buffers()
    with contextlib.suppress(ValueError):
        MOD.split(2, (boff, bdat, None, 0, False), None)


def test_patterns_are_the_python_ones():
    # fields.py uses the compiled split only while its EVENT_PATTERNS are the regexes the C patterns were written from
    assert MOD.PATTERN_REGEX == fields.EVENT_PATTERNS
    assert fields._native_module() is MOD


# ---------------------------------------------------------------- the payloads of real traces


def _payloads_of(path) -> list[tuple[pl.Series, pl.Series | None]]:
    """The (payload, event) columns a parse of ``path`` hands to the field split."""
    seen = []
    orig = fields._native_split

    def spy(payload, event):
        seen.append((payload, event))
        return orig(payload, event)

    src = TraceSource(path)
    try:
        p = detect(src.head_text, src.head, str(path))
        fields._native_split = spy
        try:
            for _t in p().parse(src, ParseStats()):
                pass
        finally:
            fields._native_split = orig
    finally:
        src.close()
    return seen


SAMPLES = sorted(p for p in (ROOT / "sample_traces").iterdir() if p.suffix in (".zst", ".gz"))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sample_trace_payloads(path):
    cols = _payloads_of(path)
    for payload, event in cols:
        assert_same(payload, event)


def test_corpus_payloads(corpus):
    n = 0
    for f in sorted(x for x in corpus.rglob("*") if x.is_file() and x.suffix not in (".md", ".dat", ".html")):
        try:
            cols = _payloads_of(f)
        except Exception:  # a file no text parser takes (binary, unknown): nothing of it reaches the split
            continue
        for payload, event in cols:
            assert_same(payload, event)
            n += 1
    assert n > 10
