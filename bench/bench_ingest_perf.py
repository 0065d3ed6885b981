#!/usr/bin/env python3
"""Benchmark: ``perf script`` text with callchains against a naive line-by-line Python ``re`` loop, on several
mixes, in the same run.

Mixes (``--mix``, default all):

* ``generated``: the perf 6.1 default layout for ``perf record -g -e migrate:* -e lock:*`` (tracepoints with
  kernel callchains, a few user frames, C++ symbols and DSO paths with spaces);
* ``lock-6.18``: the real ``perf script`` of a 6.18 kernel in the VM
  (``sample_traces/real-6.18-split20000.perf.txt.zst``: lock contention and migrate tracepoints with callchains);
* ``cycles-flamegraph``: real ``perf record -g`` cycles samples with user and kernel stacks
  (``FlameGraph__example-perf-stacks.txt`` of the public corpus, ``$KSMTRACE_CORPUS`` or ../shared/corpus).

Real files are tiled in time to ``--size-mb``. The naive loop: one ``re`` match per event line, one per frame
line, the records with their callchains written to Parquet with the same schema. Each side runs in its own
child process that reports wall time, CPU time and peak RSS.

    python bench/bench_ingest_perf.py --size-mb 200
    python bench/bench_ingest_perf.py --size-mb 200 --native both   # compiled parser on, then off
"""
from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import tempfile
from pathlib import Path

from _ingest_harness import ROOT, in_child, read_capture, report, tile

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


NAIVE_EV = re.compile(r"^\s*(.*?)\s+(\d+)(?:/(\d+))?\s+(?:\[(\d+)\]\s+)?(\d+)\.(\d+):\s+(?:\d+\s+)?(\S+?):\s*(.*)$")
NAIVE_FRAME = re.compile(r"^\s+([0-9a-fA-F]+)\s+(.*?)(?:\+(0x[0-9a-fA-F]+))?(?:\s\((.*)\))?\s*$")


def naive_parse(path: str, out: str) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ksmtrace.ingest.base import conform
    from ksmtrace.schema import PARSED_SCHEMA

    w = pq.ParquetWriter(out, PARSED_SCHEMA, compression="zstd")
    names = ["line_no", "ts_ns", "cpu", "pid", "tgid", "comm", "system", "event", "payload", "callchain"]
    cols: dict[str, list] = {k: [] for k in names}
    n = 0

    def flush():
        w.write_table(conform(pa.table({k: pa.array(v, type=PARSED_SCHEMA.field(k).type) for k, v in cols.items()})))
        for v in cols.values():
            v.clear()

    chain = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for ln, line in enumerate(f, 1):
            if line.startswith("\t"):
                m = NAIVE_FRAME.match(line)
                if m and chain is not None:
                    chain.append({"addr": m.group(1), "sym": m.group(2), "off": m.group(3), "dso": m.group(4)})
                continue
            m = NAIVE_EV.match(line)
            if not m:
                continue
            comm, pid, tid, cpu, sec, frac, ev, pay = m.groups()
            if len(cols["line_no"]) >= 100_000:
                flush()
            sysname, _, name = ev.rpartition(":")
            chain = []
            cols["line_no"].append(ln)
            cols["ts_ns"].append(int(sec) * 10**9 + int(frac.ljust(9, "0")))
            cols["cpu"].append(int(cpu) if cpu else None)
            cols["pid"].append(int(tid or pid))
            cols["tgid"].append(int(pid) if tid else None)
            cols["comm"].append(comm)
            cols["system"].append(sysname or None)
            cols["event"].append(name)
            cols["payload"].append(pay)
            cols["callchain"].append(chain)
            n += 1
    flush()
    w.close()
    return n


CORPUS = Path(os.environ.get("KSMTRACE_CORPUS", ROOT.parent / "shared" / "corpus"))
REAL_MIXES = {
    "lock-6.18": ROOT / "sample_traces" / "real-6.18-split20000.perf.txt.zst",
    "cycles-flamegraph": CORPUS / "perf-script" / "FlameGraph__example-perf-stacks.txt",
}
MIXES = ["generated"] + list(REAL_MIXES)


def make_input(mix: str, out: Path, size_mb: float) -> str | None:
    if mix == "generated":
        return f"generated, {generate(out, size_mb)} records with callchains"
    src = REAL_MIXES[mix]
    if not src.is_file():
        return None
    data = read_capture(src)
    return f"{src.name} tiled {tile(data, 'perf-script', out, size_mb)}x"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=float, default=200.0, help="size of each input [200]")
    ap.add_argument("--mix", choices=MIXES + ["all"], default="all")
    ap.add_argument("--native", choices=["env", "both"], default="env",
                    help="env: one ksmtrace run as KSMTRACE_NATIVE says; both: one with the compiled parser and "
                         "one without (KSMTRACE_NATIVE=0), against the same naive run [env]")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ksmtrace-bench-perf-"))
    results = []
    env_native = os.environ.get("KSMTRACE_NATIVE")
    try:
        for mix in (MIXES if args.mix == "all" else [args.mix]):
            trace = tmp / f"{mix}.txt"
            what = make_input(mix, trace, args.size_mb)
            if what is None:
                print(f"{mix}: skipped ({REAL_MIXES[mix]} not found)")
                continue
            size = os.path.getsize(trace) / 1e6
            print(f"perf script mix {mix}: {size:.1f} MB ({what})")
            naive = in_child("bench_ingest_perf", "naive_parse", str(trace), str(tmp / "naive.parquet"))
            for native in ([None] if args.native == "env" else ["1", "0"]):
                name = mix
                if native is not None:
                    os.environ["KSMTRACE_NATIVE"] = native  # read by the spawned child
                    name = f"{mix} native={'on' if native == '1' else 'off'}"
                    print(f" {name}:")
                ours = in_child("_ingest_harness", "ksmtrace_ingest", str(trace), str(tmp / f"store-{name}"),
                                "perf-script")
                results.append(report(name, size, naive, ours))
            if env_native is None:
                os.environ.pop("KSMTRACE_NATIVE", None)
            else:
                os.environ["KSMTRACE_NATIVE"] = env_native
            trace.unlink()
        print("summary: " + "; ".join(f"{r['name']} {r['mbps']:.0f} MB/s ingest ({r['ratio']:.1f}x naive), "
                                      f"{r['parse_mbps']:.0f} MB/s parse ({r['parse_ratio']:.1f}x), "
                                      f"{r['rss_mib']:.0f} MiB" for r in results))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
