"""ksmtrace.report.stats: percentiles, the exact order-statistic bootstrap, benchstat warnings."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ksmtrace.report import stats


@given(st.lists(st.integers(0, 10**12), min_size=1, max_size=200))
@settings(max_examples=100, deadline=None)
def test_distribution_is_nearest_rank(xs):
    d = stats.distribution(np.array(xs, dtype=np.int64))
    s = sorted(xs)
    n = len(s)
    assert d["count"] == n and d["min"] == s[0] and d["max"] == s[-1]
    for k, q in stats.QUANTILES.items():
        # nearest rank: the smallest value with at least q*n values <= it
        assert d[k] == s[max(1, math.ceil(q * n - 1e-9)) - 1]
        assert sum(v <= d[k] for v in s) >= q * n
        assert d[k] in xs
    assert d["mean"] == pytest.approx(sum(xs) / n)


def test_empty_distribution_is_nulls():
    d = stats.distribution(np.array([], dtype=np.int64))
    assert d["count"] == 0 and all(d[k] is None for k in d if k != "count")


@pytest.mark.parametrize("n,q", [(7, 0.5), (40, 0.5), (40, 0.99), (101, 0.9)])
def test_order_statistic_bootstrap_matches_plain_resampling(n, q):
    """Drawing U_(r) ~ Beta(r, n-r+1) gives the same replicate distribution as resampling the array."""
    x = np.sort(np.random.default_rng(1).lognormal(0, 1, n))
    reps = 40000
    fast = stats.boot_quantile(x, q, np.random.default_rng(2), reps)
    idx = np.random.default_rng(3).integers(0, n, size=(reps, n))
    r = max(1, math.ceil(q * n - 1e-9)) - 1
    slow = np.sort(x[idx], axis=1)[:, r]
    # compare the probability of each original value being the replicate's quantile
    pf = np.array([np.mean(fast == v) for v in x])
    ps = np.array([np.mean(slow == v) for v in x])
    assert pf.sum() == pytest.approx(1) and ps.sum() == pytest.approx(1)
    assert np.max(np.abs(pf - ps)) < 0.012
    assert np.quantile(fast, [0.025, 0.975]) == pytest.approx(np.quantile(slow, [0.025, 0.975]), rel=0.05)


def test_benchstat_sample_size_rules():
    assert stats.mwu_needed(0.05) == 4
    assert stats.ci_needed(0.95) == 6
    assert stats.warn_need_diff() == "need >= 4 samples to detect a difference at alpha level 0.05"
    assert stats.warn_need_ci() == "need >= 6 samples for confidence interval at level 0.95"
    assert stats.mwu_min_p(3, 3) == pytest.approx(0.1)
    assert stats.mwu_min_p(4, 4) == pytest.approx(2 / 70)
    assert stats.mwu_min_p(10**6, 10**6) < 1e-5


def test_all_equal_samples():
    c = stats.compare_pooled(np.full(20, 5), np.full(20, 5))
    assert c.p_value == 1.0 and c.verdict == "~" and stats.WARN_ALL_EQUAL in c.warnings
    assert c.median_ratio == 1.0 and c.median_ratio_ci == [1.0, 1.0]


def test_zero_before_gives_no_ratio():
    c = stats.compare_pooled(np.zeros(20), np.arange(1, 21))
    assert c.median_ratio is None and c.median_ratio_ci is None and c.verdict == "n/a"
    assert c.p_value is not None and c.p_value < 0.05


def test_compare_runs_small_exact():
    before = [np.array([10, 11, 12]) * k for k in (1, 1.1, 0.9, 1.05)]
    after = [np.array([5, 6, 7]) * k for k in (1, 1.2, 0.95, 1.01)]
    c = stats.compare_runs(before, after)
    assert c.unit == "run" and (c.n_before, c.n_after) == (4, 4)
    assert c.p_value == pytest.approx(2 / 70)  # fully separated, exact test
    assert c.significant and c.verdict.startswith("-")
    assert stats.warn_need_ci() in c.warnings


@pytest.mark.parametrize("ties", [False, True])
def test_fast_mann_whitney_equals_scipy(ties):
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(5)
    n = stats.FAST_MWU_MIN
    a = rng.lognormal(0, 1, n + 17)
    b = rng.lognormal(0.02, 1, n)
    if ties:
        a, b = np.round(a * 20), np.round(b * 20)
    ref = mannwhitneyu(b, a, alternative="two-sided", method="asymptotic").pvalue
    assert stats.mann_whitney(a, b) == pytest.approx(ref, rel=1e-9, abs=1e-300)
    assert 1e-6 < ref < 0.99 or ties


def test_small_samples_with_ties_use_an_exact_test():
    # 3 runs per side, all per-run medians tied within a side: the asymptotic test would say p = 0.046,
    # but only 20 splits exist: the exact p is 2/20 = 0.1, never below 0.05
    p = stats.mann_whitney(np.array([34000.0] * 3), np.array([1000.0] * 3))
    assert p == pytest.approx(0.1)
    c = stats.compare_runs([np.array([34000.0])] * 3, [np.array([1000.0])] * 3)
    assert c.verdict == "~" and stats.warn_need_diff() in c.warnings
    # with ties but enough runs, significant
    assert stats.mann_whitney(np.array([5.0, 5, 6, 6, 7]), np.array([1.0, 1, 2, 2, 3])) < 0.05
    # no ties: scipy's exact distribution
    assert stats.mann_whitney(np.array([4.0, 5, 6]), np.array([1.0, 2, 3])) == pytest.approx(0.1)


@given(st.lists(st.integers(0, 5), min_size=1, max_size=60))
@settings(max_examples=100, deadline=None)
def test_midranks_equal_scipy_rankdata(xs):
    from scipy.stats import rankdata

    x = np.array(xs, dtype=np.float64)
    assert np.array_equal(stats.midranks(x), rankdata(x))
