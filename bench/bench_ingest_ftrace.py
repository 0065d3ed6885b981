#!/usr/bin/env python3
"""Benchmark: ftrace event text ingest vs a naive line-by-line Python ``re`` parser.

Generates a tracefs ``trace`` file (5-flag layout, header) of realistic tracepoint lines
(sched_switch/sched_wakeup, migrate set/remove_migration_pte, ksm_*, lock contention_*,
mm_migrate_pages), then in ONE run times

1. a naive parser: one ``re`` match per line, the same key=value split, written to Parquet
   with the same schema (what a quick script would do);
2. the real ingest, ``ksmtrace.ingest.run.ingest_one`` into a temporary store, in a child
   process whose peak RSS is read from ``getrusage(RUSAGE_CHILDREN)``.

    python bench/bench_ingest_ftrace.py --size-mb 200
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import re
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pipeline"))

TASKS = [("ksm_rmap_repro", 10396), ("ksmd", 37), ("kcompactd0", 33), ("my prog-x", 14875), ("<idle>", 0),
         ("kworker/1:2", 4711)]
FLAGS = [".....", "...1.", "d..2.", "dn.3.", "d.h1.", "..s2."]


def _payload(rnd: random.Random) -> tuple[str, str]:
    r = rnd.random()
    if r < 0.30:
        return "set_migration_pte", (f"addr={rnd.getrandbits(44):x}, pte={rnd.getrandbits(64):016x} order=0")
    if r < 0.45:
        return "remove_migration_pte", (f"addr={rnd.getrandbits(44):x}, pte={rnd.getrandbits(64):016x} order=0")
    if r < 0.55:
        return "contention_begin", f"{rnd.getrandbits(32):016x} (flags={rnd.choice(['READ', 'WRITE', 'SPIN'])})"
    if r < 0.65:
        return "contention_end", f"{rnd.getrandbits(32):016x} (ret={rnd.choice([0, 0, 0, -4])})"
    if r < 0.75:
        return "sched_switch", ("prev_comm=ksm_rmap_repro prev_pid=10396 prev_prio=120 prev_state=R+ ==> "
                                f"next_comm=ksmd next_pid=37 next_prio={rnd.randrange(100, 140)}")
    if r < 0.82:
        return "sched_wakeup", f"comm=my prog-x pid={rnd.randrange(1, 99999)} prio=120 target_cpu=001"
    if r < 0.88:
        return "ksm_merge_with_ksm_page", (f"{rnd.choice(['', 'ksm '])}pfn {rnd.randrange(1 << 21)} rmap_item "
                                           f"{rnd.getrandbits(32):016x} mm {rnd.getrandbits(32):016x} error 0")
    if r < 0.92:
        return "ksm_start_scan", f"seq {rnd.randrange(10000)} rmap size {rnd.randrange(5000)}"
    if r < 0.96:
        return "mm_migrate_pages", ("nr_succeeded=32 nr_failed=0 nr_thp_succeeded=0 nr_thp_failed=0 nr_thp_split=0 "
                                    "nr_split=0 mode=MIGRATE_SYNC reason=compaction")
    return "rmap_walk_ksm", (f"hold_ns={rnd.randrange(10**6)} iterations={rnd.randrange(30000)} skip_addr=1 "
                             "skip_mm=0 rmap_one=1")


HEADER = """# tracer: nop
#
# entries-in-buffer/entries-written: {n}/{n}   #P:2
#
#                                _-----=> irqs-off/BH-disabled
#                               / _----=> need-resched
#                              | / _---=> hardirq/softirq
#                              || / _--=> preempt-depth
#                              ||| / _-=> migrate-disable
#                              |||| /     delay
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
"""


def generate(path: Path, size_mb: float, seed: int = 1) -> int:
    rnd = random.Random(seed)
    target = int(size_mb * (1 << 20))
    ts = 458_000_000
    # a pool of pre-rendered payloads keeps generation fast; timestamps and prefixes vary per line
    pool = [_payload(rnd) for _ in range(20000)]
    n = 0
    with open(path, "w") as f:
        f.write(HEADER.format(n=0))
        written = 0
        while written < target:
            buf = []
            for _ in range(10000):
                ts += rnd.randrange(1, 60)
                comm, pid = TASKS[rnd.randrange(len(TASKS))]
                ev, pay = pool[rnd.randrange(len(pool))]
                buf.append(f"{comm:>16}-{pid:<7} [{rnd.randrange(2):03d}] {FLAGS[rnd.randrange(6)]} "
                           f"{ts // 1000000:5d}.{ts % 1000000:06d}: {ev}: {pay}\n")
            s = "".join(buf)
            f.write(s)
            written += len(s)
            n += len(buf)
    return n


# ---------------------------------------------------------------- naive parser

NAIVE_RE = re.compile(r"^\s*(.*?)-(\d+)\s+(?:\(\s*(\d+|-+)\)\s+)?\[(\d+)\]\s+(?:([.A-Za-z0-9]{4,7})\s+)?"
                      r"(\d+)\.(\d+):\s+([^\s:]+):\s*(.*)$")
KV_RE = re.compile(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_.]*)=")


def naive_parse(path: Path, out: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ksmtrace.schema import PARSED_SCHEMA

    w = pq.ParquetWriter(out, PARSED_SCHEMA, compression="zstd")
    cols: dict[str, list] = {k: [] for k in ["line_no", "ts_ns", "cpu", "pid", "tgid", "comm", "flags", "event",
                                             "payload", "fields"]}
    n = 0

    def flush():
        t = pa.table({k: pa.array(v, type=PARSED_SCHEMA.field(k).type) for k, v in cols.items()})
        from ksmtrace.ingest.base import conform

        w.write_table(conform(t))
        for v in cols.values():
            v.clear()

    with open(path, encoding="utf-8", errors="replace") as f:
        for ln, line in enumerate(f, 1):
            m = NAIVE_RE.match(line.rstrip())
            if not m:
                continue
            comm, pid, tgid, cpu, flags, sec, frac, ev, pay = m.groups()
            keys = list(KV_RE.finditer(pay))
            fields = []
            for i, k in enumerate(keys):
                end = keys[i + 1].start() if i + 1 < len(keys) else len(pay)
                fields.append((k.group(1), pay[k.end():end].strip().rstrip(",")))
            cols["line_no"].append(ln)
            cols["ts_ns"].append(int(sec) * 10**9 + int(frac.ljust(9, "0")))
            cols["cpu"].append(int(cpu))
            cols["pid"].append(int(pid))
            cols["tgid"].append(int(tgid) if tgid and tgid[0] != "-" else None)
            cols["comm"].append(comm)
            cols["flags"].append(flags)
            cols["event"].append(ev)
            cols["payload"].append(pay)
            cols["fields"].append(fields)
            n += 1
            if len(cols["line_no"]) >= 200_000:
                flush()
    flush()
    w.close()
    return n


# ---------------------------------------------------------------- real ingest (child process)


def _real(path: str, store_dir: str, q) -> None:
    from ksmtrace.ingest.run import ingest_one
    from ksmtrace.store import Store

    t0 = time.perf_counter()
    r = ingest_one(path, Store(store_dir), "bench")
    q.put((time.perf_counter() - t0, r.n_events, r.n_malformed))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=float, default=200.0)
    ap.add_argument("--keep", help="keep the generated file at this path")
    ap.add_argument("--skip-naive", action="store_true", help="time only the real ingest")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ksmtrace-bench-"))
    try:
        src = Path(a.keep) if a.keep else tmp / "trace.txt"
        t0 = time.perf_counter()
        n = generate(src, a.size_mb)
        size = src.stat().st_size / 1e6
        print(f"generated {src}: {size:.1f} MB, {n} event lines in {time.perf_counter() - t0:.1f}s")

        naive_mbps = None
        if not a.skip_naive:
            t0, c0 = time.perf_counter(), time.process_time()
            nn = naive_parse(src, tmp / "naive.parquet")
            dt, naive_cpu = time.perf_counter() - t0, time.process_time() - c0
            naive_mbps = size / dt
            print(f"naive re loop : {dt:7.2f}s  {naive_mbps:7.1f} MB/s wall, {naive_cpu:7.2f}s CPU  ({nn} rows)")

        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(target=_real, args=(str(src), str(tmp / "store"), q))
        p.start()
        dt, ne, nm = q.get()
        p.join()
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        rss_mib = ru.ru_maxrss / 1024
        cpu = ru.ru_utime + ru.ru_stime  # includes interpreter start-up and imports of the child
        mbps = size / dt
        print(f"ksmtrace      : {dt:7.2f}s  {mbps:7.1f} MB/s wall, {cpu:7.2f}s CPU  ({ne} events, {nm} malformed)")
        if naive_mbps:
            print(f"ratio         : {mbps / naive_mbps:.1f}x the naive parser (wall), "
                  f"{naive_cpu / cpu:.1f}x less CPU")
        print(f"load average  : {os.getloadavg()[0]:.1f} (other processes skew wall-clock figures)")
        print(f"peak RSS (ingest child): {rss_mib:.0f} MiB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
