"""What every input-format module implements, and the shared run accounting.

A format module defines one ``Parser`` subclass:

* ``name``: the ``--format`` value (``ftrace``, ``perf-script`` ...);
* ``sniff(head_text, head_bytes) -> int``: 0 (not mine) to 100 (certainly mine);
* ``parse(source, stats) -> Iterator[pa.Table]``: tables whose columns are a
  subset of ``schema.PARSED_SCHEMA``; missing columns become NULL.

Parsers count what they could not parse through ``stats.malformed(...)``, loss
markers through ``stats.lost(...)``, and put header facts into ``stats.meta``.
Never drop a line silently: every line is an event, a known non-event (header,
blank, prose outside any trace block) or a malformed line.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator

import pyarrow as pa

from ..schema import PARSED_SCHEMA
from .source import TraceSource

MAX_EXAMPLES = 20


@dataclass
class ParseStats:
    n_malformed: int = 0
    malformed_examples: list[dict] = field(default_factory=list)
    n_lost_events: int = 0
    lost_unknown: bool = False
    #: header facts: tracer, n_cpus, kernel, ts_unit, ts_resolution_ns and anything else (stored as JSON)
    meta: dict[str, Any] = field(default_factory=dict)

    def malformed(self, line_no: int, text: str, reason: str = "unparsed") -> None:
        self.n_malformed += 1
        if len(self.malformed_examples) < MAX_EXAMPLES:
            self.malformed_examples.append({"line_no": int(line_no), "text": text[:300], "reason": reason})

    def malformed_many(self, line_nos, texts, reason: str = "unparsed") -> None:
        """Vectorised variant: sequences of line numbers and texts."""
        n = len(line_nos)
        self.n_malformed += n
        room = MAX_EXAMPLES - len(self.malformed_examples)
        for ln, t in list(zip(line_nos, texts))[: max(room, 0)]:
            self.malformed_examples.append({"line_no": int(ln), "text": str(t)[:300], "reason": reason})

    def lost(self, count: int | None) -> None:
        if count is None:
            self.lost_unknown = True
        else:
            self.n_lost_events += int(count)

    def examples_json(self) -> str:
        return json.dumps(self.malformed_examples)


class Parser:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    @classmethod
    def sniff(cls, head_text: str, head_bytes: bytes) -> int:
        return 0

    def parse(self, source: TraceSource, stats: ParseStats) -> Iterator[pa.Table]:
        raise NotImplementedError


def conform(table: pa.Table) -> pa.Table:
    """Return ``table`` with exactly the PARSED_SCHEMA columns, in order, cast to their types."""
    n = table.num_rows
    cols = []
    for f in PARSED_SCHEMA:
        if f.name in table.column_names:
            col = table.column(f.name)
            if col.type != f.type:
                col = col.cast(f.type)
            cols.append(col)
        else:
            cols.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(cols, schema=PARSED_SCHEMA)
