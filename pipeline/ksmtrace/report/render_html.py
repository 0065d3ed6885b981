"""One self-contained HTML file: inline CSS, figures as base64 PNG, nothing loaded from the network.

Lays out the blocks of :mod:`ksmtrace.report.tables`; every text goes through
:func:`ksmtrace.safe_text.html`. Tables never run off the page: long cells (paths, run ids,
kernels, CIs) wrap anywhere, wide tables scroll inside their own box.
"""
from __future__ import annotations

import base64
import json

from . import fmt
from . import tables as tb

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1d2330;
     max-width:1100px;margin:2em auto;padding:0 1.2em;background:#fff}
h1{font-size:1.55em;margin:.2em 0 .3em} h2{font-size:1.2em;margin:1.6em 0 .5em;border-bottom:1px solid #dde2ea;
     padding-bottom:.2em}
.sides{margin:.2em 0 1em;color:#3a4456}
.tw{max-width:100%;overflow-x:auto;margin:.4em 0 .6em}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;max-width:100%}
caption{text-align:left;font-weight:600;padding:.2em 0 .35em;color:#2a3140}
th,td{padding:.28em .6em;border-bottom:1px solid #e6e9ef;text-align:right;vertical-align:top}
td.n,th.n{white-space:nowrap}
td.w{overflow-wrap:anywhere;word-break:break-word;min-width:6em;max-width:28em}
th{background:#f3f5f9;font-weight:600} td.l,th.l{text-align:left}
tr.sep td{border-top:2px solid #cfd5df}
code{font:13px ui-monospace,"DejaVu Sans Mono",monospace;background:#f3f5f9;padding:0 .25em;border-radius:3px}
.note{color:#586174;font-size:.92em;margin:.15em 0}
.good{color:#1e7b34;font-weight:600} .bad{color:#b42318;font-weight:600} .same{color:#586174;font-weight:600}
.na{color:#8a93a3}
.warn{background:#fff8e6;border-left:4px solid #e0a100;padding:.5em 1em;margin:.6em 0;overflow-wrap:anywhere}
.warn li{margin:.2em 0}
.aa{background:#eef4ff;border-left:4px solid #3b6fd8;padding:.5em 1em;margin:.6em 0}
.scope{background:#f3f5f9;border-left:4px solid #8a93a3;padding:.4em 1em;margin:.6em 0}
.figs{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(480px,100%),1fr));gap:1em}
figure{margin:0} figure img{width:100%;height:auto;border:1px solid #e6e9ef}
footer{margin-top:2em;color:#8a93a3;font-size:.85em}
"""


def _e(s) -> str:
    return tb.esc(s, "html")


def _td(c: tb.Cell, col: tb.Column) -> str:
    cls = [col.align] if col.align == "l" else []
    cls.append("w" if col.wrap else "n")
    t = _e(c.text)
    if c.style in ("good", "bad", "same") and t:
        t = f'<span class="{c.style}">{t}</span>'
    elif c.style == "code" and t:
        t = f"<code>{t}</code>"
    elif c.style == "na":
        cls.append("na")
    return f'<td class="{" ".join(cls)}">{t}</td>'


def _table(t: tb.Table) -> str:
    h = "".join(f'<th class="{col.align} {"w" if col.wrap else "n"}">{_e(col.name)}</th>' for col in t.columns)
    body = []
    for i, r in enumerate(t.rows):
        cells = "".join(_td(c, col) for c, col in zip(r, t.columns))
        body.append(f'<tr class="{"sep" if i in t.sections else ""}">{cells}</tr>')
    notes = "".join(f"<p class=note>{_e(n)}</p>" for n in t.notes)
    return (f'<div class="tw" id="t-{_e(t.key)}"><table><caption>{_e(t.title)}</caption><thead><tr>{h}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>{notes}")


def render(model: dict, plots: dict | None = None) -> str:
    """``plots``: name -> Plot (from :mod:`plots`); embedded as base64 PNG."""
    P = []
    sides = []
    for blk in tb.build(model):
        if isinstance(blk, tb.Para) and blk.kind == "sides":
            sides.append(f"<div>{_e(blk.text)}</div>")
            continue
        if sides:
            P.append('<div class="sides">' + "".join(sides) + "</div>")
            sides = []
        if isinstance(blk, tb.Heading):
            P.append(f"<h{blk.level}>{_e(blk.text)}</h{blk.level}>")
        elif isinstance(blk, tb.Para):
            cls = {"aa": "aa", "scope": "scope"}.get(blk.kind, "note")
            lead = "<b>A/A check.</b> " if blk.kind == "aa" else ""
            P.append(f'<p class="{cls}">{lead}{_e(blk.text)}</p>')
        elif isinstance(blk, tb.Table):
            P.append(_table(blk))
        elif isinstance(blk, tb.Figures) and plots:
            P.append('<h2>Figures</h2><div class="figs">')
            for p in plots.values():
                data = base64.b64encode(p.png).decode("ascii")
                P.append(f'<figure><img id="plot-{_e(p.name)}" alt="{_e(p.title)}" '
                         f'src="data:image/png;base64,{data}"></figure>')
            P.append("</div>")
        elif isinstance(blk, tb.Items):
            P.append(f'<div class="warn"><b>{_e(blk.title)}</b><ul>'
                     + "".join(f"<li>{_e(w)}</li>" for w in blk.items) + "</ul></div>")
    model_json = json.dumps(model, default=str).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    P.append(f'<script type="application/json" id="ksmtrace-model">{model_json}</script>')
    P.append("<footer>ksmtrace report --format html</footer>")
    b, a = model["before"], model["after"]
    title = f"{fmt.title(model)}: {b['label']} vs {a['label']}"
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'><title>{_e(title)}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(P) + "\n</body></html>\n")
