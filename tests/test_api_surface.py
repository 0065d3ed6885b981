"""One API under the CLI: every command has its function in ksmtrace.api with the command's parameters,
a row in the README's Commands table, and a --help that works."""
from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest
import typer.main

from ksmtrace import api
from ksmtrace.cli import app

README = Path(__file__).resolve().parent.parent / "README.md"

#: command -> its API function, where the name differs (ingest of several files, in parallel or not)
API_NAME = {"ingest": "ingest_many"}
#: options that only choose how the CLI shows a result (no meaning in a Python call)
PRESENTATION = {"ingest": {"progress"}, "runs": {"fmt"}, "sql": {"fmt"}}


def _commands():
    group = typer.main.get_command(app)
    return sorted(group.commands.items())


def _parameters(func) -> set[str]:
    """The parameter names a call of ``func`` takes; ``**options`` read from the dataclass it builds."""
    sig = inspect.signature(func)
    names = {n for n, p in sig.parameters.items() if p.kind is not p.VAR_KEYWORD}
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        from ksmtrace.ab import AbOptions

        assert func is api.ab, f"api.{func.__name__} takes **options: name the dataclass they fill here"
        names |= {f.name for f in dataclasses.fields(AbOptions)}
    return names


def test_the_commands_are_found():
    names = {n for n, _ in _commands()}
    assert {"ingest", "runs", "sql", "rebuild", "report", "export", "synth", "repro", "doctor", "capture", "vm",
            "ab", "demo"} <= names


@pytest.mark.parametrize("name,cmd", _commands(), ids=[n for n, _ in _commands()])
def test_command_has_its_api_function(name, cmd):
    func = getattr(api, API_NAME.get(name, name), None)
    assert callable(func), f"ksmtrace {name}: no ksmtrace.api.{API_NAME.get(name, name)}"
    cli = {p.name for p in cmd.params if p.name not in ("help",)} - PRESENTATION.get(name, set())
    missing = cli - _parameters(func)
    assert not missing, f"ksmtrace {name}: api.{func.__name__} lacks the parameters {sorted(missing)}"


@pytest.mark.parametrize("name", [n for n, _ in _commands()])
def test_command_has_its_readme_row(name):
    rows = [ln for ln in README.read_text().splitlines() if ln.startswith("| `ksmtrace ")]
    assert any(re.match(rf"\| `ksmtrace {re.escape(name)}\b", ln) for ln in rows), \
        f"ksmtrace {name}: no row in the README's Commands table"


@pytest.mark.parametrize("name", [n for n, _ in _commands()])
def test_command_help_works(name, capsys):
    from ksmtrace.cli import main

    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^Usage: .* {re.escape(name)} ", out, re.M) and "--help" in out
