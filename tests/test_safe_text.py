"""Untrusted trace text: no control character survives for a terminal, no markup for Markdown or HTML."""
from hypothesis import given, strategies as st

from ksmtrace import safe_text


@given(st.text())
def test_terminal_has_no_control_characters(s):
    out = safe_text.terminal(s)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in out)
    assert "\u202e" not in out


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Zl", "Zp"))))
def test_terminal_leaves_printable_text_alone(s):
    assert safe_text.terminal(s) == s


def test_rich_text_is_never_markup():
    from rich.console import Console

    c = Console(record=True, width=200, color_system=None)
    c.print(safe_text.rich_text("# tracer: [/i] value [x] \x1b[1A"))
    assert c.export_text().rstrip("\n") == "# tracer: [/i] value [x] \\x1b[1A"


@given(st.text())
def test_markdown_and_html_carry_no_raw_tags(s):
    for out in (safe_text.markdown(s), safe_text.html(s)):
        assert "<" not in out and ">" not in out


def test_markdown_neutralises_links_and_emphasis():
    md = safe_text.markdown("[x](javascript:alert(1)) *b* a|b <img onerror=1>")
    assert md == "\\[x\\](javascript:alert(1)) \\*b\\* a\\|b &lt;img onerror=1&gt;"
