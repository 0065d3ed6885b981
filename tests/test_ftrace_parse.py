"""ftrace text parser: property tests (render random lines in every variant, parse back, compare exactly)
plus targeted cases."""
from __future__ import annotations

import io

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from ksmtrace.ingest import detect
from ksmtrace.ingest.base import ParseStats, conform
from ksmtrace.ingest.ftrace import FtraceParser
from ksmtrace.ingest.source import TraceSource

from conftest import examples


def parse(text: str, parser=FtraceParser):
    src = TraceSource(stream=io.BytesIO(text.encode()), name="t")
    stats = ParseStats()
    tables = [conform(t) for t in parser().parse(src, stats)]
    rows = pa.concat_tables(tables).to_pylist() if tables else []
    return rows, stats, src


HEADER5 = """# tracer: nop
#
# entries-in-buffer/entries-written: {inbuf}/{written}   #P:4
#
#                                _-----=> irqs-off/BH-disabled
#                               / _----=> need-resched
#                              | / _---=> hardirq/softirq
#                              || / _--=> preempt-depth
#                              ||| / _-=> migrate-disable
#                              |||| /     delay
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
"""

comm_st = st.one_of(
    st.sampled_from(["<...>", "<idle>", "my prog-x", "kworker/1:2", "Web Content", "ksm_rmap_repro", "a-1 b",
                     "cc1", "x", "[brackets]", "averyveryverylongcommname"]),
    st.from_regex(r"[A-Za-z0-9_/:.<>\[\]-]([A-Za-z0-9_/:.<>\[\] -]{0,14}[A-Za-z0-9_/:.<>\[\]-])?", fullmatch=True),
)
FLAGCH = "dDbX.Nnph.sHzZ0123456789abcdef"


@st.composite
def prefix_st(draw):
    comm = draw(comm_st)
    pid = draw(st.integers(0, 4_194_304))
    pidw = draw(st.sampled_from([5, 7]))
    tgid_mode = draw(st.sampled_from(["none", "num", "dash"]))
    tgid = draw(st.integers(1, 4_194_304)) if tgid_mode == "num" else None
    cpu = draw(st.integers(0, 255))
    nflags = draw(st.sampled_from([0, 4, 5, 7]))
    flags = "".join(draw(st.lists(st.sampled_from(FLAGCH), min_size=nflags, max_size=nflags))) or None
    if flags and flags[0] == " ":
        flags = None
    clock = draw(st.sampled_from(["us", "ns", "counter"]))
    sec = draw(st.integers(0, 30_000_000))
    if clock == "us":
        frac = draw(st.integers(0, 999_999))
        ts_txt, ts_ns = f"{sec:5d}.{frac:06d}", sec * 10**9 + frac * 1000
    elif clock == "ns":
        frac = draw(st.integers(0, 999_999_999))
        ts_txt, ts_ns = f"{sec:5d}.{frac:09d}", sec * 10**9 + frac
    else:
        v = draw(st.integers(0, 10**15))
        ts_txt, ts_ns = f"{v:12d}", v
    s = f"{comm:>16}-{pid:<{pidw}} "
    if tgid_mode == "num":
        s += f"({tgid:>{pidw}}) "
    elif tgid_mode == "dash":
        s += "(" + "-" * pidw + ") "
    s += f"[{cpu:03d}] "
    if flags:
        s += flags
    s += f" {ts_txt}: "
    exp = dict(comm=comm, pid=pid, tgid=tgid, cpu=cpu, flags=flags, ts_ns=ts_ns)
    return s, exp, clock


KEY = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)
VAL = st.from_regex(r"[A-Za-z0-9/:.+-]{1,12}", fullmatch=True)
SYM = st.from_regex(r"[a-z_][a-z0-9_.]{0,20}", fullmatch=True)


@st.composite
def body_st(draw):
    """(text after the prefix, expected fields of the row)"""
    kind = draw(st.sampled_from(["tp", "func", "kprobe", "kretprobe", "printk", "ksm", "lock"]))
    if kind == "tp":
        ev = draw(SYM)
        kvs = draw(st.lists(st.tuples(KEY, VAL), min_size=0, max_size=5))
        pay = " ".join(f"{k}={v}" for k, v in kvs)
        return f"{ev}: {pay}", dict(event=ev, payload=pay, fields=kvs, func=None, parent=None, kind=None)
    if kind == "printk":
        caller = draw(SYM)
        kvs = draw(st.lists(st.tuples(KEY, VAL), min_size=1, max_size=4))
        pay = " ".join(f"{k}={v}" for k, v in kvs)
        off = draw(st.booleans())
        name = f"{caller}+0x28/0x6c" if off else caller
        return f"{name}: {pay}", dict(event=caller, payload=pay, fields=kvs, func=caller if off else None,
                                      parent=None, kind=None)
    if kind == "func":
        f, p = draw(SYM), draw(SYM)
        return f"{f} <-{p}", dict(event="function", payload=None, fields=[], func=f, parent=p, kind=None)
    if kind == "kprobe":
        ev, f = draw(SYM), draw(SYM)
        kvs = draw(st.lists(st.tuples(KEY, VAL), min_size=0, max_size=3))
        pay = f"({f}+0x4/0x1a0)" + "".join(f" {k}={v}" for k, v in kvs)
        return f"{ev}: {pay}", dict(event=ev, payload=pay, fields=kvs, func=f, parent=None, kind="entry")
    if kind == "kretprobe":
        ev, f, c = draw(SYM), draw(SYM), draw(SYM)
        pay = f"({c}+0x8e/0xc0 <- {f}) ret=0x1"
        return f"{ev}: {pay}", dict(event=ev, payload=pay, fields=[("ret", "0x1")], func=f, parent=f"{c}+0x8e/0xc0",
                                    kind="return")
    if kind == "ksm":
        pfn = draw(st.integers(0, 10**9))
        pay = f"pfn {pfn} rmap_item 0000000097b825a5 mm 0000000013462d9c error 0"
        return f"ksm_merge_with_ksm_page: {pay}", dict(
            event="ksm_merge_with_ksm_page", payload=pay, func=None, parent=None, kind=None,
            fields=[("ksm_page", "false"), ("pfn", str(pfn)), ("rmap_item", "0000000097b825a5"),
                    ("mm", "0000000013462d9c"), ("error", "0")])
    fl = draw(st.sampled_from(["READ", "WRITE", "SPIN|MUTEX"]))
    pay = f"000000001f538f6f (flags={fl})"
    return f"contention_begin: {pay}", dict(event="contention_begin", payload=pay, func=None, parent=None,
                                            kind=None, fields=[("lock_addr", "000000001f538f6f"), ("flags", fl)])


@st.composite
def trace_st(draw):
    n = draw(st.integers(1, 12))
    header = draw(st.booleans())
    lines, exp = [], []
    if header:
        lines += HEADER5.format(inbuf=100, written=100 + draw(st.integers(0, 5))).splitlines()
    for _ in range(n):
        if draw(st.integers(0, 9)) == 0:
            lost = draw(st.one_of(st.none(), st.integers(1, 10**6)))
            cpu = draw(st.integers(0, 63))
            lines.append(f"CPU:{cpu} [LOST {lost} EVENTS]" if lost is not None else f"CPU:{cpu} [LOST EVENTS]")
            exp.append(dict(event="__lost_events", cpu=cpu, lost=lost, line_no=len(lines)))
            continue
        pre, pexp, clock = draw(prefix_st())
        body, bexp = draw(body_st())
        indent = draw(st.sampled_from(["", "", "\t\t", ""]))
        trail = draw(st.sampled_from(["", "", " ", "  "]))
        lines.append(indent + pre + body + trail)
        e = dict(pexp, **bexp, line_no=len(lines), clock=clock)
        if draw(st.integers(0, 5)) == 0:
            lines.append(indent + pre + "<stack trace>")
            frames = draw(st.lists(SYM, min_size=1, max_size=4))
            exp.append(e)
            e = dict(pexp, event="kernel_stack", payload="<stack trace>", fields=[], func=None, parent=None,
                     kind=None, line_no=len(lines), clock=clock, frames=frames)
            lines += [f" => {f}+0x1{i}/0x100" for i, f in enumerate(frames)]
        exp.append(e)
    final_nl = draw(st.booleans())
    return "\n".join(lines) + ("\n" if final_nl else ""), exp, header, len(lines)


@settings(max_examples=examples(80), deadline=None)
@given(trace_st())
def test_roundtrip_ftrace(case):
    text, exp, header, n_lines = case
    rows, stats, src = parse(text)
    assert stats.n_malformed == 0, stats.malformed_examples
    assert [r["line_no"] for r in rows] == [e["line_no"] for e in exp]
    lost_total = 0
    for r, e in zip(rows, exp):
        if e["event"] == "__lost_events":
            assert r["cpu"] == e["cpu"] and r["event"] == "__lost_events"
            assert r["fields"] == [("lost", None if e["lost"] is None else str(e["lost"]))]
            lost_total += e["lost"] or 0
            continue
        for k in ("comm", "pid", "tgid", "cpu", "flags", "ts_ns", "event", "payload", "func", "parent", "kind"):
            assert r[k] == e[k], (k, r, e)
        assert (r["fields"] or []) == list(e["fields"]), (r, e)
        if "frames" in e:
            assert [f["sym"] for f in r["callchain"]] == e["frames"]
            assert [f["off"] for f in r["callchain"]] == [f"0x1{i}/0x100" for i in range(len(e["frames"]))]
        else:
            assert r["callchain"] is None
    if header:
        lost_total += stats.meta["entries_written"] - stats.meta["entries_in_buffer"]
        assert stats.meta["tracer"] == "nop" and stats.meta["n_cpus"] == 4
    assert stats.n_lost_events == lost_total
    assert stats.lost_unknown == any(e["event"] == "__lost_events" and e["lost"] is None for e in exp)
    assert src.n_lines == n_lines
    if any(e.get("clock") == "counter" for e in exp):
        assert stats.meta["ts_unit"] == "counter"


def test_exact_timestamps():
    line = "  rmap_benchmark-467     [003] ..... 17258.057760: rmap_walk_start: folio=1 rwc=2 page_type=ksm locked=false"
    rows, _, _ = parse(line + "\n" + line.replace("17258.057760", "17258.057760123") + "\n")
    assert [r["ts_ns"] for r in rows] == [17258057760000, 17258057760123]


def test_latency_layout_and_header():
    text = """# tracer: irqsoff
#
# irqsoff latency trace v1.1.5 on 6.7.0
# --------------------------------------------------------------------
# latency: 2477 us, #3/5, CPU#0 | (M:server VP:0, KP:0, SP:0 HP:0 #P:2)
      dd-808       0d....    1us!: _raw_spin_lock_irqsave
      dd-808       0d....  186us : find_suitable_fallback <-__rmqueue_pcplist
  <idle>-0         2d.h4    1us : sched_wakeup: comm=sleep pid=5882 prio=94 success=1 target_cpu=002
"""
    rows, stats, _ = parse(text)
    assert stats.meta["kernel"] == "6.7.0" and stats.meta["tracer"] == "irqsoff" and stats.meta["n_cpus"] == 2
    assert stats.n_lost_events == 2
    assert [(r["comm"], r["pid"], r["cpu"], r["flags"], r["ts_ns"]) for r in rows] == [
        ("dd", 808, 0, "d....", 1000), ("dd", 808, 0, "d....", 186000), ("<idle>", 0, 2, "d.h4", 1000)]
    assert rows[0]["func"] == "_raw_spin_lock_irqsave" and rows[0]["parent"] is None
    assert rows[1]["parent"] == "__rmqueue_pcplist"
    assert dict(rows[2]["fields"])["pid"] == "5882"


def test_prose_counted_malformed_only_for_trace_like_lines():
    text = ("Tracing do_sys_open. Ctrl-C to end.\n"
            "          kprobe-26042 [001] d... 6910441.001452: do_sys_open: (do_sys_open+0x0/0x220)\n"
            "[...]\n"
            "          kprobe-26042 [001] d... garbage: here\n"
            "##### CPU 2 buffer started ####\n")
    rows, stats, src = parse(text)
    assert stats.n_malformed == 1 and stats.malformed_examples[0]["line_no"] == 4
    assert stats.meta["n_ignored_prose"] == 2
    assert [r["event"] for r in rows] == ["do_sys_open", "__buffer_started"]
    assert rows[1]["cpu"] == 2


def test_stack_trace_split_across_chunks():
    line = "            bash-946   [003] ....   676.984929: <stack trace>\n"
    frames = "".join(f" => func_{i}+0x18/0x1acc\n" for i in range(50))
    ev = "            bash-946   [003] ....   676.984916: copy_process+0x14/0x1acc <-_do_fork+0xc0/0x41c\n"
    text = (ev + line + frames) * 40
    src = TraceSource(stream=io.BytesIO(text.encode()), name="t")
    orig = src.chunks
    src.chunks = lambda chunk_bytes=1000: orig(1000)
    stats = ParseStats()
    rows = pa.concat_tables([conform(t) for t in FtraceParser().parse(src, stats)]).to_pylist()
    assert stats.n_malformed == 0
    stacks = [r for r in rows if r["event"] == "kernel_stack"]
    assert len(stacks) == 40 and all(len(r["callchain"]) == 50 for r in stacks)
    assert rows[0]["func"] == "copy_process" and rows[0]["parent"] == "_do_fork+0xc0/0x41c"


def test_sniff():
    ev = "  ksm_rmap_repro-10396   [001] .....   458.050612: ksm_enter: mm 0000000013462d9c\n" * 5
    assert detect(ev, ev.encode()).name == "ftrace"
    assert FtraceParser.sniff("a,b,c\n1,2,3\n", b"a,b,c\n1,2,3\n") == 0
    assert FtraceParser.sniff("", b"\x17\x08Dtracing6\x00\x00") == 0
    perf = "ksm_rmap_repro  9000 [000]   375.395548:                         ksm:ksm_enter: mm 0xffff88810b1cabc0\n" * 5
    assert FtraceParser.sniff(perf, perf.encode()) == 0
    tcmd = "cpus=4\n       trace-cmd-86689 [003] 11370.816169: sched_waking:         comm=smbd pid=2965 prio=120\n"
    assert FtraceParser.sniff(tcmd, tcmd.encode()) == 0
    fg = "# tracer: function_graph\n#\n 0)   0.172 us    |        xen_write_msr_safe();\n"
    assert detect(fg, fg.encode()).name == "function-graph"
