"""Trace text is untrusted in every report format (issue 9 items 2-3 for the report renderers).

Labels, comm, caller, kernel, tracer and file names carry rich markup (``[/i]``, ``[x]``), terminal
escape sequences (cursor up, clear line, OSC) and Markdown/HTML injections. The report must not
crash, must show ``[x]`` literally, must never write a raw control character, and must escape
Markdown and HTML.
"""
from __future__ import annotations

import io
import re

import duckdb
import pytest
from rich.console import Console

from ksmtrace.report import build_report, render
import report_fakes as td
from ksmtrace.report.render_text import print_report

ESC = "\x1b[1A\x1b[2K"  # cursor up, erase line: could overwrite a report line with fake numbers
OSC = "\x1b]0;pwned\x07"
MARKUP = "[/i][x][bold red]"
SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(1)">'
LINK = "[x](javascript:alert(1))"
EVIL = f"{MARKUP}{ESC}{OSC}{SCRIPT}{IMG}{LINK}\r\u202e"


def _hostile(aa: bool = False):
    b = td.gen_side("before" + ("" if aa else MARKUP), walks_per_run=20, seed=1)
    a = td.gen_side("after" + ESC, walks_per_run=20, walk_median_ns=1e6, seed=2)
    for side in (b, a):
        side["walks"]["comm"] = "kcomp" + ESC
        side["walks"]["caller"] = "try_to_migrate" + LINK
        side["runs"]["tracer"] = "[/i]"
        side["runs"]["kernel"] = "6.1" + EVIL
        side["runs"]["source"] = f"/tmp/{SCRIPT}{ESC}.txt"
    waits = td.gen_waits(b["runs"].label[0], b["runs"].run_id[0], n=6)
    waits["comm"] = "java" + EVIL
    waits["caller"] = "vma_prepare" + IMG
    d = td.combine(b, a)
    con = duckdb.connect()
    td.create_tables(con, d["walks"], d["windows"], waits, d["runs"])
    labels = (b["runs"].label[0], a["runs"].label[0])
    return con, labels


@pytest.fixture(scope="module")
def hostile():
    con, (lb, la) = _hostile()
    return build_report(con, lb, la)


CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]")


@pytest.mark.parametrize("fmt", ["text", "lkml", "markdown", "html"])
def test_no_raw_control_character_in_any_format(hostile, fmt):
    out = render(hostile, fmt)
    assert not CONTROL.search(out), (fmt, CONTROL.search(out))
    assert "\\x1b[1A" in out or "\\\\x1b" in out or "\\x1b\\[1A" in out  # shown escaped, not dropped


@pytest.mark.parametrize("fmt", ["text", "lkml"])
def test_markup_is_data_in_text_and_lkml(hostile, fmt):
    out = render(hostile, fmt)
    assert "[/i]" in out and "[x]" in out  # shown literally, not read as markup, not dropped
    assert "before[/i][x][bold red]" in out


def test_terminal_print_path_keeps_markup_literal(hostile):
    buf = io.StringIO()
    print_report(hostile.model, hostile.samples, Console(file=buf, width=200, force_terminal=True,
                                                         color_system="truecolor"))
    out = buf.getvalue()
    assert "[/i]" in out and "[x]" in out
    # the only ESC bytes are rich's own SGR colour codes (ESC [ ... m); none from the data
    assert not re.search(r"\x1b(?!\[[0-9;]*m)", out)


def test_markdown_escapes_html_and_links(hostile):
    md = render(hostile, "markdown", images={"walk_duration_cdf": "r-walk_duration_cdf.png"})
    assert "<script" not in md and "<img" not in md
    assert not re.search(r"(?<!\\)\]\(javascript:", md)  # the bracket is escaped: no link can form
    assert not re.search(r"(?<!\\)\[x(?<!\\)\]", md)
    assert "&lt;script&gt;" in md and "\\[x\\]" in md
    # table structure intact: no row gets an extra cell from a '|' in data
    for line in md.splitlines():
        if line.startswith("| metric | side |"):
            assert line.count("|") == 11


def test_html_escapes_everything(hostile):
    h = render(hostile, "html", plots={})
    assert "<script>alert" not in h and "<img src=x" not in h and 'onerror="' not in h
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in h
    # the embedded JSON model cannot close its <script> element
    js = re.search(r'<script type="application/json" id="ksmtrace-model">(.*?)</script>', h, re.S).group(1)
    assert "<" not in js and ">" not in js


def test_aa_on_a_hostile_label():
    con, (lb, _) = _hostile(aa=True)
    for fmt in ("text", "lkml", "markdown", "html"):
        out = render(build_report(con, aa=lb), fmt, **({"plots": {}} if fmt == "html" else {}))
        assert not CONTROL.search(out), fmt


def test_cli_report_with_markup_in_a_run_header(tmp_path):
    """`# tracer: [/i]` in a real trace header: report (text, to a terminal-less stdout) works."""
    from conftest import run_cli

    trace = ("# tracer: [/i]\n#\n"
             "      kcompactd0-33      [000] ...1.  3000.000273: rmap_walk_ksm: Time_ms=221.104 "
             "Nr_iteration_total=20228 Skip_addr_out_of_range=20227 Skip_mm_mismatch=0\n")
    st = str(tmp_path / "st")
    for lab in ("b[x]", "a\x1b[2K"):
        p = tmp_path / f"{len(lab)}.txt"
        p.write_text(trace)
        r = run_cli("ingest", "--store", st, "--label", lab, str(p))
        assert r.code == 0, r.err
    for fmt in ("text", "lkml", "markdown"):
        r = run_cli("report", "--store", st, "--before", "b[x]", "--after", "a\x1b[2K", "--format", fmt)
        assert r.code == 0 and "Traceback" not in r.err, r.err
        assert "\x1b" not in r.out and "b[x]" in r.out.replace("\\[", "[").replace("\\]", "]")
