"""Every file, section and Python name that a comment in queries/*.sql cites exists in the project."""
from __future__ import annotations

import importlib
import re

import pytest

from conftest import ROOT

SQL = sorted((ROOT / "queries").glob("*.sql"))


def _comments(path):
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if "--" in line:
            yield n, line[line.index("--") + 2:]


def _headings(md) -> list[str]:
    return [h.strip() for h in re.findall(r"^#+ (.*)$", md.read_text(), flags=re.M)]


REFS = [(f.name, n, text) for f in SQL for n, text in _comments(f)]


def test_comments_exist():
    assert len(REFS) > 200  # the parser sees the comments


@pytest.mark.parametrize("name,line,text", [r for r in REFS if re.search(r"\.(sql|md|py)\b|ksmtrace\.\w+\.", r[2])])
def test_every_reference_in_a_sql_comment_exists(name, line, text):
    where = f"queries/{name}:{line}"
    for f in re.findall(r"\b(\d\d_\w+\.sql)\b", text):
        assert (ROOT / "queries" / f).is_file(), f"{where}: {f} does not exist"
    for f in re.findall(r"([\w./-]+\.md)\b", text):
        assert (ROOT / f).is_file(), f"{where}: cites {f}, which is not a file of the project"
        heads = _headings(ROOT / f)
        rest = text.split(f, 1)[1]
        # "docs/walk-rules.md (b), (d)" or "docs/walk-rules.md, "Complete walks""
        cited = re.match(r"\s*(\(\w\)(?:,\s*\(\w\))*)", rest)
        for letter in re.findall(r"\((\w)\)", cited.group(1)) if cited else []:
            assert any(h.startswith(f"({letter})") for h in heads), f"{where}: {f} has no section ({letter})"
        for title in re.findall(r'"([^"]+)"', rest):
            assert title in heads, f"{where}: {f} has no section {title!r}"
    for f in re.findall(r"\b((?:pipeline|tests|bench)/[\w/]+\.py)\b", text):
        assert (ROOT / f).is_file(), f"{where}: {f} does not exist"
    for mod, attr in re.findall(r"\bksmtrace\.(\w+)\.(\w+)\b", text):
        assert hasattr(importlib.import_module(f"ksmtrace.{mod}"), attr), f"{where}: ksmtrace.{mod}.{attr}"


def test_walk_rules_has_a_section_per_evidence_kind():
    heads = _headings(ROOT / "docs" / "walk-rules.md")
    for letter in "abcdef":
        assert any(h.startswith(f"({letter})") for h in heads), letter
