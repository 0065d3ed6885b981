"""The bpftrace counters program (capture/bpftrace.py): its spelling per bpftrace version and kernel, and its
output lines read back by ingest as evidence `counters` (lines rendered from the program's own printf
formats, so a change to either side breaks this test)."""
from __future__ import annotations

import re

import pytest

from conftest import run_cli_inproc
from ksmtrace.capture import bpftrace as bt


def _probes(prog: str) -> list[str]:
    return [ln.split(" /")[0].split(" {")[0] for ln in prog.splitlines()
            if re.match(r"^(kfunc|kretfunc|fentry|fexit):", ln)]


def test_spelling_per_version_and_kernel():
    old = bt.program((0, 17), "6.1.0-57-amd64")
    assert "kfunc:rmap_walk_ksm" in old and "args->folio" in old and "fentry:" not in old
    assert "struct ksm_rmap_item *" in old and "struct ksm_stable_node *" in old
    assert "struct rmap_item *" in bt.program((0, 17), "6.0.19")
    new = bt.program((0, 21), "6.12.1")
    assert "fentry:rmap_walk_ksm" in new and "args.folio" in new and "kfunc:" not in new
    assert "struct ksm_rmap_item *" in new and "struct ksm_stable_node *" in new
    assert "kfunc:rmap_walk_ksm" in bt.program(None, "6.1.0")      # unknown version: the alias every one takes


def test_every_attach_point_stands_alone():
    """bpftrace 0.17 refuses one probe over functions with different arguments ("mixed arguments")."""
    prog = bt.program((0, 17), "6.1.0")
    for p in _probes(prog):
        assert "," not in p, p
    names = [p.split(":", 1)[1] for p in _probes(prog)]
    for f in ("rmap_walk_ksm", "down_read_trylock", "down_read", "up_read", "anon_vma_interval_tree_iter_first",
              "anon_vma_interval_tree_iter_next", "try_to_migrate_one", "remove_migration_pte"):
        assert f in names
    assert prog.count("{") == prog.count("}")


def _render(fmt: str, *vals) -> str:
    """C printf -> Python: %llu/%lld -> %d (the widths are the same)."""
    return re.sub(r"%(0?\d*)ll[ud]", r"%\1d", fmt).replace("\\n", "\n") % vals


def test_output_lines_ingest_as_counters(tmp_path):
    prog = bt.program((0, 17), "6.1.0")
    fmts = re.findall(r'printf\("([^"]*)"', prog)
    win_split = next(f for f in fmts if "ksm_window" in f and "skip_addr" in f)
    win_plain = next(f for f in fmts if "ksm_window" in f and "skip_addr" not in f)
    walk = next(f for f in fmts if "ksm_walk" in f and "cb=remove_migration_pte" in f)
    lines = ["Attaching 17 probes...\n", bt.ATTACHED + "\n",
             _render(win_split, "ksm_rmap_repro", 263, 1, 1234, 500000, 81234, 201, 1, 199, 1, 1, 1),
             _render(win_split, "ksm_rmap_repro", 263, 1, 1234, 600000, 80000, 201, 0, 200, 1, 1, 2),
             _render(win_plain, "ksm_rmap_repro", 263, 1, 1234, 700000, 79000, 201, 1, 1, 3),
             _render(walk, "ksm_rmap_repro", 263, 1, 1234, 700100, 300000000, 3, 603, 2, 81234),
             "\n"]
    f = tmp_path / "bt.txt"
    f.write_text("".join(lines))
    store = tmp_path / "st"
    r = run_cli_inproc("ingest", str(f), "--store", str(store), "--label", "bt")
    assert r.code == 0 and "0 malformed" in r.err + r.out, r.err
    from ksmtrace import api

    w = api.sql("SELECT window_no, hold_ns, iterations, rmap_one, skip_addr, skip_mm, counters_consistent "
                "FROM lock_windows ORDER BY window_no", store)
    assert w["hold_ns"].tolist() == [81234, 80000, 79000] and w["iterations"].tolist() == [201] * 3
    assert w["skip_addr"].tolist()[:2] == [199, 200] and w["skip_mm"].tolist()[:2] == [1, 1]
    assert w["counters_consistent"].tolist()[:2] == [True, True]
    assert w["skip_addr"].isna().tolist()[2] and w["counters_consistent"].isna().tolist()[2]  # unknown, not 0
    k = api.sql("SELECT evidence, n_windows, iterations, rmap_one, duration_ns, caller, complete FROM walks", store)
    assert k.to_dict("records") == [{"evidence": "counters", "n_windows": 3, "iterations": 603, "rmap_one": 2,
                                     "duration_ns": 300000000, "caller": "remove_migration_ptes",
                                     "complete": True}]


def test_print_recipe_carries_the_program():
    r = run_cli_inproc("capture", "--print", "--method", "function-graph")
    assert r.code == 0
    assert "kfunc:rmap_walk_ksm" in r.out and "ksm_window: hold_ns=" in r.out
    assert 'bpftrace ksm_windows.bt > "$OUT.bpftrace.txt"' in r.out and bt.ATTACHED in r.out


@pytest.mark.parametrize("kernel, names", [("6.0.19", ("rmap_item", "stable_node")),
                                           ("6.1.0-57-amd64", ("ksm_rmap_item", "ksm_stable_node")),
                                           ("6.18.44-fc", ("ksm_rmap_item", "ksm_stable_node"))])
def test_struct_names(kernel, names):
    assert bt.struct_names(kernel) == names
