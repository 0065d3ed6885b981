#!/usr/bin/env python3
"""Benchmark: walk reconstruction (walks, lock_windows, lock_waits) on a ~10-million-event store.

It times the views that compute the derived tables from the events (_walks_from_events,
_lock_windows_from_events, _lock_waits_from_events: what ingest runs once per run), materialised over the
whole store, and then the public views, which read the stored result.

The store is built directly as Parquet (no text parsing: this times the SQL only). Each run mixes every
evidence kind, in realistic proportions and shapes:

* function_graph walks (unpatched split layout: windows of a trylock, 1 + V iterator calls, a callback,
  up_read, cond_resched; some slow-path windows, some bailouts), ~55 % of the rows
* kprobe/fprobe walks with windows and iterator returns, ~15 %
* perf callchain migrate events (set/remove_migration_pte with callchains, mm_migrate_pages breakers), ~12 %
* rmap tracepoint (v5) walks with per-window counter lines inside, ~8 %
* standalone counter lines (trace_printk), ~4 %
* lock contention begin/end pairs with callchains, ~6 %
* a few __lost_events markers

Usage:  python bench/bench_walks.py [--events 10000000] [--runs 2] [--threads N] [--store DIR] [--keep]
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "pipeline"))

from ksmtrace import db  # noqa: E402
from ksmtrace.schema import EVENTS_SCHEMA, RUNS_SCHEMA  # noqa: E402
from ksmtrace.store import Store, make_run_id  # noqa: E402

COLS = [f.name for f in EVENTS_SCHEMA if f.name not in ("run_id", "label", "line_no")]


def fr(*syms):
    return [{"addr": f"ffffffff81{i:06x}", "sym": s, "off": "0x40", "dso": "[kernel.kallsyms]"} for i, s in enumerate(syms)]


def row(dt_ns, event, **kw):
    r = {c: None for c in COLS}
    r.update(event=event, **kw)
    r["ts_ns"] = dt_ns
    if isinstance(r.get("fields"), dict):
        if r.get("payload") is None:  # as the parsers give it: the text after "event: "
            r["payload"] = " ".join(f"{k}={v}" for k, v in r["fields"].items())
        r["fields"] = list(r["fields"].items())
    return r


def fg_walk(windows: int, iters: int, slow_every: int = 0, bailout: bool = False) -> list[dict]:
    """One function_graph walk: relative times in ns (µs-quantised like tracefs abstime)."""
    rows, t = [], 0

    def leaf(func, dur, depth=1, ret=None):
        nonlocal t
        t += 1000
        rows.append(row(t, "funcgraph_entry", func=func, kind="leaf", depth=depth, duration_ns=dur, retval=ret))

    rows.append(row(t, "funcgraph_entry", func="rmap_walk_ksm", kind="entry", depth=0,
                    parent="try_to_migrate+0x8e/0xc0"))
    for w in range(windows):
        if bailout:
            leaf("down_read_trylock", 180, ret="0x0")
            break
        if slow_every and w % slow_every == slow_every - 1:
            leaf("down_read_trylock", 175, ret="0x0")
            t += 1000
            rows.append(row(t, "funcgraph_entry", func="down_read", kind="entry", depth=1))
            leaf("rwsem_down_read_slowpath", 7950321, depth=2)
            t += 7951000
            rows.append(row(t, "funcgraph_exit", func="down_read", kind="exit", depth=1, duration_ns=7951002))
        else:
            leaf("down_read_trylock", 191, ret="0x1")
        leaf("anon_vma_interval_tree_iter_first", 410, ret="0xffff888100000000")
        for i in range(iters):
            leaf("anon_vma_interval_tree_iter_next", 160, ret="0xffff888100000040")
        leaf("try_to_migrate_one", 2410, ret="0x1")
        leaf("anon_vma_interval_tree_iter_next", 170, ret="0x0")
        leaf("up_read", 150)
        leaf("__cond_resched", 120)
    t += 1000
    rows.append(row(t, "funcgraph_exit", func="rmap_walk_ksm", kind="exit", depth=0, duration_ns=t))
    return rows


def kprobe_walk(windows: int, iters: int) -> list[dict]:
    rows, t = [], 0

    def p(name, loc, target=None, **f):
        nonlocal t
        t += 1000
        payload = (f"({loc} <- {target})" if target else f"({loc})") + "".join(f" {k}={v}" for k, v in f.items())
        sym = (target or loc).split("+")[0]
        rows.append(row(t, name, payload=payload, func=sym, kind="return" if target else "entry",
                        parent=loc if target else None, fields=f or None))

    p("walk", "rmap_walk_ksm+0x4/0x1a0", folio="0xffffea0004a35e40")
    for w in range(windows):
        p("ksm_item", "rmap_walk_ksm+0x9a/0x1a0", addr=f"0x7f00000{w:02x}000")
        p("rd_try_ret", "rmap_walk_ksm+0xb1/0x1a0", "down_read_trylock", ret="1")
        for i in range(iters + 1):
            p("it_ret", "rmap_walk_ksm+0xc0/0x1a0", "anon_vma_interval_tree_iter_next", ret="0xffff888100000040",
              vm_start=f"0x7f00000{i:02x}000", vm_end=f"0x7f00000{i + 1:02x}000")
        p("mig_one", "try_to_migrate_one+0x4/0x6f0")
        p("it_ret", "rmap_walk_ksm+0xc0/0x1a0", "anon_vma_interval_tree_iter_next", ret="0x0")
        p("rd_up", "up_read+0x4/0x80")
    p("walk_ret", "remove_migration_ptes+0x5a/0x90", "rmap_walk_ksm")
    return rows


def perf_walk(n: int, set_pte: bool) -> list[dict]:
    rows, t = [], 0
    ev = "set_migration_pte" if set_pte else "remove_migration_pte"
    cc = fr("try_to_migrate_one" if set_pte else "remove_migration_pte", "rmap_walk_ksm",
            "try_to_migrate" if set_pte else "remove_migration_ptes", "migrate_pages_batch", "migrate_pages")
    pte = "e7fff7ffdae58e00" if set_pte else "8000000128d38025"
    for i in range(n):
        t += 3417
        rows.append(row(t, ev, system="migrate", callchain=cc,
                        fields={"addr": f"{0x5643534d7000 + i * 4096:x}", "pte": pte, "order": "0"}))
    t += 1500
    rows.append(row(t, "mm_migrate_pages", system="migrate", fields={"nr_succeeded": "1", "mode": "MIGRATE_SYNC"}))
    return rows


def tp_walk(windows: int) -> list[dict]:
    f = {"folio": "000000004c2a9e1b", "rwc": "00000000d3f1a07c", "page_type": "ksm", "locked": "false"}
    rows = [row(0, "rmap_walk_start", fields=dict(f))]
    t = 0
    for w in range(windows):
        t += 7000
        rows.append(row(t, "rmap_walk_ksm", payload="hold_ns=6000 iterations=40 skip_addr=39 skip_mm=0 rmap_one=1",
                        fields={"hold_ns": "6000", "iterations": "40", "skip_addr": "39", "skip_mm": "0",
                                "rmap_one": "1"}))
    rows.append(row(t + 2000, "rmap_walk_end", fields=dict(f)))
    return rows


def counter_line() -> list[dict]:
    return [row(0, "rmap_walk_ksm", payload="Time_ms=0.221 Nr_iteration_total=20228 Skip_addr_out_of_range=20227 "
                "Skip_mm_mismatch=0", fields={"Time_ms": "0.221", "Nr_iteration_total": "20228",
                                              "Skip_addr_out_of_range": "20227", "Skip_mm_mismatch": "0"})]


def lock_pair(walker: bool) -> list[dict]:
    addr = "0xffff88811c022d70"
    cc = (fr("rwsem_down_read_slowpath", "down_read", "rmap_walk_ksm", "try_to_migrate") if walker else
          fr("rwsem_down_write_slowpath", "down_write", "vma_prepare", "__split_vma"))
    return [row(0, "contention_begin", system="lock", callchain=cc,
                fields={"lock_addr": addr, "flags": "READ" if walker else "WRITE"}),
            row(25000, "contention_end", system="lock", fields={"lock_addr": addr, "ret": "0"})]


def tile(template: list[dict], count: int, pids: np.ndarray, comm: str, t0: int,
         rng: np.random.Generator) -> pa.Table:
    """Repeat a template `count` times. Walk k runs on pid pids[k % P]; one pid's walks follow each other
    (never overlap: a task runs one walk at a time), different pids run concurrently."""
    base = pa.Table.from_pylist(template, schema=pa.schema([f for f in EVENTS_SCHEMA if f.name in COLS]))
    m = base.num_rows
    period = int(np.nanmax(np.asarray(base.column("ts_ns").to_numpy(zero_copy_only=False), dtype=float))) + 60_000
    P = len(pids)
    idx = np.tile(np.arange(m), count)
    t = base.take(pa.array(idx))
    k = np.repeat(np.arange(count, dtype=np.int64), m)
    start = t0 + (np.arange(count, dtype=np.int64) // P) * period + (np.arange(count) % P) * 7_000 \
        + rng.integers(0, 40, count, dtype=np.int64) * 1000
    ts = np.asarray(t.column("ts_ns").to_numpy(zero_copy_only=False), dtype=np.int64) + start[k]
    pid = pids[k % P].astype(np.int32)
    cpu = (pid % 2).astype(np.int32)
    t = t.set_column(t.schema.get_field_index("ts_ns"), "ts_ns", pa.array(ts, pa.int64()))
    t = t.set_column(t.schema.get_field_index("pid"), "pid", pa.array(pid, pa.int32()))
    t = t.set_column(t.schema.get_field_index("cpu"), "cpu", pa.array(cpu, pa.int32()))
    t = t.set_column(t.schema.get_field_index("comm"), "comm", pa.array(np.full(len(ts), comm, dtype=object),
                                                                         pa.string()))
    return t


def build_run(n_events: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    plan = [  # (template, share of rows, pids, comm)
        (fg_walk(24, 40, slow_every=7), 0.45, np.arange(10396, 10404), "ksm_rma"),
        (fg_walk(1, 0, bailout=True), 0.005, np.arange(80, 82), "kswapd0"),
        (fg_walk(8, 2), 0.10, np.arange(33, 37), "kcompac"),
        (kprobe_walk(12, 20), 0.15, np.arange(20000, 20008), "ksm_probe"),
        (perf_walk(24, True), 0.06, np.arange(9000, 9008), "ksm_rmap_repro"),
        (perf_walk(24, False), 0.06, np.arange(9100, 9108), "ksm_rmap_repro"),
        (tp_walk(16), 0.08, np.arange(467, 475), "rmap_benchmark"),
        (counter_line(), 0.04, np.arange(30, 32), "kcompactd0"),
        (lock_pair(True), 0.03, np.arange(11216, 11224), "ksm_rmap_repro"),
        (lock_pair(False), 0.03, np.arange(300, 308), "mprotect"),
    ]
    parts = []
    for tmpl, share, pids, comm in plan:
        count = max(1, int(n_events * share / len(tmpl)))
        parts.append(tile(tmpl, count, pids, comm, 1_000_000_000 + int(rng.integers(0, 1000)) * 1000, rng))
    t = pa.concat_tables(parts)
    # a few loss markers (no timestamp, as tracefs prints them)
    order = np.argsort(np.asarray(t.column("ts_ns").to_numpy(), dtype=np.int64), kind="stable")
    t = t.take(pa.array(order))
    n = t.num_rows
    lost_at = np.sort(rng.choice(n, 5, replace=False))
    lost = pa.Table.from_pylist([row(None, "__lost_events", cpu=0, fields={"lost": "17"}) for _ in lost_at],
                                schema=t.schema)
    # interleave: take rows with the markers inserted before positions lost_at
    pieces, prev = [], 0
    for i, at in enumerate(lost_at):
        pieces += [t.slice(prev, at - prev), lost.slice(i, 1)]
        prev = at
    pieces.append(t.slice(prev))
    t = pa.concat_tables(pieces)
    return t


def write_store(root: Path, n_events: int, runs: int) -> Store:
    store = Store(root)
    store.ensure()
    for r in range(runs):
        label = "before" if r % 2 == 0 else "after"
        t = build_run(n_events // runs, seed=r)
        run_id = make_run_id(label)
        n = t.num_rows
        t = t.append_column("line_no", pa.array(np.arange(1, n + 1, dtype=np.int64)))
        t = t.append_column("run_id", pa.array(np.full(n, run_id, dtype=object), pa.string()))
        t = t.append_column("label", pa.array(np.full(n, label, dtype=object), pa.string()))
        t = t.select(EVENTS_SCHEMA.names).cast(EVENTS_SCHEMA)
        staging = store.new_staging()
        pq.write_table(t, staging / "events-00000.parquet", row_group_size=1 << 20)
        ts = t.column("ts_ns")
        run = {c.name: None for c in RUNS_SCHEMA}
        run.update(run_id=run_id, label=label, source=f"bench-{r}.txt", format="bench",
                   sha256=hashlib.sha256(f"{run_id}".encode()).hexdigest(), n_lines=n, n_events=n, n_malformed=0,
                   n_lost_events=85, first_ts_ns=pa.compute.min(ts).as_py(), last_ts_ns=pa.compute.max(ts).as_py(),
                   ingested_at=dt.datetime.now(dt.timezone.utc), ts_unit="ns", ts_resolution_ns=1000,
                   partial=False, lost_unknown=False)
        store.commit(staging, pa.Table.from_pylist([run], schema=RUNS_SCHEMA))
    return store


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--store", type=Path, default=None, help="reuse/keep the store here")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="time each view N times, report the best (noisy VMs)")
    a = ap.parse_args()
    tmp = None
    root = a.store
    if root is None:
        tmp = Path(tempfile.mkdtemp(prefix="ksmtrace-bench-walks-"))
        root = tmp / "store"
    store = Store(root)
    if not store.exists():
        t0 = time.perf_counter()
        write_store(root, a.events, a.runs)
        print(f"built store {root} in {time.perf_counter() - t0:.1f} s")
    con = db.connect(store, threads=a.threads)
    n = con.execute("SELECT count(*) FROM events").fetchone()[0]
    print(f"events: {n:,} in {len(store.runs())} runs; threads: "
          f"{con.execute('SELECT current_setting(' + repr('threads') + ')').fetchone()[0]}")
    total = 0.0
    for v in ("_walks_from_events", "_lock_windows_from_events", "_lock_waits_from_events"):
        times = []
        for _ in range(max(1, a.repeat)):
            t0 = time.perf_counter()
            con.execute(f"CREATE OR REPLACE TEMP TABLE bench_{v} AS SELECT * FROM {v}")
            times.append(time.perf_counter() - t0)
        el = min(times)
        total += el
        rows = con.execute(f"SELECT count(*) FROM bench_{v}").fetchone()[0]
        extra = f"  (runs: {', '.join(f'{x:.2f}' for x in times)})" if len(times) > 1 else ""
        print(f"  {v:26s} {rows:>10,} rows  {el:6.2f} s{extra}")
    print(f"total {total:.2f} s for {n:,} events ({n / total / 1e6:.2f} M events/s)")
    print(con.execute("SELECT evidence, count(*), sum(complete::INT) FROM bench__walks_from_events GROUP BY 1 "
                      "ORDER BY 1").fetchall())
    for v in ("walks", "lock_windows", "lock_waits"):  # the stored tables (computed at ingest)
        t0 = time.perf_counter()
        rows = con.execute(f"SELECT count(*) FROM (SELECT * FROM {v})").fetchone()[0]
        print(f"  stored {v:13s} {rows:>10,} rows  {time.perf_counter() - t0:6.2f} s")
    print("command: python bench/bench_walks.py " + " ".join(sys.argv[1:]))
    con.close()
    if tmp and not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
