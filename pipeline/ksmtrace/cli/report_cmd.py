"""ksmtrace report: before/after comparison of walks, lock holds and lock waits."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from .common import StoreOpt, store_of


def report(
    before: Optional[str] = typer.Option(None, "--before", "-b", help="Label of the runs before the change."),
    after: Optional[str] = typer.Option(None, "--after", "-a", help="Label of the runs after the change."),
    aa: Optional[str] = typer.Option(None, "--aa", help="A/A check instead: split this label in two at random "
                                     "(seeded: its runs; one run: its walks, balanced per caller) and compare the halves; "
                                     "identical code should read ~. Excludes --before/--after."),
    store: Optional[Path] = StoreOpt,
    page_type: str = typer.Option("ksm", "--page-type", help="Walks to compare: ksm, anon, file or all."),
    fmt: str = typer.Option("text", "--format", "-f", help="text, lkml (76-column ASCII for a commit message), "
                            "markdown, html (one self-contained file) or json."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the report here instead of stdout "
                                       "(text/lkml/markdown: figures go beside it as PNG)."),
    benchstat: Optional[Path] = typer.Option(None, "--benchstat", help="Also write run-level metrics in Go "
                                             "benchmark format (compare: benchstat -col label FILE)."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Write the figures (PNG) into this directory."),
) -> None:
    """Compare the walks of two labels: the original patch table, distributions, tests and figures.

    Each label may hold several runs; with at least two runs per side the run (boot) is the unit of every test and CI, else the walk (never pooled windows) and the verdict reaches that one boot. Statistics use complete walks only; cells the evidence cannot give read n/a. The p-values of one report are adjusted with Holm-Bonferroni, and the verdicts use the adjusted p.
    """  # noqa: E501 (one line per paragraph: typer keeps the line breaks)
    from .. import api
    from ..errors import KsmtraceError, os_error_message
    from ..safe_text import terminal
    from ..report import FORMATS, PAGE_TYPES, build_report, write
    from ..report.model import check_modes

    if fmt not in FORMATS:
        raise KsmtraceError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if page_type not in PAGE_TYPES:
        raise KsmtraceError(f"--page-type {page_type!r} is not one of {', '.join(PAGE_TYPES)}")
    check_modes(before, after, aa)
    # the report reads the public views only; the store's content is not ours: a read-only connection
    with api.connect(store_of(store), views="public", read_only=True) as con:
        rep = build_report(con, before, after, page_type, aa=aa)
    try:
        written = write(rep, fmt, out=out, plots_dir=plots, benchstat=benchstat)
    except OSError as e:  # disk full, read-only, name too long ...: name the file (or the files) asked for
        asked = ", ".join(str(p) for p in (out, benchstat, plots) if p is not None) or "stdout"
        raise KsmtraceError(f"report not written: {os_error_message(e, asked)}") from None
    for p in written:
        print(f"wrote {terminal(p)}", file=sys.stderr)


def register(app: typer.Typer) -> None:
    app.command()(report)
