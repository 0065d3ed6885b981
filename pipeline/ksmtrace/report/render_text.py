"""The terminal report (rich tables); plain text when written to a file.

Lays out the blocks of :mod:`ksmtrace.report.tables`. Every text goes to rich as a ``Text`` made
by :func:`ksmtrace.safe_text.rich_text`: never parsed as console markup, control characters shown
escaped.
"""
from __future__ import annotations

import io

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table as RTable
from rich.text import Text

from ..safe_text import rich_text
from . import tables as tb

STYLE = {"good": "green", "bad": "red", "same": "", "na": "dim", "code": ""}


def _table(t: tb.Table):
    rt = RTable(title=rich_text(t.title), title_justify="left", header_style="bold")
    for col in t.columns:
        rt.add_column(rich_text(col.name), justify="left" if col.align == "l" else "right",
                      no_wrap=not col.wrap, overflow="fold")
    for i, row in enumerate(t.rows):
        end = (i + 1) in t.sections
        rt.add_row(*[rich_text(c.text, STYLE.get(c.style, "")) for c in row], end_section=end)
    if not t.notes:
        return rt
    return Group(rt, _notes(t.notes))


def _notes(lines: list[str], style: str = ""):
    g = RTable.grid(padding=(0, 1))
    g.add_column(no_wrap=True)
    g.add_column(style=style)
    for x in lines:
        g.add_row("*", rich_text(x))
    return g


def renderables(model: dict, samples=None) -> list:
    parts: list = []
    for blk in tb.build(model, samples):
        if isinstance(blk, tb.Heading):
            if blk.level > 1:
                parts.append(Text(""))
            parts.append(rich_text(blk.text, "bold"))
        elif isinstance(blk, tb.Para):
            if blk.kind in ("scope", "note") or (blk.kind == "aa" and parts):
                parts.append(Text(""))
            parts.append(rich_text(blk.text, "bold" if blk.kind == "aa" else ""))
        elif isinstance(blk, tb.Table):
            parts += [Text(""), _table(blk)]
        elif isinstance(blk, tb.Hist):
            parts += [Text(""), Panel(Text("\n".join(rich_text(x).plain for x in blk.lines)), title=rich_text(blk.title),
                                      title_align="left", expand=False)]
        elif isinstance(blk, tb.Items):
            g = RTable.grid(padding=(0, 1))
            g.add_column(no_wrap=True)
            g.add_column(style="yellow")
            for w in blk.items:
                g.add_row(" -", rich_text(w))
            parts += [Text(""), rich_text(blk.title, "bold yellow"), g]
    return parts


def render(model: dict, samples=None, color: bool = False, width: int = 120) -> str:
    buf = io.StringIO()
    con = Console(file=buf, width=width, force_terminal=color, color_system="auto" if color else None,
                  highlight=False, soft_wrap=False, emoji=False, markup=False)
    con.print(Group(*renderables(model, samples)))
    return "\n".join(x.rstrip() for x in buf.getvalue().splitlines()) + "\n"


def print_report(model: dict, samples=None, console: Console | None = None) -> None:
    (console or Console(highlight=False, emoji=False, markup=False)).print(Group(*renderables(model, samples)))
