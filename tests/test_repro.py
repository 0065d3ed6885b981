"""ksmtrace repro: option checks and failure messages everywhere; the real layout and Ctrl-C as root."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings, strategies as st

from _capture_helpers import fake_tree, knob_snapshot, need_root_ksm, use_fake
from conftest import ROOT, run_cli, run_cli_inproc


@given(pages=st.integers(1, 3000), vmas=st.integers(1, 3000))
@settings(max_examples=200, deadline=None)
def test_split_gives_about_the_requested_vmas(pages, vmas):
    from ksmtrace.capture.repro import count_vmas, split_offsets

    vmas = min(vmas, pages)
    offs = split_offsets(pages, vmas)
    assert all(0 < i < pages for i in offs) and offs == sorted(set(offs))
    n = count_vmas(offs, pages)
    assert vmas <= n <= vmas + 1
    if vmas == 1:
        assert offs == [] and n == 1


@pytest.mark.parametrize("kw, msg", [
    (dict(vmas=0), "--vmas must be at least 1"),
    (dict(vmas=10, pages=5), "--vmas 10 needs at least as many pages"),
    (dict(vmas=10, forks=-1), "--forks must be between"),
    (dict(vmas=10, trigger="reclaim"), "--trigger must be one of compact, move-pages, none"),
    (dict(vmas=10, hold=-1), "--hold must be >= 0"),
    (dict(vmas=10, attempts=0), "--attempts must be at least 1"),
])
def test_option_errors(kw, msg):
    from ksmtrace.capture import env, repro

    with pytest.raises(env.CaptureError, match=re.escape(msg)):
        repro.ReproOptions(**kw).validate()


def test_default_pages():
    from ksmtrace.capture.repro import ReproOptions

    assert ReproOptions(vmas=500).validate().pages == 500
    assert ReproOptions(vmas=1).validate().pages == 20000   # the unsplit control matches the usual split run


def test_cli_bad_option_is_one_line():
    r = run_cli_inproc("repro", "--vmas", "0")
    assert r.code == 2 and r.err.strip().count("\n") == 0
    assert "--vmas must be at least 1" in r.err and "Traceback" not in r.err


def test_not_root(monkeypatch, tmp_path):
    from ksmtrace.capture import env, repro

    fake_tree(tmp_path)
    use_fake(monkeypatch, tmp_path, uid=1000)
    with pytest.raises(env.NotRoot, match="needs root"):
        repro.run(repro.ReproOptions(vmas=10))


def test_no_ksm(monkeypatch, tmp_path):
    from ksmtrace.capture import env, repro

    fake_tree(tmp_path, ksm=False)
    use_fake(monkeypatch, tmp_path)
    with pytest.raises(env.NoKsm, match="CONFIG_KSM"):
        repro.run(repro.ReproOptions(vmas=10))


def test_move_pages_needs_two_nodes(monkeypatch, tmp_path):
    from ksmtrace.capture import env, repro

    fake_tree(tmp_path, nodes="0")
    use_fake(monkeypatch, tmp_path)
    with pytest.raises(env.MethodUnavailable, match="two NUMA nodes.*use --trigger compact"):
        repro.run(repro.ReproOptions(vmas=10, trigger="move-pages"))


def test_knobs_restore_in_fake_tree(monkeypatch, tmp_path):
    from ksmtrace.capture import ksm

    fake_tree(tmp_path)
    use_fake(monkeypatch, tmp_path)
    k = tmp_path / "sys/kernel/mm/ksm"
    before = {p.name: p.read_text() for p in k.iterdir()}
    with ksm.Knobs() as kn:
        kn.set("run", 1)
        kn.set("pages_to_scan", 5000)
        kn.set("sleep_millisecs", 20)          # unchanged value: not recorded
        assert (k / "run").read_text() == "1\n" and (k / "pages_to_scan").read_text() == "5000\n"
        assert set(kn.saved) == {"run", "pages_to_scan"}
    assert {p.name: p.read_text().strip() for p in k.iterdir()} == {n: v.strip() for n, v in before.items()}
    assert ksm.read_knob("advisor_mode") == "none"


def test_unknown_knob(monkeypatch, tmp_path):
    from ksmtrace.capture import env, ksm

    fake_tree(tmp_path)
    use_fake(monkeypatch, tmp_path)
    with pytest.raises(env.CaptureError, match="does not exist"):
        ksm.Knobs().set("no_such_knob", 1)


# ------------------------------------------------------------------ real kernel (root)
@pytest.mark.root
def test_real_layout_and_restore():
    need_root_ksm()
    before = knob_snapshot()
    mmc = open("/proc/sys/vm/max_map_count").read()
    r = run_cli("repro", "--vmas", "400", "--trigger", "none")
    assert r.code == 0, r.err
    m = re.search(r"repro-meta: (\{.*\})", r.out)
    import json
    meta = json.loads(m.group(1))
    assert meta["pages"] == 400 and 400 <= meta["vmas_in_region"] <= 401
    assert meta["ksm_merging_pages"] == 400 and meta["ksm_rmap_items"] >= 400
    assert meta["ksm_pages"] == meta["ksm_pages_expected"] == 2     # 400 pages / max_page_sharing 256
    assert knob_snapshot() == before
    assert open("/proc/sys/vm/max_map_count").read() == mmc


@pytest.mark.root
def test_sigint_reaps_children_and_restores_knobs():
    need_root_ksm()
    before = knob_snapshot()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "pipeline"))
    p = subprocess.Popen([sys.executable, "-m", "ksmtrace", "repro", "--vmas", "300", "--forks", "2",
                          "--trigger", "none", "--hold", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env, text=True)
    children: list[int] = []
    deadline = time.monotonic() + 120
    try:
        for line in p.stdout:
            m = re.search(r"forked 2 children: (\d+) (\d+)", line)
            if m:
                children = [int(m.group(1)), int(m.group(2))]
            if "holding the layout" in line:
                break
            assert time.monotonic() < deadline
        assert len(children) == 2
        assert all(os.path.exists(f"/proc/{c}") for c in children)
        assert knob_snapshot()["run"].strip() == "0"      # ksmd paused (merged pages kept) for the trigger
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    err = p.stderr.read()
    assert rc == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not any(os.path.exists(f"/proc/{c}") for c in children)
    assert knob_snapshot() == before


def test_merged_pages_from_page_tables():
    """Merge detection that holds on 6.1 (no ksm_merging_pages in /proc/PID/ksm_stat) and current kernels:
    pages sharing a PFN are merged; a page alone on its PFN counts when /proc/kpageflags flags it KSM."""
    import io
    import struct

    from ksmtrace.capture.repro import KPF_KSM, merged_pages

    flags = bytearray(8 * 64)
    struct.pack_into("<Q", flags, 8 * 40, 1 << KPF_KSM)        # PFN 40: a KSM page mapped once
    struct.pack_into("<Q", flags, 8 * 41, 1 << 5)              # PFN 41: an ordinary page (LRU bit)
    kpf = io.BytesIO(bytes(flags))
    assert merged_pages([7, 7, 7, 9, 9, 41], kpf) == 5
    assert merged_pages([7, 7, 40, 41], kpf) == 3
    assert merged_pages([], kpf) == 0
    with pytest.raises(OSError):
        merged_pages([0, 0, 0], kpf)                            # PFNs hidden (not root)


def test_move_target_is_another_node():
    from ksmtrace.capture import env
    from ksmtrace.capture.repro import pick_target

    assert pick_target(0, [0, 1]) == 1 and pick_target(1, [0, 1]) == 0
    assert pick_target(1, [0, 1, 2]) == 2 and pick_target(-14, [0, 1]) == 0
    with pytest.raises(env.MethodUnavailable):
        pick_target(0, [0])


def _maps_lines(lo: int, hi: int) -> list[str]:
    out = []
    for line in open("/proc/self/maps"):
        a, b = (int(x, 16) for x in line.split(" ", 1)[0].split("-"))
        if a < hi and b > lo:
            out.append(line.split()[0] + " " + line.split()[1])
    return out


def test_region_mapped_prot_none_is_not_merged_into_an_anonymous_neighbour():
    """Why repro maps the region PROT_NONE before cutting its guard pages: a read-write anonymous mapping placed
    right below a faulted read-write anonymous VMA is merged into it by mmap (one VMA, the neighbour's anon_vma),
    and the guard page cut out afterwards leaves both halves on that anon_vma: one VMA more for every walk."""
    import ctypes

    from ksmtrace.capture.repro import PAGE, PROT_NONE, _Libc

    lib = _Libc()
    # a free stretch of 8 pages with a PROT_NONE guard page above it that stays mapped: without it, the
    # neighbour (the top 4 pages) would merge with whatever read-write mapping lay right above the stretch
    area = lib.mmap(9 * PAGE, None, prot=PROT_NONE)
    lib.c.munmap(area, 8 * PAGE)
    nb = lib.mmap(4 * PAGE, area + 4 * PAGE)
    ctypes.memset(nb, 1, 4 * PAGE)                        # the neighbour has an anon_vma
    try:
        rw = lib.mmap(3 * PAGE, nb - 3 * PAGE)            # read-write, right below it: merged
        assert _maps_lines(nb - 3 * PAGE, nb + 4 * PAGE) == [f"{rw:x}-{nb + 4 * PAGE:x} rw-p"]
        lib.c.munmap(rw, 3 * PAGE)
        none = lib.mmap(3 * PAGE, nb - 3 * PAGE, prot=PROT_NONE)   # what repro does: a VMA of its own
        assert _maps_lines(nb - 3 * PAGE, nb + 4 * PAGE) == [f"{none:x}-{nb:x} ---p", f"{nb:x}-{nb + 4 * PAGE:x} rw-p"]
        lib.c.munmap(none, 3 * PAGE)
    finally:
        lib.c.munmap(nb, 4 * PAGE)
        lib.c.munmap(area + 8 * PAGE, PAGE)
