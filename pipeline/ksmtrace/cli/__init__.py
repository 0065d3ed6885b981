"""The ``ksmtrace`` command: a thin layer over ksmtrace.api and friends.

This package's ``__init__`` is kept light on purpose: the console script imports it first, and
:func:`entry` installs Ctrl-C and SIGTERM handling *before* the heavy imports (typer, duckdb, pandas,
pyarrow: most of a second) of :mod:`ksmtrace.cli.commands`, where the commands are defined. A Ctrl-C
(SIGTERM) during start-up prints one line and exits 130 (143); nothing has been written at that point.
"""
from __future__ import annotations

import contextlib
import gc
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


def prepare_process() -> None:
    """Process settings of the command, made before numpy is imported: OpenBLAS (numpy's BLAS) starts one
    spinning thread per core at import, ~0.1 s of CPU taken from the parsers on a 2-core machine, for
    linear algebra ksmtrace never does at a size where threads help (OPENBLAS_NUM_THREADS set by the user
    is kept)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@contextlib.contextmanager
def imports_without_gc():
    """Import the heavy modules with the cyclic garbage collector off, then freeze what they made: importing
    typer, duckdb, pyarrow, polars and pandas allocates a few hundred thousand objects and no garbage cycles,
    and the collections that allocation triggers (each scanning every object made so far) were a quarter of
    the start-up (0.2 s of 0.85 s). Frozen objects are never scanned again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def entry() -> None:
    """The console script: ``ksmtrace ARGS``."""
    signal.signal(signal.SIGINT, _stopped_during_startup)
    signal.signal(signal.SIGTERM, _stopped_during_startup)
    prepare_process()
    try:
        with imports_without_gc():
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
