"""The before/after report model: what every renderer prints.

``build_report(con, before, after, page_type)`` reads the views ``walks``, ``lock_windows``,
``lock_waits`` and ``runs`` of a DuckDB connection (and nothing else). All metric logic lives in
the SQL views; this module only selects rows, aggregates them (max, count, percentiles) and runs
the statistics of :mod:`ksmtrace.report.stats`.

Choices written down here (and in the README):

* Every statistic uses **complete walks only** (``walks.complete``), and the lock windows of
  complete walks. Incomplete walks are counted per side (``incomplete_walks``) and otherwise left
  out: a walk cut by a lost event or the trace border has an unknown duration, and its windows
  may be merged or cut too.
* A side with no walks of the page type is not an error: the report is produced, its cells
  read n/a, and a warning names the page types that label does have.
* The verdict's unit is the **run** whenever a side has at least two runs with walks (tests on
  per-run medians / p99s, ratios of the medians of the per-run values); a side with one run then
  gives one unit, little power, and the report says the verdict needs more runs. Only when both
  sides are single runs is the walk the unit (one value per walk, windows never pooled), and the
  report says the verdict reaches that boot only.
* anon_vma lock waits (``wait_ns`` of ``lock_waits`` with ``anon_vma_lock``) are a third metric
  when both sides have at least one; per run like the others when the walks are, else pooled.
* Every p-value of one report (per metric: the median test, and with runs the p99 test) is one
  family for Holm-Bonferroni; ``significant``, ``p99_significant`` and the verdict use the
  adjusted p (``p_value_adjusted``), the raw ``p_value`` is kept beside it.
"""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field

import duckdb
import numpy as np

from ..errors import KsmtraceError
from . import stats
from .coverage import coverage_warning, side_coverage

PAGE_TYPES = ("ksm", "anon", "file", "all")
VIEWS = ("walks", "lock_windows", "lock_waits", "runs")
SIDES = ("before", "after")
MIN_WALKS = 10
#: --aa: the default split is random with this seed (reproducible); None = plain alternation
DEFAULT_SPLIT_SEED = 1

EVIDENCE_NAMES = {
    "tracepoint": "tracepoints",
    "function-graph": "function_graph",
    "kprobe": "kprobes",
    "perf-callchain": "perf callchains, a lower bound",
    "counters": "counters",
}
HOLD_REAL = "longest lock-window hold"
HOLD_PROXY = "largest gap between mapping events (perf callchains, proxy for a window)"
NA_ITER = "needs function_graph with the iterators traced, iterator probes or counters"
NA_SKIP = "needs counters or argument-fetching probes"
NO_WALKS = ("no walks: this trace has no rmap_walk callchains, function_graph entries, probes or counters "
            "that show a walk; record with `ksmtrace capture --method auto -- CMD` (`ksmtrace doctor` says which "
            "method this kernel offers)")
NA_HOLD = "needs lock windows (function_graph, probes, counters or perf callchains)"

#: runs.meta keys whose values must match between the sides (capture settings)
PROVENANCE_META_KEYS = ("options", "trace_options", "trace_clock", "clock", "tracer_options", "filters",
                        "set_ftrace_filter", "set_graph_function", "events", "perf_events", "preempt",
                        "preemption", "buffer_size_kb", "latency_format", "ts_relative")
#: runs columns whose values must match between the sides
PROVENANCE_COLUMNS = ("format", "tracer", "kernel", "n_cpus", "ts_resolution_ns", "ts_unit")


class UnknownLabel(KsmtraceError):
    """A --before/--after label that no run carries."""


class ReportError(KsmtraceError):
    """The report cannot be built from this store."""


@dataclass
class SideSamples:
    """Raw arrays behind one side's numbers (for plots and tests; not part of the JSON)."""

    walk_ns: np.ndarray  # durations of complete walks
    walk_t_s: np.ndarray  # walk start (else end) relative to its run's first event, seconds
    walk_run: np.ndarray  # run index (0..runs-1) of each walk
    hold_ns: np.ndarray  # hold_ns of the windows of complete walks
    hold_run: np.ndarray
    window_iterations: np.ndarray
    iter_run: np.ndarray
    run_ids: list[str]
    walk_hold_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # each walk's longest hold
    walk_hold_run: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    wait_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # anon_vma lock waits
    wait_run: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def per_run(self, values: np.ndarray, runs: np.ndarray) -> list[np.ndarray]:
        return [values[runs == i] for i in range(len(self.run_ids)) if np.any(runs == i)]


@dataclass
class Report:
    model: dict  # the JSON model
    samples: dict = field(default_factory=dict)  # side -> SideSamples

    def to_json(self) -> str:
        return json.dumps(self.model, indent=2, default=_json_default, allow_nan=False) + "\n"


def _json_default(v):
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return None if math.isnan(v) else float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return str(v)


# --------------------------------------------------------------------------- SQL helpers

def view_columns(con, view: str) -> set[str] | None:
    """Column names of a table or view (None when absent), from the catalogue: no view is planned."""
    try:
        rows = con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND NOT internal",
                           [view]).fetchall()
    except duckdb.Error:
        rows = []
    if rows:
        return {r[0] for r in rows}
    try:
        return {r[0] for r in con.execute(f"DESCRIBE {view}").fetchall()}
    except duckdb.Error:
        return None


def _labels(con, src: dict[str, str] | None = None) -> dict[str, int]:
    src = src or {}
    for view, expr in ((src.get("runs", "runs"), "count(*)"), (src.get("walks", "walks"), "count(DISTINCT run_id)")):
        if view_columns(con, view) is not None:
            return dict(con.execute(f"SELECT label, {expr} FROM {view} GROUP BY label ORDER BY label").fetchall())
    raise ReportError("the store has neither a runs nor a walks view")


# --------------------------------------------------------------------------- main entry

def check_modes(before: str | None, after: str | None, aa: str | None) -> None:
    """--aa LABEL, or --before L --after L: one clear line otherwise."""
    if aa is not None and (before is not None or after is not None):
        raise ReportError("--aa excludes --before/--after: give either --aa LABEL or --before L --after L")
    if aa is None and (before is None or after is None):
        raise ReportError("give --before LABEL and --after LABEL (or --aa LABEL for an A/A check of one label)")


def check_page_type(page_type: str) -> None:
    """The one check of ``--page-type`` (a walk's page type, or all)."""
    if page_type not in PAGE_TYPES:
        raise ReportError(f"--page-type {page_type!r} is not one of {', '.join(PAGE_TYPES)}")


def build_report(con: duckdb.DuckDBPyConnection, before: str | None = None, after: str | None = None,
                 page_type: str = "ksm", alpha: float = stats.ALPHA, seed: int = stats.SEED,
                 n_boot: int = stats.N_BOOT, aa: str | None = None,
                 aa_split_seed: int | None = DEFAULT_SPLIT_SEED) -> Report:
    """Build the before/after report model from the views of ``con``.

    With ``aa=LABEL`` (and no before/after) the runs of that one label are split into two groups
    and compared as before/after: an A/A check (see :mod:`ksmtrace.report.aa`); ``aa_split_seed``
    makes that split random (calibration) instead of alternating.
    """
    check_modes(before, after, aa)
    try:  # DuckDB draws a progress bar on stdout for queries over 2 s: it would corrupt --format json
        con.execute("SET enable_progress_bar = false")
    except duckdb.Error:
        pass
    check_page_type(page_type)
    if aa is not None:
        from .aa import build_aa_report

        return build_aa_report(con, aa, page_type, alpha, seed, n_boot, aa_split_seed)
    return build_sides(con, before, after, page_type, alpha, seed, n_boot)


def require_label(con, option: str, label: str) -> None:
    """Raise UnknownLabel (listing the labels present) unless ``label`` has runs or walks."""
    labels = _labels(con)
    if label not in labels:
        present = ", ".join(f"{k} ({v} run{'s' if v != 1 else ''})" for k, v in labels.items()) or "none"
        raise UnknownLabel(f"{option} {label!r}: no such label; labels present: {present}")


def require_views(con, src: dict[str, str] | None = None) -> None:
    """Raise ReportError unless every view the report reads (``src`` maps a view to what stands in for it) exists."""
    for v in VIEWS:
        if view_columns(con, (src or {}).get(v, v)) is None:
            raise ReportError(f"the store has no {v} view (queries/*.sql): cannot reconstruct walks")


def build_sides(con, before: str, after: str, page_type: str, alpha: float, seed: int, n_boot: int,
           src: dict[str, str] | None = None) -> Report:
    if src is None:
        for side, lab in (("--before", before), ("--after", after)):
            require_label(con, side, lab)
    if before == after:
        raise ReportError(f"--before and --after are both {before!r}: compare two different labels")
    require_views(con, src)
    b = _Builder(con, page_type, src)
    try:
        b.materialise([before, after])
        b.materialise_waits([before, after])
        sides = {name: b.side(lab) for name, lab in zip(SIDES, (before, after))}
        waits = {name: b.lock_waits(lab) for name, lab in zip(SIDES, (before, after))}
        for name, lab in zip(SIDES, (before, after)):
            sides[name][1].wait_ns, sides[name][1].wait_run = b.wait_samples(lab, sides[name][1].run_ids)
    except duckdb.Error as e:  # a view that fails on this store: one line, not a traceback
        raise ReportError("evaluating the walk views failed: " + str(e).splitlines()[0]) from None
    finally:
        b.drop()

    model: dict = {"mode": "ab"}
    samples = {}
    for name in SIDES:
        side_model, smp = sides[name]
        side_model["lock_waits"] = waits[name]
        model[name] = side_model
        samples[name] = smp
    warnings: list[str] = []
    model["comparison"] = _compare(model, samples, alpha, seed, n_boot, warnings)
    warnings[:0] = _side_warnings(model, page_type, b.other_types)
    warnings.extend(_provenance_warnings(model))
    model["warnings"] = warnings
    model["page_type"] = page_type
    model["alpha"] = alpha
    model["bootstrap"] = {"seed": seed, "replicates": n_boot, "confidence": stats.CONFIDENCE,
                          "percentiles": "nearest rank"}
    model["generated_by"] = "ksmtrace report"
    return Report(model=model, samples=samples)


class _Builder:
    """Runs the queries of one report over temp tables holding just the two labels' rows."""

    _n = itertools.count()

    def __init__(self, con, page_type: str, src: dict[str, str] | None = None):
        self.con = con
        #: view name -> relation actually read (A/A mode reads relabelled temp views)
        self.src = {v: v for v in VIEWS} | (src or {})
        self.page_type = page_type
        k = next(self._n)
        self.t_walks = f"_ksmtrace_report_walks_{k}"
        self.t_windows = f"_ksmtrace_report_windows_{k}"
        self.t_excl = f"_ksmtrace_report_excluded_{k}"
        self.t_waits = f"_ksmtrace_report_waits_{k}"
        self.other_types: dict[str, dict[str, int]] = {}

    def materialise(self, labels: list[str]) -> None:
        """Evaluate the walks and lock_windows views once, for the two labels only."""
        con = self.con
        params = {"a": labels[0], "b": labels[1]}
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {self.t_walks} AS
            SELECT run_id, label, walk_id, evidence, page_type, start_ns, end_ns, duration_ns,
                   coalesce(complete, false) AS complete, max_hold_ns, max_window_iterations, caller
            FROM {self.src['walks']} WHERE label IN ($a, $b)""", params)
        for lab, ptype, n in con.execute(
                f"SELECT label, page_type, count(*) FROM {self.t_walks} GROUP BY ALL ORDER BY 3 DESC, 2").fetchall():
            self.other_types.setdefault(lab, {})[str(ptype)] = int(n)
        # walks whose windows the statistics leave out: incomplete, or of another page type
        keep = "complete" if self.page_type == "all" else "complete AND page_type IS NOT DISTINCT FROM $pt"
        kp = {} if self.page_type == "all" else {"pt": self.page_type}
        con.execute(f"CREATE OR REPLACE TEMP TABLE {self.t_excl} AS SELECT run_id, walk_id FROM {self.t_walks} "
                    f"WHERE NOT ({keep})", kp)
        if self.page_type != "all":
            con.execute(f"DELETE FROM {self.t_walks} WHERE page_type IS DISTINCT FROM $pt", kp)
        # an anti-join against the (usually few) excluded walks: much cheaper than joining every window
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {self.t_windows} AS
            SELECT lw.run_id, lw.label, lw.walk_id, lw.hold_ns, lw.iterations, lw.skip_addr, lw.skip_mm, lw.evidence
            FROM {self.src['lock_windows']} lw ANTI JOIN {self.t_excl} x ON lw.run_id = x.run_id AND lw.walk_id = x.walk_id
            WHERE lw.label IN ($a, $b)""", params)

    def drop(self) -> None:
        for t in (self.t_walks, self.t_windows, self.t_excl, self.t_waits):
            try:
                self.con.execute(f"DROP TABLE IF EXISTS {t}")
            except duckdb.Error:
                pass

    # ---------------------------------------------------------------- runs
    def _runs(self, label: str) -> list[dict]:
        sel = ("run_id, source, format, tracer, kernel, n_cpus, n_lost_events, lost_unknown, partial, "
               "ts_resolution_ns, ts_unit, first_ts_ns, meta")
        # ingest order, then file name: run ids carry a random part, and the order of the runs is the order of
        # the per-run tables and of the hierarchical bootstrap's draws, so it must not depend on them
        cur = self.con.execute(f"SELECT {sel} FROM {self.src['runs']} WHERE label = ? "
                               f"ORDER BY ingested_at NULLS LAST, source, run_id", [label])
        names = [d[0] for d in cur.description]
        out = []
        for row in cur.fetchall():
            r = dict(zip(names, row))
            try:
                r["meta"] = json.loads(r["meta"]) if r["meta"] else {}
            except (TypeError, ValueError):
                r["meta"] = {}
            out.append(r)
        return out

    # ---------------------------------------------------------------- one side
    def side(self, label: str) -> tuple[dict, SideSamples]:
        con, W, L = self.con, self.t_walks, self.t_windows
        runs = self._runs(label)
        run_ids = [r["run_id"] for r in runs]

        # walk counts per run and per evidence kind
        per_run = {r: (int(n), int(c)) for r, n, c in con.execute(
            f"SELECT run_id, count(*), count(*) FILTER (complete) FROM {W} WHERE label = ? GROUP BY run_id",
            [label]).fetchall()}
        for r in runs:
            r["walks"], r["complete_walks"] = per_run.get(r["run_id"], (0, 0))
        evidence = {str(e): int(n) for e, n in con.execute(
            f"SELECT evidence, count(*) FROM {W} WHERE label = ? GROUP BY evidence ORDER BY 2 DESC, 1",
            [label]).fetchall()}

        # complete walks: durations and trace time (relative to the run's first event)
        res = con.execute(f"""
            SELECT list_position($ids, w.run_id) - 1 AS run_ix, w.duration_ns,
                   coalesce(w.start_ns, w.end_ns)
                     - coalesce(r.first_ts_ns, min(coalesce(w.start_ns, w.end_ns)) OVER (PARTITION BY w.run_id)) AS t_ns
            FROM {W} w LEFT JOIN {self.src['runs']} r ON r.run_id = w.run_id AND r.label = w.label
            WHERE w.label = $label AND w.complete AND w.duration_ns IS NOT NULL
            ORDER BY w.duration_ns""", {"label": label, "ids": run_ids}).fetchnumpy()
        walk_run = np.asarray(res["run_ix"], dtype=np.int64)
        walk_ns = np.asarray(res["duration_ns"], dtype=np.int64)
        walk_t = np.asarray(res["t_ns"], dtype=np.float64) / 1e9

        res = con.execute(f"""
            SELECT list_position($ids, run_id) - 1 AS run_ix, hold_ns FROM {L}
            WHERE label = $label AND hold_ns IS NOT NULL ORDER BY hold_ns""",
            {"label": label, "ids": run_ids}).fetchnumpy()
        hold_run = np.asarray(res["run_ix"], dtype=np.int64)
        hold_ns = np.asarray(res["hold_ns"], dtype=np.int64)
        res = con.execute(f"""
            SELECT list_position($ids, run_id) - 1 AS run_ix, iterations FROM {L}
            WHERE label = $label AND iterations IS NOT NULL ORDER BY iterations""",
            {"label": label, "ids": run_ids}).fetchnumpy()
        win_it = np.asarray(res["iterations"], dtype=np.int64)
        iter_run = np.asarray(res["run_ix"], dtype=np.int64)

        # each complete walk's longest hold: the walk-level summary the tests use (windows are never pooled)
        res = con.execute(f"""
            SELECT list_position($ids, run_id) - 1 AS run_ix, max(hold_ns) AS h FROM {L}
            WHERE label = $label AND hold_ns IS NOT NULL GROUP BY run_id, walk_id ORDER BY h""",
            {"label": label, "ids": run_ids}).fetchnumpy()
        walk_hold_run = np.asarray(res["run_ix"], dtype=np.int64)
        walk_hold_ns = np.asarray(res["h"], dtype=np.int64)

        window_evidence = {str(e): int(n) for e, n in con.execute(
            f"SELECT evidence, count(*) FROM {L} WHERE label = ? AND hold_ns IS NOT NULL GROUP BY 1 ORDER BY 2 DESC",
            [label]).fetchall()}

        table, notes = self._seed(label, evidence, window_evidence)
        n_walks = sum(evidence.values())
        res_ns = max((int(r["ts_resolution_ns"]) for r in runs if r.get("ts_resolution_ns")), default=None)
        resolution = {"ts_resolution_ns": res_ns}
        if res_ns and res_ns > 1:  # values below the timestamp resolution: shown as '<1us', never negative
            resolution["holds_below"] = int(np.sum(hold_ns < res_ns))
            resolution["walks_below"] = int(np.sum(walk_ns < res_ns))
        else:
            resolution["holds_below"] = resolution["walks_below"] = 0
        resolution["holds_zero"] = int(np.sum(hold_ns <= 0))
        resolution["walks_zero"] = int(np.sum(walk_ns <= 0))
        n_complete = sum(r["complete_walks"] for r in runs)
        model = {
            "label": label,
            "runs": len(runs),
            "walks": n_walks,
            "complete_walks": n_complete,
            "incomplete_walks": n_walks - n_complete,
            "evidence": sorted(evidence),
            "evidence_walks": evidence,
            "changelog_table": table,
            "changelog_notes": notes,
            "walk_duration_ns": stats.distribution(walk_ns),
            "hold_ns": stats.distribution(hold_ns),
            "hold_quantity": _hold_quantity(window_evidence),
            "resolution": resolution,
            "window_iterations": stats.distribution(win_it),
            "callers": self._callers(label),
            "run_ids": run_ids,
            "run_details": [_run_public(r) for r in runs],
            "coverage": side_coverage(con, run_ids, W),  # runs that lost data (report/coverage.py)
        }
        smp = SideSamples(walk_ns=walk_ns, walk_t_s=walk_t, walk_run=walk_run, hold_ns=hold_ns,
                          hold_run=hold_run, window_iterations=win_it, iter_run=iter_run, run_ids=run_ids,
                          walk_hold_ns=walk_hold_ns, walk_hold_run=walk_hold_run)
        return model, smp

    def _callers(self, label: str) -> dict:
        return {str(c) if c is not None else "unknown": int(n) for c, n in self.con.execute(
            f"SELECT caller, count(*) FROM {self.t_walks} WHERE label = ? AND complete GROUP BY 1 ORDER BY 2 DESC, 1",
            [label]).fetchall()}

    def _seed(self, label: str, evidence: dict, window_evidence: dict) -> tuple[dict, dict]:
        con = self.con
        w_hold, w_iter, w_dur, n_complete = con.execute(
            f"SELECT max(max_hold_ns), max(max_window_iterations), max(duration_ns), count(*) "
            f"FROM {self.t_walks} WHERE label = ? AND complete", [label]).fetchone()
        l_hold, l_iter, l_saddr, l_smm = con.execute(
            f"SELECT max(hold_ns), max(iterations), max(skip_addr), max(skip_mm) FROM {self.t_windows} "
            f"WHERE label = ?", [label]).fetchone()
        notes: dict[str, str] = {}
        table: dict = {}
        hold = _max(w_hold, l_hold)
        if n_complete == 0:
            why = "no complete walks"
            for k in ("time_ms", "nr_iteration_total", "skip_addr_out_of_range", "skip_mm_mismatch"):
                table[k] = None
                notes[k] = why
            return table, notes
        if hold is not None:
            table["time_ms"] = hold / 1e6
            notes["time_ms"] = _hold_quantity(window_evidence)
        elif w_dur is not None:
            table["time_ms"] = w_dur / 1e6
            kinds = [e for e in evidence if e is not None] or ["unknown"]
            notes["time_ms"] = ("longest walk duration (" + ", ".join(EVIDENCE_NAMES.get(e, e) for e in kinds)
                                + ") stands in: no lock windows")
        else:
            table["time_ms"] = None
            notes["time_ms"] = NA_HOLD
        table["nr_iteration_total"] = _max(w_iter, l_iter)
        if table["nr_iteration_total"] is None:
            notes["nr_iteration_total"] = NA_ITER
        table["skip_addr_out_of_range"] = _int(l_saddr)
        table["skip_mm_mismatch"] = _int(l_smm)
        for k in ("skip_addr_out_of_range", "skip_mm_mismatch"):
            if table[k] is None:
                notes[k] = NA_SKIP
        return table, notes

    # ---------------------------------------------------------------- lock waits
    def materialise_waits(self, labels: list[str]) -> None:
        self.con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {self.t_waits} AS
            SELECT label, run_id, comm, pid, caller, flags, wait_ns,
                   anon_vma_lock AS anon
            FROM {self.src['lock_waits']} WHERE label IN ($a, $b)""", {"a": labels[0], "b": labels[1]})

    def wait_samples(self, label: str, run_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """wait_ns of the anon_vma lock waits of one label (sorted) and the run index of each."""
        res = self.con.execute(f"""
            SELECT coalesce(list_position($ids, run_id) - 1, -1) AS run_ix, wait_ns FROM {self.t_waits}
            WHERE label = $label AND anon AND wait_ns IS NOT NULL ORDER BY wait_ns""",
            {"label": label, "ids": run_ids}).fetchnumpy()
        return np.asarray(res["wait_ns"], dtype=np.int64), np.asarray(res["run_ix"], dtype=np.int64)

    def lock_waits(self, label: str) -> dict:
        """anon_vma lock waits of one label: count, max, total, and the top waiters (perf lock contention style)."""
        T = self.t_waits
        total_all, cnt, mx, tot, unknown = self.con.execute(
            f"SELECT count(*), count(*) FILTER (anon), max(wait_ns) FILTER (anon), sum(wait_ns) FILTER (anon), "
            f"count(*) FILTER (anon IS NULL) FROM {T} WHERE label = ?", [label]).fetchone()
        cur = self.con.execute(f"""
            SELECT comm, pid, caller, flags, count(*) AS count, sum(wait_ns) AS total_ns, max(wait_ns) AS max_ns
            FROM {T} WHERE label = ? AND anon
            GROUP BY ALL ORDER BY total_ns DESC NULLS LAST, count DESC, comm, pid LIMIT 10""", [label])
        names = [d[0] for d in cur.description]
        waiters = [{k: _int(v) if k in ("pid", "count", "total_ns", "max_ns") else v for k, v in zip(names, row)}
                   for row in cur.fetchall()]
        # unknown: waits whose lock cannot be told to be an anon_vma lock or not (no callchain on the
        # contention_begin): never counted as 0 anon_vma waits
        return {"count": int(cnt), "max_ns": _int(mx), "total_ns": _int(tot), "waiters": waiters,
                "all_lock_waits": int(total_all), "unknown_lock": int(unknown)}


# --------------------------------------------------------------------------- helpers

def _max(*vals):
    vals = [int(v) for v in vals if v is not None]
    return max(vals) if vals else None


def _int(v):
    return None if v is None else int(v)


def _hold_quantity(window_evidence: dict) -> str | None:
    if not window_evidence:
        return None
    kinds = set(window_evidence)
    if kinds == {"perf-callchain"}:
        return HOLD_PROXY
    if "perf-callchain" in kinds:
        return HOLD_REAL + " (mixed with perf-callchain gaps, a proxy)"
    return HOLD_REAL


def _run_public(r: dict) -> dict:
    return {k: v for k, v in r.items() if k != "first_ts_ns"}


# --------------------------------------------------------------------------- comparison and warnings

SUMMARY = {"walk_duration_ns": "the walk's duration", "hold_ns": "the walk's longest hold",
           "lock_wait_ns": "the run's anon_vma lock waits"}


def _compare(model, samples, alpha, seed, n_boot, warnings) -> dict:
    """Hierarchical: runs contain walks, walks contain windows. Whenever a side has >= 2 runs the run
    is the unit (per-run medians and p99s of the walk summaries), also against a side of one run
    (one unit: little power, said in unit_note); the walk (one value per walk) only when both sides
    are single runs. Pooled walks of several boots are not independent samples."""
    sb, sa = samples["before"], samples["after"]
    runs_b = sb.per_run(sb.walk_ns, sb.walk_run)
    runs_a = sa.per_run(sa.walk_ns, sa.walk_run)
    by_run = len(runs_b) >= 2 or len(runs_a) >= 2
    out = {}
    S = SUMMARY
    if by_run:
        out["walk_duration_ns"] = stats.compare_runs(runs_b, runs_a, alpha, seed, n_boot,
                                                     summary="median and p99 of " + S["walk_duration_ns"] + " per run")
        hb = sb.per_run(sb.walk_hold_ns, sb.walk_hold_run)
        ha = sa.per_run(sa.walk_hold_ns, sa.walk_hold_run)
        out["hold_ns"] = stats.compare_runs(hb, ha, alpha, seed + 1, n_boot,
                                            summary="median and p99 of " + S["hold_ns"] + " per run")
    else:
        out["walk_duration_ns"] = stats.compare_pooled(sb.walk_ns, sa.walk_ns, alpha, seed, n_boot, unit="walk",
                                                       summary=S["walk_duration_ns"])
        out["hold_ns"] = stats.compare_pooled(sb.walk_hold_ns, sa.walk_hold_ns, alpha, seed + 1, n_boot,
                                              unit="walk", summary=S["hold_ns"])
    if len(sb.wait_ns) and len(sa.wait_ns):  # anon_vma lock waits, when both sides have some
        wb, wa = sb.per_run(sb.wait_ns, sb.wait_run), sa.per_run(sa.wait_ns, sa.wait_run)
        if by_run:
            out["lock_wait_ns"] = stats.compare_runs(wb, wa, alpha, seed + 2, n_boot,
                                                     summary="median and p99 of the anon_vma lock waits per run")
        else:  # waits belong to no walk: with one run per side nothing independent is left to test
            c = stats.Comparison(unit="run", summary="median and p99 of the anon_vma lock waits per run",
                                 n_before=len(wb), n_after=len(wa), test="none")
            c.warnings.append("not tested: lock waits belong to no walk, so with one run per side "
                              "there is no independent unit; the counts and maxima above are descriptive")
            out["lock_wait_ns"] = c
    n_tests = stats.apply_holm(list(out.values()), alpha)
    res = {}
    for k, c in out.items():
        for w in c.warnings:
            warnings.append(f"{k}: {w}")
        res[k] = c.as_dict()
    changelog_ratio = {}
    for k in ("time_ms", "nr_iteration_total", "skip_addr_out_of_range", "skip_mm_mismatch"):
        bv, av = model["before"]["changelog_table"].get(k), model["after"]["changelog_table"].get(k)
        same = model["before"]["changelog_notes"].get(k) == model["after"]["changelog_notes"].get(k)
        changelog_ratio[k] = stats.ratio(av, bv) if same else None
    res["changelog_ratio"] = changelog_ratio
    res["correction"] = {"method": "holm", "tests": n_tests,
                         "note": f"Holm-Bonferroni over the {n_tests} tests of this report; the verdicts "
                                 f"(significant, ~) use the adjusted p"}
    res["unit"] = "run" if by_run else "walk"
    nb, na = len(runs_b), len(runs_a)
    # Holm's smallest adjusted p is n_tests times the smallest p the permutation test can give
    p_min = stats.perm_min_p(nb, na)
    few = (f"; with {nb}+{na} runs no change can be claimed (smallest p {p_min:.2g}, "
           f"{min(1.0, max(n_tests, 1) * p_min):.2g} after Holm over {n_tests} tests): the verdict needs more runs "
           f"({stats.mwu_needed(alpha / max(n_tests, 1))} or more per side)"
           if by_run and max(n_tests, 1) * p_min >= alpha else "")
    if few:
        warnings.append("the run is the unit" + few)
    elif not by_run and nb and na:
        warnings.append("the walk is the unit (one run per side): the verdict reaches this boot and this workload "
                        "only, not the variation between boots")
    res["unit_note"] = (
        f"the run (boot) is the unit ({nb}+{na} runs): each run gives the median and p99 of its walks' values "
        f"(durations, longest holds); permutation tests on those, hierarchical bootstrap CIs (runs, then walks); "
        f"the verdict reaches these kernels and this workload across boots{few}" if by_run else
        "one run per side: the walk is the unit (each walk's duration, each walk's longest hold; windows are "
        "never pooled); permutation tests on those; the verdict reaches this boot and this workload only: "
        "record at least 2 (better 5 or more) runs per side to make it reach across boots")
    res["test"] = "two-sided permutation test of the Mann-Whitney rank sum (mid-ranks; exact or 9999 random splits)"
    return res


def _side_warnings(model, page_type, other_types) -> list[str]:
    w = []
    for side_name in SIDES:
        s = model[side_name]
        lab = s["label"]
        name = side_name if lab == side_name else f"{side_name} {lab!r}"
        if s["walks"] == 0:
            others = {k: v for k, v in other_types.get(lab, {}).items() if k != page_type}
            if others:
                w.append(f"{name}: no walks of page type {page_type}; walks present: "
                         + ", ".join(f"{k} {v}" for k, v in others.items()) + f"; try --page-type {next(iter(others))}")
            else:
                w.append(f"{name}: {NO_WALKS}")
        elif s["walk_duration_ns"]["count"] < MIN_WALKS:
            w.append(f"{name}: only {s['walk_duration_ns']['count']} complete walks "
                     f"(fewer than {MIN_WALKS}); the statistics are anecdotal")
        if s["incomplete_walks"]:
            w.append(f"{name}: {s['incomplete_walks']} incomplete walks (unpaired, cut by the trace "
                     f"border or a lost event) are left out of every statistic")
        if s["runs"] == 1 and s["walks"]:
            w.append(f"{name}: only one run; its walks are not independent samples (one boot, one "
                     f"workload): record several runs per side to make the run the unit of the verdict")
        covered = {c["run_id"] for c in s.get("coverage", [])}
        w.extend(coverage_warning(name, c) for c in s.get("coverage", []))
        for r in s["run_details"]:
            lost, unk = r.get("n_lost_events"), r.get("lost_unknown")
            if ((lost or 0) > 0 or unk) and r["run_id"] not in covered:
                n = f"{lost} events" if lost else "events"
                w.append(f"{name}: run {r['run_id']} lost {n}{' (count unknown)' if unk else ''}; "
                         f"walks overlapping a loss are incomplete")
            if r.get("partial"):
                w.append(f"{name}: run {r['run_id']} was truncated (ingested with --partial)")
    return w


def _provenance(side: dict) -> dict:
    p: dict = {"evidence": tuple(side["evidence"])}
    for c in PROVENANCE_COLUMNS:
        p[c] = tuple(sorted({str(r.get(c)) for r in side["run_details"] if r.get(c) is not None}))
    for k in PROVENANCE_META_KEYS:
        vals = {json.dumps(r.get("meta", {}).get(k), sort_keys=True) for r in side["run_details"]
                if isinstance(r.get("meta"), dict) and k in r["meta"]}
        if vals:
            p["meta." + k] = tuple(sorted(vals))
    return p


PROV_MAX = 48  # characters of one side's value in a provenance line


def _prov_value(vals: tuple) -> str:
    """One side's provenance value in one short line: whitespace collapsed, long dumps cut."""
    if not vals:
        return "unknown"
    txt = " ".join(", ".join(vals).split())
    if len(vals) > 1:
        txt = f"{len(vals)} values: {txt}"
    if len(txt) > PROV_MAX:
        txt = txt[:PROV_MAX - 1].rstrip() + f"... ({len(txt)} chars, see --format json)"
    return txt


def _provenance_warnings(model) -> list[str]:
    """One line per provenance key that differs; the full values stay in the JSON model."""
    pb, pa = _provenance(model["before"]), _provenance(model["after"])
    model["before"]["provenance"] = {k: list(v) for k, v in pb.items()}
    model["after"]["provenance"] = {k: list(v) for k, v in pa.items()}
    w = []
    for k in dict.fromkeys(list(pb) + list(pa)):
        vb, va = pb.get(k, ()), pa.get(k, ())
        if k == "evidence" and (not vb or not va):
            continue
        if vb != va and (vb or va):
            extra = (" (expected when comparing kernels)" if k == "kernel" else
                     "; the sides measure different quantities" if k == "evidence" else "")
            w.append(f"provenance differs: {k}: before {_prov_value(vb)}, after {_prov_value(va)}{extra}")
    if any(not x.startswith("provenance differs: kernel") for x in w if x.startswith("provenance differs")):
        w.append("provenance: compare only traces captured the same way (same tracer, options, clock, CPUs)")
    return w
