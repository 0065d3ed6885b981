"""Helpers for the walk-view tests: build tiny canonical events tables and commit them as runs.

Times are given as the trace prints them (``"458.203501"`` seconds with µs, ``"0.180"`` µs durations) and
converted exactly with Decimal, as the parsers do.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ksmtrace import db
from ksmtrace.schema import EVENTS_SCHEMA, RUNS_SCHEMA
from ksmtrace.store import Store, make_run_id

COLS = [f.name for f in EVENTS_SCHEMA]


def sec(ts: str) -> int:
    """'458.203501' -> 458203501000 (exact)."""
    return int(Decimal(ts) * 1_000_000_000)


def us(d: str) -> int:
    """'0.180' (µs) -> 180 ns."""
    return int(Decimal(d) * 1000)


def ev(ts: str | int | None, event: str, pid: int = 100, cpu: int = 1, comm: str = "ksm_rmap", **kw) -> dict:
    row = {c: None for c in COLS}
    row.update(ts_ns=sec(ts) if isinstance(ts, str) else ts, event=event, pid=pid, cpu=cpu, comm=comm)
    if "fields" in kw and isinstance(kw["fields"], dict):
        kw["fields"] = list(kw["fields"].items())
    row.update(kw)
    return row


def frames(*syms: str) -> list[dict]:
    return [{"addr": f"ffffffff8{i:07x}", "sym": s, "off": "0x10", "dso": "[kernel.kallsyms]"} for i, s in enumerate(syms)]


def fg(spec: str, pid: int = 10396, comm: str = "ksm_rma", first_line: int = 1) -> list[dict]:
    """Compact function_graph rows, one per line: ``ts cpu depth kind func [dur_us] [retval] [parent]``.

    kind is entry / leaf / exit; use ``-`` for an absent value.
    """
    rows = []
    for i, line in enumerate(l for l in spec.strip().splitlines() if l.strip()):
        p = line.split()
        p += ["-"] * (8 - len(p))
        ts, cpu, depth, kind, func, dur, ret, parent = p[:8]
        rows.append(ev(ts, "funcgraph_exit" if kind == "exit" else "funcgraph_entry", pid=pid, cpu=int(cpu),
                       comm=comm, depth=int(depth), kind=kind, func=None if func == "-" else func,
                       duration_ns=None if dur == "-" else us(dur), retval=None if ret == "-" else ret,
                       parent=None if parent == "-" else parent, line_no=first_line + i))
    return rows


def number_lines(rows: list[dict], start: int = 1) -> list[dict]:
    for i, r in enumerate(rows):
        if r.get("line_no") is None:
            r["line_no"] = start + i
    return rows


def add_run(store: Store, label: str, rows: list[dict], **run: object) -> str:
    """run: further runs columns (meta=JSON text, tracer=...)."""
    store.ensure()
    rows = number_lines([dict(r) for r in rows])
    run_id = make_run_id(label)
    for r in rows:
        r["run_id"], r["label"] = run_id, label
    t = pa.Table.from_pylist(rows, schema=EVENTS_SCHEMA)
    staging = store.new_staging()
    pq.write_table(t, staging / "events-00000.parquet")
    ts = [r["ts_ns"] for r in rows if r["ts_ns"] is not None]
    extra = run
    run = {c.name: None for c in RUNS_SCHEMA}
    run.update(run_id=run_id, label=label, source=f"{label}.txt", format="test",
               sha256=hashlib.sha256(uuid.uuid4().bytes).hexdigest(), n_lines=len(rows), n_events=len(rows),
               n_malformed=0, n_lost_events=0, first_ts_ns=min(ts) if ts else None,
               last_ts_ns=max(ts) if ts else None, ingested_at=dt.datetime.now(dt.timezone.utc),
               ts_unit="ns", ts_resolution_ns=1000, partial=False, lost_unknown=False)
    run.update(extra)
    store.commit(staging, pa.Table.from_pylist([run], schema=RUNS_SCHEMA))
    return run_id


_CONS: dict[str, object] = {}


def empty_store_connection(tmp_path_factory, name: str):
    """A connection with every view of queries/ over a new, empty store: the module-scoped ``con`` fixture of
    the SQL tests that feed the views rows of their own (a temp table ``events`` shadows the view)."""
    store = Store(tmp_path_factory.mktemp(name) / "store")
    store.ensure()
    return db.connect(store)


def connection(store: Store):
    """One connection per store (defining the views costs ~1 s; tests reuse it)."""
    key = str(Path(store.root).resolve())
    if key not in _CONS:
        if len(_CONS) > 4:
            for c in _CONS.values():
                c.close()
            _CONS.clear()
        _CONS[key] = db.connect(store)
    return _CONS[key]


def query(store: Store, sql: str) -> list[dict]:
    cur = connection(store).execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def one_run(tmp_path: Path, rows: list[dict], label: str = "t") -> tuple[Store, str]:
    store = Store(tmp_path / "store")
    rid = add_run(store, label, rows)
    return store, rid
