"""Before/after reports over the walk views (``ksmtrace report``).

    from ksmtrace import api
    from ksmtrace.report import build_report, render
    with api.connect("ksmtrace-data") as con:
        rep = build_report(con, "before", "after", page_type="ksm")
    print(render(rep, "lkml"))

``build_report`` returns a :class:`~ksmtrace.report.model.Report` whose ``model`` is the JSON
document every renderer prints.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from .model import PAGE_TYPES, Report, ReportError, UnknownLabel, build_report

FORMATS = ("text", "lkml", "markdown", "html", "json")

__all__ = ["FORMATS", "PAGE_TYPES", "Report", "ReportError", "UnknownLabel", "build_report", "render", "write"]


def render(report: Report, fmt: str = "text", plots: dict | None = None, images: dict | None = None,
           color: bool = False, width: int = 120) -> str:
    """The report as text in one of FORMATS. ``plots`` (html) / ``images`` (markdown links) are optional."""
    if fmt == "text":
        from .render_text import render as r

        return r(report.model, report.samples, color=color, width=width)
    if fmt == "lkml":
        from .render_lkml import render as r

        return r(report.model)
    if fmt == "markdown":
        from .render_markdown import render as r

        return r(report.model, images=images)
    if fmt == "html":
        from .plots import make_plots
        from .render_html import render as r

        return r(report.model, plots if plots is not None else make_plots(report))
    if fmt == "json":
        return report.to_json()
    raise ReportError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")


def _write_text(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (a full disk leaves the old file, or none, never half of one);
    an OSError names ``path`` (a failed write(2) names no file by itself). A path that is not a regular
    file (``/dev/stdout``, a FIFO, a symlink), or beside which no file can be made, is written in place."""
    tmp = path.with_name(f".ksmtrace-{os.getpid()}.tmp")
    f = None
    if not (path.is_symlink() or (path.exists() and not path.is_file())):
        with contextlib.suppress(OSError):
            f = open(tmp, "x")
    if f is None:
        try:
            path.write_text(text)
        except OSError as e:
            e.filename = e.filename or str(path)
            raise
        return
    try:
        with f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if e.filename is None or Path(e.filename) == tmp:  # name the file asked for, not the temporary one
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise


def write(report: Report, fmt: str = "text", out: str | os.PathLike | None = None,
          plots_dir: str | os.PathLike | None = None, benchstat: str | os.PathLike | None = None,
          stdout=None) -> list[Path]:
    """Render and write the report (stdout when ``out`` is None); returns the files written.

    Figures are made for html (embedded) and written as PNG files into ``plots_dir``, or, when
    only ``out`` is given and the format is text, lkml or markdown, beside ``out`` as
    ``<out stem>-<figure>.png``.
    """
    if fmt not in FORMATS:
        raise ReportError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")
    stdout = stdout or sys.stdout
    written: list[Path] = []
    out_p = Path(out) if out is not None else None
    if out_p is not None and out_p.is_dir():
        raise ReportError(f"--out {out_p}: is a directory; give a file name")
    files_dir, prefix = None, ""
    if plots_dir is not None:
        files_dir = Path(plots_dir)
        if files_dir.exists() and not files_dir.is_dir():
            raise ReportError(f"--plots {files_dir}: not a directory")
    elif out_p is not None and fmt in ("text", "lkml", "markdown"):
        files_dir, prefix = out_p.parent, out_p.stem + "-"
    plots = None
    images = None
    if fmt == "html" or files_dir is not None:
        from .plots import make_plots, write_plots

        plots = make_plots(report)
        if files_dir is not None:
            paths = write_plots(plots, files_dir, prefix)
            written += paths
            base = out_p.parent if out_p is not None else Path(".")
            images = {p.stem: os.path.relpath(p, base) for p in paths}
            report.model["figures"] = [str(p) for p in paths]
    if benchstat is not None:
        from .benchstat import render as bench

        _write_text(Path(benchstat), bench(report))
        written.append(Path(benchstat))
    if out_p is None and fmt == "text" and hasattr(stdout, "isatty") and stdout.isatty():
        from rich.console import Console

        from .render_text import print_report

        print_report(report.model, report.samples, Console(file=stdout, highlight=False))
        return written
    width = 120
    if out_p is None and os.environ.get("COLUMNS", "").isdigit():
        width = max(80, int(os.environ["COLUMNS"]))
    text = render(report, fmt, plots=plots, images=images, width=width)
    if out_p is None:
        stdout.write(text)
    else:
        out_p.parent.mkdir(parents=True, exist_ok=True)
        _write_text(out_p, text)
        written.insert(0, out_p)
    return written
