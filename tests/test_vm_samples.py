"""The real traces from Debian's 6.1 kernel in sample_traces/ (recorded in `ksmtrace vm`, see its README):
ingested as committed, they must give what their layouts dictate.

Each trace's sidecar carries the reproducer's own metadata (repro-meta: pages, VMAs in the region, KSM pages,
rmap_items), so every expectation below comes from the layout, not from an earlier ingest."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT, run_cli_inproc

SAMPLES = ROOT / "sample_traces"
REAL61 = sorted(SAMPLES.glob("real-6.1-*.txt.zst"))


def _meta(trace: Path) -> dict:
    return json.loads(trace.with_name(trace.name[:-len(".zst")] + ".meta.json").read_text())


def _ingest(tmp_path, trace: Path):
    store = tmp_path / "store"
    r = run_cli_inproc("ingest", str(trace), "--store", str(store), "--label", trace.name.split(".")[0])
    assert r.code == 0, r.err
    from ksmtrace import api

    runs = api.sql("SELECT n_malformed FROM runs", store)
    return store, api, runs


def test_samples_are_present():
    names = {p.name for p in REAL61}
    assert {"real-6.1-fg200.funcgraph.txt.zst", "real-6.1-bt20000.counters.txt.zst"} <= names, names


@pytest.mark.parametrize("trace", REAL61, ids=lambda p: p.name)
def test_sample_is_what_its_layout_dictates(trace, tmp_path):
    meta = _meta(trace)
    repro = meta["repro"]
    store, api, runs = _ingest(tmp_path, trace)
    assert int(runs["n_malformed"].sum()) == 0
    assert meta["kernel"].startswith("6.1.") and meta.get("lost_events", 0) == 0
    # rmap_items of the walked KSM page: the region pages mapping it (recorded by repro; older sidecars: the
    # first KSM page of the region fills up to max_page_sharing)
    moved = repro.get("moved_page_mappings")
    items = moved[0] if moved else min(repro["max_page_sharing"], repro["pages"])
    vmas = repro["anon_vma_vmas"]
    w = api.sql("SELECT * FROM walks WHERE complete ORDER BY start_ns", store)
    assert len(w) >= 2, "a move makes a try_to_migrate and a remove_migration_ptes walk per KSM page"
    method = meta["method"]
    if method in ("function-graph", "kprobes", "bpftrace"):
        # the largest window iterates every VMA on the anon_vma; one rmap_one per rmap_item of the walked page
        assert int(w["max_window_iterations"].max() if method != "bpftrace" else
                   api.sql("SELECT max(iterations) FROM lock_windows", store).iloc[0, 0]) == vmas
        assert set(w["rmap_one"]) == {items}
    if method in ("function-graph", "function-graph-locks", "kprobes", "bpftrace"):
        # try_to_migrate stops after the pass that unmapped the last mapping; remove_migration_ptes walks the
        # item list twice (pass 0, then pass 1 for new forks)
        assert sorted(set(w["n_windows"])) == [items, 2 * items]
    if method == "bpftrace":
        lw = api.sql("SELECT * FROM lock_windows", store)
        assert lw["counters_consistent"].all()
        # pass 0: every VMA but the item's own is an address skip; pass 1 skips the own VMA as same-mm
        full = lw[lw["iterations"] == vmas]
        assert set(full["skip_addr"]) == {vmas - 1} and set(full["skip_mm"]) <= {0, 1}
