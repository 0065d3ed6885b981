"""The ``ksmtrace`` command: a thin layer over ksmtrace.api and friends.

This package's ``__init__`` is kept light on purpose: the console script imports it first, and
:func:`entry` installs Ctrl-C and SIGTERM handling *before* the heavy imports (typer, duckdb, pandas,
pyarrow: most of a second) of :mod:`ksmtrace.cli.commands`, where the commands are defined. A Ctrl-C
(SIGTERM) during start-up prints one line and exits 130 (143); nothing has been written at that point.
"""
from __future__ import annotations

import os
import signal
import sys

_LAZY = ("app", "main", "COMMAND_MODULES")


def _stopped_during_startup(signum, frame):  # pragma: no cover - exercised in a subprocess
    """Ctrl-C or SIGTERM before the commands are loaded: nothing is written yet, so just say so and exit."""
    try:
        os.write(2, b"ksmtrace: interrupted\n" if signum == signal.SIGINT else b"ksmtrace: terminated\n")
    finally:
        os._exit(128 + signum)


def entry() -> None:
    """The console script: ``ksmtrace ARGS``."""
    signal.signal(signal.SIGINT, _stopped_during_startup)
    signal.signal(signal.SIGTERM, _stopped_during_startup)
    try:
        from .commands import main

        # from here on Ctrl-C unwinds as KeyboardInterrupt (so a staged run is cleaned up); main() makes
        # SIGTERM do the same
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        rc = main()
    except KeyboardInterrupt:
        print("ksmtrace: interrupted", file=sys.stderr)
        rc = 130
    # the command is done and its output written: a Ctrl-C now, while the interpreter shuts down (thread
    # pools of duckdb and pyarrow), would kill it silently with SIGINT instead of the exit code given here
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if rc == 130:
        _forget_embedded_interrupt()
    sys.exit(rc)


def _forget_embedded_interrupt() -> None:
    """Make the exit code 130 stick after a Ctrl-C that was caught.

    CPython sets a process-wide flag when a KeyboardInterrupt leaves code run through ``PyRun_String``
    (extension modules run snippets that way while they import, e.g. Cython's registration with
    collections.abc) and, at exit, kills the process with SIGINT whatever code ``sys.exit`` gave, even
    though the interrupt was caught and handled here. Each ``PyRun_*`` call resets that flag first, so
    one run of an empty statement clears it. Nothing to do on interpreters without ``ctypes.pythonapi``."""
    try:
        import ctypes

        ctypes.pythonapi.PyRun_SimpleString(b"pass")
    except Exception:  # noqa: BLE001 - not CPython, or no ctypes: the exit code may read as SIGINT
        pass


def __getattr__(name: str):
    if name in _LAZY:
        from . import commands

        return getattr(commands, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
