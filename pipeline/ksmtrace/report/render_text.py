"""The terminal report (rich tables); plain text when written to a file."""
from __future__ import annotations

import io

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from . import fmt


def _seed_table(model: dict) -> Table:
    b, a, c = model["before"], model["after"], model["comparison"]
    t = Table(title="The original table (max over lock windows)", title_justify="left", header_style="bold")
    t.add_column("metric")
    t.add_column("before" if b["label"] == "before" else f"before\n{b['label']}", justify="right")
    t.add_column("after" if a["label"] == "after" else f"after\n{a['label']}", justify="right")
    t.add_column("after/before", justify="right")
    for key, name in fmt.SEED_ROWS:
        r = c["seed_ratio"].get(key)
        t.add_row(name, fmt.seed_cell(key, b["seed"].get(key)), fmt.seed_cell(key, a["seed"].get(key)),
                  fmt.ratio(r) if r is not None else "")
    return t


def _notes(lines: list[str]):
    g = Table.grid(padding=(0, 1))
    g.add_column(no_wrap=True)
    g.add_column()
    for x in lines:
        g.add_row("*" if not x.startswith("  ") else "", x.strip())
    return g


def _dist_table(model: dict) -> Table:
    t = Table(title="Distributions (complete walks; holds and iterations per lock window)", title_justify="left",
              header_style="bold")
    t.add_column("metric")
    t.add_column("side")
    for _, head in fmt.DIST_COLS:
        t.add_column(head, justify="right")
    for key, title, unit in fmt.DIST_ROWS:
        for i, side in enumerate(("before", "after")):
            d = model[side][key]
            t.add_row(title if i == 0 else "", side,
                      *[fmt.count(d[k]) if k == "count" else fmt.value(d[k], unit) for k, _ in fmt.DIST_COLS],
                      end_section=i == 1)
    hq = model["before"].get("hold_quantity") or model["after"].get("hold_quantity")
    if hq and "proxy" in hq:
        t.caption = "lock hold = " + hq
        t.caption_justify = "left"
    return t


def _cmp_table(model: dict) -> Table:
    c = model["comparison"]
    unit = c.get("unit")
    t = Table(title=f"Before/after (Mann-Whitney U, alpha {model['alpha']:g}; bootstrap 95% CI, seed "
                    f"{model['bootstrap']['seed']})", title_justify="left", header_style="bold")
    for col, j in (("metric", "left"), ("unit", "left"), ("median after/before [95% CI]", "right"),
                   ("p99 after/before [95% CI]", "right"), ("p", "right"), ("p_holm", "right"), ("n", "right"),
                   ("verdict", "right")):
        t.add_column(col, justify=j, no_wrap="CI" not in col)  # the CIs wrap first when narrow
    for key, title in fmt.cmp_rows(c):
        x = c[key]
        v = x["verdict"]
        style = "green" if v.startswith("-") else "red" if v.startswith("+") else ""
        p99 = f"{fmt.ratio(x['p99_ratio'])} {fmt.ci(x['p99_ratio_ci'])}"
        if x.get("p99_p_value") is not None:
            p99 += f" ({fmt.padj(x, 'p99_p_value')})"
        t.add_row(title, fmt.unit_name(x), f"{fmt.ratio(x['median_ratio'])} {fmt.ci(x['median_ratio_ci'])}",
                  p99, fmt.pval(x["p_value"]).replace("p=", ""), fmt.pval(x.get("p_value_adjusted")).replace("p=", ""),
                  f"{x['n_before']}+{x['n_after']}", Text(v, style=style))
    return t


def _hist(model: dict, samples) -> list:
    out = []
    if not samples:
        return out
    for side in ("before", "after"):
        smp = samples.get(side)
        if smp is None or len(smp.walk_ns) == 0:
            continue
        lines = [f"{r:<22} {n:>8} |{bar:<40}|" for r, n, bar in fmt.log2_hist(smp.walk_ns)]
        out.append(Panel(Text("\n".join(lines)), title=f"walk duration, {side} ({model[side]['label']})",
                         title_align="left", expand=False))
    return out


def _waits(model: dict) -> list:
    out = []
    for side in ("before", "after"):
        w = model[side].get("lock_waits")
        if not w:
            continue
        if not w["all_lock_waits"]:
            out.append(Text(f"anon_vma lock waits, {side}: none recorded (no lock:contention_begin/end pairs)"))
            continue
        head = (f"anon_vma lock waits, {side}: {w['count']} waits" +
                (f", total {fmt.ns(w['total_ns'])}, max {fmt.ns(w['max_ns'])}" if w["count"] else "") +
                f" ({w['all_lock_waits']} lock waits in all)")
        if not w["waiters"]:
            out.append(Text(head))
            continue
        t = Table(title=head, title_justify="left", header_style="bold")
        for col, j in (("comm/pid", "left"), ("caller", "left"), ("type", "left"), ("contended", "right"),
                       ("total wait", "right"), ("max wait", "right")):
            t.add_column(col, justify=j)
        for x in w["waiters"]:
            t.add_row(f"{x.get('comm')}/{x.get('pid')}", str(x.get("caller") or ""), str(x.get("flags") or ""),
                      str(x["count"]), fmt.ns(x["total_ns"]), fmt.ns(x["max_ns"]))
        out.append(t)
    return out


def _runs_table(model: dict) -> Table:
    t = Table(title="Runs", title_justify="left", header_style="bold")
    for col, j in (("side", "left"), ("run", "left"), ("source", "left"), ("tracer", "left"),
                   ("kernel", "left"), ("cpus", "right"), ("walks", "right"), ("complete", "right"),
                   ("lost events", "right")):
        t.add_column(col, justify=j, overflow="fold", no_wrap=col != "source")
    for side in ("before", "after"):
        s = model[side]
        for i, r in enumerate(s["run_details"]):
            lost = r.get("n_lost_events")
            lost_s = ("?" if r.get("lost_unknown") else "") + ("" if lost is None else str(lost))
            t.add_row(side if i == 0 else "", str(r["run_id"]), str(r.get("source") or ""), str(r.get("tracer") or ""),
                      str(r.get("kernel") or ""), str(r.get("n_cpus") or ""), str(r.get("walks", 0)),
                      str(r.get("complete_walks", 0)), lost_s, end_section=i == len(s["run_details"]) - 1)
    return t


def renderables(model: dict, samples=None) -> list:
    b, a = model["before"], model["after"]
    title = Text.assemble((fmt.title(model), "bold"), f": rmap_walk_ksm() walks, page type {model['page_type']}\n",
                          f"before = {fmt.side_title(b)}, evidence {fmt.evidence_text(b)}\n",
                          f"after  = {fmt.side_title(a)}, evidence {fmt.evidence_text(a)}")
    parts = [title, Text(""), _seed_table(model), _notes(fmt.seed_footnotes(model)), Text(""), _dist_table(model),
             Text(""), _cmp_table(model), _notes([model["comparison"].get("unit_note", ""), fmt.correction_note(model)])]
    if fmt.is_aa(model):
        parts[1:1] = [Text(model["aa"]["note"], style="bold")]
    for h in _hist(model, samples):
        parts += [Text(""), h]
    for w in _waits(model):
        parts += [Text(""), w]
    parts += [Text(""), _runs_table(model)]
    if model["warnings"]:
        parts += [Text(""), Text("Warnings", style="bold yellow")]
        g = Table.grid(padding=(0, 1))
        g.add_column(no_wrap=True)
        g.add_column(style="yellow")
        for w in model["warnings"]:
            g.add_row(" -", w)
        parts.append(g)
    return parts


def render(model: dict, samples=None, color: bool = False, width: int = 120) -> str:
    buf = io.StringIO()
    con = Console(file=buf, width=width, force_terminal=color, color_system="auto" if color else None,
                  highlight=False, soft_wrap=False)
    con.print(Group(*renderables(model, samples)))
    return "\n".join(x.rstrip() for x in buf.getvalue().splitlines()) + "\n"


def print_report(model: dict, samples=None, console: Console | None = None) -> None:
    (console or Console(highlight=False)).print(Group(*renderables(model, samples)))
