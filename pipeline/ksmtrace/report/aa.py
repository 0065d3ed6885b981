"""A/A mode (``ksmtrace report --aa LABEL``): one label split in two, compared as before/after.

On identical code the report should say ``~``; if it does not, the verdicts of real comparisons
on this setup deserve suspicion (benchmark suites have reported identical code as significantly
different, e.g. nodejs/node#28867).

* The split is **random** (seeded: :data:`DEFAULT_SPLIT_SEED`, so the report is reproducible) and
  balanced: with several runs the runs are shuffled (ingest order, then the seed) and dealt out
  alternately; with a single run its walks are, per page type and caller (so that e.g.
  try_to_migrate / remove_migration_ptes walks land on both sides); windows follow their walk,
  anon_vma lock waits alternate in start order. A fixed alternation (1, 3, 5... vs 2, 4, 6...) is
  not used: walks of one run often alternate in kind, and a period-2 pattern then reads as a change.
* Under a random split a permutation test on the units holds its level exactly: that is what
  bench/bench_calibration.py checks over many seeds (``split_seed``, API only) on the bundled real
  traces. With one run the unit is the walk, and the check says nothing about boot-to-boot
  variation: the report says so.
* ``split_seed=None`` restores the plain alternation in ingest / walk order.

The split is done by temp views that relabel the rows of ``walks``, ``lock_windows``,
``lock_waits`` and ``runs``; the ordinary report is then built over them.
"""
from __future__ import annotations

import itertools

import duckdb
import numpy as np

from .model import DEFAULT_SPLIT_SEED, VIEWS, Report, ReportError, build_sides, require_label, require_views

_n = itertools.count()


def group_labels(label: str) -> tuple[str, str]:
    return f"{label} [A]", f"{label} [B]"


def run_order(con, label: str) -> list[str]:
    """The label's run ids in ingest order, then file name: never in run-id order, whose random part would
    make the split depend on the ingest."""
    return [r[0] for r in con.execute("SELECT run_id FROM runs WHERE label = ? "
                                      "ORDER BY ingested_at NULLS LAST, source, run_id", [label]).fetchall()]


def build_aa_report(con, label: str, page_type: str, alpha: float, seed: int, n_boot: int,
                    split_seed: int | None = DEFAULT_SPLIT_SEED, first_half: list[str] | None = None) -> Report:
    """``first_half`` (API only, for the calibration's exhaustive run splits): the run ids of group A; the
    label's other runs are group B. Else the runs (or one run's walks) are split by ``split_seed``."""
    require_label(con, "--aa", label)
    require_views(con)
    runs = run_order(con, label)
    if not runs:
        raise ReportError(f"--aa {label!r}: the label has no runs to split")
    a, b = group_labels(label)
    k = next(_n)
    names = {v: f"_ksmtrace_aa_{v}_{k}" for v in VIEWS}
    t_grp, t_map = f"_ksmtrace_aa_groups_{k}", f"_ksmtrace_aa_map_{k}"
    split = "runs" if len(runs) >= 2 else "walks"
    if first_half is not None:
        if split != "runs" or not set(first_half) < set(runs) or not first_half:
            raise ReportError(f"--aa {label!r}: first_half must be a non-empty proper subset of its runs")
        runs = list(first_half) + [r for r in runs if r not in set(first_half)]
    try:
        try:
            _views(con, label, runs, split, names, t_grp, t_map, a, b, split_seed, len(first_half or ()))
            rep = build_sides(con, a, b, page_type, alpha, seed, n_boot, src=names)
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
        how = ("split as given" if first_half is not None else "interleaved in ingest order" if split_seed is None
               else f"split at random (seed {split_seed})")
        note = (f"A/A check of {label!r}: its {len(runs)} runs {how} into two halves, before = {a} and after = "
                f"{b}; the run is the unit; identical code should read ~")
    else:
        how = ("alternating in walk order" if split_seed is None
               else f"at random (seed {split_seed})")
        note = (f"A/A check of {label!r}: a single run, so its walks were split {how}, balanced per page type "
                f"and caller (before = {a}, after = {b}; windows follow their walk); the walk is the unit, so "
                f"this checks the statistics within this boot, not the variation between boots")
    if split == "walks":
        sig = [k for k, c in m["comparison"].items() if isinstance(c, dict) and c.get("verdict", "~") not in ("~", "n/a")]
        if sig:
            m["warnings"].insert(0, (
                f"A/A split of one run reads a change for {', '.join(sig)}: under a random split this happens in "
                f"about alpha of the splits by chance; if it persists, walks of this run differ systematically "
                f"(kinds of walk the page type and caller do not tell apart); record several runs and run --aa again"))
    m["mode"] = "aa"
    m["aa"] = {"label": label, "split": split, "split_seed": None if first_half is not None else split_seed,
               "runs": len(runs), "groups": groups,
               "note": note}
    return rep


def _views(con, label, runs, split, names, t_grp, t_map, a, b, split_seed, n_first: int = 0) -> None:
    con.execute(f"CREATE TEMP TABLE {t_grp} (orig VARCHAR, g INTEGER, label VARCHAR)")
    con.execute(f"INSERT INTO {t_grp} VALUES (?, 0, ?), (?, 1, ?)", [label, a, label, b])
    if split == "runs":
        if n_first:  # an explicit split: the first n_first runs are group A
            side = [a if i < n_first else b for i in range(len(runs))]
        else:
            if split_seed is not None:
                runs = [runs[i] for i in np.random.default_rng(split_seed).permutation(len(runs))]
            side = [a if i % 2 == 0 else b for i in range(len(runs))]
        con.execute(f"CREATE TEMP TABLE {t_map} (run_id VARCHAR, orig VARCHAR, label VARCHAR)")
        con.executemany(f"INSERT INTO {t_map} VALUES (?, ?, ?)", [[r, label, g] for r, g in zip(runs, side)])
        for v in VIEWS:
            con.execute(f"CREATE TEMP VIEW {names[v]} AS SELECT x.* EXCLUDE (label), m.label FROM {v} x "
                        f"JOIN {t_map} m ON x.run_id = m.run_id AND x.label = m.orig")
        return
    # one run: alternate the walks (per page type and caller, in start order); windows follow their walk
    if split_seed is not None:
        _random_walk_map(con, label, t_map, t_grp, split_seed)
    else:
        con.execute(f"""
            CREATE TEMP TABLE {t_map} AS
            SELECT w.run_id, w.walk_id, g.orig, g.label
            FROM (SELECT run_id, walk_id, label,
                         (row_number() OVER (PARTITION BY page_type, caller
                                             ORDER BY coalesce(start_ns, end_ns) NULLS LAST, walk_id) - 1) % 2 AS g
                  FROM walks WHERE label = ?) w
            JOIN {t_grp} g ON g.orig = w.label AND g.g = w.g""", [label])
    for v in ("walks", "lock_windows"):
        con.execute(f"CREATE TEMP VIEW {names[v]} AS SELECT x.* EXCLUDE (label), m.label FROM {v} x "
                    f"JOIN {t_map} m ON x.run_id = m.run_id AND x.walk_id = m.walk_id AND x.label = m.orig")
    con.execute(f"""
        CREATE TEMP VIEW {names['lock_waits']} AS
        SELECT x.* EXCLUDE (label, _aa_g), g.label
        FROM (SELECT *, (row_number() OVER (PARTITION BY coalesce(anon_vma_lock, false)
                                             ORDER BY start_ns NULLS LAST, end_ns) - 1) % 2 AS _aa_g
              FROM lock_waits WHERE label = (SELECT orig FROM {t_grp} LIMIT 1)) x
        JOIN {t_grp} g ON g.g = x._aa_g""")
    # the one run appears on both sides
    con.execute(f"CREATE TEMP VIEW {names['runs']} AS SELECT x.* EXCLUDE (label), g.label FROM runs x "
                f"JOIN {t_grp} g ON x.label = g.orig")


def _random_walk_map(con, label, t_map, t_grp, split_seed: int) -> None:
    """Random balanced split of one run's walks: shuffled per page type and caller, then alternated."""
    df = con.execute("SELECT run_id, walk_id, page_type, caller FROM walks WHERE label = ? ORDER BY run_id, walk_id",
                     [label]).df()
    rng = np.random.default_rng(split_seed)
    g = np.zeros(len(df), dtype=np.int64)
    for _, ix in df.groupby(["page_type", "caller"], dropna=False).indices.items():
        ix = np.asarray(ix)[rng.permutation(len(ix))]
        start = int(rng.integers(0, 2))  # odd-sized strata: either group may get the extra walk
        g[ix] = (np.arange(len(ix)) + start) % 2
    df["g"] = g
    # registered explicitly: a read-only connection (enable_external_access=false) has no replacement scans
    name = f"{t_map}_split"
    con.register(name, df[["run_id", "walk_id", "g"]])
    con.execute(f"CREATE TEMP TABLE {t_map} AS SELECT d.run_id, d.walk_id, g.orig, g.label FROM {name} d "
                f"JOIN {t_grp} g ON g.g = d.g")
    con.unregister(name)
