"""trace-cmd report text: preamble, layouts, stacks, continuations, function_graph rows, round-trip properties."""
from __future__ import annotations


from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ksmtrace.ingest import detect
from ksmtrace.ingest.source import TraceSource
from ksmtrace.ingest.tracecmd import TraceCmdReportParser

from conftest import examples, parse_with


def parse_text(text: str, chunk_bytes: int | None = None):
    return parse_with(TraceCmdReportParser, text, chunk_bytes, name="r.txt")


REPORT = """\
version = 6
CPU 3 is empty
CPU 4 is empty
cpus=6
           <...>-1701  [001]    76.211513: sched_switch:          prev_comm=trace-cmd prev_pid=1701 prev_prio=120 prev_state=64 next_comm=swapper/1 next_pid=0 next_prio=120
       JS Helper-3832  [002] 11379.057666: sched_switch:         JS Helper:3832 [120] S ==> gnome-shell:3334 [120]
              ls-4734  [002] 106439.675571: bprint:               select_task_rq_fair: fig: cpu=0
 gid=4
       trace-cmd-86689 [003] 11370.816179: kernel_stack:         <stack trace >
=> try_to_wake_up (ffffffffa8902e5f)
=> default_wake_function+0x1a/0x30 (ffffffffa890327a)
=> ffffffff813a0245
CPU:2 [120 EVENTS DROPPED]
       trace-cmd-86689 [003] 11370.816168595: sched_waking:         comm=smbd-notifyd pid=2965 prio=120 target_cpu=000
"""


def test_report_layout_preamble_stack_continuation_lost():
    rows, stats = parse_text(REPORT)
    assert stats.n_malformed == 0, stats.malformed_examples
    assert stats.meta["n_cpus"] == 6 and stats.meta["tracer"] == "trace-cmd"
    assert [r["event"] for r in rows] == ["sched_switch", "sched_switch", "bprint", "kernel_stack", "__lost_events",
                                          "sched_waking"]
    a, b, bp, ks, lost, w = rows
    assert (a["comm"], a["pid"], a["cpu"], a["ts_ns"], a["line_no"]) == ("<...>", 1701, 1, 76_211_513_000, 5)
    assert dict(a["fields"])["prev_state"] == "64"
    assert (b["comm"], b["pid"]) == ("JS Helper", 3832)
    assert bp["payload"] == "select_task_rq_fair: fig: cpu=0\n gid=4"
    assert ks["payload"] == "<stack trace >"
    assert ks["callchain"] == [
        {"addr": "ffffffffa8902e5f", "sym": "try_to_wake_up", "off": None, "dso": None},
        {"addr": "ffffffffa890327a", "sym": "default_wake_function", "off": "0x1a/0x30", "dso": None},
        {"addr": "ffffffff813a0245", "sym": None, "off": None, "dso": None},
    ]
    assert (lost["cpu"], dict(lost["fields"])) == (2, {"lost": "120"})
    assert stats.n_lost_events == 120
    assert w["ts_ns"] == 11370_816168595
    assert all(r["flags"] is None for r in rows)


def test_latency_tsdiff_flags_and_buffer_prefix():
    text = ("cpus=4\n"
            "trace-cm-86689   3d.... 11370.816169: sched_waking:         comm=smbd-notifyd pid=2965 prio=120 target_cpu=000\n"
            "       trace-cmd-86689 [003] 11370.816179: (+10)    kernel_stack:         <stack trace >\n"
            "          kworker/6:1-457     [000] d..2  109.999957: bprint:               0xc042f8a0f: thermal: frequency=420 load=91\n"
            "h3rec:             bash-15437 [001]   591.381196464: sched_switch:         bash:15437 [120] S ==> bash:15440 [120]\n")
    rows, stats = parse_text(text)
    assert stats.n_malformed == 0
    l0, l1, l2, l3 = rows
    assert (l0["comm"], l0["pid"], l0["cpu"], l0["flags"]) == ("trace-cm", 86689, 3, "d....")
    assert (l1["event"], l1["ts_ns"]) == ("kernel_stack", 11370_816179000)
    assert (l2["comm"], l2["flags"], l2["payload"]) == ("kworker/6:1", "d..2", "0xc042f8a0f: thermal: frequency=420 load=91")
    assert (l3["comm"], l3["pid"], l3["ts_ns"]) == ("bash", 15437, 591_381196464)


def test_malformed_lines_counted():
    text = "cpus=2\ngarbage line\n" + REPORT.split("cpus=6\n")[1] + "       trace-cmd-1 [000] 1.0: sched_switch: x\nmore garbage\n"
    rows, stats = parse_text(text)
    assert stats.n_malformed == 2
    assert [e["line_no"] for e in stats.malformed_examples] == [2, 14]


FUNCGRAPH = """\
CPU 7 is empty
cpus=8
              ip-2541  [006]  5230.491361: funcgraph_entry:                   |  veth_dellink() {
              ip-2541  [006]  5230.491916: funcgraph_entry:      + 56.464 us  |        mutex_is_locked();
              ip-2541  [006]  5230.492126: funcgraph_exit:       ! 212.400 us |      }
              ip-2541  [006]  5230.492185: funcgraph_entry:        1.456 us   |    rtnl_is_locked(); /* ret=0x1 */
              ip-2541  [006]  5230.492186: funcgraph_exit:         4.5 us     |    } /* rmap_walk_ksm = -22 */
              ip-2541  [006]  5230.492200: funcgraph_exit:       # 1227.888 us |  }
       trace-cmd-11810 [007] 11658.899116: funcgraph_entry:       func=0xffffffffbaac16a0 depth=1
       trace-cmd-11810 [007] 11658.899117: funcgraph_exit:        func=0xffffffffbaac16a0 calltime=0xa9a8c8a5227 rettime=0xa9a8c8a5299 overrun=0x0 depth=1
"""


def test_funcgraph_rows():
    rows, stats = parse_text(FUNCGRAPH)
    assert stats.n_malformed == 0
    got = [(r["event"], r["func"], r["depth"], r["kind"], r["duration_ns"], r["retval"]) for r in rows]
    assert got == [
        ("funcgraph_entry", "veth_dellink", 0, "entry", None, None),
        ("funcgraph_entry", "mutex_is_locked", 3, "leaf", 56464, None),
        ("funcgraph_exit", None, 2, "exit", 212400, None),
        ("funcgraph_entry", "rtnl_is_locked", 1, "leaf", 1456, "0x1"),
        ("funcgraph_exit", "rmap_walk_ksm", 1, "exit", 4500, "-22"),
        ("funcgraph_exit", "veth_dellink", 0, "exit", 1227888, None),  # named after its entry
        ("funcgraph_entry", "0xffffffffbaac16a0", 1, "entry", None, None),
        ("funcgraph_exit", "0xffffffffbaac16a0", 1, "exit", 0x72, None),
    ]


def test_sniff():
    assert TraceCmdReportParser.sniff(REPORT, REPORT.encode()) >= 90
    assert detect(REPORT, REPORT.encode()).name == "trace-cmd-report"
    ftrace = ("# tracer: nop\n#\n"
              "  ksm_rmap_repro-10396   [001] .....   458.050612: ksm_enter: mm 0000000013462d9c\n"
              "            ksmd-37      [000] .....   458.050658: ksm_start_scan: seq 834 rmap size 0\n"
              "            ksmd-37      [000] .....   458.050659: ksm_start_scan: seq 835 rmap size 0\n")
    assert TraceCmdReportParser.sniff(ftrace, ftrace.encode()) == 0


# -- round trip ----------------------------------------------------------------------------------------------

_word = st.from_regex(r"[A-Za-z<][A-Za-z0-9_./:<>]{0,9}", fullmatch=True)
#: "name: " at the start of a line is trace-cmd's buffer (instance) prefix, so comms never contain ": " here
_comm = st.lists(_word, min_size=1, max_size=2).map(" ".join).filter(lambda c: ": " not in c)
_event = st.from_regex(r"[a-z][a-z0-9_]{0,24}", fullmatch=True).filter(
    lambda e: e not in ("funcgraph_entry", "funcgraph_exit", "bprint", "bputs", "print"))
_payload = st.from_regex(r"[A-Za-z0-9_=,.:()\[\]/<>-][A-Za-z0-9_=,.:()\[\]/<> -]{0,40}", fullmatch=True).map(str.rstrip)
_sym = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,20}", fullmatch=True)


@st.composite
def reports(draw):
    ns = draw(st.booleans())
    style = draw(st.sampled_from(["default", "flags", "latency", "tsdiff"]))
    ncpus = draw(st.integers(1, 64))
    empty = sorted(draw(st.sets(st.integers(0, ncpus - 1), max_size=3)))
    recs = []
    for _ in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(["plain", "plain", "stack", "print"]))
        r = dict(comm=draw(_comm), pid=draw(st.integers(0, 4_000_000)), cpu=draw(st.integers(0, ncpus - 1)),
                 sec=draw(st.integers(0, 10**6)), frac=draw(st.integers(0, 10**9 - 1 if ns else 10**6 - 1)),
                 flags=draw(st.from_regex(r"[.dNnhs][.Nnp][.hsH][.0-9][.0-9]", fullmatch=True)),
                 kind=kind, frames=[], cont=[])
        if kind == "stack":
            r["event"], r["payload"] = "kernel_stack", "<stack trace >"
            r["frames"] = draw(st.lists(st.tuples(_sym, st.integers(2**63, 2**64 - 1)), min_size=1, max_size=6))
        elif kind == "print":
            r["event"], r["payload"] = "bprint", draw(_payload).strip() or "x"
            r["cont"] = draw(st.lists(_payload.map(lambda s: " " + s.strip() if s.strip() else " y"), max_size=2))
        else:
            r["event"], r["payload"] = draw(_event), draw(_payload)
        if style == "latency":
            r["comm"] = r["comm"].replace(" ", "_")[:8]
        recs.append(r)
    out = ["version = 6\n"] if draw(st.booleans()) else []
    out += [f"CPU {c} is empty\n" for c in empty] + [f"cpus={ncpus}\n"]
    for r in recs:
        ts = f"{r['sec']}.{r['frac']:09d}" if ns else f"{r['sec']}.{r['frac']:06d}"
        ev = f"{r['event'] + ':':<21} {r['payload']}".rstrip()
        if style == "latency":
            line = f"{r['comm']:>8.8}-{r['pid']:<5d} {r['cpu']:3d}{r['flags']} {ts}: {ev}"
        else:
            flags = f" {r['flags']}" if style == "flags" else ""
            diff = "(+12)    " if style == "tsdiff" else ""
            line = f"{r['comm']:>16}-{r['pid']:<5d} [{r['cpu']:03d}]{flags} {ts:>12}: {diff}{ev}"
        out.append(line + "\n")
        out += [f"=> {s} ({a:x})\n" for s, a in r["frames"]]
        out += [c + "\n" for c in r["cont"]]
    return "".join(out), recs, dict(ns=ns, style=style, ncpus=ncpus)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reports(), st.sampled_from([None, 80, 257]))
def test_roundtrip_tracecmd_layouts(case, chunk):
    text, recs, o = case
    rows, stats = parse_text(text, chunk_bytes=chunk)
    assert stats.n_malformed == 0, (stats.malformed_examples, text)
    assert stats.meta["n_cpus"] == o["ncpus"]
    assert len(rows) == len(recs)
    for row, r in zip(rows, recs):
        comm = r["comm"][:8] if o["style"] == "latency" else r["comm"]
        assert (row["comm"], row["pid"], row["cpu"]) == (comm, r["pid"], r["cpu"])
        assert row["ts_ns"] == r["sec"] * 10**9 + r["frac"] * (1 if o["ns"] else 1000)
        assert row["flags"] == (r["flags"] if o["style"] in ("flags", "latency") else None)
        assert row["event"] == r["event"]
        assert row["payload"] == "\n".join([r["payload"]] + r["cont"])
        exp = [{"addr": f"{a:x}", "sym": s, "off": None, "dso": None} for s, a in r["frames"]]
        assert (row["callchain"] or []) == exp
    assert stats.meta["ts_resolution_ns"] == (1 if o["ns"] else 1000)


_fg_func = st.from_regex(r"[a-z_][a-z0-9_.]{0,20}", fullmatch=True)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["entry", "leaf", "exit", "raw_entry", "raw_exit"]), _fg_func,
                          st.integers(0, 12), st.integers(0, 10**9), st.sampled_from([None, "0x1", "-22"])),
                min_size=1, max_size=12))
def test_roundtrip_funcgraph(items):
    lines, exp = ["cpus=2\n"], []
    open_at: dict[int, str | None] = {}  # depth -> function of the open call (None once closed)
    for i, (kind, func, depth, dur_ns, ret) in enumerate(items):
        dur_ns = dur_ns // 1000 * 1000 + (dur_ns % 1000 // 10 * 10 if dur_ns < 10**7 else 0)  # as printable
        us = f"{dur_ns // 1000}.{dur_ns % 1000:03d}".rstrip("0").rstrip(".") if dur_ns % 1000 else f"{dur_ns // 1000}"
        ind = "  " * depth
        if kind == "entry":
            body, ev, e = f"{'':>17} |  {ind}{func}() {{", "funcgraph_entry", (func, depth, "entry", None, None)
        elif kind == "leaf":
            tail = f" /* ret={ret} */" if ret else ""
            body, ev, e = f"+ {us} us  |  {ind}{func}();{tail}", "funcgraph_entry", (func, depth, "leaf", dur_ns, ret)
        elif kind == "exit":
            tail = f" /* {func} ret={ret} */" if ret else ""
            body, ev = f"! {us} us |  {ind}}}{tail}", "funcgraph_exit"
            e = (func if ret else open_at.get(depth), depth, "exit", dur_ns, ret)
        elif kind == "raw_entry":
            body, ev, e = f"func=0x{hash(func) & 0xffffffff:x} depth={depth}", "funcgraph_entry", \
                (f"0x{hash(func) & 0xffffffff:x}", depth, "entry", None, None)
        else:
            call = 0xa9a8c8a5227 + i
            body = (f"func=0x{hash(func) & 0xffffffff:x} calltime=0x{call:x} rettime=0x{call + dur_ns:x} "
                    f"overrun=0x0 depth={depth}")
            ev, e = "funcgraph_exit", (f"0x{hash(func) & 0xffffffff:x}", depth, "exit", dur_ns, None)
        if e[2] == "entry":
            open_at[depth] = e[0]
        elif e[2] == "exit":
            open_at[depth] = None
        lines.append(f"              ip-2541  [006]  5230.{i:06d}: {ev + ':':<21} {body}\n")
        exp.append((ev,) + e)
    for chunk in (None, 90):
        rows, stats = parse_text("".join(lines), chunk_bytes=chunk)
        assert stats.n_malformed == 0
        assert [(r["event"], r["func"], r["depth"], r["kind"], r["duration_ns"], r["retval"]) for r in rows] == exp


# -- corpus ----------------------------------------------------------------------------------------------------

def test_corpus_trace_cmd_report(corpus):
    files = sorted((corpus / "trace-cmd-report").iterdir()) + [
        corpus / "snippets" / "realwujing-blog__trace-cmd-report_funcgraph_veth_dellink.txt"]
    for f in files:
        src = TraceSource(f)
        assert detect(src.head_text, src.head, str(f)).name == "trace-cmd-report", f.name
        rows, stats = parse_text(f.read_text())
        assert stats.n_malformed == 0, (f.name, stats.malformed_examples[:3])
        lines = f.read_text().splitlines()
        pre = sum(1 for ln in lines if ln.startswith(("version =", "cpus=")) or
                  (ln.startswith("CPU ") and ln.endswith("is empty")))
        assert len(rows) + pre == len(lines) - sum(1 for ln in lines if not ln.strip()), f.name
        assert stats.meta["n_cpus"] == int(next(ln for ln in lines if ln.startswith("cpus="))[5:])
    rows, _ = parse_text((corpus / "trace-cmd-report" / "tracecompass-incubator__trace-func-graph").read_text())
    exits = [r for r in rows if r["event"] == "funcgraph_exit"]
    assert exits and all(r["kind"] == "exit" and r["duration_ns"] >= 0 for r in exits)
