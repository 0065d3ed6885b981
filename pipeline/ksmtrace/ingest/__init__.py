"""Input formats: detection and the registry of parsers.

Each format lives in its own module and registers one ``Parser`` subclass in
``PARSERS``. ``detect()`` asks every parser to score the head of the input.
"""
from __future__ import annotations

import importlib

from ..errors import BadInput
from .base import Parser, ParseStats, conform  # noqa: F401

#: module names under ksmtrace.ingest that define parsers (import order = tie-break order)
FORMAT_MODULES = ["ftrace", "funcgraph", "perf_script", "tracecmd", "binary"]


def parsers() -> dict[str, type[Parser]]:
    out: dict[str, type[Parser]] = {}
    for mod in FORMAT_MODULES:
        m = importlib.import_module(f"{__name__}.{mod}")
        for p in m.PARSERS:
            out[p.name] = p
    return out


def format_names() -> list[str]:
    return sorted(parsers())


def detect(head_text: str, head_bytes: bytes, source_name: str = "input") -> type[Parser]:
    best, score = None, 0
    for p in parsers().values():
        s = p.sniff(head_text, head_bytes)
        if s > score:
            best, score = p, s
    if best is None:
        raise BadInput(f"{source_name}: no trace lines found (empty, binary or unknown format); "
                       f"see 'ksmtrace ingest --help' for the formats read")
    return best


def get(name: str) -> type[Parser]:
    ps = parsers()
    if name not in ps:
        raise BadInput(f"unknown format {name!r}; known: {', '.join(sorted(ps))}")
    return ps[name]
