"""ksmtrace doctor: probing with fake trees (everywhere) and on the real kernel (root)."""
from __future__ import annotations

import json

import pytest

from _capture_helpers import fake_tree, need_tracefs, use_fake
from conftest import run_cli, run_cli_inproc


def _probe(monkeypatch, tmp_path, uid=0, perf="perf version 6.1.0", **kw):
    from ksmtrace.capture import doctor

    fake_tree(tmp_path, **kw)
    use_fake(monkeypatch, tmp_path, uid=uid, perf=perf)
    return doctor.probe()


def test_stock_kernel_offers_perf_callchains(monkeypatch, tmp_path):
    info = _probe(monkeypatch, tmp_path)
    ev = {k: v["available"] for k, v in info["evidence"].items()}
    assert ev == {"a": False, "b": False, "c": False, "d": True, "e": False, "f": True}
    assert "function_graph not in available_tracers" in info["evidence"]["b"]["why"]
    assert info["method"] == "perf-callchain"
    assert info["next"][0].startswith("ksmtrace capture --method perf-callchain --out split.txt -- ksmtrace repro")
    assert "--vmas 1" in info["next"][1]
    assert info["ksm"]["run"] == "0" and info["ksm"]["full_scans"] == 7


def test_without_perf_falls_back_to_events(monkeypatch, tmp_path):
    info = _probe(monkeypatch, tmp_path, perf=None)
    assert not info["evidence"]["d"]["available"]
    assert info["evidence"]["d"]["why"] == "perf not installed"
    assert info["method"] == "events"


@pytest.mark.parametrize("kw, method", [
    (dict(rmap=True), "rmap-tracepoints"),
    (dict(tracers="function_graph function nop", filter_functions=True), "function-graph"),
    (dict(kprobes=True), "kprobes"),
])
def test_best_method_order(monkeypatch, tmp_path, kw, method):
    assert _probe(monkeypatch, tmp_path, **kw)["method"] == method


def test_function_graph_without_filter_functions_is_not_usable(monkeypatch, tmp_path):
    info = _probe(monkeypatch, tmp_path, tracers="function_graph nop", filter_functions=False)
    assert not info["evidence"]["b"]["available"]
    assert "available_filter_functions not readable" in info["evidence"]["b"]["why"]


def test_no_ksm_says_so(monkeypatch, tmp_path):
    info = _probe(monkeypatch, tmp_path, ksm=False)
    assert info["ksm"] is None
    assert "no KSM" in info["next"][0]


def test_not_root_and_tracefs_unmounted(monkeypatch, tmp_path):
    info = _probe(monkeypatch, tmp_path, uid=1000, tracefs=False)
    assert info["tracefs"]["mounted"] is None and info["tracefs"]["mountable"] is False
    assert all(not e["available"] for e in info["evidence"].values())
    assert info["next"][0].startswith("sudo ksmtrace doctor")
    from ksmtrace.capture import doctor
    text = doctor.render(info)
    assert "tracefs       not mounted" in text and "mount -t tracefs nodev" in text


def test_render_text_and_json(monkeypatch, tmp_path):
    from ksmtrace.capture import doctor

    info = _probe(monkeypatch, tmp_path, nodes="0-1")
    assert info["numa_nodes"] == [0, 1]
    assert "--trigger move-pages" in info["next"][0]
    text = doctor.render(info)
    assert "d ✔ perf callchains" in text and "b ✘ function_graph" in text
    assert "best capture method: perf-callchain" in text
    assert json.loads(doctor.render(info, "json"))["method"] == "perf-callchain"


def test_preemption_model_sources(monkeypatch, tmp_path):
    from ksmtrace.capture import env

    fake_tree(tmp_path)
    use_fake(monkeypatch, tmp_path)
    assert env.preemption_model({"CONFIG_PREEMPT_NONE": "y", "CONFIG_PREEMPT_DYNAMIC": "y"}) == \
        "none (config default dynamic)"
    (tmp_path / "proc/cmdline").write_text("quiet preempt=full\n")
    assert env.preemption_model({}) == "full (preempt= on the command line)"
    p = tmp_path / "sys/kernel/debug/sched"
    p.mkdir(parents=True)
    (p / "preempt").write_text("none (voluntary) full lazy\n")
    assert env.preemption_model({}) == "voluntary (sched/preempt)"


def test_cli_rejects_bad_format():
    r = run_cli_inproc("doctor", "--format", "xml")
    assert r.code != 0 and "xml" in r.err and "Traceback" not in r.err


@pytest.mark.root
def test_real_kernel_json():
    need_tracefs()
    r = run_cli("doctor", "--format", "json")
    assert r.code == 0, r.err
    info = json.loads(r.out)
    assert info["root"] is True and info["tracefs"]["mounted"]
    assert "set_migration_pte" in info["tracefs"]["events"]["migrate"]
    assert info["evidence"]["f"]["available"] is True
    assert info["method"] in ("rmap-tracepoints", "function-graph", "kprobes", "perf-callchain", "events")
    r2 = run_cli("doctor")
    assert r2.code == 0 and "best capture method: " + info["method"] in r2.out
