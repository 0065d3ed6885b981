"""Number formatting and the rows every renderer prints (ASCII only, units in every cell)."""
from __future__ import annotations

import math

SEED_ROWS = [  # (JSON key, column name of the original patch)
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


def value(v, unit: str) -> str:
    return ns(v) if unit == "ns" else count(v)


def ms(v) -> str:
    """Time_ms as in the original table: 3 decimals (1 us), more when below 1 us resolution."""
    if v is None:
        return NA
    if v != 0 and abs(v) < 0.001:
        return f"{v:.6f}"
    return f"{v:.3f}"


def seed_cell(key: str, v) -> str:
    return ms(v) if key == "time_ms" else count(v)


def ratio(r) -> str:
    if r is None:
        return NA
    if r == 0:
        return "0"
    return f"{r:.3g}" if 1e-4 <= abs(r) < 1e5 else f"{r:.2e}"


def ci(c) -> str:
    if not c:
        return NA
    return f"[{ratio(c[0])}, {ratio(c[1])}]"


def pval(p) -> str:
    return NA if p is None else f"p={p:.3f}"


#: the compared metrics, in display order (lock waits only when both sides have some)
CMP_ROWS = [("walk_duration_ns", "walk duration"), ("hold_ns", "lock hold"), ("lock_wait_ns", "anon_vma wait")]


def cmp_rows(comparison: dict) -> list[tuple[str, str]]:
    return [(k, t) for k, t in CMP_ROWS if isinstance(comparison.get(k), dict)]


def padj(c: dict, key: str = "p_value") -> str:
    """The adjusted p beside the raw one: 'p=0.012 p_holm=0.036'."""
    p, q = c.get(key), c.get(key + "_adjusted")
    if p is None:
        return NA
    return f"p={p:.3f}" + (f" p_holm={q:.3f}" if q is not None else "")


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


def verdict_line(c: dict) -> str:
    """benchstat-like: '-99.79% (p=0.000 p_holm=0.000 n=50+50)' or '~ (p=0.412 p_holm=0.824 n=5+5)'."""
    if c.get("p_value") is None:
        return f"{NA} ({n_pair(c)})"
    return f"{c['verdict']} ({padj(c)} {n_pair(c)})"


def unit_name(c: dict) -> str:
    return {"run": "runs", "walk": "walks", "window": "windows", "wait": "waits"}.get(c.get("unit"), c.get("unit", ""))


def side_title(side: dict) -> str:
    r, w = side["runs"], side["walks"]
    return f"{side['label']} ({r} run{'s' if r != 1 else ''}, {w} walk{'s' if w != 1 else ''})"


def evidence_text(side: dict) -> str:
    return ", ".join(side["evidence"]) or "no walks"


def seed_footnotes(model: dict) -> list[str]:
    """One line per distinct note on the original-table cells ('Time_ms: longest lock-window hold')."""
    out = []
    names = dict(SEED_ROWS)
    for key, name in SEED_ROWS:
        nb = model["before"]["seed_notes"].get(key)
        na = model["after"]["seed_notes"].get(key)
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
        rng = f"[{_short(a)}, {_short(2 * a)})"
        bar = "@" * int(round(width * c / top)) if c else ""
        out.append((rng, int(c), bar))
    return out


def _short(x: float) -> str:
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
            rows.append([side, "(none)", "", "", "0", "", ""])
        for x in w["waiters"]:
            rows.append([side, f"{x.get('comm')}/{x.get('pid')}", x.get("caller") or "", x.get("flags") or "",
                         x["count"], ns(x["total_ns"]), ns(x["max_ns"])])
    return rows
