"""ksmtrace export: the walks on a timeline, for the Perfetto UI."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .. import api
from .common import StoreOpt, store_of


def export(
    fmt: str = typer.Option(..., "--format", "-f", help="perfetto (protobuf, integer ns) or chrome-json "
                            "(Chrome trace event JSON, exact µs decimals)."),
    out: Path = typer.Option(..., "--out", "-o", help="File to write (e.g. walks.pftrace or walks.json)."),
    label: Optional[str] = typer.Option(None, "--label", "-l", help="Only the runs of this label."),
    run: Optional[str] = typer.Option(None, "--run", help="Only this run (runs.run_id)."),
    store: Optional[Path] = StoreOpt,
) -> None:
    """Write walks, lock windows and lock waits as a trace for the Perfetto UI (ui.perfetto.dev, "Open trace file").

    One track per task that walked or waited: a slice per walk, a child slice per lock window (hold,
    iterations, rmap_one, skips as arguments), lock waits as slices with a flow from the window that held the
    lock when one is known, and counter tracks where the evidence has per-window counts.
    """
    res = api.export(fmt, out, store=store_of(store), label=label, run=run)
    print(res.summary())
    print("Open it in the Perfetto UI: https://ui.perfetto.dev -> 'Open trace file'.")


def register(app: typer.Typer) -> None:
    app.command()(export)
