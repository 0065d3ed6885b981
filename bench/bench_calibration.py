"""Benchmark: calibration of `ksmtrace report --aa` (false-positive rate) and the power of its tests.

    python bench/bench_calibration.py [--splits 200] [--draws 200] [--alpha 0.05]

* false positives of `--aa` over N random A/A splits of each bundled real trace
  (sample_traces/real-*: every real trace there, so traces added later are checked too; each trace is
  one run, so its walks are split);
* false positives of `--aa` between boots: every label of sample_traces/manifest.json with an even
  number >= 4 of runs (the 6.1 pair: 8 boots per kernel) split every distinct way into two halves
  (35 splits of 8 runs into 4 + 4), the run as the unit;
* false positives on null synthetic data (equal distributions, whole-microsecond ties), with
  6 runs per side (the run is the unit) and with 1 run per side (the walk is the unit);
* the power on the real unsplit-vs-split pair (random halves of each).

Exits 1 when a false-positive rate is shown to be above alpha (the lower end of its Wilson 95% interval is
above alpha: a rate of 12/200 = 6% is within the noise of 5%, 30/200 = 15% is not) or the power is below 100%. The figures are in
the README (section "Calibration"). See ksmtrace.report.calibration for what is counted.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "pipeline"))

from ksmtrace import api  # noqa: E402
from ksmtrace.report import calibration as cal  # noqa: E402

PAIR = ("real-6.18-unsplit.perf.txt.zst", "real-6.18-split20000.perf.txt.zst")


def label_of(path: Path) -> str:
    return path.name.split(".perf")[0].split(".txt")[0].split(".dat")[0]


def is_trace(path: Path) -> bool:
    """A trace file (not a sidecar, the ab record or the bpftrace program)."""
    return any(x in path.name for x in (".txt", ".perf", ".dat")) and not path.name.endswith(".json")


def multi_run_labels() -> dict[str, list[str]]:
    """Manifest labels with an even number >= 4 of files (one run each): {label: files}."""
    import json

    man = json.loads((ROOT / "sample_traces" / "manifest.json").read_text())
    out = {}
    for pair in man["pairs"]:
        for side in ("before", "after"):
            files = pair[side]["files"]
            if len(files) >= 4 and len(files) % 2 == 0 and pair[side]["label"].startswith("real"):
                out[pair[side]["label"]] = files
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--splits", type=int, default=1000, help="random A/A splits per real trace (>= 200; with 200 "
                    "the binomial standard error of a 5%% rate is 1.5 points, with 1000 it is 0.7)")
    ap.add_argument("--power-splits", type=int, default=200, help="random halves for the power")
    ap.add_argument("--draws", type=int, default=200, help="null synthetic draws per design")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates per report (CIs only)")
    args = ap.parse_args()
    traces = sorted(p for p in (ROOT / "sample_traces").glob("real-*") if is_trace(p))
    groups = multi_run_labels()
    ok = True
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        for p in traces:
            api.ingest([str(p)], store=store, label=label_of(p))
        for lab, files in groups.items():  # the same files again, as the runs of one label (ingest order)
            for f in files:
                api.ingest([str(ROOT / "sample_traces" / f)], store=store, label=lab)
        lines = []
        with api.connect(store) as src:
            for lab in groups:
                con = cal.copy_views(src, [lab])
                r = cal.aa_run_splits(con, lab, n_boot=args.n_boot)
                con.close()
                lines.append(r.line())
                print(lines[-1], flush=True)
                ok &= r.ci()[0] <= args.alpha
            for p in traces:
                con = cal.copy_views(src, [label_of(p)])
                r = cal.aa_false_positives(con, label_of(p), args.splits, n_boot=args.n_boot)
                con.close()
                lines.append(r.line())
                print(lines[-1], flush=True)
                ok &= r.ci()[0] <= args.alpha
            if all((ROOT / "sample_traces" / f).exists() for f in PAIR):
                r = cal.power(src, label_of(ROOT / "sample_traces" / PAIR[0]), label_of(ROOT / "sample_traces" / PAIR[1]),
                              args.power_splits, n_boot=args.n_boot)
                lines.append("power, " + r.line())
                print(lines[-1], flush=True)
                ok &= r.rate == 1.0
    for n_runs, walks, sd, check in ((6, 30, 0.2, True), (1, 200, 0.0, True), (1, 200, 0.2, False)):
        r = cal.null_false_positives(n_runs, walks, args.draws, n_boot=args.n_boot, run_sd=sd)
        note = "" if check else "  (not a null for one run per side: two boots differ; shown, not checked)"
        lines.append(r.line() + note)
        print(lines[-1], flush=True)
        if check:
            ok &= r.ci()[0] <= args.alpha
    print(f"alpha {args.alpha:g}; {time.perf_counter() - t0:.0f} s; {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
