"""ksmtrace report: A/A mode (--aa) and the Holm-Bonferroni correction over the metrics of one report."""
from __future__ import annotations

import json
import re

import duckdb
import numpy as np
import pandas as pd
import pytest
from conftest import run_cli_inproc
from ksmtrace.report import build_report, render, stats
import report_fakes as td
from ksmtrace.report.model import ReportError


def _con(*parts, waits=None):
    d = td.combine(*parts)
    con = duckdb.connect()
    td.create_tables(con, d["walks"], d["windows"], waits, d["runs"])
    return con, d


def _ingested(runs: pd.DataFrame, order: list[int]) -> pd.DataFrame:
    """runs with an ingested_at column: run i ingested as the order[i]-th."""
    runs = runs.copy()
    runs["ingested_at"] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(order, unit="s")
    return runs


def _temp_objects(con) -> set[str]:
    return {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() UNION ALL SELECT view_name FROM duckdb_views() WHERE NOT internal"
    ).fetchall()}


# --------------------------------------------------------------------------- A/A: runs interleaved

def test_aa_over_same_distribution_reads_not_significant():
    side = td.gen_side("base", n_runs=12, walks_per_run=40, seed=11)
    waits = pd.concat([td.gen_waits("base", r, n=8, seed=100 + i) for i, r in enumerate(side["runs"].run_id)],
                      ignore_index=True)
    con, d = _con(side, waits=waits)
    before = _temp_objects(con)
    m = build_report(con, aa="base").model
    assert _temp_objects(con) == before  # the relabelling views are dropped again
    assert m["mode"] == "aa" and m["aa"]["label"] == "base" and m["aa"]["split"] == "runs"
    assert m["comparison"]["unit"] == "run"
    for k in ("walk_duration_ns", "hold_ns", "lock_wait_ns"):
        c = m["comparison"][k]
        assert (c["n_before"], c["n_after"]) == (6, 6)  # 6+6 runs: a difference could be detected
        assert c["significant"] is False and c["verdict"] == "~", (k, c)
    # the groups are the label's runs, each exactly once
    g = m["aa"]["groups"]
    assert sorted(g["before"] + g["after"]) == sorted(d["runs"].run_id)
    assert m["before"]["walks"] + m["after"]["walks"] == len(d["walks"])
    assert "A/A" in m["aa"]["note"] and "split at random (seed 1)" in m["aa"]["note"]


def test_aa_interleaves_runs_in_ingest_order():
    """Runs alternate slow/fast in ingest order (not in run_id order): interleaving must separate them."""
    slow = td.gen_side("k", n_runs=4, walks_per_run=30, seed=21)
    fast = td.gen_side("k", n_runs=4, walks_per_run=30, walk_median_ns=100e6, seed=22)
    for df in (fast["walks"], fast["windows"], fast["runs"]):  # distinct run ids, sorting after the slow ones
        df["run_id"] = df["run_id"].str.replace("k-", "k-f")
    # ingest order: slow0, fast0, slow1, fast1, ... -> odd positions slow, even positions fast
    slow["runs"] = _ingested(slow["runs"], [0, 2, 4, 6])
    fast["runs"] = _ingested(fast["runs"], [1, 3, 5, 7])
    con, _ = _con(slow, fast)
    m = build_report(con, aa="k", aa_split_seed=None).model
    assert m["aa"]["groups"]["before"] == list(slow["runs"].run_id)
    assert m["aa"]["groups"]["after"] == list(fast["runs"].run_id)
    c = m["comparison"]["walk_duration_ns"]
    # 4+4 runs fully separated: exact p = 2/70; four tests (walk and hold, median and p99) -> Holm: 4 x 2/70
    assert c["p_value"] == pytest.approx(2 / 70)
    assert c["p_value_adjusted"] == pytest.approx(4 * 2 / 70)
    assert c["significant"] is False and c["verdict"] == "~"
    # the default split is random: every run once, 4 + 4
    m = build_report(con, aa="k").model
    g = m["aa"]["groups"]
    assert len(g["before"]) == len(g["after"]) == 4 and sorted(g["before"] + g["after"]) == sorted(
        list(slow["runs"].run_id) + list(fast["runs"].run_id))


def test_aa_single_run_splits_walks_and_says_so():
    side = td.gen_side("one", n_runs=1, walks_per_run=61, seed=5)
    waits = td.gen_waits("one", side["runs"].run_id[0], n=12)
    con, d = _con(side, waits=waits)
    rep = build_report(con, aa="one", aa_split_seed=None)
    m = rep.model
    assert m["mode"] == "aa" and m["aa"]["split"] == "walks"
    assert "walks were split" in m["aa"]["note"]
    b, a = m["before"], m["after"]
    assert (b["walks"], a["walks"]) == (31, 30)  # alternating in walk order
    assert b["hold_ns"]["count"] == 2 * 31 and a["hold_ns"]["count"] == 2 * 30  # windows follow their walk
    assert b["run_ids"] == a["run_ids"] == list(d["runs"].run_id)
    # the walks of each side are exactly the odd / even walks in start order, per caller
    w = d["walks"].sort_values(["start_ns", "walk_id"])
    pos = w.groupby("caller").cumcount()
    odd, even = np.sort(w.duration_ns[pos % 2 == 0]), np.sort(w.duration_ns[pos % 2 == 1])
    assert list(rep.samples["before"].walk_ns) == list(odd) and list(rep.samples["after"].walk_ns) == list(even)
    c = m["comparison"]["walk_duration_ns"]
    assert c["unit"] == "walk" and (c["n_before"], c["n_after"]) == (31, 30)
    assert c["verdict"] == "~"
    anon = int(waits.anon_vma_lock.sum())
    assert b["lock_waits"]["count"] + a["lock_waits"]["count"] == anon
    assert abs(b["lock_waits"]["count"] - a["lock_waits"]["count"]) <= 1
    for fmt_ in ("text", "lkml", "markdown", "html"):
        out = render(build_report(con, aa="one"), fmt_).replace("&#x27;", "'")
        assert "A/A check of 'one'" in out and "walks were split at random" in " ".join(out.split()), fmt_


def test_aa_and_before_after_exclude_each_other():
    side = td.gen_side("base", n_runs=2, walks_per_run=10, seed=1)
    con, _ = _con(side)
    with pytest.raises(ReportError, match="--aa excludes --before/--after"):
        build_report(con, "base", None, aa="base")
    with pytest.raises(ReportError, match="--before"):
        build_report(con)


@pytest.fixture
def fake_store(monkeypatch):
    side = td.gen_side("base", n_runs=6, walks_per_run=20, seed=1)
    other = td.gen_side("v9", walks_per_run=20, walk_median_ns=1e6, seed=2)
    d = td.combine(side, other)

    return td.serve_from_api(monkeypatch, d)


def test_cli_aa(fake_store):
    r = run_cli_inproc("report", "--aa", "base", "--format", "json")
    assert r.code == 0, r.err
    m = json.loads(r.out)
    assert m["mode"] == "aa" and m["before"]["label"] != m["after"]["label"]
    assert m["comparison"]["walk_duration_ns"]["correction"] == "holm"
    r = run_cli_inproc("report", "--aa", "base", "--before", "v9")
    assert r.code != 0 and r.err.count("\n") == 1 and "Traceback" not in r.err
    assert "--aa excludes --before/--after" in r.err
    r = run_cli_inproc("report", "--after", "v9")
    assert r.code != 0 and r.err.count("\n") == 1 and "--before" in r.err
    r = run_cli_inproc("report", "--aa", "nope")
    assert r.code == 2 and "--aa 'nope'" in r.err and "base (6 runs)" in r.err
    r = run_cli_inproc("report", "-b", "base", "-a", "v9", "--format", "json")
    assert r.code == 0 and json.loads(r.out)["mode"] == "ab"


# --------------------------------------------------------------------------- Holm-Bonferroni

def test_holm_by_hand():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, None, 0.01]) == [pytest.approx(0.5), None, pytest.approx(0.02)]
    assert stats.holm([0.3, 0.2]) == pytest.approx([0.4, 0.4])  # monotone: 0.3 x 1 < 0.2 x 2
    assert stats.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([0.6, 0.7, 0.01]) == pytest.approx([1.0, 1.0, 0.03])
    assert stats.holm([]) == []


def test_holm_matches_the_step_down_procedure():
    rng = np.random.default_rng(3)
    for _ in range(200):
        p = list(rng.uniform(0, 0.2, rng.integers(1, 7)))
        adj = stats.holm(p)
        order = np.argsort(p)
        reject = np.zeros(len(p), bool)
        for k, i in enumerate(order):  # Holm: reject while p_(k) < alpha / (m - k)
            if p[i] < 0.05 / (len(p) - k):
                reject[i] = True
            else:
                break
        assert [q < 0.05 for q in adj] == list(reject)
        assert all(q >= x for q, x in zip(adj, p))


def _waits_per_run(side, seed):
    return [td.gen_waits(side["runs"].label[0], r, n=9, seed=seed + i) for i, r in enumerate(side["runs"].run_id)]


def test_report_adjusts_all_metrics_including_lock_waits():
    b = td.gen_side("base", n_runs=4, walks_per_run=20, seed=1)
    a = td.gen_side("patched", n_runs=4, walks_per_run=20, walk_median_ns=1e6, seed=2)
    waits = pd.concat(_waits_per_run(b, 3) + _waits_per_run(a, 40), ignore_index=True)
    con, _ = _con(b, a, waits=waits)
    m = json.loads(build_report(con, "base", "patched").to_json())
    c = m["comparison"]
    lw = c["lock_wait_ns"]
    assert (lw["unit"], lw["n_before"], lw["n_after"]) == ("run", 4, 4)
    med = {lab: np.array([stats.quantile(np.sort(g.wait_ns.to_numpy()), 0.5) for _, g in
                          waits[(waits.label == lab) & waits.anon_vma_lock].groupby("run_id")], dtype=float)
           for lab in ("base", "patched")}
    assert lw["p_value"] == pytest.approx(stats.rank_test(med["base"], med["patched"], stats.SEED + 2))
    keys = ("walk_duration_ns", "hold_ns", "lock_wait_ns")
    assert c["correction"]["method"] == "holm" and c["correction"]["tests"] == 6  # per-run medians and p99s
    expect = stats.holm([c[k][x] for k in keys for x in ("p_value", "p99_p_value")])
    for i, k in enumerate(keys):
        assert c[k]["correction"] == "holm"
        assert c[k]["p_value_adjusted"] == pytest.approx(expect[2 * i])
        assert c[k]["significant"] == (expect[2 * i] < m["alpha"])
        for key in ("median_ratio", "median_ratio_ci", "p99_ratio", "p99_ratio_ci", "p_value", "significant"):
            assert key in c[k]
    for fmt_ in ("text", "lkml", "markdown", "html"):
        out = render(build_report(con, "base", "patched"), fmt_)
        assert "Holm-Bonferroni" in out and "p_holm" in out.replace("p\\_holm", "p_holm"), fmt_
        assert "anon_vma wait" in out.replace("\\_", "_"), fmt_


def test_one_run_per_side_does_not_test_lock_waits():
    """Waits belong to no walk: with one run per side no independent unit is left, so no p-value."""
    b = td.gen_side("base", walks_per_run=40, seed=1)
    a = td.gen_side("patched", walks_per_run=40, walk_median_ns=1e6, seed=2)
    waits = pd.concat([td.gen_waits("base", b["runs"].run_id[0], n=9, seed=3),
                       td.gen_waits("patched", a["runs"].run_id[0], n=7, seed=4)], ignore_index=True)
    con, _ = _con(b, a, waits=waits)
    m = build_report(con, "base", "patched").model
    lw = m["comparison"]["lock_wait_ns"]
    assert lw["p_value"] is None and lw["verdict"] == "n/a" and m["comparison"]["correction"]["tests"] == 2
    assert any("lock_wait_ns: not tested" in w for w in m["warnings"])


def test_no_lock_wait_test_when_a_side_has_none():
    b = td.gen_side("base", walks_per_run=20, seed=1)
    a = td.gen_side("patched", walks_per_run=20, seed=2)
    con, _ = _con(b, a, waits=td.gen_waits("base", b["runs"].run_id[0], n=5))
    c = build_report(con, "base", "patched").model["comparison"]
    assert "lock_wait_ns" not in c and c["correction"]["tests"] == 2


def test_raw_significance_that_does_not_survive_the_correction():
    """4+4 runs, fully separated: raw p = 2/70 < 0.05 for all four tests, Holm makes each 4 x 2/70."""
    b = td.gen_side("before", n_runs=4, walks_per_run=30, seed=3)
    a = td.gen_side("after", n_runs=4, walks_per_run=30, walk_median_ns=50e6, seed=4)
    con, _ = _con(b, a)
    m = build_report(con, "before", "after").model
    for k in ("walk_duration_ns", "hold_ns"):
        c = m["comparison"][k]
        assert c["p_value"] == pytest.approx(2 / 70) and c["p_value"] < 0.05
        assert c["p_value_adjusted"] == pytest.approx(8 / 70)
        assert c["p99_p_value_adjusted"] == pytest.approx(8 / 70)
        assert c["significant"] is False and c["p99_significant"] is False and c["verdict"] == "~"
    assert re.search(r"walk duration\s+\S+ \[[^]]+\]\s+0\.114\s+4\+4\s+~", render(build_report(con, "before", "after"), "lkml"))


def _alternating_run(label: str, with_caller: bool):
    """One run whose walks alternate try_to_migrate (3x slower) / remove_migration_ptes in start order."""
    side = td.gen_side(label, n_runs=1, walks_per_run=80, sigma=0.1, seed=9)
    w, lw = side["walks"], side["windows"]
    slow_ids = set(w.walk_id[w.caller == "try_to_migrate"])
    w.loc[w.caller == "try_to_migrate", "duration_ns"] *= 3
    lw.loc[lw.walk_id.isin(slow_ids), "hold_ns"] *= 3
    if not with_caller:
        w["caller"] = None
    return side


def test_aa_single_run_alternates_per_caller():
    """Walks alternate between two callers: alternating per caller puts both kinds on both sides."""
    con, d = _con(_alternating_run("one", with_caller=True))
    m = build_report(con, aa="one").model
    w = d["walks"]
    assert m["before"]["callers"] == m["after"]["callers"] == {"remove_migration_ptes": 20, "try_to_migrate": 20}
    assert m["comparison"]["walk_duration_ns"]["verdict"] == "~"
    assert not any(x.startswith("A/A split") for x in m["warnings"])
    assert m["before"]["walks"] + m["after"]["walks"] == len(w)


def test_aa_single_run_alternation_without_caller_is_flagged_and_the_random_split_is_not():
    """Without a caller a fixed alternation puts all slow walks on one side (and the report says why);
    the default split is random, so it does not."""
    con, _ = _con(_alternating_run("one", with_caller=False))
    m = build_report(con, aa="one", aa_split_seed=None).model
    c = m["comparison"]["walk_duration_ns"]
    assert c["significant"] is True and c["median_ratio"] == pytest.approx(3, rel=0.2)  # walk 1 (before) is a fast one
    assert m["warnings"][0].startswith("A/A split of one run reads a change for walk_duration_ns")
    m = build_report(con, aa="one").model
    assert m["aa"]["split_seed"] == 1 and "at random (seed 1)" in m["aa"]["note"]
    assert all(m["comparison"][k]["verdict"] == "~" for k in ("walk_duration_ns", "hold_ns"))
    assert not any(x.startswith("A/A split") for x in m["warnings"])
