"""ksmtrace ab for real: an A/A run (the same Debian kernel on both sides, tiny layout, 2 boots each) under
QEMU. Identical code must read ~ for every metric. Skips without qemu, virtme-ng or a /boot kernel."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from ksmtrace import api
from ksmtrace.capture import vm

pytestmark = [pytest.mark.vm, pytest.mark.slow]


def _kernel() -> Path:
    if not shutil.which("qemu-system-x86_64"):
        pytest.skip("qemu-system-x86_64 not installed (Debian package qemu-system-x86)")
    try:
        vm.find_vng()
        return vm.find_kernel(os.environ.get("KSMTRACE_TEST_KERNEL", "auto"))
    except vm.VmError as e:
        pytest.skip(str(e))


def test_aa_same_kernel_reads_no_change(tmp_path):
    """About 11 minutes under TCG on 2 shared cores (652 s on 2026-12-01; 750 s beside another guest), so
    about 3 minutes a boot: a boot still running at 10 minutes is a hung guest (seen once, after its trace was
    written) and is killed and retried by ab's own retry rather than holding the suite for half an hour."""
    kernel = _kernel()
    said: list[str] = []
    res = api.ab(str(kernel), str(kernel), runs=2, vmas=16, method="function-graph", label_before="a1",
                 label_after="a2", out=tmp_path / "aa", timeout=600, say=said.append)
    model = json.loads((res.out / "report.json").read_text())
    assert model["before"]["runs"] == model["after"]["runs"] == 2
    # identical layouts and code: the counted cells are equal on both sides, and measured
    # (function-graph gives no address/mm skip split: those cells stay unknown on both sides)
    b, a = (model[s]["changelog_table"].get("nr_iteration_total") for s in ("before", "after"))
    assert b is not None and b == a, ("nr_iteration_total", b, a)
    b, a = (model[s]["changelog_table"].get("skip_addr_out_of_range") for s in ("before", "after"))
    assert b == a, ("skip_addr_out_of_range", b, a)
    verdicts = {k: c["verdict"] for k, c in model["comparison"].items() if isinstance(c, dict) and "verdict" in c}
    assert verdicts, model["comparison"].keys()
    assert set(verdicts.values()) == {"~"}, verdicts
    man = json.loads(res.manifest.read_text())
    assert [b["label"] for b in man["boots"]] == ["a1", "a2", "a1", "a2"]
    assert all(b["run_id"] for b in man["boots"])
