"""Synthetic walks / lock_windows / lock_waits / runs for the report tests and the report benchmark:
frames made to measure (``gen_side``, ``gen_waits``) and ``serve_from_api``, which makes the CLI read them.
The tables themselves are made by :mod:`ksmtrace.report.view_tables` (re-exported here)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ksmtrace.report.view_tables import combine, create_tables  # noqa: F401


def gen_side(label: str, n_runs: int = 1, walks_per_run: int = 100, walk_median_ns: float = 500e6,
             windows_per_walk: int = 2, iterations: int = 20000, evidence: str = "function-graph",
             sigma: float = 0.3, seed: int = 1, page_type: str = "ksm", kernel: str = "6.18.0",
             skips: bool = False, lost: int = 0, resolution: int = 1000) -> dict[str, pd.DataFrame]:
    """One label's rows: lognormal walk durations, windows splitting ~90% of each walk.

    Durations are multiples of ``resolution`` (µs text by default), like real traces.
    Evidence ``tracepoint`` produces walks without windows; ``perf-callchain`` windows without iterations.
    """
    rng = np.random.default_rng(seed)
    walks, wins, runs = [], [], []
    for r in range(n_runs):
        run_id = f"{label}-{r:010x}"
        n = walks_per_run
        t0 = 1_000_000_000_000 + r * 10**12
        dur = np.maximum(resolution, (rng.lognormal(np.log(walk_median_ns), sigma, n) // resolution) * resolution)
        dur = dur.astype(np.int64)
        gap = (rng.exponential(1e6, n) // resolution * resolution).astype(np.int64) + resolution
        start = t0 + np.cumsum(gap + np.concatenate([[0], dur[:-1]]))
        w = pd.DataFrame({
            "run_id": run_id, "label": label, "walk_id": np.arange(1, n + 1), "evidence": evidence,
            "page_type": page_type, "pid": 33, "comm": "kcompactd0", "cpu": 0, "start_ns": start,
            "end_ns": start + dur, "duration_ns": dur, "complete": True,
            "caller": np.where(np.arange(n) % 2, "try_to_migrate", "remove_migration_ptes"),
        })
        if evidence != "tracepoint":
            k = windows_per_walk
            share = rng.dirichlet(np.ones(k), n) * 0.9
            hold = ((dur[:, None] * share) // resolution * resolution).astype(np.int64)
            hold = np.maximum(hold, resolution)
            wstart = start[:, None] + np.cumsum(np.concatenate([np.zeros((n, 1), np.int64), hold[:, :-1]], 1), 1)
            lw = pd.DataFrame({
                "run_id": run_id, "label": label, "walk_id": np.repeat(np.arange(1, n + 1), k),
                "window_no": np.tile(np.arange(1, k + 1), n), "start_ns": wstart.ravel(),
                "end_ns": (wstart + hold).ravel(), "hold_ns": hold.ravel(), "evidence": evidence,
            })
            if evidence != "perf-callchain":
                it = np.maximum(1, rng.poisson(iterations, n * k)).astype(np.int64)
                lw["iterations"] = it
                lw["rmap_one"] = 1
                lw["skipped"] = it - 1
                if skips:
                    lw["skip_addr"] = it - 1
                    lw["skip_mm"] = 0
                w["iterations"] = it.reshape(n, k).sum(1)
                w["max_window_iterations"] = it.reshape(n, k).max(1)
            w["n_windows"] = k
            w["max_hold_ns"] = hold.max(1)
            w["total_hold_ns"] = hold.sum(1)
            wins.append(lw)
        walks.append(w)
        runs.append({"run_id": run_id, "label": label, "source": f"{label}-{r}.txt", "format": "ftrace",
                     "n_lost_events": lost, "first_ts_ns": t0, "last_ts_ns": int(start[-1] + dur[-1]),
                     "tracer": "function_graph" if evidence == "function-graph" else "nop", "n_cpus": 2,
                     "kernel": kernel, "ts_unit": "ns", "ts_resolution_ns": resolution, "partial": False,
                     "lost_unknown": False, "meta": json.dumps({"options": ["funcgraph-abstime"]})})
    return {"walks": pd.concat(walks, ignore_index=True),
            "windows": pd.concat(wins, ignore_index=True) if wins else None,
            "runs": pd.DataFrame(runs)}


def gen_waits(label: str, run_id: str, n: int = 5, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = 1_000_000_000_000 + np.cumsum(rng.integers(1000, 10**6, n))
    wait = rng.integers(1000, 5 * 10**6, n)
    return pd.DataFrame({
        "run_id": run_id, "label": label, "pid": np.where(np.arange(n) % 3 == 0, 33, 1234),
        "comm": np.where(np.arange(n) % 3 == 0, "kcompactd0", "java"), "lock_addr": "ffff8881aa00",
        "flags": np.where(np.arange(n) % 3 == 0, "READ", "WRITE"), "start_ns": start, "end_ns": start + wait,
        "wait_ns": wait, "anon_vma_lock": np.arange(n) % 4 != 3,
        "caller": np.where(np.arange(n) % 3 == 0, "rmap_walk_ksm", "vma_prepare"),
    })


def serve_from_api(monkeypatch, d: dict[str, pd.DataFrame], waits: pd.DataFrame | None = None
                   ) -> dict[str, pd.DataFrame]:
    """Make ``ksmtrace.api.connect`` return a connection holding ``d``'s walks, windows and runs (and
    ``waits``) as the views, for CLI tests: the command's code path is otherwise real.
    ``monkeypatch`` is pytest's fixture."""
    import duckdb

    from ksmtrace import api

    def connect(store=None, threads=None, read_only=False, views="all"):
        con = duckdb.connect()
        create_tables(con, d["walks"], d["windows"], waits, d["runs"])
        return con

    monkeypatch.setattr(api, "connect", connect)
    return d
