"""`ksmtrace export`: the walks, lock windows and lock waits of the views on a Perfetto timeline.

The files are read back with the same library that wrote them (the `perfetto` package's protobuf
classes; Perfetto's TraceProcessor would need a binary download) or, for Chrome JSON, validated against a
JSON schema written here, and every slice is checked against the walks / lock_windows / lock_waits views of
the bundled samples: counts, nesting, exact ns timestamps and durations.
"""
from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from decimal import Decimal

import jsonschema
import pytest
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from conftest import ROOT, run_cli

MANIFEST = json.loads((ROOT / "sample_traces" / "manifest.json").read_text())


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """A store with every bundled sample ingested, and one connection to its views."""
    from ksmtrace import api

    store = tmp_path_factory.mktemp("export") / "store"
    for pair in MANIFEST["pairs"]:
        for side in ("before", "after"):
            for f in pair[side]["files"]:
                api.ingest([str(ROOT / "sample_traces" / f)], store, label=pair[side]["label"])
    con = api.connect(store)
    con.execute("SET enable_progress_bar = false")
    views = {
        "runs": _rows(con, "SELECT * FROM runs"),
        "walks": _rows(con, "SELECT * FROM walks"),
        "windows": _rows(con, "SELECT lw.*, k.pid FROM lock_windows lw JOIN walks k USING (run_id, walk_id)"),
        "waits": _rows(con, "SELECT * EXCLUDE (callchain) FROM lock_waits"),
    }
    con.close()
    return store, views


def _rows(con, q):
    rel = con.execute(q)
    cols = [d[0] for d in rel.description]
    return [dict(zip(cols, r)) for r in rel.fetchall()]


# ------------------------------------------------------------------ reading the files back

def read_perfetto(path):
    """Slices (with depth, parent and args), tracks, counters and flows of a Perfetto protobuf trace."""
    trace = pb.Trace()
    trace.ParseFromString(path.read_bytes())
    tracks, slices, counters = {}, [], defaultdict(list)
    stacks = defaultdict(list)
    flows_out, flows_in = defaultdict(list), defaultdict(list)
    last = 0
    for p in trace.packet:
        assert p.trusted_packet_sequence_id == 1
        if p.HasField("track_descriptor"):
            d = p.track_descriptor
            assert d.uuid not in tracks
            assert not d.HasField("parent_uuid") or d.parent_uuid in tracks  # parents are described first
            tracks[d.uuid] = d
            continue
        assert p.HasField("track_event")
        ev = p.track_event
        assert ev.track_uuid in tracks
        assert p.timestamp >= last  # written in time order
        last = p.timestamp
        st = stacks[ev.track_uuid]
        if ev.type == pb.TrackEvent.TYPE_SLICE_BEGIN:
            args = {a.name: getattr(a, a.WhichOneof("value")) for a in ev.debug_annotations}
            slices.append({"track": ev.track_uuid, "name": ev.name, "ts": p.timestamp, "dur": None,
                           "depth": len(st), "parent": st[-1] if st else None, "args": args})
            for f in ev.flow_ids:
                flows_out[f].append(len(slices) - 1)
            for f in ev.terminating_flow_ids:
                flows_in[f].append(len(slices) - 1)
            st.append(len(slices) - 1)
        elif ev.type == pb.TrackEvent.TYPE_SLICE_END:
            i = st.pop()
            slices[i]["dur"] = p.timestamp - slices[i]["ts"]
        elif ev.type == pb.TrackEvent.TYPE_COUNTER:
            assert tracks[ev.track_uuid].HasField("counter")
            counters[ev.track_uuid].append((p.timestamp, ev.counter_value))
        else:
            pytest.fail(f"unexpected track event type {ev.type}")
    assert not any(stacks.values()), "every slice that begins ends"
    return tracks, slices, counters, flows_out, flows_in


def _task_key(tracks, uuid):
    """(run_id, pid, overlap lane) of a task track: the run id is in the parent track's name."""
    d = tracks[uuid]
    run_title = tracks[d.parent_uuid].name
    m = re.fullmatch(r"(.*) (-?\d+)(?: \(overlap (\d+)\))?", d.name, re.S)
    return run_title, int(m.group(2)), int(m.group(3) or 0), m.group(1)


def _run_of(title, runs):
    found = [r["run_id"] for r in runs if f"· {r['run_id']}" in title]
    assert len(found) == 1, title
    return found[0]


# ------------------------------------------------------------------ Perfetto protobuf

def test_perfetto_slices_match_the_views(samples, tmp_path):
    store, v = samples
    out = tmp_path / "walks.pftrace"
    r = run_cli("export", "--format", "perfetto", "-o", str(out), "--store", str(store))
    assert r.code == 0, r.err
    assert "ui.perfetto.dev" in r.out and r.err == ""
    tracks, slices, counters, flows_out, flows_in = read_perfetto(out)

    by_kind = defaultdict(list)
    for s in slices:
        kind = ("walk" if s["name"].startswith("rmap_walk") else "window" if s["name"] == "lock window"
                else "wait" if s["name"] == "lock wait" or s["name"].startswith("lock wait ") else None)
        assert kind, s["name"]
        by_kind[kind].append(s)
    assert len(by_kind["walk"]) == len(v["walks"])
    assert len(by_kind["window"]) == len(v["windows"])
    assert len(by_kind["wait"]) == len(v["waits"])

    # one top track per run, one track per task that walked or waited (plus overlap tracks), all under it
    run_tracks = {u: d for u, d in tracks.items() if not d.HasField("parent_uuid")}
    assert sorted(_run_of(d.name, v["runs"]) for d in run_tracks.values()) == sorted(r["run_id"] for r in v["runs"])
    task_tracks = {}
    for u, d in tracks.items():
        if d.HasField("parent_uuid") and not d.HasField("counter"):
            title, pid, lane, comm = _task_key(tracks, u)
            task_tracks[u] = (_run_of(title, v["runs"]), pid, lane, comm)
    main = {(run, pid) for run, pid, lane, _ in task_tracks.values() if lane == 0}
    assert len(main) == sum(1 for t in task_tracks.values() if t[2] == 0)  # one main track per task
    assert main == {(w["run_id"], w["pid"]) for w in v["walks"]} | {(w["run_id"], w["pid"]) for w in v["waits"]}

    # walks: exact ns, on their task's track, top level
    walks = {(w["run_id"], w["walk_id"]): w for w in v["walks"]}
    walk_slice = {}
    for s in by_kind["walk"]:
        run, pid, lane, comm = task_tracks[s["track"]]
        w = walks[(run, s["args"]["walk_id"])]
        assert s["args"]["run_id"] == run and pid == w["pid"]
        assert s["name"] == f"rmap_walk_{w['page_type']}"
        assert (s["ts"], s["ts"] + s["dur"]) == (w["start_ns"], w["end_ns"])  # all sample walks have both ends
        assert s["args"]["duration_ns"] == w["duration_ns"]
        assert s["depth"] == 0
        if lane:  # an overlap lane only for a walk that overlaps another walk of its task
            assert any(o["pid"] == w["pid"] and o["run_id"] == run and o is not w and o["start_ns"] < w["end_ns"]
                       and w["start_ns"] <= o["end_ns"] for o in v["walks"]), w
        for col in ("evidence", "n_windows", "max_hold_ns", "iterations", "skip_addr", "complete"):
            assert s["args"].get(col) == w[col], col  # NULL columns are left out
        walk_slice[(run, w["walk_id"])] = s
    assert any(s["ts"] % 1000 for s in by_kind["walk"])  # the real pair has ns timestamps: none is rounded

    # windows: a child of their walk, exact start and hold
    windows = {(w["run_id"], w["walk_id"], w["window_no"]): w for w in v["windows"]}
    nested = 0
    for s in by_kind["window"]:
        run, pid, lane, _ = task_tracks[s["track"]]
        lw = windows[(run, s["args"]["walk_id"], s["args"]["window_no"])]
        assert pid == lw["pid"] and s["ts"] == lw["start_ns"]
        assert s["args"].get("hold_ns") == lw["hold_ns"] and s["args"].get("iterations") == lw["iterations"]
        assert s["dur"] == max(lw["end_ns"] - lw["start_ns"], 0)
        parent = walk_slice[(run, lw["walk_id"])]
        if lw["hold_ns"] >= 0 and task_tracks[parent["track"]][2] == lane:
            # a well-formed window nests in its walk (a window outside its walk's span, as stalled 6.1 TCG
            # timestamps give, goes to an overlap lane: counted by `nested` below)
            assert s["depth"] == 1 and slices[s["parent"]] is parent
            nested += 1
        # (a window the views give a negative hold is a zero-length slice that keeps hold_ns as an argument)
    assert nested >= len(v["windows"]) * 0.9

    # lock waits: on the waiting task's track, exact ns, the flags exactly the view's (the 6.1 samples print an
    # empty `flags=`: an empty flags argument and a slice named just "lock wait")
    waits = Counter((w["run_id"], w["pid"], w["start_ns"], w["wait_ns"], w["flags"],
                     f"lock wait {w['flags']}" if w["flags"] else "lock wait") for w in v["waits"])
    assert any(w["flags"] == "" for w in v["waits"]) and any(w["flags"] for w in v["waits"])
    got = Counter()
    for s in by_kind["wait"]:
        run, pid, lane, _ = task_tracks[s["track"]]
        got[(run, pid, s["ts"], s["dur"], s["args"].get("flags"), s["name"])] += 1
        assert s["args"]["wait_ns"] == s["dur"]
    assert got == waits

    # counters: the counter-line runs have per-window iterations, function_graph timing runs do not
    iters = defaultdict(list)
    for u, pts in counters.items():
        d = tracks[u]
        if d.name.endswith(" iterations/window"):
            iters[_run_of(tracks[d.parent_uuid].name, v["runs"])] += pts
    with_iters = {w["run_id"] for w in v["windows"] if w["iterations"] is not None}
    assert set(iters) == with_iters and with_iters
    for run, pts in iters.items():
        have = Counter(pts)
        need = Counter((w["start_ns"], w["iterations"]) for w in v["windows"] if w["run_id"] == run)
        assert not need - have  # each window's count at its start
    # the samples carry no wait whose lock a walker held (no anon_vma lock contention): no flows
    assert not flows_out and not flows_in


def test_perfetto_one_label_and_one_run(samples, tmp_path):
    store, v = samples
    label = "synth-counters-patched"
    from ksmtrace import api

    res = api.export("perfetto", tmp_path / "a.pftrace", store=store, label=label)
    tracks, slices, _, _, _ = read_perfetto(tmp_path / "a.pftrace")
    assert res.walks == sum(1 for w in v["walks"] if w["label"] == label) == sum(
        1 for s in slices if s["name"].startswith("rmap_walk"))
    run = next(r["run_id"] for r in v["runs"] if r["label"] == "real-split20000")
    res = api.export("perfetto", tmp_path / "b.pftrace", store=store, run=run)
    tracks, slices, _, _, _ = read_perfetto(tmp_path / "b.pftrace")
    assert [d.name for d in tracks.values() if not d.HasField("parent_uuid")] == [
        next(d.name for d in tracks.values() if run in d.name)]
    assert res.waits == sum(1 for w in v["waits"] if w["run_id"] == run) > 0
    assert res.windows == sum(1 for w in v["windows"] if w["run_id"] == run)


# ------------------------------------------------------------------ a wait behind a walker's window: the flow

_WALKER_WAIT = """\
ksm_rmap_repro 10396 [001]   {b}: lock:contention_begin: 0xffff88811c022d70 (flags=READ)
\tffffffff821ff2a5 rwsem_down_read_slowpath+0x1a5 ([kernel.kallsyms])
\tffffffff821ff4f4 down_read+0x44 ([kernel.kallsyms])
\tffffffff8166aca1 rmap_walk_ksm+0xb1 ([kernel.kallsyms])
\tffffffff816051fe try_to_migrate+0x8e ([kernel.kallsyms])

ksm_rmap_repro 10396 [001]   {e}: lock:contention_end: 0xffff88811c022d70 (ret=0)
\tffffffff821ff2a5 rwsem_down_read_slowpath+0x2a5 ([kernel.kallsyms])
"""
_WRITER_WAIT = """\
{comm} 10397 [000]   {b}: lock:contention_begin: 0xffff88811c022d70 (flags=WRITE)
\tffffffff821fe111 rwsem_down_write_slowpath+0x111 ([kernel.kallsyms])
\tffffffff821fe222 down_write+0x22 ([kernel.kallsyms])
\tffffffff81633333 vma_prepare+0x8e ([kernel.kallsyms])

{comm} 10397 [000]   {e}: lock:contention_end: 0xffff88811c022d70 (ret=0)
\tffffffff821fe111 rwsem_down_write_slowpath+0x311 ([kernel.kallsyms])
"""


def _sec(ns: int) -> str:
    return f"{ns // 10**9}.{ns % 10**9:09d}"


def _blocks_by_time(text):
    out = []
    for blk in text.strip("\n").split("\n\n"):
        ts = re.search(r"\s(\d+\.\d{9}):", blk.splitlines()[0]).group(1)
        out.append((Decimal(ts), blk))
    return out


@pytest.fixture(scope="module")
def holder_trace(tmp_path_factory):
    """A perf script trace (synthetic perf-callchain walks) with the walker's own READ wait on the anon_vma
    rwsem (which marks the lock) and a writer's WRITE wait that begins inside the walk's longest window and
    ends after it: that window held the lock the writer waited for."""
    from ksmtrace import api
    from ksmtrace.synth import Layout, generate

    d = tmp_path_factory.mktemp("holder")
    text = generate(Layout(vmas=50, items=4), walks=3, evidence="perf-callchain", fmt="perf-script",
                    noise=False, seed=3).text
    (d / "walks.txt").write_text(text)
    api.ingest([str(d / "walks.txt")], d / "probe", label="probe")
    with api.connect(d / "probe") as con:
        w = con.execute("SELECT walk_id, window_no, start_ns, end_ns FROM lock_windows "
                        "ORDER BY hold_ns DESC, walk_id, window_no LIMIT 1").fetchone()
        first = con.execute("SELECT min(start_ns) FROM walks").fetchone()[0]
    _, _, s, e = w
    comm = 'mprotect"<b>\\x'  # trace text goes into the export as data, escaped by the writers' own encoders
    blocks = _blocks_by_time(text)
    blocks += _blocks_by_time(_WALKER_WAIT.format(b=_sec(first - 50_000), e=_sec(first - 40_000)))
    blocks += _blocks_by_time(_WRITER_WAIT.format(comm=comm, b=_sec(s + 1_001), e=_sec(e + 5_003)))
    blocks.sort(key=lambda x: x[0])
    (d / "lock.txt").write_text("\n\n".join(b for _, b in blocks) + "\n")
    api.ingest([str(d / "lock.txt")], d / "store", label="lock")
    with api.connect(d / "store") as con:
        waits = _rows(con, "SELECT * EXCLUDE (callchain) FROM lock_waits ORDER BY start_ns")
    assert [(x["flags"], x["anon_vma_lock"]) for x in waits] == [("READ", True), ("WRITE", True)]
    assert waits[1]["comm"] == comm
    return d / "store", (s, e), waits  # walk_id is a line number: the inserted lock lines move it


def test_flow_from_the_window_that_held_the_lock(holder_trace, tmp_path):
    store, (s, e), waits = holder_trace
    from ksmtrace import api

    res = api.export("perfetto", tmp_path / "h.pftrace", store=store)
    assert res.flows == 1
    tracks, slices, _, flows_out, flows_in = read_perfetto(tmp_path / "h.pftrace")
    assert len(flows_out) == len(flows_in) == 1
    (fid, [src]), = flows_out.items()
    [dst] = flows_in[fid]
    assert slices[src]["name"] == "lock window"
    assert (slices[src]["ts"], slices[src]["ts"] + slices[src]["dur"]) == (s, e)
    writer = waits[1]
    assert slices[dst]["name"] == "lock wait WRITE"
    assert (slices[dst]["ts"], slices[dst]["dur"]) == (writer["start_ns"], writer["wait_ns"])
    # the writer's comm is data: track name and argument carry it unchanged
    assert tracks[slices[dst]["track"]].name == f"{writer['comm']} 10397"
    assert slices[dst]["args"]["comm"] == writer["comm"]
    # the walker's own READ wait has no holder window (a writer held the lock)
    reader = next(s for s in slices if s["name"] == "lock wait READ")
    assert reader["ts"] == waits[0]["start_ns"] and dst != slices.index(reader)

    # Chrome JSON: the same flow as a bind_id pair
    api.export("chrome-json", tmp_path / "h.json", store=store)
    doc = json.loads((tmp_path / "h.json").read_text(), parse_float=Decimal)
    jsonschema.validate(doc, CHROME_SCHEMA)
    out = [e for e in doc["traceEvents"] if e.get("flow_out")]
    into = [e for e in doc["traceEvents"] if e.get("flow_in")]
    assert len(out) == len(into) == 1 and out[0]["bind_id"] == into[0]["bind_id"]
    assert (out[0]["ts"] * 1000, (out[0]["ts"] + out[0]["dur"]) * 1000) == (s, e)
    assert into[0]["name"] == "lock wait WRITE" and into[0]["args"]["comm"] == writer["comm"]
    assert into[0]["ts"] * 1000 == writer["start_ns"]


# ------------------------------------------------------------------ Chrome JSON

_NUM = {"type": "number", "minimum": 0}
_ID = {"type": "integer", "minimum": 0}
CHROME_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["traceEvents", "displayTimeUnit"],
    "additionalProperties": False,
    "properties": {
        "displayTimeUnit": {"const": "ns"},
        "otherData": {"type": "object"},
        "traceEvents": {"type": "array", "items": {"oneOf": [
            {"type": "object", "additionalProperties": False,
             "required": ["ph", "name", "pid", "tid", "args"],
             "properties": {"ph": {"const": "M"}, "pid": _ID, "tid": _ID,
                            "name": {"enum": ["process_name", "thread_name", "process_sort_index",
                                              "thread_sort_index"]},
                            "args": {"type": "object", "minProperties": 1, "maxProperties": 1,
                                     "properties": {"name": {"type": "string"}, "sort_index": _ID}}}},
            {"type": "object", "additionalProperties": False,
             "required": ["ph", "ts", "dur", "name", "cat", "pid", "tid"],
             "properties": {"ph": {"const": "X"}, "ts": _NUM, "dur": _NUM, "pid": _ID, "tid": _ID,
                            "name": {"type": "string"}, "cat": {"const": "ksmtrace"},
                            "args": {"type": "object", "additionalProperties": {
                                "type": ["string", "number", "boolean"]}},
                            "bind_id": {"type": "string", "pattern": "^0x[0-9a-f]+$"},
                            "flow_in": {"const": True}, "flow_out": {"const": True}},
             "dependentRequired": {"flow_in": ["bind_id"], "flow_out": ["bind_id"]}},
            {"type": "object", "additionalProperties": False, "required": ["ph", "ts", "name", "pid", "tid", "args"],
             "properties": {"ph": {"const": "C"}, "ts": _NUM, "pid": _ID, "tid": _ID, "name": {"type": "string"},
                            "args": {"type": "object", "minProperties": 1, "maxProperties": 1,
                                     "additionalProperties": {"type": "integer"}}}},
        ]}},
    },
}


def test_chrome_json_matches_the_views(samples, tmp_path):
    store, v = samples
    out = tmp_path / "walks.json"
    r = run_cli("export", "-f", "chrome-json", "-o", str(out), "--store", str(store))
    assert r.code == 0, r.err
    raw = out.read_text()
    doc = json.loads(raw, parse_float=Decimal)  # exact decimals, not binary floats
    jsonschema.validate(doc, CHROME_SCHEMA)
    # every ts / dur is written as µs with exactly three decimals: integer ns, nothing rounded
    assert re.findall(r'"(?:ts|dur)":(\d+(?:\.\d+)?)', raw)
    assert all(re.fullmatch(r"\d+\.\d{3}|0", x) for x in re.findall(r'"(?:ts|dur)":([^,}]+)', raw))

    ev = doc["traceEvents"]
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "thread_name"}
    procs = {e["pid"]: e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "process_name"}
    xs = [e for e in ev if e["ph"] == "X"]
    walks = {(w["run_id"], w["walk_id"]): w for w in v["walks"]}
    windows = {(w["run_id"], w["walk_id"], w["window_no"]): w for w in v["windows"]}
    n = Counter()
    for e in xs:
        ts, end = int(e["ts"] * 1000), int((e["ts"] + e["dur"]) * 1000)
        assert ts == e["ts"] * 1000
        run = _run_of(procs[e["pid"]], v["runs"])
        if e["name"].startswith("rmap_walk"):
            w = walks[(run, e["args"]["walk_id"])]
            assert (ts, end) == (w["start_ns"], w["end_ns"])
            assert names[(e["pid"], e["tid"])].split(" (overlap ")[0] == f"{w['comm']} {w['pid']}"
            n["walk"] += 1
        elif e["name"] == "lock window":
            lw = windows[(run, e["args"]["walk_id"], e["args"]["window_no"])]
            assert ts == lw["start_ns"] and end - ts == max(lw["hold_ns"], 0)
            n["window"] += 1
        else:
            flags = e["args"].get("flags")
            assert e["name"] == (f"lock wait {flags}" if flags else "lock wait")
            assert end - ts == e["args"]["wait_ns"]
            n["wait"] += 1
    assert n == {"walk": len(v["walks"]), "window": len(v["windows"]), "wait": len(v["waits"])}

    # X events nest per thread (the format requires it); windows inside their walk on the task's thread
    per_thread = defaultdict(list)
    for e in xs:
        per_thread[(e["pid"], e["tid"])].append(e)
    inside = 0
    for evs in per_thread.values():
        stack = []
        for e in evs:  # written in time order, parents first
            while stack and stack[-1]["ts"] + stack[-1]["dur"] <= e["ts"] and not (
                    stack[-1]["ts"] + stack[-1]["dur"] == e["ts"] and e["dur"] == 0 and _is_child(e, stack[-1])):
                stack.pop()
            assert not stack or e["ts"] + e["dur"] <= stack[-1]["ts"] + stack[-1]["dur"]
            if e["name"] == "lock window" and stack and _is_child(e, stack[-1]):
                inside += 1
            stack.append(e)
    assert inside >= 0.9 * n["window"]


def _is_child(e, parent):
    return parent["name"].startswith("rmap_walk") and parent["args"]["walk_id"] == e["args"].get("walk_id")


# ------------------------------------------------------------------ the command's errors

@pytest.mark.parametrize("args, msg", [
    (["--format", "svg"], "is not one of perfetto, chrome-json"),
    (["--format", "perfetto", "--label", "nope"], "no runs with label 'nope'; labels: "),
    (["--format", "perfetto", "--run", "nope"], "no run 'nope'"),
])
def test_bad_arguments_are_one_line(samples, tmp_path, args, msg):
    store, _ = samples
    out = tmp_path / "x.pftrace"
    r = run_cli("export", *args, "-o", str(out), "--store", str(store))
    assert r.code == 2
    assert msg in r.err and len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_missing_store_and_missing_directory(samples, tmp_path):
    store, _ = samples
    r = run_cli("export", "-f", "perfetto", "-o", str(tmp_path / "x"), "--store", str(tmp_path / "none"))
    assert r.code == 2 and "no ksmtrace store" in r.err and "Traceback" not in r.err
    r = run_cli("export", "-f", "perfetto", "-o", str(tmp_path / "no" / "x"), "--store", str(store))
    assert r.code == 2 and "no such directory" in r.err and "Traceback" not in r.err


# ------------------------------------------------------------------ walks cut by the trace's edges

def test_walks_cut_by_the_trace_edges(tmp_path):
    from ksmtrace import api
    from ksmtrace.synth import Layout, generate

    generate(Layout(vmas=40, items=4), walks=6, evidence="function-graph", truncate="both", seed=2).write(
        tmp_path / "cut.txt")
    store = tmp_path / "store"
    api.ingest([str(tmp_path / "cut.txt")], store, label="cut")
    with api.connect(store) as con:
        walks = _rows(con, "SELECT * FROM walks")
        lo, hi = con.execute("SELECT first_ts_ns, last_ts_ns FROM runs").fetchone()
    assert any(w["start_ns"] is None for w in walks) and any(w["end_ns"] is None for w in walks)
    res = api.export("perfetto", tmp_path / "cut.pftrace", store=store)
    _, slices, _, _, _ = read_perfetto(tmp_path / "cut.pftrace")
    got = {s["args"]["walk_id"]: s for s in slices if s["name"].startswith("rmap_walk")}
    assert res.walks == len(got) == len(walks)
    for w in walks:
        s = got[w["walk_id"]]
        assert s["ts"] == (w["start_ns"] if w["start_ns"] is not None else lo)
        assert s["ts"] + s["dur"] == (w["end_ns"] if w["end_ns"] is not None else hi)
        assert ("start_ns" in s["args"]) == (w["start_ns"] is not None)  # an unseen end stays absent
        assert ("end_ns" in s["args"]) == (w["end_ns"] is not None)
        assert s["args"]["complete"] == w["complete"]


# ------------------------------------------------------------------ the track layout, as a property

from hypothesis import given, settings, strategies as st  # noqa: E402


@st.composite
def _task_slices(draw):
    from ksmtrace.export import _Slice

    out, t = [], 0
    for w in range(draw(st.integers(0, 4))):
        t += draw(st.integers(0, 5))
        start = t
        wins = []
        for n in range(draw(st.integers(0, 4))):
            t += draw(st.integers(0, 3))
            s = t
            t += draw(st.integers(0, 3))
            wins.append(_Slice("window", ("window", "r", w, n), ("walk", "r", w), s, t, "lock window", {}))
        t += draw(st.integers(0, 3))
        out.append(_Slice("walk", ("walk", "r", w), None, start, t, "rmap_walk_ksm", {}))
        out += wins
    for k in range(draw(st.integers(0, 5))):
        s = draw(st.integers(0, t + 3))
        out.append(_Slice("wait", ("wait", "r", k), None, s, s + draw(st.integers(0, 6)), "lock wait WRITE", {}))
    return out


@settings(max_examples=300, deadline=None)
@given(_task_slices())
def test_lay_out_places_every_slice_once_and_nests(slices):
    from ksmtrace.export import _lay_out

    parents = {s.key: s.parent for s in slices}
    lanes = _lay_out(slices)
    placed = Counter()
    for lane_no, events in enumerate(lanes):
        stack = []
        for ts, ph, sl in events:
            if ph == "B":
                assert ts == sl.start
                assert not stack or (stack[-1].start <= sl.start and sl.end <= stack[-1].end)
                if lane_no == 0 and sl.kind == "window":
                    assert stack and stack[-1].key == parents[sl.key]  # a window on the main track is in its walk
                stack.append(sl)
                placed[sl.key] += 1
            else:
                assert stack.pop() is sl and ts == sl.end
        assert not stack
        times = [ts for ts, _, _ in events]
        assert times == sorted(times)
    assert placed == Counter(s.key for s in slices)
    # well-formed walks and windows (disjoint walks, windows inside) all stay on the task's own track
    assert all(ph != "B" or sl.kind == "wait" for events in lanes[1:] for _, ph, sl in events)
