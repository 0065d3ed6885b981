-- ksmtrace standard views, part 2: every rmap walk, whatever the evidence (issue #4).
-- Rules: kernel.md §6 and the project's walk_rules.md; per-kind logic in 11_tracepoint_walks.sql (a),
-- 12_funcgraph_walks.sql (b), 13_probe_walks.sql (c), 14_callchain_walks.sql (d), 15_counter_windows.sql (e).

-- _walk_parts: walks (part = 'walk') and lock windows (part = 'window') of every kind, counter lines
-- attached (walk_rules.md (e)) and the loss check applied. One query, every kind computed once
-- (MATERIALIZED), so `walks` and `lock_windows` each cost one pass over the trace.
CREATE OR REPLACE VIEW _walk_parts AS
WITH _ev AS MATERIALIZED (SELECT * FROM _ev_scan),   -- the one scan of the store (11_scan.sql)
-- the kinds' walks and windows; their run_id column holds the run key rk = hash(run_id) until the end
kk AS MATERIALIZED (
    SELECT * RENAME (run_id AS rk) FROM (
        SELECT * FROM _tp_out()
        UNION ALL SELECT * FROM _fg_out()
        UNION ALL SELECT * FROM _pr_out()
        UNION ALL SELECT * FROM _cc_out())
),
k AS (SELECT * FROM kk WHERE part = 'walk'),
lines AS MATERIALIZED (SELECT * FROM _counter_lines()),
kr AS (SELECT rk, pid, walk_id, evidence, start_ns, end_ns, n_windows FROM k
       WHERE start_ns IS NOT NULL AND end_ns IS NOT NULL),
-- (e) a counter line inside a walk of another kind (same run and pid, start_ns <= ts <= end_ns) belongs to it:
-- per kind, the latest walk that starts at or before the line (a running last_value over walk starts and
-- lines in time order; no range join), when the line is not after that walk's end
cand AS (
    SELECT l.rk, l.pid, l.line_no, l.ts_ns, e.evidence
    FROM lines l JOIN (SELECT DISTINCT rk, pid, evidence FROM kr) e ON e.rk = l.rk AND e.pid = l.pid
),
own_seq AS (
    SELECT rk, pid, evidence, line_no, ts_ns, is_line,
           last_value(wk IGNORE NULLS) OVER (PARTITION BY rk, pid, evidence ORDER BY ts_ns, ord
                                             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS w
    FROM (SELECT rk, pid, evidence, line_no, ts_ns, 1 AS ord, true AS is_line,
                 NULL::STRUCT(id BIGINT, e BIGINT, n BIGINT) AS wk FROM cand
          UNION ALL
          -- walk starts sort before lines of the same ts (start_ns <= ts is inclusive)
          SELECT rk, pid, evidence, NULL, start_ns, 0, false, {'id': walk_id, 'e': end_ns, 'n': n_windows} FROM kr)
),
owned AS MATERIALIZED (
    SELECT l.*, s.w.id AS walk_id, s.evidence, s.w.n AS owner_windows
    FROM own_seq s JOIN lines l ON l.rk = s.rk AND l.line_no = s.line_no
    WHERE s.is_line AND s.w.id IS NOT NULL AND s.ts_ns <= s.w.e
),
-- the other lines form walks of their own (evidence counters): consecutive lines of one pid are one walk
-- only when a ksm_walk summary line of that pid follows them (the walk ends at the summary, duration =
-- walk_ns); otherwise every line is a walk (one window; start/end = the window's; duration = hold_ns)
free AS (SELECT l.* FROM lines l ANTI JOIN owned o ON o.rk = l.rk AND o.line_no = l.line_no),
seq AS (
    SELECT rk, line_no, ts_ns, pid, false AS is_summary, NULL::BIGINT AS walk_ns, NULL::VARCHAR AS cb FROM free
    UNION ALL
    SELECT rk, line_no, ts_ns, pid, true, walk_ns, cb FROM _counter_summaries()
),
grp AS (
    SELECT *,
           -- group = number of summaries before this row; a summary closes the group it is in
           coalesce(sum(is_summary::INTEGER) OVER (PARTITION BY rk, pid ORDER BY ts_ns, line_no
                                                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS g
    FROM seq
),
closing AS (SELECT rk, pid, g, line_no AS summary_line, ts_ns AS summary_ts, walk_ns, cb FROM grp WHERE is_summary),
fw AS (
    SELECT f.*, cl.summary_line, cl.summary_ts, cl.walk_ns, cl.cb,
           CASE WHEN cl.summary_line IS NOT NULL
                THEN min(f.line_no) OVER (PARTITION BY f.rk, f.pid, gr.g) ELSE f.line_no END AS walk_id
    FROM free f
    JOIN grp gr ON gr.rk = f.rk AND gr.line_no = f.line_no AND NOT gr.is_summary
    LEFT JOIN closing cl ON cl.rk = f.rk AND cl.pid = f.pid AND cl.g = gr.g
),
cagg AS (
    SELECT rk, NULL::VARCHAR AS label, walk_id, any_value(pid) AS pid,
           arg_min_null(comm, line_no) AS comm, arg_min_null(cpu, line_no) AS cpu,
           any_value(summary_line) AS summary_line, any_value(summary_ts) AS summary_ts,
           any_value(walk_ns) AS walk_ns, any_value(cb) AS cb,
           min(start_ns) AS first_start_ns, max(end_ns) AS last_end_ns,
           count(*) AS n_windows, max(hold_ns) AS max_hold_ns,
           -- sums only when every line carries the counter (_sum_if_all)
           _sum_if_all(hold_ns) AS total_hold_ns,
           _sum_if_all(iterations) AS iterations,
           max(iterations) AS max_window_iterations,
           _sum_if_all(rmap_one) AS rmap_one,
           _sum_if_all(skipped) AS skipped,
           _sum_if_all(skip_addr) AS skip_addr,
           _sum_if_all(skip_mm) AS skip_mm,
           _sum_if_all(invalid) AS invalid,
           min(line_no) AS start_line, max(line_no) AS last_line
    FROM fw GROUP BY rk, walk_id
),
cwalks AS (
    SELECT 'walk' AS part, a.rk, a.label, a.walk_id, NULL::BIGINT AS window_no, 'counters' AS evidence,
           'ksm' AS page_type, a.pid, a.comm, a.cpu,
           CASE WHEN summary_line IS NOT NULL THEN summary_ts - walk_ns ELSE first_start_ns END AS start_ns,
           CASE WHEN summary_line IS NOT NULL THEN summary_ts ELSE last_end_ns END AS end_ns,
           CASE WHEN summary_line IS NOT NULL THEN walk_ns ELSE max_hold_ns END AS duration_ns,
           true AS paired, n_windows, max_hold_ns, total_hold_ns, iterations, max_window_iterations, rmap_one,
           skipped, skip_addr, skip_mm,
           cbt.caller,  -- from the summary's cb= callback symbol, when present
           NULL::BIGINT AS slow_windows, NULL::BOOLEAN AS bailout, invalid, NULL::BOOLEAN AS early_exit,
           n_windows AS n_events, start_line, coalesce(summary_line, last_line) AS end_line,
           NULL::BIGINT AS hold_ns, NULL::BOOLEAN AS slow, NULL::BOOLEAN AS counters_consistent
    FROM cagg a LEFT JOIN _rmap_one_callbacks cbt ON cbt.func = _sym(a.cb)
),
-- per-walk sums of the lines owned by a walk of another kind: they fill that walk's NULL columns
fill AS (
    SELECT rk, walk_id, evidence, count(*) AS n_windows, max(hold_ns) AS max_hold_ns,
           _sum_if_all(hold_ns) AS total_hold_ns,
           _sum_if_all(iterations) AS iterations,
           max(iterations) AS max_window_iterations,
           _sum_if_all(rmap_one) AS rmap_one,
           _sum_if_all(skipped) AS skipped,
           _sum_if_all(skip_addr) AS skip_addr,
           _sum_if_all(skip_mm) AS skip_mm,
           _sum_if_all(invalid) AS invalid
    FROM owned GROUP BY rk, walk_id, evidence
),
allw AS (SELECT * FROM k UNION ALL SELECT * FROM cwalks),
_cov_walks AS (SELECT * FROM allw),  -- read by _walk_coverage() (17_cpu_coverage.sql)
-- loss: a __lost_events row of the run inside [start_ns, end_ns] (a marker without ts: by line number)
-- counted without a range join: n(x) = markers at or before x (ASOF lookups in the cumulative counts);
-- the walk is lossy when n(end) - n(before start) > 0
lost_t AS MATERIALIZED (
    SELECT rk, ts_ns, row_number() OVER (PARTITION BY rk ORDER BY ts_ns) AS n
    FROM _ev WHERE cls = 9 AND ts_ns IS NOT NULL
),
lost_l AS MATERIALIZED (
    SELECT rk, line_no, row_number() OVER (PARTITION BY rk ORDER BY line_no) AS n
    FROM _ev WHERE cls = 9 AND ts_ns IS NULL
),
lossy AS (
    SELECT a.rk, a.walk_id FROM allw a
    ASOF JOIN lost_t e ON e.rk = a.rk AND e.ts_ns <= a.end_ns
    ASOF LEFT JOIN lost_t s ON s.rk = a.rk AND s.ts_ns < a.start_ns
    WHERE a.start_ns IS NOT NULL AND e.n - coalesce(s.n, 0) > 0
    UNION
    SELECT a.rk, a.walk_id FROM allw a
    ASOF JOIN lost_l e ON e.rk = a.rk AND e.line_no <= a.end_line
    ASOF LEFT JOIN lost_l s ON s.rk = a.rk AND s.line_no < a.start_line
    WHERE a.start_line IS NOT NULL AND e.n - coalesce(s.n, 0) > 0
),
-- counter lines as windows: of counter walks, and of walks of other kinds that have no windows of their own
cwin AS (
    SELECT rk, walk_id, line_no, ts_ns, start_ns, end_ns, hold_ns, iterations, rmap_one, skipped, skip_addr,
           skip_mm, invalid, counters_consistent
    FROM fw
    UNION ALL
    SELECT rk, walk_id, line_no, ts_ns, start_ns, end_ns, hold_ns, iterations, rmap_one, skipped, skip_addr,
           skip_mm, invalid, counters_consistent
    FROM owned WHERE coalesce(owner_windows, 0) = 0
),
parts AS (
SELECT a.part, a.rk, a.label, a.walk_id, a.window_no, a.evidence, a.page_type, a.pid, a.comm, a.cpu,
       a.start_ns, a.end_ns, a.duration_ns,
       -- issue #16 (17_cpu_coverage.sql): not in a stretch a CPU buffer lost, and self-consistent
       (a.paired AND lossy.walk_id IS NULL AND cov.walk_id IS NULL) AS paired,
       coalesce(a.n_windows, f.n_windows) AS n_windows,
       coalesce(a.max_hold_ns, f.max_hold_ns) AS max_hold_ns,
       coalesce(a.total_hold_ns, f.total_hold_ns) AS total_hold_ns,
       coalesce(a.iterations, f.iterations) AS iterations,
       coalesce(a.max_window_iterations, f.max_window_iterations) AS max_window_iterations,
       coalesce(a.rmap_one, f.rmap_one) AS rmap_one,
       coalesce(a.skipped, f.skipped) AS skipped,
       coalesce(a.skip_addr, f.skip_addr) AS skip_addr,
       coalesce(a.skip_mm, f.skip_mm) AS skip_mm,
       a.caller, a.slow_windows, a.bailout,
       coalesce(a.invalid, f.invalid) AS invalid,
       a.early_exit, a.n_events, a.start_line, a.end_line, a.hold_ns, a.slow, a.counters_consistent
FROM allw a
LEFT JOIN lossy ON lossy.rk = a.rk AND lossy.walk_id = a.walk_id
LEFT JOIN fill f ON f.rk = a.rk AND f.walk_id = a.walk_id AND f.evidence = a.evidence
LEFT JOIN _walk_coverage() cov ON cov.rk = a.rk AND cov.walk_id = a.walk_id
UNION ALL
SELECT * FROM kk WHERE part = 'window'
UNION ALL
SELECT 'window', rk, NULL, walk_id,
       row_number() OVER (PARTITION BY rk, walk_id ORDER BY ts_ns, line_no), 'counters', NULL, NULL, NULL, NULL,
       start_ns, end_ns, NULL, NULL, NULL, NULL, NULL, iterations, NULL, rmap_one, skipped, skip_addr, skip_mm,
       NULL, NULL, NULL, invalid, NULL, NULL, NULL, NULL, hold_ns, NULL, counters_consistent
FROM cwin
)
SELECT p.part, r.run_id, r.label, p.* EXCLUDE (part, rk, label)
FROM parts p JOIN (SELECT hash(run_id) AS rk, run_id, label FROM runs) r ON r.rk = p.rk;

-- @view walks
-- One row per reconstructed rmap walk (rmap_walk_ksm, and rmap_walk_anon / rmap_walk_file where the
-- evidence shows them), from whichever evidence the run holds: rmap tracepoints, function_graph,
-- kprobes/fprobes, perf callchains of migrate events, or per-window counter lines. A column the evidence
-- cannot give is NULL, never 0. Counter lines that fall inside a walk of another kind fill that walk's NULL
-- columns. For evidence perf-callchain the walk is a heuristic grouping of events and duration_ns is a
-- LOWER BOUND (first to last event). A loss marker (__lost_events) inside [start_ns, end_ns] makes a walk
-- incomplete, and so do a start before the run's complete interval (run_coverage), an overlap with a CPU's
-- loss gap, a move to a CPU whose buffer starts after the task left its old one, and numbers that contradict
-- each other (span vs printed duration, a window longer than the walk): 17_cpu_coverage.sql.
-- @needs rmap tracepoints, function_graph with rmap_walk_ksm as graph function, kprobes/fprobes on rmap_walk_ksm, perf -g callchains on migrate events, or counter lines
-- @column run_id VARCHAR run the walk belongs to (runs.run_id)
-- @column label VARCHAR label of that run
-- @column walk_id BIGINT unique within the run: the input line number of the walk's first record
-- @column evidence VARCHAR tracepoint, function-graph, kprobe, perf-callchain or counters
-- @column page_type VARCHAR ksm, anon or file
-- @column pid INTEGER thread that executed the walk
-- @column comm VARCHAR its name as printed (function_graph cuts it to 7 characters)
-- @column cpu INTEGER CPU the walk started on (the CPU of its end when the start was not seen)
-- @column start_ns BIGINT walk entry, ns (NULL when the trace began inside the walk)
-- @column end_ns BIGINT walk return, ns (NULL when the return was not seen)
-- @column duration_ns BIGINT end - start, or the duration the producer printed (function_graph, v4 tracepoint, ksm_walk walk_ns)
-- @column complete BOOLEAN both ends seen, no loss marker or CPU loss gap inside [start_ns, end_ns], inside the run's complete interval (run_coverage), not moved into a CPU whose buffer starts after the task left its old one, span and printed duration agree, no window longer than the walk; perf-callchain: also lies wholly inside the trace
-- @column n_windows BIGINT lock windows (anon_vma read-lock acquisitions); perf-callchain: gaps = n_events - 1
-- @column max_hold_ns BIGINT longest window hold, ns
-- @column total_hold_ns BIGINT sum of window holds, ns
-- @column iterations BIGINT interval-tree iterations (chains returned) over the walk
-- @column max_window_iterations BIGINT most iterations in one window
-- @column rmap_one BIGINT rmap_one callback invocations (perf-callchain: n_events)
-- @column skipped BIGINT iterations - rmap_one - invalid
-- @column skip_addr BIGINT skips because the rmap_item address lies outside the VMA (counters, argument-fetching probes)
-- @column skip_mm BIGINT skips because the VMA's mm is wrong for the pass (counters, argument-fetching probes)
-- @column caller VARCHAR walk caller: first caller frame outside rmap_walk*, the kretprobe's caller, the funcgraph-retaddr symbol
-- @column slow_windows BIGINT windows acquired with down_read after a failed trylock
-- @column bailout BOOLEAN the walk returned because a trylock failed (rwc->try_lock)
-- @column invalid BIGINT invalid_vma rejections
-- @column early_exit BOOLEAN the walk returned from inside the loop (rmap_one or done stopped it)
-- @column n_events BIGINT perf-callchain: selected events in the walk; counters: counter lines
CREATE OR REPLACE VIEW walks AS
SELECT run_id, label, walk_id::BIGINT AS walk_id, evidence, page_type, pid::INTEGER AS pid, comm,
       cpu::INTEGER AS cpu, start_ns::BIGINT AS start_ns, end_ns::BIGINT AS end_ns,
       duration_ns::BIGINT AS duration_ns, paired AS complete,
       n_windows::BIGINT AS n_windows, max_hold_ns::BIGINT AS max_hold_ns, total_hold_ns::BIGINT AS total_hold_ns,
       iterations::BIGINT AS iterations, max_window_iterations::BIGINT AS max_window_iterations,
       rmap_one::BIGINT AS rmap_one, skipped::BIGINT AS skipped, skip_addr::BIGINT AS skip_addr,
       skip_mm::BIGINT AS skip_mm, caller, slow_windows::BIGINT AS slow_windows, bailout,
       invalid::BIGINT AS invalid, early_exit, n_events::BIGINT AS n_events
FROM _walk_parts WHERE part = 'walk';
