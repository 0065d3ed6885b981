"""ksmtrace report: the JSON model, built from synthetic walks / lock_windows / lock_waits / runs tables."""
from __future__ import annotations

import json
import math

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu

from ksmtrace.errors import KsmtraceError
from ksmtrace.report import build_report, render, stats
import report_fakes as td
from ksmtrace.report.model import HOLD_PROXY, NA_ITER, NA_SKIP, UnknownLabel

DIST_KEYS = {"count", "min", "p50", "p90", "p99", "p999", "max", "mean"}


def _con(*parts, waits=None):
    d = td.combine(*parts)
    con = duckdb.connect()
    td.create_tables(con, d["walks"], d["windows"], waits, d["runs"])
    return con, d


def _nearest_rank(x, q):
    return int(np.percentile(np.asarray(x), q * 100, method="inverted_cdf"))


@pytest.fixture
def pair():
    b = td.gen_side("base", walks_per_run=60, seed=1, skips=True)
    a = td.gen_side("patched", walks_per_run=60, walk_median_ns=1e6, iterations=3, seed=2, skips=True)
    # incomplete walks with huge values: they must not reach any statistic
    bad = b["walks"].iloc[:3].copy()
    bad["walk_id"] += 1000
    bad["complete"] = False
    bad["duration_ns"] = 10**12
    bad["max_hold_ns"] = 10**12
    badw = b["windows"].iloc[:2].copy()
    badw["walk_id"] += 1000
    badw["hold_ns"] = 10**12
    badw["iterations"] = 10**9
    b["walks"] = pd.concat([b["walks"], bad], ignore_index=True)
    b["windows"] = pd.concat([b["windows"], badw], ignore_index=True)
    waits = td.gen_waits("base", b["runs"].run_id[0], n=9)
    con, d = _con(b, a, waits=waits)
    return con, d, waits


def test_json_contract_keys_and_roundtrip(pair):
    con, _, _ = pair
    rep = build_report(con, "base", "patched")
    m = json.loads(rep.to_json())
    assert {"before", "after", "comparison", "warnings"} <= set(m)
    for side in ("before", "after"):
        s = m[side]
        assert {"label", "runs", "walks", "evidence", "changelog_table", "walk_duration_ns", "hold_ns",
                "window_iterations"} <= set(s)
        assert set(s["changelog_table"]) == {"time_ms", "nr_iteration_total", "skip_addr_out_of_range", "skip_mm_mismatch"}
        for k in ("walk_duration_ns", "hold_ns", "window_iterations"):
            assert set(s[k]) == DIST_KEYS
    for k in ("walk_duration_ns", "hold_ns"):
        assert {"median_ratio", "median_ratio_ci", "p99_ratio", "p99_ratio_ci", "p_value",
                "significant"} <= set(m["comparison"][k])
    assert isinstance(m["warnings"], list)
    assert m["before"]["label"] == "base" and m["after"]["label"] == "patched"


def test_changelog_table_and_distributions_match_the_rows(pair):
    con, d, _ = pair
    m = build_report(con, "base", "patched").model
    w, lw = d["walks"], d["windows"]
    for side, lab in (("before", "base"), ("after", "patched")):
        ws = w[(w.label == lab) & w.complete]
        keys = set(zip(ws.run_id, ws.walk_id))
        wins = lw[(lw.label == lab) & np.array([k in keys for k in zip(lw.run_id, lw.walk_id)])]
        s = m[side]
        assert s["walks"] == int((w.label == lab).sum())
        assert s["incomplete_walks"] == int(((w.label == lab) & ~w.complete).sum())
        assert s["changelog_table"]["time_ms"] == wins.hold_ns.max() / 1e6
        assert s["changelog_table"]["nr_iteration_total"] == wins.iterations.max()
        assert s["changelog_table"]["skip_addr_out_of_range"] == wins.skip_addr.max()
        assert s["changelog_table"]["skip_mm_mismatch"] == wins.skip_mm.max()
        for key, vals in (("walk_duration_ns", ws.duration_ns), ("hold_ns", wins.hold_ns),
                          ("window_iterations", wins.iterations)):
            dist = s[key]
            assert dist["count"] == len(vals)
            assert dist["min"] == vals.min() and dist["max"] == vals.max()
            for k, q in (("p50", .5), ("p90", .9), ("p99", .99), ("p999", .999)):
                assert dist[k] == _nearest_rank(vals, q), (side, key, k)
            assert math.isclose(dist["mean"], vals.mean())
    assert any("3 incomplete walks" in x for x in m["warnings"])


def test_walk_unit_comparison_is_a_permutation_test_on_complete_walks(pair):
    con, d, _ = pair
    m = build_report(con, "base", "patched").model
    w = d["walks"]
    a = w[(w.label == "base") & w.complete].duration_ns.to_numpy()
    b = w[(w.label == "patched") & w.complete].duration_ns.to_numpy()
    c = m["comparison"]["walk_duration_ns"]
    assert c["unit"] == "walk" and m["comparison"]["unit"] == "walk"
    assert c["p_value"] == stats.rank_test(a, b, stats.SEED)  # the walk's duration, one value per walk
    assert c["p_value"] == pytest.approx(1 / (1 + stats.N_PERM))  # fully separated: no random split beats it
    assert c["significant"] is True
    assert c["median_ratio"] == _nearest_rank(b, .5) / _nearest_rank(a, .5)
    lo, hi = c["median_ratio_ci"]
    assert lo <= c["median_ratio"] <= hi
    lo, hi = c["p99_ratio_ci"]
    assert lo <= c["p99_ratio"] <= hi
    assert c["verdict"] == stats.pct(c["median_ratio"]) and c["verdict"].endswith("%")
    assert any("only one run" in x for x in m["warnings"])


def test_reproducible(pair):
    con, _, _ = pair
    assert build_report(con, "base", "patched").to_json() == build_report(con, "base", "patched").to_json()


def test_identical_sides_are_not_significant():
    b = td.gen_side("a", walks_per_run=40, seed=7)
    a = td.gen_side("b", walks_per_run=40, seed=7)
    con, _ = _con(b, a)
    m = build_report(con, "a", "b").model
    for k in ("walk_duration_ns", "hold_ns"):
        c = m["comparison"][k]
        assert c["verdict"] == "~" and c["significant"] is False
        assert c["median_ratio"] == 1.0 and c["p99_ratio"] == 1.0


def test_several_runs_make_the_run_the_unit():
    b = td.gen_side("before", n_runs=5, walks_per_run=30, seed=3)
    a = td.gen_side("after", n_runs=6, walks_per_run=30, walk_median_ns=2e6, seed=4)
    con, d = _con(b, a)
    m = build_report(con, "before", "after").model
    c = m["comparison"]["walk_duration_ns"]
    assert m["comparison"]["unit"] == "run" and c["unit"] == "run"
    assert (c["n_before"], c["n_after"]) == (5, 6)
    w = d["walks"]
    med = {lab: w[w.label == lab].groupby("run_id").duration_ns.apply(lambda x: _nearest_rank(x, .5)).to_numpy()
           for lab in ("before", "after")}
    p99 = {lab: w[w.label == lab].groupby("run_id").duration_ns.apply(lambda x: _nearest_rank(x, .99)).to_numpy()
           for lab in ("before", "after")}
    assert c["p_value"] == pytest.approx(mannwhitneyu(med["after"], med["before"]).pvalue)
    assert c["p99_p_value"] == pytest.approx(mannwhitneyu(p99["after"], p99["before"]).pvalue)
    assert c["significant"] is True  # 5 vs 6 runs, fully separated: exact p = 2/462
    assert c["median_ratio"] == pytest.approx(np.sort(med["after"])[2] / np.sort(med["before"])[2])
    assert m["before"]["runs"] == 5 and m["after"]["runs"] == 6
    assert m["comparison"]["hold_ns"]["unit"] == "run"
    assert "the run (boot) is the unit (5+6 runs)" in m["comparison"]["unit_note"]
    # 5 runs: fewer than benchstat's 6 for a confidence interval
    assert "walk_duration_ns: need >= 6 samples for confidence interval at level 0.95" in m["warnings"]
    assert not any("only one run" in x for x in m["warnings"])


def test_too_few_runs_give_benchstat_warnings():
    b = td.gen_side("before", n_runs=2, walks_per_run=20, seed=3)
    a = td.gen_side("after", n_runs=3, walks_per_run=20, walk_median_ns=2e6, seed=4)
    con, _ = _con(b, a)
    m = build_report(con, "before", "after").model
    assert "walk_duration_ns: need >= 4 samples to detect a difference at alpha level 0.05" in m["warnings"]
    assert m["comparison"]["walk_duration_ns"]["verdict"] == "~"  # min p = 2/10 with 2+3 runs


def test_tracepoint_evidence_stands_in_for_time_ms():
    b = td.gen_side("before", walks_per_run=12, evidence="tracepoint", seed=5)
    a = td.gen_side("after", walks_per_run=12, evidence="tracepoint", walk_median_ns=1e6, seed=6)
    con, d = _con(b, a)
    m = build_report(con, "before", "after").model
    w = d["walks"]
    s = m["before"]
    assert s["changelog_table"]["time_ms"] == w[w.label == "before"].duration_ns.max() / 1e6
    assert "longest walk duration (tracepoints)" in s["changelog_notes"]["time_ms"]
    assert s["changelog_table"]["nr_iteration_total"] is None and s["changelog_notes"]["nr_iteration_total"] == NA_ITER
    assert s["changelog_notes"]["skip_addr_out_of_range"] == NA_SKIP
    assert s["hold_ns"]["count"] == 0 and s["hold_ns"]["p50"] is None
    assert m["comparison"]["hold_ns"]["p_value"] is None and m["comparison"]["hold_ns"]["median_ratio"] is None
    assert m["comparison"]["changelog_ratio"]["time_ms"] == pytest.approx(
        m["after"]["changelog_table"]["time_ms"] / s["changelog_table"]["time_ms"])


def test_perf_callchain_gaps_are_labelled_a_proxy():
    b = td.gen_side("before", walks_per_run=12, evidence="perf-callchain", seed=5)
    a = td.gen_side("after", walks_per_run=12, evidence="perf-callchain", walk_median_ns=1e6, seed=6)
    con, _ = _con(b, a)
    m = build_report(con, "before", "after").model
    assert m["before"]["changelog_notes"]["time_ms"] == HOLD_PROXY
    assert m["before"]["hold_quantity"] == HOLD_PROXY
    assert m["before"]["changelog_table"]["nr_iteration_total"] is None


def test_different_quantities_give_no_changelog_ratio_and_a_provenance_warning():
    b = td.gen_side("before", walks_per_run=12, evidence="tracepoint", seed=5)
    a = td.gen_side("after", walks_per_run=12, evidence="function-graph", seed=6)
    con, _ = _con(b, a)
    m = build_report(con, "before", "after").model
    assert m["comparison"]["changelog_ratio"]["time_ms"] is None
    assert any(x.startswith("provenance differs: evidence: before tracepoint, after function-graph")
               for x in m["warnings"])
    assert any(x.startswith("provenance differs: tracer:") for x in m["warnings"])


def test_provenance_lost_events_and_kernel_warnings():
    b = td.gen_side("before", walks_per_run=12, seed=5, kernel="6.18.0", lost=17)
    a = td.gen_side("after", walks_per_run=12, seed=6, kernel="6.18.0-ksm-v9")
    a["runs"]["n_cpus"] = 8
    con, _ = _con(b, a)
    m = build_report(con, "before", "after").model
    ws = m["warnings"]
    assert any("lost 17 events" in x for x in ws)
    assert any(x.startswith("provenance differs: kernel: before 6.18.0, after 6.18.0-ksm-v9") for x in ws)
    assert any(x.startswith("provenance differs: n_cpus: before 2, after 8") for x in ws)


def test_lock_waits_summary(pair):
    con, _, waits = pair
    m = build_report(con, "base", "patched").model
    lw = m["before"]["lock_waits"]
    av = waits[waits.anon_vma_lock]
    assert lw["count"] == len(av) and lw["max_ns"] == av.wait_ns.max() and lw["total_ns"] == av.wait_ns.sum()
    assert lw["all_lock_waits"] == len(waits)
    assert sum(x["count"] for x in lw["waiters"]) == len(av)
    top = av.groupby(["comm", "pid", "caller", "flags"]).wait_ns.sum().max()
    assert lw["waiters"][0]["total_ns"] == top
    assert m["after"]["lock_waits"]["count"] == 0


def test_unknown_label_lists_the_labels(pair):
    con, _, _ = pair
    with pytest.raises(UnknownLabel) as e:
        build_report(con, "base", "nope")
    msg = str(e.value)
    assert "'nope'" in msg and "base (1 run)" in msg and "patched (1 run)" in msg
    assert e.value.exit_code == 2
    with pytest.raises(KsmtraceError):
        build_report(con, "base", "base")
    with pytest.raises(KsmtraceError):
        build_report(con, "base", "patched", page_type="huge")


def test_side_without_walks_of_the_page_type_is_a_report_of_nulls(pair):
    con, _, _ = pair
    rep = build_report(con, "base", "patched", page_type="anon")
    m = json.loads(rep.to_json())
    assert m["before"]["walks"] == 0 and m["before"]["walk_duration_ns"]["count"] == 0
    assert m["before"]["changelog_table"]["time_ms"] is None
    assert m["comparison"]["walk_duration_ns"]["p_value"] is None
    assert any("before 'base': no walks of page type anon" in x and "try --page-type ksm" in x
               for x in m["warnings"])


def test_page_type_filter_and_all():
    b = td.gen_side("before", walks_per_run=20, seed=5)
    b2 = td.gen_side("before", walks_per_run=7, seed=8, page_type="anon")
    b2["walks"]["walk_id"] += 100
    b2["windows"]["walk_id"] += 100
    b2["runs"] = b2["runs"].iloc[:0]
    a = td.gen_side("after", walks_per_run=20, seed=6)
    con, _ = _con(b, b2, a)
    assert build_report(con, "before", "after").model["before"]["walks"] == 20
    assert build_report(con, "before", "after", page_type="anon").model["before"]["walks"] == 7
    assert build_report(con, "before", "after", page_type="all").model["before"]["walks"] == 27


def test_failing_view_is_one_clear_error():
    from ksmtrace.report.model import ReportError

    b = td.gen_side("before", walks_per_run=5, seed=1)
    a = td.gen_side("after", walks_per_run=5, seed=2)
    con, _ = _con(b, a)
    con.execute("ALTER TABLE walks RENAME TO walks_t")
    con.execute("CREATE VIEW walks AS SELECT * REPLACE (CASE WHEN walk_id > 0 THEN error('boom in view') "
                "END::BIGINT AS duration_ns) FROM walks_t")
    with pytest.raises(ReportError, match="evaluating the walk views failed: .*boom in view"):
        build_report(con, "before", "after")


@pytest.mark.parametrize("view", ["lock_waits", "runs", "lock_windows"])
def test_a_missing_view_is_one_clear_error(view):
    """A store always has the four views (queries/*.sql); a connection without one says which, in one line."""
    from ksmtrace.report.model import ReportError

    con, _ = _con(td.gen_side("before", walks_per_run=5, seed=1), td.gen_side("after", walks_per_run=5, seed=2))
    con.execute(f"DROP TABLE {view}")
    with pytest.raises(ReportError, match=f"^the store has no {view} view"):
        build_report(con, "before", "after")
    with pytest.raises(ReportError, match=f"^the store has no {view} view"):
        build_report(con, aa="before")


# --------------------------------------------------------------------------- honesty (issue 12)

def test_a_label_without_walks_says_why_and_how_to_record():
    b = td.gen_side("before", walks_per_run=20, seed=1)
    a = td.gen_side("after", walks_per_run=20, seed=2)
    d = td.combine(b, a)
    w, lw = d["walks"], d["windows"]
    con = duckdb.connect()
    td.create_tables(con, w[w.label == "before"], lw[lw.label == "before"], None, d["runs"])
    rep = build_report(con, "before", "after")
    warn = [x for x in rep.model["warnings"] if x.startswith("after: no walks: this trace has no")]
    assert warn and "ksmtrace capture" in warn[0]
    c = rep.model["comparison"]["walk_duration_ns"]
    assert c["p_value"] is None and c["verdict"] == "n/a"
    for fmt_ in ("text", "lkml", "markdown", "html"):
        assert "no walks: this trace has no" in render(rep, fmt_, **({"plots": {}} if fmt_ == "html" else {}))


def test_unknown_lock_waits_stay_unknown():
    """Waits whose lock is unknown (no callchain: anon_vma_lock NULL) are never '0 anon_vma waits'."""
    b = td.gen_side("before", walks_per_run=20, seed=1)
    a = td.gen_side("after", walks_per_run=20, seed=2)
    wb = td.gen_waits("before", b["runs"].run_id[0], n=8)
    wa = td.gen_waits("after", a["runs"].run_id[0], n=5)
    wb["anon_vma_lock"] = pd.array([pd.NA] * len(wb), dtype="boolean")
    wa["anon_vma_lock"] = wa["anon_vma_lock"].astype("boolean")
    wa.loc[wa.index[:2], "anon_vma_lock"] = pd.NA
    con, _ = _con(b, a, waits=pd.concat([wb, wa], ignore_index=True))
    rep = build_report(con, "before", "after")
    lb, la = rep.model["before"]["lock_waits"], rep.model["after"]["lock_waits"]
    assert (lb["count"], lb["unknown_lock"], lb["all_lock_waits"]) == (0, 8, 8)
    assert la["unknown_lock"] == 2
    text = render(rep, "lkml")
    assert "before: anon_vma lock waits n/a: 8 of 8 lock waits cannot be attributed" in " ".join(text.split())
    assert "0 anon_vma lock waits" not in text.split("after:")[0]
    assert "of unknown lock, so the anon_vma count is a lower bound" in " ".join(text.split())
    md = render(rep, "markdown")
    assert "n/a: lock unknown" in md


def test_provenance_differences_are_one_short_line_each():
    b = td.gen_side("before", walks_per_run=20, seed=1)
    a = td.gen_side("after", walks_per_run=20, seed=2)
    attr = "\n".join(f"{{ sample_period, sample_freq }}: {i}\n  type: 2\n  config: 0x{i:x}" for i in range(15))
    b["runs"]["meta"] = json.dumps({"perf_events": attr})
    a["runs"]["meta"] = json.dumps({"perf_events": attr.replace("type: 2", "type: 1")})
    con, _ = _con(b, a)
    rep = build_report(con, "before", "after")
    prov = [x for x in rep.model["warnings"] if x.startswith("provenance differs: meta.perf_events")]
    assert len(prov) == 1 and "\n" not in prov[0] and len(prov[0]) < 220 and "see --format json" in prov[0]
    assert rep.model["before"]["provenance"]["meta.perf_events"] == [json.dumps(attr)]  # kept whole in JSON
    lk = render(rep, "lkml")
    assert lk.count("sample_period") <= 2


def test_p_values_and_changes_never_overstate():
    b = td.gen_side("before", walks_per_run=60, seed=1)
    a = td.gen_side("after", walks_per_run=60, walk_median_ns=2e6, seed=2)
    con, _ = _con(b, a)
    rep = build_report(con, "before", "after")
    for fmt_ in ("text", "lkml", "markdown"):
        out = render(rep, fmt_)
        assert "p=0.000" not in out and "<0.001" in out.replace("&lt;", "<")
    v = rep.model["comparison"]["walk_duration_ns"]["verdict"]
    assert v == stats.pct(rep.model["comparison"]["walk_duration_ns"]["median_ratio"])
    assert len(v.strip("+-%").replace(".", "").lstrip("0")) <= 3 or v.endswith("00%")


def test_a_shift_with_equal_medians_reads_no_change():
    """The nosplit-vs-split case: both medians 5 us, the tails differ: never a red '+0.00%'."""
    rng = np.random.default_rng(4)
    c = stats.compare_pooled(np.concatenate([np.full(300, 5000), rng.integers(1, 5, 100) * 1000]),
                             np.concatenate([np.full(300, 5000), rng.integers(6, 10, 100) * 1000]))
    stats.apply_holm([c])
    assert c.median_ratio == 1.0 and c.significant is True and c.verdict == "~"
    assert any("the median does not" in w for w in c.warnings)
