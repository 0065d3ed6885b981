"""The ``ksmtrace`` command: a thin layer over ksmtrace.api and friends.

Each command group lives in its own module with a ``register(app)`` function.
"""
from __future__ import annotations

import importlib
import sys

import typer

from ..errors import KsmtraceError

app = typer.Typer(
    name="ksmtrace",
    help="Measure rmap_walk_ksm() walks and anon_vma lock holds from ftrace/perf/trace-cmd traces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

#: command modules, in the order their commands appear in --help
COMMAND_MODULES = ["store_cmds", "synth_cmd", "report_cmd", "capture_cmds", "vm_cmd", "ab_cmd", "demo"]

for _m in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"{__name__}.{_m}")
    except ModuleNotFoundError as _e:
        if _e.name == f"{__name__}.{_m}":
            continue
        raise
    _mod.register(app)


class _Terminated(BaseException):
    pass


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv: list[str] | None = None) -> int:
    import signal

    if threading_main():
        signal.signal(signal.SIGTERM, _on_sigterm)  # unwind (and clean up staging) like Ctrl-C
    try:
        rv = app(args=argv, standalone_mode=False)
        if rv == 130:  # typer turns KeyboardInterrupt into a returned exit code
            print("ksmtrace: interrupted", file=sys.stderr)
        return rv if isinstance(rv, int) else 0
    except KsmtraceError as e:
        print(f"ksmtrace: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("ksmtrace: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("ksmtrace: terminated", file=sys.stderr)
        return 143
    except SystemExit as e:  # typer/click exit paths
        return int(e.code or 0) if isinstance(e.code, int) else 1
    except Exception as e:  # usage errors from typer's bundled click; SQL errors
        import duckdb
        from typer._click import exceptions as cx

        if isinstance(e, duckdb.Error):
            print(f"ksmtrace: error: SQL: {' '.join(str(e).split())}", file=sys.stderr)
            return 2

        if isinstance(e, cx.ClickException):
            print(f"ksmtrace: error: {e.format_message()}", file=sys.stderr)
            return e.exit_code
        if isinstance(e, typer.Abort):
            print("ksmtrace: aborted", file=sys.stderr)
            return 130
        if isinstance(e, typer.Exit):
            return e.exit_code
        raise


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def entry() -> None:
    sys.exit(main())
