"""ksmtrace capture: recipes, option checks, tracefs state save/restore, failures; real captures as root."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _capture_helpers import fake_tree, knob_snapshot, need_perf, need_tracefs, real_tracefs, use_fake
from conftest import ROOT, run_cli, run_cli_inproc


# ------------------------------------------------------------------ --print (no root needed)
@pytest.mark.parametrize("method, must", [
    ("perf-callchain", ["perf record -a -g", "-e migrate:set_migration_pte", "-e lock:contention_end",
                        "--ns -F comm,pid,tid,cpu,time,event,trace,ip,sym > \"$OUT\"",
                        'OUT=$(realpath -m -- "split.txt")', "--stack-skip 0"]),
    ("function-graph", ["echo rmap_walk_ksm > set_graph_function", "options/funcgraph-abstime",
                        "trace-cmd record -p function_graph -g rmap_walk_ksm"]),
    ("kprobes", ["p:ksmp/rmap_walk_ksm rmap_walk_ksm", "r:ksmp/rmap_walk_ksm_ret", "kprobe_profile",
                 "f:ksmp/walk rmap_walk_ksm"]),
    ("rmap-tracepoints", ["events/rmap/enable", "perf record -a -g -e rmap:rmap_walk_start"]),
    ("events", ["options/hash-ptr", "instances/ksmtrace", "migrate/set_migration_pte",
                "stacktrace if flags & 6", "per_cpu/cpu*"]),
])
def test_print_recipe(method, must):
    r = run_cli_inproc("capture", "--print", "--method", method, "--out", "split.txt", "--",
                "ksmtrace", "repro", "--vmas", "20000")
    assert r.code == 0, r.err
    for m in must:
        assert m in r.out, m
    assert "W='ksmtrace repro --vmas 20000'" in r.out
    assert "fentry:rmap_walk_ksm" in r.out                  # the bpftrace sketch, always
    assert "hold_ns=<ns> iterations=<n>" in r.out           # the counter-line convention, always
    others = {"perf-callchain": "perf record -a -g -o", "function-graph": "echo rmap_walk_ksm > set_graph_function",
              "kprobes": "echo 'p:ksmp/rmap_walk_ksm", "events": "echo 'stacktrace if flags & 2'"}
    for m, text in others.items():
        if m != method and not (method == "rmap-tracepoints" and m == "events"):
            assert text not in r.out, (m, text)


def test_print_auto_has_every_method_and_filter():
    r = run_cli_inproc("capture", "--print", "--filter-addr", "0x600000000000-0x600004e20000")
    assert r.code == 0, r.err
    for text in ("set_graph_function", "kprobe_events", "perf record -a -g", "events/rmap/enable", "hash-ptr"):
        assert text in r.out
    assert "--filter 'addr >= 0x600000000000 && addr < 0x600004e20000'" in r.out
    assert "echo 'addr >= 0x600000000000 && addr < 0x600004e20000' > $I/events/migrate/set_migration_pte/filter" \
        in r.out


@pytest.mark.parametrize("args, msg", [
    (["capture", "--method", "ebpf", "--print"], "--method must be one of"),
    (["capture", "--", "true"], "--out FILE is required"),
    (["capture", "--out", "x.txt"], "nothing to record"),
    (["capture", "--out", "x.txt", "--duration", "1", "--", "true"], "either --duration or a COMMAND"),
    (["capture", "--out", "x.txt", "--duration", "-1"], "--duration must be positive"),
    (["capture", "--print", "--filter-addr", "zz"], "expected START-END"),
    (["capture", "--print", "--filter-addr", "0x20-0x10"], "END must be above START"),
])
def test_option_errors(args, msg):
    r = run_cli_inproc(*args)
    assert r.code == 2, (r.out, r.err)
    assert msg in r.err and "Traceback" not in r.err and r.err.strip().count("\n") == 0


def test_partial_names():
    from ksmtrace.capture.capture import meta_path, partial_name

    assert partial_name(Path("d/split.txt")) == Path("d/split.partial.txt")
    assert partial_name(Path("trace")) == Path("trace.partial")
    assert meta_path(Path("d/split.txt")) == Path("d/split.txt.meta.json")


# ------------------------------------------------------------------ fake tracefs (everywhere)
def test_saved_state_restores_everything(tmp_path):
    from ksmtrace.capture.tracefs import SavedState

    t = tmp_path
    (t / "options").mkdir()
    files = {"current_tracer": "nop\n", "set_ftrace_filter": "down_read\nup_read\n", "set_graph_function": "",
             "trace_clock": "[local] global counter\n", "buffer_size_kb": "1408\n", "tracing_on": "1\n",
             "options/funcgraph-tail": "0\n"}
    for k, v in files.items():
        (t / k).write_text(v)
    st = SavedState(t)
    st.save(*files, "does_not_exist")
    for k in files:
        (t / k).write_text("changed\n")
    assert st.restore() == []
    assert (t / "current_tracer").read_text() == "nop\n"
    assert (t / "set_ftrace_filter").read_text() == "down_read\nup_read\n"
    assert (t / "set_graph_function").read_text() == ""
    assert (t / "trace_clock").read_text() == "local\n"
    assert (t / "buffer_size_kb").read_text() == "1408\n"
    assert (t / "tracing_on").read_text() == "1\n" and (t / "options/funcgraph-tail").read_text() == "0\n"
    assert not (t / "does_not_exist").exists()


def test_instance_refuses_existing(tmp_path):
    from ksmtrace.capture import env, tracefs

    (tmp_path / "instances" / "ksmtrace").mkdir(parents=True)
    with pytest.raises(env.CaptureError, match="already exists"):
        tracefs.Instance(tmp_path).create()


def _capture(opts_kw, tmp_path):
    from ksmtrace.capture import capture

    return capture.run(capture.CaptureOptions(out=tmp_path / "t.txt", command=["true"], **opts_kw))


def test_missing_method_suggests_available(monkeypatch, tmp_path):
    from ksmtrace.capture import env

    fake_tree(tmp_path / "root")
    use_fake(monkeypatch, tmp_path / "root")
    with pytest.raises(env.MethodUnavailable) as ei:
        _capture({"method": "function-graph"}, tmp_path)
    msg = str(ei.value)
    assert "function-graph is not available" in msg and "function_graph not in available_tracers" in msg
    assert "available: perf-callchain, events; try --method perf-callchain" in msg
    with pytest.raises(env.MethodUnavailable, match="kprobes is not available"):
        _capture({"method": "kprobes"}, tmp_path)
    assert not (tmp_path / "t.txt").exists()


def test_not_root(monkeypatch, tmp_path):
    from ksmtrace.capture import env

    fake_tree(tmp_path / "root")
    use_fake(monkeypatch, tmp_path / "root", uid=1000)
    with pytest.raises(env.NotRoot, match="needs root"):
        _capture({"method": "events"}, tmp_path)


def test_no_tracefs(monkeypatch, tmp_path):
    from ksmtrace.capture import env

    root = tmp_path / "root"
    fake_tree(root, tracefs=False)
    use_fake(monkeypatch, root)
    # the mount point does not exist, so 'mount' fails whether or not we are root
    os.rename(root / "sys/kernel/tracing", root / "sys/kernel/not-tracing")
    with pytest.raises(env.NoTracefs, match="tracefs is not mounted"):
        _capture({"method": "events"}, tmp_path)


def test_no_usable_method(monkeypatch, tmp_path):
    from ksmtrace.capture import env

    fake_tree(tmp_path / "root", migrate=False, lock=False)
    use_fake(monkeypatch, tmp_path / "root", perf=None)
    with pytest.raises(env.MethodUnavailable, match="no way to record KSM walks"):
        _capture({"method": "auto"}, tmp_path)


# ------------------------------------------------------------------ real captures (root)
def _instances_clean(t: Path) -> bool:
    return not (t / "instances" / "ksmtrace").exists()


@pytest.mark.root
def test_real_events_capture(tmp_path):
    t = need_tracefs()
    before = knob_snapshot()
    out = tmp_path / "ev.txt"
    r = run_cli("capture", "--method", "events", "--out", str(out), "--buffer-kb", "4096", "--",
                sys.executable, "-m", "ksmtrace", "repro", "--vmas", "300", "--trigger", "none")
    assert r.code == 0, r.err
    meta = json.loads((tmp_path / "ev.txt.meta.json").read_text())
    assert meta["method"] == "events" and meta["partial"] is False and meta["command_exit"] == 0
    assert meta["repro"]["pages"] == 300 and meta["kernel"] == os.uname().release
    assert "migrate/set_migration_pte" in meta["events"] and meta["tracefs_options"]["hash-ptr"] == 0
    # the clock the timestamps come from: the trace clock and the kernel's clocksource under it
    cs = Path("/sys/devices/system/clocksource/clocksource0/current_clocksource")
    assert meta["clocksource"] == (cs.read_text().strip() if cs.exists() else None)
    assert meta["trace_clock"] and meta["trace_clock"] in (t / "trace_clock").read_text()
    text = out.read_text()
    assert text.startswith("# tracer: nop") and "ksm_enter: mm " in text
    assert (tmp_path / "ev.txt.bufstats.txt").read_text().startswith("== cpu0")
    assert _instances_clean(t) and knob_snapshot() == before


@pytest.mark.root
def test_real_perf_capture_ingests(tmp_path):
    need_perf()
    out = tmp_path / "p.txt"
    r = run_cli("capture", "--method", "perf-callchain", "--out", str(out), "--no-keep-data", "--",
                sys.executable, "-m", "ksmtrace", "repro", "--vmas", "300", "--trigger", "none")
    assert r.code == 0, r.err
    meta = json.loads((tmp_path / "p.txt.meta.json").read_text())
    assert meta["method"] == "perf-callchain" and meta["perf_data"] is None
    assert not (tmp_path / "p.txt.perf.data").exists()
    assert "--ns --show-lost-events -F comm,pid,tid,cpu,time,event,trace,ip,sym" in meta["converter"]
    assert any("perf version" in h for h in meta["perf_header"])
    r = run_cli("ingest", "--store", str(tmp_path / "store"), "--label", "x", str(out))
    assert r.code == 0, r.err
    assert "perf-script" in r.out


@pytest.mark.root
def test_real_interrupted_capture_keeps_partial(tmp_path):
    t = need_tracefs()
    before = knob_snapshot()
    out = tmp_path / "int.txt"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "pipeline"))
    p = subprocess.Popen([sys.executable, "-m", "ksmtrace", "capture", "--method", "events", "--out", str(out),
                          "--buffer-kb", "1024", "--", sys.executable, "-m", "ksmtrace", "repro", "--vmas", "300",
                          "--forks", "1", "--trigger", "none", "--hold", "120"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    child = None
    try:
        deadline = time.monotonic() + 120
        for line in p.stdout:
            m = re.search(r"forked 1 children: (\d+)", line)
            if m:
                child = int(m.group(1))
            if "holding the layout" in line:
                break
            assert time.monotonic() < deadline
        assert (t / "instances" / "ksmtrace").exists()
        p.send_signal(signal.SIGINT)      # to the capture process only: it must stop the workload itself
        rc = p.wait(timeout=90)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    err = p.stderr.read()
    assert rc == 130, err
    part = tmp_path / "int.partial.txt"
    assert "partial trace kept in" in err and str(part) in err and "Traceback" not in err
    assert part.exists() and not out.exists()
    meta = json.loads((tmp_path / "int.partial.txt.meta.json").read_text())
    assert meta["partial"] is True and meta["interrupted_by"] == "SIGINT" and meta["trace"] == str(part)
    assert Path(meta["bufstats"]).name == "int.partial.txt.bufstats.txt"
    assert _instances_clean(t) and knob_snapshot() == before
    assert child is not None and not os.path.exists(f"/proc/{child}")
    assert real_tracefs() == t
