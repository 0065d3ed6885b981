"""ksmtrace report on the command line: options, outputs, bad input; and end to end from trace files."""
from __future__ import annotations

import json

import pytest

import report_fakes as td

from conftest import run_cli, run_cli_inproc


@pytest.fixture
def fake_store(monkeypatch):
    """api.connect returns a connection with synthetic views (the CLI code path is otherwise real)."""
    b = td.gen_side("base", walks_per_run=30, seed=1)
    a = td.gen_side("v9", walks_per_run=30, walk_median_ns=1e6, iterations=3, seed=2)
    d = td.combine(b, a)

    return td.serve_from_api(monkeypatch, d)


def test_unknown_label_is_one_line_exit_2(fake_store):
    r = run_cli_inproc("report", "--before", "base", "--after", "nope")
    assert r.code == 2
    assert r.err.count("\n") == 1 and "Traceback" not in r.err
    assert "'nope'" in r.err and "base (1 run)" in r.err and "v9 (1 run)" in r.err


def test_bad_options(fake_store):
    r = run_cli_inproc("report", "--before", "base", "--after", "v9", "--format", "pdf")
    assert r.code != 0 and "--format" in r.err
    r = run_cli_inproc("report", "--before", "base", "--after", "v9", "--page-type", "huge")
    assert r.code != 0 and "--page-type" in r.err


@pytest.mark.parametrize("fmt", ["text", "lkml", "markdown", "json", "html"])
def test_formats_to_stdout(fake_store, fmt):
    r = run_cli_inproc("report", "--before", "base", "--after", "v9", "--format", fmt)
    assert r.code == 0, r.err
    assert "Time_ms" in r.out or fmt == "json"
    if fmt == "json":
        m = json.loads(r.out)
        assert m["before"]["label"] == "base" and m["after"]["walks"] == 30


def test_out_plots_and_benchstat(fake_store, tmp_path):
    out = tmp_path / "rep.md"
    r = run_cli_inproc("report", "-b", "base", "-a", "v9", "-f", "markdown", "-o", str(out),
                       "--benchstat", str(tmp_path / "bench.txt"), "--plots", str(tmp_path / "figs"))
    assert r.code == 0, r.err
    assert r.out == ""
    assert f"wrote {out}" in r.err
    assert (tmp_path / "figs" / "walk_duration_cdf.png").exists()
    assert "](figs/walk_duration_cdf.png)" in out.read_text()
    assert "label: base" in (tmp_path / "bench.txt").read_text()


TRACE = """\
# tracer: nop
#
# entries-in-buffer/entries-written: 3/3   #P:2
#
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
      kcompactd0-33      [000] ...1.  3000.000273: rmap_walk_ksm: Time_ms={t1} Nr_iteration_total={i1} Skip_addr_out_of_range={a1} Skip_mm_mismatch={m1}
      kcompactd0-33      [001] ...1.  3000.500861: rmap_walk_ksm: Time_ms={t2} Nr_iteration_total={i2} Skip_addr_out_of_range={a2} Skip_mm_mismatch={m2}
"""


@pytest.mark.slow
def test_end_to_end_counter_lines(tmp_path):
    """The v1 table, reproduced from counter lines through ingest, the SQL views and the report."""
    before = tmp_path / "before.txt"
    after = tmp_path / "after.txt"
    before.write_text(TRACE.format(t1="221.104", i1=20228, a1=20227, m1=0, t2="228.650", i2=22169, a2=22168, m2=0))
    after.write_text(TRACE.format(t1="0.396", i1=3, a1=0, m1=2, t2="0.120", i2=1, a2=0, m2=0))
    st = str(tmp_path / "store")
    for lab, p in (("before", before), ("after", after)):
        r = run_cli("ingest", "--store", st, "--label", lab, str(p))
        assert r.code == 0, r.err
    r = run_cli("sql", "--store", st, "--format", "csv", "SELECT count(*) AS n FROM walks")
    if r.code != 0:
        pytest.skip("walk views not available in this checkout: " + r.err.strip())
    r = run_cli("report", "--store", st, "--before", "before", "--after", "after", "--format", "json")
    assert r.code == 0, r.err
    m = json.loads(r.out)
    assert m["before"]["changelog_table"] == {"time_ms": 228.65, "nr_iteration_total": 22169,
                                   "skip_addr_out_of_range": 22168, "skip_mm_mismatch": 0}
    assert m["after"]["changelog_table"] == {"time_ms": 0.396, "nr_iteration_total": 3,
                                  "skip_addr_out_of_range": 0, "skip_mm_mismatch": 2}
    assert m["before"]["evidence"] == ["counters"]
    assert m["before"]["hold_ns"]["max"] == 228650000 and m["after"]["hold_ns"]["min"] == 120000
    r = run_cli("report", "--store", st, "--before", "before", "--after", "after", "--format", "lkml")
    assert r.code == 0 and "228.650" in r.out and "0.396" in r.out
    r = run_cli("report", "--store", st, "--before", "before", "--after", "later")
    assert r.code == 2 and "labels present: after (1 run), before (1 run)" in r.err
