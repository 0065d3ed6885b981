"""The table layer: the report model as typed blocks, built once, that every renderer only lays out.

In the spirit of benchstat's ``benchtab``: :func:`build` turns the JSON model into a list of
blocks (:class:`Heading`, :class:`Para`, :class:`Table`, :class:`Items`, :class:`Hist`,
:class:`Figures`) holding the final cell texts. The renderers (text, LKML, Markdown, HTML) decide
widths, wrapping and markup only; none of them formats a number or chooses a word.

Every text in a block is plain text. Trace data in it (labels, comm, caller, kernel, file names,
run ids) is untrusted: each renderer passes every text through its :mod:`ksmtrace.safe_text`
function (:func:`~ksmtrace.safe_text.terminal` for text and LKML, ``markdown()``, ``html()``), in
:func:`esc`, so no renderer can forget one. Only the renderers' own markup is trusted.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import safe_text
from . import fmt

ESCAPE = {"text": safe_text.terminal, "lkml": safe_text.terminal, "markdown": safe_text.markdown,
          "html": safe_text.html}


def esc(s, out_format: str) -> str:
    """The one place where a block's text is made safe for an output format."""
    return ESCAPE[out_format]("" if s is None else s)


@dataclass
class Cell:
    text: str
    style: str = ""  # "good", "bad", "same" (verdicts), "na" (n/a), "code" (a metric name)

    def __str__(self) -> str:
        return self.text


@dataclass
class Column:
    name: str
    align: str = "r"  # "l" or "r"
    wrap: bool = False  # may wrap when the line is too narrow (long paths, CIs)
    lkml: bool = True  # shown in the 76-column LKML layout


@dataclass
class Table:
    key: str
    title: str
    columns: list[Column]
    rows: list[list[Cell]]
    sections: list[int] = field(default_factory=list)  # row indexes that start a new section
    notes: list[str] = field(default_factory=list)  # footnotes, one per line


@dataclass
class Heading:
    text: str
    level: int = 1


@dataclass
class Para:
    text: str
    kind: str = ""  # "aa", "sides", "scope", "note"


@dataclass
class Items:
    title: str
    items: list[str]
    kind: str = "warnings"


@dataclass
class Hist:
    title: str
    lines: list[str]


@dataclass
class Figures:
    """Placeholder: where the figures go (Markdown links / HTML images); text and LKML skip it."""


def _c(text, style: str = "") -> Cell:
    text = "" if text is None else str(text)
    return Cell(text, "na" if text.startswith(fmt.NA) and not style else style)


def _verdict_style(v: str) -> str:
    return "good" if v.startswith("-") else "bad" if v.startswith("+") else "same"


def seed_table(model: dict) -> Table:
    b, a, c = model["before"], model["after"], model["comparison"]
    rows = []
    for key, name in fmt.SEED_ROWS:
        r = c["seed_ratio"].get(key)
        rows.append([Cell(name, "code"), _c(fmt.seed_cell(key, b["seed"].get(key))),
                     _c(fmt.seed_cell(key, a["seed"].get(key))), _c(fmt.ratio(r) if r is not None else "")])
    return Table("seed", "The original table (each column the maximum over lock windows, as in the v1 patch)",
                 [Column("", "l"), Column("before"), Column("after"), Column("after/before")], rows,
                 notes=fmt.seed_footnotes(model))


def dist_table(model: dict) -> Table:
    rows, sections = [], []
    for key, title, unit in fmt.DIST_ROWS:
        sections.append(len(rows))
        for i, side in enumerate(("before", "after")):
            d = model[side][key]
            res = fmt.resolution_of(model[side], key)
            rows.append([_c(title if i == 0 else ""), _c(side)] +
                        # no value at all: unknown (n/a, the notes say why), not a count of 0
                        [_c((fmt.count(d[k]) if d[k] else fmt.NA) if k == "count" else fmt.value(d[k], unit, res))
                         for k, _ in fmt.DIST_COLS])
    cols = [Column("metric", "l"), Column("side", "l")] + [
        Column(h, lkml=k in ("count", "p50", "p99", "p999", "max")) for k, h in fmt.DIST_COLS]
    return Table("dist", "Distributions (complete walks; holds and iterations per lock window)", cols, rows,
                 sections=sections[1:], notes=fmt.dist_notes(model))


def cmp_table(model: dict) -> Table:
    c = model["comparison"]
    rows = []
    for key, title in fmt.cmp_rows(c):
        x = c[key]
        p99 = f"{fmt.ratio(x['p99_ratio'])} {fmt.ci(x['p99_ratio_ci'])}"
        if x.get("p99_p_value") is not None:
            p99 += f" ({fmt.padj(x, 'p99_p_value')})"
        rows.append([_c(title), _c(fmt.unit_name(x)), _c(f"{fmt.ratio(x['median_ratio'])} {fmt.ci(x['median_ratio_ci'])}"),
                     _c(p99), _c(fmt.pval(x["p_value"], bare=True)), _c(fmt.pval(x.get("p_value_adjusted"), bare=True)),
                     _c(f"{x['n_before']}+{x['n_after']}"), Cell(x["verdict"], _verdict_style(x["verdict"]))])
    cols = [Column("metric", "l"), Column("unit", "l", lkml=False), Column("median ratio [95% CI]", wrap=True),
            Column("p99 ratio [95% CI]", wrap=True, lkml=False), Column("p", lkml=False), Column("p_holm"),
            Column("n"), Column("verdict")]
    notes = ["ratio = after/before; " + ", ".join(f"{t}: one value per {x['unit']} ({x.get('summary') or 'n/a'})"
                                                  for t, x in ((t, c[k]) for k, t in fmt.cmp_rows(c))),
             f"test: {c.get('test', 'n/a')}", fmt.correction_note(model)]
    return Table("cmp", f"Before/after (alpha {model['alpha']:g}; bootstrap 95% CIs, seed "
                        f"{model['bootstrap']['seed']}, {model['bootstrap']['replicates']} replicates)",
                 cols, rows, notes=[n for n in notes if n])


def waits_blocks(model: dict) -> list:
    out = []
    lines = [fmt.waits_line(side, model[side].get("lock_waits")) for side in ("before", "after")]
    lines = [x for x in lines if x]
    if not lines:
        return out
    out.append(Heading("anon_vma lock waits", 2))
    out += [Para(x, "note") for x in lines]
    rows = fmt.waiter_rows(model)
    if rows and any(w and w["waiters"] for w in (model[s].get("lock_waits") for s in ("before", "after"))):
        cols = [Column(h, "l" if i < 4 else "r", wrap=i in (1, 2)) for i, h in enumerate(fmt.WAITER_HEADER)]
        out.append(Table("waiters", "Top anon_vma lock waiters", cols, [[_c(x) for x in r] for r in rows]))
    return out


def runs_table(model: dict) -> Table:
    rows, sections = [], []
    for side in ("before", "after"):
        sections.append(len(rows))
        for i, r in enumerate(model[side]["run_details"]):
            lost = r.get("n_lost_events")
            lost_s = ("?" if r.get("lost_unknown") else "") + ("n/a" if lost is None and not r.get("lost_unknown")
                                                               else "" if lost is None else str(lost))
            rows.append([_c(side if i == 0 else ""), _c(r["run_id"]), _c(r.get("source") or ""),
                         _c(r.get("tracer") or ""), _c(r.get("kernel") or ""), _c(r.get("n_cpus") or ""),
                         _c(r.get("walks", 0)), _c(r.get("complete_walks", 0)), _c(lost_s)])
    cols = [Column("side", "l"), Column("run", "l", wrap=True), Column("source", "l", wrap=True),
            Column("tracer", "l"), Column("kernel", "l", wrap=True), Column("cpus"), Column("walks"),
            Column("complete"), Column("lost events")]
    return Table("runs", "Runs", cols, rows, sections=sections[1:])


def hists(model: dict, samples) -> list:
    out = []
    for side in ("before", "after"):
        smp = (samples or {}).get(side)
        if smp is None or len(smp.walk_ns) == 0:
            continue
        lines = [f"{r:<22} {n:>8} |{bar:<40}|" for r, n, bar in fmt.log2_hist(smp.walk_ns)]
        out.append(Hist(f"walk duration, {side} ({model[side]['label']}), n={len(smp.walk_ns)}", lines))
    return out


def build(model: dict, samples=None) -> list:
    """The report as blocks, in display order."""
    b, a = model["before"], model["after"]
    blocks: list = [Heading(f"{fmt.title(model)}: rmap_walk_ksm() walks, page type {model['page_type']}")]
    if fmt.is_aa(model):
        blocks.append(Para(model["aa"]["note"] + ".", "aa"))
    blocks.append(Para(f"before = {fmt.side_title(b)}, evidence {fmt.evidence_text(b)}", "sides"))
    blocks.append(Para(f"after  = {fmt.side_title(a)}, evidence {fmt.evidence_text(a)}", "sides"))
    blocks.append(Para("Scope: " + fmt.scope(model), "scope"))
    blocks += [seed_table(model), dist_table(model), cmp_table(model)]
    blocks += hists(model, samples)
    blocks += waits_blocks(model)
    blocks.append(Figures())
    blocks.append(runs_table(model))
    if model["warnings"]:
        blocks.append(Items("Warnings", list(model["warnings"])))
    return blocks
