"""Calibration of the report's tests: the level holds with heavy ties, `--aa` reads ~ on real traces.

The full figures (1000 random A/A splits per real trace, 200 null draws per design, the power on
the real pair) come from ``python bench/bench_calibration.py`` and are in the README; these are
the same checks on fewer splits, so that a change that breaks the calibration fails CI.
"""
from __future__ import annotations

from itertools import product
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from ksmtrace.report import calibration as cal
from ksmtrace.report import stats

SAMPLES = Path(__file__).resolve().parent.parent / "sample_traces"
REAL = {"real-unsplit": "real-6.18-unsplit.perf.txt.zst", "real-split20000": "real-6.18-split20000.perf.txt.zst"}


def test_permutation_test_holds_its_level_with_heavy_ties():
    """6+6 units drawn from {1, 2, 3} (whole microseconds: most values tie): the exact permutation test
    rejects at most alpha of the time; the tie-corrected normal approximation does not hold it."""
    rng = np.random.default_rng(7)
    reps, alpha = 600, 0.05
    perm = asym = 0
    for _ in range(reps):
        a, b = rng.integers(1, 4, 6).astype(float), rng.integers(1, 4, 6).astype(float)
        perm += stats.rank_test(a, b) < alpha
        if not (np.all(a == a[0]) and np.all(b == a[0])):
            asym += mannwhitneyu(a, b, method="asymptotic", use_continuity=False).pvalue < alpha
    se = (alpha * (1 - alpha) / reps) ** 0.5
    assert perm / reps <= alpha + 2 * se, perm / reps
    assert asym / reps > perm / reps  # what the old pooled asymptotic test got wrong


def test_exact_permutation_size_is_at_most_alpha():
    """All 3^8 draws of 4+4 units from {1, 2, 3}, weighted exactly: the size of the exact test <= alpha."""
    size = 0.0
    for x in product((1.0, 2.0, 3.0), repeat=8):
        if stats.rank_test(np.array(x[:4]), np.array(x[4:])) < 0.05:
            size += 1 / 3 ** 8
    assert size <= 0.05


def test_monte_carlo_permutation_p_is_never_zero_and_close_to_exact():
    a, b = np.arange(30.0), np.arange(30.0) + 100
    assert stats.rank_test(a, b) == pytest.approx(1 / (1 + stats.N_PERM))
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 8, 40).astype(float), rng.integers(1, 9, 40).astype(float)
    ref = mannwhitneyu(a, b, method="asymptotic").pvalue  # 80 values: the approximation is fine here
    assert stats.rank_test(a, b) == pytest.approx(ref, abs=0.02)


def test_hierarchical_bootstrap_resamples_runs_then_walks():
    """Runs that differ a lot: the hierarchical CI is much wider than a bootstrap of the pooled walks."""
    rng = np.random.default_rng(1)
    runs = [rng.normal(m, 1, 400) for m in (10, 11, 12, 13, 14)]
    hier = stats.hier_boot_quantile(runs, 0.5, np.random.default_rng(2), 4000)
    pooled = stats.boot_quantile(np.sort(np.concatenate(runs)), 0.5, np.random.default_rng(2), 4000)
    w_hier = np.ptp(np.quantile(hier, [0.025, 0.975]))
    assert w_hier > 5 * np.ptp(np.quantile(pooled, [0.025, 0.975]))
    assert 1.5 < w_hier < 4.5  # about the spread of 5 run medians 1 apart, not of 2000 walks
    # each replicate is a median over resampled runs of a median over resampled walks
    assert hier.min() >= 9 and hier.max() <= 15


@pytest.mark.slow
def test_null_synthetic_runs_hold_the_level():
    r = cal.null_false_positives(4, 15, 20, n_boot=200)
    assert r.any_change <= 2, r.line()
    r = cal.null_false_positives(1, 80, 20, n_boot=200, run_sd=0.0)
    assert r.any_change <= 2, r.line()


@pytest.fixture(scope="module")
def real_store(tmp_path_factory):
    if not all((SAMPLES / f).exists() for f in REAL.values()):
        pytest.skip("bundled real traces missing")
    from ksmtrace import api

    st = tmp_path_factory.mktemp("calib") / "store"
    for lab, f in REAL.items():
        api.ingest([str(SAMPLES / f)], store=str(st), label=lab)
    return st


@pytest.mark.slow
@pytest.mark.parametrize("label", sorted(REAL))
def test_aa_on_real_traces_reads_no_change(real_store, label):
    from ksmtrace import api

    with api.connect(str(real_store)) as src:
        con = cal.copy_views(src, [label])
    r = cal.aa_false_positives(con, label, 20, n_boot=200)
    assert r.n == 20 and r.any_change <= 2, r.line()
    # the default split (what `ksmtrace report --aa` prints) reads ~ for every metric
    m = cal.build_report(con, aa=label).model
    tested = [k for k in cal.METRICS if isinstance(m["comparison"].get(k), dict)]
    assert tested and all(m["comparison"][k]["verdict"] in ("~", "n/a") for k in tested), m["comparison"]


@pytest.mark.slow
def test_power_on_the_real_pair(real_store):
    from ksmtrace import api

    with api.connect(str(real_store)) as src:
        r = cal.power(src, "real-unsplit", "real-split20000", 5, n_boot=200)
    assert r.any_change == r.n == 5 and r.per_metric["walk_duration_ns"] == [5, 5], r.line()


@pytest.mark.slow
def test_aa_between_boots_of_the_real_61_pair(tmp_path):
    """The headline pair's boots of one kernel, split every distinct way into two halves (the run is the unit):
    no split reads a change, and each split is a different grouping of the same runs."""
    import json

    from ksmtrace import api

    pairs = [p for p in json.loads((SAMPLES / "manifest.json").read_text())["pairs"] if p.get("headline")]
    if not pairs or len(pairs[0]["before"]["files"]) < 4:
        pytest.skip("no headline pair with 4 or more boots a side")
    side = pairs[0]["before"]
    st = tmp_path / "store"
    for f in side["files"]:
        api.ingest([str(SAMPLES / f)], store=str(st), label=side["label"])
    with api.connect(str(st)) as src:
        con = cal.copy_views(src, [side["label"]])
    n = len(side["files"])
    r = cal.aa_run_splits(con, side["label"], n_boot=200)
    from math import comb

    assert r.n == comb(n, n // 2) // 2, r.line()
    assert r.per_metric["walk_duration_ns"][1] == r.n and r.any_change == 0, r.line()
    # one of those splits, as --aa builds it: the given runs on side A, the run as the unit, 4 + 4 units
    from ksmtrace.report.aa import build_aa_report, run_order

    runs = run_order(con, side["label"])
    m = build_aa_report(con, side["label"], "ksm", 0.05, 1, 200, first_half=runs[1::2]).model
    assert m["aa"]["groups"]["before"] == runs[1::2] and m["aa"]["groups"]["after"] == runs[0::2]
    c = m["comparison"]["walk_duration_ns"]
    assert c["unit"] == "run" and c["n_before"] == c["n_after"] == n // 2, c
