"""The README, --help texts and the SQL column docs stay true."""
from __future__ import annotations

import re

from conftest import ROOT, run_cli_inproc


def test_readme_schema_section_matches_sql_docs():
    from ksmtrace.docs import readme_section, schema_markdown

    section = readme_section((ROOT / "README.md").read_text())
    assert section is not None, "README.md lacks the schema markers"
    assert section == schema_markdown(), "README schema is stale: run `python -m ksmtrace.docs --update`"


def test_readme_quick_start_commands():
    lines = (ROOT / "README.md").read_text().splitlines()[:30]
    text = "\n".join(lines)
    assert "ksmtrace demo" in text
    assert "python -m pytest tests" in text
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest tests" in ci


def test_every_command_has_help_and_is_in_readme():
    r = run_cli_inproc("--help")
    assert r.code == 0
    cmds = re.findall(r"^  (\w+)\s{2,}", r.out.split("Commands:", 1)[1], flags=re.M)
    assert {"ingest", "runs", "sql"} <= set(cmds)
    readme = (ROOT / "README.md").read_text()
    for c in cmds:
        assert f"ksmtrace {c}" in readme, f"README does not document `ksmtrace {c}`"
        h = run_cli_inproc(c, "--help")
        assert h.code == 0 and "Usage" in h.out
