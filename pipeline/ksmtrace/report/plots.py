"""Report figures (matplotlib, Agg canvas; pyplot and the global backend are left alone).

``make_plots(report)`` returns ``{name: Plot}`` with PNG bytes; empty figures are skipped.
Large samples are thinned for drawing only (CDFs: 2,000 quantile points; the time plot: at most
20,000 evenly spaced walks); the statistics always use every row.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

COLORS = {"before": "#c0392b", "after": "#2471a3"}
CDF_POINTS = 2000
TIME_POINTS = 20000


@dataclass
class Plot:
    name: str
    title: str
    png: bytes

    def write(self, directory: Path, prefix: str = "") -> Path:
        p = Path(directory) / f"{prefix}{self.name}.png"
        p.write_bytes(self.png)
        return p


def _figure(w=7.0, h=3.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _ns_axis(ax, values: list[np.ndarray], axis: str = "x") -> float:
    """Choose ns/us/ms/s from the largest value; return the divisor and label the axis."""
    top = max((float(np.max(v)) for v in values if len(v)), default=1.0)
    for unit, div in (("s", 1e9), ("ms", 1e6), ("us", 1e3), ("ns", 1.0)):
        if top >= div * 10 or unit == "ns":
            return div, unit
    return 1.0, "ns"


def _plain_log(ax, axis: str = "x") -> None:
    from matplotlib.ticker import FuncFormatter

    f = FuncFormatter(lambda v, _: f"{v:g}")
    (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(f)


def _label(model: dict, side: str) -> str:
    from ..safe_text import terminal

    s = model[side]
    lab = terminal(s["label"]).replace("$", r"\$")  # trace text: no mathtext, no control characters
    return (side if lab == side else f"{side}: {lab}")


def _floor(model, side: str, v: np.ndarray) -> float:
    """Where a log axis draws values it cannot show (0, or below the timestamp resolution)."""
    res = (model[side].get("resolution") or {}).get("ts_resolution_ns")
    if res and res > 1:
        return float(res)
    pos = v[v > 0]
    return float(pos.min()) if len(pos) else 1.0


def _cdf(model, samples, attr: str, title: str, xlabel: str) -> bytes | None:
    """Every value is drawn (n = the table's count): values below the floor are drawn at it, and the
    legend says how many."""
    data = {s: np.asarray(getattr(samples[s], attr)) for s in ("before", "after") if s in samples}
    if not any(len(v) for v in data.values()):
        return None
    fig = _figure()
    ax = fig.add_subplot()
    floors = {s: _floor(model, s, v) for s, v in data.items() if len(v)}
    div, unit = _ns_axis(ax, list(data.values()))
    for side, v in data.items():
        if not len(v):
            continue
        fl = floors[side]
        below = int(np.sum(v < fl))
        note = ""
        if below:
            from .fmt import _short

            note = f"; {below} below {_short(fl)} drawn at {_short(fl)}"
        s = np.sort(np.maximum(v, fl)).astype(np.float64) / div
        n = len(s)
        if n > CDF_POINTS:
            q = np.linspace(0, 1, CDF_POINTS)
            idx = np.clip(np.ceil(q * n).astype(int) - 1, 0, n - 1)
            xs, ys = s[idx], (idx + 1) / n
        else:
            xs, ys = s, np.arange(1, n + 1) / n
        ax.step(xs, ys, where="post", color=COLORS[side], lw=1.8, label=f"{_label(model, side)} (n={n}{note})")
    ax.set_xscale("log")
    _plain_log(ax, "x")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"{xlabel} ({unit}, log scale)")
    ax.set_ylabel("fraction <= x")
    ax.set_title(title, loc="left", fontsize=11)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="lower right", fontsize=9)
    return _png(fig)


def _iter_hist(model, samples) -> bytes | None:
    data = {s: samples[s].window_iterations for s in ("before", "after") if s in samples}
    if not any(len(v) for v in data.values()):
        return None
    fig = _figure()
    ax = fig.add_subplot()
    top = max(int(v.max()) for v in data.values() if len(v))
    bins = np.unique(np.concatenate([[0], np.geomspace(1, max(2, top + 1), 40).astype(int)]))
    for side, v in data.items():
        if len(v):
            ax.hist(np.maximum(v, 0), bins=bins, color=COLORS[side], alpha=0.55, label=f"{_label(model, side)} "
                    f"(n={len(v)})", edgecolor=COLORS[side])
    ax.set_xscale("symlog", linthresh=1)
    _plain_log(ax, "x")
    ax.set_xlabel("iterations in one lock window (symlog scale)")
    ax.set_ylabel("windows")
    ax.set_title("Iterations per lock window", loc="left", fontsize=11)
    ax.grid(True, alpha=0.25)
    ax.legend(fontsize=9)
    return _png(fig)


def _over_time(model, samples) -> bytes | None:
    data = {s: (samples[s].walk_t_s, samples[s].walk_ns) for s in ("before", "after") if s in samples}
    if not any(len(v[1]) for v in data.values()):
        return None
    fig = _figure(7.0, 3.2)
    ax = fig.add_subplot()
    div, unit = _ns_axis(ax, [v[1] for v in data.values()])
    for side, (t, d) in data.items():
        if not len(d):
            continue
        step = max(1, len(d) // TIME_POINTS)
        d = np.maximum(d, _floor(model, side, d))  # a log axis cannot show 0: drawn at the floor
        ax.plot(t[::step], d[::step] / div, ".", ms=3 if len(d) < 5000 else 1.5, color=COLORS[side], alpha=0.6,
                label=f"{_label(model, side)}" + (f" (every {step}th walk)" if step > 1 else ""))
    ax.set_yscale("log")
    _plain_log(ax, "y")
    ax.set_xlabel("trace time since the run's first event (s)")
    ax.set_ylabel(f"walk duration ({unit})")
    ax.set_title("Walk duration over trace time", loc="left", fontsize=11)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=9, markerscale=4)
    return _png(fig)


def make_plots(report) -> dict[str, Plot]:
    m, s = report.model, report.samples
    hold_word = "Lock hold" if "proxy" not in (m["before"].get("hold_quantity") or m["after"].get(
        "hold_quantity") or "") else "Gap between mapping events (proxy for a lock window)"
    specs = [
        ("walk_duration_cdf", "CDF of walk duration (complete walks)",
         lambda: _cdf(m, s, "walk_ns", "CDF of walk duration (complete walks)", "walk duration")),
        ("hold_cdf", f"CDF of {hold_word.lower()} per window",
         lambda: _cdf(m, s, "hold_ns", f"CDF of {hold_word.lower()} per window", "hold")),
        ("window_iterations_hist", "Iterations per lock window", lambda: _iter_hist(m, s)),
        ("walk_duration_time", "Walk duration over trace time", lambda: _over_time(m, s)),
    ]
    out = {}
    for name, title, fn in specs:
        png = fn()
        if png:
            out[name] = Plot(name, title, png)
    return out


def write_plots(plots: dict[str, Plot], directory: Path, prefix: str = "") -> list[Path]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return [p.write(directory, prefix) for p in plots.values()]
