"""Trace text is untrusted: helpers that make it safe for each place it is shown.

Every string that came from a trace, a file name, a sidecar or a label goes through one of these
before it reaches a terminal, a Markdown file or an HTML page:

- :func:`terminal` shows control characters (ESC, CR, BEL, C1 controls, DEL, bidi overrides) as visible
  escapes (``\\x1b``, ``\\r``, ``\\u202e``) so no byte of a trace can move the cursor, clear a line or
  recolour a report. Tabs become ``\\t``; a newline becomes ``\\n`` (one value, one line).
- :func:`rich_text` is :func:`terminal` wrapped as a :class:`rich.text.Text`, so rich never reads
  the value as console markup (``[/i]``, ``[x]`` stay literally as they are).
- :func:`markdown` additionally backslash-escapes Markdown punctuation and HTML-escapes ``<``, ``>``
  and ``&``, so ``<script>``, ``<img onerror>`` and ``[x](javascript:)`` render as text.
- :func:`html` is :func:`html.escape` of the terminal-safe text (quotes included).
"""
from __future__ import annotations

import html as _html
import re

# C0 controls but none kept, DEL, C1 controls, and the Unicode bidi/format controls that reorder text.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ufeff]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\x1b": "\\x1b"}


def _escape_control(m: re.Match) -> str:
    ch = m.group(0)
    if ch in _NAMED:
        return _NAMED[ch]
    o = ord(ch)
    return f"\\x{o:02x}" if o <= 0xFF else f"\\u{o:04x}"


def terminal(value) -> str:
    """``str(value)`` with every control character shown as a visible escape."""
    s = "" if value is None else str(value)
    return _CONTROL.sub(_escape_control, s) if _CONTROL.search(s) else s


def rich_text(value, style: str | None = None):
    """A rich ``Text`` holding :func:`terminal` of value: never parsed as console markup."""
    from rich.text import Text

    return Text(terminal(value), style=style or "")


# Inline Markdown punctuation: emphasis, code, links/images (no link without brackets), table pipes,
# strikethrough. '<', '>' and '&' are HTML-escaped instead, so raw HTML and autolinks never form.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def markdown(value) -> str:
    """Text for a Markdown table cell or paragraph: controls shown, markup and HTML neutralised."""
    s = terminal(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", s)


def html(value) -> str:
    """Text for HTML element content or a quoted attribute."""
    return _html.escape(terminal(value), quote=True)
