#!/usr/bin/env python3
"""Benchmark: ingest a large ``perf script`` text with callchains (target >= 30 MB/s).

Generates a synthetic trace in the perf 6.1 default layout for ``perf record -g -e migrate:* -e lock:*``
(tracepoints with kernel callchains, a few samples, C++ symbols and DSO paths with spaces), ingests it
with ``ksmtrace ingest`` into a temporary store and prints the throughput.

    python bench/bench_ingest_perf.py --size-mb 120
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pipeline"))

KFRAMES = ["try_to_migrate_one", "rmap_walk_ksm", "try_to_migrate", "migrate_pages_batch", "migrate_pages_sync",
           "migrate_pages", "compact_zone", "compact_node", "kcompactd", "kthread", "ret_from_fork",
           "rwsem_down_read_slowpath", "down_read", "__schedule", "schedule", "do_syscall_64"]
UFRAMES = [("std::_Function_handler<void (), main::{lambda()#1}>::_M_invoke", "/opt/my app/bin/server"),
           ("operator new(unsigned long)", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.30"),
           ("[unknown]", "[unknown]"), ("__libc_start_call_main", "/usr/lib/x86_64-linux-gnu/libc.so.6")]
EVENTS = [("migrate:set_migration_pte", "addr={a:x}, pte={p:x} order=0"),
          ("migrate:remove_migration_pte", "addr={a:x}, pte={p:x} order=0"),
          ("lock:contention_begin", "0x{p:x} (flags=READ)"),
          ("lock:contention_end", "0x{p:x} (ret=0)"),
          ("compaction:mm_compaction_migratepages", "nr_migrated=32 nr_failed=0")]
WIDTH = max(len(e) for e, _ in EVENTS)


def generate(path: Path, size_mb: float, seed: int = 1) -> int:
    rnd = random.Random(seed)
    target = int(size_mb * (1 << 20))
    n = 0
    ts = 375_000_000_000
    with open(path, "w") as f:
        written = 0
        buf = []
        while written < target:
            ts += rnd.randrange(1, 50_000)
            ev, fmt = rnd.choice(EVENTS)
            pid = rnd.choice([37, 9000, 12345])
            comm = {37: "ksmd", 9000: "ksm_rmap_repro", 12345: "kcompactd0"}[pid]
            payload = fmt.format(a=rnd.getrandbits(44), p=rnd.getrandbits(64))
            lines = [f"{comm} {pid:7d} [{rnd.randrange(2):03d}] {ts // 10**9:5d}.{ts % 10**9:09d}: "
                     f"{ev:>{WIDTH}}: {payload}\n"]
            for i in range(rnd.randrange(6, 16)):
                sym = rnd.choice(KFRAMES)
                lines.append(f"\t{0xffffffff81000000 + rnd.getrandbits(24):16x} {sym}+0x{rnd.randrange(4096):x} "
                             f"([kernel.kallsyms])\n")
            for i in range(rnd.randrange(0, 3)):
                sym, dso = rnd.choice(UFRAMES)
                off = "" if sym == "[unknown]" else f"+0x{rnd.randrange(4096):x}"
                lines.append(f"\t{rnd.getrandbits(40):16x} {sym}{off} ({dso})\n")
            lines.append("\n")
            s = "".join(lines)
            buf.append(s)
            written += len(s)
            n += 1
            if len(buf) > 5000:
                f.write("".join(buf))
                buf = []
        f.write("".join(buf))
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=float, default=120.0, help="size of the generated text [120]")
    ap.add_argument("--keep", action="store_true", help="keep the generated file and store")
    args = ap.parse_args()
    from ksmtrace.ingest.run import ingest_one
    from ksmtrace.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="ksmtrace-bench-perf-"))
    try:
        trace = tmp / "perf-script.txt"
        t0 = time.perf_counter()
        n = generate(trace, args.size_mb)
        gen_s = time.perf_counter() - t0
        size = os.path.getsize(trace)
        print(f"generated {size / 1e6:.1f} MB, {n} records with callchains in {gen_s:.1f}s")
        t0 = time.perf_counter()
        res = ingest_one(str(trace), Store(tmp / "store"), label="bench", fmt="auto")
        dt = time.perf_counter() - t0
        assert res.n_events == n, (res.n_events, n)
        assert res.format == "perf-script", res.format
        print(res.summary())
        print(f"ingest: {dt:.2f}s, {size / 1e6 / dt:.1f} MB/s, {n / dt:,.0f} records/s (target >= 30 MB/s)")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
