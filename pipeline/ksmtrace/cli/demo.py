"""ksmtrace demo: a thin wrapper over ksmtrace.api.demo."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def demo(
    out: Path = typer.Option(Path("ksmtrace-demo"), "--out", help="Folder for the reports and plots."),
    store: Optional[Path] = typer.Option(None, "--store", help="Keep the demo store here instead of a temporary folder."),
) -> None:
    """Ingest the bundled before/after sample traces, print the report, write the HTML."""
    from .. import api

    api.demo(out, store)


def register(app: typer.Typer) -> None:
    app.command()(demo)
