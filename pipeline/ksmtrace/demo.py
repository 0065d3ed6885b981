"""The demo: the whole job (ingest, SQL, reports) on the bundled sample traces (``ksmtrace demo``)."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from . import api
from .errors import KsmtraceError
from .output import render
from .safe_text import terminal


def sample_dir() -> Path:
    here = Path(__file__).resolve().parent
    for cand in (here / "sample_traces", here.parent.parent / "sample_traces"):
        if (cand / "manifest.json").exists():
            return cand
    raise KsmtraceError("cannot find the bundled sample traces (sample_traces/manifest.json); reinstall ksmtrace")


def manifest() -> list[dict]:
    return json.loads((sample_dir() / "manifest.json").read_text())["pairs"]


def run_demo(out: Path, store: Path | None = None) -> None:
    """Ingest the bundled before/after sample traces into ``store`` (a temporary one when None), print the
    reports and write them (HTML, LKML) into ``out``."""
    tmp = None
    if store is None:
        tmp = Path(tempfile.mkdtemp(prefix="ksmtrace-demo-"))
        store = tmp / "store"
    try:
        sd = sample_dir()
        pairs = manifest()
        for pair in pairs:
            for side in ("before", "after"):
                spec = pair[side]
                label = spec["label"]
                for f in spec["files"]:
                    res = api.ingest([str(sd / f)], store, label=label, fmt=spec.get("format", "auto"))[0]
                    print(terminal(res.summary()))
        print()
        for pair in pairs:
            if pair.get("headline"):
                _headline(pair, store)
        df = api.sql("SELECT label, format, count(*) AS runs, sum(n_events) AS events, sum(n_malformed) AS malformed,"
                     " sum(n_lost_events) AS lost FROM runs GROUP BY ALL ORDER BY label", store, read_only=True)
        render(df, "table", title="runs in the demo store")
        ev = api.sql("SELECT label, event, n FROM (SELECT label, event, count(*) AS n FROM events GROUP BY ALL) "
                     "QUALIFY row_number() OVER (PARTITION BY label ORDER BY n DESC, event) <= 4 "
                     "ORDER BY label, n DESC", store, read_only=True)
        render(ev, "table", title="most frequent events per label")
        wk = api.sql("SELECT label, evidence, page_type, count(*) AS walks, count(*) FILTER (WHERE complete) AS complete,"
                     " sum(n_windows) AS windows, max(max_hold_ns) AS max_hold_ns FROM walks GROUP BY ALL"
                     " ORDER BY label, evidence, page_type", store, read_only=True)
        render(wk, "table", title="walks reconstructed by the SQL views (ksmtrace sql \"SELECT * FROM walks\")")
        _reports(pairs, store, out)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def headline_table(model: dict) -> str:
    """The changelog's four-column table (Time_ms, Nr_iteration_total, Skip_addr_out_of_range,
    Skip_mm_mismatch), before and after, from a report model."""
    from .report import fmt

    b, a = model["before"], model["after"]
    lines = [f"{'':<24}{'before':>14}{'after':>14}{'after/before':>14}"]
    for key, name in fmt.CHANGELOG_ROWS:
        r = model["comparison"]["changelog_ratio"].get(key)
        lines.append(f"{name:<24}{fmt.changelog_cell(key, b['changelog_table'].get(key)):>14}"
                     f"{fmt.changelog_cell(key, a['changelog_table'].get(key)):>14}{(fmt.ratio(r) if r is not None else ''):>14}")
    lines += [f"  * {n}" for n in fmt.changelog_footnotes(model)]
    return "\n".join(lines)


def _headline(pair: dict, store: Path) -> None:
    from .report import build_report

    with api.connect(store) as con:
        rep = build_report(con, pair["before"]["label"], pair["after"]["label"], pair.get("page_type", "ksm"))
    b, a = rep.model["before"], rep.model["after"]
    print(f"=== {pair['title']} ===")
    print(f"before = {b['label']} ({b['runs']} runs), after = {a['label']} ({a['runs']} runs); "
          f"the changelog's table, per lock window, every cell measured:\n")
    print(headline_table(rep.model))
    print()


def _reports(pairs: list[dict], store: Path, out: Path) -> None:
    from .report import build_report, render, write

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with api.connect(store, read_only=True) as con:
        for pair in pairs:
            b, a = pair["before"]["label"], pair["after"]["label"]
            print(f"\n=== {pair['title']} ===\n")
            rep = build_report(con, b, a, pair.get("page_type", "ksm"))
            print(render(rep, "text"))
            written += write(rep, "html", out=out / f"{pair['name']}.html")
            written += write(rep, "lkml", out=out / f"{pair['name']}.lkml.txt")
    print("\nReports written:")
    for p in written:
        if p.suffix in (".html", ".txt"):
            print(f"  {terminal(p.resolve())}")
    print("Open the .html files in a browser; the .lkml.txt files are ready to paste into a changelog.")

