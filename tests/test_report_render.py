"""ksmtrace report renderers: lkml, text, markdown, html (incl. headless Chromium), benchstat, plots."""
from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess

import duckdb
import numpy as np
import pytest

from ksmtrace.report import build_report, render, write
from ksmtrace.report import benchstat as bs
import report_fakes as td
from ksmtrace.report.plots import make_plots


def _report(n_runs=1, page_type="ksm", **kw):
    b = td.gen_side("before", n_runs=n_runs, walks_per_run=40, seed=1, skips=True, **kw)
    a = td.gen_side("after", n_runs=n_runs, walks_per_run=40, walk_median_ns=1e6, iterations=3, seed=2, **kw)
    d = td.combine(b, a)
    con = duckdb.connect()
    td.create_tables(con, d["walks"], d["windows"], td.gen_waits("before", b["runs"].run_id[0]), d["runs"])
    return build_report(con, "before", "after", page_type), d


@pytest.fixture(scope="module")
def rep():
    return _report()[0]


@pytest.mark.parametrize("kind", ["one-run", "runs", "empty-side", "tracepoint"])
def test_lkml_is_ascii_76_columns_with_the_original_table(kind):
    if kind == "one-run":
        r, _ = _report()
    elif kind == "runs":
        r, _ = _report(n_runs=3)
    elif kind == "empty-side":
        r, _ = _report(page_type="file")
    else:
        r, _ = _report(evidence="tracepoint")
    text = render(r, "lkml")
    lines = text.splitlines()
    assert all(len(x) <= 76 for x in lines), max(lines, key=len)
    assert text.isascii()
    heads = [x for x in lines if re.match(r"\s+before\s+after\s+after/before$", x)]
    assert len(heads) == 1
    i = lines.index(heads[0])
    assert [x.split()[0] for x in lines[i + 1:i + 5]] == ["Time_ms", "Nr_iteration_total",
                                                         "Skip_addr_out_of_range", "Skip_mm_mismatch"]
    m = r.model
    if kind == "one-run":
        row = lines[i + 1].split()
        assert row[1] == f"{m['before']['changelog_table']['time_ms']:.3f}" and row[2] == f"{m['after']['changelog_table']['time_ms']:.3f}"
        assert "walk duration:" in text and m["comparison"]["walk_duration_ns"]["verdict"] in text
    if kind == "tracepoint":
        assert "longest walk duration (tracepoints)" in text
        assert "needs counters or argument-fetching probes" in text
    if kind == "empty-side":
        assert "n/a" in lines[i + 1]
        assert "no walks of page type file" in text.replace("\n  ", " ")


def test_text_report_has_every_section(rep):
    t = render(rep, "text", width=140)
    for s in ("The original table", "Time_ms", "Distributions", "p99.9", "Before/after", "walk duration",
              "lock hold", "iterations/window", "anon_vma lock waits", "Runs", "Warnings", "|@"):
        assert s in t, s
    assert "\x1b[" not in t  # no escape codes unless asked for
    assert "\x1b[" in render(rep, "text", color=True)


def test_markdown_tables_and_image_links(rep):
    md = render(rep, "markdown", images={"walk_duration_cdf": "r-walk_duration_cdf.png"})
    assert "| `Time_ms` |" in md and "![walk_duration_cdf](r-walk_duration_cdf.png)" in md
    header = [x for x in md.splitlines() if x.startswith("| metric | side |")]
    assert header and header[0].count("|") == 11
    # who waited on the anon_vma lock (report_fakes: a writer behind the walker, the walker's slow window)
    assert "| before | java/1234 | vma\\_prepare | WRITE | 3 |" in md  # trace text escaped
    assert "| before | kcompactd0/33 | rmap\\_walk\\_ksm | READ | 1 |" in md and "| after | (none) |" in md


def test_html_is_self_contained(rep):
    h = render(rep, "html")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", h)
    assert "@import" not in h and "url(" not in h
    imgs = re.findall(r'<img id="plot-([\w]+)"[^>]*src="data:image/png;base64,([^"]+)"', h)
    assert {n for n, _ in imgs} == {"walk_duration_cdf", "hold_cdf", "window_iterations_hist", "walk_duration_time"}
    for _, data in imgs:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert h.count("<table>") >= 5
    assert "<h2>anon_vma lock waits</h2>" in h and "java/1234" in h and "vma_prepare" in h


def test_plots_skip_empty_figures():
    r, _ = _report(evidence="tracepoint")
    assert set(make_plots(r)) == {"walk_duration_cdf", "walk_duration_time"}


def test_benchstat_lines_are_per_run_values():
    r, d = _report(n_runs=3)
    text = bs.render(r)
    lines = text.splitlines()
    res = [x for x in lines if x.startswith("Benchmark")]
    assert len(res) == 6
    pat = re.compile(r"^BenchmarkRmapWalkKSM/page=ksm 1( \d+ [a-z0-9-]+)+$")
    assert all(pat.match(x) for x in res)
    assert lines.index("label: before") < lines.index("label: after")
    w = d["walks"]
    for x, run_id in zip(res, sorted(w[w.label == "before"].run_id.unique()) + sorted(
            w[w.label == "after"].run_id.unique())):
        vals = dict((u, int(v)) for v, u in re.findall(r" (\d+) ([a-z][a-z0-9-]+)", x))
        durs = w[w.run_id == run_id].duration_ns.to_numpy()
        assert vals["walk-p50-ns"] == int(np.percentile(durs, 50, method="inverted_cdf"))
        assert vals["walk-p99-ns"] == int(np.percentile(durs, 99, method="inverted_cdf"))
        assert vals["walk-max-ns"] == durs.max()
        win = d["windows"][d["windows"].run_id == run_id]
        assert vals["hold-max-ns"] == win.hold_ns.max()
        assert vals["window-iters-max"] == win.iterations.max()


def test_write_puts_figures_beside_out(tmp_path, rep):
    out = tmp_path / "r" / "report.md"
    files = write(rep, "markdown", out=out, benchstat=tmp_path / "b.txt")
    names = {p.name for p in files}
    assert {"report.md", "report-walk_duration_cdf.png", "report-hold_cdf.png", "b.txt"} <= names
    md = out.read_text()
    assert "](report-walk_duration_cdf.png)" in md
    files = write(rep, "lkml", out=tmp_path / "x.txt", plots_dir=tmp_path / "figs")
    assert (tmp_path / "figs" / "hold_cdf.png").read_bytes()[:4] == b"\x89PNG"
    buf = io.StringIO()
    assert write(rep, "json", stdout=buf) == []
    assert buf.getvalue().startswith("{")


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


@pytest.mark.slow
def test_html_renders_in_headless_chromium(tmp_path, rep):
    exe = _chromium()
    if not exe:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    html = tmp_path / "report.html"
    write(rep, "html", out=html)
    args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,3000"]
    dom = subprocess.run(args + ["--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=120).stdout
    imgs = re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]{1000,})"', dom)
    assert len(imgs) == 4
    assert dom.count("<table>") >= 5 and "Time_ms" in dom
    shot = tmp_path / "shot.png"
    subprocess.run(args + [f"--screenshot={shot}", html.as_uri()], capture_output=True, timeout=120)
    assert shot.exists()
    from PIL import Image

    im = Image.open(shot).convert("RGB")
    assert im.size == (1200, 3000)
    small = np.asarray(im.resize((300, 750)))
    assert len(np.unique(small.reshape(-1, 3), axis=0)) > 50  # text, tables and coloured plots, not a blank page
    # the plot colours (before red, after blue) are on the page
    px = np.asarray(im).reshape(-1, 3).astype(int)
    assert np.any((px[:, 0] > 150) & (px[:, 1] < 90) & (px[:, 2] < 90))
    assert np.any((px[:, 2] > 130) & (px[:, 0] < 80))


def test_html_tables_stay_on_a_narrow_page(tmp_path, rep):
    """Issue 15 frictions: the runs table does not run off the page and no cell (the verdict column, a long
    source path) spills out of its column, measured in headless Chromium at 800 px."""
    exe = _chromium()
    if not exe:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    import copy

    r = copy.deepcopy(rep)
    for side in ("before", "after"):
        for run in r.model[side]["run_details"]:
            run["source"] = "/srv/traces/" + "very-long-directory-name/" * 8 + "trace-with-a-long-name.txt"
    html = tmp_path / "report.html"
    write(r, "html", out=html)
    probe = ("<script>document.body.setAttribute('data-probe', JSON.stringify({page: document.documentElement"
             ".scrollWidth - window.innerWidth, cells: [...document.querySelectorAll('td, th')]"
             ".filter(c => c.scrollWidth > c.clientWidth + 1).map(c => c.textContent.slice(0, 40))}))</script></body>")
    html.write_text(html.read_text().replace("</body>", probe))
    args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            f"--user-data-dir={tmp_path / 'profile'}", "--window-size=800,2000", "--dump-dom", html.as_uri()]
    dom = subprocess.run(args, capture_output=True, text=True, timeout=120).stdout
    m = re.search(r'data-probe="([^"]*)"', dom)
    assert m, dom[:500]
    import html as html_mod

    probe = json.loads(html_mod.unescape(m.group(1)))
    assert probe["page"] <= 0, probe  # nothing wider than the window
    assert probe["cells"] == [], probe  # no cell's text spills out of its column
