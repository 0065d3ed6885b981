"""A/A mode (``ksmtrace report --aa LABEL``): one label split in two, compared as before/after.

On identical code the report should say ``~``; if it does not, the verdicts of real comparisons
on this setup deserve suspicion (users.md §3.3, nodejs #28867).

* With several runs, the runs are interleaved in ingest order (``runs.ingested_at``, then
  ``run_id``): runs 1, 3, 5... are group A (before), runs 2, 4, 6... group B (after).
* With a single run, its walks are split instead, alternating in walk order (start time, then
  ``walk_id``, per page type and caller, so that e.g. try_to_migrate / remove_migration_ptes pairs
  land on both sides); windows follow their walk, anon_vma lock waits alternate in start order.
  The report says so: walks of one run are not independent samples, and when such a split still
  reads significant a warning says why a split of one run cannot be trusted.

The split is done by temp views that relabel the rows of ``walks``, ``lock_windows``,
``lock_waits`` and ``runs``; the ordinary report is then built over them.
"""
from __future__ import annotations

import itertools

import duckdb

from .model import VIEWS, Report, ReportError, _build, _columns, require_label

_n = itertools.count()


def group_labels(label: str) -> tuple[str, str]:
    return f"{label} [A]", f"{label} [B]"


def run_order(con, label: str) -> list[str]:
    """The label's run ids in ingest order (runs without a runs row last, by id)."""
    ids: list[str] = []
    rc = _columns(con, "runs") or set()
    if rc:
        order = "ingested_at NULLS LAST, run_id" if "ingested_at" in rc else "run_id"
        ids = [r[0] for r in con.execute(f"SELECT run_id FROM runs WHERE label = ? ORDER BY {order}",
                                         [label]).fetchall()]
    seen = set(ids)
    ids += [r[0] for r in con.execute("SELECT DISTINCT run_id FROM walks WHERE label = ? ORDER BY 1",
                                      [label]).fetchall() if r[0] not in seen]
    return ids


def build_aa_report(con, label: str, page_type: str, alpha: float, seed: int, n_boot: int) -> Report:
    require_label(con, "--aa", label)
    for v in ("walks", "lock_windows"):
        if _columns(con, v) is None:
            raise ReportError(f"the store has no {v} view (queries/*.sql): cannot reconstruct walks")
    runs = run_order(con, label)
    if not runs:
        raise ReportError(f"--aa {label!r}: the label has no runs to split")
    a, b = group_labels(label)
    k = next(_n)
    names = {v: f"_ksmtrace_aa_{v}_{k}" for v in VIEWS}
    t_grp, t_map = f"_ksmtrace_aa_groups_{k}", f"_ksmtrace_aa_map_{k}"
    split = "runs" if len(runs) >= 2 else "walks"
    try:
        try:
            _views(con, label, runs, split, names, t_grp, t_map, a, b)
            rep = _build(con, a, b, page_type, alpha, seed, n_boot, src=names)
        except duckdb.Error as e:
            raise ReportError("evaluating the walk views failed: " + str(e).splitlines()[0]) from None
    finally:
        for v in names.values():
            con.execute(f"DROP VIEW IF EXISTS {v}")
        for t in (t_map, t_grp):
            con.execute(f"DROP TABLE IF EXISTS {t}")
    m = rep.model
    groups = {"before": m["before"]["run_ids"], "after": m["after"]["run_ids"]}
    if split == "runs":
        note = (f"A/A check of {label!r}: its {len(runs)} runs interleaved in ingest order, runs 1, 3, 5... as "
                f"before ({a}), runs 2, 4, 6... as after ({b}); identical code should read ~")
    else:
        note = (f"A/A check of {label!r}: a single run, so its walks were split, alternating in walk order "
                f"(per caller, odd walks before = {a}, even walks after = {b}; anon_vma lock waits alternate too); walks of one run "
                f"are not independent, so this checks little more than the walk-level statistics")
    if split == "walks":
        sig = [k for k, c in m["comparison"].items() if isinstance(c, dict) and c.get("significant")]
        if sig:
            m["warnings"].insert(0, (
                f"A/A split of one run reads significant for {', '.join(sig)}: the walks (and windows) of one run "
                f"are not independent samples, so pooled tests on them are over-confident, and consecutive walks "
                f"may differ systematically (alternating kinds of walk); record several runs and run --aa again"))
    m["mode"] = "aa"
    m["aa"] = {"label": label, "split": split, "runs": len(runs), "groups": groups, "note": note}
    return rep


def _views(con, label, runs, split, names, t_grp, t_map, a, b) -> None:
    con.execute(f"CREATE TEMP TABLE {t_grp} (orig VARCHAR, g INTEGER, label VARCHAR)")
    con.execute(f"INSERT INTO {t_grp} VALUES (?, 0, ?), (?, 1, ?)", [label, a, label, b])
    have = {v: _columns(con, v) is not None for v in VIEWS}
    if split == "runs":
        con.execute(f"CREATE TEMP TABLE {t_map} (run_id VARCHAR, orig VARCHAR, label VARCHAR)")
        con.executemany(f"INSERT INTO {t_map} VALUES (?, ?, ?)",
                        [[r, label, a if i % 2 == 0 else b] for i, r in enumerate(runs)])
        for v in VIEWS:
            if have[v]:
                con.execute(f"CREATE TEMP VIEW {names[v]} AS SELECT x.* EXCLUDE (label), m.label FROM {v} x "
                            f"JOIN {t_map} m ON x.run_id = m.run_id AND x.label = m.orig")
        return
    # one run: alternate the walks (per page type and caller, in start order); windows follow their walk
    caller = "caller" if "caller" in (_columns(con, "walks") or set()) else "NULL"
    con.execute(f"""
        CREATE TEMP TABLE {t_map} AS
        SELECT w.run_id, w.walk_id, g.orig, g.label
        FROM (SELECT run_id, walk_id, label,
                     (row_number() OVER (PARTITION BY page_type, {caller}
                                         ORDER BY coalesce(start_ns, end_ns) NULLS LAST, walk_id) - 1) % 2 AS g
              FROM walks WHERE label = ?) w
        JOIN {t_grp} g ON g.orig = w.label AND g.g = w.g""", [label])
    for v in ("walks", "lock_windows"):
        con.execute(f"CREATE TEMP VIEW {names[v]} AS SELECT x.* EXCLUDE (label), m.label FROM {v} x "
                    f"JOIN {t_map} m ON x.run_id = m.run_id AND x.walk_id = m.walk_id AND x.label = m.orig")
    if have["lock_waits"]:
        order = "start_ns NULLS LAST, end_ns" if {"start_ns", "end_ns"} <= _columns(con, "lock_waits") else "wait_ns"
        con.execute(f"""
            CREATE TEMP VIEW {names['lock_waits']} AS
            SELECT x.* EXCLUDE (label, _aa_g), g.label
            FROM (SELECT *, (row_number() OVER (PARTITION BY coalesce(anon_vma_lock, false)
                                                 ORDER BY {order}) - 1) % 2 AS _aa_g
                  FROM lock_waits WHERE label = (SELECT orig FROM {t_grp} LIMIT 1)) x
            JOIN {t_grp} g ON g.g = x._aa_g""")
    if have["runs"]:  # the one run appears on both sides
        con.execute(f"CREATE TEMP VIEW {names['runs']} AS SELECT x.* EXCLUDE (label), g.label FROM runs x "
                    f"JOIN {t_grp} g ON x.label = g.orig")
