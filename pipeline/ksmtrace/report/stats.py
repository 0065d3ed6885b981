"""Statistics on the rows of the walk views: percentiles, Mann-Whitney U, bootstrap CIs, verdicts.

Nothing here knows what a walk is; it works on plain arrays of numbers.

Conventions (kept in one place so that every renderer agrees):

* Percentiles are *nearest-rank* (numpy ``method="inverted_cdf"``): p50 of n values is the
  ``ceil(0.5 n)``-th smallest one. Every reported percentile is therefore a value that was
  actually measured (integer ns stay integer ns).
* The unit of every test is a *unit summary*, never a pooled window: with >= 2 runs per side a run
  (its median and p99 over its walks), with one run per side a walk (its duration, its longest
  hold). Kalibera and Jones, "Rigorous Benchmarking in Reasonable Time" (ISMM 2013): runs contain
  walks, walks contain windows; only the top level that varies is independent.
* The test is a two-sided **permutation test of the Mann-Whitney rank sum** (mid-ranks): exact
  (all splits enumerated) when there are few, else Monte Carlo with :data:`N_PERM` random splits
  (p = (1 + hits) / (1 + N_PERM)), and the tie-corrected normal approximation only above
  :data:`PERM_MAX_N` units. A permutation test holds its level exactly under exchangeability,
  however heavily whole-microsecond times tie (checked by simulation in the tests and in
  bench/bench_calibration.py).
* A change is claimed only when the adjusted p is below alpha **and** the bootstrap CI of the
  median ratio excludes 1: a shift of the distribution that leaves the median where it was reads
  ``~`` (with a warning), never ``+0.00%``.
* Confidence intervals for a ratio of quantiles are percentile-bootstrap intervals with a fixed
  seed; with runs as the unit the bootstrap is hierarchical (runs resampled, then walks within
  each resampled run). With walks as the unit, the bootstrap of a nearest-rank quantile is sampled *exactly*
  from order statistics (see :func:`boot_quantile`), so a million walks cost a sort, not a
  million-element resample per replicate.
* Warning texts that benchstat also prints are reused word for word.
* One report tests several metrics at once: :func:`apply_holm` adjusts every p-value of a report
  with Holm-Bonferroni, and the verdicts (``significant``, ``~``) use the adjusted p.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

ALPHA = 0.05
CONFIDENCE = 0.95
N_BOOT = 10_000
SEED = 20260611  # fixed: reports are reproducible
N_PERM = 9999  # Monte Carlo permutation test: random splits
PERM_MAX_N = 2000  # above this many units in all: the tie-corrected normal approximation

QUANTILES = {"p50": 0.50, "p90": 0.90, "p99": 0.99, "p999": 0.999}
DIST_KEYS = ("count", "min", "p50", "p90", "p99", "p999", "max", "mean")


def _num(v):
    """numpy scalar -> plain Python int/float (ints stay ints)."""
    if v is None:
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        f = float(v)
        return int(f) if f.is_integer() and abs(f) < 2**53 else f
    return v


def sort(x) -> np.ndarray:
    """x sorted ascending; an already sorted array (e.g. ORDER BY in SQL) is returned as is."""
    x = np.asarray(x)
    if len(x) < 2 or bool(np.all(x[1:] >= x[:-1])):
        return x
    return np.sort(x, kind="stable")


def quantile(sorted_x: np.ndarray, q: float):
    """Nearest-rank quantile of an already sorted, non-empty array."""
    n = len(sorted_x)
    k = max(1, math.ceil(q * n - 1e-9))
    return sorted_x[min(k, n) - 1]


def distribution(x: np.ndarray) -> dict:
    """count, min, p50, p90, p99, p999, max, mean of x (None values when x is empty)."""
    x = np.asarray(x)
    n = int(len(x))
    if n == 0:
        return {"count": 0, **{k: None for k in DIST_KEYS if k != "count"}}
    s = sort(x)
    out = {"count": n, "min": _num(s[0])}
    for k, q in QUANTILES.items():
        out[k] = _num(quantile(s, q))
    out["max"] = _num(s[-1])
    out["mean"] = float(np.mean(s, dtype=np.float64))
    return out


# --------------------------------------------------------------------------- tests

def mwu_min_p(n1: int, n2: int) -> float:
    """Smallest two-sided p-value an exact Mann-Whitney U test can reach with these sizes."""
    if n1 <= 0 or n2 <= 0:
        return 1.0
    if n1 + n2 > 1000:  # C(n1+n2, n1) >= n1+n2 > 1000 -> p < 0.002; avoid huge integers
        return 2.0 / (n1 + n2)
    return min(1.0, 2.0 / math.comb(n1 + n2, n1))


def mwu_needed(alpha: float = ALPHA) -> int:
    """Smallest n (equal sizes) with which a difference can be detected at level alpha."""
    n = 1
    while mwu_min_p(n, n) > alpha:
        n += 1
    return n


def ci_needed(confidence: float = CONFIDENCE) -> int:
    """Smallest n for a distribution-free (order statistics) CI of the median at this level."""
    n = 1
    while 1 - 2 * 0.5 ** n < confidence:
        n += 1
    return n


def warn_need_ci(confidence: float = CONFIDENCE) -> str:
    return f"need >= {ci_needed(confidence)} samples for confidence interval at level {confidence:g}"


def warn_need_diff(alpha: float = ALPHA) -> str:
    return f"need >= {mwu_needed(alpha)} samples to detect a difference at alpha level {alpha:g}"


WARN_ALL_EQUAL = "all samples are equal"


#: above this many values per side the normal approximation is computed from the sorted samples
#: directly (same formula as scipy's method="asymptotic", checked against it in the tests)
FAST_MWU_MIN = 20_000


def mann_whitney(a: np.ndarray, b: np.ndarray) -> float | None:
    """Two-sided Mann-Whitney U p-value; None when a side is empty; 1.0 when all values are equal.

    scipy.stats.mannwhitneyu (exact for small samples without ties, else asymptotic with tie and
    continuity correction); for large samples the same asymptotic formula on sorted arrays.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        return None
    if np.all(a == a[0]) and np.all(b == a[0]):
        return 1.0
    if min(len(a), len(b)) >= FAST_MWU_MIN:
        return _mwu_asymptotic_sorted(sort(a), sort(b))
    from scipy.stats import mannwhitneyu

    if len(a) <= 8 and len(b) <= 8:
        if len(np.unique(np.concatenate([a, b]))) < len(a) + len(b):
            return _mwu_exact_ties(a, b)  # scipy's exact method assumes no ties
        method = "exact"
    else:
        method = "asymptotic"
    res = mannwhitneyu(b, a, alternative="two-sided", method=method)
    p = float(res.pvalue)
    return None if math.isnan(p) else min(1.0, p)


def _mwu_exact_ties(a: np.ndarray, b: np.ndarray) -> float:
    """Exact two-sided permutation p-value of U with mid-ranks (small samples with ties)."""
    from itertools import combinations

    from scipy.stats import rankdata

    x = np.concatenate([b, a])
    r = rankdata(x)
    n1, n = len(b), len(x)
    mu = n1 * (n + 1) / 2
    obs = abs(r[:n1].sum() - mu)
    sums = np.array([r[list(c)].sum() for c in combinations(range(n), n1)])
    return float(np.mean(np.abs(sums - mu) >= obs - 1e-9))


def _mwu_asymptotic_sorted(a: np.ndarray, b: np.ndarray) -> float:
    """scipy's asymptotic two-sided MWU (tie correction, continuity correction) from sorted a, b."""
    n1, n2 = len(b), len(a)
    # U of b: for each b value, the a values below it plus half the a values equal to it
    u1 = float(np.sum(np.searchsorted(a, b, "left"), dtype=np.float64)
               + np.sum(np.searchsorted(a, b, "right"), dtype=np.float64)) / 2
    u = max(u1, n1 * n2 - u1)
    allv = np.concatenate([a, b])
    allv.sort(kind="stable")
    edges = np.flatnonzero(np.diff(allv)) + 1
    t = np.diff(np.concatenate([[0], edges, [len(allv)]])).astype(np.float64)
    n = n1 + n2
    tie = float(np.sum(t ** 3 - t))
    s = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie / (n * (n - 1))))
    if s == 0:
        return 1.0
    z = (u - n1 * n2 / 2 - 0.5) / s
    return min(1.0, math.erfc(z / math.sqrt(2)))


# --------------------------------------------------------------------------- bootstrap

def boot_quantile(sorted_x: np.ndarray, q: float, rng: np.random.Generator, n_boot: int = N_BOOT) -> np.ndarray:
    """Bootstrap replicates of the nearest-rank q-quantile of sorted_x, sampled exactly.

    A resample draws n indices i = ceil(n U) with U uniform; its r-th smallest value is
    x[ceil(n U_(r))] where U_(r), the r-th order statistic of n uniforms, is Beta(r, n - r + 1).
    Drawing U_(r) directly gives the same distribution as resampling the whole array.
    """
    n = len(sorted_x)
    r = max(1, math.ceil(q * n - 1e-9))
    u = rng.beta(r, n - r + 1, size=n_boot)
    idx = np.clip(np.ceil(u * n).astype(np.int64), 1, n) - 1
    return sorted_x[idx].astype(np.float64)


def ratio_ci(rep_before: np.ndarray, rep_after: np.ndarray, confidence: float = CONFIDENCE):
    """Percentile CI of after/before from paired-by-index independent replicates; None if undefined."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = rep_after / rep_before
    r = r[np.isfinite(r)]
    if len(r) < 0.9 * len(rep_before):  # the before quantile is 0 too often: no meaningful ratio
        return None
    lo, hi = np.quantile(r, [(1 - confidence) / 2, 1 - (1 - confidence) / 2])
    return [float(lo), float(hi)]


def ratio(after, before):
    if after is None or before is None or before == 0:
        return None
    return float(after) / float(before)


# --------------------------------------------------------------------------- permutation test

def rank_test(a, b, seed: int = SEED, n_perm: int = N_PERM) -> float | None:
    """Two-sided permutation p-value of the Mann-Whitney rank sum (mid-ranks) of a against b.

    Exact when at most ``n_perm`` splits exist, Monte Carlo otherwise (``(1 + hits) / (1 + n_perm)``,
    never 0), the tie-corrected normal approximation above :data:`PERM_MAX_N` units. None when a side
    is empty; 1.0 when every value is equal.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        return None
    x = np.concatenate([a, b])
    if np.all(x == x[0]):
        return 1.0
    n = n1 + n2
    if n > PERM_MAX_N:
        return _mwu_asymptotic_sorted(sort(a), sort(b))
    r = midranks(x)
    k = min(n1, n2)
    rk = r[:n1] if n1 == k else r[n1:]
    mu = k * (n + 1) / 2
    obs = abs(float(rk.sum()) - mu) - 1e-7 * n
    if n < 64 and math.comb(n, k) <= n_perm:
        from itertools import combinations

        sums = np.fromiter((r[list(c)].sum() for c in combinations(range(n), k)), dtype=np.float64)
        return float(np.mean(np.abs(sums - mu) >= obs))
    rng = np.random.default_rng(seed)
    hits, done, chunk = 0, 0, max(1, 2_000_000 // n)
    while done < n_perm:
        m = min(chunk, n_perm - done)
        perm = rng.permuted(np.broadcast_to(r, (m, n)), axis=1)
        hits += int(np.sum(np.abs(perm[:, :k].sum(axis=1) - mu) >= obs))
        done += m
    return (1 + hits) / (1 + n_perm)


def midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x, ties given the mean of their ranks (as scipy.stats.rankdata)."""
    n = len(x)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    edges = np.flatnonzero(np.diff(xs)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [n]])
    r = np.empty(n, dtype=np.float64)
    r[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    return r


def perm_min_p(n1: int, n2: int, n_perm: int = N_PERM) -> float:
    """Smallest p the permutation test can give with these sizes."""
    if n1 <= 0 or n2 <= 0:
        return 1.0
    exact = mwu_min_p(n1, n2)
    return max(exact, 1 / (1 + n_perm)) if n1 + n2 <= PERM_MAX_N else exact


def hier_boot_quantile(runs: list[np.ndarray], q_run: float, rng: np.random.Generator,
                       n_boot: int = N_BOOT) -> np.ndarray:
    """Hierarchical bootstrap replicates of the median over runs of each run's q_run-quantile.

    One replicate resamples the runs with replacement, and within each drawn run its walks (each
    draw of a run gets its own resample of walks), as Kalibera and Jones (2013) describe.
    """
    k = len(runs)
    per = np.stack([boot_quantile(sort(np.asarray(v, dtype=np.float64)), q_run, rng, n_boot) for v in runs])
    idx = rng.integers(0, k, size=(n_boot, k))
    col = rng.integers(0, n_boot, size=(n_boot, k))
    vals = np.sort(per[idx, col], axis=1)
    return vals[:, max(1, math.ceil(0.5 * k - 1e-9)) - 1]


# --------------------------------------------------------------------------- comparison

@dataclass
class Comparison:
    """One metric compared between two sides (the JSON ``comparison.<metric>`` object)."""

    median_ratio: float | None = None
    median_ratio_ci: list | None = None
    p99_ratio: float | None = None
    p99_ratio_ci: list | None = None
    p_value: float | None = None
    significant: bool | None = None  # from p_value_adjusted once a correction is applied
    p_value_adjusted: float | None = None  # Holm-Bonferroni over the tests of one report
    correction: str | None = None  # "holm" once applied
    unit: str = "walk"  # what one sample is: "walk" or "run"
    summary: str = ""  # what one unit contributes, e.g. "the walk's duration"
    n_before: int = 0
    n_after: int = 0
    p99_p_value: float | None = None  # run unit only: the test on per-run p99s
    p99_significant: bool | None = None
    p99_p_value_adjusted: float | None = None
    test: str = "permutation test of the Mann-Whitney rank sum"
    verdict: str = "n/a"  # benchstat style: "~", "-99.8%", "+4.10%" or "n/a"
    warnings: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in (
            "median_ratio", "median_ratio_ci", "p99_ratio", "p99_ratio_ci", "p_value", "p_value_adjusted", "correction",
            "significant", "unit", "summary", "n_before", "n_after", "p99_p_value", "p99_p_value_adjusted",
            "p99_significant", "test", "verdict", "warnings")}


def sig3(x: float) -> str:
    """x with 3 significant digits, no exponent: 24066.67 -> '24100', 0.0659 -> '0.0659'."""
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else str(x)
    mag = int(math.floor(math.log10(abs(x))))
    r = round(x, 2 - mag)
    if r != 0 and int(math.floor(math.log10(abs(r)))) > mag:  # 9.996 -> 10.0
        mag += 1
    dec = max(0, 2 - mag)
    return f"{r:.{dec}f}"


def pct(ratio_value: float) -> str:
    """after/before as a signed change with 3 significant digits: '-99.8%', '+4.10%', '+24100%'."""
    d = (ratio_value - 1) * 100
    s = sig3(d)
    return ("+" if d > 0 else "") + s + "%"


def verdict(ratio_value: float | None, significant: bool | None, ci=None) -> str:
    if ratio_value is None or significant is None:
        return "n/a"
    if not significant or ratio_value == 1 or (ci and ci[0] <= 1 <= ci[1]):
        return "~"
    return pct(ratio_value)


def _unit_warnings(na: int, nb: int, a: np.ndarray, b: np.ndarray, alpha: float, what: str) -> list[str]:
    w = []
    if na and nb and perm_min_p(na, nb) > alpha:
        w.append(warn_need_diff(alpha))
    if 0 < min(na, nb) < ci_needed():
        w.append(warn_need_ci())
    if na and nb and np.all(a == a[0]) and np.all(b == a[0]):
        w.append(WARN_ALL_EQUAL)
    return w


def compare_pooled(before: np.ndarray, after: np.ndarray, alpha: float = ALPHA, seed: int = SEED,
                   n_boot: int = N_BOOT, unit: str = "walk", summary: str = "") -> Comparison:
    """Compare two pooled samples, one value per ``unit`` (a walk's duration or longest hold, a window's hold, a
    wait), every value of a side counted as independent: the counterpart of :func:`compare_runs`, used when a
    side has too few runs for the run to be the unit."""
    a = sort(before).astype(np.float64)
    b = sort(after).astype(np.float64)
    c = Comparison(unit=unit, summary=summary, n_before=len(a), n_after=len(b))
    if len(a) == 0 or len(b) == 0:
        return c
    rng = np.random.default_rng(seed)
    c.median_ratio = ratio(quantile(b, 0.5), quantile(a, 0.5))
    c.p99_ratio = ratio(quantile(b, 0.99), quantile(a, 0.99))
    if c.median_ratio is not None:
        c.median_ratio_ci = ratio_ci(boot_quantile(a, 0.5, rng, n_boot), boot_quantile(b, 0.5, rng, n_boot))
    if c.p99_ratio is not None:
        c.p99_ratio_ci = ratio_ci(boot_quantile(a, 0.99, rng, n_boot), boot_quantile(b, 0.99, rng, n_boot))
    c.p_value = rank_test(a, b, seed)
    c.significant = None if c.p_value is None else bool(c.p_value < alpha)
    c.verdict = verdict(c.median_ratio, c.significant, c.median_ratio_ci)
    c.warnings = _unit_warnings(len(a), len(b), a, b, alpha, unit)
    return c


def compare_runs(before_runs: list[np.ndarray], after_runs: list[np.ndarray], alpha: float = ALPHA,
                 seed: int = SEED, n_boot: int = N_BOOT, summary: str = "") -> Comparison:
    """The run is the unit: test per-run medians (and per-run p99s) of the walks' values; ratios of
    the medians over runs; hierarchical bootstrap CIs (runs, then walks within runs)."""
    before_runs = [np.asarray(r, dtype=np.float64) for r in before_runs if len(r)]
    after_runs = [np.asarray(r, dtype=np.float64) for r in after_runs if len(r)]

    def per_run(runs, q):
        return np.array([quantile(sort(r), q) for r in runs], dtype=np.float64)

    med_a, med_b = per_run(before_runs, 0.5), per_run(after_runs, 0.5)
    p99_a, p99_b = per_run(before_runs, 0.99), per_run(after_runs, 0.99)
    c = Comparison(unit="run", summary=summary, n_before=len(med_a), n_after=len(med_b))
    if len(med_a) == 0 or len(med_b) == 0:
        return c
    rng = np.random.default_rng(seed)
    sa, sb = np.sort(med_a), np.sort(med_b)
    c.median_ratio = ratio(quantile(sb, 0.5), quantile(sa, 0.5))
    if c.median_ratio is not None:
        c.median_ratio_ci = ratio_ci(hier_boot_quantile(before_runs, 0.5, rng, n_boot),
                                     hier_boot_quantile(after_runs, 0.5, rng, n_boot))
    qa, qb = np.sort(p99_a), np.sort(p99_b)
    c.p99_ratio = ratio(quantile(qb, 0.5), quantile(qa, 0.5))
    if c.p99_ratio is not None:
        c.p99_ratio_ci = ratio_ci(hier_boot_quantile(before_runs, 0.99, rng, n_boot),
                                  hier_boot_quantile(after_runs, 0.99, rng, n_boot))
    c.p_value = rank_test(med_a, med_b, seed)
    c.significant = None if c.p_value is None else bool(c.p_value < alpha)
    c.p99_p_value = rank_test(p99_a, p99_b, seed + 1)
    c.p99_significant = None if c.p99_p_value is None else bool(c.p99_p_value < alpha)
    c.verdict = verdict(c.median_ratio, c.significant, c.median_ratio_ci)
    c.warnings = _unit_warnings(len(med_a), len(med_b), med_a, med_b, alpha, "run")
    return c


# --------------------------------------------------------------------------- multiple comparisons

def holm(pvals: list[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1); None stays None.

    The family is the non-None p-values: the k-th smallest of m is multiplied by m - k + 1 and
    the running maximum is taken, so adjusted p < alpha exactly when Holm's procedure rejects.
    """
    idx = [i for i, p in enumerate(pvals) if p is not None]
    m = len(idx)
    out: list[float | None] = [None] * len(pvals)
    run = 0.0
    for k, i in enumerate(sorted(idx, key=lambda i: pvals[i])):
        run = max(run, min(1.0, (m - k) * float(pvals[i])))
        out[i] = run
    return out


def apply_holm(comparisons: list[Comparison], alpha: float = ALPHA) -> int:
    """Adjust every test of these comparisons (p_value and, per run, p99_p_value) as one family.

    Sets the adjusted p-values, ``correction = "holm"``, and recomputes ``significant``,
    ``p99_significant`` and ``verdict`` from the adjusted p. Returns the number of tests.
    """
    slots = [(c, attr) for c in comparisons for attr in ("p_value", "p99_p_value")]
    adj = holm([getattr(c, attr) for c, attr in slots])
    for (c, attr), q in zip(slots, adj):
        setattr(c, attr + "_adjusted", q)
        sig = None if q is None else bool(q < alpha)
        if attr == "p_value":
            c.significant = sig
            c.correction = "holm"
            c.verdict = verdict(c.median_ratio, sig, c.median_ratio_ci)
            if sig and c.verdict == "~":
                c.warnings.append("the distributions differ (p_holm < alpha) but the median does not "
                                  "(its 95% CI includes 1): no change is claimed")
        else:
            c.p99_significant = sig
    return sum(q is not None for q in adj)
