#!/usr/bin/env python3
"""Guest side of tests/data/make_fg_overwrite.sh: a function_graph capture whose per-CPU buffers overwrite.

Runs as root inside a 2-CPU, 2-node virtme-ng guest (Debian 6.1 kernel). Writes into OUTDIR:
  fg_overwrite.trace          the tracefs `trace` file (function_graph, no loss marker in it)
  fg_overwrite.trace.meta.json  sidecar: kernel, cpus, method, buffer sizes and "per_cpu_stats" read
                              from per_cpu/cpuN/stats before tracing stopped

Layout: PAGES identical pages, MADV_MERGEABLE, mprotect on every other page of the first 2*VMAS pages
(about VMAS VMAs on one anon_vma), merged by KSM, then move_pages(2) with MPOL_MF_MOVE_ALL to the other
node. The task starts on CPU 1; once CPU 1 has logged FLIP_AT ring-buffer entries, a child moves it to
CPU 0 (sched_setaffinity; the walk migrates at a cond_resched() in rmap_walk_ksm). CPU 1's buffer keeps
the walk's entry; CPU 0's small buffer overwrites its oldest events silently, so the text alone pairs an
entry before the overwritten stretch with an exit after it.
"""
import ctypes
import json
import mmap
import os
import platform
import sys
import time

OUT = sys.argv[1]
PAGES = int(os.environ.get("PAGES", "2000"))
VMAS = int(os.environ.get("VMAS", "4"))
FLIP_AT = int(os.environ.get("FLIP_AT", "50000"))
BUF = {0: int(os.environ.get("BUF0_KB", "384")), 1: int(os.environ.get("BUF1_KB", "1024"))}
T = "/sys/kernel/tracing"
KSM = "/sys/kernel/mm/ksm"
PAGE = mmap.PAGESIZE
FUNCS = ["rmap_walk_ksm", "down_read_trylock", "down_read", "up_read", "anon_vma_interval_tree_iter_first",
         "anon_vma_interval_tree_iter_next", "try_to_migrate_one", "remove_migration_pte"]

libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.syscall.restype = ctypes.c_long


def w(path, val, append=False):
    with open(path, "a" if append else "w") as f:
        f.write(str(val))


def r(path):
    with open(path) as f:
        return f.read()


def say(*a):
    print("guest:", *a, flush=True)


def stats():
    out = {}
    for cpu in range(os.cpu_count()):
        d = {}
        for line in r(f"{T}/per_cpu/cpu{cpu}/stats").splitlines():
            k, _, v = line.partition(":")
            d[k.strip().replace(" ", "_")] = v.strip()
        out[str(cpu)] = {"entries": int(d.get("entries", 0)), "overrun": int(d.get("overrun", 0)),
                         "commit_overrun": int(d.get("commit_overrun", 0)),
                         "dropped_events": int(d.get("dropped_events", 0)),
                         "read_events": int(d.get("read_events", 0)),
                         "oldest_event_ts": d.get("oldest_event_ts"), "now_ts": d.get("now_ts")}
    return out


# ---- tracefs: function_graph first, then its options (they exist only with the tracer set)
w(f"{T}/tracing_on", 0)
w(f"{T}/current_tracer", "function_graph")
for opt in ("funcgraph-abstime", "funcgraph-proc", "funcgraph-cpu", "funcgraph-tail"):
    w(f"{T}/options/{opt}", 1)
w(f"{T}/set_graph_function", "rmap_walk_ksm")
w(f"{T}/set_ftrace_filter", FUNCS[0])
for fn in FUNCS[1:]:
    w(f"{T}/set_ftrace_filter", fn, append=True)
for cpu, kb in BUF.items():
    w(f"{T}/per_cpu/cpu{cpu}/buffer_size_kb", kb)
w(f"{T}/trace", "")

# ---- the layout
size = PAGES * PAGE
base = libc.mmap(None, size, 3, 0x22, -1, 0)
ctypes.memset(base, 0x5A, size)
assert libc.madvise(ctypes.c_void_p(base), ctypes.c_size_t(size), 12) == 0
for i in range(0, min(2 * VMAS, PAGES), 2):
    assert libc.mprotect(ctypes.c_void_p(base + i * PAGE), ctypes.c_size_t(PAGE), 1) == 0
saved = {k: r(f"{KSM}/{k}").strip() for k in ("pages_to_scan", "sleep_millisecs", "run")}
w(f"{KSM}/pages_to_scan", 5000)
w(f"{KSM}/sleep_millisecs", 10)
w(f"{KSM}/run", 1)
t0 = time.monotonic()
best, since = -1, t0
while time.monotonic() - t0 < 300:
    sharing = int(r(f"{KSM}/pages_sharing"))
    if sharing > best:
        best, since = sharing, time.monotonic()
    if sharing >= PAGES - (PAGES + 255) // 256 or (best > 0 and time.monotonic() - since > 20):
        break
    time.sleep(0.5)
say(f"merged: pages_sharing {r(KSM + '/pages_sharing').strip()} pages_shared "
    f"{r(KSM + '/pages_shared').strip()} in {time.monotonic() - t0:.1f} s")
w(f"{KSM}/run", 0)   # ksmd quiet while we trace

# ---- trigger: move_pages to the other node, affinity flipped by a child
n = PAGES
pages = (ctypes.c_void_p * n)(*[base + i * PAGE for i in range(n)])
status = (ctypes.c_int * n)()
libc.syscall(279, 0, ctypes.c_ulong(n), pages, None, status, 4)
cur = status[0]
target = 1 - cur
nodes = (ctypes.c_int * n)(*([target] * n))
me = os.getpid()
os.sched_setaffinity(0, {1})
w(f"{T}/tracing_on", 1)
child = os.fork()
if child == 0:
    try:
        while True:
            st = stats()["1"]
            if st["entries"] + st["overrun"] >= FLIP_AT:
                os.sched_setaffinity(me, {0})
                break
            time.sleep(0.001)
    except ProcessLookupError:
        pass
    os._exit(0)
t1 = time.monotonic()
rc = libc.syscall(279, 0, ctypes.c_ulong(n), pages, nodes, status, 4)
t2 = time.monotonic()
per_cpu = stats()          # before tracing stops
w(f"{T}/tracing_on", 0)
os.kill(child, 9)
os.waitpid(child, 0)
moved = sum(1 for i in range(n) if status[i] == target)
say(f"move_pages rc {rc} node {cur} -> {target}: {moved}/{n} pages in {t2 - t1:.1f} s; stats {per_cpu}")
with open(f"{OUT}/fg_overwrite.trace", "w") as f:
    f.write(r(f"{T}/trace"))
w(f"{T}/current_tracer", "nop")
w(f"{T}/set_graph_function", "")
w(f"{T}/set_ftrace_filter", "")
for k, v in saved.items():
    w(f"{KSM}/{k}", v)
meta = {"kernel": platform.release(), "cpus": os.cpu_count(), "method": "function-graph",
        "command": ["tests/data/fg_overwrite_guest.py"],
        "layout": {"pages": PAGES, "vmas": VMAS, "flip_at_cpu1_entries": FLIP_AT, "moved": moved, "from_node": cur,
                   "to_node": target, "move_seconds": round(t2 - t1, 3)},
        "buffer_size_kb": {str(k): v for k, v in BUF.items()}, "per_cpu_stats": per_cpu}
with open(f"{OUT}/fg_overwrite.trace.meta.json", "w") as f:
    json.dump(meta, f, indent=1, sort_keys=True)
say("done")
