"""Golden outputs of `ksmtrace report` (text, LKML, Markdown, HTML) on the bundled sample pairs.

The reports are rebuilt from the traces in sample_traces/ (ingested into a temporary store) and
compared with tests/golden/<pair>.<format>. Run ids (which carry a random part) and the checkout's
path are replaced by stable names first (the report lays runs out in ingest order, then file name, never
in run-id order, so the names are stable too); HTML is compared without its embedded PNG figures (their
bytes depend on matplotlib and its fonts; the figures have their own tests).

After an intended change of the report, regenerate and review the diff:

    python tests/test_report_golden.py --update-golden      # or KSMTRACE_UPDATE_GOLDEN=1 pytest tests/test_report_golden.py
    git diff tests/golden
"""
from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_traces"
GOLDEN = Path(__file__).resolve().parent / "golden"
FORMATS = {"text": "txt", "lkml": "lkml.txt", "markdown": "md", "html": "html"}
UPDATE = os.environ.get("KSMTRACE_UPDATE_GOLDEN") == "1"


def _pairs() -> list[dict]:
    return json.loads((SAMPLES / "manifest.json").read_text())["pairs"]


def _ingest(store: Path) -> None:
    from ksmtrace import api

    for pair in _pairs():
        for side in ("before", "after"):
            for f in pair[side]["files"]:
                api.ingest([str(SAMPLES / f)], store=str(store), label=pair[side]["label"])


def normalise(model: dict) -> dict[str, str]:
    """Stable names for run ids (they carry a random part) and paths relative to the checkout, in the
    model itself, before any renderer lays out (and wraps) a line."""
    ids: dict[str, str] = {}
    for side in ("before", "after"):
        for r in model[side]["run_ids"]:
            ids.setdefault(r, f"run{len(ids)}")
    for side in ("before", "after"):
        model[side]["run_ids"] = [ids[r] for r in model[side]["run_ids"]]
        for r in model[side]["run_details"]:
            r["run_id"] = ids.get(r["run_id"], r["run_id"])
            if r.get("source"):
                r["source"] = os.path.relpath(r["source"], ROOT) if os.path.isabs(r["source"]) else r["source"]
    return ids


def render_all(store: Path) -> dict[str, str]:
    """{file name: normalised output} for every pair and format (and the A/A check of each real label)."""
    from ksmtrace import api
    from ksmtrace.report import build_report, render

    out = {}
    with api.connect(str(store)) as con:
        jobs = [(p["name"], dict(before=p["before"]["label"], after=p["after"]["label"], page_type=p["page_type"]))
                for p in _pairs()]
        jobs += [(f"aa-{p[s]['label']}", dict(aa=p[s]["label"])) for p in _pairs() if p["name"].startswith("real")
                 for s in ("before", "after")]
        for name, kw in jobs:
            rep = build_report(con, **kw)
            ids = normalise(rep.model)
            for fmt, ext in FORMATS.items():
                text = render(rep, fmt, plots={}) if fmt == "html" else render(rep, fmt, width=110) if fmt == "text" \
                    else render(rep, fmt)
                text = re.sub(r'(<script type="application/json" id="ksmtrace-model">).*?(</script>)', r"\1...\2",
                              text, flags=re.S)
                for orig, short in ids.items():  # run ids quoted in warnings (coverage, incomplete walks)
                    text = text.replace(orig, short)
                out[f"{name}.{ext}"] = text
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    if not (SAMPLES / "manifest.json").exists():
        pytest.skip("no sample_traces/manifest.json")
    st = tmp_path_factory.mktemp("golden") / "store"
    _ingest(st)
    return st


@pytest.fixture(scope="module")
def outputs(store):
    out = render_all(store)
    if UPDATE:
        write(out)
    return out


def write(out: dict[str, str]) -> None:
    GOLDEN.mkdir(exist_ok=True)
    keep = set(_names())
    for name, text in out.items():
        if name in keep:
            (GOLDEN / name).write_text(text)


def _names() -> list[str]:
    names = [f"{p['name']}.{ext}" for p in _pairs() for ext in FORMATS.values()]
    names += [f"aa-{p[s]['label']}.{ext}" for p in _pairs() if p["name"].startswith("real")
              for s in ("before", "after") for ext in FORMATS.values()]
    return names


@pytest.mark.parametrize("name", _names())
def test_golden(outputs, name):
    path = GOLDEN / name
    assert path.exists(), f"{path} missing: python tests/test_report_golden.py --update-golden"
    want = path.read_text()
    got = outputs[name]
    assert got == want, f"{name} differs from its golden file: review, then python tests/test_report_golden.py " \
                        f"--update-golden"


def test_aa_on_the_real_61_pair(outputs):
    """The 6.1 pair's boots of one kernel split in two: the run is the unit (several runs a label), every
    metric reads ~."""
    seen = 0
    for name, text in outputs.items():
        if name.startswith("aa-real-6.1-") and name.endswith(".lkml.txt"):
            seen += 1
            rows = [x for x in text.splitlines() if re.match(r"(walk duration|lock hold|anon_vma wait)\s+\S+ \[", x)]
            assert len(rows) >= 2 and all(x.split()[-1] == "~" for x in rows), (name, rows)
            assert "the run is the unit" in text, name
    assert seen == 2


def test_golden_reports_are_honest(outputs):
    """What the issue asks of every bundled report: no negative value, no unknown shown as 0, p<0.001."""
    for name, text in outputs.items():
        assert not re.search(r"(?<![\w.+\-\[])-\d+(\.\d+)?(ns|us|ms|s)\b", text), name  # no negative duration
        assert "p=0.000" not in text and "+0.00%" not in text, name
        assert not re.search(r"\d\.\d{4,}%", text), name  # no false precision in verdicts
    # an LKML record always names what it is about (a blank grouping cell is its group's name)
    for name, text in outputs.items():
        if name.endswith(".lkml.txt"):
            assert not re.search(r"^\s*: ", text, re.M), name
    # the function_graph pair: holds below the 1 us resolution are said to be so, never negative
    fg = outputs["synth-function-graph.lkml.txt"]
    assert "below the 1us timestamp resolution" in fg
    # the --aa check reads ~ for every metric on each bundled real trace
    for name, text in outputs.items():
        if name.startswith("aa-real") and name.endswith(".lkml.txt"):
            rows = [x for x in text.splitlines() if re.match(r"(walk duration|lock hold|anon_vma wait)\s+\S+ \[", x)]
            assert len(rows) >= 2 and all(x.split()[-1] == "~" for x in rows), (name, rows)
    # and the real unsplit-vs-split pair reads a change for both
    rows = [x for x in outputs["real-6.18-split-vs-unsplit.lkml.txt"].splitlines()
            if re.match(r"(walk duration|lock hold)\s+\S+ \[", x)]
    assert len(rows) == 2 and all(x.split()[-1].startswith("+") for x in rows), rows


def test_no_negative_hold_and_figures_match_their_tables(store):
    """Bundled samples: no window or walk hold below 0 (function_graph holds under the 1 us timestamp
    resolution are 0, SQL-side), and every figure's n is its table's count."""
    from ksmtrace import api
    from ksmtrace.report import build_report
    from ksmtrace.report.plots import make_plots

    with api.connect(str(store)) as con:
        assert con.execute("SELECT count(*) FROM lock_windows WHERE hold_ns < 0").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM walks WHERE max_hold_ns < 0 OR total_hold_ns < 0 "
                           "OR duration_ns < 0").fetchone()[0] == 0
        for p in _pairs():
            rep = build_report(con, p["before"]["label"], p["after"]["label"], page_type=p["page_type"])
            m = rep.model
            for side in ("before", "after"):
                smp = rep.samples[side]
                assert len(smp.hold_ns) == m[side]["hold_ns"]["count"]
                assert len(smp.walk_ns) == m[side]["walk_duration_ns"]["count"]
                assert int((smp.hold_ns < 0).sum()) == 0
            # the CDF legends carry n = the table's count (values a log axis cannot show are drawn at the floor)
            import matplotlib

            matplotlib.use("Agg")
            from ksmtrace.report import plots

            seen = {}
            orig = plots._png

            def grab(fig, seen=seen):
                seen[len(seen)] = [t.get_text() for ax in fig.axes for t in (ax.get_legend().get_texts()
                                                                            if ax.get_legend() else [])]
                return orig(fig)

            plots._png = grab
            try:
                make_plots(rep)
            finally:
                plots._png = orig
            legends = " ".join(" ".join(v) for v in seen.values())
            for side in ("before", "after"):
                for key in ("walk_duration_ns", "hold_ns"):
                    n = m[side][key]["count"]
                    if n:
                        assert f"(n={n}" in legends, (p["name"], side, key, legends)


if __name__ == "__main__":
    if "--update-golden" not in sys.argv:
        sys.exit("usage: python tests/test_report_golden.py --update-golden")
    sys.path.insert(0, str(ROOT / "pipeline"))
    with tempfile.TemporaryDirectory() as tmp:
        st = Path(tmp) / "store"
        _ingest(st)
        outs = render_all(st)
        write(outs)
    print(f"wrote {len(outs)} golden files into {GOLDEN}")
