"""``ksmtrace export``: walks, lock windows and lock waits on a timeline, for the Perfetto UI.

Two formats:

* ``perfetto``: Perfetto's protobuf trace format (TrackEvent), written with the ``perfetto`` package's
  trace builder (``perfetto.trace_builder.proto_builder``) and its published ``perfetto_trace_pb2`` messages.
  Timestamps are integer nanoseconds, exactly those of the views.
* ``chrome-json``: the Chrome JSON trace event format, which the Perfetto UI and chrome://tracing read.
  ``ts``/``dur`` are microseconds by the format's definition; they are written as exact decimals with three
  fractional digits (``6711400591.665``), so no nanosecond is lost. ``displayTimeUnit`` is ``ns``.

Everything comes from the public views ``runs``, ``walks``, ``lock_windows`` and ``lock_waits``; no metric is
computed here. The only join of our own is the *holder* of a lock wait (``HOLDERS_SQL``): for a WRITE wait on
a lock a KSM walk takes (``lock_waits.anon_vma_lock``), the lock window of another task that was held when the
wait began and was released last before the wait ended. That is "the window that held the lock when one is
known"; it becomes a flow arrow from the window to the wait.

Layout: one top track per run (named by label and run id), under it one track per task (``comm pid``) that
walked or waited, holding a slice per walk (``rmap_walk_ksm`` ...), a child slice per lock window and the
task's lock waits; and, where the evidence has them, counter tracks per task (iterations, skipped, skip_addr,
skip_mm of each window: the window's value while it is held, 0 outside). On a task's track the walks are laid
out by time, each followed by its own windows (so touching windows stay siblings), and the waits are merged in
where they nest without cutting a walk or window. A slice that cannot nest there (a lock wait straddling two
windows, a window the views give a negative hold) goes to an extra ``(overlap N)`` track of that task; the
result counts them.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable

from .db import documented_columns
from .errors import KsmtraceError

FORMATS = ("perfetto", "chrome-json")

#: columns of walks / lock_windows / lock_waits written as slice arguments (NULL ones are left out): the
#: documented columns (their @column lines) less the label, the run id of a window or wait (its walk's or
#: track's), and the callchain
WALK_ARGS = tuple(c for c, _ in documented_columns("walks", without=("label",)))
WINDOW_ARGS = tuple(c for c, _ in documented_columns("lock_windows", without=("run_id", "label")))
WAIT_ARGS = tuple(c for c, _ in documented_columns("lock_waits", without=("run_id", "label", "callchain")))
#: lock_windows columns shown as counter tracks when the evidence has them
COUNTERS = ("iterations", "skipped", "skip_addr", "skip_mm")

#: the holder of a lock wait: see the module docstring. Reads only the public views (copied for the selected
#: runs into the temporary tables _x_walks, _x_lock_windows, _x_lock_waits by collect()).
HOLDERS_SQL = """
WITH w AS (SELECT * FROM _x_lock_waits),
win AS (SELECT lw.run_id, lw.walk_id, lw.window_no, lw.start_ns, lw.end_ns, k.pid
        FROM _x_lock_windows lw JOIN _x_walks k USING (run_id, walk_id)
        WHERE lw.start_ns IS NOT NULL AND lw.end_ns IS NOT NULL)
SELECT w.wait_no, w.run_id, win.walk_id, win.window_no
FROM w JOIN win ON win.run_id = w.run_id AND win.pid <> w.pid
 AND win.start_ns <= w.start_ns AND win.end_ns >= w.start_ns AND win.end_ns <= w.end_ns
WHERE w.anon_vma_lock AND w.flags LIKE '%WRITE%'
QUALIFY row_number() OVER (PARTITION BY w.wait_no ORDER BY win.end_ns DESC, win.walk_id, win.window_no) = 1
"""


@dataclass
class ExportResult:
    path: Path
    format: str
    runs: int = 0
    tasks: int = 0
    walks: int = 0
    windows: int = 0
    waits: int = 0
    flows: int = 0
    counter_tracks: int = 0
    overlap_tracks: int = 0
    overlap_slices: int = 0

    def summary(self) -> str:
        s = (f"wrote {self.path} ({self.format}): {self.runs} run(s), {self.tasks} task track(s), {self.walks} walks, "
             f"{self.windows} lock windows, {self.waits} lock waits, {self.flows} holder flows, "
             f"{self.counter_tracks} counter tracks")
        if self.overlap_slices:
            s += (f"; {self.overlap_slices} slice(s) that do not nest on their task's track are on "
                  f"{self.overlap_tracks} '(overlap N)' track(s)")
        return s


@dataclass
class _Slice:
    kind: str  # walk | window | wait
    key: tuple
    parent: tuple | None  # a window's walk
    start: int
    end: int
    name: str
    args: dict
    flow_out: list = field(default_factory=list)
    flow_in: list = field(default_factory=list)


@dataclass
class _Task:
    run_id: str
    pid: int
    comm: str
    walked: bool
    order: tuple
    lanes: list = field(default_factory=list)  # list of event lists, one per track (0 = main)
    counters: dict = field(default_factory=dict)  # counter name -> [(ts, value)]


def _rows(con, query: str, params: dict | None = None) -> list[dict]:
    rel = con.execute(query, params or {})
    cols = [d[0] for d in rel.description]
    return [dict(zip(cols, r)) for r in rel.fetchall()]


def _select_runs(con, label: str | None, run: str | None) -> list[dict]:
    runs = _rows(con, "SELECT run_id, label, format, kernel, first_ts_ns, last_ts_ns, ts_unit FROM runs "
                      "ORDER BY ingested_at, run_id")
    if not runs:
        raise KsmtraceError("the store has no runs (run 'ksmtrace ingest' first)")
    if label is not None and label not in {r["label"] for r in runs}:
        raise KsmtraceError(f"no runs with label {label!r}; labels: "
                            + ", ".join(sorted({r["label"] for r in runs})))
    if run is not None and run not in {r["run_id"] for r in runs}:
        ids = [r["run_id"] for r in runs]
        raise KsmtraceError(f"no run {run!r}; runs: " + ", ".join(ids[:20]) + (" ..." if len(ids) > 20 else ""))
    sel = [r for r in runs if (label is None or r["label"] == label) and (run is None or r["run_id"] == run)]
    if not sel:
        raise KsmtraceError(f"run {run!r} does not have label {label!r}")
    return sel


def wait_name(flags: str | None) -> str:
    """A lock wait's slice name: ``lock wait READ`` ...; ``lock wait`` alone when the event printed no flag name
    (an empty ``flags=``: no flag bit set) or had no flags field (NULL). The slice's ``flags`` argument keeps the
    view's value exactly: empty stays empty, NULL is left out."""
    return f"lock wait {flags}" if flags else "lock wait"


def _walk_name(page_type: str | None) -> str:
    return f"rmap_walk_{page_type}" if page_type in ("ksm", "anon", "file") else "rmap_walk"


def _args(row: dict, cols: Iterable[str]) -> dict:
    out = {}
    for c in cols:
        v = row.get(c)
        if v is not None:
            out[c] = v
    return out


def collect(con, runs: list[dict]) -> tuple[list[dict], dict[tuple, _Task], int]:
    """Read the views for ``runs`` and lay the slices out on task tracks. Returns (runs, tasks, n_flows)."""
    ids = [r["run_id"] for r in runs]
    p = {"runs": ids}
    # each view is evaluated once, into a temporary table (the views recompute from the events otherwise)
    con.execute("SET enable_progress_bar = false")
    con.execute("CREATE OR REPLACE TEMP TABLE _x_walks AS SELECT * FROM walks WHERE run_id IN (SELECT unnest($runs))", p)
    con.execute("CREATE OR REPLACE TEMP TABLE _x_lock_windows AS SELECT * FROM lock_windows "
                "WHERE run_id IN (SELECT unnest($runs))", p)
    con.execute("CREATE OR REPLACE TEMP TABLE _x_lock_waits AS SELECT row_number() OVER "
                "(ORDER BY run_id, start_ns, pid, lock_addr, end_ns) AS wait_no, * EXCLUDE (callchain) FROM lock_waits "
                "WHERE run_id IN (SELECT unnest($runs))", p)
    walks = _rows(con, "SELECT * FROM _x_walks ORDER BY run_id, start_ns NULLS FIRST, walk_id")
    windows = _rows(con, "SELECT lw.*, k.pid AS walk_pid FROM _x_lock_windows lw JOIN _x_walks k USING (run_id, walk_id) "
                         "ORDER BY lw.run_id, lw.walk_id, lw.window_no")
    waits = _rows(con, "SELECT * FROM _x_lock_waits ORDER BY wait_no")
    holders = _rows(con, HOLDERS_SQL) if waits else []
    bounds = {r["run_id"]: (r["first_ts_ns"], r["last_ts_ns"]) for r in runs}

    tasks: dict[tuple, _Task] = {}
    comms: dict[tuple, dict[str, int]] = {}

    def task(run_id, pid, comm, walked):
        k = (run_id, pid)
        if k not in tasks:
            tasks[k] = _Task(run_id, pid, "", walked, ())
        t = tasks[k]
        t.walked = t.walked or walked
        if comm is not None:
            comms.setdefault(k, {}).setdefault(comm, 0)
            comms[k][comm] += 1
        return t

    slices: dict[tuple, list[_Slice]] = {}
    walk_span: dict[tuple, tuple[int, int]] = {}
    for w in walks:
        run_id, pid = w["run_id"], w["pid"]
        t = task(run_id, pid, w["comm"], True)
        lo, hi = bounds[run_id]
        start, end = w["start_ns"], w["end_ns"]
        args = _args(w, WALK_ARGS)
        # a walk cut by the trace's start or end runs from / to the trace's edge (start_ns / end_ns stay NULL)
        s = start if start is not None else lo
        e = end if end is not None else hi
        if s is None or e is None:
            continue
        e = max(e, s)
        key = ("walk", run_id, w["walk_id"])
        walk_span[key] = (s, e)
        slices.setdefault((run_id, pid), []).append(_Slice("walk", key, None, s, e, _walk_name(w["page_type"]), args))
    flows_out: dict[tuple, list[int]] = {}
    flows_in: dict[int, list[int]] = {}
    for n, h in enumerate(holders, 1):
        flows_out.setdefault((h["run_id"], h["walk_id"], h["window_no"]), []).append(n)
        flows_in.setdefault(h["wait_no"], []).append(n)
    for lw in windows:
        run_id, pid = lw["run_id"], lw["walk_pid"]
        wk = ("walk", run_id, lw["walk_id"])
        if wk not in walk_span:
            continue
        ws, we = walk_span[wk]
        s, e = lw["start_ns"], lw["end_ns"]
        s = s if s is not None else ws
        e = e if e is not None else we
        args = _args(lw, WINDOW_ARGS)
        sl = _Slice("window", ("window", run_id, lw["walk_id"], lw["window_no"]), wk, s, max(e, s), "lock window",
                    args, flow_out=flows_out.get((run_id, lw["walk_id"], lw["window_no"]), []))
        slices.setdefault((run_id, pid), []).append(sl)
        t = tasks[(run_id, pid)]
        for c in COUNTERS:
            v = lw.get(c)
            if v is not None:
                t.counters.setdefault(c, []).append((sl.start, sl.end, v))
    for lk in waits:
        run_id, pid = lk["run_id"], lk["pid"]
        task(run_id, pid, lk["comm"], False)
        s, e = lk["start_ns"], lk["end_ns"]
        sl = _Slice("wait", ("wait", run_id, lk["wait_no"]), None, s, max(e, s), wait_name(lk["flags"]),
                    _args(lk, WAIT_ARGS), flow_in=flows_in.get(lk["wait_no"], []))
        slices.setdefault((run_id, pid), []).append(sl)

    for k, t in tasks.items():
        cs = comms.get(k, {})
        t.comm = max(sorted(cs), key=lambda c: cs[c]) if cs else "?"
        sl = slices.get(k, [])
        total_wait = sum(x.end - x.start for x in sl if x.kind == "wait")
        t.order = (0 if t.walked else 1, -total_wait, t.pid)
        t.lanes = _lay_out(sl)
    return runs, tasks, len(holders)


def _stack(items: list[_Slice]) -> tuple[list[tuple], list[_Slice], list[_Slice]]:
    """Nest ``items``, taken in the given order, on one track: (events in emission order, slices placed in
    that order, slices that do not nest). A slice is placed when it lies inside the open slice (a window: inside
    its own walk) and does not begin before the last event written."""
    events, stack, rest, placed = [], [], [], []
    last = None
    for sl in items:
        while stack and stack[-1].end <= sl.start and stack[-1].key != sl.parent:
            top = stack.pop()
            events.append((top.end, "E", top))
            last = top.end
        if (last is not None and sl.start < last) or (
                sl.parent is not None and (not stack or stack[-1].key != sl.parent)) or (
                stack and sl.end > stack[-1].end):
            rest.append(sl)  # would overlap the open slice without nesting in it, or its walk is not open
            continue
        stack.append(sl)
        placed.append(sl)
        events.append((sl.start, "B", sl))
        last = sl.start
    while stack:
        top = stack.pop()
        events.append((top.end, "E", top))
    return events, placed, rest


def _tree_order(main: list[_Slice]) -> list[_Slice]:
    """Walks by time, each followed by its own windows by time (shorter first: a zero-length window at the
    start of the next is its predecessor, not its parent), so siblings never nest in each other."""
    keys = {x.key for x in main}
    kids: dict[tuple, list[_Slice]] = {}
    top = []
    for x in main:
        if x.parent is not None and x.parent in keys:
            kids.setdefault(x.parent, []).append(x)
        else:
            top.append(x)
    out = []
    for x in sorted(top, key=lambda x: (x.start, x.end, x.key[1:])):
        out.append(x)
        out += sorted(kids.get(x.key, []), key=lambda k: (k.start, k.end, k.key[1:]))
    return out


def _fits(main: list[_Slice], waits: list[_Slice]) -> tuple[list[_Slice], list[_Slice]]:
    """Waits that nest among the (nested) walks and windows ``main`` without cutting one: every slice of main
    that overlaps the wait contains it. Walks and windows keep their nesting; a wait that would cut a window
    (a wait of a walker that straddles two perf-callchain windows, say) does not fit."""
    import bisect

    starts = sorted(x.start for x in main)
    ends = sorted(x.end for x in main)
    shortest_at: dict[int, int] = {}
    for x in main:
        shortest_at[x.start] = min(shortest_at.get(x.start, x.end), x.end)
    ok, bad = [], []
    for w in waits:
        s, e = w.start, w.end
        inside = (bisect.bisect_left(starts, e) > bisect.bisect_right(starts, s)
                  or bisect.bisect_left(ends, e) > bisect.bisect_right(ends, s)
                  or shortest_at.get(s, e) < e)
        (bad if inside else ok).append(w)
    return ok, bad


def _lay_out(slices: list[_Slice]) -> list[list[tuple]]:
    """Nest a task's slices into lanes (tracks): lane 0 is the task's track, a slice that cannot nest there goes
    to the next lane. Each lane is a list of (ts, 'B'|'E', slice) in emission order."""
    lanes = []
    todo = list(slices)
    while todo:
        _, main, rest = _stack(_tree_order([x for x in todo if x.kind != "wait"]))
        ok, bad = _fits(main, [x for x in todo if x.kind == "wait"])
        # merge the waits in by time: after the walks and windows that begin with them (their containers),
        # nested waits outermost first
        order = sorted([((x.start, 0, i, 0), x) for i, x in enumerate(main)]
                       + [((x.start, 1, -x.end, x.key[1:]), x) for x in ok], key=lambda kx: kx[0])
        events, placed, rest2 = _stack([x for _, x in order])
        if not placed:  # cannot happen (the first slice always fits an empty track); never loop
            events, placed, rest2 = _stack([_detach(x) for x in sorted(todo, key=lambda x: (x.start, -x.end))])
            rest, bad = [], []
        lanes.append(events)
        keys = {x.key for x in placed}
        todo = [_detach(x) if x.parent in keys else x for x in rest + bad + rest2]
    return lanes


def _detach(sl: _Slice) -> _Slice:
    """A window whose walk is on another track: it stands alone (its args still name its walk_id)."""
    sl.parent = None
    return sl


def _counter_points(spans: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
    """A window's value while it is held, 0 between windows."""
    pts: list[tuple[int, int]] = []
    spans = sorted(spans)
    for i, (s, e, v) in enumerate(spans):
        pts.append((s, v))
        nxt = spans[i + 1][0] if i + 1 < len(spans) else None
        if nxt is None or nxt > e:
            pts.append((e, 0))
    return pts


def _run_title(r: dict) -> str:
    bits = [r["format"] or "", r["kernel"] or ""]
    extra = ", ".join(b for b in bits if b)
    return f"{r['label']} · {r['run_id']}" + (f" ({extra})" if extra else "")


def _task_title(t: _Task, lane: int) -> str:
    return f"{t.comm} {t.pid}" + (f" (overlap {lane})" if lane else "")


# ---------------------------------------------------------------- Perfetto protobuf

def _write_perfetto(f, runs: list[dict], tasks: dict[tuple, _Task], res: ExportResult) -> None:
    try:
        from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb
        from perfetto.trace_builder.proto_builder import StreamingTraceProtoBuilder
    except ImportError as e:  # pragma: no cover - perfetto is a dependency
        raise KsmtraceError(f"--format perfetto needs the 'perfetto' Python package ({e}); "
                            "pip install perfetto, or use --format chrome-json") from None

    SEQ = 1
    builder = StreamingTraceProtoBuilder(f)
    first = [True]
    uuid_counter = [0]

    def packet():
        p = builder.create_packet()
        p.trusted_packet_sequence_id = SEQ
        if first[0]:
            p.sequence_flags = pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
            first[0] = False
        return p

    def new_uuid():
        uuid_counter[0] += 1
        return uuid_counter[0]

    def track(name, parent=None, rank=None, counter=False, explicit=False):
        u = new_uuid()
        p = packet()
        d = p.track_descriptor
        d.uuid = u
        d.name = name
        d.sibling_merge_behavior = pb.TrackDescriptor.SIBLING_MERGE_BEHAVIOR_NONE  # one track per task, as named
        if parent is not None:
            d.parent_uuid = parent
        if rank is not None:
            d.sibling_order_rank = rank
        if explicit:
            d.child_ordering = pb.TrackDescriptor.EXPLICIT
        if counter:
            d.counter.SetInParent()
        builder.write_packet(p)
        return u

    def annotate(ev, args: dict):
        for k, v in args.items():
            a = ev.debug_annotations.add()
            a.name = k
            if isinstance(v, bool):
                a.bool_value = v
            elif isinstance(v, int):
                a.int_value = v
            elif isinstance(v, float):
                a.double_value = v
            else:
                a.string_value = str(v)

    timeline: list[tuple[int, int, Any]] = []  # (ts, seq, what to write): sorted before writing
    seq = 0
    for r_rank, r in enumerate(runs):
        run_tasks = sorted((t for t in tasks.values() if t.run_id == r["run_id"]), key=lambda t: t.order)
        if not run_tasks:
            continue
        res.runs += 1
        run_uuid = track(_run_title(r), rank=r_rank, explicit=True)
        rank = 0
        for t in run_tasks:
            res.tasks += 1
            for lane, events in enumerate(t.lanes):
                u = track(_task_title(t, lane), parent=run_uuid, rank=rank)
                rank += 1
                if lane:
                    res.overlap_tracks += 1
                for ts, ph, sl in events:
                    seq += 1
                    timeline.append((ts, seq, ("slice", u, ph, sl, lane)))
            for c in COUNTERS:
                if c not in t.counters:
                    continue
                u = track(f"{t.comm} {t.pid} {c}/window", parent=run_uuid, rank=rank, counter=True)
                rank += 1
                res.counter_tracks += 1
                for ts, v in _counter_points(t.counters[c]):
                    seq += 1
                    timeline.append((ts, seq, ("counter", u, v)))
    timeline.sort(key=lambda x: (x[0], x[1]))
    for ts, _, item in timeline:
        p = packet()
        p.timestamp = ts
        ev = p.track_event
        if item[0] == "counter":
            _, u, v = item
            ev.type = pb.TrackEvent.TYPE_COUNTER
            ev.track_uuid = u
            ev.counter_value = v
        else:
            _, u, ph, sl, lane = item
            ev.track_uuid = u
            if ph == "B":
                ev.type = pb.TrackEvent.TYPE_SLICE_BEGIN
                ev.name = sl.name
                annotate(ev, sl.args)
                ev.flow_ids.extend(sl.flow_out)
                ev.terminating_flow_ids.extend(sl.flow_in)
                _count(res, sl, lane)
            else:
                ev.type = pb.TrackEvent.TYPE_SLICE_END
        builder.write_packet(p)


def _count(res: ExportResult, sl: _Slice, lane: int) -> None:
    if sl.kind == "walk":
        res.walks += 1
    elif sl.kind == "window":
        res.windows += 1
    else:
        res.waits += 1
    if lane:
        res.overlap_slices += 1


# ---------------------------------------------------------------- Chrome JSON

def us(ns: int) -> str:
    """Integer ns as an exact decimal number of µs with three fractional digits: 6711400591665 -> 6711400591.665."""
    return str((Decimal(int(ns)) / 1000).quantize(Decimal("0.001")))


def _write_chrome(f, runs: list[dict], tasks: dict[tuple, _Task], res: ExportResult) -> None:
    def dumps(obj):
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))

    out: list[str] = []
    timed: list[tuple[int, int, str]] = []
    seq = 0
    tid = 0
    for pid, r in enumerate(runs, 1):
        run_tasks = sorted((t for t in tasks.values() if t.run_id == r["run_id"]), key=lambda t: t.order)
        if not run_tasks:
            continue
        res.runs += 1
        out.append(dumps({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": _run_title(r)}}))
        out.append(dumps({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0,
                          "args": {"sort_index": pid}}))
        for t in run_tasks:
            res.tasks += 1
            for lane, events in enumerate(t.lanes):
                tid += 1
                if lane:
                    res.overlap_tracks += 1
                out.append(dumps({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                                  "args": {"name": _task_title(t, lane)}}))
                out.append(dumps({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid,
                                  "args": {"sort_index": tid}}))
                for ts, ph, sl in events:
                    if ph != "B":
                        continue
                    _count(res, sl, lane)
                    ev: dict = {"ph": "X", "name": sl.name, "cat": "ksmtrace", "pid": pid, "tid": tid,
                                "args": sl.args}
                    # one flow per event at most in Chrome JSON's v2 flows: a window holding several waits
                    # gets an instant per extra flow
                    fl = [("flow_out", i) for i in sl.flow_out] + [("flow_in", i) for i in sl.flow_in]
                    if fl:
                        ev["bind_id"] = f"0x{fl[0][1]:x}"
                        ev[fl[0][0]] = True
                    seq += 1
                    timed.append((sl.start, seq, "{" + f'"ts":{us(sl.start)},"dur":{us(sl.end - sl.start)},'
                                  + dumps(ev)[1:]))
                    for kind, i in fl[1:]:
                        seq += 1
                        timed.append((sl.start, seq, "{" + f'"ts":{us(sl.start)},"dur":0,' + dumps(
                            {"ph": "X", "name": "flow", "cat": "ksmtrace", "pid": pid, "tid": tid,
                             "bind_id": f"0x{i:x}", kind: True})[1:]))
            for c in COUNTERS:
                if c not in t.counters:
                    continue
                res.counter_tracks += 1
                for ts, v in _counter_points(t.counters[c]):
                    seq += 1
                    timed.append((ts, seq, "{" + f'"ts":{us(ts)},' + dumps(
                        {"ph": "C", "name": f"{t.comm} {t.pid}", "pid": pid, "tid": 0,
                         "args": {f"{c}/window": v}})[1:]))
    timed.sort(key=lambda x: (x[0], x[1]))
    f.write(b'{"displayTimeUnit":"ns","otherData":{"producer":"ksmtrace export","ts_unit":"us, exact to 1 ns"},'
            b'"traceEvents":[\n')
    lines = out + [x[2] for x in timed]
    for i, line in enumerate(lines):
        f.write(line.encode() + (b",\n" if i + 1 < len(lines) else b"\n"))
    f.write(b"]}\n")


def export_trace(con, fmt: str, out: str | os.PathLike, label: str | None = None,
                 run: str | None = None) -> ExportResult:
    """Write the walks, windows and waits of the selected runs to ``out`` in ``fmt`` (see FORMATS)."""
    if fmt not in FORMATS:
        raise KsmtraceError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise KsmtraceError(f"{out} is a directory; give a file name with -o")
    if not out.parent.exists():
        raise KsmtraceError(f"{out.parent}: no such directory")
    runs = _select_runs(con, label, run)
    runs, tasks, _ = collect(con, runs)
    if not any(ev for t in tasks.values() for ev in t.lanes):
        raise KsmtraceError("nothing to export: the selected runs have no walks and no lock waits")
    res = ExportResult(out, fmt)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            (_write_perfetto if fmt == "perfetto" else _write_chrome)(f, runs, tasks, res)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    res.flows = sum(len(ev[2].flow_out) for t in tasks.values() for lane in t.lanes for ev in lane
                    if ev[1] == "B")
    return res
