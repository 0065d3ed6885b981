"""Number formatting and the rows every renderer prints (ASCII only, units in every cell)."""
from __future__ import annotations

import math

CHANGELOG_ROWS = [  # (JSON key, column name of the original patch)
    ("time_ms", "Time_ms"),
    ("nr_iteration_total", "Nr_iteration_total"),
    ("skip_addr_out_of_range", "Skip_addr_out_of_range"),
    ("skip_mm_mismatch", "Skip_mm_mismatch"),
]
DIST_ROWS = [  # (JSON key, title, unit)
    ("walk_duration_ns", "walk duration", "ns"),
    ("hold_ns", "lock hold", "ns"),
    ("window_iterations", "iterations/window", "count"),
]
DIST_COLS = [("count", "count"), ("min", "min"), ("p50", "p50"), ("p90", "p90"), ("p99", "p99"),
             ("p999", "p99.9"), ("max", "max"), ("mean", "mean")]
NA = "n/a"


def ns(v, digits: int = 3) -> str:
    """Scale a duration in ns to ns/us/ms/s, e.g. 504281000 -> '504.3ms'."""
    if v is None:
        return NA
    v = float(v)
    a = abs(v)
    for unit, div in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if a >= div:
            return _sig(v / div, digits) + unit
    return _sig(v, digits) + "ns"


def _sig(x: float, digits: int) -> str:
    """At least `digits` significant digits, no exponent, trailing zeros kept off for integers."""
    if x == 0:
        return "0"
    mag = int(math.floor(math.log10(abs(x))))
    dec = max(0, digits - 1 - mag)
    return f"{x:.{dec}f}"


def count(v) -> str:
    if v is None:
        return NA
    if isinstance(v, float) and not v.is_integer():
        return _sig(v, 3) if abs(v) < 1000 else f"{v:.0f}"
    return str(int(v))


def value(v, unit: str, resolution_ns: int | None = None) -> str:
    """A distribution cell; a duration below the timestamp resolution reads '<1us' (never negative)."""
    if unit == "ns" and v is not None and resolution_ns and resolution_ns > 1 and v < resolution_ns:
        return "<" + short_ns(resolution_ns)
    return ns(v) if unit == "ns" else count(v)


#: distribution rows whose values are durations measured with the timestamps
_TIMED = {"walk_duration_ns": "walks_below", "hold_ns": "holds_below"}


def resolution_of(side: dict, key: str) -> int | None:
    if key not in _TIMED:
        return None
    return (side.get("resolution") or {}).get("ts_resolution_ns")


def dist_notes(model: dict) -> list[str]:
    """What the distribution cells leave to the reader: values below the resolution, proxies."""
    out = []
    for side in ("before", "after"):
        r = model[side].get("resolution") or {}
        res = r.get("ts_resolution_ns")
        for key, what, n_key in (("hold_ns", "lock holds", "holds_below"), ("walk_duration_ns", "walk durations",
                                                                           "walks_below")):
            k, n = r.get(n_key, 0), model[side][key]["count"]
            if k and res:
                out.append(f"{side}: {k} of {n} {what} are below the {short_ns(res)} timestamp resolution "
                           f"(read '<{short_ns(res)}'; never negative: a hold computed below 0 is 0)")
        z = r.get("walks_zero", 0)
        if z and not (res and res > 1):
            out.append(f"{side}: {z} walks have duration 0 (a single event: the duration is a lower bound)")
    for key, title, _ in DIST_ROWS:
        empty = [s for s in ("before", "after") if not model[s][key]["count"]]
        if empty:
            why = {"window_iterations": model[empty[0]]["changelog_notes"].get("nr_iteration_total"),
                   "hold_ns": model[empty[0]]["changelog_notes"].get("time_ms")}.get(key) or "no complete walks"
            if key == "hold_ns" and model[empty[0]]["walk_duration_ns"]["count"]:
                why = "no lock windows in this evidence"
            out.append(f"{title}: n/a for {' and '.join(empty)}: {why}")
    hq = model["before"].get("hold_quantity") or model["after"].get("hold_quantity")
    if hq and "proxy" in hq:
        out.append("lock hold = " + hq)
    return out


def ms(v) -> str:
    """Time_ms as in the original table: 3 decimals (1 us), more when below 1 us resolution."""
    if v is None:
        return NA
    if v != 0 and abs(v) < 0.001:
        return f"{v:.6f}"
    return f"{v:.3f}"


def changelog_cell(key: str, v) -> str:
    return ms(v) if key == "time_ms" else count(v)


def ratio(r) -> str:
    """after/before with 3 significant digits, no exponent below a million."""
    if r is None:
        return NA
    if r == 0:
        return "0"
    if abs(r) < 1e-3:
        return "<0.001"
    if abs(r) >= 1e6:
        return f"{r:.2e}"
    from .stats import sig3

    return sig3(r)


def ci(c) -> str:
    if not c:
        return NA
    return f"[{ratio(c[0])}, {ratio(c[1])}]"


def p3(p: float) -> str:
    """A p-value: '<0.001' below 0.001, else 3 significant digits (at most 3 decimals)."""
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}" if p >= 0.1 else f"{p:.3g}"


def pval(p, bare: bool = False) -> str:
    if p is None:
        return NA
    t = p3(p)
    if bare:
        return t
    return "p" + t if t.startswith("<") else "p=" + t


#: the compared metrics, in display order (lock waits only when both sides have some)
CMP_ROWS = [("walk_duration_ns", "walk duration"), ("hold_ns", "lock hold"), ("lock_wait_ns", "anon_vma wait")]


def cmp_rows(comparison: dict) -> list[tuple[str, str]]:
    return [(k, t) for k, t in CMP_ROWS if isinstance(comparison.get(k), dict)]


def padj(c: dict, key: str = "p_value") -> str:
    """The adjusted p beside the raw one: 'p=0.012 p_holm=0.036'."""
    p, q = c.get(key), c.get(key + "_adjusted")
    if p is None:
        return NA
    return pval(p) + (" " + pval(q).replace("p", "p_holm", 1) if q is not None else "")


def correction_note(model: dict) -> str:
    corr = model["comparison"].get("correction") or {}
    n = corr.get("tests", 0)
    return (f"p_holm: p adjusted with Holm-Bonferroni over the {n} test{'s' if n != 1 else ''} of this report; "
            f"the verdict (~ or a change) uses p_holm")


def is_aa(model: dict) -> bool:
    return model.get("mode") == "aa"


def title(model: dict) -> str:
    """'ksmtrace report' or 'ksmtrace A/A check of LABEL'."""
    return f"ksmtrace A/A check of {model['aa']['label']!r}" if is_aa(model) else "ksmtrace report"


def n_pair(c: dict) -> str:
    return f"n={c['n_before']}+{c['n_after']}"


def scope(model: dict) -> str:
    """How far the verdict reaches, in one sentence."""
    c = model["comparison"]
    if fmt_is_run(c):
        nb, na = model["before"]["runs"], model["after"]["runs"]
        return (f"the run (boot) is the unit ({nb}+{na} runs): the verdict reaches these kernels and this "
                f"workload across boots of this machine")
    return ("one run per side, so the walk is the unit: the verdict reaches this boot and this workload "
            "only; record at least 2 (better 5 or more) runs per side to make it reach across boots")


def fmt_is_run(c: dict) -> bool:
    return c.get("unit") == "run"


def waits_line(side: str, w: dict | None) -> str | None:
    """anon_vma lock waits of one side in one line; unknown stays unknown (never '0 waits')."""
    if not w:
        return None
    allw, unk = w["all_lock_waits"], w.get("unknown_lock", 0)
    if not allw:
        return f"{side}: no lock waits recorded (no lock:contention_begin/end pairs)"
    if unk and not w["count"]:
        return (f"{side}: anon_vma lock waits n/a: {unk} of {allw} lock waits cannot be attributed to a lock "
                f"(contention_begin without a callchain; record lock:contention_begin with -g)")
    head = f"{side}: {w['count']} anon_vma lock waits"
    if w["count"]:
        head += f", total {ns(w['total_ns'])}, max {ns(w['max_ns'])}"
    head += f" ({allw} lock waits in all"
    if unk:
        head += f"; {unk} of unknown lock, so the anon_vma count is a lower bound"
    return head + ")"


def unit_name(c: dict) -> str:
    return {"run": "runs", "walk": "walks", "window": "windows", "wait": "waits"}.get(c.get("unit"), c.get("unit", ""))


def side_title(side: dict) -> str:
    r, w = side["runs"], side["walks"]
    return f"{side['label']} ({r} run{'s' if r != 1 else ''}, {w} walk{'s' if w != 1 else ''})"


def evidence_text(side: dict) -> str:
    return ", ".join(side["evidence"]) or "no walks"


def changelog_footnotes(model: dict) -> list[str]:
    """One line per distinct note on the original-table cells ('Time_ms: longest lock-window hold')."""
    out = []
    names = dict(CHANGELOG_ROWS)
    for key, name in CHANGELOG_ROWS:
        nb = model["before"]["changelog_notes"].get(key)
        na = model["after"]["changelog_notes"].get(key)
        if nb is None and na is None:
            continue
        if nb == na:
            out.append(f"{names[key]}: {nb}")
        else:
            if nb:
                out.append(f"{names[key]} (before): {nb}")
            if na:
                out.append(f"{names[key]} (after): {na}")
    return out


def log2_hist(values, width: int = 40) -> list[tuple[str, int, str]]:
    """bpftrace-style power-of-two buckets of durations in ns: [(range, count, bar)]."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    v = v[v > 0]
    if len(v) == 0:
        return []
    e = np.floor(np.log2(v)).astype(int)
    lo, hi = int(e.min()), int(e.max())
    counts = np.bincount(e - lo, minlength=hi - lo + 1)
    top = counts.max()
    out = []
    for i, c in enumerate(counts):
        a = 2 ** (lo + i)
        rng = f"[{short_ns(a)}, {short_ns(2 * a)})"
        bar = "@" * int(round(width * c / top)) if c else ""
        out.append((rng, int(c), bar))
    return out


def short_ns(x: float) -> str:
    for unit, div in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if x >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.0f}ns"


WAITER_HEADER = ["side", "comm/pid", "caller", "type", "contended", "total wait", "max wait"]


def waiter_rows(model: dict) -> list[list] | None:
    """Rows of the anon_vma lock waiters table (WAITER_HEADER), or None when no side recorded any lock wait."""
    waits = [(s, model[s].get("lock_waits")) for s in ("before", "after")]
    if not any(w and w["all_lock_waits"] for _, w in waits):
        return None
    rows = []
    for side, w in waits:
        if not w:
            continue
        if not w["waiters"]:
            known_none = not w.get("unknown_lock")
            rows.append([side, "(none)" if known_none else "n/a: lock unknown", "", "", "0" if known_none else NA,
                         "", ""])
        for x in w["waiters"]:
            rows.append([side, f"{x.get('comm')}/{x.get('pid')}", x.get("caller") or "", x.get("flags") or "",
                         x["count"], ns(x["total_ns"]), ns(x["max_ns"])])
    return rows
