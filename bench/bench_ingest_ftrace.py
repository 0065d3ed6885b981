#!/usr/bin/env python3
"""Benchmark: ftrace event text ingest against a naive line-by-line Python ``re`` loop, on several event mixes.

Mixes (``--mix``, default all):

* ``bench``: generated tracefs ``trace`` file (5-flag layout, header) of realistic tracepoint lines
  (sched_switch/sched_wakeup, migrate set/remove_migration_pte, ksm_*, lock contention_*, mm_migrate_pages);
* ``kprobes-6.1``: the real kprobe/kretprobe capture of a 6.1 kernel from the VM
  (``sample_traces/real-6.1-kp200.kprobes.txt.zst``: rwsem probes with fetch args, ksm tracepoints);
* ``sched-5.15``: a real 5.15 sched/irq/softirq trace with the record-tgid column
  (``LanGraph__langraph.154961.log`` of the public corpus, ``$KSMTRACE_CORPUS`` or ../shared/corpus);
* ``function-rpi``: a real function-tracer trace with sched events and ``<stack trace>`` blocks
  (``linux-kernel-book__ch4_4.4.1.155p.ftrace_log.txt`` of the corpus).

Real files are tiled in time to ``--size-mb`` (each copy's timestamps shifted past the previous copy's). For
each mix, in ONE run: the naive parser (one ``re`` match per line, the same key=value split, Parquet with the
same schema: what a quick script would do) and the real ingest (``ingest_one`` into a temporary store), each in
its own child process that reports wall time, CPU time and peak RSS.

    python bench/bench_ingest_ftrace.py --size-mb 200
    python bench/bench_ingest_ftrace.py --mix kprobes-6.1 --size-mb 200
    KSMTRACE_NATIVE=0 python bench/bench_ingest_ftrace.py --size-mb 200   # without the compiled line parser

The ingest uses the compiled line parser (``ingest/native/ftrace_lines.c``) where it is built; the run prints
which (``compiled parser: on/off``), so figures with and without it are never confused.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import tempfile
from pathlib import Path

from _ingest_harness import ROOT, in_child, read_capture, report, report_alone, tile

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


# ---------------------------------------------------------------- mixes

CORPUS = Path(os.environ.get("KSMTRACE_CORPUS", ROOT.parent / "shared" / "corpus"))
REAL_MIXES = {
    "kprobes-6.1": ROOT / "sample_traces" / "real-6.1-kp200.kprobes.txt.zst",
    "sched-5.15": CORPUS / "ftrace-events" / "LanGraph__langraph.154961.log",
    "function-rpi": CORPUS / "function" / "linux-kernel-book__ch4_4.4.1.155p.ftrace_log.txt",
}
MIXES = ["bench"] + list(REAL_MIXES)


def make_input(mix: str, out: Path, size_mb: float) -> str:
    """Write the mix's input to ``out``; returns a description (None: its source file is missing)."""
    if mix == "bench":
        n = generate(out, size_mb)
        return f"generated, {n} event lines"
    src = REAL_MIXES[mix]
    if not src.is_file():
        return None
    data = read_capture(src)
    k = tile(data, "ftrace", out, size_mb)
    return f"{src.name} tiled {k}x"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=float, default=200.0)
    ap.add_argument("--mix", choices=MIXES + ["all"], default="all")
    ap.add_argument("--keep", help="keep the generated inputs in this directory")
    ap.add_argument("--skip-naive", action="store_true", help="time only the real ingest (memory on big inputs)")
    a = ap.parse_args()
    from ksmtrace.ingest import _native

    on = "ftrace_lines" in _native.built() and _native.enabled()
    print(f"compiled parser: {'on' if on else 'off'} (ftrace_lines {'built' if 'ftrace_lines' in _native.built() else 'not built'}"
          f"{', KSMTRACE_NATIVE=0' if not _native.enabled() else ''})")
    tmp = Path(tempfile.mkdtemp(prefix="ksmtrace-bench-"))
    results = []
    try:
        for mix in (MIXES if a.mix == "all" else [a.mix]):
            src = (Path(a.keep) if a.keep else tmp) / f"{mix}.txt"
            what = make_input(mix, src, a.size_mb)
            if what is None:
                print(f"{mix}: skipped ({REAL_MIXES[mix]} not found)")
                continue
            size = src.stat().st_size / 1e6
            print(f"ftrace mix {mix}: {size:.1f} MB ({what})")
            ours = in_child("_ingest_harness", "ksmtrace_ingest", str(src), str(tmp / f"store-{mix}"), "ftrace")
            if a.skip_naive:
                report_alone(mix, size, ours)
            else:
                naive = in_child("bench_ingest_ftrace", "naive_parse", src, tmp / "naive.parquet")
                results.append(report(mix, size, naive, ours))
            shutil.rmtree(tmp / f"store-{mix}", ignore_errors=True)
            if not a.keep:
                src.unlink()
        print("summary: " + "; ".join(f"{r['name']} {r['mbps']:.0f} MB/s ingest ({r['ratio']:.1f}x naive), "
                                      f"{r['parse_mbps']:.0f} MB/s parse ({r['parse_ratio']:.1f}x), "
                                      f"{r['rss_mib']:.0f} MiB" for r in results))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
