"""Shared fixtures: a temporary store, the public corpus, and a CLI runner."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "pipeline"))

#: the public trace corpus that sits beside the checkout (../shared/corpus); tests skip without it
CORPUS = Path(os.environ.get("KSMTRACE_CORPUS", ROOT.parent / "shared" / "corpus"))


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"public trace corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture
def store_dir(tmp_path) -> Path:
    return tmp_path / "store"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_cli(*args: str, stdin: bytes | None = None, env: dict | None = None) -> CliResult:
    """Run ``ksmtrace ARGS`` in a subprocess (so exit codes and stderr are real)."""
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT / "pipeline") + os.pathsep + e.get("PYTHONPATH", "")
    e["COLUMNS"] = "200"
    if env:
        e.update(env)
    p = subprocess.run([sys.executable, "-m", "ksmtrace", *args], input=stdin, capture_output=True, env=e,
                       timeout=600)
    return CliResult(p.returncode, p.stdout.decode(), p.stderr.decode())


def run_cli_inproc(*args: str) -> CliResult:
    """Faster in-process variant for tests that do not need a real process."""
    from ksmtrace.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli():
    return run_cli
