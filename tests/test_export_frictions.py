"""Small things a new user trips over: the plain duckdb CLI runs the views, shell completion is on,
and `ksmtrace demo`'s default output folder is ignored by git."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import ROOT, run_cli

SAMPLE = ROOT / "sample_traces" / "synth-patched.counters.txt.gz"


def test_duckdb_cli_runs_the_views(tmp_path):
    """README: `ksmtrace sql --print-views > views.sql; duckdb -init views.sql`. The plain CLI (PyPI
    duckdb-cli) is not the same release as the Python module; the views must give the same rows in both."""
    exe = shutil.which("duckdb")
    if exe is None:
        pytest.skip("the duckdb CLI is not installed (pip install duckdb-cli)")
    import duckdb

    from ksmtrace import api

    store = tmp_path / "store"
    api.ingest([str(SAMPLE)], store, label="counters")
    views = tmp_path / "views.sql"
    r = run_cli("sql", "--print-views", "--store", str(store))
    assert r.code == 0, r.err
    views.write_text(r.out)
    q = ("SELECT count(*), sum(iterations), max(max_hold_ns), sum(skip_addr), count(*) FILTER (WHERE complete) "
         "FROM walks")
    p = subprocess.run([exe, "-batch", "-csv", "-noheader", "-init", str(views), "-c", q], capture_output=True,
                       text=True, cwd=tmp_path, timeout=600)
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    assert p.returncode == 0, f"duckdb CLI {version} (Python module {duckdb.__version__}): {p.stderr}"
    cli = [None if x == "" else int(x) for x in p.stdout.strip().splitlines()[-1].split(",")]
    py = [None if x is None else int(x) for x in api.sql(q, store).iloc[0].tolist()]
    assert cli == py and py[0] > 0

    # the same by reading the queries/*.sql files themselves, in name order
    script = [f"SET VARIABLE ksmtrace_store = '{store}';"] + [
        f".read {f}" for f in sorted((ROOT / "queries").glob("*.sql"))]
    p = subprocess.run([exe, "-batch", "-csv", "-noheader"], input="\n".join(script + [q + ";"]) + "\n",
                       capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert p.returncode == 0, p.stderr
    assert [None if x == "" else int(x) for x in p.stdout.strip().splitlines()[-1].split(",")] == py


def test_shell_completion_is_offered():
    r = run_cli("--help")
    assert r.code == 0
    assert "--install-completion" in r.out and "--show-completion" in r.out
    # and it completes: the shell's request for `ksmtrace exp<TAB>`
    import os
    import sys

    env = dict(os.environ, COMP_WORDS="ksmtrace exp", COMP_CWORD="1", _KSMTRACE_COMPLETE="complete_bash",
               PYTHONPATH=str(ROOT / "pipeline"))
    exe = shutil.which("ksmtrace")
    cmd = [exe] if exe else [sys.executable, "-c", "import sys; sys.argv[0] = 'ksmtrace'; "
                                                   "from ksmtrace.cli import entry; entry()"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert p.stdout.split() == ["export"], (p.stdout, p.stderr)


def test_demo_output_is_ignored_by_git(tmp_path):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    p = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", "ksmtrace-demo/report.html"])
    assert p.returncode == 0, ".gitignore does not cover ksmtrace demo's default --out ksmtrace-demo/"
    from ksmtrace.cli.demo import demo
    import inspect

    assert str(inspect.signature(demo).parameters["out"].default.default) == "ksmtrace-demo"
