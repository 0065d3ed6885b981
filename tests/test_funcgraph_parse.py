"""function_graph parser: render random call trees with random option sets, parse back, compare exactly."""
from __future__ import annotations

import io

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from ksmtrace.ingest.base import ParseStats, conform
from ksmtrace.ingest.funcgraph import FuncGraphParser
from ksmtrace.ingest.source import TraceSource

from conftest import examples


def parse(text: str):
    src = TraceSource(stream=io.BytesIO(text.encode()), name="t")
    stats = ParseStats()
    tables = [conform(t) for t in FuncGraphParser().parse(src, stats)]
    return (pa.concat_tables(tables).to_pylist() if tables else []), stats


def render_duration(ns: int) -> tuple[str, int]:
    """Kernel rule: µs with up to 3 decimals, cut so that the digits fit in 7."""
    us, rem = divmod(ns, 1000)
    s = str(us)
    if len(s) < 7:
        dec = f"{rem:03d}"[: 7 - len(s)]
        s += "." + dec
        return s, us * 1000 + int(dec.ljust(3, "0"))
    return s, us * 1000


def mark_of(ns: int) -> str:
    for lim, m in ((10**9, "$"), (10**8, "@"), (10**7, "*"), (10**6, "#"), (10**5, "!"), (10**4, "+")):
        if ns > lim:
            return m
    return " "


def center(s: str, w: int = 14) -> str:
    left = (w - len(s)) // 2
    return " " * left + s + " " * max(0, w - len(s) - left)


SYM = st.from_regex(r"[a-z_][a-z0-9_]{0,14}(\.isra\.0)?", fullmatch=True)


@st.composite
def ops_st(draw, depth=0):
    """A list of call operations for one task: ('call', func, children, ns, extras) or ('comment', text)."""
    out = []
    for _ in range(draw(st.integers(1, 3 if depth < 3 else 1))):
        r = draw(st.integers(0, 9))
        if r == 0:
            out.append(("comment", draw(st.sampled_from(
                ["set_migration_pte: addr=7f956e0b2000, pte=e7fff7ffdae58e00 order=0",
                 "rmap_walk_ksm: hold_ns=621004 iterations=20001", "I'm a comment!"]))))
            continue
        kids = draw(ops_st(depth + 1)) if depth < 3 and draw(st.booleans()) else []
        out.append(("call", draw(SYM), kids, draw(st.integers(0, 4 * 10**9)),
                    dict(ret=draw(st.sampled_from([None, "0x1", "-22", "0xffff93fcfd346c00"])),
                         ra=draw(st.sampled_from([None, "try_to_migrate+0x8e/0xc0"])),
                         args=draw(st.sampled_from([None, [("folio", "0xffffea0004a35e40"), ("rwc", "3")]])),
                         mod=draw(st.sampled_from([None, None, "cppc_cpufreq"])),
                         irq=draw(st.integers(0, 9)) == 0)))
    return out


@st.composite
def graph_st(draw):
    opt = dict(abstime=draw(st.booleans()), cpu=draw(st.booleans()), proc=draw(st.booleans()),
               duration=draw(st.booleans()), overhead=draw(st.booleans()), tail=draw(st.booleans()),
               retval=draw(st.sampled_from([None, "old", "new"])), header=draw(st.booleans()),
               cpuw=draw(st.sampled_from([1, 2, 3])))
    if not (opt["abstime"] or opt["cpu"] or opt["duration"]):
        # a bare "/* comment */" line with no column at all is indistinguishable from prose; the
        # kernel prints the CPU column by default, so keep at least that one in this case
        opt["cpu"] = draw(st.booleans()) or not opt["proc"]
    tasks = [(draw(st.sampled_from(["ksm_rmap_repro", "sh", "kcompactd0", "my prog"])), 100 + i)
             for i in range(draw(st.integers(1, 3)))]
    segments = [(draw(st.integers(0, len(tasks) - 1)), draw(ops_st())) for _ in range(draw(st.integers(1, 4)))]
    lines, exp = [], []
    if opt["header"]:
        lines += ["# tracer: function_graph", "#",
                  "#     TIME        CPU  DURATION                  FUNCTION CALLS",
                  "#      |          |     |   |                     |   |   |   |"]
    ts = [draw(st.integers(1, 10**6)) * 10**6]
    cur = None
    cpu = draw(st.integers(0, 10**opt["cpuw"] - 1))

    def prologue(comm, pid):
        s = ""
        if opt["abstime"]:
            t = ts[0]
            s += f"{t // 10**9:5d}.{t // 1000 % 10**6:06d} |  "
        if opt["cpu"]:
            s += f" {cpu:>{opt['cpuw']}}) "
        if opt["proc"]:
            s += center(f"{comm[:7]}-{pid}") + " | "
        return s

    def dcol(ns=None, irq=None):
        if not opt["duration"]:
            return ""
        if irq:
            return f"  {irq} |  "
        if ns is None:
            return " " * 14 + "|  "
        txt, _ = render_duration(ns)
        m = mark_of(ns) if opt["overhead"] else " "
        return f"{m} {txt} us".ljust(14) + "|  "

    def exp_ts():
        return ts[0] // 1000 * 1000 if opt["abstime"] else None

    def emit(ops, depth, comm, pid):
        for op in ops:
            ts[0] += 1000
            if op[0] == "comment":
                lines.append(prologue(comm, pid) + dcol() + "  " * (depth + 1) + f"/* {op[1]} */")
                ev, _, pay = op[1].partition(": ")
                is_ev = bool(pay) and " " not in ev
                exp.append(dict(line_no=len(lines), kind="comment", event=ev if is_ev else "funcgraph_comment",
                                payload=pay if is_ev else op[1], depth=depth, func=None, duration_ns=None,
                                retval=None, pid=pid, comm=comm[:7], ts_ns=exp_ts()))
                continue
            _, func, kids, ns, x = op
            irq = x["irq"] and opt["duration"]  # the markers live in the duration column
            if irq:
                lines.append(prologue(comm, pid) + dcol(irq="==========>"))
                exp.append(dict(line_no=len(lines), kind="irq_enter", event="funcgraph_irq", depth=depth,
                                func=None, duration_ns=None, retval=None, pid=pid, comm=comm[:7], ts_ns=exp_ts(),
                                payload=None))
            name = func + (f" [{x['mod']}]" if x["mod"] else "")
            args = ", ".join(f"{k}={v}" for k, v in x["args"]) if x["args"] else ""
            ret = x["ret"] if opt["retval"] else None
            _, dur_ns = render_duration(ns)
            if not opt["duration"]:
                dur_ns = None
            if not kids:
                cm = []
                if x["ra"]:
                    cm.append(f"<-{x['ra']}")
                if ret:
                    cm.append(("= " if opt["retval"] == "old" else "ret=") + ret)
                tail = f" /* {' '.join(cm)} */" if cm else ""
                lines.append(prologue(comm, pid) + dcol(ns) + "  " * depth + f"{name}({args});{tail}")
                exp.append(dict(line_no=len(lines), kind="leaf", event="funcgraph_entry", depth=depth, func=func,
                                duration_ns=dur_ns, retval=ret, pid=pid, comm=comm[:7], ts_ns=exp_ts(),
                                parent=x["ra"], args=x["args"], mod=x["mod"], payload=None))
            else:
                tail = f" /* <-{x['ra']} */" if x["ra"] else ""
                lines.append(prologue(comm, pid) + dcol() + "  " * depth + f"{name}({args}) {{{tail}")
                exp.append(dict(line_no=len(lines), kind="entry", event="funcgraph_entry", depth=depth, func=func,
                                duration_ns=None, retval=None, pid=pid, comm=comm[:7], ts_ns=exp_ts(),
                                parent=x["ra"], args=x["args"], mod=x["mod"], payload=None))
                emit(kids, depth + 1, comm, pid)
                ts[0] += 1000
                if ret:
                    c = f" /* {func} = {ret} */" if opt["retval"] == "old" else f" /* {func} ret={ret} */"
                elif opt["tail"]:
                    c = f" /* {func} */"
                else:
                    c = ""
                lines.append(prologue(comm, pid) + dcol(ns) + "  " * depth + "}" + c)
                exp.append(dict(line_no=len(lines), kind="exit", event="funcgraph_exit", depth=depth, func=func,
                                duration_ns=dur_ns, retval=ret, pid=pid, comm=comm[:7], ts_ns=exp_ts(),
                                payload=None))
            if irq:
                lines.append(prologue(comm, pid) + dcol(irq="<=========="))
                exp.append(dict(line_no=len(lines), kind="irq_exit", event="funcgraph_irq", depth=depth,
                                func=None, duration_ns=None, retval=None, pid=pid, comm=comm[:7], ts_ns=exp_ts(),
                                payload=None))

    for ti, ops in segments:
        comm, pid = tasks[ti]
        if cur is not None and cur != ti:
            pc, pp = tasks[cur]
            lines.append(" ------------------------------------------")
            lines.append(f" {cpu}) " + center(f"{pc[:7]}-{pp}") + "  =>  " + center(f"{comm[:7]}-{pid}"))
            lines.append(" ------------------------------------------")
            lines.append("")
            exp.append(dict(line_no=len(lines) - 2, event="__task_switch", kind=None, depth=None, func=None,
                            duration_ns=None, retval=None, pid=pid, comm=comm[:7], ts_ns=None,
                            payload=f"{pc[:7]}-{pp} => {comm[:7]}-{pid}"))
        cur = ti
        emit(ops, 0, comm, pid)
    return "\n".join(lines) + "\n", exp, opt


@settings(max_examples=examples(80), deadline=None)
@given(graph_st())
def test_roundtrip_funcgraph(case):
    text, exp, opt = case
    rows, stats = parse(text)
    assert stats.n_malformed == 0, stats.malformed_examples
    assert [r["line_no"] for r in rows] == [e["line_no"] for e in exp], text
    switched = False
    for r, e in zip(rows, exp):
        if e["event"] == "__task_switch":
            switched = True
        for k in ("event", "kind", "func", "depth", "duration_ns", "retval", "ts_ns", "payload"):
            assert r[k] == e[k], (k, r, e, text)
        if opt["proc"] or switched:
            assert (r["pid"], r["comm"]) == (e["pid"], e["comm"]), (r, e)
        if opt["cpu"] or e["event"] == "__task_switch":
            assert r["cpu"] is not None
        f = dict(r["fields"] or [])
        if e["kind"] in ("entry", "leaf"):
            assert r["parent"] == e["parent"]
            for k, v in (e["args"] or []):
                assert f[k] == v
            assert f.get("module") == e["mod"]


def test_exit_without_entry_is_kept_with_depth_from_indentation():
    text = (" 0) ! 8147.120 us |  } /* ext3_readpages */\n"
            " 0) ! 12202.93 us |      }\n"
            " 0)   0.180 us    |  down_read_trylock();\n")
    rows, stats = parse(text)
    assert [(r["kind"], r["func"], r["depth"], r["duration_ns"]) for r in rows] == [
        ("exit", "ext3_readpages", 0, 8147120), ("exit", None, 2, 12202930), ("leaf", "down_read_trylock", 0, 180)]
    assert dict(rows[0]["fields"])["unmatched"] == "true"
    assert stats.meta["unmatched_exits"] == 2


def test_durations_exact():
    text = ("  458.203500 |   1) ksm_rma-10396  |               |  rmap_walk_ksm() {\n"
            "  458.203501 |   1) ksm_rma-10396  |   0.180 us    |    down_read_trylock();\n"
            "  458.237510 |   1) ksm_rma-10396  | * 34010.00 us |  } /* rmap_walk_ksm */\n"
            " 2) $ 3594274 us  |  }\n 1) @ 119760.2 us |  }\n")
    rows, _ = parse(text)
    assert [r["duration_ns"] for r in rows] == [None, 180, 34010000, 3594274000, 119760200]
    assert [r["ts_ns"] for r in rows[:3]] == [458203500000, 458203501000, 458237510000]
    assert rows[2]["depth"] == 0 and rows[2]["pid"] == 10396 and rows[2]["comm"] == "ksm_rma"


def test_overruns_and_prose_are_accounted():
    text = ("Tracing... Ctrl-C to end.\n 0)               |  f() {\n (Overruns: 12)\n 0)   1.000 us    |  }\n"
            "[...]\n")
    rows, stats = parse(text)
    assert len(rows) == 2 and stats.meta["overruns"] == 12
    assert stats.meta["n_overrun_lines"] == 1 and stats.meta["n_ignored_prose"] == 2
