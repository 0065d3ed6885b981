"""Ingest one input into the store as one run: detect, parse, write, commit."""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import io
import json
import queue
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import BadInput
from ..schema import EVENTS_SCHEMA, RUNS_SCHEMA
from ..store import Store, encode_label, make_run_id
from . import detect, get
from .base import ParseStats, conform, repeat_str
from .source import TraceSource

ROWS_PER_FILE = 4_000_000


@dataclass
class IngestResult:
    run_id: str
    label: str
    source: str
    format: str
    n_lines: int
    n_events: int
    n_malformed: int
    n_lost_events: int
    lost_unknown: bool
    partial: bool
    malformed_examples: list[dict] = field(default_factory=list)
    replaced: bool = False
    #: the run's row of the run_coverage view plus its cpu_coverage rows ("cpus"), when computed
    coverage: dict | None = None
    #: things the user should know that did not stop the ingest (ignored sidecar fields, gzip trailing garbage)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        s = (f"{self.source}: run {self.run_id} [{self.format}, label {self.label!r}]: "
             f"{self.n_events} events from {self.n_lines} lines")
        s += f", {self.n_malformed} malformed"
        if self.n_malformed:
            s += " (lines " + ", ".join(str(e["line_no"]) for e in self.malformed_examples[:5])
            s += ", ...)" if self.n_malformed > 5 else ")"
        lost = f"{self.n_lost_events}" + ("+unknown" if self.lost_unknown else "")
        s += f", {lost} lost events"
        if self.partial:
            s += ", PARTIAL (input truncated)"
        if self.coverage:
            s += "; " + coverage_text(self.coverage)
        for w in self.warnings:
            s += f"; warning: {w}"
        return s


def _secs(ns) -> str:
    return f"{ns / 1e9:.6f}" if ns is not None else "?"


def coverage_text(c: dict) -> str:
    """One phrase on how much of a run is complete (a run_coverage row, cpu_coverage rows in c["cpus"])."""
    if not c.get("loss_evidence"):
        if c.get("lost_markers"):
            return (f"coverage: {c['lost_markers']} loss markers (walks overlapping a marker's per-CPU gap are "
                    f"incomplete); no CPU buffer is known to have lost its oldest events")
        return "coverage: complete (no CPU buffer is known to have lost events)"
    frac = c.get("complete_fraction")
    s = (f"coverage: {100 * frac:.1f}% complete ({_secs(c.get('complete_start_ns'))}-"
         f"{_secs(c.get('complete_end_ns'))} s of {_secs(c.get('first_ts_ns'))}-{_secs(c.get('last_ts_ns'))} s)"
         if frac is not None else "coverage: unknown")
    lossy = {str(x) for x in (c.get("lossy_cpus") or "").split(",") if x}
    ev = c["loss_evidence"]
    if ev == "per-cpu stats":
        parts = []
        for r in c.get("cpus", []):
            if str(r.get("cpu")) in lossy:
                bits = [f"overrun {r['overrun']}" if r.get("overrun") else None,
                        f"dropped {r['dropped_events']}" if r.get("dropped_events") else None]
                parts.append(f"CPU {r['cpu']} " + ", ".join(b for b in bits if b)
                             + f" (buffer from {_secs(r.get('first_ts_ns'))} s)")
        s += "; per-CPU stats: " + "; ".join(parts)
    else:
        why = {"header": "the header's entries-written exceeds entries-in-buffer",
               "buffer-started": "the trace has 'buffer started' lines (printed after an overrun)",
               "snapshot": "a function_graph trace snapshot without per-CPU stats may have overwritten",
               "perf overwrite": "perf recorded with --overwrite"}.get(ev, ev)
        firsts = ", ".join(f"CPU {r['cpu']} from {_secs(r.get('first_ts_ns'))} s" for r in c.get("cpus", [])
                           if str(r.get("cpu")) in lossy)
        s += f"; inferred: {why}; buffers start {firsts}"
        if c.get("overrun_events"):
            s += f"; {c['overrun_events']} events overwritten"
    return s + "; walks outside it are incomplete"


_DELTA_COLUMNS = {"line_no": "DELTA_BINARY_PACKED", "ts_ns": "DELTA_BINARY_PACKED"}


@functools.cache
def _dict_columns() -> list[str]:
    """Parquet leaf column paths of EVENTS_SCHEMA (``fields.key_value.key``...), less the delta-encoded ones."""
    buf = io.BytesIO()
    pq.ParquetWriter(buf, EVENTS_SCHEMA).close()  # (pq.write_table would make pyarrow import pandas)
    buf.seek(0)
    sch = pq.ParquetFile(buf).schema
    return [sch.column(i).path for i in range(len(sch)) if sch.column(i).path not in _DELTA_COLUMNS]


class _Writer:
    """Writes parsed tables as Parquet in a background thread (pyarrow releases the GIL), so that
    parsing the next chunk and compressing this one use both cores. Small tables are batched into
    row groups of at least ROW_GROUP_ROWS rows."""

    ROW_GROUP_ROWS = 1 << 17

    def __init__(self, staging: Path, run_id: str, label: str):
        self.staging = staging
        self.run_id = run_id
        self.label = label
        self.n = 0
        self.file_no = 0
        self.rows_in_file = 0
        self.w: pq.ParquetWriter | None = None
        self.first_ts = None
        self.last_ts = None
        self._const: tuple[pa.Array, pa.Array] | None = None  # see _constant_columns
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._q: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ksmtrace-parquet-writer", daemon=True)
        self._thread.start()

    def write(self, t: pa.Table) -> None:
        if t.num_rows == 0:
            return
        if self._error is not None:
            raise self._error
        t = conform(t)
        ts = t.column("ts_ns")
        mn, mx = pc.min(ts).as_py(), pc.max(ts).as_py()
        if mn is not None:
            self.first_ts = mn if self.first_ts is None else min(self.first_ts, mn)
            self.last_ts = mx if self.last_ts is None else max(self.last_ts, mx)
        self.n += t.num_rows
        self._pending.append(t)
        self._pending_rows += t.num_rows
        if self._pending_rows >= self.ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._q.put(pa.concat_tables(self._pending))
            self._pending, self._pending_rows = [], 0

    def _run(self) -> None:
        while True:
            t = self._q.get()
            if t is None:
                return
            if self._error is not None:
                continue
            try:
                self._write_now(t)
            except BaseException as e:  # reported by close()/write() in the caller's thread
                self._error = e

    def _constant_columns(self, n: int) -> tuple[pa.Array, pa.Array]:
        """run_id and label for n rows: slices of arrays built once per writer (and grown by doubling).
        Building them per row group (fill_null over pa.nulls) cost 0.2 s per 400k rows in the writer thread,
        most of it waiting for the GIL the parsers hold."""
        have = self._const
        if have is None or len(have[0]) < n:
            size = max(n, 2 * len(have[0]) if have is not None else n)
            have = self._const = (repeat_str(self.run_id, size), repeat_str(self.label, size))
        return have[0].slice(0, n), have[1].slice(0, n)

    def _write_now(self, t: pa.Table) -> None:
        n = t.num_rows
        t = pa.Table.from_arrays(
            list(self._constant_columns(n)) + t.columns,
            schema=EVENTS_SCHEMA,
        )
        if self.w is None or self.rows_in_file >= ROWS_PER_FILE:
            self._close_file()
            # min/max statistics only where readers prune on them (run, time, line, task, event):
            # the payload/fields/callchain statistics cost 13% of the write time and help no query
            # line_no/ts_ns (ascending, unique) are delta-encoded instead of trying a dictionary first:
            # 20% less write CPU and smaller files; every other column keeps dictionary encoding
            self.w = pq.ParquetWriter(self.staging / f"events-{self.file_no:05d}.parquet", EVENTS_SCHEMA,
                                      compression="zstd", compression_level=1,
                                      write_statistics=["run_id", "label", "line_no", "ts_ns", "cpu", "pid", "event"],
                                      use_dictionary=_dict_columns(), column_encoding=_DELTA_COLUMNS)
            self.file_no += 1
            self.rows_in_file = 0
        self.w.write_table(t, row_group_size=1 << 20)
        self.rows_in_file += n

    def _close_file(self) -> None:
        if self.w is not None:
            self.w.close()
            self.w = None

    def abort(self) -> None:
        """Stop the writer thread without writing what is pending (the staging dir is discarded)."""
        self._pending = []
        self._error = self._error or RuntimeError("aborted")
        self._q.put(None)
        self._thread.join()
        self._close_file()

    def close(self) -> None:
        """Flush, wait for the writer thread, and re-raise its error if it had one."""
        self._flush()
        self._q.put(None)
        self._thread.join()
        self._close_file()
        if self._error is not None:
            raise self._error


def ingest_one(path: str, store: Store, label: str, fmt: str = "auto", force: bool = False,
               partial: bool = False, on_bytes: Callable[[int], None] | None = None,
               on_size: Callable[[int | None], None] | None = None) -> IngestResult:
    """Ingest ``path`` (a file, ``-`` or a compressed file) as one run of ``store``.

    Raises ``BadInput`` (nothing is stored) when the input has no trace lines, ``StoreError`` when the
    store cannot take the run (a file, read-only, another layout). The run's derived tables (walks,
    lock_windows, lock_waits) are computed before it is published (Store.publish).
    """
    encode_label(label)  # an empty or too long label: refused before anything is read
    store.check_usable()
    src = TraceSource(path, partial=partial, on_bytes=on_bytes)
    if on_size:
        on_size(src.size)
    try:
        if fmt == "auto":
            parser_cls = detect(src.head_text, src.head, src.name)
        else:
            parser_cls = get(fmt)
        parser = parser_cls()
        stats = ParseStats()
        from .. import db

        db.warm_compute_connection()  # the views for the derived tables, defined while the input is parsed
        created_root = not store.root.exists()
        staging = None
        try:
            staging = store.new_staging()
            run_id = make_run_id(label)
            writer = _Writer(staging, run_id, label)
            try:
                for table in parser.parse(src, stats):
                    writer.write(table)
            except BaseException:
                writer.abort()
                raise
            writer.close()
            # binary formats hash the file itself, text formats the decompressed text
            sha = stats.meta.pop("sha256", None) or src.sha256
            n_lines = stats.meta.pop("n_lines", None) or getattr(src, "n_lines", 0)
            if writer.n == 0:
                what = "empty input" if src.n_bytes == 0 else "no trace lines found"
                raise BadInput(f"{src.name}: {what} (format {parser.name}); nothing stored")
            meta = dict(stats.meta)
            warnings = list(src.warnings)
            capture = read_sidecar(path, warnings)
            if capture is not None:  # provenance written by `ksmtrace capture`
                meta["capture"] = capture
                for key, ckey in (("kernel", "kernel"), ("n_cpus", "cpus"), ("preemption", "preemption")):
                    if meta.get(key) is None and capture.get(ckey) is not None:
                        meta[key] = capture[ckey]
                if capture.get("partial"):
                    meta["capture_partial"] = True
                if (pcs := per_cpu_stats(capture)) is not None:  # read by queries/02_coverage.sql
                    meta["per_cpu_stats"] = pcs
            if isinstance(pcs := meta.get("per_cpu_stats"), dict):  # the sidecar's or trace.dat's own
                # overwritten + dropped per the kernel's own counters (a LOST marker or the header counts
                # the same events: take the larger, never the sum)
                n = sum(d.get("overrun", 0) + d.get("dropped_events", 0) for d in pcs.values())
                stats.n_lost_events = max(stats.n_lost_events, n)
            row = {
                "run_id": run_id, "label": label, "source": src.name, "format": parser.name,
                "sha256": sha, "n_lines": n_lines, "n_events": writer.n,
                "n_malformed": stats.n_malformed, "n_lost_events": stats.n_lost_events,
                "first_ts_ns": writer.first_ts, "last_ts_ns": writer.last_ts,
                "ingested_at": dt.datetime.now(dt.timezone.utc),
                "tracer": meta.pop("tracer", None), "n_cpus": meta.pop("n_cpus", None),
                "kernel": meta.pop("kernel", None), "ts_unit": meta.pop("ts_unit", "ns"),
                "ts_resolution_ns": meta.pop("ts_resolution_ns", None),
                "partial": bool(src.truncated), "lost_unknown": stats.lost_unknown,
                "malformed_examples": stats.examples_json(),
                "meta": json.dumps(meta, default=str, sort_keys=True),
            }
            run_tbl = pa.Table.from_pylist([row], schema=RUNS_SCHEMA)
            # the duplicate lookup runs inside the store lock (Store.publish), never before it
            run_id, existed = store.publish(staging, run_tbl, force=force)
            staging = None
            return IngestResult(run_id, label, src.name, parser.name, n_lines, writer.n,
                                stats.n_malformed, stats.n_lost_events, stats.lost_unknown,
                                bool(src.truncated), stats.malformed_examples, replaced=existed,
                                warnings=warnings)
        finally:
            if staging is not None:
                store.discard_staging(staging)
                if created_root:
                    _remove_if_only_scaffolding(store.root)
    finally:
        src.close()


SIDECAR_SUFFIX = ".meta.json"
#: a sidecar larger than this, or nested deeper, is ignored (with a warning): provenance is small
SIDECAR_MAX_BYTES = 1 << 20
SIDECAR_MAX_DEPTH = 16
#: sidecar fields that fill run columns, with the type they must have; a field of another type is dropped
#: from the provenance with a warning (the rest of the sidecar is kept)
SIDECAR_TYPES = {"kernel": str, "cpus": int, "preemption": str, "partial": bool}


def _depth(v, limit: int) -> int:
    """Nesting depth of a JSON value, stopping at ``limit`` + 1 (iterative: no recursion on hostile input)."""
    deepest = 0
    stack = [(v, 1)]
    while stack:
        x, d = stack.pop()
        if isinstance(x, (dict, list)):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((y, d + 1) for y in (x.values() if isinstance(x, dict) else x))
    return deepest


def read_sidecar(path: str, warnings: list[str] | None = None) -> dict | None:
    """``FILE.meta.json`` beside the input (also for ``FILE.zst`` -> ``FILE.meta.json``), if any.

    Read defensively: the sidecar is optional provenance, so a bad one never stops the ingest. One that
    cannot be read, is over 1 MiB, is not a JSON object or is nested deeper than 16 levels is ignored
    whole; a known field of the wrong type (``"cpus": "many"``, ``"cpus": 99999999999``) is dropped. Each
    case adds one line to ``warnings``.
    """
    warn = warnings.append if warnings is not None else (lambda _m: None)
    if path == "-":
        return None
    p = Path(path)
    cands = [p.with_name(p.name + SIDECAR_SUFFIX)]
    if p.suffix in (".gz", ".xz", ".zst", ".bz2"):
        cands.append(p.with_name(p.stem + SIDECAR_SUFFIX))
    for c in cands:
        try:
            if not c.is_file():
                continue
            with open(c, "rb") as f:
                raw = f.read(SIDECAR_MAX_BYTES + 1)
        except OSError as e:
            warn(f"sidecar {c.name} ignored: {e.strerror or e}")
            return None
        if len(raw) > SIDECAR_MAX_BYTES:
            warn(f"sidecar {c.name} ignored: larger than {SIDECAR_MAX_BYTES} bytes")
            return None
        try:
            d = json.loads(raw.decode("utf-8"))
        except RecursionError:
            warn(f"sidecar {c.name} ignored: nested deeper than {SIDECAR_MAX_DEPTH} levels")
            return None
        except (UnicodeDecodeError, ValueError) as e:
            warn(f"sidecar {c.name} ignored: not valid JSON ({str(e)[:80]})")
            return None
        if not isinstance(d, dict):
            warn(f"sidecar {c.name} ignored: not a JSON object")
            return None
        if _depth(d, SIDECAR_MAX_DEPTH) > SIDECAR_MAX_DEPTH:
            warn(f"sidecar {c.name} ignored: nested deeper than {SIDECAR_MAX_DEPTH} levels")
            return None
        for key, typ in SIDECAR_TYPES.items():
            if key not in d or d[key] is None:
                continue
            v = d[key]
            ok = isinstance(v, typ) and not (typ is int and isinstance(v, bool))
            if ok and key == "cpus" and not 1 <= v <= (1 << 31) - 1:
                ok = False
            if not ok:
                warn(f"sidecar {c.name}: field {key!r} ignored (expected {_type_name(typ)}, got {str(v)[:40]!r})")
                del d[key]
        return d
    return None


def _type_name(typ) -> str:
    return {str: "a string", int: "a CPU count (integer)", bool: "true or false"}[typ]
_STAT_KEYS = ("entries", "overrun", "commit_overrun", "dropped_events", "read_events")


def per_cpu_stats(capture: dict) -> dict | None:
    """The sidecar's ``per_cpu_stats`` ({"<cpu>": {"overrun": int, ...}}, read from per_cpu/cpuN/stats before
    tracing stopped), with CPU keys and counts checked; None when absent or unusable."""
    raw = capture.get("per_cpu_stats")
    if not isinstance(raw, dict):
        return None
    out = {}
    for cpu, d in raw.items():
        if not str(cpu).isdigit() or not isinstance(d, dict):
            continue
        row = {k: d[k] for k in _STAT_KEYS if isinstance(d.get(k), int) and not isinstance(d.get(k), bool)
               and d[k] >= 0}
        row |= {k: d[k] for k in ("oldest_event_ts", "now_ts") if isinstance(d.get(k), str)}
        out[str(int(cpu))] = row
    return out or None


def _remove_if_only_scaffolding(root: Path) -> None:
    with contextlib.suppress(OSError):
        leftovers = {p.name for p in root.iterdir()}
        if leftovers <= {".lock", ".tmp"}:
            shutil.rmtree(root, ignore_errors=True)
