"""GitHub-flavoured Markdown; figures are linked (written beside the report) when given."""
from __future__ import annotations

from . import fmt


def _row(cells) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _table(head, rows, align=None) -> list[str]:
    align = align or ["---"] + ["--:"] * (len(head) - 1)
    return [_row(head), "|" + "|".join(align) + "|"] + [_row(r) for r in rows]


def render(model: dict, images: dict[str, str] | None = None, samples=None) -> str:
    """``images``: plot name -> relative path (or data URI) of the PNG, in display order."""
    b, a, c = model["before"], model["after"], model["comparison"]
    L = [f"# {fmt.title(model)}: rmap_walk_ksm() walks, page type `{model['page_type']}`", ""]
    if fmt.is_aa(model):
        L += [f"**A/A check.** {model['aa']['note']}.", ""]
    L.append(f"- **before** = {fmt.side_title(b)}, evidence: {fmt.evidence_text(b)}")
    L.append(f"- **after** = {fmt.side_title(a)}, evidence: {fmt.evidence_text(a)}")
    L.append("")

    L += ["## The original table", "", "Each column is the maximum over lock windows, as in the v1 patch.", ""]
    rows = []
    for key, name in fmt.SEED_ROWS:
        r = c["seed_ratio"].get(key)
        rows.append([f"`{name}`", fmt.seed_cell(key, b["seed"].get(key)), fmt.seed_cell(key, a["seed"].get(key)),
                     fmt.ratio(r) if r is not None else ""])
    L += _table(["metric", "before", "after", "after/before"], rows)
    L.append("")
    L += [f"- {n}" for n in fmt.seed_footnotes(model)]
    L.append("")

    L += ["## Distributions", "", "Complete walks only; holds and iterations are per lock window.", ""]
    rows = []
    for key, title, unit in fmt.DIST_ROWS:
        for side in ("before", "after"):
            d = model[side][key]
            rows.append([title, side] +
                        [fmt.count(d[k]) if k == "count" else fmt.value(d[k], unit) for k, _ in fmt.DIST_COLS])
    L += _table(["metric", "side"] + [h for _, h in fmt.DIST_COLS], rows, ["---", "---"] + ["--:"] * 8)
    hq = b.get("hold_quantity") or a.get("hold_quantity")
    if hq and "proxy" in hq:
        L += ["", f"Lock hold = {hq}."]
    L.append("")

    L += ["## Before/after", "",
          f"Mann-Whitney U at alpha {model['alpha']:g}; bootstrap 95% CIs of after/before "
          f"(seed {model['bootstrap']['seed']}, {model['bootstrap']['replicates']} replicates). "
          + c.get("unit_note", "").capitalize() + ". " + fmt.correction_note(model) + ".", ""]
    rows = []
    for key, title in fmt.cmp_rows(c):
        x = c[key]
        rows.append([title, fmt.unit_name(x), f"{fmt.ratio(x['median_ratio'])} {fmt.ci(x['median_ratio_ci'])}",
                     f"{fmt.ratio(x['p99_ratio'])} {fmt.ci(x['p99_ratio_ci'])}", fmt.pval(x["p_value"]),
                     fmt.pval(x.get("p_value_adjusted")), f"{x['n_before']}+{x['n_after']}", f"**{x['verdict']}**"])
    L += _table(["metric", "unit", "median after/before [95% CI]", "p99 after/before [95% CI]", "p", "p_holm", "n",
                 "verdict"], rows, ["---", "---", "--:", "--:", "--:", "--:", "--:", "--:"])
    L.append("")

    rows = fmt.waiter_rows(model)
    if rows is not None:
        L += ["## anon_vma lock waits", ""]
        L += _table(fmt.WAITER_HEADER, rows, ["---", "---", "---", "---", "--:", "--:", "--:"])
        L.append("")

    if images:
        L += ["## Figures", ""]
        for name, path in images.items():
            L += [f"![{name}]({path})", ""]

    L += ["## Runs", ""]
    rows = []
    for side in ("before", "after"):
        for r in model[side]["run_details"]:
            rows.append([side, f"`{r['run_id']}`", r.get("source") or "", r.get("tracer") or "", r.get("kernel") or "",
                         r.get("n_cpus") or "", r.get("walks", 0), r.get("complete_walks", 0),
                         ("?" if r.get("lost_unknown") else "") + str(r.get("n_lost_events") or 0)])
    L += _table(["side", "run", "source", "tracer", "kernel", "cpus", "walks", "complete", "lost events"], rows,
                ["---"] * 5 + ["--:"] * 4)
    L.append("")
    if model["warnings"]:
        L += ["## Warnings", ""] + [f"- {w}" for w in model["warnings"]] + [""]
    return "\n".join(L)
