"""The canonical schemas every ingestor produces and every query reads.

One row of ``events`` is one line (or one multi-line record) of a trace, whatever
the input format.  Columns a format cannot fill are NULL.  The same columns are
documented, for SQL users, in ``queries/01_events.sql``; keep both in step.
"""
from __future__ import annotations

import pyarrow as pa

#: One frame of a callchain (perf ``-g``) or kernel stack (ftrace ``<stack trace>``).
FRAME = pa.struct(
    [
        ("addr", pa.string()),  # address as printed (hex, no 0x), NULL when not printed
        ("sym", pa.string()),  # symbol, e.g. "rmap_walk_ksm"; "[unknown]" kept verbatim
        ("off", pa.string()),  # offset as printed, e.g. "0x121" or "0x121/0x1a0"; NULL if absent
        ("dso", pa.string()),  # DSO, e.g. "[kernel.kallsyms]"; NULL if absent
    ]
)

#: Columns every parser must produce (run_id and label are added by the store).
PARSED_FIELDS: list[pa.Field] = [
    pa.field("line_no", pa.int64(), nullable=False),  # 1-based line number of the record's first line
    pa.field("ts_ns", pa.int64()),  # timestamp, exact integer ns (µs inputs end in 000); raw counter clocks: the raw value
    pa.field("cpu", pa.int32()),  # CPU the record was logged on
    pa.field("pid", pa.int32()),  # thread id as the tracer prints it
    pa.field("tgid", pa.int32()),  # thread group id when printed (record-tgid, perf pid/tid)
    pa.field("comm", pa.string()),  # task name as printed ("<...>" kept)
    pa.field("flags", pa.string()),  # raw irq/preempt flag column (e.g. "d..1."), NULL when absent
    pa.field("system", pa.string()),  # event system when the producer prints it (perf "migrate:set_migration_pte")
    pa.field("event", pa.string()),  # event name without system; non-event lines with meaning: __lost_events, __buffer_started, __task_switch
    pa.field("payload", pa.string()),  # the text after "event: ", verbatim (right-stripped)
    pa.field("fields", pa.map_(pa.string(), pa.string())),  # key=value fields of the payload (values as text)
    pa.field("func", pa.string()),  # function name: function tracer, function_graph, probes
    pa.field("parent", pa.string()),  # caller: function tracer "<-parent", kretprobe "<caller+off/size <- func>"
    pa.field("depth", pa.int32()),  # function_graph nesting depth (0 = outermost)
    pa.field("kind", pa.string()),  # function_graph: entry | exit | leaf | comment | irq_enter | irq_exit; probes: entry | return
    pa.field("duration_ns", pa.int64()),  # function_graph: printed duration (leaf and exit lines)
    pa.field("retval", pa.string()),  # function_graph retval as printed ("0x1", "-22"); NULL when absent
    pa.field("callchain", pa.list_(FRAME)),  # stack/callchain, innermost frame first
]

#: The events table as stored: run identity first, then the parsed columns.
EVENTS_SCHEMA = pa.schema(
    [pa.field("run_id", pa.string(), nullable=False), pa.field("label", pa.string(), nullable=False)]
    + PARSED_FIELDS
)

PARSED_SCHEMA = pa.schema(PARSED_FIELDS)

#: One row per ingested input file.
RUNS_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),  # unique id: <label slug>-<10 random hex digits>
        pa.field("label", pa.string(), nullable=False),  # user label, e.g. "before"; several runs may share it
        pa.field("source", pa.string()),  # path as given ("-" for stdin)
        pa.field("format", pa.string()),  # detected or forced input format
        pa.field("sha256", pa.string()),  # sha256 of the (decompressed) input bytes
        pa.field("n_lines", pa.int64()),  # lines read
        pa.field("n_events", pa.int64()),  # rows written to events
        pa.field("n_malformed", pa.int64()),  # lines that looked like trace lines but did not parse
        pa.field("n_lost_events", pa.int64()),  # sum of LOST counts (+ overwritten entries from the header)
        pa.field("first_ts_ns", pa.int64()),
        pa.field("last_ts_ns", pa.int64()),
        pa.field("ingested_at", pa.timestamp("us", tz="UTC")),
        pa.field("tracer", pa.string()),  # "# tracer: X", or the producing tool (perf, trace-cmd)
        pa.field("n_cpus", pa.int32()),  # from "#P:N", "cpus=N", perf "nrcpus online"
        pa.field("kernel", pa.string()),  # kernel release when the input tells it
        pa.field("ts_unit", pa.string()),  # "ns" (µs or ns resolution, stored as ns) or "counter"
        pa.field("ts_resolution_ns", pa.int64()),  # 1000 for sec.usec inputs, 1 for ns inputs
        pa.field("partial", pa.bool_()),  # input was truncated and ingested with --partial
        pa.field("lost_unknown", pa.bool_()),  # a loss marker without a count was seen
        pa.field("malformed_examples", pa.string()),  # JSON list of {"line_no", "text"} (first 20)
        pa.field("meta", pa.string()),  # JSON object: header facts (entries, options, converter, perf header ...)
    ]
)
