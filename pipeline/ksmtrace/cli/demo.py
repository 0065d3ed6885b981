"""ksmtrace demo: the whole job on the bundled sample traces."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import typer

from .. import api
from ..errors import KsmtraceError
from ..output import render
from ..safe_text import terminal


def sample_dir() -> Path:
    here = Path(__file__).resolve().parent.parent
    for cand in (here / "sample_traces", here.parent.parent / "sample_traces"):
        if (cand / "manifest.json").exists():
            return cand
    raise KsmtraceError("cannot find the bundled sample traces (sample_traces/manifest.json); reinstall ksmtrace")


def manifest() -> list[dict]:
    return json.loads((sample_dir() / "manifest.json").read_text())["pairs"]


def demo(
    out: Path = typer.Option(Path("ksmtrace-demo"), "--out", help="Folder for the reports and plots."),
    store: Optional[Path] = typer.Option(None, "--store", help="Keep the demo store here instead of a temporary folder."),
) -> None:
    """Ingest the bundled before/after sample traces, print the report, write the HTML."""
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


def _reports(pairs: list[dict], store: Path, out: Path) -> None:
    from ..report import build_report, render, write

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


def register(app: typer.Typer) -> None:
    app.command()(demo)
