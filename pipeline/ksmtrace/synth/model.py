"""The ground-truth model of ``rmap_walk_ksm()`` (docs/walk-rules.md, "The walk being measured") over an anon_vma
interval tree.

* ``Layout``: one mm with ``vmas`` VMAs from mprotect splits (disjoint page ranges on one anon_vma), optional
  ``forks`` children whose VMAs are linked into the parent's anon_vma tree (same ranges, other mms), ``pages``
  KSM pages, each with ``items`` rmap_items of the parent (plus ``child_items`` per child, on the child's own
  anon_vma, whose root is the parent's: every window takes the same root rwsem).
* ``window_plan()``: closed form of one window's interval-tree query (unpatched ``[0, ULONG_MAX]`` or patched
  ``[idx, idx]``): how many chains it returns and which of them pass the address check.
* ``Simulator``: runs walks in time (deterministic given the seed) and emits *records*: function entries and
  returns, interrupt markers, off-CPU gaps and point events (tracepoints, probes, counter lines, lock
  contention).  Renderers (``render.py``) turn records into text and compute what the SQL must find.

Conventions chosen here (docs/walk-rules.md does not fix them):
* Chain order in the tree: by VMA (page offset), then parent before children in fork order.
* Items of page p: global slot s = p*K + j lands in VMA s % V at offset s // V, so the K items of one page sit in
  K consecutive VMAs (all distinct when K <= V).
* try_to_migrate's ``.done`` (folio_not_mapped) and folio_referenced_one's "return false" fire once every
  mapping of the folio has been handled: mappings = K*(C+1) + C*child_items.
* ``__cond_resched``/``schedule`` are recorded only when the walker actually goes off-CPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

PAGE = 4096

#: caller -> (rmap_one callback, done callback or None, try_lock, invalid_vma callback or None, caller frame)
CALLERS = {
    "try_to_migrate": ("try_to_migrate_one", "folio_not_mapped", False, None, "try_to_migrate"),
    "remove_migration_ptes": ("remove_migration_pte", None, False, None, "remove_migration_ptes"),
    "folio_referenced": ("folio_referenced_one", None, True, "invalid_folio_referenced_vma", "folio_referenced"),
    "page_idle": ("page_idle_clear_pte_refs_one", None, False, None, "page_idle_clear_pte_refs"),
}
CALLBACKS = ["try_to_migrate_one", "remove_migration_pte", "try_to_unmap_one", "folio_referenced_one",
             "page_idle_clear_pte_refs_one", "damon_folio_mkold_one", "damon_folio_young_one"]
ITER_FIRST, ITER_NEXT = "anon_vma_interval_tree_iter_first", "anon_vma_interval_tree_iter_next"
WALK = "rmap_walk_ksm"


@dataclass(frozen=True)
class Layout:
    vmas: int = 64
    forks: int = 0
    pages: int = 4
    items: int = 16
    child_items: int = 0
    base: int = 0x7F3A00000000

    def __post_init__(self):
        for k in ("vmas", "pages", "items"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1")
        if self.forks < 0 or self.child_items < 0:
            raise ValueError("forks and child_items must be >= 0")

    @property
    def ppv(self) -> int:
        """pages per VMA"""
        return max(1, math.ceil(self.pages * self.items / self.vmas), self.child_items)

    def vma_range(self, v: int) -> tuple[int, int]:
        s = self.base + v * self.ppv * PAGE
        return s, s + self.ppv * PAGE

    def items_of(self, page: int) -> list["Item"]:
        out = []
        V, K = self.vmas, self.items
        for j in range(K):
            s = page * K + j
            v, off = s % V, s // V
            idx = v * self.ppv + off
            out.append(Item(mm=0, tree=0, vma=v, idx=idx, addr=self.base + idx * PAGE))
        for c in range(1, self.forks + 1):
            for j in range(self.child_items):
                # child pages merged by ksmd later: last offsets of the child's VMAs, away from parent slots
                s = page * self.child_items + j
                v = s % V
                off = self.ppv - 1 - ((s // V) % self.ppv)
                idx = v * self.ppv + off
                out.append(Item(mm=c, tree=c, vma=v, idx=idx, addr=self.base + idx * PAGE))
        return out

    @property
    def mappings(self) -> int:
        return self.items * (self.forks + 1) + self.forks * self.child_items


@dataclass(frozen=True)
class Item:
    mm: int  # 0 = parent, c = child c
    tree: int  # anon_vma whose interval tree the item queries: 0 = parent's, c = child c's own
    vma: int
    idx: int  # page index (pgoff)
    addr: int


def window_plan(layout: Layout, item: Item, patched: bool) -> tuple[int, list[tuple[int, int, int]]]:
    """(chains the query returns, [(1-based position, chain mm, chain vma)] of the chains covering item.addr)."""
    if item.tree == 0:
        c1 = layout.forks + 1
        if patched:
            return c1, [(m + 1, m, item.vma) for m in range(c1)]
        return layout.vmas * c1, [(item.vma * c1 + m + 1, m, item.vma) for m in range(c1)]
    if patched:
        return 1, [(1, item.tree, item.vma)]
    return layout.vmas, [(item.vma + 1, item.tree, item.vma)]


def chain_at(layout: Layout, item: Item, patched: bool, pos: int) -> tuple[int, int]:
    """(mm, vma) of the chain returned at 1-based position pos of the item's window."""
    if item.tree == 0:
        c1 = layout.forks + 1
        if patched:
            return pos - 1, item.vma
        return (pos - 1) % c1, (pos - 1) // c1
    return item.tree, (item.vma if patched else pos - 1)


@dataclass
class Costs:
    """Time costs in ns. ``trace_ns`` is added to every traced call: tracing a call costs far more than an
    untraced iteration (docs/walk-rules.md, "The walk being measured")."""
    iter_ns: float = 16.6
    trace_ns: float = 0.0
    entry_ns: float = 150.0
    exit_ns: float = 80.0
    trylock_ns: float = 30.0
    unlock_ns: float = 25.0
    resched_ns: float = 12.0
    rmap_one_ns: float = 1100.0
    pvmw_ns: float = 350.0
    done_ns: float = 20.0
    invalid_ns: float = 35.0
    printk_ns: float = 600.0
    p_offcpu: float = 0.02  # per window start: scheduled out in cond_resched (lock not held)
    p_offcpu_held: float = 0.01  # per window: scheduled out inside the locked loop
    offcpu_mean_ns: float = 150_000.0
    p_migrate: float = 0.5  # off-CPU gap resumes on the task's other CPU
    p_irq: float = 0.04  # per rmap_one call: a timer interrupt nested inside it
    irq_ns: tuple = (1500.0, 6000.0)
    p_writer: float = 0.03  # per window: a writer queues during the hold -> next window slow (or bail-out)
    p_invalid: float = 0.15  # folio_referenced: invalid_vma rejects a candidate VMA
    gap_ns: tuple = (2_000.0, 40_000.0)  # idle time between walks of one task


@dataclass
class WindowTruth:
    walk: int
    window_no: int
    pass_no: int
    start_ns: int
    end_ns: int
    iterations: int
    rmap_one: int
    skip_addr: int
    skip_mm: int
    invalid: int
    slow: bool
    item_addr: int

    @property
    def hold_ns(self):
        return self.end_ns - self.start_ns


@dataclass
class WalkTruth:
    walk: int
    caller: str
    page: int
    pid: int
    comm: str
    cpu: int
    start_ns: int
    end_ns: int
    windows: list = field(default_factory=list)
    early_exit: bool = False
    bailout: bool = False
    end_cpu: int = 0


# record kinds (tuples: (ts_ns, seq, kind, pid, cpu, a, b, c))
E, X, IRQ_IN, IRQ_OUT, OFF, ON, PT = "E", "X", "I", "i", "OFF", "ON", "P"


@dataclass
class Task:
    comm: str
    pid: int
    cpus: tuple
    callers: tuple  # callers cycled through by this task


TASKS = [
    Task("ksm_rmap_repro", 10396, (1, 0), ("try_to_migrate", "remove_migration_ptes")),
    Task("kcompactd0", 33, (1, 0), ("try_to_migrate", "remove_migration_ptes")),
    Task("kswapd0", 80, (2, 3), ("folio_referenced",)),
    Task("idle_scan", 4242, (2, 3), ("page_idle",)),
]
WRITERS = [("ksm_rmap_repro", 10397, "vma_prepare"), ("ksm_fork", 10411, "anon_vma_clone"),
           ("ksm_exit", 10430, "unlink_anon_vmas")]


class Simulator:
    """Runs walks for a set of tasks and collects records plus the truth.

    ``record_iters``: emit a record per iterator call (function_graph counting run, kprobes).
    ``traced``: function names whose calls cost ``costs.trace_ns`` extra (the instrumentation).
    """

    def __init__(self, layout: Layout, *, patched: bool, costs: Costs, seed: int, record_iters: bool,
                 traced: frozenset, t0_ns: int = 458_200_000_000):
        self.L, self.patched, self.c, self.record_iters, self.traced = layout, patched, costs, record_iters, traced
        self.rng = np.random.default_rng(seed)
        self.t0 = t0_ns
        self.recs: list[tuple] = []
        self.seq = 0
        self.walks: list[WalkTruth] = []
        self.windows: list[WindowTruth] = []
        self.pfn = {p: 0x128D38 + 0x11 * p for p in range(layout.pages)}
        self.items = [layout.items_of(p) for p in range(layout.pages)]
        self.plans = {}

    # -- helpers -------------------------------------------------------------
    def rec(self, t, kind, pid, cpu, a=None, b=None, c=None):
        self.recs.append((int(t), self.seq, kind, pid, cpu, a, b, c))
        self.seq += 1

    def cost(self, func, base):
        return base + (self.c.trace_ns if func in self.traced else 0.0)

    def call(self, t, pid, cpu, func, depth, dur, ret):
        """a traced call without traced children: entry + return records; returns end time"""
        if func in self.traced:
            self.rec(t, E, pid, cpu, func, depth)
            t2 = t + dur
            self.rec(t2, X, pid, cpu, func, depth, ret)
            return t2
        return t + dur

    def plan(self, item):
        key = (item, self.patched)
        if key not in self.plans:
            self.plans[key] = window_plan(self.L, item, self.patched)
        return self.plans[key]

    # -- one walk ------------------------------------------------------------
    def walk(self, wid: int, task: Task, caller: str, page: int, t: float, cpu: int) -> tuple[float, int]:
        c, rng, L = self.c, self.rng, self.L
        rmap_one, done, try_lock, invalid_fn, _ = CALLERS[caller]
        pid = task.pid
        wt = WalkTruth(wid, caller, page, pid, task.comm, cpu, int(t), 0)
        self.rec(t, PT, pid, cpu, "walk_start", wid)
        t += 40
        wt.start_ns = int(t)
        self.rec(t, E, pid, cpu, WALK, 0, wid)
        t += self.cost(WALK, c.entry_ns)
        items = self.items[page]
        handled = 0
        total = L.mappings
        win_no = 0
        writer_pending = None  # release time of a writer that holds the lock
        stop = False
        for pass_no in (0, 1):
            for item in items:
                # cond_resched() at the top of the item loop (lock not held)
                t += c.resched_ns
                if rng.random() < c.p_offcpu:
                    t, cpu = self.offcpu(t, pid, task, cpu, 1)
                self.rec(t, PT, pid, cpu, "ksm_item", item.addr, item.mm)
                t += 20
                slow = False
                ok = writer_pending is None or t >= writer_pending
                self.rec(t, E, pid, cpu, "down_read_trylock", 1) if "down_read_trylock" in self.traced else None
                t += self.cost("down_read_trylock", c.trylock_ns)
                if "down_read_trylock" in self.traced:
                    self.rec(t, X, pid, cpu, "down_read_trylock", 1, 1 if ok else 0)
                self.rec(t, PT, pid, cpu, "trylock_ret", 1 if ok else 0)
                if not ok:
                    if try_lock:
                        wt.bailout = True
                        stop = True
                        break
                    slow = True
                    self.rec(t, E, pid, cpu, "down_read", 1)
                    t += 60
                    cb = t
                    self.rec(cb, PT, pid, cpu, "cbegin", "READ")
                    if "rwsem_down_read_slowpath" in self.traced:
                        self.rec(t, E, pid, cpu, "rwsem_down_read_slowpath", 2)
                    t = max(t + 500, writer_pending + 400)
                    if "rwsem_down_read_slowpath" in self.traced:
                        self.rec(t, X, pid, cpu, "rwsem_down_read_slowpath", 2, 0)
                    self.rec(t, PT, pid, cpu, "cend", 0)
                    t += 40
                    self.rec(t, X, pid, cpu, "down_read", 1, 0)
                writer_pending = None
                t_lock = t
                win_no += 1
                n, hits = self.plan(item)
                hitpos = {p: (m, v) for p, m, v in hits}
                cnt = dict(iterations=0, rmap_one=0, skip_addr=0, skip_mm=0, invalid=0)
                exited = False
                held_gap_at = int(rng.integers(1, n + 2)) if rng.random() < c.p_offcpu_held else -1
                pos = 0
                # iterate: positions 1..n return chains, position n+1 returns NULL
                while True:
                    nxt = pos + 1
                    if not self.record_iters:
                        # jump to the next interesting position without per-iteration records
                        cand = [p for p in hitpos if p > pos] + [n + 1]
                        if held_gap_at > pos:
                            cand.append(held_gap_at)
                        nxt = min(cand)
                        t += (nxt - pos - 1) * c.iter_ns  # silent iterations (and their loop bodies)
                        cnt["iterations"] += nxt - pos - 1  # all of them address skips
                        cnt["skip_addr"] += nxt - pos - 1
                    pos = nxt
                    fn = ITER_FIRST if pos == 1 else ITER_NEXT
                    ret_chain = pos <= n
                    if self.record_iters:
                        self.rec(t, E, pid, cpu, fn, 1)
                        t += self.cost(fn, c.iter_ns)
                        if ret_chain:
                            m, v = chain_at(L, item, self.patched, pos)
                            self.rec(t, X, pid, cpu, fn, 1, (item, pos, m, v))
                        else:
                            self.rec(t, X, pid, cpu, fn, 1, None)
                    else:
                        t += c.iter_ns
                    if not ret_chain:
                        break
                    cnt["iterations"] += 1
                    if pos == held_gap_at:  # cond_resched() inside the loop, lock held
                        t, cpu = self.offcpu(t, pid, task, cpu, 1)
                    if pos not in hitpos:
                        cnt["skip_addr"] += 1
                        continue
                    m, v = hitpos[pos]
                    if (m == item.mm) != (pass_no == 0):
                        cnt["skip_mm"] += 1
                        continue
                    if invalid_fn:
                        inv = bool(rng.random() < c.p_invalid)
                        t = self.call(t, pid, cpu, invalid_fn, 1, self.cost(invalid_fn, c.invalid_ns), 1 if inv else 0)
                        if inv:
                            cnt["invalid"] += 1
                            continue
                    handled += 1
                    cnt["rmap_one"] += 1
                    t, cpu = self.rmap_one_call(t, pid, task, cpu, rmap_one, item, page, m, v)
                    if rmap_one == "folio_referenced_one" and handled >= total:
                        exited = True  # rmap_one returned false
                        break
                    if done:
                        fin = handled >= total
                        t = self.call(t, pid, cpu, done, 1, self.cost(done, c.done_ns), 1 if fin else 0)
                        if fin:
                            exited = True
                            break
                # read_unlock
                t_unlock = t
                self.rec(t, PT, pid, cpu, "unlock", win_no)
                t = self.call(t, pid, cpu, "up_read", 1, self.cost("up_read", c.unlock_ns), 0)
                w = WindowTruth(wid, win_no, pass_no, int(t_lock), int(t_unlock), slow=slow, item_addr=item.addr, **cnt)
                wt.windows.append(w)
                self.windows.append(w)
                self.rec(t, PT, pid, cpu, "counter", w)
                if "counter" in self.traced:
                    t += c.printk_ns
                # a writer arriving during this hold: it waits for our unlock, then holds the lock
                if rng.random() < c.p_writer:
                    arrive = t_lock + (t_unlock - t_lock) * float(rng.uniform(0.2, 0.9))
                    got = t_unlock + 300
                    hold = float(rng.uniform(5_000, 60_000))
                    self.rec(arrive, PT, pid, cpu, "writer", (int(arrive), int(got), int(got + hold), wid))
                    writer_pending = got + hold
                if exited:
                    wt.early_exit = True
                    stop = True
                    break
            if stop:
                break
        t += self.cost(WALK, c.exit_ns)
        self.rec(t, X, pid, cpu, WALK, 0, wid)
        wt.end_ns = int(t)
        t += 40
        self.rec(t, PT, pid, cpu, "walk_end", wid)
        wt.end_cpu = cpu
        self.walks.append(wt)
        return t, cpu

    def rmap_one_call(self, t, pid, task, cpu, fn, item, page, m, v):
        c, rng = self.c, self.rng
        traced = fn in self.traced
        if traced:
            self.rec(t, E, pid, cpu, fn, 1)
        t += c.trace_ns if traced else 0
        t = self.call(t, pid, cpu, "page_vma_mapped_walk", 2, self.cost("page_vma_mapped_walk", c.pvmw_ns), 1)
        t += c.rmap_one_ns * 0.5
        addr = item.addr
        if fn == "try_to_migrate_one":
            dirty = int(rng.random() < 0.3)
            self.rec(t, PT, pid, cpu, "set_pte", addr, migration_pte(self.pfn[page], 1, dirty, 30 if dirty else 28))
        elif fn == "remove_migration_pte":
            self.rec(t, PT, pid, cpu, "remove_pte", addr, present_pte(self.pfn[page] + 0x1000,
                                                                      0x067 if rng.random() < 0.3 else 0x025))
        if traced and rng.random() < c.p_irq:
            t += 200
            self.rec(t, IRQ_IN, pid, cpu)
            self.rec(t, E, pid, cpu, "__sysvec_apic_timer_interrupt", 2)
            t += 300
            d = float(rng.uniform(*c.irq_ns))
            self.rec(t, E, pid, cpu, "hrtimer_interrupt", 3)
            self.rec(t + d, X, pid, cpu, "hrtimer_interrupt", 3, 0)
            t += d + 250
            self.rec(t, X, pid, cpu, "__sysvec_apic_timer_interrupt", 2, 0)
            self.rec(t, IRQ_OUT, pid, cpu)
            t += 150
        t += c.rmap_one_ns * 0.5
        if traced:
            self.rec(t, X, pid, cpu, fn, 1, 1)
        return t, cpu

    def offcpu(self, t, pid, task, cpu, depth):
        """scheduled out in cond_resched(): __cond_resched() { schedule() { ... } } possibly on another CPU"""
        rng = self.rng
        gap = float(rng.exponential(self.c.offcpu_mean_ns)) + 5_000
        tr = "__cond_resched" in self.traced
        if tr:
            self.rec(t, E, pid, cpu, "__cond_resched", depth)
            t += 100
            self.rec(t, E, pid, cpu, "schedule", depth + 1)
        t += 200
        self.rec(t, OFF, pid, cpu)
        t += gap
        if rng.random() < self.c.p_migrate:
            cpu = task.cpus[1] if cpu == task.cpus[0] else task.cpus[0]
        self.rec(t, ON, pid, cpu)
        t += 300
        if tr:
            self.rec(t, X, pid, cpu, "schedule", depth + 1, 0)
            t += 80
            self.rec(t, X, pid, cpu, "__cond_resched", depth, 1)
        return t, cpu

    # -- a whole scenario -----------------------------------------------------
    def run(self, n_walks: int, tasks: list[Task], callers_override: tuple | None = None):
        """Distribute n_walks over tasks (round robin) and run them.

        Tasks come in pairs that share two CPUs and take turns (one walk unit after the other: a unit is
        try_to_migrate + remove_migration_ptes of one page for migration callers, else one walk), so a CPU
        switches between tasks (function_graph task-change banners) without two tasks ever running on one
        CPU at once.  Pairs run concurrently on their own CPUs; a walker can migrate between its pair's CPUs
        after an off-CPU gap.
        """
        per_task = [n_walks // len(tasks) + (1 if i < n_walks % len(tasks) else 0) for i in range(len(tasks))]
        units = []
        for ti, task in enumerate(tasks):
            callers = callers_override or task.callers
            seq = [(callers[k % len(callers)], (k // len(callers)) % self.L.pages) for k in range(per_task[ti])]
            n = len(callers)
            units.append([seq[a:a + n] for a in range(0, len(seq), n)])
        wid = 0
        for pi in range(0, len(tasks), 2):
            pair = [pi] + ([pi + 1] if pi + 1 < len(tasks) else [])
            t = self.t0 + pi * 3_561.0 + float(self.rng.uniform(0, 3000))
            cpus = tasks[pi].cpus
            cpu = cpus[0]
            order = []
            for u in range(max(len(units[x]) for x in pair)):
                for x in pair:
                    if u < len(units[x]):
                        order.append((x, u))
            batch_open = {x: False for x in pair}
            for x, u in order:
                task = tasks[x]
                unit = units[x][u]
                for caller, page in unit:
                    migrating = caller in ("try_to_migrate", "remove_migration_ptes")
                    if migrating and not batch_open[x]:
                        self.rec(t, PT, task.pid, cpu, "batch_start", task.comm)
                        t += 3_000
                        batch_open[x] = True
                    t, cpu = self.walk(wid, task, caller, page, t, cpu)
                    wid += 1
                    if migrating and caller == unit[-1][0]:
                        self.pfn[page] = self.pfn[page] + 0x1000  # migrated: new PFN
                    t += float(self.rng.uniform(*self.c.gap_ns))
                if batch_open[x] and (u % 4 == 3 or u == len(units[x]) - 1):
                    self.rec(t, PT, task.pid, cpu, "batch_end", task.comm)
                    t += 1_500
                    batch_open[x] = False
        self.recs.sort(key=lambda r: (r[0], r[1]))
        return self


def migration_pte(pfn: int, young: int = 1, dirty: int = 0, typ: int = 28) -> int:
    """x86-64 migration swap entry as set_migration_pte prints it (docs/walk-rules.md (d): the page key; the
    decoding is checked against two real 6.1 lines in tests/test_synth.py)."""
    off = pfn | (young << 34) | (dirty << 35)
    return (typ << 59) | (((~off) & ((1 << 50) - 1)) << 9)


def present_pte(pfn: int, flags: int = 0x025) -> int:
    """x86-64 present PTE (NX set) as remove_migration_pte prints it."""
    return (1 << 63) | (pfn << 12) | flags


def cost_summary(layout: Layout, caller: str = "remove_migration_ptes", costs: Costs | None = None) -> dict:
    """Closed-form cost of one walk of page 0 with and without the patch (no scheduling noise)."""
    costs = costs or Costs()
    out = {}
    for patched in (False, True):
        c = replace(costs, p_offcpu=0, p_offcpu_held=0, p_writer=0, p_irq=0, p_invalid=0, trace_ns=0)
        sim = Simulator(layout, patched=patched, costs=c, seed=0, record_iters=False, traced=frozenset())
        sim.walk(0, TASKS[0], caller, 0, 0.0, 0)
        w = sim.walks[0]
        ws = w.windows
        out["patched" if patched else "unpatched"] = dict(
            windows=len(ws), iterations=sum(x.iterations for x in ws), skip_addr=sum(x.skip_addr for x in ws),
            skip_mm=sum(x.skip_mm for x in ws), rmap_one=sum(x.rmap_one for x in ws),
            max_window_iterations=max((x.iterations for x in ws), default=0),
            walk_ns=w.end_ns - w.start_ns, max_hold_ns=max((x.hold_ns for x in ws), default=0),
            early_exit=w.early_exit)
    return out
