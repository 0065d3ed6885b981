"""One self-contained HTML file: inline CSS, figures as base64 PNG, nothing loaded from the network."""
from __future__ import annotations

import base64
import json
from html import escape

from . import fmt

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1d2330;
     max-width:1100px;margin:2em auto;padding:0 1.2em;background:#fff}
h1{font-size:1.55em;margin:.2em 0 .3em} h2{font-size:1.2em;margin:1.6em 0 .5em;border-bottom:1px solid #dde2ea;
     padding-bottom:.2em}
.sides{margin:.2em 0 1em;color:#3a4456} .sides b{display:inline-block;width:4.2em}
table{border-collapse:collapse;margin:.4em 0 .6em;font-variant-numeric:tabular-nums}
th,td{padding:.28em .75em;border-bottom:1px solid #e6e9ef;text-align:right;white-space:nowrap}
th{background:#f3f5f9;font-weight:600} td.l,th.l{text-align:left}
tr.sep td{border-top:2px solid #cfd5df}
code{font:13px ui-monospace,"DejaVu Sans Mono",monospace;background:#f3f5f9;padding:0 .25em;border-radius:3px}
.note{color:#586174;font-size:.92em;margin:.15em 0}
.good{color:#1e7b34;font-weight:600} .bad{color:#b42318;font-weight:600} .same{color:#586174;font-weight:600}
.warn{background:#fff8e6;border-left:4px solid #e0a100;padding:.5em 1em;margin:.6em 0}
.warn li{margin:.2em 0}
.aa{background:#eef4ff;border-left:4px solid #3b6fd8;padding:.5em 1em;margin:.6em 0}
.figs{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:1em}
figure{margin:0} figure img{width:100%;height:auto;border:1px solid #e6e9ef}
figcaption{color:#586174;font-size:.9em}
footer{margin-top:2em;color:#8a93a3;font-size:.85em}
"""


def _table(head, rows, left=(0,), seps=()) -> str:
    h = "".join(f'<th class="{"l" if i in left else ""}">{escape(str(x))}</th>' for i, x in enumerate(head))
    body = []
    for ri, r in enumerate(rows):
        cells = "".join(f'<td class="{"l" if i in left else ""}">{x if isinstance(x, _Raw) else escape(str(x))}</td>'
                        for i, x in enumerate(r))
        body.append(f'<tr class="{"sep" if ri in seps else ""}">{cells}</tr>')
    return f"<table><thead><tr>{h}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class _Raw(str):
    """Trusted HTML (already escaped)."""


def _verdict(v: str) -> _Raw:
    cls = "good" if v.startswith("-") else "bad" if v.startswith("+") else "same"
    return _Raw(f'<span class="{cls}">{escape(v)}</span>')


def render(model: dict, plots: dict | None = None) -> str:
    """``plots``: name -> Plot (from :mod:`plots`); embedded as base64 PNG."""
    b, a, c = model["before"], model["after"], model["comparison"]
    P = []
    P.append(f"<h1>{escape(fmt.title(model))}: <code>rmap_walk_ksm()</code> walks, page type "
             f"<code>{escape(model['page_type'])}</code></h1>")
    if fmt.is_aa(model):
        P.append(f'<p class="aa"><b>A/A check.</b> {escape(model["aa"]["note"])}.</p>')
    P.append('<div class="sides">'
             f"<div><b>before</b> {escape(fmt.side_title(b))}, evidence {escape(fmt.evidence_text(b))}</div>"
             f"<div><b>after</b> {escape(fmt.side_title(a))}, evidence {escape(fmt.evidence_text(a))}</div></div>")
    if model["warnings"]:
        P.append('<div class="warn"><b>Warnings</b><ul>' + "".join(f"<li>{escape(w)}</li>" for w in model["warnings"])
                 + "</ul></div>")

    P.append("<h2>The original table</h2><p class=note>Each column is the maximum over lock windows, as in the v1 "
             "patch.</p>")
    rows = []
    for key, name in fmt.SEED_ROWS:
        r = c["seed_ratio"].get(key)
        rows.append([_Raw(f"<code>{name}</code>"), fmt.seed_cell(key, b["seed"].get(key)),
                     fmt.seed_cell(key, a["seed"].get(key)), fmt.ratio(r) if r is not None else ""])
    heads = [s if m["label"] == s else f"{s} ({m['label']})" for s, m in (("before", b), ("after", a))]
    P.append(_table(["metric", *heads, "after/before"], rows))
    P += [f"<p class=note>{escape(n)}</p>" for n in fmt.seed_footnotes(model)]

    P.append("<h2>Distributions</h2><p class=note>Complete walks only; holds and iterations are per lock window."
             "</p>")
    rows, seps = [], []
    for key, title, unit in fmt.DIST_ROWS:
        seps.append(len(rows))
        for i, side in enumerate(("before", "after")):
            d = model[side][key]
            rows.append([title if i == 0 else "", side] +
                        [fmt.count(d[k]) if k == "count" else fmt.value(d[k], unit) for k, _ in fmt.DIST_COLS])
    P.append(_table(["metric", "side"] + [h for _, h in fmt.DIST_COLS], rows, left=(0, 1), seps=seps[1:]))
    hq = b.get("hold_quantity") or a.get("hold_quantity")
    if hq and "proxy" in hq:
        P.append(f"<p class=note>Lock hold = {escape(hq)}.</p>")

    P.append("<h2>Before/after</h2>")
    P.append(f"<p class=note>Mann-Whitney U at alpha {model['alpha']:g}; bootstrap 95% CIs of after/before (seed "
             f"{model['bootstrap']['seed']}, {model['bootstrap']['replicates']} replicates). "
             f"{escape(c.get('unit_note', '').capitalize())}. {escape(fmt.correction_note(model))}.</p>")
    rows = []
    for key, title in fmt.cmp_rows(c):
        x = c[key]
        rows.append([title, fmt.unit_name(x), f"{fmt.ratio(x['median_ratio'])} {fmt.ci(x['median_ratio_ci'])}",
                     f"{fmt.ratio(x['p99_ratio'])} {fmt.ci(x['p99_ratio_ci'])}", fmt.pval(x["p_value"]),
                     fmt.pval(x.get("p_value_adjusted")), f"{x['n_before']}+{x['n_after']}", _verdict(x["verdict"])])
    P.append(_table(["metric", "unit", "median after/before [95% CI]", "p99 after/before [95% CI]", "p", "p_holm", "n",
                     "verdict"], rows, left=(0, 1)))

    if plots:
        P.append('<h2>Figures</h2><div class="figs">')
        for p in plots.values():
            data = base64.b64encode(p.png).decode("ascii")
            P.append(f'<figure><img id="plot-{escape(p.name)}" alt="{escape(p.title)}" '
                     f'src="data:image/png;base64,{data}"></figure>')
        P.append("</div>")

    rows = fmt.waiter_rows(model)
    if rows is not None:
        P.append("<h2>anon_vma lock waits</h2>")
        P.append(_table(fmt.WAITER_HEADER, rows, left=(0, 1, 2, 3)))

    P.append("<h2>Runs</h2>")
    rows = []
    for side in ("before", "after"):
        for r in model[side]["run_details"]:
            rows.append([side, r["run_id"], r.get("source") or "", r.get("tracer") or "", r.get("kernel") or "",
                         r.get("n_cpus") or "", r.get("walks", 0), r.get("complete_walks", 0),
                         ("?" if r.get("lost_unknown") else "") + str(r.get("n_lost_events") or 0)])
    P.append(_table(["side", "run", "source", "tracer", "kernel", "cpus", "walks", "complete", "lost events"], rows,
                    left=(0, 1, 2, 3, 4)))
    model_json = json.dumps(model, default=str).replace("</", "<\\/")
    P.append(f'<script type="application/json" id="ksmtrace-model">{model_json}</script>')
    P.append("<footer>ksmtrace report --format html</footer>")
    title = f"{fmt.title(model)}: {b['label']} vs {a['label']}"
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(P) + "\n</body></html>\n")
