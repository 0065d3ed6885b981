"""Plain ASCII, at most 76 columns: ready to paste into a commit message or a reply on LKML."""
from __future__ import annotations

import textwrap

from . import fmt

WIDTH = 76


def _wrap(text: str, indent: str = "", first: str | None = None) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=first if first is not None else indent,
                         subsequent_indent=indent, break_long_words=True, break_on_hyphens=False) or [""]


def _ascii(s: str) -> str:
    return s.encode("ascii", "replace").decode("ascii")


def render(model: dict) -> str:
    b, a, cmp_ = model["before"], model["after"], model["comparison"]
    L: list[str] = []
    head = (f"rmap_walk_ksm() walks, page type {model['page_type']}: before = {fmt.side_title(b)}, "
            f"after = {fmt.side_title(a)}.")
    if fmt.is_aa(model):
        L += _wrap(model["aa"]["note"] + ".")
    L += _wrap(head)
    ev_b, ev_a = fmt.evidence_text(b), fmt.evidence_text(a)
    L += _wrap(f"Evidence: {ev_b}." if ev_b == ev_a else f"Evidence: before {ev_b}; after {ev_a}.")
    L.append("")

    # the original table
    L.append(f"{'':<24}{'before':>14}{'after':>14}{'after/before':>14}")
    for key, name in fmt.SEED_ROWS:
        bv, av = b["seed"].get(key), a["seed"].get(key)
        r = cmp_["seed_ratio"].get(key)
        L.append(f"{name:<24}{fmt.seed_cell(key, bv):>14}{fmt.seed_cell(key, av):>14}"
                 f"{(fmt.ratio(r) if r is not None else ''):>14}")
    L.append("")
    for note in fmt.seed_footnotes(model):
        L += _wrap(note, indent="  ", first="* ")
    L.append("")

    # distributions
    L.append(f"{'':<18}{'':<7}{'count':>9}{'p50':>10}{'p99':>10}{'p99.9':>10}{'max':>10}")
    for key, title, unit in fmt.DIST_ROWS:
        for i, (side_name, side) in enumerate((("before", b), ("after", a))):
            d = side[key]
            if d["count"] == 0 and b[key]["count"] == 0 and a[key]["count"] == 0:
                if i == 0:
                    L.append(f"{title:<18}n/a")
                continue
            L.append(f"{(title if i == 0 else ''):<18}{side_name:<7}{fmt.count(d['count']):>9}"
                     f"{fmt.value(d['p50'], unit):>10}{fmt.value(d['p99'], unit):>10}"
                     f"{fmt.value(d['p999'], unit):>10}{fmt.value(d['max'], unit):>10}")
    hq = b.get("hold_quantity") or a.get("hold_quantity")
    if hq and "proxy" in hq:
        L += _wrap("lock hold = gaps between mapping events (perf callchains), a proxy for a window.")
    L.append("")

    # waits
    wb, wa = b.get("lock_waits"), a.get("lock_waits")
    if (wb and wb["count"]) or (wa and wa["count"]):
        L.append("anon_vma lock waits (lock:contention_*):")
        for side_name, w in (("before", wb), ("after", wa)):
            if not w:
                continue
            L.append(f"  {side_name:<7}{w['count']:>6} waits, total {fmt.ns(w['total_ns'])}, "
                     f"max {fmt.ns(w['max_ns'])}")
            for x in w["waiters"][:3]:
                who = f"{x.get('comm')}/{x.get('pid')} {x.get('flags') or ''} {x.get('caller') or ''}".strip()
                L.append(_ascii(f"    {who[:40]:<40} {x['count']:>5} x, max {fmt.ns(x['max_ns'])}"))
        L.append("")

    # statistics
    unit = cmp_.get("unit")
    L += _wrap("Mann-Whitney U, alpha " + f"{model['alpha']:g}" + ", bootstrap 95% CI of after/before"
               + (" (unit: runs, per-run medians and p99s):" if unit == "run" else " (unit: walks/windows):"))
    for key, title in fmt.cmp_rows(cmp_):
        c = cmp_[key]
        if c.get("median_ratio") is None and c.get("p_value") is None:
            L.append(f"  {title + ':':<15}n/a")
            continue
        L.append(f"  {title + ':':<15}{fmt.verdict_line(c)}")
        L.append(f"  {'':<15}median x{fmt.ratio(c['median_ratio'])} {fmt.ci(c['median_ratio_ci'])}")
        p99 = f"  {'':<15}p99    x{fmt.ratio(c['p99_ratio'])} {fmt.ci(c['p99_ratio_ci'])}"
        if c.get("p99_p_value") is not None:
            p99 += f" ({fmt.padj(c, 'p99_p_value')})"
        L.append(p99)
    L += _wrap(fmt.correction_note(model) + ".", indent="  ", first="* ")
    if model["warnings"]:
        L.append("")
        L.append("Warnings:")
        for w in model["warnings"]:
            L += _wrap(_ascii(w), indent="  ", first="- ")
    L.append("")
    L += _wrap(f"(ksmtrace report {'--aa ' + model['aa']['label'] + ' ' if fmt.is_aa(model) else ''}--format lkml)")
    out = "\n".join(_ascii(x.rstrip()) for x in L) + "\n"
    return out
