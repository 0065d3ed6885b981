"""GitHub-flavoured Markdown; figures are linked (written beside the report) when given.

Lays out the blocks of :mod:`ksmtrace.report.tables`; every text goes through
:func:`ksmtrace.safe_text.markdown` (Markdown punctuation backslash-escaped, ``<``/``>``/``&`` as
entities, control characters shown), so ``<script>``, ``<img onerror>`` or ``[x](javascript:)`` in
trace data render as text.
"""
from __future__ import annotations

from urllib.parse import quote

from . import tables as tb


def _e(s) -> str:
    return tb.esc(s, "markdown")


def _cell(c: tb.Cell) -> str:
    t = _e(c.text)
    if c.style == "code" and t:
        return f"`{c.text}`" if c.text.isidentifier() else t
    if c.style in ("good", "bad", "same") and t:
        return f"**{t}**"
    return t


def _table(t: tb.Table) -> list[str]:
    head = "| " + " | ".join(_e(c.name) for c in t.columns) + " |"
    align = "|" + "|".join("---" if c.align == "l" else "--:" for c in t.columns) + "|"
    rows = ["| " + " | ".join(_cell(x) for x in r) + " |" for r in t.rows]
    out = [f"**{_e(t.title)}**", "", head, align] + rows
    if t.notes:
        out += [""] + [f"- {_e(n)}" for n in t.notes]
    return out


def render(model: dict, images: dict[str, str] | None = None, samples=None) -> str:
    """``images``: plot name -> relative path (or data URI) of the PNG, in display order."""
    L: list[str] = []
    for blk in tb.build(model):
        if isinstance(blk, tb.Heading):
            L += ["#" * blk.level + " " + _e(blk.text), ""]
        elif isinstance(blk, tb.Para):
            text = _e(blk.text)
            if blk.kind == "aa":
                text = "**A/A check.** " + text
            L += [("- " if blk.kind == "sides" else "") + text]
            if blk.kind != "sides":
                L.append("")
            elif blk.text.startswith("after"):
                L.append("")
        elif isinstance(blk, tb.Table):
            L += _table(blk) + [""]
        elif isinstance(blk, tb.Figures) and images:
            L += ["## Figures", ""]
            for name, path in images.items():
                # the path is ours (written beside the report); quoted so no character ends the link
                alt = name if name.isidentifier() else _e(name)
                L += [f"![{alt}]({quote(path, safe='/:.-_~;,=+')})", ""]
        elif isinstance(blk, tb.Items):
            L += [f"## {_e(blk.title)}", ""] + [f"- {_e(w)}" for w in blk.items] + [""]
    return "\n".join(L).rstrip("\n") + "\n"
