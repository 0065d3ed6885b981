"""The ``ksmtrace`` commands and the error net around them.

Each command group lives in its own module with a ``register(app)`` function. :func:`main` turns every
error a user can meet (bad input, an OSError anywhere, a SQL error, Ctrl-C) into one line on stderr
and an exit code; trace text quoted in that line is shown with control characters escaped.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import sys

import typer

from ..errors import KsmtraceError, os_error_message

app = typer.Typer(
    name="ksmtrace",
    help="Measure rmap_walk_ksm() walks and anon_vma lock holds from ftrace/perf/trace-cmd traces.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

#: command modules, in the order their commands appear in --help
COMMAND_MODULES = ["store_cmds", "synth_cmd", "report_cmd", "export_cmd", "capture_cmds", "vm_cmd", "ab_cmd", "demo"]

for _m in COMMAND_MODULES:
    importlib.import_module(f"{__package__}.{_m}").register(app)


class _Terminated(BaseException):
    pass


def _on_sigterm(signum, frame):
    raise _Terminated()


def say(msg: str) -> None:
    """One line on stderr: ``ksmtrace: MSG`` with control characters (ESC, CR, newline) shown escaped."""
    from ..safe_text import terminal

    with contextlib.suppress(OSError, ValueError, AttributeError):  # stderr itself full or closed: nothing to do
        print(f"ksmtrace: {terminal(msg)}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run one command; every error becomes one line on stderr and an exit code (2 for errors, 130 for
    Ctrl-C, 143 for SIGTERM, 70 for an internal error), never a traceback (``KSMTRACE_DEBUG=1`` re-raises
    unexpected errors to show one)."""
    import signal

    if threading_main():
        signal.signal(signal.SIGTERM, _on_sigterm)  # unwind (and clean up staging) like Ctrl-C
    stdout = sys.stdout
    sys.stdout = _NamedStdout(stdout)
    try:
        return _main(argv)
    finally:
        sys.stdout = stdout


def _main(argv: list[str] | None) -> int:
    try:
        rv = app(args=argv, standalone_mode=False)
        sys.stdout.flush()  # a failed write of the output is an error now, not noise at exit
        if rv == 130:  # typer turns KeyboardInterrupt into a returned exit code
            say("interrupted")
        return rv if isinstance(rv, int) else 0
    except KsmtraceError as e:
        say(f"error: {e}")
        return e.exit_code
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except _Terminated:
        say("terminated")
        return 143
    except SystemExit as e:  # typer/click exit paths
        return int(e.code or 0) if isinstance(e.code, int) else 1
    except BrokenPipeError:  # `ksmtrace sql ... | head`: the reader left; nothing to say
        _quiet_stdout()
        return 141
    except OSError as e:  # the net: any OS error (permission, read-only, disk full, name too long ...)
        say(f"error: {os_error_message(e)}")
        _settle_stdout()
        return 2
    except MemoryError:
        say("error: out of memory")
        return 2
    except Exception as e:  # usage errors (typer.TyperException, base of its vendored click's); SQL errors
        import duckdb

        # Ctrl-C inside a DuckDB query: duckdb raises InterruptException, or from its result conversion a
        # plain RuntimeError("Query interrupted")
        if isinstance(e, duckdb.InterruptException) or (isinstance(e, RuntimeError)
                                                         and str(e).strip() == "Query interrupted"):
            say("interrupted")
            return 130
        if isinstance(e, duckdb.Error):
            say(f"error: SQL: {' '.join(str(e).split())}")
            return 2
        if isinstance(e, typer.TyperException):
            say(f"error: {e.format_message()}")
            return e.exit_code
        if isinstance(e, typer.Abort):
            say("aborted")
            return 130
        if isinstance(e, typer.Exit):
            return e.exit_code
        if os.environ.get("KSMTRACE_DEBUG"):
            raise
        say(f"internal error (a bug, please report it; KSMTRACE_DEBUG=1 shows the traceback): "
            f"{type(e).__name__}: {' '.join(str(e).split())}")
        return 70


class _NamedStdout:
    """``sys.stdout`` whose OS errors name it (``stdout: No space left on device`` for ``> /dev/full``)."""

    def __init__(self, f):
        self._f = f

    def _named(self, e: OSError) -> OSError:
        return OSError(e.errno, e.strerror or " ".join(str(e).split()), "stdout")

    def write(self, s):
        try:
            return self._f.write(s)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise self._named(e) from None

    def flush(self):
        try:
            return self._f.flush()
        except BrokenPipeError:
            raise
        except OSError as e:
            raise self._named(e) from None

    def __getattr__(self, name):
        return getattr(self._f, name)


def _settle_stdout() -> None:
    """After an error, make sure the interpreter's final flush of stdout cannot fail again (and print an
    "Exception ignored" trace): a stdout that does not flush is pointed at /dev/null."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        _quiet_stdout()


def _quiet_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush does not fail again."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def entry() -> None:
    sys.exit(main())
