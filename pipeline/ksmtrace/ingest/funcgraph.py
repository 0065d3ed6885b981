"""function_graph tracer text (formats.md §4), every option combination.

Groups of a line, each optional: abstime ``%5lu.%06lu |`` (or irqsoff display-graph's
``REL TIME`` ``N us |``), CPU ``N)``, proc ``comm-pid |``, latency flags ``d..1 |``,
the duration column (``+ 49.370 us   |``, blank for entries, or an irq marker
``==========> |`` / ``<========== |``), then indentation and the text:
``func() {``, ``func();``, ``}`` with optional ``/* ... */`` comments (tail name,
retval in both spellings, ``<-caller+off/size`` return address), ``/* comment */``
lines (tracepoints and trace_printk inside the graph), task-change banners and
``(Overruns: N)``.

Rows: ``funcgraph_entry`` (kind entry|leaf), ``funcgraph_exit`` (kind exit),
``funcgraph_irq`` (kind irq_enter|irq_exit), comment rows (kind comment; the event
is the tracepoint name when the comment reads ``event: payload``, else
``funcgraph_comment``) and ``__task_switch`` rows. Everything else (headers,
prose, ordinary ftrace lines such as a latency ``<stack trace>`` block) goes
through the ftrace parser.

Depth is inferred from braces, per task: the pid when ``funcgraph-proc`` is on,
otherwise the task that the last task-change banner put on that CPU (or the CPU
itself before any banner). Regex extraction is vectorised; depth is a tight loop
over the small state columns only.
"""
from __future__ import annotations

import re
from typing import Iterator

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from .base import INT64_MAX, OUT_OF_RANGE, TRACER_HEADER_RE, Parser, ParseStats, take_junk
from .fields import fields_long, long_to_map
from .ftrace import events_to_arrow, iter_line_frames, parse_lines, ts_to_ns
from .source import TraceSource, is_probably_binary

GRAPH_RE = (
    r"^(?:\s*(?P<abs>\d+\.\d+)\s+\|)?(?:\s*(?P<rel>\d+) us\s+\|)?"
    r"(?:\s*(?P<cpu>\d+)\) )?"
    r"(?:\s*(?P<comm>[^|\s][^|]*?)-(?P<pid>\d+)\s*\|)?"
    r"(?:\s*(?P<lflags>[.A-Za-z0-9]{4,7})\s+\|)?"
    r"(?P<dcol> *(?:(?P<mark>[+!#*@$])? *(?P<dur>\d+(?:\.\d+)?) us|(?P<irq>==========>|<==========))? *\|)?"
    r"(?P<ind> *)(?P<text>\S.*?)?\s*$"
)
CALL_RE = (
    r"^(?P<func>[^\s(){};/]+)(?: \[(?P<mod>[^\]]+)\])?\((?P<args>.*?)\)\s*(?P<term>\{|;)"
    r"(?:\s*/\*\s*(?P<c>.*?)\s*\*/)?$"
)
EXIT_RE = r"^\}(?:\s*/\*\s*(?P<c>.*?)\s*\*/)?$"
COMMENT_RE = r"^/\*\s?(?P<c>.*?)\s*\*/$"
#: comment on entry/leaf lines: "<-caller+0x../0x..", "= 0x1" / "ret=0x1", or both
CALL_CMT_RE = r"^(?:<-(?P<ra>\S+))?\s*(?:(?:= |ret=)(?P<ret>\S+))?$"
#: comment on closing lines: "func", "func = -22", "func ret=0x1" ("func()" in the docs)
EXIT_CMT_RE = r"^(?P<f>[^\s=()]+)(?:\(\))?(?:\s+(?:= |ret=)(?P<ret>\S+))?$"
EVENT_CMT_RE = r"^(?P<ev>[A-Za-z_][A-Za-z0-9_]*): (?P<payload>.*)$"
BANNER_RE = r"^\s*(?:(?P<cpu>\d+)\)\s+)?(?P<prev>\S.*?-\d+)\s+=>\s+(?P<next>\S.*?-\d+)\s*$"
DASHES_RE = r"^\s*-{20,}\s*$"
OVERRUN_RE = r"^\s*\(Overruns: (?P<n>\d+)\)\s*$"

_COMM_PID = re.compile(r"^(.*)-(\d+)$")


def dur_to_ns(d: pl.Expr) -> pl.Expr:
    """Printed µs ("34010.00", "0.180", "3594274") -> exact integer ns."""
    parts = d.str.split_exact(".", 1)
    us = parts.struct.field("field_0").cast(pl.Int64, strict=False)
    frac = parts.struct.field("field_1").fill_null("").str.pad_end(3, "0").str.slice(0, 3).cast(pl.Int64, strict=False)
    return pl.when(us < INT64_MAX // 1000).then(us * 1000 + frac).otherwise(pl.lit(None, pl.Int64))


class FuncGraphParser(Parser):
    name = "function-graph"
    description = "function_graph tracer text (any funcgraph-* options; irqsoff display-graph)"

    @classmethod
    def sniff(cls, head_text: str, head_bytes: bytes) -> int:
        if is_probably_binary(head_bytes):
            return 0
        lines = head_text.splitlines()[:400]
        for ln in lines[:50]:
            m = TRACER_HEADER_RE.match(ln)
            if m and m.group(1) == "function_graph":
                return 95
        sample = "\n".join(lines)
        n = len(re.findall(
            r"(?m)^(?:\s*\d+(?:\.\d+)?(?: us)?\s+\|)?\s*\d+\)\s.*?\|\s*(?:[^\s(){};]+\(.*\)\s*[{;]|\}|/\*)", sample))
        n += len(re.findall(r"(?m)^\s*(?:[+!#*@$]\s*)?\d+\.\d+ us\s+\|\s*(?:[^\s(){};]+\(.*\)\s*[{;]|\})", sample))
        if "FUNCTION CALLS" in sample and n:
            return 92
        if n >= 3:
            return 85
        if n:
            return 50
        return 0

    def parse(self, source: TraceSource, stats: ParseStats) -> Iterator[pa.Table]:
        counters: dict[str, int] = {}
        stats.meta.setdefault("ts_unit", "ns")
        state = _DepthState()
        for df in iter_line_frames(source):
            t = self._chunk(df, stats, counters, state)
            if t is not None and t.num_rows:
                yield t
        for k, v in counters.items():
            stats.meta[k] = v
        if state.n_unmatched_exits:
            stats.meta["unmatched_exits"] = state.n_unmatched_exits
        stats.meta.setdefault("tracer", "function_graph")
        if "ts_resolution_ns" not in stats.meta and stats.meta.get("ts_unit") != "counter":
            stats.meta["ts_resolution_ns"] = 1000

    # ------------------------------------------------------------------
    def _chunk(self, df: pl.DataFrame, stats: ParseStats, counters: dict, state: "_DepthState"):
        df = take_junk(df.with_columns(pl.col("l").str.strip_chars_end(" \t\r\n\x0b\x0c")), "l", "line_no", stats)
        g = df.with_columns(m=pl.col("l").str.extract_groups(GRAPH_RE)).unnest("m")
        # "N us |" first on a line is a REL TIME column only when a duration column follows; else it is the duration
        swap = pl.col("rel").is_not_null() & pl.col("dcol").is_null()
        g = g.with_columns(
            dur=pl.when(swap).then(pl.col("rel")).otherwise(pl.col("dur")),
            dcol=pl.when(swap).then(pl.lit("|")).otherwise(pl.col("dcol")),
            rel=pl.when(swap).then(pl.lit(None, pl.String)).otherwise(pl.col("rel")),
        )
        t = pl.col("text")
        g = g.with_columns(
            call=t.str.extract_groups(CALL_RE),
            ex=t.str.extract_groups(EXIT_RE),
            cm=t.str.extract_groups(COMMENT_RE),
            _exit=t.str.contains(EXIT_RE),
        )
        is_call = pl.col("call").struct.field("func").is_not_null()
        is_exit = pl.col("_exit").fill_null(False)
        is_cmt = pl.col("cm").struct.field("c").is_not_null()
        is_irq = pl.col("irq").is_not_null() & t.is_null()
        # a graph line needs some graph prologue (cpu, abstime, duration column) or a call/exit text
        has_pro = (pl.col("cpu").is_not_null() | pl.col("dcol").is_not_null() | pl.col("abs").is_not_null()
                   | pl.col("pid").is_not_null() | pl.col("rel").is_not_null())
        # a bare "/* ... */" line (no prologue columns at all) counts once the input has shown graph lines
        g = g.with_columns(_ce=(is_call | is_exit).fill_null(False))
        if g.get_column("_ce").any():
            self._seen_graph = True
        bare_ok = pl.lit(getattr(self, "_seen_graph", False))
        g = g.with_columns(
            _graph=(pl.col("_ce") | (is_cmt & (has_pro | bare_ok)) | is_irq).fill_null(False),
        )
        graph = g.filter(pl.col("_graph"))
        other = g.filter(~pl.col("_graph")).with_columns(_pro=has_pro.fill_null(False)).select("line_no", "l", "_pro")

        # ---- banners, separator dashes, overruns
        banners = None
        if other.height:
            o = other.with_columns(
                _dash=pl.col("l").str.contains(DASHES_RE),
                _ban=pl.col("l").str.extract_groups(BANNER_RE),
                _ovr=pl.col("l").str.extract(OVERRUN_RE, 1).cast(pl.Int64, strict=False),
            )
            nd = int(o.get_column("_dash").sum())
            if nd:
                counters["n_separator_lines"] = counters.get("n_separator_lines", 0) + nd
            ovr = o.get_column("_ovr").drop_nulls()
            if len(ovr):
                counters["n_overrun_lines"] = counters.get("n_overrun_lines", 0) + len(ovr)
                stats.meta["overruns"] = max(int(ovr.max()), stats.meta.get("overruns", 0))
            bmask = o.get_column("_ban").struct.field("next").is_not_null() & ~o.get_column("l").str.starts_with("#")
            if bmask.any():
                # a banner whose pids or CPU do not fit int32 is malformed
                bo = o.select(
                    pl.col("_ban").struct.field("prev").str.extract(r"-(\d+)$", 1).cast(pl.Int32, strict=False).is_null()
                    | pl.col("_ban").struct.field("next").str.extract(r"-(\d+)$", 1).cast(pl.Int32, strict=False)
                    .is_null()
                    | (pl.col("_ban").struct.field("cpu").is_not_null()
                       & pl.col("_ban").struct.field("cpu").cast(pl.Int32, strict=False).is_null())).to_series()
                bad_ban = bmask & bo
                if bad_ban.any():
                    bb = o.filter(bad_ban)
                    stats.malformed_many(bb.get_column("line_no").to_list(), bb.get_column("l").to_list(),
                                         OUT_OF_RANGE)
                    o = o.filter(~bad_ban)
                    bmask = bmask.filter(~bad_ban)
            banners = o.filter(bmask).select(
                "line_no", pl.col("_ban").struct.field("cpu").cast(pl.Int32, strict=False).alias("cpu"),
                pl.col("_ban").struct.field("prev").alias("prev"), pl.col("_ban").struct.field("next").alias("next"))
            other = o.filter(~(pl.col("_dash") | pl.col("_ovr").is_not_null() | bmask)).select("line_no", "l", "_pro")
        # lines with function_graph columns that no rule takes: malformed (unless the ftrace layouts take them)
        graphlike = other.filter(pl.col("_pro") & ~pl.col("l").str.starts_with("#")).get_column("line_no")
        other = other.drop("_pro")

        # ---- graph rows (vectorised extraction)
        call, ex = pl.col("call").struct, pl.col("ex").struct
        cc = call.field("c").str.extract_groups(CALL_CMT_RE)
        xc = ex.field("c").str.extract_groups(EXIT_CMT_RE)
        ec = pl.col("cm").struct.field("c").str.extract_groups(EVENT_CMT_RE)
        ind = pl.col("ind").str.len_bytes()
        graph = graph.with_columns(
            kind=pl.when(pl.col("irq").is_not_null() & pl.col("text").is_null()).then(
                pl.when(pl.col("irq") == "==========>").then(pl.lit("irq_enter")).otherwise(pl.lit("irq_exit")))
            .when(call.field("term") == "{").then(pl.lit("entry"))
            .when(call.field("term") == ";").then(pl.lit("leaf"))
            .when(pl.col("_exit")).then(pl.lit("exit"))
            .otherwise(pl.lit("comment")),
            func=pl.coalesce(call.field("func"), xc.struct.field("f")),
            retval=pl.coalesce(cc.struct.field("ret"), xc.struct.field("ret")),
            parent=cc.struct.field("ra"),
            duration_ns=dur_to_ns(pl.col("dur")),
            ts_ns=pl.when(pl.col("abs").is_not_null()).then(ts_to_ns(pl.col("abs")))
            .when(pl.col("rel").cast(pl.Int64, strict=False) < INT64_MAX // 1000)
            .then(pl.col("rel").cast(pl.Int64, strict=False) * 1000),
            cpu=pl.col("cpu").cast(pl.Int32, strict=False),
            pid=pl.col("pid").cast(pl.Int32, strict=False),
            _cpu_t=pl.col("cpu"), _pid_t=pl.col("pid"),
            comm=pl.col("comm").str.strip_chars(),
            flags=pl.col("lflags"),
            _ind=pl.when(pl.col("dcol").is_not_null()).then((ind - 2).clip(0) // 2).otherwise(ind // 2),
            _mod=call.field("mod"),
            _args=call.field("args"),
            _cmt=pl.col("cm").struct.field("c"),
            _cev=ec.struct.field("ev"),
            _cpay=ec.struct.field("payload"),
        )
        # numbers that do not fit the schema: malformed, never a row with a NULL or wrapped value
        oor = ((pl.col("cpu").is_null() & pl.col("_cpu_t").is_not_null())
               | (pl.col("pid").is_null() & pl.col("_pid_t").is_not_null())
               | (pl.col("ts_ns").is_null() & (pl.col("abs").is_not_null() | pl.col("rel").is_not_null()))
               | (pl.col("duration_ns").is_null() & pl.col("dur").is_not_null()))
        graph = graph.with_columns(_oor=oor)
        if graph.get_column("_oor").any():
            bad = graph.filter(pl.col("_oor"))
            stats.malformed_many(bad.get_column("line_no").to_list(), bad.get_column("l").to_list(), OUT_OF_RANGE)
            graph = graph.filter(~pl.col("_oor"))
        if graph.height and graph.get_column("abs").is_null().all() and graph.get_column("rel").is_not_null().any():
            stats.meta["ts_relative"] = True
        graph = graph.with_columns(
            event=pl.when(pl.col("kind").is_in(["entry", "leaf"])).then(pl.lit("funcgraph_entry"))
            .when(pl.col("kind") == "exit").then(pl.lit("funcgraph_exit"))
            .when(pl.col("kind").is_in(["irq_enter", "irq_exit"])).then(pl.lit("funcgraph_irq"))
            .otherwise(pl.coalesce(pl.col("_cev"), pl.lit("funcgraph_comment"))),
            payload=pl.when(pl.col("kind") == "comment").then(pl.coalesce(pl.col("_cpay"), pl.col("_cmt"))),
        )

        # ---- merge banners in line order, then the sequential depth pass
        cols = ["line_no", "kind", "func", "cpu", "pid", "comm", "_ind"]
        seq = graph.select(cols)
        resets = other.filter(pl.col("l").str.contains(r"^#\s*tracer:")).select(
            "line_no", pl.lit("__reset").alias("kind"), pl.lit(None, pl.String).alias("func"),
            pl.lit(None, pl.Int32).alias("cpu"), pl.lit(None, pl.Int32).alias("pid"),
            pl.lit(None, pl.String).alias("comm"), pl.lit(0, pl.Int64).alias("_ind"))
        if resets.height:
            stats.meta["tracefs_snapshot"] = True  # a `trace` file header: overwrite-mode snapshot (02_coverage.sql)
            seq = pl.concat([seq, resets], how="vertical_relaxed").sort("line_no")
        if banners is not None and banners.height:
            seq = pl.concat([seq, banners.select(
                "line_no", pl.lit("__switch").alias("kind"), pl.col("next").alias("func"), "cpu",
                pl.lit(None, pl.Int32).alias("pid"), pl.col("prev").alias("comm"),
                pl.lit(0, pl.Int64).alias("_ind"))], how="vertical_relaxed").sort("line_no")
        depth, funcs, pids, comms, unmatched = state.run(
            seq.get_column("kind").to_list(), seq.get_column("func").to_list(), seq.get_column("cpu").to_list(),
            seq.get_column("pid").to_list(), seq.get_column("comm").to_list(), seq.get_column("_ind").to_list())
        seq = seq.select("line_no", "kind").with_columns(
            depth=pl.Series(depth, dtype=pl.Int32), _func=pl.Series(funcs, dtype=pl.String),
            _pid=pl.Series(pids, dtype=pl.Int32), _comm=pl.Series(comms, dtype=pl.String),
            _unm=pl.Series(unmatched, dtype=pl.Boolean))

        out = graph.join(seq.filter(~pl.col("kind").is_in(["__switch", "__reset"])).drop("kind"), on="line_no",
                         how="left")
        out = out.with_columns(
            func=pl.coalesce("func", "_func"),
            pid=pl.coalesce("pid", "_pid"),
            comm=pl.coalesce("comm", "_comm"),
        )
        # fields: args (funcgraph-args), comment key=values, module, unmatched marker
        out = out.sort("line_no").with_columns(
            _ftext=pl.coalesce(pl.col("_cpay"), pl.col("_cmt"), pl.col("_args").str.replace_all(r",\s+", " ")),
            _fev=pl.col("_cev"))
        fl = fields_long(out.get_column("_ftext"), out.get_column("_fev"))
        extra = out.with_row_index("row").select(
            pl.col("row").cast(pl.UInt32), pl.lit(1 << 30, pl.UInt32).alias("ord"),
            pl.col("_mod"), pl.col("_unm").fill_null(False))
        mods = extra.filter(pl.col("_mod").is_not_null()).select(
            "row", "ord", pl.lit("module").alias("key"), pl.col("_mod").alias("value"))
        unm = extra.filter(pl.col("_unm")).select(
            "row", (pl.col("ord") + 1).alias("ord"), pl.lit("unmatched").alias("key"), pl.lit("true").alias("value"))
        fl = pl.concat([x.select(pl.col("row").cast(pl.UInt32), pl.col("ord").cast(pl.Int64), "key", "value")
                        for x in (fl, mods, unm)]).sort(["row", "ord"], maintain_order=True)
        keep = ["line_no", "ts_ns", "cpu", "pid", "comm", "flags", "event", "payload", "func", "parent",
                "depth", "kind", "duration_ns", "retval"]
        gmap = long_to_map(fl, out.height)
        out = out.select(keep)
        if banners is not None and banners.height:
            bsw = banners.join(seq.filter(pl.col("kind") == "__switch").select("line_no", "_pid"), on="line_no",
                               how="left")
            nx = bsw.get_column("next").str.extract_groups(r"^(?P<c>.*)-(?P<p>\d+)$")
            bsw = bsw.with_columns(
                pid=nx.struct.field("p").cast(pl.Int32, strict=False), comm=nx.struct.field("c"),
                event=pl.lit("__task_switch"), payload=pl.format("{} => {}", "prev", "next"),
            ).select("line_no", "cpu", "pid", "comm", "event", "payload", "prev", "next")
            bl = bsw.with_row_index("row").select(pl.col("row").cast(pl.UInt32), "prev", "next")
            bl = pl.concat([bl.select("row", pl.lit(0, pl.UInt32).alias("ord"), pl.lit("prev").alias("key"),
                                      pl.col("prev").alias("value")),
                            bl.select("row", pl.lit(1, pl.UInt32).alias("ord"), pl.lit("next").alias("key"),
                                      pl.col("next").alias("value"))]).sort(["row", "ord"])
            bt = pa.table({c: bsw.get_column(c).to_arrow() for c in ["line_no", "cpu", "pid", "comm", "event",
                                                                      "payload"]})
            bt = bt.append_column("fields", long_to_map(bl, bsw.height))
        else:
            bt = None

        tables = []
        if out.height:
            t = pa.table({c: out.get_column(c).to_arrow() for c in out.columns})
            t = t.append_column("fields", gmap)
            tables.append(t)
        if bt is not None:
            tables.append(bt)
        if other.height:
            ev = parse_lines(other, stats, counters, graphlike)
            if ev.height:
                tables.append(events_to_arrow(ev))
        if not tables:
            return None
        from .base import conform

        res = pa.concat_tables([conform(x) for x in tables])
        if len(tables) > 1:
            res = res.take(pc.sort_indices(res, [("line_no", "ascending")]))
        return res


class _DepthState:
    """Per-task open-call stacks, carried across chunks."""

    def __init__(self):
        self.stacks: dict = {}
        self.cpu_task: dict = {}  # cpu -> (pid, comm) from the last task-change banner
        self.n_unmatched_exits = 0

    def run(self, kinds, funcs, cpus, pids, comms, inds):
        n = len(kinds)
        depth = [None] * n
        ofunc = [None] * n
        opid = [None] * n
        ocomm = [None] * n
        unm = [False] * n
        stacks = self.stacks
        cpu_task = self.cpu_task
        for i in range(n):
            k = kinds[i]
            pid = pids[i]
            cpu = cpus[i]
            if k == "__reset":
                stacks.clear()
                cpu_task.clear()
                continue
            if k == "__switch":
                m = _COMM_PID.match(funcs[i] or "")
                if m:
                    cpu_task[cpu] = (int(m.group(2)), m.group(1).strip())
                    cpu_task["last"] = cpu_task[cpu]  # for lines printed without the CPU column
                    opid[i] = int(m.group(2))
                continue
            if pid is not None:
                key = pid
            else:
                task = cpu_task.get(cpu) if cpu is not None else cpu_task.get("last")
                if task is not None:
                    key = task[0]
                    opid[i], ocomm[i] = task
                else:
                    key = ("cpu", cpu)
            st = stacks.get(key)
            if st is None:
                st = stacks[key] = []
            if k == "entry":
                depth[i] = len(st)
                st.append(funcs[i])
            elif k == "exit":
                f = funcs[i]
                if st and f is not None and st[-1] != f and f in st:
                    # resynchronise on a tail comment naming an outer call (lost exits)
                    while st and st[-1] != f:
                        st.pop()
                if st:
                    ofunc[i] = st.pop()
                    depth[i] = len(st)
                else:
                    depth[i] = inds[i] or 0
                    unm[i] = True
                    self.n_unmatched_exits += 1
            else:
                depth[i] = len(st)
        return depth, ofunc, opid, ocomm, unm


PARSERS = [FuncGraphParser]
