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
    from ..safe_text import terminal

    for p in api.report(before, after, aa=aa, store=store_of(store), page_type=page_type, fmt=fmt, out=out,
                        benchstat=benchstat, plots=plots):
        print(f"wrote {terminal(p)}", file=sys.stderr)


def register(app: typer.Typer) -> None:
    app.command()(report)
