"""The compiled ftrace line parser (native/ftrace_lines.c) gives exactly what the pure Python rules give: the same
rows (every column, NULLs, order), malformed count and examples, lost-event counts and meta, with the module on
and off (``_native.use``), on generated text mixing every line kind (hostile bytes, long lines, CR/CRLF,
trailing whitespace, tiny chunks so that stack records straddle chunk ends), on every ftrace-like file of
sample_traces/ and on the public corpus."""
from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import ROOT, examples
from ksmtrace.ingest import _native, source
from ksmtrace.ingest._ftrace_lines import _split_carry, _split_carry_bytes, iter_byte_chunks, iter_line_frames
from ksmtrace.ingest.base import ParseStats, conform
from ksmtrace.ingest.ftrace import FtraceParser
from ksmtrace.ingest.source import TraceSource

needs_native = pytest.mark.skipif("ftrace_lines" not in _native.built(),
                                  reason="the compiled ftrace module is not built (no C compiler)")


def _parse(data: bytes, on: bool, chunk: int | None):
    prev, prev_chunk = _native.use(on), source.CHUNK_BYTES
    if chunk:
        source.CHUNK_BYTES = chunk
    try:
        src = TraceSource(stream=io.BytesIO(data), name="t")
        stats = ParseStats()
        tables = [conform(t) for t in FtraceParser().parse(src, stats)]
    finally:
        _native.use(prev)
        source.CHUNK_BYTES = prev_chunk
    return tables, stats, src.n_lines


def assert_same(data: bytes, chunk: int | None = None) -> pa.Table | None:
    """Parse ``data`` with the compiled path and without it; every result must be identical."""
    (ta, sa, na), (tb, sb, nb) = _parse(data, True, chunk), _parse(data, False, chunk)
    assert [t.num_rows for t in ta] == [t.num_rows for t in tb]
    a = pa.concat_tables(ta) if ta else None
    b = pa.concat_tables(tb) if tb else None
    if a is not None:
        for name in a.column_names:
            assert a.column(name).equals(b.column(name)), (name, a.column(name).to_pylist()[:50],
                                                           b.column(name).to_pylist()[:50])
    assert sa.n_malformed == sb.n_malformed
    assert sa.malformed_examples == sb.malformed_examples
    assert (sa.n_lost_events, sa.lost_unknown) == (sb.n_lost_events, sb.lost_unknown)
    assert sa.meta == sb.meta
    assert na == nb
    return a


# ---------------------------------------------------------------- generated ftrace text

FLAGCH = "dDbX.NnphsHzZ0123456789abcdef"
#: characters that make the layout rules branch: separators, brackets, signs, hex, the stack-record angle brackets
HOSTILE = " :()<->+/x0123456789abcdefAF._[]#=,"

def mostly(good, bad, k: int = 6):
    """``good`` draws, and about one in ``k`` a ``bad`` one."""
    return st.integers(0, k - 1).flatmap(lambda i: bad if i == k - 1 else good)


comm_st = mostly(
    st.sampled_from(["<...>", "<idle>", "my prog-x", "kworker/1:2", "ksm_rmap_repro", "a-1 b", "x", "[brackets]",
                     "averyveryverylongcommname", "bash", "ksmd"]),
    st.sampled_from(["a: b", "c] d", "e-1 [001] f", "", "-", "- 1", "x-1  [1] 1: y"])
    | st.text(alphabet=HOSTILE + "ABCxyz", max_size=18))
num_st = mostly(st.integers(0, 70000).map(str),
                st.sampled_from(["0", "007", "2147483647", "2147483648", "99999999999", "+5", "-5", "", "1 2",
                                 "00000000000000000001", "x"]))
cpu_st = mostly(st.sampled_from(["000", "001", "042", "255"]), num_st)
sec_st = mostly(st.integers(0, 99999).map(str),
                st.sampled_from(["9223372036", "9223372037", "999999999999", "18446744073709551616",
                                 "000000000000000000000012", "9223372036854775807"]))
frac_st = mostly(st.sampled_from(["123456", "000001", "123456789", "000100"]),
                 st.sampled_from(["", "1234567891234", "1"]) | st.text(alphabet="0123456789", min_size=1, max_size=12))


@st.composite
def ts_st(draw):
    sec, frac = draw(sec_st), draw(frac_st)
    ts = sec + ("." + frac if frac else "")
    return draw(mostly(st.just(ts), st.sampled_from(["9223372036.854775807", "9223372036.854775808", "12.",
                                                     ".5", "1.2.3", "9223372036854775807", "9223372036854775808"]),
                       10))


@st.composite
def rest_st(draw):
    name = draw(st.sampled_from(["sched_switch", "rd_up", "rd_try_ret", "function", "ksm_merge_one_page",
                                 "caller+0x28/0x6c", "+0x1/0x2", "a+0x1+0x2/0x3", "x+0x/0x1", "a b", "(x)", ""]))
    payload = draw(mostly(
        st.sampled_from(["prev_comm=a prev_pid=1 ==> next_comm=b next_pid=2", "(up_read+0x0/0x60) sem=0xff",
                         "(task_numa_work+0x12e/0x3a0 <- down_read_trylock) ret=0x1", "(loc)", "(loc)x",
                         "(a <- b)", "(a <- b)c", "(a <-  b)", "( a)", "()", "(a <- )", "   spaced", "",
                         "pfn 1 rmap_item 2 mm 3 error 0", "00000000f6f834c9 (ret=-4)", "x: y: z"]),
        st.text(alphabet=HOSTILE + "kvm", max_size=30), 3))
    kind = draw(st.integers(0, 9))
    if kind <= 3:
        return f"{name}: {payload}"
    if kind == 4:
        return f"{name}:"
    if kind == 5:
        fn = draw(st.sampled_from(["copy_process.part.5+0x14/0x1acc", "f", "do_exit", "+0x1/0x2", "a:b", "x()"]))
        par = draw(st.sampled_from(["", " <-_do_fork+0xc0/0x41c", " <-p", " <-", " <-a b", " <-(x)", "<-q"]))
        return fn + par
    if kind == 6:
        return draw(st.sampled_from(["<stack trace>", "<user stack trace>", "<stack trace> x", " <stack trace>"]))
    if kind == 7:
        return draw(st.sampled_from(["hello world", "tracing_mark_write: hi", "x::", ": x", "a:", ":", "ab: "]))
    return draw(st.text(alphabet=HOSTILE + "kvm", max_size=40))


@st.composite
def event_line_st(draw):
    comm, pid, cpu = draw(comm_st), draw(num_st), draw(cpu_st)
    nflags = draw(st.sampled_from([4, 5, 5, 5, 7, 0, 8, 3]))
    flags = "".join(draw(st.lists(st.sampled_from(FLAGCH), min_size=nflags, max_size=nflags)))
    if draw(st.integers(0, 9)) == 9:
        flags = draw(st.text(alphabet=HOSTILE, min_size=1, max_size=8))
    ts, rest = draw(ts_st()), draw(rest_st())
    layout = draw(st.integers(0, 6))
    fl = f"{flags} " if flags else ""
    tail = f"{ts}: {rest}" if draw(st.integers(0, 9)) < 9 else f"{ts}:"
    if layout <= 2:  # %16s-%-7d [%03d] (or %-5d): the common layout
        pidw = 7 if layout else 5
        return f"{comm:>16}-{pid:<{pidw}} [{cpu:>03}] {fl}{draw(st.sampled_from(['', ' ', '   ']))}{tail}"
    if layout == 3:  # record-tgid column
        tgid = draw(st.sampled_from(["-------", "   4711", "2147483648", " ", "12 3"]) | num_st)
        return f"{comm:>16}-{pid:<7} ({tgid:>7}) [{cpu:>03}] {fl}{tail}"
    if layout == 4:  # unpadded comm, as some tools rewrite it
        sp = " " * draw(st.integers(1, 3))
        return f"{comm}-{pid}{sp}[{cpu}]{sp}{fl}{tail}"
    if layout == 5:  # no flags column (irq-info off)
        return f"{comm:>16}-{pid:<7} [{cpu:>03}] {draw(st.sampled_from(['', ' ', '    ']))}{tail}"
    # latency layout
    return f"{comm:>8.8}-{pid:<7} {cpu:>3}{flags or 'd..1'} {draw(st.integers(0, 9999))}us{draw(st.sampled_from([' ', '+', '!']))}: {rest}"


@st.composite
def clean_event_line_st(draw):
    """An event line of a real kernel's layouts (what the compiled parser is for)."""
    comm = draw(st.sampled_from(["<...>", "<idle>", "my prog-x", "kworker/1:2", "ksm_rmap_repro", "bash", "a-1 b"]))
    pid, cpu = draw(st.integers(0, 4_194_304)), draw(st.integers(0, 999))
    flags = "".join(draw(st.lists(st.sampled_from(FLAGCH), min_size=5, max_size=5)))[:draw(st.sampled_from([5, 4]))]
    ts = f"{draw(st.integers(0, 99999))}.{draw(st.integers(0, 999999)):06d}"
    rest = draw(rest_st())
    layout = draw(st.integers(0, 3))
    if layout == 0:
        return f"{comm:>16}-{pid:<7} [{cpu:03d}] {flags} {ts:>12}: {rest}"
    if layout == 1:
        return f"{comm:>16}-{pid:<7} ({draw(st.sampled_from(['-------', str(pid)])):>7}) [{cpu:03d}] {flags} {ts}: {rest}"
    if layout == 2:
        return f"{comm}-{pid}  [{cpu:03d}] {flags} {ts}: {rest}"
    return f"{comm:>16}-{pid:<5} [{cpu:03d}] {ts:>12}: {rest}"


OTHER_LINES = [
    "# tracer: function", "# tracer: nop", "#", "# entries-in-buffer/entries-written: 5/10   #P:2",
    "# entries-in-buffer/entries-written: 1/99999999999999999999   #P:4", "#P:99999999999",
    "# irqsoff latency trace v1.1.5 on 6.1.0", "# latency: 259 us, #4/4, CPU#2 | (M:preempt VP:0, KP:0, SP:0 HP:0)",
    "CPU:1 [LOST 23 EVENTS]", "CPU:1 [LOST EVENTS]", "CPU:99999999999 [LOST 1 EVENTS]",
    "CPU:2 [LOST 99999999999999999999 EVENTS]", "##### CPU 2 buffer started ####", "##### CPU 99999999999 buffer started ####",
    " => copy_process.part.5+0x18/0x1acc", " => <00007f0000001234>", " => 0x7ef11270", "=> [unknown]", " => a b",
    "", "   ", "hello world", " 1)   0.123 us    |  }", "| kfree();",
]


@st.composite
def line_st(draw):
    k = draw(st.integers(0, 23))
    if k < 10:
        line = draw(clean_event_line_st())
    elif k < 15:
        line = draw(event_line_st())
    elif k < 20:
        line = draw(st.sampled_from(OTHER_LINES))
    elif k == 20:
        line = draw(event_line_st()) + " " + "k=v " * draw(st.integers(200, 1500))  # a long line
    elif k == 21:
        return draw(st.binary(max_size=60)).replace(b"\n", b"")
    elif k == 22:
        line = draw(event_line_st())
        pos = draw(st.integers(0, len(line)))
        bad = draw(st.sampled_from(["\x00", "\x1b[2K", "\r", "\t", "\x0b", "\x7f", "é", "\u3000", "\ufffd"]))
        line = line[:pos] + bad + line[pos:]
    else:
        line = draw(st.text(max_size=50)).replace("\n", " ")
    line += draw(st.sampled_from(["", "", "", " ", "  ", "\t", " \t\r", "\x0c", "\x0b"]))
    return line.encode("utf-8", "surrogatepass") if draw(st.integers(0, 30)) < 30 else line.encode() + b"\xff\xfe"


@st.composite
def trace_st(draw):
    lines = draw(st.lists(line_st(), max_size=30))
    # stack records followed by their frames, now and then
    if draw(st.booleans()) and lines:
        at = draw(st.integers(0, len(lines)))
        rec = draw(event_line_st()).rsplit(": ", 1)[0] + ": <stack trace>"
        frames = [b" => f%d+0x%x/0x100" % (i, i) for i in range(draw(st.integers(0, 5)))]
        lines[at:at] = [rec.encode()] + frames
    nl = draw(st.sampled_from([b"\n", b"\n", b"\r\n", b"\r"]))
    head = draw(st.sampled_from([b"", b"# tracer: nop" + nl]))
    return head + nl.join(lines) + draw(st.sampled_from([nl, b""]))


@needs_native
@settings(max_examples=examples(300), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(trace_st(), st.sampled_from([None, None, 1, 64, 300, 4096]))
@example(b"            bash-946   [003] ....   676.984929: <stack trace>\n => a+0x1/0x2\n"
         b"            bash-946   [003] ....   676.985000: f <-g\n => b+0x1/0x2\n", 1)
@example(b"  <idle>-0       (-------) [000] d.... 27155.729066: sched_switch: a=1\n", None)
@example(b"     a-+5      [001] ..... 1.000001: x: y\n     a-5      [001] ..... 1: x: y\n", None)
def test_generated_text_same_with_and_without_native(data, chunk):
    assert_same(data, chunk)


@settings(max_examples=examples(60), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(trace_st(), st.sampled_from([1, 64, 300]), st.booleans())
@example(b"  <...>-0     [000] 0: function: a=1\n  <...>-0     [000] 0: <stack trace>\n", 1, False)
def test_rows_do_not_depend_on_the_chunk_size(data, chunk, on):
    """A line's row never depends on the other lines of its chunk (each path, any chunk size)."""
    (ta, sa, _), (tb, sb, _) = _parse(data, on, chunk), _parse(data, on, None)
    a = pa.concat_tables(ta).to_pylist() if ta else []
    b = pa.concat_tables(tb).to_pylist() if tb else []
    assert a == b
    assert (sa.n_malformed, sa.n_lost_events, sa.meta) == (sb.n_malformed, sb.n_lost_events, sb.meta)


@needs_native
def test_common_layout_lines_are_taken_by_the_compiled_parser():
    from ksmtrace.ingest._native import load

    lines = [b"      kcompactd0-33      [001] dn.3.   458.000016: set_migration_pte: addr=d41, pte=64 order=0",
             b"            bash-946   [003] ....   676.984916: copy_process.part.5+0x14/0x1acc <-_do_fork+0xc0/0x41c",
             b"sshd-148212  ( 148212) [003] d.... 27122.154961: sched_stat_runtime: comm=sshd pid=148212",
             b"   ksmtrace-265     [001] .....   242.880646: rd_try_ret: (task_numa_work+0x12e/0x3a0 <- down_read_trylock) ret=0x1"]
    res = load("ftrace_lines").parse_chunk(b"\n".join(lines) + b"\n", 7)
    assert (res["n"], res["n_rejected"]) == (4, 0)
    tbl = assert_same(b"\n".join(lines) + b"\n")
    rows = tbl.to_pylist()
    assert [r["line_no"] for r in rows] == [1, 2, 3, 4]
    assert rows[1]["event"] == "function" and rows[1]["func"] == "copy_process.part.5"
    assert rows[2]["tgid"] == 148212 and rows[2]["comm"] == "sshd"
    assert (rows[3]["kind"], rows[3]["func"], rows[3]["parent"]) == ("return", "down_read_trylock",
                                                                     "task_numa_work+0x12e/0x3a0")


@needs_native
def test_only_printable_ascii_lines_are_taken():
    """Every byte value at every offset of the 8-byte blocks the compiled check reads: a line holding a byte
    outside printable ASCII (other than trailing whitespace, which the Python rules strip) goes to Python."""
    from ksmtrace.ingest._native import load

    mod = load("ftrace_lines")
    base = b"            bash-946   [003] ....   676.984916: ev: k=v abcdefghijklmnop"
    for pos in range(len(base) - 17, len(base)):
        for b in range(256):
            if b == 0x0A:
                continue
            line = base[:pos] + bytes([b]) + base[pos + 1:]
            res = mod.parse_chunk(line + b"\n", 1)
            stripped = pos == len(base) - 1 and b in b" \t\r\x0b\x0c"
            assert res["n"] == (1 if 0x20 <= b <= 0x7E or stripped else 0), (pos, b)
    assert_same(b"".join(base[:-1] + bytes([b]) + b"\n" for b in range(256) if b != 0x0A))


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.sampled_from([b" => a+0x1/0x2", b"=> x", b"  <stack trace>", b"x: <user stack trace>  ",
                                 b"ev: y", b"", b"\xff => z", "\u3000=> q".encode(),
                                 b"\r", b"<stack trace>\r"]), max_size=12), st.booleans())
def test_split_carry_bytes_is_split_carry(lines, final_nl):
    data = b"\n".join(lines) + (b"\n" if final_nl else b"")
    body, carry = _split_carry_bytes(data)
    tb, tc = _split_carry(data.decode("utf-8", "replace"))
    assert (body.decode("utf-8", "replace"), carry.decode("utf-8", "replace")) == (tb, tc)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trace_st(), st.sampled_from([1, 64, 300]))
def test_byte_chunks_are_the_line_frames(data, chunk):
    prev = source.CHUNK_BYTES
    source.CHUNK_BYTES = chunk
    try:
        frames = [(f.get_column("line_no").to_list(), f.get_column("l").to_list())
                  for f in iter_line_frames(TraceSource(stream=io.BytesIO(data), name="t"))]
        chunks = list(iter_byte_chunks(TraceSource(stream=io.BytesIO(data), name="t")))
    finally:
        source.CHUNK_BYTES = prev
    assert len(frames) == len(chunks)
    for (nos, lines), (b, first) in zip(frames, chunks):
        text = b.decode("utf-8", "replace")
        parts = (text[:-1] if text.endswith("\n") else text).split("\n")
        assert nos == list(range(first, first + len(parts))) and lines == parts


# ---------------------------------------------------------------- real traces

SAMPLES = sorted(p for p in (ROOT / "sample_traces").iterdir() if p.name.endswith((".txt", ".txt.zst", ".txt.gz")))


def _read(p: Path) -> bytes:
    src = TraceSource(p)
    try:
        return b"".join(bytes(b) for b in src.raw_blocks())
    finally:
        src.close()


@needs_native
@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sample_traces_same_with_and_without_native(path):
    """Every text trace of sample_traces/ read as ftrace (the other formats are hostile input for it)."""
    assert_same(_read(path))


@needs_native
def test_corpus_same_with_and_without_native(corpus):
    files = sorted(p for d in ("ftrace-events", "function", "latency", "function-graph", "snippets",
                               "trace-cmd-report", "perf-script") for p in (corpus / d).glob("*") if p.is_file())
    assert files
    for p in files:
        assert_same(_read(p))
        if p.stat().st_size < 200_000:
            assert_same(_read(p), chunk=512)  # stack records and headers across chunk ends
