"""pip install gives a working ksmtrace that finds its SQL; pyproject lists every package."""
from __future__ import annotations

import os
import shutil
import subprocess
import tomllib

from conftest import ROOT


def test_pyproject_lists_every_package():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(cfg["tool"]["setuptools"]["packages"])
    found = {"ksmtrace"} | {
        "ksmtrace." + str(p.parent.relative_to(ROOT / "pipeline" / "ksmtrace")).replace(os.sep, ".")
        for p in (ROOT / "pipeline" / "ksmtrace").rglob("__init__.py") if p.parent.name != "ksmtrace"}
    assert found | {"ksmtrace.queries", "ksmtrace.sample_traces"} == listed


def test_installed_command_finds_sql(tmp_path):
    exe = shutil.which("ksmtrace")
    if exe is None:
        import pytest

        pytest.skip("ksmtrace is not installed on PATH")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([exe, "sql", "--print-views", "--store", str(tmp_path)], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "CREATE OR REPLACE VIEW events" in p.stdout
    assert "CREATE OR REPLACE VIEW runs" in p.stdout
