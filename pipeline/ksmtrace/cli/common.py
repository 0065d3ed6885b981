"""Options shared by several commands."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..store import Store

StoreOpt = typer.Option(None, "--store", help="Store directory [default: $KSMTRACE_STORE, else ./ksmtrace-data].",
                        show_default=False)
FormatOpt = typer.Option("table", "--format", "-f", help="Output format: table, csv or json.")


def store_of(path: Optional[Path]) -> Store:
    return Store(path)


def check_format(fmt: str, allowed=("table", "csv", "json")) -> str:
    if fmt not in allowed:
        raise typer.BadParameter(f"{fmt!r} is not one of {', '.join(allowed)}", param_hint="--format")
    return fmt
