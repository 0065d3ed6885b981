"""Render simulator records as trace text, and compute what docs/walk-rules.md makes of that text (the oracle).

Every renderer builds ``Row`` objects that carry both the printed line(s) and the values a parser reads back
from them (timestamps quantised exactly as printed).  The oracle functions (``oracle_*``) implement
docs/walk-rules.md over those rows; they never look at the model, only at what was printed.

The choices the oracle makes where docs/walk-rules.md is silent are listed in ``oracle.py``.
"""
from __future__ import annotations

from collections import defaultdict


from .model import (CALLBACKS, CALLERS, E, IRQ_IN, IRQ_OUT, ITER_FIRST, ITER_NEXT, OFF, ON, PT, WALK, X)

ITERS = (ITER_FIRST, ITER_NEXT)
INVALID_FNS = ("invalid_folio_referenced_vma",)
FOLIO_BASE = 0xFFFFEA0004A35E40
RWC_BASE = 0xFFFFC90001E3B9D8
LOCK_ADDR = 0xFFFF88811C022D70
MM_BASE = 0xFFFF88810B1CABC0


# --------------------------------------------------------------------------- number formatting
def hashp(x: int) -> str:
    """tracefs-style hashed %p: 16 hex digits, the first 8 zero."""
    h = (x * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
    h ^= h >> 29
    return "%016x" % (h & 0xFFFFFFFF)


def ptr(x: int, fmt: str) -> str:
    return hashp(x) if fmt == "ftrace" else "0x%x" % x


def us_floor(ns: int) -> int:
    return (ns // 1000) * 1000


def ftrace_ts(ns: int) -> str:
    return "%5d.%06d" % (ns // 1_000_000_000, (ns % 1_000_000_000) // 1000)


def perf_ts(ns: int, nsres: bool) -> str:
    if nsres:
        return "%5d.%09d" % (ns // 1_000_000_000, ns % 1_000_000_000)
    return "%12s" % ("%d.%06d" % (ns // 1_000_000_000, (ns % 1_000_000_000) // 1000))


def graph_duration(ns: int) -> tuple[str, int]:
    """kernel trace_print_graph_duration(): (text incl. ' us ' and padding, ns value the text stands for)."""
    usecs, rem = divmod(int(ns), 1000)
    s = str(usecs)
    ln = len(s)
    val = usecs * 1000
    if ln < 7:
        slen = min(5, 8 - ln)
        dec = ("%03d" % rem)[: slen - 1]
        s += "." + dec
        val += int(dec.ljust(3, "0"))
        ln += len(dec) + 1
    s += " us " + " " * max(0, 8 - ln)
    return s, val


def graph_mark(ns: int) -> str:
    for lim, ch in ((1_000_000_000, "$"), (100_000_000, "@"), (10_000_000, "*"), (1_000_000, "#"),
                    (100_000, "!"), (10_000, "+")):
        if ns > lim:
            return ch
    return " "


def graph_proc(comm: str, pid: int) -> str:
    s = "%s-%d" % (comm[:7], pid)
    sp = max(0, 14 - len(s))
    return " " * (sp // 2) + s + " " * (sp - sp // 2)


# --------------------------------------------------------------------------- rows
class Row:
    """One printed record: sort key, printed values (as a parser reads them) and the text lines."""
    __slots__ = ("t", "seq", "ts", "cpu", "pid", "comm", "ev", "f", "chain", "lines", "kind", "func", "depth",
                 "dur", "ret", "parent")

    def __init__(self, t, seq, cpu, pid, comm, ev, f=None, chain=None, kind=None, func=None, depth=None,
                 dur=None, ret=None, parent=None):
        self.t, self.seq, self.cpu, self.pid, self.comm, self.ev = t, seq, cpu, pid, comm, ev
        self.f = f or {}
        self.chain = chain
        self.kind, self.func, self.depth, self.dur, self.ret, self.parent = kind, func, depth, dur, ret, parent
        self.ts = None
        self.lines = None


FTRACE_HEADER = """# tracer: nop
#
# entries-in-buffer/entries-written: {n}/{n}   #P:{ncpu}
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

FG_HEADER = ("# tracer: function_graph\n#\n"
             "#" + "     TIME       " + " CPU" + "  TASK/PID       " + "  DURATION   " + "               FUNCTION CALLS\n"
             "#" + "      |         " + " |  " + "   |    |        " + "   |   |      " + "               |   |   |   |\n")


FRAME_OFF = {
    "rwsem_down_read_slowpath": 0x1F5, "rwsem_down_write_slowpath": 0x2E1, "down_read": 0x44, "down_write": 0x3D,
    "rmap_walk_ksm": 0x121, "rmap_walk": 0x5A, "try_to_migrate": 0x8E, "remove_migration_ptes": 0x6C,
    "folio_referenced": 0x14B, "page_idle_clear_pte_refs": 0x9F, "migrate_pages_batch": 0x3F7,
    "migrate_pages_sync": 0x97, "migrate_pages": 0x681, "compact_zone": 0x9A1, "kcompactd_do_work": 0x1B2,
    "kcompactd": 0x2D1, "kthread": 0xE8, "ret_from_fork": 0x31, "ret_from_fork_asm": 0x1A,
    "try_to_migrate_one": 0x6A1, "remove_migration_pte": 0x2C4, "move_pages_and_store_status": 0x4B,
    "do_pages_move": 0x1C5, "kernel_move_pages": 0x1F9, "__x64_sys_move_pages": 0x24, "do_syscall_64": 0x82,
    "entry_SYSCALL_64_after_hwframe": 0x76, "shrink_active_list": 0x1C6, "shrink_lruvec": 0x2A7,
    "balance_pgdat": 0x4C3, "kswapd": 0x1EA, "page_idle_bitmap_write": 0xC4, "kernfs_fop_write_iter": 0x13A,
    "vfs_write": 0x2B0, "ksys_write": 0x6B, "vma_prepare": 0x3E, "__split_vma": 0x14E, "vma_modify": 0x6F,
    "mprotect_fixup": 0x1A8, "do_mprotect_pkey": 0x2C1, "__x64_sys_mprotect": 0x1D, "anon_vma_clone": 0x8B,
    "anon_vma_fork": 0x4E, "dup_mmap": 0x3B5, "copy_process": 0x10DD, "kernel_clone": 0xC3,
    "unlink_anon_vmas": 0x5C, "free_pgtables": 0x1B1, "exit_mmap": 0xF2, "__mmput": 0x43,
    "_raw_spin_lock_irq": 0x2E, "native_queued_spin_lock_slowpath": 0x1F8, "queued_spin_lock_slowpath": 0x1F8,
    "folio_referenced_one": 0x1DE, "page_idle_clear_pte_refs_one": 0x8E,
}


def frame_addr(sym: str) -> int:
    h = 0
    for ch in sym:
        h = (h * 131 + ord(ch)) & 0xFFFFFF
    return 0xFFFFFFFF81000000 + (h << 4) + FRAME_OFF.get(sym, 0x40)


CALLER_CHAIN = {
    ("ksm_rmap_repro", "try_to_migrate"): ["try_to_migrate", "migrate_pages_batch", "migrate_pages", "do_pages_move",
                                           "kernel_move_pages", "__x64_sys_move_pages", "do_syscall_64",
                                           "entry_SYSCALL_64_after_hwframe"],
    ("ksm_rmap_repro", "remove_migration_ptes"): ["remove_migration_ptes", "migrate_pages_batch", "migrate_pages",
                                                  "do_pages_move", "kernel_move_pages", "__x64_sys_move_pages",
                                                  "do_syscall_64", "entry_SYSCALL_64_after_hwframe"],
    ("kcompactd0", "try_to_migrate"): ["try_to_migrate", "migrate_pages_batch", "migrate_pages_sync",
                                       "migrate_pages", "compact_zone", "kcompactd_do_work", "kcompactd", "kthread",
                                       "ret_from_fork", "ret_from_fork_asm"],
    ("kcompactd0", "remove_migration_ptes"): ["remove_migration_ptes", "migrate_pages_batch", "migrate_pages_sync",
                                              "migrate_pages", "compact_zone", "kcompactd_do_work", "kcompactd",
                                              "kthread", "ret_from_fork", "ret_from_fork_asm"],
    ("*", "folio_referenced"): ["folio_referenced", "shrink_active_list", "shrink_lruvec", "balance_pgdat", "kswapd",
                                "kthread", "ret_from_fork", "ret_from_fork_asm"],
    ("*", "page_idle"): ["page_idle_clear_pte_refs", "page_idle_bitmap_write", "kernfs_fop_write_iter", "vfs_write",
                         "ksys_write", "do_syscall_64", "entry_SYSCALL_64_after_hwframe"],
}
WRITER_CHAIN = {
    "vma_prepare": ["rwsem_down_write_slowpath", "down_write", "vma_prepare", "__split_vma", "vma_modify",
                    "mprotect_fixup", "do_mprotect_pkey", "__x64_sys_mprotect", "do_syscall_64",
                    "entry_SYSCALL_64_after_hwframe"],
    "anon_vma_clone": ["rwsem_down_write_slowpath", "down_write", "anon_vma_clone", "anon_vma_fork", "dup_mmap",
                       "copy_process", "kernel_clone", "do_syscall_64", "entry_SYSCALL_64_after_hwframe"],
    "unlink_anon_vmas": ["rwsem_down_write_slowpath", "down_write", "unlink_anon_vmas", "free_pgtables",
                         "exit_mmap", "__mmput", "do_syscall_64", "entry_SYSCALL_64_after_hwframe"],
}


def caller_chain(comm: str, caller: str) -> list[str]:
    return CALLER_CHAIN.get((comm, caller)) or CALLER_CHAIN.get(("*", caller)) or [CALLERS[caller][4]]


# --------------------------------------------------------------------------- text writers
def write_ftrace(rows: list[Row], ncpu: int) -> list[str]:
    out = [FTRACE_HEADER.format(n=sum(1 for r in rows if r.ev != "__lost_events"), ncpu=ncpu)]
    for r in rows:
        if r.ev == "__lost_events":
            out.append("CPU:%d [LOST %d EVENTS]\n" % (r.cpu, r.f["lost"]))
            continue
        fl = r.f.pop("_flags", None) if "_flags" in r.f else None
        fl = fl or ("....." if r.ev not in ("contention_begin", "contention_end", "set_migration_pte",
                                            "remove_migration_pte") else "...1.")
        pre = "%16s-%-7d [%03d] %s %s: " % (r.comm, r.pid, r.cpu, fl, ftrace_ts(r.t))
        out.append(pre + r.ev + ": " + r.lines + "\n")
        if r.chain:
            out.append(pre + "<stack trace>\n")
            out.extend(" => %s\n" % s for s in r.chain)
    return out


def write_perf(rows: list[Row], nsres: bool) -> list[str]:
    names = [(r.ev if ":" in r.ev else r.ev) for r in rows]
    w = max((len(n) for n in names), default=0)
    out = []
    for r, name in zip(rows, names):
        comm = r.comm if r.chain else "%16s" % r.comm
        out.append("%s %5d [%03d] %s: %*s: %s\n" % (comm, r.pid, r.cpu, perf_ts(r.t, nsres), w, name, r.lines))
        if r.chain:
            out.extend("\t%16x %s+0x%x ([kernel.kallsyms])\n" % (frame_addr(s), s, FRAME_OFF.get(s, 0x40))
                       for s in r.chain)
            out.append("\n")
    return out


# --------------------------------------------------------------------------- rendering context
class Ctx:
    def __init__(self, sim, opts):
        self.sim, self.o = sim, opts
        self.comm = {t.pid: t.comm for t in opts["tasks"]}
        self.walk_of = {w.walk: w for w in sim.walks}
        self.seq = 0

    def folio(self, page):
        return FOLIO_BASE + page * 0x40

    def rwc(self, caller):
        return RWC_BASE - 0x100 * list(CALLERS).index(caller)


def noise_rows(ctx: Ctx, fmt: str, kinds=("sched", "ksm", "migrate", "compaction")) -> list[Row]:
    """sched_switch at off-CPU gaps, ksmd activity, migration batch and compaction events."""
    sim = ctx.sim
    rows = []
    perf = fmt == "perf-script"
    for r in sim.recs:
        t, seq, kind, pid, cpu = r[:5]
        comm = ctx.comm.get(pid, "?")
        if kind == OFF and "sched" in kinds:
            pl = ("prev_comm=%s prev_pid=%d prev_prio=120 prev_state=R+ ==> next_comm=kworker/%d:1 next_pid=%d "
                  "next_prio=120" % (comm, pid, cpu, 200 + cpu))
            rows.append(Row(t, seq, cpu, pid, comm, "sched:sched_switch" if perf else "sched_switch"))
            rows[-1].lines = pl
        elif kind == ON and "sched" in kinds:
            pl = ("prev_comm=swapper/%d prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=%s next_pid=%d "
                  "next_prio=120" % (cpu, comm, pid))
            rows.append(Row(t, seq, cpu, 0, "<idle>" if not perf else "swapper", "sched:sched_switch" if perf
                            else "sched_switch"))
            rows[-1].lines = pl
        elif kind == PT and r[5] in ("batch_start", "batch_end"):
            ev = []
            if r[5] == "batch_start":
                if "compaction" in kinds and comm == "kcompactd0":
                    ev.append(("compaction", "mm_compaction_begin",
                               "zone_start=0x100000 migrate_pfn=0x128c00 free_pfn=0x13ac00 zone_end=0x1f0000, mode=sync"))
                if "migrate" in kinds:
                    reason = "compaction" if comm == "kcompactd0" else "syscall_or_cpuset"
                    ev.append(("migrate", "mm_migrate_pages_start", "mode=MIGRATE_SYNC reason=%s" % reason))
            else:
                if "migrate" in kinds:
                    reason = "compaction" if comm == "kcompactd0" else "syscall_or_cpuset"
                    ev.append(("migrate", "mm_migrate_pages",
                               "nr_succeeded=4 nr_failed=0 nr_thp_succeeded=0 nr_thp_failed=0 nr_thp_split=0 "
                               "nr_split=0 mode=MIGRATE_SYNC reason=%s" % reason))
                if "compaction" in kinds and comm == "kcompactd0":
                    ev.append(("compaction", "mm_compaction_migratepages", "nr_migrated=4 nr_failed=0"))
            for i, (sy, name, pl) in enumerate(ev):
                rows.append(Row(t + i, seq, cpu, pid, comm, "%s:%s" % (sy, name) if perf else name))
                rows[-1].lines = pl
    if "ksm" in kinds and sim.recs:
        t0, t1 = sim.recs[0][0], sim.recs[-1][0]
        step = 2_000_000
        n = 0
        t = t0 + 123_457
        while t < t1:
            cpu = ctx.o["ncpu"] - 1
            mm = ptr(MM_BASE, "ftrace" if fmt == "ftrace" else "perf")
            for name, pl, dt in (("ksm_start_scan", "seq %d rmap size %d" % (800 + n, 2000), 0),
                                 ("ksm_merge_with_ksm_page", "ksm pfn %d rmap_item %s mm %s error 0" % (
                                     2021953 + n, ptr(0xFFFF888102A4B000 + n * 0x40, "ftrace" if fmt == "ftrace"
                                                      else "p"), mm), 4_000),
                                 ("ksm_stop_scan", "seq %d rmap size %d" % (800 + n, 2000), 9_000)):
                rows.append(Row(t + dt, -1, cpu, 37, "ksmd", "ksm:" + name if perf else name))
                rows[-1].lines = pl
            n += 1
            t += step
    return rows


# --------------------------------------------------------------------------- evidence renderers
def tracepoint_rows(ctx: Ctx, fmt: str, version: int, counters: str | None, callchain: bool) -> list[Row]:
    sim = ctx.sim
    rows = []
    perf = fmt == "perf-script"
    for r in sim.recs:
        t, seq, kind, pid, cpu = r[:5]
        if kind != PT:
            continue
        what = r[5]
        if what in ("walk_start", "walk_end"):
            w = ctx.walk_of[r[6]]
            if version == 4 and what == "walk_start":
                continue
            fo, rw = ptr(ctx.folio(w.page), fmt), ptr(ctx.rwc(w.caller), fmt)
            if version == 4:
                dur = w.end_ns + 40 - (w.start_ns - 40)
                name = "rmap_walk"
                pl = "folio=%s rwc=%s duration_ns=%d page_type=ksm locked=false" % (fo, rw, dur)
                f = dict(folio=fo, rwc=rw, duration_ns=dur, page_type="ksm")
            else:
                name = "rmap_walk_start" if what == "walk_start" else "rmap_walk_end"
                pl = "folio=%s rwc=%s page_type=ksm locked=false" % (fo, rw)
                f = dict(folio=fo, rwc=rw, page_type="ksm")
            chain = (["rmap_walk"] + caller_chain(w.comm, w.caller)) if (perf and callchain) else None
            row = Row(t, seq, cpu, pid, ctx.comm[pid], ("rmap:" + name) if perf else name, f, chain)
            row.lines = pl
            rows.append(row)
        elif what == "counter" and counters and not perf:
            rows.extend(counter_rows(ctx, r, counters))
    return rows


def counter_rows(ctx: Ctx, r, style: str) -> list[Row]:
    t, seq, kind, pid, cpu = r[:5]
    w = r[5 + 1]
    t += 200  # trace_printk right after up_read
    comm = ctx.comm[pid]
    if style == "long":
        ms = "%d.%03d" % (w.hold_ns // 1_000_000, (w.hold_ns % 1_000_000) // 1000)
        pl = ("Time_ms=%s Nr_iteration_total=%d Skip_addr_out_of_range=%d Skip_mm_mismatch=%d"
              % (ms, w.iterations, w.skip_addr, w.skip_mm))
        hold = (w.hold_ns // 1000) * 1000
        f = dict(hold_ns=hold, iterations=w.iterations, skip_addr=w.skip_addr, skip_mm=w.skip_mm, rmap_one=None)
        name = "rmap_walk_ksm"
    elif style == "bpftrace":
        pl = "hold_ns=%d iterations=%d rmap_one=%d" % (w.hold_ns, w.iterations, w.rmap_one)
        f = dict(hold_ns=w.hold_ns, iterations=w.iterations, skip_addr=None, skip_mm=None, rmap_one=w.rmap_one)
        name = "ksm_window"
    else:
        pl = ("hold_ns=%d iterations=%d skip_addr=%d skip_mm=%d rmap_one=%d"
              % (w.hold_ns, w.iterations, w.skip_addr, w.skip_mm, w.rmap_one))
        f = dict(hold_ns=w.hold_ns, iterations=w.iterations, skip_addr=w.skip_addr, skip_mm=w.skip_mm,
                 rmap_one=w.rmap_one)
        name = "rmap_walk_ksm"
    f["_counter"] = True
    f["_invalid"] = w.invalid
    row = Row(t, seq, cpu, pid, comm, name, f)
    row.f["_flags"] = "...1."
    row.lines = pl
    return [row]


def counters_rows(ctx: Ctx, style: str) -> list[Row]:
    sim = ctx.sim
    rows = []
    for r in sim.recs:
        if r[2] == PT and r[5] == "counter":
            rows.extend(counter_rows(ctx, r, style))
        elif style == "bpftrace" and r[2] == PT and r[5] == "walk_end":
            w = ctx.walk_of[r[6]]
            ws = w.windows
            # bpftrace: fexit rmap_walk_ksm - fentry rmap_walk_ksm (ns)
            walk_ns = w.end_ns - w.start_ns
            pl = "walk_ns=%d windows=%d iters=%d rmap_one=%d hold_max_ns=%d cb=%s" % (
                walk_ns, len(ws), sum(x.iterations for x in ws), sum(x.rmap_one for x in ws),
                max((x.hold_ns for x in ws), default=0), CALLERS[w.caller][0])
            row = Row(r[0] - 40, r[1], r[4], r[3], ctx.comm[r[3]], "ksm_walk", dict(walk_ns=walk_ns, _summary=True, cb=CALLERS[w.caller][0]))
            row.lines = pl
            rows.append(row)
    return rows


def lock_rows(ctx: Ctx, fmt: str, stack: bool, callchain: bool) -> list[Row]:
    """contention_begin/end for walkers (READ, slow windows) and writers (WRITE), plus unrelated waits."""
    sim = ctx.sim
    rows = []
    perf = fmt == "perf-script"
    lock = ptr(LOCK_ADDR, fmt)
    spin = ptr(LOCK_ADDR + 0x8, fmt)  # rwsem wait_lock (SPIN), nested inside the write slow path
    other = ptr(0xFFFF88810B1CAC38, fmt)  # an mm's mmap_lock: not an anon_vma lock
    chains_on = perf and callchain or (not perf and stack)
    walks_cur = {}
    wi = 0
    nm = (lambda s: "lock:" + s) if perf else (lambda s: s)

    def add(t, seq, cpu, pid, comm, ev, pl, f, chain=None, fl="...1."):
        row = Row(t, seq, cpu, pid, comm, nm(ev), f, chain if chains_on else None)
        row.lines = pl
        row.f["_flags"] = fl
        rows.append(row)

    for r in sim.recs:
        t, seq, kind, pid, cpu = r[:5]
        if kind != PT:
            continue
        if r[5] == "walk_start":
            walks_cur[pid] = ctx.walk_of[r[6]]
        elif r[5] == "cbegin":
            w = walks_cur[pid]
            chain = ["rwsem_down_read_slowpath", "down_read", "rmap_walk_ksm"] + caller_chain(w.comm, w.caller)
            add(t, seq, cpu, pid, ctx.comm[pid], "contention_begin", "%s (flags=READ)" % lock,
                dict(lock_addr=lock, flags="READ"), chain, "d..1.")
        elif r[5] == "cend":
            add(t, seq, cpu, pid, ctx.comm[pid], "contention_end", "%s (ret=0)" % lock,
                dict(lock_addr=lock, ret=0), None, "d..1.")
        elif r[5] == "writer":
            arrive, got, rel, wid = r[6]
            comm, wpid, fn = ctx.o["writers"][wi % len(ctx.o["writers"])]
            wi += 1
            wcpu = ctx.o["ncpu"] - 1  # the spare CPU: no walker runs there
            add(arrive, seq, wcpu, wpid, comm, "contention_begin", "%s (flags=WRITE)" % lock,
                dict(lock_addr=lock, flags="WRITE"), WRITER_CHAIN[fn], "d..2.")
            if wi % 3 == 0:  # nested spinlock contention on the rwsem's wait_lock
                sc = ["native_queued_spin_lock_slowpath", "_raw_spin_lock_irq", "rwsem_down_write_slowpath",
                      "down_write"] + WRITER_CHAIN[fn][2:]
                add(arrive + 150, seq, wcpu, wpid, comm, "contention_begin", "%s (flags=SPIN)" % spin,
                    dict(lock_addr=spin, flags="SPIN"), sc, "d..3.")
                add(arrive + 900, seq, wcpu, wpid, comm, "contention_end", "%s (ret=0)" % spin,
                    dict(lock_addr=spin, ret=0), None, "d..3.")
            add(got, seq, wcpu, wpid, comm, "contention_end", "%s (ret=0)" % lock, dict(lock_addr=lock, ret=0),
                None, "d..2.")
            if wi % 4 == 1:  # an unrelated mmap_lock wait, one of them interrupted by a signal
                ret = -4 if wi % 8 == 1 else 0
                add(rel + 1000, seq, wcpu, wpid, comm, "contention_begin", "%s (flags=WRITE)" % other,
                    dict(lock_addr=other, flags="WRITE"),
                    ["rwsem_down_write_slowpath", "down_write_killable", "vm_mmap_pgoff", "ksys_mmap_pgoff",
                     "do_syscall_64", "entry_SYSCALL_64_after_hwframe"], "d..2.")
                add(rel + 9000, seq, wcpu, wpid, comm, "contention_end", "%s (ret=%d)" % (other, ret),
                    dict(lock_addr=other, ret=ret), None, "d..2.")
    return rows


def perf_callchain_rows(ctx: Ctx) -> list[Row]:
    sim = ctx.sim
    rows = []
    cur = {}
    for r in sim.recs:
        t, seq, kind, pid, cpu = r[:5]
        if kind != PT:
            continue
        if r[5] == "walk_start":
            cur[pid] = ctx.walk_of[r[6]]
        elif r[5] in ("set_pte", "remove_pte"):
            w = cur[pid]
            addr, pte = r[6], r[7]
            name = "set_migration_pte" if r[5] == "set_pte" else "remove_migration_pte"
            cb = "try_to_migrate_one" if r[5] == "set_pte" else "remove_migration_pte"
            chain = [cb, "rmap_walk_ksm"] + caller_chain(w.comm, w.caller)
            row = Row(t, seq, cpu, pid, ctx.comm[pid], "migrate:" + name, dict(addr="%x" % addr, pte=pte), chain)
            row.lines = "addr=%x, pte=%x order=0" % (addr, pte)
            rows.append(row)
    return rows


KPROBE_OFF = {"down_read_trylock": 0x7E, "down_read": 0x9A, ITER_FIRST: 0xB2, ITER_NEXT: 0x10C,
              "invalid_folio_referenced_vma": 0xD0}


def kprobe_rows(ctx: Ctx, fetch_vma: bool) -> list[Row]:
    """tracefs kprobe/kretprobe/fprobe lines (group ksmp, the probe names of the kprobes recipe in
    pipeline/ksmtrace/capture/recipes.py)."""
    sim, L = ctx.sim, ctx.sim.L
    rows = []
    cur = {}
    lock = "0x%x" % LOCK_ADDR

    def add(r, ev, pl, f, kind, func, parent=None, t=None):
        row = Row(r[0] if t is None else t, r[1], r[4], r[3], ctx.comm[r[3]], ev, f, kind=kind, func=func,
                  parent=parent)
        row.lines = pl
        rows.append(row)

    for r in sim.recs:
        t, seq, kind, pid, cpu = r[:5]
        if kind == PT and r[5] == "walk_start":
            cur[pid] = ctx.walk_of[r[6]]
        if kind == PT and r[5] == "ksm_item":
            add(r, "ksm_item", "(rmap_walk_ksm+0x5a/0x1a0) addr=0x%x mm=0x%x" % (r[6], MM_BASE + r[7] * 0x800),
                dict(addr="0x%x" % r[6], mm="0x%x" % (MM_BASE + r[7] * 0x800)), "entry", "rmap_walk_ksm")
            continue
        if kind not in (E, X):
            continue
        fn = r[5]
        w = cur.get(pid)
        if fn == WALK:
            if kind == E:
                cb = CALLERS[w.caller][0]
                add(r, "walk", "(rmap_walk_ksm+0x4/0x1a0) folio=0x%x rmap_one=%s+0x0/0x6f0 try_lock=%d" % (
                    ctx.folio(w.page), cb, int(CALLERS[w.caller][2])), {}, "entry", WALK)
            else:
                cf = CALLERS[w.caller][4]
                add(r, "walk_ret", "(%s+0x%x/0x%x <- rmap_walk_ksm)" % (cf, FRAME_OFF.get(cf, 0x40), 0xC0), {},
                    "return", WALK, cf)
        elif fn == "down_read_trylock" and kind == X:
            add(r, "rd_try_ret", "(rmap_walk_ksm+0x7e/0x1a0 <- down_read_trylock) ret=%d" % r[7],
                dict(ret=str(r[7])), "return", fn, "rmap_walk_ksm")
        elif fn == "down_read" and kind == X:
            add(r, "rd_slow_ret", "(rmap_walk_ksm+0x9a/0x1a0 <- down_read)", {}, "return", fn, "rmap_walk_ksm")
        elif fn == "up_read" and kind == E:
            add(r, "rd_up", "(up_read+0x4/0x60) sem=%s" % lock, dict(sem=lock), "entry", fn)
        elif fn in ITERS and kind == X:
            ev = "it_first_ret" if fn == ITER_FIRST else "it_next_ret"
            if r[7] is None:
                ret, vs, ve = 0, 0, 0
            else:
                item, pos, m, v = r[7]
                ret = 0xFFFF888104A1B000 + (m * L.vmas + v) * 0x40
                vs, ve = L.vma_range(v)
            pl = "(rmap_walk_ksm+0x%x/0x1a0 <- %s) ret=0x%x" % (KPROBE_OFF[fn], fn, ret)
            f = dict(ret="0x%x" % ret)
            if fetch_vma:
                pl += " vm_start=0x%x vm_end=0x%x" % (vs, ve)
                f.update(vm_start="0x%x" % vs, vm_end="0x%x" % ve)
            add(r, ev, pl, f, "return", fn, "rmap_walk_ksm")
        elif fn in CALLBACKS and kind == E:
            add(r, "cb_" + fn[:20], "(%s+0x4/0x6f0)" % fn, {}, "entry", fn)
        elif fn in INVALID_FNS and kind == X:
            add(r, "inv_ret", "(rmap_walk_ksm+0xd0/0x1a0 <- %s) ret=%d" % (fn, r[7]), dict(ret=str(r[7])),
                "return", fn, "rmap_walk_ksm")
    return rows


# --------------------------------------------------------------------------- function_graph
def fg_retval(fn, r7, L, ctx, walk):
    if fn in ITERS:
        if r7 is None:
            return 0
        item, pos, m, v = r7
        return 0xFFFF888104A1B000 + (m * L.vmas + v) * 0x40
    if fn == WALK:
        return ctx.folio(walk.page) if walk else 0  # register garbage: rmap_walk_ksm is void
    return r7 or 0


def fg_rows(ctx: Ctx, *, retval: str | None, tail: bool, retaddr: bool, cut: tuple | None) -> list[Row]:
    """function_graph text (abstime, proc; tail optional) from E/X records; rows = what the parser reads."""
    sim, L = ctx.sim, ctx.sim.L
    ncpu = ctx.o["ncpu"]
    cur = {}
    recs = []
    for r in sim.recs:
        if r[2] == PT and r[5] == "walk_start":
            cur[r[3]] = ctx.walk_of[r[6]]
        if r[2] in (E, X, IRQ_IN, IRQ_OUT):
            if cut and not (cut[0] <= r[0] <= cut[1]):
                continue
            recs.append((r, cur.get(r[3])))
    # per-CPU leaf merge: an entry immediately followed on its CPU by its own return
    by_cpu = defaultdict(list)
    for i, (r, w) in enumerate(recs):
        by_cpu[r[4]].append(i)
    leaf_of, merged = {}, set()
    for idxs in by_cpu.values():
        for a, b in zip(idxs, idxs[1:]):
            ra, rb = recs[a][0], recs[b][0]
            if ra[2] == E and rb[2] == X and _match(sim).get(rb[1], (None,))[0] == ra[1]:
                leaf_of[a] = b
                merged.add(b)
    rows = []
    enter_funcs = defaultdict(dict)
    for i, (r, w) in enumerate(recs):
        if i in merged:
            continue
        t, seq, kind, pid, cpu = r[:5]
        comm = ctx.comm[pid]
        if kind == IRQ_IN or kind == IRQ_OUT:
            row = Row(t, seq, cpu, pid, comm[:7], "funcgraph_entry", kind="irq_enter" if kind == IRQ_IN else "irq_exit")
            row.lines = "  ==========> |" if kind == IRQ_IN else "  <========== |"
            rows.append(row)
            continue
        fn, depth = r[5], r[6]
        ind = "  " * depth
        if kind == E:
            parent = None
            if retaddr:
                if fn == WALK:
                    cf = CALLERS[w.caller][4]
                    parent = "%s+0x%x/0xc0" % (cf, FRAME_OFF.get(cf, 0x40))
                elif depth == 1:
                    parent = "rmap_walk_ksm+0x%x/0x1a0" % KPROBE_OFF.get(fn, 0x121)
                else:
                    parent = "try_to_migrate_one+0x1c4/0x6f0"
            if i in leaf_of:
                rx = recs[leaf_of[i]][0]
                dtxt, dval = graph_duration(rx[0] - t)
                rv = fg_retval(fn, rx[7], L, ctx, w)
                cm = []
                if parent:
                    cm.append("<-" + parent)
                if retval:
                    cm.append(("ret=0x%x" if retval == "6.13" else "= 0x%x") % rv)
                txt = "%s%s();" % (ind, fn) + (" /* %s */" % " ".join(cm) if cm else "")
                row = Row(t, seq, cpu, pid, comm[:7], "funcgraph_entry", kind="leaf", func=fn, depth=depth, dur=dval,
                          ret=("0x%x" % rv) if retval else None, parent=parent)
                row.lines = (graph_mark(rx[0] - t) + " " + dtxt, txt)
            else:
                enter_funcs[cpu][depth] = fn
                txt = "%s%s() {" % (ind, fn) + (" /* <-%s */" % parent if parent else "")
                row = Row(t, seq, cpu, pid, comm[:7], "funcgraph_entry", kind="entry", func=fn, depth=depth,
                          parent=parent)
                row.lines = (None, txt)
            rows.append(row)
        else:
            # the matching entry: find its time (for the duration) from the model records
            ent_t = _entry_time(sim, r)
            dtxt, dval = graph_duration(t - ent_t)
            rv = fg_retval(fn, r[7], L, ctx, w)
            matched = enter_funcs[cpu].get(depth) == fn
            if retval:
                txt = "%s} /* %s %s */" % (ind, fn, ("ret=0x%x" if retval == "6.13" else "= 0x%x") % rv)
            elif tail or not matched:
                txt = "%s} /* %s */" % (ind, fn)
            else:
                txt = "%s}" % ind
            enter_funcs[cpu].pop(depth, None)
            row = Row(t, seq, cpu, pid, comm[:7], "funcgraph_exit", kind="exit", func=fn, depth=depth, dur=dval,
                      ret=("0x%x" % rv) if retval else None)
            row.lines = (graph_mark(t - ent_t) + " " + dtxt, txt)
            rows.append(row)
    rows.sort(key=lambda x: (x.t, x.seq))
    for row in rows:
        row.ts = us_floor(row.t)
    return rows


def fg_text(ctx: Ctx, rows: list[Row]) -> list[str]:
    cw = len(str(max(ctx.o["ncpu"] - 1, 0)))
    out = [FG_HEADER]
    last_pid = {}
    for row in rows:
        if row.ev == "__lost_events":
            out.append("CPU:%d [LOST %d EVENTS]\n" % (row.cpu, row.f["lost"]))
            continue
        lp = last_pid.get(row.cpu)
        if lp is not None and lp != row.pid:
            out.append(" ------------------------------------------\n")
            out.append(" %*d) %s => %s\n" % (cw, row.cpu, graph_proc(ctx.comm[lp], lp), graph_proc(ctx.comm[row.pid], row.pid)))
            out.append(" ------------------------------------------\n\n")
        last_pid[row.cpu] = row.pid
        pre = "%s |   %*d) %s | " % (ftrace_ts(row.t), cw, row.cpu, graph_proc(ctx.comm[row.pid], row.pid))
        if row.kind in ("irq_enter", "irq_exit"):
            out.append(pre + row.lines + "\n")
            continue
        dcol, txt = row.lines
        if dcol is None:
            out.append(pre + "              |  " + txt + "\n")
        else:
            out.append(pre + dcol + "|  " + txt + "\n")
    return out


_MATCH_CACHE: dict = {}


def _match(sim):
    """exit record seq -> (entry seq, entry time): LIFO per (pid, func, depth)."""
    key = id(sim)
    if _MATCH_CACHE.get("key") != key or _MATCH_CACHE.get("sim") is not sim:
        stacks = defaultdict(list)
        m = {}
        for r in sim.recs:
            if r[2] == E:
                stacks[(r[3], r[5], r[6])].append((r[1], r[0]))
            elif r[2] == X:
                m[r[1]] = stacks[(r[3], r[5], r[6])].pop()
        _MATCH_CACHE.clear()
        _MATCH_CACHE.update(key=key, sim=sim, m=m)
    return _MATCH_CACHE["m"]


def _entry_time(sim, xrec):
    return _match(sim)[xrec[1]][1]
