"""Which runs of a report lost data, how much, and the evidence (issue #16).

Reads the views ``run_coverage`` / ``cpu_coverage`` (queries/02_coverage.sql) for the runs of one side,
and counts the side's walks that the SQL rule ``_walk_inconsistent`` rejects (a walk whose span disagrees with
its printed duration was glued over a gap: the gap it shows is reported). No rule is computed here.
"""
from __future__ import annotations

import duckdb

from ..ingest.run import coverage_text


def side_coverage(con, run_ids: list[str], t_walks: str) -> list[dict]:
    """One dict per run of the side that lost data (or whose walks show a gap); [] when none did."""
    if not run_ids:
        return []
    try:
        cur = con.execute("SELECT * FROM run_coverage WHERE list_contains(?, run_id) ORDER BY run_id", [run_ids])
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
        cur = con.execute("SELECT * FROM cpu_coverage WHERE list_contains(?, run_id) ORDER BY run_id, cpu",
                          [run_ids])
        cn = [d[0] for d in cur.description]
        cpus = [dict(zip(cn, r)) for r in cur.fetchall()]
        glued = con.execute(f"""
            SELECT w.run_id, count(*), min(w.start_ns), arg_min(w.end_ns - w.duration_ns, w.start_ns)
            FROM {t_walks} w LEFT JOIN runs r ON r.run_id = w.run_id
            WHERE list_contains(?, w.run_id)
              AND _walk_inconsistent(w.evidence, w.start_ns, w.end_ns, w.duration_ns, w.max_hold_ns,
                                     r.ts_resolution_ns)
            GROUP BY 1""", [run_ids]).fetchall()
        # a CPU whose record starts after the run's first event, inside incomplete walks: what the text shows
        # of a buffer that may have overwritten (the CPU-change rule of 18_coverage_gaps.sql left them out)
        straddle = con.execute(f"""
            SELECT w.run_id, c.cpu, c.first_ts_ns, count(*)
            FROM {t_walks} w JOIN cpu_coverage c ON c.run_id = w.run_id JOIN run_coverage rc ON rc.run_id = w.run_id
            WHERE list_contains(?, w.run_id) AND NOT w.complete AND w.start_ns < c.first_ts_ns
              AND w.end_ns > c.first_ts_ns AND c.first_ts_ns > rc.first_ts_ns AND rc.loss_evidence IS NULL
            GROUP BY ALL ORDER BY 1, 2""", [run_ids]).fetchall()
    except duckdb.Error:  # a store or test without the coverage views
        return []
    g = {r: (int(n), s, e) for r, n, s, e in glued}
    st: dict[str, list] = {}
    for r, cpu, first, n in straddle:
        st.setdefault(r, []).append({"cpu": cpu, "first_ts_ns": first, "incomplete_walks": int(n)})
    out = []
    for r in rows:
        r["cpus"] = [c for c in cpus if c["run_id"] == r["run_id"]]
        n, s, e = g.get(r["run_id"], (0, None, None))
        r["inconsistent_walks"] = n
        # the first glued walk: its entry and the entry of the walk its exit belongs to bound a lost stretch
        r["inferred_gap_ns"] = [s, e] if n else None
        r["late_buffers"] = st.get(r["run_id"], [])
        if r.get("loss_evidence") or n or r.get("lost_markers") or r["late_buffers"]:
            out.append(r)
    return out


def coverage_warning(name: str, c: dict) -> str:
    """The report's sentence for one run of ``side_coverage``."""
    s = f"{name}: run {c['run_id']} lost data: {coverage_text(c)}"
    if c.get("inconsistent_walks"):
        a, b = c["inferred_gap_ns"]
        s += (f"; {c['inconsistent_walks']} walks contradict their own printed durations (entry and exit of "
              f"different walks glued over a loss): inferred gap between {a / 1e9:.6f} and {b / 1e9:.6f} s; "
              f"left out as incomplete")
    for b in c.get("late_buffers", []):
        s += (f"; inferred: CPU {b['cpu']}'s record starts at {b['first_ts_ns'] / 1e9:.6f} s, inside "
              f"{b['incomplete_walks']} incomplete walks (no per-CPU stats: its buffer may have overwritten "
              f"what came before)")
    return s
