"""Calibration of ``ksmtrace report --aa``: its false-positive rate and the power of the same tests.

Used by ``bench/bench_calibration.py`` (the figures in the README) and, on fewer splits, by
``tests/test_report_calibration.py``.

* **False positives on real traces**: the rows of one label's views are copied once into tables of
  an in-memory DuckDB (named like the views), and ``build_report(con, aa=label,
  aa_split_seed=s)`` - the code path of ``--aa`` itself - runs for ``s`` = 0, 1, 2, ... A split is
  a false positive for a metric when its verdict is neither ``~`` nor ``n/a``; "any" counts a split
  whose report claims a change for at least one metric.
* **False positives between boots**: a label with an even number of runs (the bundled 6.1 pair: 8 boots a
  kernel) split every distinct way into two halves, the run as the unit (:func:`aa_run_splits`).
* **False positives on null synthetic data**: runs, walks and windows drawn from one hierarchical
  model (a random run effect, a random walk effect, whole-microsecond times, so ties are heavy),
  compared with the ordinary before/after report; both with >= 2 runs per side (the run is the
  unit) and with one run per side (the walk is the unit: no run effect, one boot).
* **Power**: the same random halves of two labels that really differ (the bundled unsplit control
  against the 20,000-VMA split), before = a half of one, after = a half of the other.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from . import build_report
from . import view_tables

METRICS = ("walk_duration_ns", "hold_ns", "lock_wait_ns")
VIEW_TABLES = ("walks", "lock_windows", "lock_waits", "runs")


@dataclass
class Rate:
    """How many of ``n`` reports claimed a change, per metric and for any metric."""

    what: str
    n: int = 0
    per_metric: dict = field(default_factory=dict)  # metric -> [changes, tested]
    any_change: int = 0

    def add(self, model: dict) -> None:
        self.n += 1
        hit = False
        for k in METRICS:
            c = model["comparison"].get(k)
            if not isinstance(c, dict) or c.get("p_value") is None:
                continue
            cnt = self.per_metric.setdefault(k, [0, 0])
            cnt[1] += 1
            if c["verdict"] not in ("~", "n/a"):
                cnt[0] += 1
                hit = True
        self.any_change += hit

    @property
    def rate(self) -> float:
        return self.any_change / self.n if self.n else float("nan")

    def ci(self) -> tuple[float, float]:
        """Wilson 95% interval of the rate."""
        n, k, z = self.n, self.any_change, 1.959964
        if not n:
            return float("nan"), float("nan")
        p = k / n
        mid = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
        return max(0.0, mid - half), min(1.0, mid + half)

    def line(self) -> str:
        per = ", ".join(f"{k} {c}/{t}" for k, (c, t) in self.per_metric.items())
        lo, hi = self.ci()
        return (f"{self.what}: {self.any_change}/{self.n} = {100 * self.rate:.1f}% "
                f"[95% CI {100 * lo:.1f}-{100 * hi:.1f}%] (per metric: {per})")


def copy_views(src: duckdb.DuckDBPyConnection, labels: list[str]) -> duckdb.DuckDBPyConnection:
    """A new in-memory connection whose tables walks, lock_windows, lock_waits, runs hold these labels' rows."""
    con = duckdb.connect()
    for v in VIEW_TABLES:
        try:
            df = src.execute(f"SELECT * FROM {v} WHERE label IN (SELECT unnest($l))", {"l": labels}).df()
        except duckdb.Error:
            continue
        con.register("_df", df)
        con.execute(f"CREATE TABLE {v} AS SELECT * FROM _df")
        con.unregister("_df")
    return con


def aa_false_positives(con, label: str, splits: int, n_boot: int = 1000, page_type: str = "ksm",
                       first_seed: int = 0) -> Rate:
    """Run ``--aa label`` with ``splits`` random splits."""
    r = Rate(f"--aa {label}, {splits} random splits")
    for s in range(first_seed, first_seed + splits):
        r.add(build_report(con, aa=label, aa_split_seed=s, n_boot=n_boot, page_type=page_type).model)
    return r


def aa_run_splits(con, label: str, n_boot: int = 1000, page_type: str = "ksm") -> Rate:
    """``--aa label`` on every distinct balanced split of its runs (the run is the unit): with 8 runs the 35
    splits into 4 + 4 (a split and its mirror count once: group A always holds the first run)."""
    from itertools import combinations

    from .aa import build_aa_report, run_order
    from .stats import ALPHA, SEED

    runs = run_order(con, label)
    if len(runs) < 4 or len(runs) % 2:
        raise ValueError(f"{label}: {len(runs)} runs; an exhaustive balanced split needs an even number >= 4")
    k = len(runs) // 2
    halves = [[runs[0], *c] for c in combinations(runs[1:], k - 1)]
    r = Rate(f"--aa {label}, all {len(halves)} splits of its {len(runs)} runs into {k} + {k} (the run is the unit)")
    for h in halves:
        r.add(build_aa_report(con, label, page_type, ALPHA, SEED, n_boot, first_half=h).model)
    return r


def _halves(df: pd.DataFrame, keys: list[str], rng: np.random.Generator, strata: list[str]) -> pd.Series:
    """0/1 per row of df: a random balanced split of the distinct ``keys`` per stratum."""
    units = df[list(dict.fromkeys(keys + strata))].drop_duplicates(keys).reset_index(drop=True)
    g = np.zeros(len(units), dtype=np.int64)
    for _, ix in units.groupby(strata, dropna=False).indices.items():
        ix = np.asarray(ix)[rng.permutation(len(ix))]
        g[ix] = (np.arange(len(ix)) + int(rng.integers(0, 2))) % 2
    units["_g"] = g
    return df.merge(units[keys + ["_g"]], on=keys, how="left")["_g"].to_numpy()


def power(src, before: str, after: str, splits: int, n_boot: int = 1000, page_type: str = "ksm") -> Rate:
    """Random halves of ``before`` against random halves of ``after`` (walks of one run split per caller)."""
    frames = {}
    for v in VIEW_TABLES:
        try:
            frames[v] = src.execute(f"SELECT * FROM {v} WHERE label IN ($a, $b)", {"a": before, "b": after}).df()
        except duckdb.Error:
            pass
    walks = frames["walks"]
    r = Rate(f"{before} vs {after}, {splits} random halves")
    for s in range(splits):
        rng = np.random.default_rng(10_000 + s)
        con = duckdb.connect()
        g = _halves(walks, ["label", "run_id", "walk_id"], rng, ["label", "page_type", "caller"])
        keep = {lab: grp for lab, grp in ((before, 0), (after, 1))}
        w = walks[[keep[lab] == gi for lab, gi in zip(walks.label, g)]]
        for v, df in frames.items():
            if v == "walks":
                df = w
            elif v == "lock_windows":
                df = df.merge(w[["run_id", "walk_id"]], on=["run_id", "walk_id"])
            con.register("_df", df)
            con.execute(f"CREATE TABLE {v} AS SELECT * FROM _df")
            con.unregister("_df")
        r.add(build_report(con, before, after, page_type=page_type, n_boot=n_boot).model)
        con.close()
    return r


def gen_null(label: str, n_runs: int, walks_per_run: int, seed: int, run_sd: float = 0.2,
             walk_sd: float = 0.3, window_sd: float = 0.5, windows_per_walk: int = 8,
             median_ns: float = 4000, resolution: int = 1000) -> dict[str, pd.DataFrame]:
    """One label of the null model: log(time) = run effect + walk effect + window noise, whole µs.

    With a 4 µs median and 1 µs resolution most windows tie with many others, as in real
    function_graph traces.
    """
    rng = np.random.default_rng(seed)
    walks, wins, runs = [], [], []
    for r in range(n_runs):
        run_id = f"{label}-{seed}-{r}"
        t0 = 10**12 * (r + 1)
        run_eff = rng.normal(0, run_sd)
        n = walks_per_run
        walk_eff = run_eff + rng.normal(0, walk_sd, n)
        hold = np.exp(np.log(median_ns) + walk_eff[:, None] + rng.normal(0, window_sd, (n, windows_per_walk)))
        hold = (np.floor(hold / resolution) * resolution).astype(np.int64)
        dur = hold.sum(1) + resolution * windows_per_walk
        start = t0 + np.cumsum(dur + 10 * resolution)
        walks.append(pd.DataFrame({
            "run_id": run_id, "label": label, "walk_id": np.arange(1, n + 1), "evidence": "function-graph",
            "page_type": "ksm", "pid": 33, "comm": "kcompactd0", "cpu": 0, "start_ns": start, "end_ns": start + dur,
            "duration_ns": dur, "complete": True, "caller": "try_to_migrate", "n_windows": windows_per_walk,
            "max_hold_ns": hold.max(1), "total_hold_ns": hold.sum(1)}))
        wins.append(pd.DataFrame({
            "run_id": run_id, "label": label, "walk_id": np.repeat(np.arange(1, n + 1), windows_per_walk),
            "window_no": np.tile(np.arange(1, windows_per_walk + 1), n), "hold_ns": hold.ravel(),
            "evidence": "function-graph"}))
        runs.append({"run_id": run_id, "label": label, "source": f"{run_id}.txt", "format": "ftrace",
                     "tracer": "function_graph", "n_cpus": 2, "kernel": "6.1.0", "ts_unit": "us",
                     "ts_resolution_ns": resolution, "n_lost_events": 0, "lost_unknown": False, "partial": False})
    return {"walks": pd.concat(walks, ignore_index=True), "windows": pd.concat(wins, ignore_index=True),
            "runs": pd.DataFrame(runs)}


def null_false_positives(n_runs: int, walks_per_run: int, reps: int, n_boot: int = 1000,
                         first_seed: int = 0, run_sd: float = 0.2) -> Rate:
    """Before and after drawn from the same null model, ``reps`` times.

    ``run_sd`` is the spread of the run (boot) effect. With one run per side the walk is the unit and
    the two boots' effects are confounded with the change: only ``run_sd=0`` is a null there (the
    report says its verdict reaches one boot only).
    """
    r = Rate(f"null synthetic, {n_runs} run{'s' if n_runs != 1 else ''} x {walks_per_run} walks per side, "
             f"boot effect sd {run_sd:g}, {reps} draws")
    for s in range(first_seed, first_seed + reps):
        d = view_tables.combine(gen_null("before", n_runs, walks_per_run, 2 * s, run_sd=run_sd),
                       gen_null("after", n_runs, walks_per_run, 2 * s + 1, run_sd=run_sd))
        con = duckdb.connect()
        view_tables.create_tables(con, d["walks"], d["windows"], None, d["runs"])
        r.add(build_report(con, "before", "after", n_boot=n_boot).model)
        con.close()
    return r
