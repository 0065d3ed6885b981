"""``trace-cmd report`` text -> canonical events.

Preamble: ``version = 6`` (trace-cmd 2.x), ``CPU N is empty``, ``cpus=N`` (n_cpus).
Event line::

    %16s-%-5d [%03d] [flags] %5lu.%06lu: [(+delta)] <event>:<pad to ~21 cols> <payload>      default / -t / --ts-diff
    %8.8s-%-5d %3d<flags> %lu.%06lu: <event>: ...                                          -l

Multi-line records, grouped vectorised like perf callchains (a record still open at
the end of a chunk is carried into the next one):

* ``=> func (addr)`` lines after ``kernel_stack``/``<stack trace >`` -> the record's callchain;
* lines without a prefix after ``bprint``/``bputs``/``print`` -> appended to the payload (``\\n``);
* ``CPU:N [M EVENTS DROPPED]`` -> a ``__lost_events`` row and ``stats.lost(M)``.

``funcgraph_entry``/``funcgraph_exit`` records, plugin-rendered (``+ 56.464 us  |    f();``) or raw
(``-R``: ``func=0x... depth=N calltime=... rettime=...``), get func/depth/kind/duration_ns/retval
like ftrace's function_graph rows.
"""
from __future__ import annotations

import re
from typing import Iterator

import numpy as np
import polars as pl
import pyarrow as pa

from ..schema import FRAME
from ._records import build_callchain, cut_open_record, drop_junk, fields_for, run_blocks, ts_ns_expr
from .base import INT32_MAX, OUT_OF_RANGE, Parser, ParseStats, add_count, int_in
from .source import CHUNK_BYTES, TraceSource, is_binary_trace

EVENT_RE = (
    r"^\s*(?:(?P<buf>[A-Za-z0-9_.-]+): +)?(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*(?P<tgid>\d+|-+)\)\s+)?"
    r"(?:\[(?P<cpu>\d+)\]|(?P<lcpu>\d+)(?P<lflags>[^\s\d]\S{2,6}))\s+"
    r"(?:(?P<flags>[.A-Za-z0-9]{4,7})\s+)?(?P<sec>\d+)\.(?P<frac>\d+):\s+(?:\(\+(?P<diff>-?\d+)\)\s+)?"
    r"(?P<ev>[^\s:]+):(?P<pad>\s*)(?P<payload>.*?)\s*$"
)
PREAMBLE_RE = r"^(?:version = \d+|CPU \d+ is empty|cpus=\d+)\s*$"
# the buffer (instance) name prefixes it as it does events: "inst: CPU:0 [3140 EVENTS DROPPED]"
LOST_RE = r"^(?:[A-Za-z0-9_.-]+: +)?CPU:(?P<cpu>\d+) \[(?:(?P<n>\d+) )?EVENTS DROPPED\]\s*$"
STACK_RE = (r"^\s*=>\s*(?:(?P<bare>[0-9a-fA-F]{8,16})|(?P<sym>.*?)(?:\+(?P<off>0x[0-9a-fA-F]+(?:/0x[0-9a-fA-F]+)?))?"
            r"(?:\s+\((?P<addr>[0-9a-fA-F]+)\))?)\s*$")
#: events whose message may continue on the next line(s)
PRINT_EVENTS = ("bprint", "bputs", "print")

# function_graph payloads
FG_PLUGIN_RE = r"^(?:(?P<mark>[-+!#*@$])\s*)?(?:(?P<dur>\d+(?:\.\d+)?) us)?\s*\|(?P<indent> *)(?P<text>.*?)\s*$"
FG_ENTRY_RE = r"^(?P<func>[^\s(][^(]*?)\(.*\) \{(?: /\*.*\*/)?$"
FG_LEAF_RE = r"^(?P<func>[^\s(][^(]*?)\(.*\);(?: /\* (?:<-\S+ )?(?:(?:= |ret=)(?P<ret>\S+))? ?\*/)?$"
FG_EXIT_RE = r"^\}(?: /\* (?P<func>[^\s=*]+)?(?: ?(?:= |ret=)(?P<ret>\S+))? \*/)?$"

_EVENT_RX = re.compile(EVENT_RE)
_PREAMBLE_RX = re.compile(PREAMBLE_RE)


def _num(col: pl.Expr) -> pl.Expr:
    """``0x..`` hex or decimal text -> Int64."""
    hexv = col.str.strip_prefix("0x").str.to_integer(base=16, strict=False)
    return pl.when(col.str.starts_with("0x")).then(hexv).otherwise(col.str.to_integer(base=10, strict=False))


def us_to_ns(dur: pl.Expr) -> pl.Expr:
    """``56.464`` (µs as printed, up to 3 decimals) -> exact int64 ns."""
    ip = dur.str.extract(r"^(\d+)", 1).cast(pl.Int64, strict=False)
    fp = dur.str.extract(r"\.(\d+)$", 1).fill_null("").str.slice(0, 3).str.pad_end(3, "0").cast(pl.Int64, strict=False)
    return ip * 1000 + fp


def funcgraph_columns(event: pl.Series, payload: pl.Series) -> pl.DataFrame:
    """func, depth, kind, duration_ns, retval for funcgraph_entry/funcgraph_exit rows (NULL elsewhere)."""
    df = pl.DataFrame({"e": event, "p": payload})
    e, p = pl.col("e"), pl.col("p")
    is_fg = e.is_in(["funcgraph_entry", "funcgraph_exit"])
    raw = is_fg & p.str.contains(r"(?:^|\s)func=\S+")
    plug = is_fg & ~raw & p.str.contains(FG_PLUGIN_RE)
    pg = p.str.extract_groups(FG_PLUGIN_RE)
    text = pg.struct.field("text")
    ent = text.str.extract_groups(FG_ENTRY_RE)
    leaf = text.str.extract_groups(FG_LEAF_RE)
    ext = text.str.extract_groups(FG_EXIT_RE)
    is_ent, is_leaf, is_exit = text.str.contains(FG_ENTRY_RE), text.str.contains(FG_LEAF_RE), \
        text.str.contains(FG_EXIT_RE)
    plug_kind = (pl.when(is_exit).then(pl.lit("exit")).when(is_leaf).then(pl.lit("leaf"))
                 .when(is_ent).then(pl.lit("entry")).otherwise(pl.lit("comment")))
    plug_func = (pl.when(is_exit).then(ext.struct.field("func")).when(is_leaf).then(leaf.struct.field("func"))
                 .when(is_ent).then(ent.struct.field("func")).otherwise(None)).str.strip_chars()
    plug_ret = pl.when(is_exit).then(ext.struct.field("ret")).when(is_leaf).then(leaf.struct.field("ret")) \
        .otherwise(None)
    plug_depth = (pg.struct.field("indent").str.len_chars().cast(pl.Int32) - 2) // 2
    plug_dur = us_to_ns(pg.struct.field("dur"))
    rfunc = p.str.extract(r"(?:^|\s)func=(\S+)", 1)
    rdepth = p.str.extract(r"(?:^|\s)depth=(\d+)", 1).cast(pl.Int32, strict=False)
    calltime = _num(p.str.extract(r"(?:^|\s)calltime=(\S+)", 1))
    rettime = _num(p.str.extract(r"(?:^|\s)rettime=(\S+)", 1))
    rret = p.str.extract(r"(?:^|\s)retval=(\S+)", 1)
    out = df.select(
        func=pl.when(raw).then(rfunc).when(plug).then(plug_func).otherwise(None),
        depth=pl.when(raw).then(rdepth).when(plug).then(pl.max_horizontal(plug_depth, pl.lit(0, pl.Int32)))
        .otherwise(None).cast(pl.Int32),
        kind=pl.when(raw).then(pl.when(e == "funcgraph_exit").then(pl.lit("exit")).otherwise(pl.lit("entry")))
        .when(plug).then(plug_kind).otherwise(None),
        duration_ns=pl.when(raw & (e == "funcgraph_exit")).then(rettime - calltime)
        .when(plug).then(plug_dur).otherwise(None).cast(pl.Int64),
        retval=pl.when(raw).then(rret).when(plug).then(plug_ret).otherwise(None),
    )
    return out


class TraceCmdReportParser(Parser):
    name = "trace-cmd-report"
    description = "trace-cmd report text (default, -t, -l, --ts-diff, -R, stacks, function_graph)"

    @classmethod
    def sniff(cls, head_text: str, head_bytes: bytes) -> int:
        if is_binary_trace(head_bytes):
            return 0
        lines = [ln for ln in head_text.split("\n")[:400] if ln.strip()]
        if not lines:
            return 0
        pre = 0
        for ln in lines[:64]:
            if _PREAMBLE_RX.match(ln):
                pre += 1
            else:
                break
        n_ev = n_pad = 0
        for ln in lines[pre:pre + 200]:
            m = _EVENT_RX.match(ln)
            if m:
                n_ev += 1
                if len(m.group("pad")) >= 2 or m.group("lflags"):
                    n_pad += 1
        if pre and (n_ev or len(lines) == pre) and any(ln.startswith("cpus=") for ln in lines[:pre]):
            return 95
        if n_ev >= 3 and n_pad >= 0.5 * n_ev:
            # no preamble: the lines are also valid ftrace text (no flags column); let the ftrace parser
            # take them when it wants them
            return 40
        return 0

    #: bytes per chunk read from the source (tests lower it to exercise records straddling chunks)
    chunk_bytes = CHUNK_BYTES

    def __init__(self):
        self.resolution: int | None = None
        #: (pid, depth) -> function of the call open at that depth ("" once closed), across chunks
        self.open_calls: dict[tuple[int, int], str] = {}

    def parse(self, source: TraceSource, stats: ParseStats) -> Iterator[pa.Table]:
        stats.meta.setdefault("tracer", "trace-cmd")
        stats.meta.setdefault("ts_unit", "ns")
        yield from run_blocks(self, source, stats)
        if self.resolution is not None:
            stats.meta["ts_resolution_ns"] = self.resolution

    def _block(self, lines: pl.Series, nos: np.ndarray, stats: ParseStats, final: bool):
        """Classify and parse ``lines``; returns (tables, carried lines, carried line numbers).

        Stages, top to bottom: classify every line, keep the record still open at the end for the next chunk,
        drop the records with numbers that do not fit, count the non-event lines, the record columns, the
        attached lines (stack frames, print continuations), then the table."""
        lines, nos = drop_junk(lines, nos, stats)
        df = _classify(lines, nos)
        carry = carry_no = None
        if not final:
            attached = df.get_column("stack") | ~(df.get_column("blank") | df.get_column("pre"))
            split = cut_open_record(df, lines, nos, (df.get_column("ev") | df.get_column("lost")).to_numpy(),
                                    attached=bool(attached.any()))
            if split is None:
                return [], lines, nos  # no record start in this block: all of it waits for the next chunk
            df, carry, carry_no = split
        df = self._drop_out_of_range(df, stats)
        # known non-event lines (every line is a record, one of these, an attached line or malformed)
        _count_preamble_and_blank(df, stats)
        opener = pl.col("ev") | pl.col("lost")
        recs = df.filter(opener)
        other = df.filter(~pl.col("blank") & ~pl.col("pre") & ~opener)
        if recs.height == 0:
            if other.height:
                stats.malformed_many(other.get_column("no").to_list(), other.get_column("t").to_list(),
                                     "trace-cmd-unparsed")
            return [], carry, carry_no
        g, lg = self._record_columns(recs, stats)
        frames, cont = _attached_lines(other, g.get_column("event"), stats)
        return [self._table(g, lg, frames, cont)], carry, carry_no

    def _record_columns(self, recs: pl.DataFrame, stats: ParseStats) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The schema's columns of the record lines (EVENT_RE; LOST_RE for loss markers, whose counts go to
        stats); returns them and the loss-marker groups."""
        t = pl.col("t")
        g = recs.select(t.str.extract_groups(EVENT_RE).alias("g"), "no", "lost", "t").unnest("g")
        lost = g.get_column("lost")
        lg = g.get_column("t").str.extract_groups(LOST_RE).struct.unnest()
        g = g.with_columns(
            ts_ns=ts_ns_expr(pl.col("sec"), pl.col("frac")),
            cpu=pl.when(pl.col("lost")).then(lg.get_column("cpu"))
            .otherwise(pl.coalesce(pl.col("cpu"), pl.col("lcpu"))).cast(pl.Int32, strict=False),
            pid=pl.col("pid").cast(pl.Int32, strict=False),
            tgid=pl.col("tgid").cast(pl.Int32, strict=False),
            flags=pl.coalesce(pl.col("flags"), pl.col("lflags")),
            event=pl.when(pl.col("lost")).then(pl.lit("__lost_events")).otherwise(pl.col("ev")),
            payload=pl.when(pl.col("lost")).then(pl.col("t").str.strip_chars()).otherwise(pl.col("payload")),
        )
        if lost.any():
            ns = lg.filter(lost).get_column("n").to_list()
            for n in ns:
                stats.lost(int(n) if n is not None else None)
        if self.resolution is None:
            fr = g.filter(pl.col("frac").is_not_null()).get_column("frac").head(1)
            if len(fr):
                self.resolution = 10 ** max(0, 9 - len(fr[0]))
        return g, lg

    def _table(self, g: pl.DataFrame, lg: pl.DataFrame, frames: pl.DataFrame, cont: pl.DataFrame) -> pa.Table:
        """The Arrow table: payloads with their continuations, callchains, function_graph columns of
        ``funcgraph_entry``/``_exit`` records, fields (``{"lost": N}`` on loss markers)."""
        lost = g.get_column("lost")
        payload = _join_continuations(g.get_column("payload"), cont)
        callchain = build_callchain(g.height, frames.get_column("rid").to_numpy(), _frame_structs(frames))
        event = g.get_column("event")
        fg = funcgraph_columns(event, payload)
        if fg.get_column("kind").is_not_null().any():
            fg = self._exit_funcs(fg, g.get_column("pid"))
        tbl = pl.DataFrame({
            "line_no": g.get_column("no"), "ts_ns": g.get_column("ts_ns"), "cpu": g.get_column("cpu"),
            "pid": g.get_column("pid"), "tgid": g.get_column("tgid"), "comm": g.get_column("comm"),
            "flags": g.get_column("flags"), "event": event, "payload": payload,
        }).hstack(fg).to_arrow()
        fields = fields_for(payload, event)
        if lost.any():
            fl = fields.to_pylist()
            lost_l = lost.to_list()
            ns = lg.get_column("n").to_list()
            for i, is_l in enumerate(lost_l):
                if is_l:
                    fl[i] = [("lost", ns[i])]
            fields = pa.array(fl, type=fields.type)
        return tbl.append_column("fields", fields).append_column("callchain", callchain)

    @staticmethod
    def _drop_out_of_range(df: pl.DataFrame, stats: ParseStats) -> pl.DataFrame:
        """Records whose pid/tgid/cpu do not fit int32 or whose timestamp does not fit int64 ns are malformed,
        with the lines attached to them (only lines with a run of 10 digits can hold such a number)."""
        long = df.filter(pl.col("ev")).filter(pl.col("t").str.contains(r"[0-9]{10}"))
        if not long.height:
            return df
        g = long.select(pl.col("t").str.extract_groups(EVENT_RE).alias("g"), "no", "t").unnest("g")
        i32 = lambda c: pl.col(c).is_not_null() & pl.col(c).str.contains(r"^\d+$") \
            & pl.col(c).cast(pl.Int32, strict=False).is_null()  # noqa: E731
        oor = g.filter(i32("pid") | i32("tgid") | i32("cpu") | i32("lcpu")
                       | ts_ns_expr(pl.col("sec"), pl.col("frac")).is_null())
        if not oor.height:
            return df
        stats.malformed_many(oor.get_column("no").to_list(), oor.get_column("t").to_list(), OUT_OF_RANGE)
        df = df.with_columns(_dead=pl.col("no").is_in(oor.get_column("no").implode()))
        dead_rid = df.filter(pl.col("_dead")).get_column("rid").implode()
        att = df.filter(~pl.col("_dead") & pl.col("rid").is_in(dead_rid) & ~pl.col("blank") & ~pl.col("pre")
                        & ~pl.col("ev") & ~pl.col("lost"))
        if att.height:
            stats.malformed_many(att.get_column("no").to_list(), att.get_column("t").to_list(),
                                 "line of a malformed record")
        df = df.filter(~pl.col("_dead") & ~pl.col("no").is_in(att.get_column("no").implode())).drop("_dead")
        return df.with_columns(rid=(pl.col("ev") | pl.col("lost")).cast(pl.Int64).cum_sum() - 1)

    def _exit_funcs(self, fg: pl.DataFrame, pid: pl.Series) -> pl.DataFrame:
        """Name the function of a plugin-rendered closing ``}`` after its entry, per task and depth
        (as the function_graph parser does), carrying open calls across chunks."""
        closed = "\x00"
        df = fg.with_columns(pid=pid).with_row_index("i")
        kind, func = pl.col("kind"), pl.col("func")
        v = pl.when(kind == "entry").then(func).when(kind == "exit").then(pl.lit(closed)).otherwise(None)
        df = df.with_columns(v=v)
        df = df.with_columns(prev=pl.col("v").shift(1).forward_fill().over(["pid", "depth"]))
        need = (kind == "exit") & func.is_null() & pl.col("depth").is_not_null()
        if self.open_calls:
            carried = pl.DataFrame(
                {"pid": [k[0] for k in self.open_calls], "depth": [k[1] for k in self.open_calls],
                 "carried": list(self.open_calls.values())},
                schema={"pid": pl.Int32, "depth": pl.Int32, "carried": pl.String})
            df = df.join(carried, on=["pid", "depth"], how="left", maintain_order="left")
            df = df.with_columns(prev=pl.coalesce(pl.col("prev"), pl.col("carried")))
        df = df.with_columns(func=pl.when(need & (pl.col("prev") != closed)).then(pl.col("prev")).otherwise(func))
        last = df.filter(pl.col("v").is_not_null()).group_by(["pid", "depth"]).agg(pl.col("v").last())
        for p_, d_, v_ in last.iter_rows():
            if p_ is not None and d_ is not None:
                self.open_calls[(p_, d_)] = v_
        return df.select(fg.columns)



def _classify(lines: pl.Series, nos: np.ndarray) -> pl.DataFrame:
    """Every line is blank, preamble, a loss marker, a stack frame or a record line (EVENT_RE); ``rid``
    numbers the records (an event or loss marker opens one, its attached lines follow)."""
    t = pl.col("t")
    df = pl.DataFrame({"t": lines, "no": nos}).with_columns(
        blank=t.str.strip_chars() == "",
        pre=t.str.contains(PREAMBLE_RE),
        lost=t.str.contains(LOST_RE),
        stack=t.str.contains(r"^\s*=>"),
    )
    cand = ~(pl.col("blank") | pl.col("pre") | pl.col("lost") | pl.col("stack"))
    df = df.with_columns(ev=cand & t.str.contains(EVENT_RE))
    return df.with_columns(rid=(pl.col("ev") | pl.col("lost")).cast(pl.Int64).cum_sum() - 1)


def _attached_lines(other: pl.DataFrame, ev_of_rid: pl.Series, stats: ParseStats):
    """Lines after a record: stack frames, continuations of a print event's text, else malformed (also a
    line before any record); returns (frames, continuations)."""
    orphan = other.filter(pl.col("rid") < 0)
    if orphan.height:
        stats.malformed_many(orphan.get_column("no").to_list(), orphan.get_column("t").to_list(),
                             "trace-cmd-unparsed")
    att = other.filter(pl.col("rid") >= 0).with_columns(
        pev=ev_of_rid.gather(other.filter(pl.col("rid") >= 0).get_column("rid")))
    frames = att.filter(pl.col("stack"))
    cont = att.filter(~pl.col("stack") & pl.col("pev").is_in(list(PRINT_EVENTS)))
    bad = att.filter(~pl.col("stack") & ~pl.col("pev").is_in(list(PRINT_EVENTS)))
    if bad.height:
        stats.malformed_many(bad.get_column("no").to_list(), bad.get_column("t").to_list(),
                             "trace-cmd-unparsed")
    add_count(stats, "n_attached_lines", frames.height + cont.height)
    return frames, cont

def _count_preamble_and_blank(df: pl.DataFrame, stats: ParseStats) -> None:
    """The preamble lines (``cpus=N``, ``version = N``: facts for the run's metadata) and blank lines."""
    n_bad_pre = 0
    pre = df.filter(pl.col("pre"))
    for no, ln in zip(pre.get_column("no").to_list(), pre.get_column("t").to_list()):
        m = re.match(r"^cpus=(\d+)", ln)
        if m:
            n = int_in(m.group(1), 1, INT32_MAX)
            if n is None:
                stats.malformed(no, ln, "header number out of range")
                n_bad_pre += 1
            else:
                stats.meta["n_cpus"] = n
        m = re.match(r"^version = (\d+)", ln)
        if m:
            stats.meta["trace_cmd_file_version"] = int(m.group(1))
    add_count(stats, "n_preamble_lines", int(df.get_column("pre").sum()) - n_bad_pre)
    add_count(stats, "n_blank_lines", int((df.get_column("blank") & ~df.get_column("pre")).sum()))


def _join_continuations(payload: pl.Series, cont: pl.DataFrame) -> pl.Series:
    """A print event's continuation lines (``cont``, by record id ``rid``) appended to its payload."""
    if cont.height:
        joined = cont.group_by("rid", maintain_order=True).agg(pl.col("t").str.join("\n").alias("c"))
        pl_df = pl.DataFrame({"payload": payload}).with_row_index("rid").with_columns(pl.col("rid").cast(pl.Int64))
        pl_df = pl_df.join(joined, on="rid", how="left", maintain_order="left")
        payload = pl_df.select(pl.when(pl.col("c").is_null()).then(pl.col("payload"))
                               .otherwise(pl.col("payload") + "\n" + pl.col("c"))).to_series().alias("payload")
    return payload


def _frame_structs(frames: pl.DataFrame) -> pa.StructArray:
    """The stack-frame lines (``=> sym+off/size <addr>``) as FRAME structs, in line order."""
    fr = frames.get_column("t").str.extract_groups(STACK_RE).struct.unnest() if frames.height else \
        pl.DataFrame({c: pl.Series([], dtype=pl.String) for c in ("bare", "sym", "off", "addr")})
    if "bare" in fr.columns:
        fr = fr.with_columns(addr=pl.coalesce(pl.col("addr"), pl.col("bare")))
    fr = fr.with_columns([pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c)
                          for c in ("sym", "off", "addr")])
    return pa.StructArray.from_arrays(
        [fr.get_column(c).to_arrow().cast(pa.string()) for c in ("addr", "sym", "off")]
        + [pa.nulls(fr.height, pa.string())], fields=list(FRAME))


PARSERS = [TraceCmdReportParser]
