"""function_graph tracer text, every option combination.

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
through the ftrace line rules (``_ftrace_lines``, shared with the ftrace format).

Depth is inferred from braces, per task: the pid when ``funcgraph-proc`` is on,
otherwise the task that the last task-change banner put on that CPU (or the CPU
itself before any banner). Regex extraction is vectorised; depth is a tight loop
over the small state columns only.

Compiled path (``ingest/native/funcgraph.c``, used when built and not switched off,
see ``ksmtrace.ingest._native``): it takes the lines of each chunk it is sure of
(printable ASCII; abstime, CPU, proc, latency-flag and duration columns read as
GRAPH_RE reads them; ``f();``, ``f() {``, ``}``, each with its common comments:
``/* <-caller+off/size = ret */`` on calls, ``/* f = ret */`` on exits) and walks the
depth of every graph row, in C with the GIL released; every other line goes through
the stages below by its line number, so the rows are the same either way
(tests/test_native_funcgraph.py compares the two on generated and real inputs).
"""
from __future__ import annotations

import re
from typing import Iterator

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from .base import INT64_MAX, OUT_OF_RANGE, TRACER_HEADER_RE, Parser, ParseStats, ahead, conform, repeat_str, take_junk
from .fields import MAP_TYPE, fields_long, long_to_map
from ._ftrace_lines import events_to_arrow, iter_line_frames, parse_lines, ts_to_ns
from ._native import load
from .source import Chunk, TraceSource, is_probably_binary

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

#: the fast paths (prologue by splits, common texts by slices, depth without a loop); the careful paths give
#: the same rows for every line (tests/test_funcgraph_parse.py runs both on random and real inputs)
FAST_PATHS = True


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
        native = load("funcgraph") if FAST_PATHS else None
        if native is not None:
            n_unmatched = yield from self._parse_native(native, source, stats, counters)
        else:
            state = _DepthState()
            for df in iter_line_frames(source):
                t = self._chunk(df, stats, counters, state)
                if t is not None and t.num_rows:
                    yield t
            n_unmatched = state.n_unmatched_exits
        for k, v in counters.items():
            stats.meta[k] = v
        if n_unmatched:
            stats.meta["unmatched_exits"] = n_unmatched
        stats.meta.setdefault("tracer", "function_graph")
        if "ts_resolution_ns" not in stats.meta and stats.meta.get("ts_unit") != "counter":
            stats.meta["ts_resolution_ns"] = 1000

    # ------------------------------------------------------------------
    def _chunk(self, df: pl.DataFrame, stats: ParseStats, counters: dict, state: "_DepthState"):
        """One chunk of lines -> one table of rows, in stages read top to bottom."""
        df = take_junk(df.with_columns(pl.col("l").str.strip_chars_end(" \t\r\n\x0b\x0c")), "l", "line_no", stats)
        g = _text_parts(_prologue(df, FAST_PATHS), FAST_PATHS)
        graph, other = self._split_graph(g)
        banners, other, graphlike = _other_lines(other, stats, counters)
        graph = _graph_rows(graph, stats)
        seq = _depths(graph, banners, other, stats, state)
        tables = [_graph_table(graph, seq), _banner_table(banners, seq)]
        if other.height:
            ev = parse_lines(other, stats, counters, graphlike)
            if ev.height:
                tables.append(events_to_arrow(ev))
        return _merge(tables)

    # ------------------------------------------------------------------ the compiled path
    def _parse_native(self, mod, source: TraceSource, stats: ParseStats, counters: dict):
        """The same rows as the loop of ``parse``: the compiled module takes the common graph lines of each
        chunk (and walks the depth of every graph row); the lines it leaves go through the stages of ``_chunk``.
        Returns the number of unmatched exits."""
        walker = mod.new_state()
        taken: list = []
        view = _TakenView(source, mod, taken)
        for df in iter_line_frames(view):
            done, taken[:] = [r for r in taken if r[1]], []
            nos = view.real_line_nos(df.item(0, "line_no"), df.height)
            df = df.with_columns(line_no=pl.Series(nos, dtype=pl.Int64)).filter(pl.col("line_no") >= 0)
            t = self._chunk_native(df, done, stats, counters, mod, walker)
            if t is not None and t.num_rows:
                yield t
        return mod.n_unmatched(walker)

    def _chunk_native(self, df: pl.DataFrame, done: list, stats: ParseStats, counters: dict, mod, walker):
        """``_chunk`` of a frame less the common graph lines the compiled parser took (``done``: its results
        of the chunks this frame holds)."""
        if len(done) > 1:  # a frame holds the lines of one chunk (and carried stack lines without graph rows)
            raise RuntimeError("function_graph: compiled rows of two chunks in one frame")
        rows = done[0] if done else None
        n_abs = 0
        if rows is not None:
            self._seen_graph = True
            n_abs = rows[2]
        tables = []
        seq = None
        if df.height:
            df = take_junk(df.with_columns(pl.col("l").str.strip_chars_end(" \t\r\n\x0b\x0c")), "l", "line_no",
                           stats)
            g = _text_parts(_prologue(df, True), True)
            graph, other = self._split_graph(g)
            banners, other, graphlike = _other_lines(other, stats, counters)
            graph = _graph_rows(graph, stats, other_abs=n_abs > 0)
            seq = _seq_rows(graph, banners, other, stats)
        if seq is not None and seq.height:
            codes = seq.get_column("kind").replace_strict(_KIND_CODES, default=4, return_dtype=pl.Int64).to_list()
            funcs = seq.get_column("func").to_list()
            pids = seq.get_column("pid").to_list()
            for i, k in enumerate(codes):
                if k == 1:  # a task switch: the walk takes the new task's pid and comm
                    m = _COMM_PID.match(funcs[i] or "")
                    pids[i], funcs[i] = (int(m.group(2)), m.group(1).strip()) if m else (None, None)
            cols, (depth, ofunc, opid, ocomm, unm) = mod.walk(
                walker, rows[0] if rows else None, seq.get_column("line_no").to_list(), codes, funcs,
                seq.get_column("cpu").to_list(), pids, seq.get_column("_ind").to_list())
            seq = seq.select("line_no", "kind").with_columns(
                depth=pl.Series(depth, dtype=pl.Int32), _func=pl.Series(ofunc, dtype=pl.String),
                _pid=pl.Series(opid, dtype=pl.Int32), _comm=pl.Series(ocomm, dtype=pl.String),
                _unm=pl.Series(unm, dtype=pl.Boolean))
            tables += [_graph_table(graph, seq), _banner_table(banners, seq)]
        elif rows is not None:
            cols, _ = mod.walk(walker, rows[0], [], [], [], [], [], [])
        else:
            cols = None
        if cols is not None:
            tables.append(_native_table(cols))
        if df.height and other.height:
            ev = parse_lines(other, stats, counters, graphlike)
            if ev.height:
                tables.append(events_to_arrow(ev))
        return _merge(tables)

    def _split_graph(self, g: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Stage 3: graph lines (a call or exit, a comment with graph columns, an irq marker) and the others
        (banners, separators, overruns, headers, prose, ordinary ftrace lines)."""
        t = pl.col("text")
        is_call = pl.col("c_func").is_not_null()
        is_exit = pl.col("_exit").fill_null(False)
        is_cmt = pl.col("cm_c").is_not_null()
        is_irq = pl.col("irq").is_not_null() & t.is_null()
        # a graph line needs some graph prologue (cpu, abstime, duration column) or a call/exit text
        has_pro = (pl.col("cpu").is_not_null() | pl.col("dcol").is_not_null() | pl.col("abs").is_not_null()
                   | pl.col("pid").is_not_null() | pl.col("rel").is_not_null())
        # a bare "/* ... */" line (no prologue columns at all) counts once the input has shown graph lines
        g = g.with_columns(_ce=(is_call | is_exit).fill_null(False))
        if g.get_column("_ce").any():
            self._seen_graph = True
        bare_ok = pl.lit(getattr(self, "_seen_graph", False))
        g = g.with_columns(_graph=(pl.col("_ce") | (is_cmt & (has_pro | bare_ok)) | is_irq).fill_null(False))
        graph = g.filter(pl.col("_graph"))
        other = g.filter(~pl.col("_graph")).with_columns(_pro=has_pro.fill_null(False)).select("line_no", "l", "_pro")
        return graph, other


# ---------------------------------------------------------------- stage 1: the prologue columns

#: pieces of the common layouts, for the fast path (no capture groups: a DFA match, then plain splits);
#: each is stricter than its GRAPH_RE group (spaces only, a duration with its fraction), so a line it takes
#: gets the same columns from GRAPH_RE (tests/test_funcgraph_parse.py checks that on random lines)
_FAST_ABS = r" *\d+\.\d+ +\|"
_FAST_CPU = r" *\d+\) "
_FAST_PROC = r" *[^|\s][^|]*-\d+ *\|"
_FAST_LFLAGS = r" *[.A-Za-z0-9]{4,7} +\|"
_FAST_DCOL = r" *(?:[+!#*@$]? *\d+\.\d+ us)? *\|"
_FAST_TEXT = r"(?: *\S(?:.*\S)?)?$"
#: (abstime, proc, latency flags) columns of the layouts the fast path takes (the cpu and duration columns are
#: always there: funcgraph-cpu and funcgraph-duration are on by default)
FAST_LAYOUTS = [(a, p, f) for a in (True, False) for p in (True, False) for f in (False, True)]
_PROC_RE = r"^ *(?P<comm>[^|\s][^|]*?)-(?P<pid>\d+) *$"
_PROLOGUE_COLS = ["abs", "rel", "cpu", "comm", "pid", "lflags", "dcol", "dur", "irq", "_indn", "text"]


def fast_layout_re(layout: tuple[bool, bool, bool]) -> str:
    has_abs, has_proc, has_lflags = layout
    return ("^" + (_FAST_ABS if has_abs else "") + _FAST_CPU + (_FAST_PROC if has_proc else "")
            + (_FAST_LFLAGS if has_lflags else "") + _FAST_DCOL + _FAST_TEXT)


_FAST_RX = {lay: re.compile(fast_layout_re(lay)) for lay in FAST_LAYOUTS}


def _pick_layout(lines: pl.Series) -> tuple[bool, bool, bool] | None:
    """The fast layout most of the first lines of a chunk have (None: none of them)."""
    best, n_best = None, 0
    sample = [x for x in lines.head(400).to_list() if x and not x.startswith("#")]
    for lay, rx in _FAST_RX.items():
        n = sum(1 for x in sample if rx.match(x))
        if n > n_best:
            best, n_best = lay, n
    return best


def _fast_prologue(df: pl.DataFrame, layout: tuple[bool, bool, bool]) -> pl.DataFrame:
    """The prologue columns of lines that match ``layout``'s fast regex, by splits at ``|``."""
    has_abs, has_proc, has_lflags = layout
    bars = has_abs + has_proc + has_lflags + 1
    f = [pl.col("p").struct.field(f"field_{k}") for k in range(bars + 1)]
    k = 1 if has_abs else 0
    cp = f[k]
    close = cp.str.find(")", literal=True)  # the piece starts " *\d+\) ": byte and char offsets agree
    rem = cp.str.slice(close + 1)
    cols = {"abs": f[0].str.strip_chars(" ") if has_abs else pl.lit(None, pl.String),
            "rel": pl.lit(None, pl.String), "cpu": cp.str.slice(0, close).str.strip_chars_start(" ")}
    if has_proc:
        pr = rem.str.extract_groups(_PROC_RE)
        cols["comm"], cols["pid"] = pr.struct.field("comm"), pr.struct.field("pid")
        k += 1
        if has_lflags:
            cols["lflags"] = f[k].str.strip_chars(" ")
            k += 1
        dpiece = f[k]
    else:
        cols["comm"] = cols["pid"] = pl.lit(None, pl.String)
        if has_lflags:
            cols["lflags"] = rem.str.strip_chars(" ")
            dpiece = f[k + 1]
        else:
            dpiece = rem
    cols.setdefault("lflags", pl.lit(None, pl.String))
    d = dpiece.str.strip_chars(" ")
    cols["dcol"] = pl.lit("|")
    cols["dur"] = pl.when(d != "").then(d.str.strip_chars_start("+!#*@$").str.strip_chars_start(" ")
                                         .str.strip_suffix(" us"))
    cols["irq"] = pl.lit(None, pl.String)
    rest = f[bars]
    txt = rest.str.strip_chars_start(" ")
    cols["_indn"] = (rest.str.len_bytes() - txt.str.len_bytes()).cast(pl.Int64)
    cols["text"] = pl.when(txt != "").then(txt)
    return df.with_columns(p=pl.col("l").str.splitn("|", bars + 1)).select(
        "line_no", "l", *[cols[c].alias(c) for c in _PROLOGUE_COLS])


def _slow_prologue(df: pl.DataFrame) -> pl.DataFrame:
    """The prologue columns of any line, by GRAPH_RE (NULL where a group is absent)."""
    g = df.with_columns(m=pl.col("l").str.extract_groups(GRAPH_RE)).unnest("m")
    # "N us |" first on a line is a REL TIME column only when a duration column follows; else it is the duration
    swap = pl.col("rel").is_not_null() & pl.col("dcol").is_null()
    g = g.with_columns(
        dur=pl.when(swap).then(pl.col("rel")).otherwise(pl.col("dur")),
        dcol=pl.when(swap).then(pl.lit("|")).otherwise(pl.col("dcol")),
        rel=pl.when(swap).then(pl.lit(None, pl.String)).otherwise(pl.col("rel")),
        _indn=pl.col("ind").str.len_bytes().cast(pl.Int64),
    )
    return g.select("line_no", "l", *_PROLOGUE_COLS)


def _prologue(df: pl.DataFrame, fast: bool = True) -> pl.DataFrame:
    """Stage 1: the columns before the text (abstime, cpu, comm-pid, flags, duration) and the text with its
    indentation. Lines of the chunk's common layout take the fast path; the others, GRAPH_RE."""
    layout = _pick_layout(df.get_column("l")) if fast and df.height else None
    if layout is None:
        return _slow_prologue(df)
    ok = df.get_column("l").str.contains(fast_layout_re(layout))
    if ok.all():
        return _fast_prologue(df, layout)
    fast_part = _fast_prologue(df.filter(ok), layout)
    slow_part = _slow_prologue(df.filter(~ok))
    return pl.concat([fast_part, slow_part], how="vertical_relaxed").sort("line_no")


# ---------------------------------------------------------------- stage 2: the text

_TEXT_COLS = ["c_func", "c_mod", "c_args", "c_term", "c_cmt", "_exit", "x_cmt", "cm_c"]
#: the texts of nearly every graph line: "func();", "func() {" and "}"
_FAST_LEAF = r"^[^\s(){};/]+\(\);$"
_FAST_ENTRY = r"^[^\s(){};/]+\(\) \{$"


def _text_parts(g: pl.DataFrame, fast: bool = True) -> pl.DataFrame:
    """Stage 2: call (func, module, args, terminator, comment), exit (comment) and comment parts of the text.
    The three common texts by plain slices; the rest by CALL_RE / EXIT_RE / COMMENT_RE."""
    t = pl.col("text")
    if fast:
        g = g.with_columns(_tk=pl.when(t == "}").then(pl.lit(3)).when(t.str.contains(_FAST_LEAF)).then(pl.lit(1))
                           .when(t.str.contains(_FAST_ENTRY)).then(pl.lit(2)).otherwise(pl.lit(0)))
        ok = g.get_column("_tk") > 0
    if not fast or not ok.any():
        return _slow_text(g.drop("_tk", strict=False))
    tk = pl.col("_tk")
    quick = g.filter(ok).with_columns(
        c_func=pl.when(tk == 1).then(t.str.slice(0, t.str.len_chars() - 3))
        .when(tk == 2).then(t.str.slice(0, t.str.len_chars() - 4)),
        c_mod=pl.lit(None, pl.String),
        c_args=pl.when(tk < 3).then(pl.lit("")),
        c_term=pl.when(tk == 1).then(pl.lit(";")).when(tk == 2).then(pl.lit("{")),
        c_cmt=pl.lit(None, pl.String),
        _exit=tk == 3,
        x_cmt=pl.lit(None, pl.String),
        cm_c=pl.lit(None, pl.String),
    ).drop("_tk")
    if ok.all():
        return quick
    return pl.concat([quick, _slow_text(g.filter(~ok).drop("_tk"))], how="vertical_relaxed").sort("line_no")


def _slow_text(g: pl.DataFrame) -> pl.DataFrame:
    t = pl.col("text")
    call = t.str.extract_groups(CALL_RE)
    return g.with_columns(
        call.struct.field("func").alias("c_func"), call.struct.field("mod").alias("c_mod"),
        call.struct.field("args").alias("c_args"), call.struct.field("term").alias("c_term"),
        call.struct.field("c").alias("c_cmt"),
        _exit=t.str.contains(EXIT_RE),
        x_cmt=t.str.extract(EXIT_RE, 1),
        cm_c=t.str.extract(COMMENT_RE, 1),
    )


# ---------------------------------------------------------------- stage 4: lines that are no graph line

def _other_lines(other: pl.DataFrame, stats: ParseStats, counters: dict):
    """Stage 4: task-change banners (returned), separator dashes and overruns (counted), banners whose numbers
    do not fit (malformed); returns (banners or None, the lines left for the ftrace layouts, the line numbers
    of those with function_graph columns)."""
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
    return banners, other.drop("_pro"), graphlike


# ---------------------------------------------------------------- stage 5: graph rows

def _graph_rows(graph: pl.DataFrame, stats: ParseStats, other_abs: bool = False) -> pl.DataFrame:
    """Stage 5: kind, func, retval, parent, times and the schema's typed columns of the graph lines; a line
    whose numbers do not fit the schema is malformed (never a row with a NULL or wrapped value).
    ``other_abs``: other graph rows of the chunk (the compiled parser's) have an abstime column."""
    cc = pl.col("c_cmt").str.extract_groups(CALL_CMT_RE)
    xc = pl.col("x_cmt").str.extract_groups(EXIT_CMT_RE)
    ec = pl.col("cm_c").str.extract_groups(EVENT_CMT_RE)
    ind = pl.col("_indn")
    graph = graph.with_columns(
        kind=pl.when(pl.col("irq").is_not_null() & pl.col("text").is_null()).then(
            pl.when(pl.col("irq") == "==========>").then(pl.lit("irq_enter")).otherwise(pl.lit("irq_exit")))
        .when(pl.col("c_term") == "{").then(pl.lit("entry"))
        .when(pl.col("c_term") == ";").then(pl.lit("leaf"))
        .when(pl.col("_exit")).then(pl.lit("exit"))
        .otherwise(pl.lit("comment")),
        func=pl.coalesce(pl.col("c_func"), xc.struct.field("f")),
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
        _mod=pl.col("c_mod"),
        _args=pl.col("c_args"),
        _cmt=pl.col("cm_c"),
        _cev=ec.struct.field("ev"),
        _cpay=ec.struct.field("payload"),
    )
    oor = ((pl.col("cpu").is_null() & pl.col("_cpu_t").is_not_null())
           | (pl.col("pid").is_null() & pl.col("_pid_t").is_not_null())
           | (pl.col("ts_ns").is_null() & (pl.col("abs").is_not_null() | pl.col("rel").is_not_null()))
           | (pl.col("duration_ns").is_null() & pl.col("dur").is_not_null()))
    graph = graph.with_columns(_oor=oor)
    if graph.get_column("_oor").any():
        bad = graph.filter(pl.col("_oor"))
        stats.malformed_many(bad.get_column("line_no").to_list(), bad.get_column("l").to_list(), OUT_OF_RANGE)
        graph = graph.filter(~pl.col("_oor"))
    if (graph.height and not other_abs and graph.get_column("abs").is_null().all()
            and graph.get_column("rel").is_not_null().any()):
        stats.meta["ts_relative"] = True
    return graph.with_columns(
        event=pl.when(pl.col("kind").is_in(["entry", "leaf"])).then(pl.lit("funcgraph_entry"))
        .when(pl.col("kind") == "exit").then(pl.lit("funcgraph_exit"))
        .when(pl.col("kind").is_in(["irq_enter", "irq_exit"])).then(pl.lit("funcgraph_irq"))
        .otherwise(pl.coalesce(pl.col("_cev"), pl.lit("funcgraph_comment"))),
        payload=pl.when(pl.col("kind") == "comment").then(pl.coalesce(pl.col("_cpay"), pl.col("_cmt"))),
    )


# ---------------------------------------------------------------- stage 6: depth

_SEQ_COLS = ["line_no", "kind", "func", "cpu", "pid", "comm", "_ind"]


def _seq_rows(graph: pl.DataFrame, banners: pl.DataFrame | None, other: pl.DataFrame,
              stats: ParseStats) -> pl.DataFrame:
    """Graph rows, tracer headers (kind ``__reset``) and banners (``__switch``, func: the new task) in line
    order: the rows the per-task stacks walk."""
    seq = graph.select(_SEQ_COLS)
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
    return seq


def _depths(graph: pl.DataFrame, banners: pl.DataFrame | None, other: pl.DataFrame, stats: ParseStats,
            state: "_DepthState") -> pl.DataFrame:
    """Stage 6: graph rows, tracer headers (a reset) and banners in line order, through the per-task stacks:
    (line_no, kind, depth, _func, _pid, _comm, _unm)."""
    seq = _seq_rows(graph, banners, other, stats)
    fast = state.run_vectorised(seq) if FAST_PATHS else None
    if fast is not None:
        return fast
    depth, funcs, pids, comms, unmatched = state.run(
        seq.get_column("kind").to_list(), seq.get_column("func").to_list(), seq.get_column("cpu").to_list(),
        seq.get_column("pid").to_list(), seq.get_column("comm").to_list(), seq.get_column("_ind").to_list())
    return seq.select("line_no", "kind").with_columns(
        depth=pl.Series(depth, dtype=pl.Int32), _func=pl.Series(funcs, dtype=pl.String),
        _pid=pl.Series(pids, dtype=pl.Int32), _comm=pl.Series(comms, dtype=pl.String),
        _unm=pl.Series(unmatched, dtype=pl.Boolean))


# ---------------------------------------------------------------- stage 7: tables

_NO_FIELDS = pl.DataFrame(schema={"row": pl.UInt32, "ord": pl.Int64, "key": pl.String, "value": pl.String})
_GRAPH_KEEP = ["line_no", "ts_ns", "cpu", "pid", "comm", "flags", "event", "payload", "func", "parent",
               "depth", "kind", "duration_ns", "retval"]


def _graph_table(graph: pl.DataFrame, seq: pl.DataFrame) -> pa.Table | None:
    """Stage 7a: the graph rows with their depth, and their fields: args (funcgraph-args), comment key=values,
    module, unmatched marker."""
    if not graph.height:
        return None
    # graph and the graph rows of seq are the same lines in the same (line) order
    mine = seq.filter(~pl.col("kind").is_in(["__switch", "__reset"]))
    out = graph.hstack(mine.select("depth", "_func", "_pid", "_comm", "_unm"))
    out = out.with_columns(
        func=pl.coalesce("func", "_func"),
        pid=pl.coalesce("pid", "_pid"),
        comm=pl.coalesce("comm", "_comm"),
        _ftext=pl.coalesce(pl.col("_cpay"), pl.col("_cmt"),
                           pl.when(pl.col("_args") != "").then(pl.col("_args").str.replace_all(r",\s+", " "))),
        _fev=pl.col("_cev"))
    ftext = out.get_column("_ftext")
    fl = fields_long(ftext, out.get_column("_fev")) if ftext.null_count() < len(ftext) else _NO_FIELDS
    extra = out.with_row_index("row").select(
        pl.col("row").cast(pl.UInt32), pl.lit(1 << 30, pl.UInt32).alias("ord"),
        pl.col("_mod"), pl.col("_unm").fill_null(False))
    mods = extra.filter(pl.col("_mod").is_not_null()).select(
        "row", "ord", pl.lit("module").alias("key"), pl.col("_mod").alias("value"))
    unm = extra.filter(pl.col("_unm")).select(
        "row", (pl.col("ord") + 1).alias("ord"), pl.lit("unmatched").alias("key"), pl.lit("true").alias("value"))
    if mods.height or unm.height:
        fl = pl.concat([x.select(pl.col("row").cast(pl.UInt32), pl.col("ord").cast(pl.Int64), "key", "value")
                        for x in (fl, mods, unm)]).sort(["row", "ord"], maintain_order=True)
    gmap = long_to_map(fl, out.height)
    out = out.select(_GRAPH_KEEP)
    t = pa.table({c: out.get_column(c).to_arrow() for c in out.columns})
    return t.append_column("fields", gmap)


def _banner_table(banners: pl.DataFrame | None, seq: pl.DataFrame) -> pa.Table | None:
    """Stage 7b: ``__task_switch`` rows of the task-change banners (fields prev, next)."""
    if banners is None or not banners.height:
        return None
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
    bt = pa.table({c: bsw.get_column(c).to_arrow() for c in ["line_no", "cpu", "pid", "comm", "event", "payload"]})
    return bt.append_column("fields", long_to_map(bl, bsw.height))


def _merge(tables: list) -> pa.Table | None:
    """The tables of a chunk as one, in line order."""
    tables = [t for t in tables if t is not None and t.num_rows]
    if not tables:
        return None
    res = pa.concat_tables([conform(x) for x in tables])
    if len(tables) > 1:
        res = res.take(pc.sort_indices(res, [("line_no", "ascending")]))
    return res


# ---------------------------------------------------------------- the compiled path (ingest/native/funcgraph.c)

#: kind codes of the rows the compiled walk takes from Python (4: any other graph row)
_KIND_CODES = {"__reset": 0, "__switch": 1, "entry": 2, "exit": 3}


class _TakenView:
    """The source as ``iter_line_frames`` reads it, less the lines the compiled parser took: one empty line
    stands for each run of them, so a stack record is carried to the next chunk exactly as in the full text
    (a taken line is never a stack line, and neither is an empty one). Its lines are numbered 1, 2, ... in
    this view; ``real_line_nos`` gives their numbers in the input (-1: such an empty line). Each chunk's
    parse result is appended to ``taken`` before the chunk is handed on. The source is read and parsed one
    chunk ahead in a worker thread (the parser and sha256 release the GIL), so that reading overlaps with the
    walk and the Parquet writer."""

    def __init__(self, source: TraceSource, mod, taken: list):
        self.source, self.mod, self.taken = source, mod, taken
        self._maps: list[tuple[int, np.ndarray]] = []  # (first view line, real numbers) of chunks in flight

    def _parsed(self):
        for ch in self.source.chunks():
            yield self.mod.parse(ch.data, ch.first_line_no)

    def chunks(self) -> Iterator[Chunk]:
        nxt = 1
        for r in ahead(self._parsed()):
            nos = np.frombuffer(r[4], dtype=np.int64)
            self._maps.append((nxt, nos))
            self.taken.append(r)
            yield Chunk(r[3], nxt)
            nxt += len(nos)

    def real_line_nos(self, first: int, n: int) -> np.ndarray:
        """The input's line numbers of the view's lines first .. first + n - 1 (-1: a run of taken lines)."""
        maps = self._maps
        while maps and maps[0][0] + len(maps[0][1]) <= first:
            maps.pop(0)
        parts, end = [], first + n
        for start, nos in maps:
            if start >= end:
                break
            parts.append(nos[max(first - start, 0):end - start])
        out = np.concatenate(parts) if parts else np.empty(0, np.int64)
        if len(out) != n:
            raise RuntimeError("function_graph: a frame's lines are not those of its chunks")
        return out


def _native_table(c: dict) -> pa.Table:
    """The compiled parser's rows of a chunk (Arrow buffers) as a table of the graph columns."""
    n = c["n"]
    buf = pa.py_buffer

    def prim(typ, key):
        v = c[key]
        if isinstance(v, tuple):
            return pa.Array.from_buffers(typ, n, [buf(v[0]) if v[0] is not None else None, buf(v[1])])
        return pa.Array.from_buffers(typ, n, [None, buf(v)])

    def text(key):
        v, o, d = c[key]
        return pa.Array.from_buffers(pa.string(), n, [buf(v) if v is not None else None, buf(o), buf(d)])

    k = c["n_unmatched"]
    fields = pa.MapArray.from_arrays(pa.Array.from_buffers(pa.int32(), n + 1, [None, buf(c["fields_offsets"])]),
                                     repeat_str("unmatched", k), repeat_str("true", k), type=MAP_TYPE)
    return pa.table({
        "line_no": prim(pa.int64(), "line_no"), "ts_ns": prim(pa.int64(), "ts_ns"), "cpu": prim(pa.int32(), "cpu"),
        "pid": prim(pa.int32(), "pid"), "comm": text("comm"), "flags": text("flags"), "event": text("event"),
        "func": text("func"), "depth": prim(pa.int32(), "depth"), "kind": text("kind"),
        "duration_ns": prim(pa.int64(), "duration_ns"), "retval": text("retval"),
        "parent": text("parent"), "fields": fields})


class _DepthState:
    """Per-task open-call stacks, carried across chunks."""

    def __init__(self):
        self.stacks: dict = {}
        self.cpu_task: dict = {}  # cpu -> (pid, comm) from the last task-change banner
        self.n_unmatched_exits = 0

    def run_vectorised(self, seq: pl.DataFrame) -> pl.DataFrame | None:
        """What ``run`` gives, without a Python loop per row, when every row has its pid (funcgraph-proc),
        no tracer header resets the stacks and no exit's tail comment resynchronises a stack; None otherwise
        (the caller runs the loop; nothing is changed then).

        Per task the stack level is a walk of +1 (entry) / -1 (exit) held at 0 (an exit on an empty stack
        is unmatched): level = C - min(0, running min of C), C the plain running sum from the carried level.
        A matched exit closes the latest entry of its task at its depth (join_asof); before any in this
        chunk, the carried stack's entry at that depth."""
        kinds = seq.get_column("kind")
        if not seq.height:
            return None
        resets = kinds == "__reset"
        n_reset = int(resets.sum())
        if n_reset:
            # the tracer header before the chunk's rows (the first chunk): the stacks start empty
            if not resets.head(n_reset).all():
                return None
            head, seq, kinds = seq.head(n_reset), seq.slice(n_reset), kinds.slice(n_reset)
            if not seq.height:
                return None
        sw = kinds == "__switch"
        rows = seq.filter(~sw).with_row_index("_i")
        if not rows.height or rows.get_column("pid").null_count():
            return None
        stacks = {} if n_reset else self.stacks  # read here, changed only once the chunk is done
        pids_u = rows.get_column("pid").unique().to_list()
        init = pl.DataFrame({"pid": pids_u, "_l0": [len(stacks.get(p, ())) for p in pids_u]},
                            schema={"pid": pl.Int32, "_l0": pl.Int64})
        k = pl.col("kind")
        r = rows.join(init, on="pid", how="left").sort("_i").with_columns(
            _c=pl.col("_l0") + pl.when(k == "entry").then(1).when(k == "exit").then(-1).otherwise(0)
            .cast(pl.Int64).cum_sum().over("pid"))
        r = r.with_columns(_a=pl.col("_c") - pl.min_horizontal(pl.lit(0, pl.Int64), pl.col("_c").cum_min().over("pid")))
        r = r.with_columns(_b=pl.col("_a").shift(1).over("pid").fill_null(pl.col("_l0")))
        matched = (k == "exit") & (pl.col("_b") > 0)
        r = r.with_columns(
            _unm=(k == "exit") & (pl.col("_b") == 0),
            depth=pl.when(matched).then(pl.col("_b") - 1).when(k == "exit").then(pl.col("_ind").fill_null(0))
            .otherwise(pl.col("_b")))
        ex = r.filter(matched).select("_i", "line_no", "pid", "depth", "func")
        ofunc = pl.Series("_func", [None] * r.height, dtype=pl.String)
        if ex.height:
            ent = r.filter(k == "entry").select("line_no", "pid", "depth", pl.col("func").alias("_ef")).sort("line_no")
            m = ex.sort("line_no").join_asof(ent, on="line_no", by=["pid", "depth"], strategy="backward",
                                             allow_exact_matches=False, check_sortedness=False)
            miss = m.filter(pl.col("_ef").is_null())
            if miss.height:  # closes an entry of an earlier chunk: the carried stack's
                fill = [stacks[p][d] for p, d in zip(miss.get_column("pid").to_list(),
                                                          miss.get_column("depth").to_list())]
                m = m.join(miss.select("_i", pl.Series("_cf", fill, dtype=pl.String)), on="_i", how="left") \
                    .with_columns(_ef=pl.coalesce("_ef", "_cf"))
            if m.filter(pl.col("func").is_not_null() & (pl.col("func") != pl.col("_ef"))).height:
                return None  # a tail comment naming another call: the loop's resynchronisation
            ofunc = r.select("_i").join(m.select("_i", "_ef"), on="_i", how="left").sort("_i").get_column("_ef")
        # the stacks carried to the next chunk
        if n_reset:
            self.stacks.clear()
            self.cpu_task.clear()
        last = r.group_by("pid").agg(pl.col("_a").last())
        ent_last = r.filter(k == "entry").group_by("pid", "depth").agg(pl.col("func").last())
        latest = {(p, d): f for p, d, f in ent_last.iter_rows()}
        for p, a in last.iter_rows():
            old = self.stacks.get(p, [])
            self.stacks[p] = [latest.get((p, d), old[d] if d < len(old) else None) for d in range(a)]
        self.n_unmatched_exits += int(r.get_column("_unm").sum())
        out = r.select("line_no", "kind", pl.col("depth").cast(pl.Int32), ofunc.alias("_func"),
                       pl.lit(None, pl.Int32).alias("_pid"), pl.lit(None, pl.String).alias("_comm"), "_unm")
        if sw.any():
            b = seq.filter(sw)
            bpid = []
            for cpu, nxt in zip(b.get_column("cpu").to_list(), b.get_column("func").to_list()):
                m2 = _COMM_PID.match(nxt or "")
                bpid.append(int(m2.group(2)) if m2 else None)
                if m2:
                    self.cpu_task[cpu] = (int(m2.group(2)), m2.group(1).strip())
                    self.cpu_task["last"] = self.cpu_task[cpu]
            out = pl.concat([out, b.select("line_no", "kind", pl.lit(None, pl.Int32).alias("depth"),
                                           pl.lit(None, pl.String).alias("_func"),
                                           pl.Series("_pid", bpid, dtype=pl.Int32),
                                           pl.lit(None, pl.String).alias("_comm"), pl.lit(False).alias("_unm"))]
                            ).sort("line_no")
        if n_reset:
            out = pl.concat([head.select("line_no", "kind", pl.lit(None, pl.Int32).alias("depth"),
                                         pl.lit(None, pl.String).alias("_func"), pl.lit(None, pl.Int32).alias("_pid"),
                                         pl.lit(None, pl.String).alias("_comm"), pl.lit(False).alias("_unm")), out])
        return out

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
