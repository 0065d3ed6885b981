"""Plain ASCII, at most 76 columns: ready to paste into a commit message or a reply on LKML.

Lays out the blocks of :mod:`ksmtrace.report.tables`: a table whose LKML columns fit in 76
columns is printed as columns, a wider one as one record per row (``metric: verdict (p...)``
with the other cells below). Every text is :func:`ksmtrace.safe_text.terminal` first (no raw
control character), then ASCII ('?' for other characters).
"""
from __future__ import annotations

import textwrap

from . import fmt
from . import tables as tb

WIDTH = 76


def _wrap(text: str, indent: str = "", first: str | None = None) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=first if first is not None else indent,
                         subsequent_indent=indent, break_long_words=True, break_on_hyphens=False) or [""]


def _ascii(s: str) -> str:
    return s.encode("ascii", "replace").decode("ascii")


def _e(s) -> str:
    return _ascii(tb.esc(s, "lkml"))


def _columns(t: tb.Table) -> list[str] | None:
    idx = [i for i, c in enumerate(t.columns) if c.lkml]
    head = [_e(t.columns[i].name) for i in idx]
    rows = [[_e(r[i].text) for i in idx] for r in t.rows]
    widths = [max([len(h)] + [len(r[j]) for r in rows]) for j, h in enumerate(head)]
    total = sum(widths) + 2 * (len(widths) - 1)
    if total > WIDTH:
        return None
    def line(cells):
        out = []
        for j, (i, x) in enumerate(zip(idx, cells)):
            out.append(x.ljust(widths[j]) if t.columns[i].align == "l" else x.rjust(widths[j]))
        return "  ".join(out).rstrip()
    return [line(head)] + [line(r) for r in rows]


def _records(t: tb.Table) -> list[str]:
    """One record per row: 'first cell: last cell (other cells)', wrapped. A first cell left blank to group
    rows under the one above (the runs table's side) is the one above: a record stands on its own."""
    out = []
    prev = ""
    for r in t.rows:
        first, last = _e(r[0].text) or prev, _e(r[-1].text)
        prev = first
        rest = "; ".join(f"{_e(c.name)} {_e(x.text)}" for c, x in zip(t.columns[1:-1], r[1:-1]) if x.text)
        out += _wrap(f"{first}: {_e(t.columns[-1].name)} {last}", indent="      ", first="  ")
        out += _wrap(rest, indent="      ", first="      ")
    return out


def render(model: dict) -> str:
    L: list[str] = []
    for blk in tb.build(model):
        if isinstance(blk, tb.Heading):
            if blk.level > 1:
                L += ["", _e(blk.text) + ":"]
            else:
                L += _wrap(_e(blk.text) + ".")
        elif isinstance(blk, tb.Para):
            if blk.kind == "scope":
                L.append("")
            L += _wrap(_e(blk.text), indent="  " if blk.kind == "note" else "")
        elif isinstance(blk, tb.Table):
            L += [""] + _wrap(_e(blk.title) + ":")
            L += _columns(blk) or _records(blk)
            for n in blk.notes:
                L += _wrap(_e(n), indent="  ", first="* ")
        elif isinstance(blk, tb.Items):
            L += ["", _e(blk.title) + ":"]
            for w in blk.items:
                L += _wrap(_e(w), indent="  ", first="- ")
    L.append("")
    L += _wrap(f"(ksmtrace report {'--aa ' + _e(model['aa']['label']) + ' ' if fmt.is_aa(model) else ''}"
               f"--format lkml)")
    return "\n".join(_ascii(x.rstrip()) for x in L) + "\n"
