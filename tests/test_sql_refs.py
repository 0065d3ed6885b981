"""Every file, section and Python name that a comment in queries/*.sql, or a comment or string in the Python
of pipeline/, tests/ and bench/, cites exists in the project (a rule the code relies on is written in the project:
docs/walk-rules.md or the SQL file itself, never only in material outside it)."""
from __future__ import annotations

import importlib
import io
import re
import tokenize

import pytest

from conftest import ROOT

SQL = sorted((ROOT / "queries").glob("*.sql"))


def _comments(path):
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if "--" in line:
            yield n, line[line.index("--") + 2:]


def _python_texts(path):
    """(line, text) of every comment and string literal (docstrings, messages) of a Python file, line by line;
    a literal that is just a file name ("report.md") is data, not a citation."""
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type in (tokenize.COMMENT, tokenize.STRING) or tok.type == getattr(tokenize, "FSTRING_MIDDLE", -1):
            if tok.type != tokenize.COMMENT and re.fullmatch(r"""[rbfu]*['"]*[\w./{}-]+['"]*""", tok.string):
                continue
            for i, line in enumerate(tok.string.splitlines()):
                yield tok.start[0] + i, line


def _headings(md) -> list[str]:
    return [h.strip() for h in re.findall(r"^#+ (.*)$", md.read_text(), flags=re.M)]


REFS = [(f"queries/{f.name}", n, text) for f in SQL for n, text in _comments(f)]
PY = sorted(p for d in ("pipeline", "tests", "bench") for p in (ROOT / d).rglob("*.py")
            if p != ROOT / "tests" / "test_sql_refs.py")  # this file's wrong citations are deliberate
PY_REFS = [(str(p.relative_to(ROOT)), n, text) for p in PY for n, text in _python_texts(p)]
_CITES = re.compile(r"\.(sql|md)\b|\b(?:pipeline|tests|bench)/[\w/]+\.py\b")
#: the parsers' module docstrings still cite a reference file outside the project; their owner mends them
_NOT_YET = {"pipeline/ksmtrace/ingest/" + f for f in ("perf_script.py", "binary.py", "funcgraph.py", "tracecmd.py")}


def check_references(where: str, text: str) -> None:
    """Every queries/ file, Markdown file (with the sections cited right after it), project .py file and
    ``ksmtrace.module.name`` that ``text`` names exists."""
    for f in re.findall(r"\b(\d\d_\w+\.sql)\b", text):
        assert (ROOT / "queries" / f).is_file(), f"{where}: {f} does not exist"
    for f in re.findall(r"([\w./-]+\.md)\b", text):
        assert (ROOT / f).is_file(), f"{where}: cites {f}, which is not a file of the project"
        heads = _headings(ROOT / f)
        rest = text.split(f, 1)[1]
        # "docs/walk-rules.md (b), (d)", "docs/walk-rules.md (a)-(f)" or 'docs/walk-rules.md, "Complete walks"'
        cited = re.match(r"\s*(\(\w\)(?:(?:,\s*|-)\(\w\))*)", rest)
        for letter in re.findall(r"\((\w)\)", cited.group(1)) if cited else []:
            assert any(h.startswith(f"({letter})") for h in heads), f"{where}: {f} has no section ({letter})"
        for title in re.findall(r'^\s*,\s*"([^"]+)"', rest):
            assert title in heads, f"{where}: {f} has no section {title!r}"
    for f in re.findall(r"\b((?:pipeline|tests|bench)/[\w/]+\.py)\b", text):
        assert (ROOT / f).is_file(), f"{where}: {f} does not exist"
    for mod, attr in re.findall(r"\bksmtrace\.(\w+)\.(\w+)\b", text):
        assert hasattr(importlib.import_module(f"ksmtrace.{mod}"), attr), f"{where}: ksmtrace.{mod}.{attr}"


def test_comments_exist():
    assert len(REFS) > 200  # the parser sees the comments
    assert len(PY_REFS) > 5000 and any("docs/walk-rules.md" in t for _, _, t in PY_REFS)


def test_the_check_finds_a_wrong_citation():
    with pytest.raises(AssertionError, match="kernel.md, which is not a file"):
        check_references("x.py:1", "the cost model (kernel.md §1.3)")
    with pytest.raises(AssertionError, match="has no section 'Nowhere'"):
        check_references("x.py:1", 'see docs/walk-rules.md, "Nowhere"')
    with pytest.raises(AssertionError, match=r"has no section \(z\)"):
        check_references("x.py:1", "see docs/walk-rules.md (a)-(z)")
    with pytest.raises(AssertionError, match="99_none.sql does not exist"):
        check_references("x.py:1", "as 99_none.sql does")


@pytest.mark.parametrize("name,line,text", [r for r in REFS if re.search(r"\.(sql|md|py)\b|ksmtrace\.\w+\.", r[2])])
def test_every_reference_in_a_sql_comment_exists(name, line, text):
    check_references(f"{name}:{line}", text)


@pytest.mark.parametrize("path", sorted({r[0] for r in PY_REFS if _CITES.search(r[2])}))
def test_every_reference_in_python_comments_and_strings_exists(path):
    if path in _NOT_YET:
        pytest.xfail("cites a reference file outside the project (module docstring of a parser; see _NOT_YET)")
    for name, line, text in PY_REFS:
        if name == path and _CITES.search(text):
            check_references(f"{name}:{line}", text)


def test_walk_rules_has_a_section_per_evidence_kind():
    heads = _headings(ROOT / "docs" / "walk-rules.md")
    for letter in "abcdef":
        assert any(h.startswith(f"({letter})") for h in heads), letter
