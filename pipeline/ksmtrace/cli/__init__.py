"""The ``ksmtrace`` command: a thin layer over ksmtrace.api and friends.

This package's ``__init__`` is kept light on purpose: the console script imports it first, and
:func:`entry` installs Ctrl-C handling *before* the heavy imports (typer, duckdb, pandas, pyarrow:
most of a second) of :mod:`ksmtrace.cli.commands`, where the commands are defined. A Ctrl-C during
start-up prints one line and exits 130; nothing has been written at that point.
"""
from __future__ import annotations

import os
import signal
import sys

_LAZY = ("app", "main", "COMMAND_MODULES")


def _interrupted_during_startup(signum, frame):  # pragma: no cover - exercised in a subprocess
    try:
        os.write(2, b"ksmtrace: interrupted\n")
    finally:
        os._exit(130)


def entry() -> None:
    """The console script: ``ksmtrace ARGS``."""
    signal.signal(signal.SIGINT, _interrupted_during_startup)
    try:
        from .commands import main

        # from here on Ctrl-C unwinds as KeyboardInterrupt (so a staged run is cleaned up)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        rc = main()
    except KeyboardInterrupt:
        print("ksmtrace: interrupted", file=sys.stderr)
        rc = 130
    sys.exit(rc)


def __getattr__(name: str):
    if name in _LAZY:
        from . import commands

        return getattr(commands, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
