"""ksmtrace ab with a fake run_in_vm: interleaved boots, one run per boot, retry once, report in DIR.

The fake guest writes what a capture on that kernel would: a synthetic counter-line trace (ksmtrace synth,
evidence counters) of the unpatched model for the 'before' image and of the patched model for the 'after'
image, so the whole host side (ingest, walk SQL, report) runs for real.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from ksmtrace import api
from ksmtrace.ab import AbError, AbOptions, guest_command, order
from ksmtrace.capture import vm
from ksmtrace.capture.vm import VmResult
from ksmtrace.report import stats
from ksmtrace.synth import Layout, generate

VMAS = 48


class FakeGuest:
    """Stands in for run_in_vm. ``fail`` maps a 1-based call number to what goes wrong in that call."""

    def __init__(self, images: dict[str, Path], fail: dict[int, str] | None = None) -> None:
        self.patched_of = {str(images["before"]): False, str(images["after"]): True}
        self.fail = fail or {}
        self.calls: list[dict] = []

    def __call__(self, cmd, *, kernel, memory, cpus, numa_nodes, kvm, timeout, cwd, on_output):
        n = len(self.calls) + 1
        self.calls.append({"cmd": list(cmd), "kernel": kernel, "cwd": cwd, "numa_nodes": numa_nodes})
        how = self.fail.get(n)
        if how == "noboot":
            raise vm.BootFailed("the guest did not boot (vng exit 1); console tail: Kernel panic")
        out = Path(cmd[cmd.index("--out") + 1])
        vmas = int(cmd[cmd.index("--vmas") + 1])
        on_output("repro: pid 123 region 0x1-0x2 pages 48")
        on_output(f"repro: merged: ksm_merging_pages {vmas}/{vmas}")
        if how == "cmdfail":
            on_output("ksmtrace: error: KSM is not available")
            return VmResult(returncode=2, console_tail="ksmtrace: error: KSM is not available", elapsed_s=1.0)
        if how == "nowalks":
            out.write_text("# tracer: nop\n#\n  ksm_rmap_repro-10  [001] .....   1.000001: "
                           "mm_migrate_pages_start: mode=MIGRATE_SYNC reason=syscall_or_cpuset\n")
        else:
            res = generate(Layout(vmas=vmas, pages=2, items=4), walks=4, patched=self.patched_of[kernel],
                           evidence="counters", counter_style="long", seed=n)
            out.write_text(res.text)
        on_output(f"capture: counters trace {out} (0.1 MB); provenance {out.name}.meta.json")
        return VmResult(returncode=0, console_tail="", elapsed_s=2.0)


@pytest.fixture
def images(tmp_path) -> dict[str, Path]:
    out = {}
    for side in ("before", "after"):
        p = tmp_path / f"bzImage-{side}"
        p.write_bytes(f"fake {side} kernel".encode())
        out[side] = p
    return out


def _ab(images, tmp_path, guest, **kw):
    said: list[str] = []
    kw.setdefault("runs", 2)
    res = api.ab(str(images["before"]), str(images["after"]), vmas=VMAS, out=tmp_path / "ab", run_in_vm=guest,
                 say=said.append, **kw)
    return res, said


def test_interleaved_boots_one_run_each_and_the_report_in_dir(images, tmp_path):
    guest = FakeGuest(images)
    res, said = _ab(images, tmp_path, guest, label_before="unpatched", label_after="patched")
    # A B A B, each boot the capture around the reproducer, the out dir shared with the guest
    assert [c["kernel"] for c in guest.calls] == [str(images[s]) for s in ("before", "after", "before", "after")]
    for c in guest.calls:
        assert c["cmd"][:2] == ["ksmtrace", "capture"] and c["cmd"][c["cmd"].index("--") + 1:][:2] == \
            ["ksmtrace", "repro"]
        assert Path(c["cmd"][c["cmd"].index("--out") + 1]).parent == res.out / "traces"
        assert c["cwd"] == res.out and c["numa_nodes"] == 2
    runs = api.runs(res.store)
    assert sorted(runs["label"].value_counts().items()) == [("patched", 2), ("unpatched", 2)]
    assert sorted(Path(s).name for s in runs["source"]) == ["patched-01.txt", "patched-02.txt",
                                                            "unpatched-01.txt", "unpatched-02.txt"]
    # the report: the changelog's columns, every cell measured, in DIR in every format
    model = json.loads((res.out / "report.json").read_text())
    b, a = model["before"]["changelog_table"], model["after"]["changelog_table"]
    assert b["nr_iteration_total"] == VMAS and a["nr_iteration_total"] == 1
    assert b["skip_addr_out_of_range"] == VMAS - 1 and a["skip_addr_out_of_range"] == 0
    assert all(v is not None for v in (*b.values(), *a.values()))
    assert model["comparison"]["hold_ns"]["unit"] == "run"
    for name in ("report.txt", "report.lkml.txt", "report.md", "report.html", "report.json"):
        assert (res.out / name).stat().st_size > 0
    assert "Nr_iteration_total" in res.report_text
    # progress: boot, merge, capture and ingest for every boot
    for seq, who in enumerate(["unpatched #1", "patched #1", "unpatched #2", "patched #2"], 1):
        mine = [s for s in said if s.startswith(f"ab: [{seq}/4] {who} ")]
        for phase in ("boot:", "merge:", "capture:", "ingest:"):
            assert any(f" {phase}" in s for s in mine), (phase, mine)
    man = json.loads(res.manifest.read_text())
    assert man["order"] == ["unpatched#1", "patched#1", "unpatched#2", "patched#2"]
    assert all(len(x["attempts"]) == 1 and x["attempts"][0]["ok"] for x in man["boots"])
    assert man["kernels"]["before"]["sha256"] != man["kernels"]["after"]["sha256"]
    # how the guests boot is on record: TCG guests get tsc=reliable (the trace clock), KVM guests nothing
    assert man["guest"]["accelerator"] in ("kvm", "tcg")
    assert man["guest"]["boot_options"] == ([] if man["guest"]["accelerator"] == "kvm" else ["tsc=reliable"])


@pytest.mark.parametrize("how", ["noboot", "cmdfail", "nowalks"])
def test_a_failed_boot_is_reported_and_retried_once(images, tmp_path, how):
    guest = FakeGuest(images, fail={2: how})   # the first 'after' boot
    res, said = _ab(images, tmp_path, guest)
    assert len(guest.calls) == 5
    assert guest.calls[1]["kernel"] == guest.calls[2]["kernel"] == str(images["after"])
    assert any("after #1 FAILED (attempt 1 of 2)" in s for s in said)
    assert any("after #1 retrying once" in s for s in said)
    man = json.loads(res.manifest.read_text())
    boot = next(x for x in man["boots"] if x["label"] == "after" and x["index"] == 1)
    assert [t["ok"] for t in boot["attempts"]] == [False, True] and boot["attempts"][0]["error"]
    # the failed attempt is kept beside the good one, never ingested
    runs = api.runs(res.store)
    assert sorted(runs["label"].value_counts().items()) == [("after", 2), ("before", 2)]
    assert not any(".failed-" in s for s in runs["source"])
    if how == "nowalks":   # a trace was written: kept under another name
        assert (res.out / "traces" / "after-01.failed-1.txt").exists()
    assert (res.out / "traces" / "after-01.txt").exists()


def test_a_boot_that_fails_twice_stops_with_one_error_and_keeps_the_rest(images, tmp_path):
    guest = FakeGuest(images, fail={3: "noboot", 4: "noboot"})   # before #2, twice
    with pytest.raises(AbError, match=r"before boot #2 failed twice .*2 boot\(s\) done"):
        _ab(images, tmp_path, guest)
    assert len(guest.calls) == 4
    man = json.loads((tmp_path / "ab" / "ab.json").read_text())
    boot = next(x for x in man["boots"] if x["label"] == "before" and x["index"] == 2)
    assert [t["ok"] for t in boot["attempts"]] == [False, False]
    assert len(api.runs(tmp_path / "ab" / "store")) == 2


def test_options_are_checked_before_any_boot(images, tmp_path):
    guest = FakeGuest(images)
    for kw, msg in ((dict(label_before="x", label_after="x"), "must differ"), (dict(runs=0), "--runs"),
                    (dict(trigger="fly"), "--trigger"), (dict(method="magic"), "--method"),
                    (dict(numa_nodes=1), "two NUMA nodes"), (dict(page_type="huge"), "--page-type"),
                    (dict(label_after="a/b"), "--label-after")):
        with pytest.raises(AbError, match=msg):
            _ab(images, tmp_path, guest, **kw)
    with pytest.raises(vm.NoKernel):
        api.ab(str(tmp_path / "missing"), str(images["after"]), out=tmp_path / "ab2", run_in_vm=guest)
    assert guest.calls == []
    _ab(images, tmp_path, guest, runs=1)
    with pytest.raises(AbError, match="already holds a ksmtrace ab run"):
        _ab(images, tmp_path, guest, runs=1)


def test_order_and_guest_command():
    assert order(3) == [("before", 1), ("after", 1), ("before", 2), ("after", 2), ("before", 3), ("after", 3)]
    cmd = guest_command(AbOptions("a", "b", vmas=500, forks=2, method="counters", pages=900), Path("/o/t.txt"))
    assert cmd == ["ksmtrace", "capture", "--out", "/o/t.txt", "--method", "counters", "--", "ksmtrace", "repro",
                   "--vmas", "500", "--trigger", "move-pages", "--pages", "900", "--forks", "2"]
    cmd = guest_command(AbOptions("a", "b", buffer_kb=4096), Path("/o/t.txt"))
    assert cmd[cmd.index("--buffer-kb") + 1] == "4096" and cmd.index("--buffer-kb") < cmd.index("--")


def test_default_runs_make_the_run_the_unit_with_a_ci():
    n = AbOptions("a", "b").runs
    assert n >= stats.ci_needed() and n >= stats.mwu_needed()


def test_cli_errors_are_one_line(tmp_path, images):
    r = run_cli("ab", "--before", str(images["before"]), "--after", str(images["after"]), "--label-before", "s",
                "--label-after", "s", "--out", str(tmp_path / "o"))
    assert r.code == 2 and r.err.count("\n") == 1 and "must differ" in r.err and "Traceback" not in r.err
    r = run_cli("ab", "--before", str(tmp_path / "nope"), "--after", str(images["after"]), "--out", str(tmp_path / "o"))
    assert r.code == 2 and r.err.count("\n") == 1 and "does not exist" in r.err
