"""`ksmtrace demo`: the whole job on the bundled sample traces."""
from __future__ import annotations

import json

from conftest import run_cli


def test_demo_end_to_end(tmp_path):
    out, store = tmp_path / "out", tmp_path / "store"
    r = run_cli("demo", "--out", str(out), "--store", str(store))
    assert r.code == 0, r.err
    assert "Traceback" not in r.err
    # every bundled pair was ingested without malformed lines and reported
    man = json.loads((__import__("conftest").ROOT / "sample_traces" / "manifest.json").read_text())
    for pair in man["pairs"]:
        assert pair["title"] in r.out
        html = (out / f"{pair['name']}.html").read_text()
        assert "data:image/png;base64," in html and "http://" not in html.replace("http://www.w3.org", "")
        assert (out / f"{pair['name']}.lkml.txt").exists()
    runs = json.loads(run_cli("runs", "--store", str(store), "-f", "json").out)
    assert len(runs) == sum(len(p["before"]["files"]) + len(p["after"]["files"]) for p in man["pairs"])
    assert all(r_["n_malformed"] == 0 for r_ in runs)

    # the real stock-kernel pair: the split layout's walks and windows are far slower than the control's
    rep = json.loads(run_cli("report", "--before", "real-unsplit", "--after", "real-split20000", "--store",
                             str(store), "--format", "json").out)
    assert rep["before"]["evidence"] == ["perf-callchain"] or "perf-callchain" in str(rep["before"]["evidence"])
    assert rep["after"]["hold_ns"]["p50"] > 20 * rep["before"]["hold_ns"]["p50"]
    assert rep["after"]["walk_duration_ns"]["p50"] > 20 * rep["before"]["walk_duration_ns"]["p50"]

    # the synthetic counters pair reproduces the shape of the v1 table: iterations and address skips vanish
    rep = json.loads(run_cli("report", "--before", "synth-counters-unpatched", "--after", "synth-counters-patched",
                             "--store", str(store), "--format", "json").out)
    b, a = rep["before"]["changelog_table"], rep["after"]["changelog_table"]
    assert b["nr_iteration_total"] == 2000 and a["nr_iteration_total"] == 1
    assert b["skip_addr_out_of_range"] == 1999 and a["skip_addr_out_of_range"] == 0
