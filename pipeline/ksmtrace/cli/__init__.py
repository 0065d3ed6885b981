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
    context_settings={"help_option_names": ["-h", "--help"]},
)

#: command modules, in the order their commands appear in --help
COMMAND_MODULES = ["store_cmds", "synth_cmd", "report_cmd", "capture_cmds", "demo"]

for _m in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"{__name__}.{_m}")
    except ModuleNotFoundError as _e:
        if _e.name == f"{__name__}.{_m}":
            continue
        raise
    _mod.register(app)


def main(argv: list[str] | None = None) -> int:
    try:
        app(args=argv, standalone_mode=False)
        return 0
    except KsmtraceError as e:
        print(f"ksmtrace: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("ksmtrace: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # typer/click exit paths
        return int(e.code or 0) if isinstance(e.code, int) else 1
    except Exception as e:  # click usage errors and the like
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            return e.exit_code
        if isinstance(e, click.exceptions.Abort):
            print("ksmtrace: aborted", file=sys.stderr)
            return 130
        if isinstance(e, click.exceptions.Exit):
            return e.exit_code
        raise


def entry() -> None:
    sys.exit(main())
