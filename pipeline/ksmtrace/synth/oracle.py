"""docs/walk-rules.md applied to rendered rows: the values the SQL views must produce from the printed evidence.

Input rows (``render.Row``) carry exactly what a parser reads from the text: quantised ``ts``, ``pid``, ``cpu``,
event name, fields, callchain, and for function_graph/probes ``func``/``kind``/``depth``/``dur``/``ret``/``parent``.
Rows are in file order.  Nothing here looks at the model.

Choices where docs/walk-rules.md is silent (checked against queries/1x_*.sql; keep in step):
* function_graph: a walk whose entry is missing (trace began mid-walk) gets NULL window columns; a walk whose
  exit is missing keeps the windows seen, the last one open (end_ns/hold_ns NULL) when the trace ended in it.
* Counts over a walk without windows: n_windows/slow_windows/rmap_one/invalid 0; iterations and skipped 0
  when the iterators are traced in the run, else NULL; holds and max_window_iterations NULL.
* function_graph caller = the retaddr symbol without ``+off/size`` (NULL without funcgraph-retaddr).
* kprobe extras: bailout = the walk's last event inside it is a failed trylock return; early_exit = the last
  window's last iterator return was non-zero.  The ``ksm_item`` probe sits on rmap_walk_ksm too: an entry on
  rmap_walk_ksm whose fields carry ``addr`` is an item probe, not a walk entry.
* bpftrace ``ksm_walk:`` summary: caller from ``cb=`` through the callback -> caller table; cpu = the first
  window line's CPU.  Unpaired tracepoint end: cpu = the end event's CPU.
* (d) ignores rmap tracepoints and lock contention events even when their callchain holds rmap_walk_ksm.
* (f) anon_vma_lock is NULL when no contention_begin of the run carries a callchain or stack.
* Loss markers take the timestamp of the next line; the generator only places one where the previous and
  the next line lie inside the same walks, so either convention gives the same ``complete``.
"""
from __future__ import annotations

from collections import defaultdict

import pandas as pd

from ..db import documented_columns
from .model import CALLBACKS, ITER_FIRST, ITER_NEXT, WALK

ITERS = (ITER_FIRST, ITER_NEXT)
#: rmap_one callback -> the caller it implies (10_config.sql _rmap_one_callbacks)
CALLBACK_CALLER = {"try_to_migrate_one": "try_to_migrate", "remove_migration_pte": "remove_migration_ptes",
                   "try_to_unmap_one": "try_to_unmap", "folio_referenced_one": "folio_referenced",
                   "page_idle_clear_pte_refs_one": "page_idle", "damon_folio_mkold_one": "damon",
                   "damon_folio_young_one": "damon"}
INVALID_FNS = ("invalid_folio_referenced_vma",)
WALKERS = {"rmap_walk_ksm": "ksm", "rmap_walk_anon": "anon", "rmap_walk_file": "file"}
NOT_CALLER = {"rmap_walk", "rmap_walk_locked", "rmap_walk_ksm", "rmap_walk_anon", "rmap_walk_file"}
LOCK_PRIMS = ("rwsem_down_", "down_read", "down_write", "__down", "_raw_spin", "queued_", "native_queued",
              "__traceiter_", "trace_contention", "lock_")

#: the columns of the expected frames: the views' documented columns (their @column lines, queries/*.sql)
#: less the run's own; windows also carry their walk's task and span, to match them without walk ids
_RUN_KEYS = ("run_id", "label")
WALK_COLS = [c for c, _ in documented_columns("walks", without=_RUN_KEYS)]
WIN_COLS = [c for c, _ in documented_columns("lock_windows", without=_RUN_KEYS)] + ["pid", "walk_start_ns",
                                                                                    "walk_end_ns"]
WAIT_COLS = [c for c, _ in documented_columns("lock_waits", without=_RUN_KEYS + ("callchain",))]
_TYPES = {c: t for v in ("walks", "lock_windows", "lock_waits") for c, t in documented_columns(v)}
INT_COLS = {c for c, t in _TYPES.items() if t in ("BIGINT", "INTEGER")} | {"walk_start_ns", "walk_end_ns"}
BOOL_COLS = {c for c, t in _TYPES.items() if t == "BOOLEAN"}


def frame(cols, rows) -> pd.DataFrame:
    data = {}
    for c in cols:
        vals = [r.get(c) for r in rows]
        if c in INT_COLS:
            data[c] = pd.array([None if v is None else int(v) for v in vals], dtype="Int64")
        elif c in BOOL_COLS:
            data[c] = pd.array([None if v is None else bool(v) for v in vals], dtype="boolean")
        else:
            data[c] = pd.array([None if v is None else str(v) for v in vals], dtype="string")
    return pd.DataFrame(data, columns=cols)


def _name(ev: str) -> str:
    return ev.split(":", 1)[1] if ev and ":" in ev else ev


def _num(v) -> int | None:
    if v is None:
        return None
    s = str(v)
    return int(s, 16) if s.lower().startswith("0x") else int(s)


def _sum(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) if xs else None


def _max(xs):
    xs = [x for x in xs if x is not None]
    return max(xs) if xs else None


def loss_times(rows) -> list[int]:
    return [r.ts for r in rows if r.ev == "__lost_events" and r.ts is not None]


def _complete(w, losses) -> bool:
    if w["start_ns"] is None or w["end_ns"] is None:
        return False
    return not any(w["start_ns"] <= t <= w["end_ns"] for t in losses)


TOL_NS = 1000 + 60000  # 02_coverage.sql _walk_inconsistent: resolution (>= 1 us) + 60 us tracer overhead


def apply_coverage(walks, rows, *, per_cpu_stats=None, snapshot=False, res_ns=1000) -> int:
    """Issue #16 (queries/02_coverage.sql), from the rendered rows: a complete walk becomes incomplete
    when it starts before the run's complete interval (per-CPU stats: the latest first timestamp of the CPUs
    that overran), overlaps a loss marker's per-CPU gap (previous record of that CPU, marker], overlaps a
    stretch between its task leaving a CPU and the first record of the CPU it moved to, when that record
    comes later (function_graph snapshots without stats), or when its
    span disagrees with its printed duration / a window outlasts it. Returns how many it changed."""
    first, prev_on, gaps = {}, {}, []
    pending = []  # markers waiting for their CPU's next record (no timestamp of their own)
    for r in rows:
        if r.ev == "__lost_events":
            if r.cpu is not None:
                lo = prev_on.get(r.cpu, -(1 << 63))
                if r.ts is not None:
                    gaps.append((lo, r.ts))
                else:
                    pending.append((r.cpu, lo))
            continue
        if r.ts is None or r.cpu is None:
            continue
        first.setdefault(r.cpu, r.ts)
        prev_on[r.cpu] = r.ts
        for k in [k for k in pending if k[0] == r.cpu]:
            gaps.append((k[1], r.ts))
            pending.remove(k)
    gaps += [(lo, 1 << 63) for _, lo in pending]
    start_cut = None
    if per_cpu_stats:
        cut = [first[int(c)] for c, d in per_cpu_stats.items() if d.get("overrun", 0) > 0 and int(c) in first]
        start_cut = max(cut) if cut else None
    # CPU changes of a task into a CPU whose first record is after the task left its old CPU
    holes: dict = {}
    if snapshot and not per_cpu_stats:
        last = {}
        for r in rows:
            if r.kind not in ("entry", "leaf", "exit") or r.ts is None or r.cpu is None:
                continue
            p = last.get(r.pid)
            if p is not None and p[0] != r.cpu and first[r.cpu] > p[1]:
                holes.setdefault(r.pid, []).append((p[1], first[r.cpu]))
            last[r.pid] = (r.cpu, r.ts)
    tol = max(res_ns or 1000, 1000) + 60000
    n = 0
    for w in walks:
        s, e = w.get("start_ns"), w.get("end_ns")
        if not w.get("complete") or s is None or e is None:
            continue
        d, mh = w.get("duration_ns"), w.get("max_hold_ns")
        bad = (start_cut is not None and s < start_cut) or any(lo < e and hi > s for lo, hi in gaps)
        bad = bad or any(lo < e and hi > s for lo, hi in holes.get(w.get("pid"), ()))
        if d is not None:
            bad = bad or (w.get("evidence") == "function-graph" and abs((e - s) - d) > tol + d // 100)
            bad = bad or (mh is not None and mh > d + tol)
        if bad:
            w["complete"] = False
            n += 1
    return n


def _finish_walk(w, wins, iters_known=False):
    """walk columns from its windows (function_graph / kprobe / counters).

    iters_known: the iterators are traced in the run, so a walk without windows has 0 iterations and 0 skips
    (as the SQL coalesces them); otherwise sums over zero windows are NULL."""
    w["n_windows"] = len(wins)
    holds = [x["hold_ns"] for x in wins]
    w["max_hold_ns"], w["total_hold_ns"] = _max(holds), _sum(holds)
    its = [x["iterations"] for x in wins]
    w["iterations"] = _sum(its) if all(i is not None for i in its) else None
    w["max_window_iterations"] = _max(its) if w["iterations"] is not None else None
    sk = [x["skipped"] for x in wins]
    w["skipped"] = _sum(sk) if all(s is not None for s in sk) else None
    for k in ("skip_addr", "skip_mm"):
        v = [x.get(k) for x in wins]
        w[k] = _sum(v) if v and all(s is not None for s in v) else None
    if iters_known and not wins:
        w["iterations"] = w["skipped"] = 0
    for i, x in enumerate(wins):
        x["window_no"] = i + 1
        x["walk_id"] = w.get("walk_id")
        x["pid"] = w["pid"]
        x["walk_start_ns"], x["walk_end_ns"] = w["start_ns"], w["end_ns"]


# --------------------------------------------------------------------------- (a) tracepoints + (e) inside
def oracle_tracepoint(rows, evidence="tracepoint"):
    losses = loss_times(rows)
    walks = []
    stacks = defaultdict(list)
    for r in rows:
        n = _name(r.ev)
        if n not in ("rmap_walk_start", "rmap_walk_end", "rmap_walk"):
            continue
        base = dict(evidence=evidence, page_type=r.f.get("page_type"), pid=r.pid, comm=r.comm)
        if r.chain:
            base["caller"] = chain_caller(r.chain)
        if n == "rmap_walk":
            d = int(r.f["duration_ns"])
            walks.append(dict(base, cpu=r.cpu, start_ns=r.ts - d, end_ns=r.ts, duration_ns=d))
        elif n == "rmap_walk_start":
            w = dict(base, cpu=r.cpu, start_ns=r.ts, end_ns=None, duration_ns=None)
            stacks[(r.pid, r.f["folio"], r.f["rwc"])].append(w)
            walks.append(w)
        else:
            st = stacks[(r.pid, r.f["folio"], r.f["rwc"])]
            if st:
                w = st.pop()
                w["end_ns"] = r.ts
                w["duration_ns"] = r.ts - w["start_ns"]
            else:
                walks.append(dict(base, cpu=r.cpu, start_ns=None, end_ns=r.ts, duration_ns=None))
    walks.sort(key=lambda w: (w["start_ns"] if w["start_ns"] is not None else w["end_ns"], w["pid"]))
    for i, w in enumerate(walks):
        w["walk_id"] = i + 1
        w["complete"] = _complete(w, losses)
    return walks, []


def chain_caller(chain):
    for i, s in enumerate(chain):
        if s in WALKERS or s in ("rmap_walk", "rmap_walk_locked"):
            for s2 in chain[i + 1:]:
                if s2 not in NOT_CALLER:
                    return s2
            return None
    return None


def counter_windows(rows):
    """counter lines (e) -> windows (dicts with pid, ts, cpu)."""
    out = []
    for r in rows:
        if not r.f.get("_counter"):
            continue
        f = r.f
        hold, it, sa, sm, ro = f.get("hold_ns"), f.get("iterations"), f.get("skip_addr"), f.get("skip_mm"), f.get(
            "rmap_one")
        if sa is not None and sm is not None:
            sk = sa + sm
        elif it is not None and ro is not None:
            sk = it - ro
        else:
            sk = None
        cons = (sa + sm + ro == it) if None not in (sa, sm, ro, it) else None
        out.append(dict(_ts=r.ts, _pid=r.pid, _cpu=r.cpu, _comm=r.comm, start_ns=r.ts - hold, end_ns=r.ts,
                        hold_ns=hold, iterations=it, rmap_one=ro, skipped=sk, skip_addr=sa, skip_mm=sm, invalid=None,
                        slow=None, evidence="counters", counters_consistent=cons))
    return out


def attach_counters(walks, wins_of, rows, losses):
    """(e): counter lines inside another kind's walk fill it; the others become counter walks."""
    cw = counter_windows(rows)
    free = []
    by_pid = defaultdict(list)
    for w in walks:
        if w["start_ns"] is not None and w["end_ns"] is not None:
            by_pid[w["pid"]].append(w)
    inside = defaultdict(list)
    for x in cw:
        host = None
        for w in by_pid.get(x["_pid"], ()):
            if w["start_ns"] <= x["_ts"] <= w["end_ns"]:
                host = w
                break
        if host is None:
            free.append(x)
        else:
            inside[id(host)].append(x)
    all_wins = []
    for w in walks:
        own = wins_of.get(id(w), [])
        cl = inside.get(id(w), [])
        if cl and not own:
            tmp = dict(w)
            _finish_walk(tmp, cl)
            for k in ("n_windows", "max_hold_ns", "total_hold_ns", "iterations", "max_window_iterations",
                      "rmap_one", "skipped", "skip_addr", "skip_mm"):
                if w.get(k) is None:
                    w[k] = tmp[k] if k != "rmap_one" else _sum([x["rmap_one"] for x in cl])
            own = cl
            for i, x in enumerate(own):
                x["window_no"], x["walk_id"], x["pid"] = i + 1, w["walk_id"], w["pid"]
                x["walk_start_ns"], x["walk_end_ns"] = w["start_ns"], w["end_ns"]
        all_wins.extend(own)
    # standalone counter lines: grouped by a following ksm_walk summary line of the same pid
    summaries = [r for r in rows if r.f.get("_summary")]
    new = []
    pending = defaultdict(list)
    events = sorted([(x["_ts"], 0, i, x) for i, x in enumerate(free)] +
                    [(r.ts, 1, i, r) for i, r in enumerate(summaries)], key=lambda e: (e[0], e[1], e[2]))
    # file order: counters and summaries are ordered by ts; a summary is printed after its windows
    for ts, typ, _, obj in events:
        if typ == 0:
            pending[obj["_pid"]].append(obj)
        else:
            grp = pending.pop(obj.pid, [])
            if not grp:
                continue
            d = int(obj.f["walk_ns"])
            w = dict(evidence="counters", page_type="ksm", pid=obj.pid, comm=obj.comm, cpu=grp[0]["_cpu"],
                     start_ns=obj.ts - d, end_ns=obj.ts, duration_ns=d, complete=True,
                     caller=CALLBACK_CALLER.get((obj.f.get("cb") or "").split("+")[0]),
                     rmap_one=_sum([x["rmap_one"] for x in grp]), n_events=len(grp))
            new.append((w, grp))
    for pid, grp in pending.items():
        for x in grp:
            w = dict(evidence="counters", page_type="ksm", pid=pid, comm=x["_comm"], cpu=x["_cpu"],
                     start_ns=x["start_ns"], end_ns=x["end_ns"], duration_ns=x["hold_ns"], complete=True,
                     rmap_one=x["rmap_one"], n_events=1)
            new.append((w, [x]))
    return all_wins, new


def finish_counter_walks(new, start_id):
    walks, wins = [], []
    new.sort(key=lambda p: (p[0]["start_ns"], p[0]["pid"]))
    for i, (w, grp) in enumerate(new):
        w["walk_id"] = start_id + i
        _finish_walk(w, grp)
        w["rmap_one"] = _sum([x["rmap_one"] for x in grp])
        walks.append(w)
        wins.extend(grp)
    return walks, wins


# --------------------------------------------------------------------------- (b) function_graph
def oracle_funcgraph(rows):
    losses = loss_times(rows)
    iters_traced = any(r.func in ITERS for r in rows if r.kind in ("entry", "leaf", "exit"))
    by_pid = defaultdict(list)
    for r in rows:
        if r.kind in ("entry", "leaf", "exit"):
            by_pid[r.pid].append(r)
    walks, wins_all = [], []
    for pid, rs in by_pid.items():
        i = 0
        n = len(rs)
        while i < n:
            r = rs[i]
            if r.func in WALKERS and r.kind == "entry":
                d = r.depth
                j = i + 1
                while j < n and not (rs[j].kind == "exit" and rs[j].depth == d):
                    j += 1
                ex = rs[j] if j < n else None
                kids = [k for k in rs[i + 1:j] if k.depth == d + 1 and k.kind in ("entry", "leaf")]
                # return time of an entry child: its exit at depth d+1
                rt = {}
                for a in range(i + 1, j):
                    k = rs[a]
                    if k.depth == d + 1 and k.kind == "entry":
                        b = a + 1
                        while b < j and not (rs[b].kind == "exit" and rs[b].depth == d + 1):
                            b += 1
                        rt[id(k)] = rs[b].ts if b < j else None
                    elif k.depth == d + 1 and k.kind == "leaf":
                        rt[id(k)] = k.ts + k.dur
                w = dict(evidence="function-graph", page_type=WALKERS[r.func], pid=pid, comm=r.comm, cpu=r.cpu,
                         start_ns=r.ts, end_ns=ex.ts if ex else None, duration_ns=ex.dur if ex else None,
                         caller=r.parent.split("+")[0] if r.parent else None)
                wins = _fg_windows(kids, rt, iters_traced, w, ex is not None)
                walks.append((w, wins))
                i = j + 1 if ex else n
                continue
            if r.func in WALKERS and r.kind == "exit":
                w = dict(evidence="function-graph", page_type=WALKERS[r.func], pid=pid, comm=r.comm, cpu=r.cpu,
                         start_ns=None, end_ns=r.ts, duration_ns=r.dur, caller=None)
                for k in ("n_windows", "max_hold_ns", "total_hold_ns", "iterations", "max_window_iterations",
                          "rmap_one", "skipped", "slow_windows", "bailout", "invalid", "early_exit"):
                    w[k] = None
                walks.append((w, None))
            i += 1
    walks.sort(key=lambda p: (p[0]["start_ns"] if p[0]["start_ns"] is not None else p[0]["end_ns"], p[0]["pid"]))
    out_w = []
    for idx, (w, wins) in enumerate(walks):
        w["walk_id"] = idx + 1
        w["complete"] = _complete(w, losses)
        w["skip_addr"] = w["skip_mm"] = None
        if wins is not None:
            for x in wins:
                x["walk_id"] = w.get("walk_id")
                x["walk_start_ns"], x["walk_end_ns"] = w["start_ns"], w["end_ns"]
            wins_all.extend(wins)
        out_w.append(w)
    return out_w, wins_all


def _fg_windows(kids, rt, iters_traced, w, closed):
    wins = []
    cur = None
    last = len(kids) - 1
    rmap_one = invalid = slow = 0
    bailout = False
    early = None
    for i, k in enumerate(kids):
        nxt = kids[i + 1] if i < last else None
        f = k.func
        if f == "down_read_trylock":
            if k.ret is not None:
                ok = _num(k.ret) != 0
            else:
                ok = not (nxt is not None and nxt.func == "down_read") and i != last
            if ok:
                cur = dict(start=rt[id(k)], kids=[], slow=False)
            elif nxt is None and closed:
                bailout = True
        elif f == "down_read":
            cur = dict(start=rt[id(k)], kids=[], slow=True)
        elif f == "up_read":
            if cur is not None:
                cur["end"] = k.ts
                cur["up"] = k
                wins.append(cur)
                cur = None
        else:
            if cur is not None:
                cur["kids"].append(k)
        if f in CALLBACKS:
            rmap_one += 1
    if cur is not None and not closed:
        # the trace ended inside this window (as the SQL): start known, end and hold NULL
        cur["end"] = None
        wins.append(cur)
    out = []
    for x in wins:
        ks = x["kids"]
        its = [k for k in ks if k.func in ITERS]
        if not iters_traced:
            n_it = None
        elif its and its[0].ret is not None:
            n_it = sum(1 for k in its if _num(k.ret) != 0)
        else:
            n_it = len(its)
            if its and ks[-1] is its[-1] and x["end"] is not None:
                n_it -= 1
        ro = sum(1 for k in ks if k.func in CALLBACKS)
        inv = 0
        for a, k in enumerate(ks):
            if k.func in INVALID_FNS:
                if k.ret is not None:
                    inv += _num(k.ret) != 0
                else:
                    ok = False
                    for k2 in ks[a + 1:]:
                        if k2.func in CALLBACKS:
                            ok = True
                            break
                        if k2.func in ITERS:
                            break
                    inv += not ok
        out.append(dict(start_ns=x["start"], end_ns=x["end"],
                        # clamped at 0 as in the SQL: a hold below the whole-us timestamp resolution
                        hold_ns=None if x["end"] is None else max(0, x["end"] - x["start"]), iterations=n_it,
                        rmap_one=ro, invalid=inv, skipped=None if n_it is None else n_it - ro - inv, skip_addr=None,
                        skip_mm=None, slow=x["slow"], evidence="function-graph", counters_consistent=None,
                        pid=w["pid"]))
        invalid += inv
    slow = sum(1 for x in out if x["slow"])
    if iters_traced and wins:
        lw = wins[-1]
        its = [k for k in lw["kids"] if k.func in ITERS]
        if its and its[-1].ret is not None:
            early = _num(its[-1].ret) != 0
        else:
            early = bool(its) and (lw["kids"][-1] is not its[-1] or lw["end"] is None)
    elif iters_traced:
        early = False
    _finish_walk(w, out, iters_traced)
    w.update(rmap_one=rmap_one, invalid=sum(x["invalid"] for x in out), slow_windows=slow, bailout=bailout,
             early_exit=early, n_events=None)
    return out


# --------------------------------------------------------------------------- (c) kprobes
def oracle_kprobe(rows):
    losses = loss_times(rows)
    open_ = defaultdict(list)
    walks = []
    for r in rows:
        if r.kind not in ("entry", "return"):
            continue
        st = open_[r.pid]
        if r.func == WALK and r.kind == "entry" and "addr" not in r.f:
            w = dict(evidence="kprobe", page_type="ksm", pid=r.pid, comm=r.comm, cpu=r.cpu, start_ns=r.ts,
                     end_ns=None, duration_ns=None, caller=None, _ev=[], _wins=[])
            st.append(w)
            walks.append(w)
            continue
        if r.func == WALK and r.kind == "return":
            if st:
                w = st.pop()
                w["end_ns"], w["duration_ns"] = r.ts, r.ts - w["start_ns"]
                w["caller"] = r.parent.split("+")[0] if r.parent else None
            else:
                walks.append(dict(evidence="kprobe", page_type="ksm", pid=r.pid, comm=r.comm, cpu=r.cpu,
                                  start_ns=None, end_ns=r.ts, duration_ns=None,
                                  caller=r.parent.split("+")[0] if r.parent else None, _ev=None, _wins=[]))
            continue
        if st:
            st[-1]["_ev"].append(r)
    walks.sort(key=lambda w: (w["start_ns"] if w["start_ns"] is not None else w["end_ns"], w["pid"]))
    all_w = []
    for i, w in enumerate(walks):
        w["walk_id"] = i + 1
        w["complete"] = _complete(w, losses)
        evs = w.pop("_ev")
        w.pop("_wins")
        if evs is None:
            for k in ("n_windows", "max_hold_ns", "total_hold_ns", "iterations", "max_window_iterations",
                      "rmap_one", "skipped", "skip_addr", "skip_mm", "slow_windows", "invalid"):
                w[k] = None
            continue
        wins = []
        cur = None
        item_addr = None
        rmap_one = invalid = 0
        for r in evs:
            if r.ev == "ksm_item" and "addr" in r.f:
                item_addr = int(r.f["addr"], 16)
            elif r.func == "down_read_trylock" and r.kind == "return":
                if _num(r.f.get("ret", r.f.get("retval", r.f.get("arg1")))) != 0:
                    cur = dict(start_ns=r.ts, slow=False, it=[], ro=0, inv=0, addr=item_addr)
            elif r.func == "down_read" and r.kind == "return":
                cur = dict(start_ns=r.ts, slow=True, it=[], ro=0, inv=0, addr=item_addr)
            elif r.func == "up_read" and r.kind == "entry":
                if cur is not None:
                    cur["end_ns"] = r.ts
                    wins.append(cur)
                    cur = None
            elif r.func in ITERS and r.kind == "return":
                hit = _num(r.f.get("ret")) != 0
                if cur is not None:
                    cur["last_hit"] = hit
                    if hit:
                        cur["it"].append(r)
            elif r.func in CALLBACKS and r.kind == "entry":
                rmap_one += 1
                if cur is not None:
                    cur["ro"] += 1
            elif r.func in INVALID_FNS and r.kind == "return":
                if _num(r.f.get("ret")) != 0:
                    invalid += 1
                    if cur is not None:
                        cur["inv"] += 1
        if cur is not None:  # the trace ends inside this window: keep it open (as function_graph does)
            cur["end_ns"] = None
            wins.append(cur)
        out = []
        for x in wins:
            n_it = len(x["it"])
            sk = n_it - x["ro"] - x["inv"]
            sa = sm = None
            if x["addr"] is not None and all("vm_start" in r.f and "vm_end" in r.f for r in x["it"]):
                a = x["addr"]
                sa = sum(1 for r in x["it"] if not (int(r.f["vm_start"], 16) <= a < int(r.f["vm_end"], 16)))
                sm = sk - sa
            hold = None if x["end_ns"] is None else x["end_ns"] - x["start_ns"]
            out.append(dict(start_ns=x["start_ns"], end_ns=x["end_ns"], hold_ns=hold,
                            iterations=n_it, rmap_one=x["ro"], invalid=x["inv"], skipped=sk, skip_addr=sa,
                            skip_mm=sm, slow=x["slow"], evidence="kprobe", counters_consistent=None, pid=w["pid"]))
        _finish_walk(w, out, True)
        if not out:
            w["skipped"] = -rmap_one - invalid  # as the SQL: iterations(0) - rmap_one - invalid
        # extras (not fixed by docs/walk-rules.md; as the SQL does): bailout = the walk's last event inside it is a
        # failed trylock; early_exit = the last window's last iterator return was non-zero
        last = evs[-1] if evs else None
        bail = (last is not None and last.func == "down_read_trylock" and last.kind == "return"
                and _num(last.f.get("ret")) == 0)
        w.update(rmap_one=rmap_one, invalid=invalid, slow_windows=sum(1 for x in out if x["slow"]),
                 bailout=bool(bail) and w["end_ns"] is not None,
                 early_exit=wins[-1].get("last_hit") if wins else None)
        all_w.extend(out)
    return walks, all_w


# --------------------------------------------------------------------------- (d) perf callchains
SEPARATORS = {"mm_migrate_pages", "mm_migrate_pages_start"}
#: never perf-callchain evidence: they are kinds (a) and (f) (10_config.sql _callchain_ignored_events)
IGNORED_CC = {"rmap_walk", "rmap_walk_start", "rmap_walk_end", "contention_begin", "contention_end"}


def page_key(name, f):
    if "pte" not in f:
        return None
    pte = f["pte"] if isinstance(f["pte"], int) else int(str(f["pte"]), 16)
    if name == "remove_migration_pte":
        return (pte >> 12) & ((1 << 40) - 1)
    if name == "set_migration_pte":
        return (~(pte >> 9)) & ((1 << 34) - 1)
    return None


def oracle_perf_callchain(rows):
    tss = [r.ts for r in rows if r.ts is not None and r.ev != "__lost_events"]
    first, last = (min(tss), max(tss)) if tss else (None, None)
    losses = loss_times(rows)
    per_pid = defaultdict(list)
    for r in rows:
        n = _name(r.ev)
        sysname = r.ev.split(":", 1)[0] if ":" in (r.ev or "") else None
        walker = None if n in IGNORED_CC else next((s for s in (r.chain or ()) if s in WALKERS), None)
        if walker:
            per_pid[r.pid].append(("sel", r, walker))
        elif n in SEPARATORS or sysname == "compaction" or (n or "").startswith("mm_compaction"):
            per_pid[r.pid].append(("sep", r, None))
    groups = []
    for pid, evs in per_pid.items():
        cur = None
        for typ, r, walker in evs:
            if typ == "sep":
                cur = None
                continue
            n = _name(r.ev)
            key = (chain_caller(r.chain), WALKERS[walker], n)
            pk = page_key(n, r.f)
            addr = r.f.get("addr")
            if (cur is None or cur["key"] != key or (pk is not None and cur["pk"] is not None and pk != cur["pk"])
                    or (addr is not None and addr in cur["addrs"])):
                cur = dict(key=key, pk=pk, addrs=set(), ev=[])
                groups.append(cur)
            if cur["pk"] is None:
                cur["pk"] = pk
            if addr is not None:
                cur["addrs"].add(addr)
            cur["ev"].append(r)
    walks, wins = [], []
    groups.sort(key=lambda g: (g["ev"][0].ts, g["ev"][0].pid))
    for i, g in enumerate(groups):
        ev = g["ev"]
        s, e = ev[0].ts, ev[-1].ts
        w = dict(walk_id=i + 1, evidence="perf-callchain", page_type=g["key"][1], pid=ev[0].pid, comm=ev[0].comm,
                 cpu=ev[0].cpu, start_ns=s, end_ns=e, duration_ns=e - s, caller=g["key"][0], n_events=len(ev),
                 iterations=None, max_window_iterations=None, skipped=None, skip_addr=None, skip_mm=None,
                 slow_windows=None, bailout=None, invalid=None, early_exit=None)
        w["complete"] = (not any(s <= t <= e for t in losses)) and s != first and e != last
        gaps = []
        for a, b in zip(ev, ev[1:]):
            gaps.append(dict(walk_id=w["walk_id"], start_ns=a.ts, end_ns=b.ts, hold_ns=b.ts - a.ts, iterations=None,
                             rmap_one=None, skipped=None, skip_addr=None, skip_mm=None, invalid=None, slow=None,
                             evidence="perf-callchain", counters_consistent=None, pid=w["pid"]))
        for k, x in enumerate(gaps):
            x["window_no"] = k + 1
            x["walk_start_ns"], x["walk_end_ns"] = s, e
        w["n_windows"] = len(ev) - 1
        w["max_hold_ns"] = _max([x["hold_ns"] for x in gaps])
        w["total_hold_ns"] = _sum([x["hold_ns"] for x in gaps])
        w["rmap_one"] = len(ev)
        walks.append(w)
        wins.extend(gaps)
    return walks, wins


# --------------------------------------------------------------------------- (f) lock waits
def lock_caller(chain):
    for s in chain or ():
        if not s.startswith(LOCK_PRIMS):
            return s
    return None


def oracle_lock_waits(rows):
    anon = {r.f["lock_addr"] for r in rows if _name(r.ev) == "contention_begin" and r.chain and "rmap_walk_ksm" in r.chain}
    # without any callchain/stack on contention_begin the attribution is unknown: NULL, not false (as the SQL)
    known = any(r.chain for r in rows if _name(r.ev) == "contention_begin")
    open_ = defaultdict(list)
    out = []
    for r in rows:
        n = _name(r.ev)
        if n == "contention_begin":
            open_[r.pid].append(r)
        elif n == "contention_end":
            st = open_[r.pid]
            for i in range(len(st) - 1, -1, -1):
                if st[i].f["lock_addr"] == r.f["lock_addr"]:
                    b = st.pop(i)
                    ret = int(r.f["ret"])
                    out.append(dict(pid=r.pid, comm=b.comm, lock_addr=b.f["lock_addr"], flags=b.f["flags"],
                                    start_ns=b.ts, end_ns=r.ts, wait_ns=r.ts - b.ts,
                                    anon_vma_lock=(b.f["lock_addr"] in anon) if known else None, ret=ret,
                                    interrupted=ret != 0,
                                    caller=lock_caller(b.chain)))
                    break
    out.sort(key=lambda x: (x["start_ns"], x["pid"]))
    return out
