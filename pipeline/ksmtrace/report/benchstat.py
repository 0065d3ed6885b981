"""Run-level metrics in the Go benchmark format, to cross-check verdicts with benchstat.

One result line per run (the run is the sample), grouped under a ``label:`` configuration line::

    label: before
    BenchmarkRmapWalkKSM/page=ksm 1 504281000 walk-p50-ns 943842000 walk-p99-ns ...

Compare with ``benchstat -col label FILE``. Units whose value a run cannot give are left out
of that run's line.
"""
from __future__ import annotations

import numpy as np

from . import stats

#: (unit, sample attribute, run attribute, statistic)
METRICS = [
    ("walk-p50-ns", "walk_ns", "walk_run", 0.5),
    ("walk-p99-ns", "walk_ns", "walk_run", 0.99),
    ("walk-max-ns", "walk_ns", "walk_run", 1.0),
    ("hold-p50-ns", "hold_ns", "hold_run", 0.5),
    ("hold-p99-ns", "hold_ns", "hold_run", 0.99),
    ("hold-max-ns", "hold_ns", "hold_run", 1.0),
    ("window-iters-max", "window_iterations", "iter_run", 1.0),
]


def run_metrics(samples) -> list[tuple[str, list[tuple[str, int]]]]:
    """[(run_id, [(unit, value), ...])] for one side."""
    out = []
    for i, run_id in enumerate(samples.run_ids):
        vals = []
        for unit, attr, run_attr, q in METRICS:
            v = getattr(samples, attr)[getattr(samples, run_attr) == i]
            if len(v):
                vals.append((unit, int(stats.quantile(np.sort(v), q))))
        if vals:
            out.append((run_id, vals))
    return out


def render(report, name: str = "RmapWalkKSM") -> str:
    m = report.model
    lines = ["# ksmtrace report --benchstat: one line per run (the run is the sample)",
             "# compare with: benchstat -col label FILE",
             f"page-type: {m['page_type']}"]
    for side in ("before", "after"):
        label = m[side]["label"]
        lines.append(f"label: {label}")
        for run_id, vals in run_metrics(report.samples[side]):
            lines.append(f"# run {run_id}")
            lines.append(f"Benchmark{name}/page={m['page_type']} 1 " + " ".join(f"{v} {u}" for u, v in vals))
    return "\n".join(lines) + "\n"
