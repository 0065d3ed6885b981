-- ksmtrace walk reconstruction, evidence (e) continued: which walk a counter line belongs to
-- (docs/walk-rules.md (e)). A counter line inside a walk of another kind fills that walk's NULL columns
-- (and is its window when it has none of its own); the other lines form walks of their own (evidence
-- counters). Private; used by _walk_parts (20_walks.sql), which computes the relations these macros read
-- once, as MATERIALIZED CTEs of the same names. The views below stand in for them when the macros are
-- defined: empty, with the columns the macros read (a stand-in that expanded the kinds' macros would cost
-- seconds of binding per connection); outside _walk_parts, query _walk_parts or its public views.

-- the walks and windows of every other kind (12_* .. 15_*, combined with UNION ALL BY NAME in _walk_parts)
CREATE OR REPLACE VIEW _kind_parts AS
SELECT NULL::VARCHAR AS part, NULL::UBIGINT AS rk, NULL::INTEGER AS pid, NULL::BIGINT AS walk_id,
       NULL::VARCHAR AS evidence, NULL::BIGINT AS start_ns, NULL::BIGINT AS end_ns, NULL::BIGINT AS n_windows,
       NULL::BIGINT AS start_line, NULL::BIGINT AS end_line
WHERE false;

CREATE OR REPLACE VIEW _counter_line_rows AS SELECT * FROM _counter_lines();

-- counter lines owned by a walk of another kind (same run and pid, start_ns <= ts <= end_ns): per kind, the
-- latest walk that starts at or before the line (a running last_value over walk starts and lines in time
-- order; no range join), when the line is not after that walk's end
CREATE OR REPLACE MACRO _counter_owned() AS TABLE
WITH timed_walks AS (
    SELECT rk, pid, walk_id, evidence, start_ns, end_ns, n_windows FROM _kind_parts
    WHERE part = 'walk' AND start_ns IS NOT NULL AND end_ns IS NOT NULL
), lines_per_kind AS (
    SELECT l.rk, l.pid, l.line_no, l.ts_ns, e.evidence
    FROM _counter_line_rows l
    JOIN (SELECT DISTINCT rk, pid, evidence FROM timed_walks) e ON e.rk = l.rk AND e.pid = l.pid
), latest_walk_start AS (
    SELECT rk, pid, evidence, line_no, ts_ns, is_line,
           last_value(wk IGNORE NULLS) OVER (PARTITION BY rk, pid, evidence ORDER BY ts_ns, ord
                                             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS w
    FROM (SELECT rk, pid, evidence, line_no, ts_ns, 1 AS ord, true AS is_line,
                 NULL::STRUCT(id BIGINT, e BIGINT, n BIGINT) AS wk FROM lines_per_kind
          UNION ALL
          -- walk starts sort before lines of the same ts (start_ns <= ts is inclusive)
          SELECT rk, pid, evidence, NULL, start_ns, 0, false, {'id': walk_id, 'e': end_ns, 'n': n_windows}
          FROM timed_walks)
)
SELECT l.*, s.w.id AS walk_id, s.evidence, s.w.n AS owner_windows
FROM latest_walk_start s JOIN _counter_line_rows l ON l.rk = s.rk AND l.line_no = s.line_no
WHERE s.is_line AND s.w.id IS NOT NULL AND s.ts_ns <= s.w.e;

CREATE OR REPLACE VIEW _counter_owned_rows AS
SELECT *, NULL::BIGINT AS walk_id, NULL::VARCHAR AS evidence, NULL::BIGINT AS owner_windows
FROM _counter_line_rows WHERE false;

-- the other lines, with the counter walk each belongs to: consecutive lines of one pid are one walk only
-- when a ksm_walk summary line of that pid follows them (the walk ends at the summary, duration = walk_ns);
-- otherwise every line is a walk (one window; start/end = the window's; duration = hold_ns)
CREATE OR REPLACE MACRO _counter_walk_lines() AS TABLE
WITH free_lines AS (
    SELECT l.* FROM _counter_line_rows l ANTI JOIN _counter_owned_rows o ON o.rk = l.rk AND o.line_no = l.line_no
), with_summaries AS (
    SELECT rk, line_no, ts_ns, pid, false AS is_summary, NULL::BIGINT AS walk_ns, NULL::VARCHAR AS cb
    FROM free_lines
    UNION ALL
    SELECT rk, line_no, ts_ns, pid, true, walk_ns, cb FROM _counter_summaries()
), summary_groups AS (
    SELECT *,
           -- group = number of summaries before this row; a summary closes the group it is in
           coalesce(sum(is_summary::INTEGER) OVER (PARTITION BY rk, pid ORDER BY ts_ns, line_no
                                                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS g
    FROM with_summaries
), closing_summaries AS (
    SELECT rk, pid, g, line_no AS summary_line, ts_ns AS summary_ts, walk_ns, cb FROM summary_groups WHERE is_summary
)
SELECT f.*, cl.summary_line, cl.summary_ts, cl.walk_ns, cl.cb,
       CASE WHEN cl.summary_line IS NOT NULL
            THEN min(f.line_no) OVER (PARTITION BY f.rk, f.pid, gr.g) ELSE f.line_no END AS walk_id
FROM free_lines f
JOIN summary_groups gr ON gr.rk = f.rk AND gr.line_no = f.line_no AND NOT gr.is_summary
LEFT JOIN closing_summaries cl ON cl.rk = f.rk AND cl.pid = f.pid AND cl.g = gr.g;

CREATE OR REPLACE VIEW _counter_walk_line_rows AS
SELECT *, NULL::BIGINT AS summary_line, NULL::BIGINT AS summary_ts, NULL::BIGINT AS walk_ns, NULL::VARCHAR AS cb,
       NULL::BIGINT AS walk_id
FROM _counter_line_rows WHERE false;

-- what a group of counter lines (one walk's) sums to, as the columns n_windows, max_hold_ns, total_hold_ns,
-- iterations, max_window_iterations, rmap_one, skipped, skip_addr, skip_mm, invalid (unnest() it in the
-- SELECT of a GROUP BY); a sum only when every line carries the counter (_sum_if_all, docs/walk-rules.md (e)).
-- Read by _counter_walks() and _counter_fill().
CREATE OR REPLACE MACRO _counter_line_sums(hold_ns, iterations, rmap_one, skipped, skip_addr, skip_mm, invalid) AS {
    'n_windows': count(*), 'max_hold_ns': max(hold_ns), 'total_hold_ns': _sum_if_all(hold_ns),
    'iterations': _sum_if_all(iterations), 'max_window_iterations': max(iterations),
    'rmap_one': _sum_if_all(rmap_one), 'skipped': _sum_if_all(skipped), 'skip_addr': _sum_if_all(skip_addr),
    'skip_mm': _sum_if_all(skip_mm), 'invalid': _sum_if_all(invalid)};

-- the walks of evidence counters
CREATE OR REPLACE MACRO _counter_walks() AS TABLE
WITH per_walk AS (
    SELECT rk, walk_id, any_value(pid) AS pid,
           arg_min_null(comm, line_no) AS comm, arg_min_null(cpu, line_no) AS cpu,
           any_value(summary_line) AS summary_line, any_value(summary_ts) AS summary_ts,
           any_value(walk_ns) AS walk_ns, any_value(cb) AS cb,
           min(start_ns) AS first_start_ns, max(end_ns) AS last_end_ns,
           unnest(_counter_line_sums(hold_ns, iterations, rmap_one, skipped, skip_addr, skip_mm, invalid)),
           min(line_no) AS start_line, max(line_no) AS last_line
    FROM _counter_walk_line_rows GROUP BY rk, walk_id
)
SELECT 'walk' AS part, a.rk, a.walk_id, 'counters' AS evidence, 'ksm' AS page_type, a.pid, a.comm, a.cpu,
       CASE WHEN summary_line IS NOT NULL THEN summary_ts - walk_ns ELSE first_start_ns END AS start_ns,
       CASE WHEN summary_line IS NOT NULL THEN summary_ts ELSE last_end_ns END AS end_ns,
       CASE WHEN summary_line IS NOT NULL THEN walk_ns ELSE max_hold_ns END AS duration_ns,
       true AS paired, n_windows, max_hold_ns, total_hold_ns, iterations, max_window_iterations, rmap_one,
       skipped, skip_addr, skip_mm,
       cbt.caller,  -- from the summary's cb= callback symbol, when present
       invalid, n_windows AS n_events, start_line, coalesce(summary_line, last_line) AS end_line
FROM per_walk a LEFT JOIN _rmap_one_callbacks cbt ON cbt.func = _sym(a.cb);

-- per-walk sums of the lines owned by a walk of another kind: they fill that walk's NULL columns
CREATE OR REPLACE MACRO _counter_fill() AS TABLE
SELECT rk, walk_id, evidence,
       unnest(_counter_line_sums(hold_ns, iterations, rmap_one, skipped, skip_addr, skip_mm, invalid))
FROM _counter_owned_rows GROUP BY rk, walk_id, evidence;

-- counter lines as windows: of counter walks, and of walks of other kinds that have no windows of their own
CREATE OR REPLACE MACRO _counter_windows() AS TABLE
WITH window_lines AS (
    SELECT rk, walk_id, line_no, ts_ns, start_ns, end_ns, hold_ns, iterations, rmap_one, skipped, skip_addr,
           skip_mm, invalid, counters_consistent
    FROM _counter_walk_line_rows
    UNION ALL
    SELECT rk, walk_id, line_no, ts_ns, start_ns, end_ns, hold_ns, iterations, rmap_one, skipped, skip_addr,
           skip_mm, invalid, counters_consistent
    FROM _counter_owned_rows WHERE coalesce(owner_windows, 0) = 0
)
SELECT 'window' AS part, rk, walk_id,
       row_number() OVER (PARTITION BY rk, walk_id ORDER BY ts_ns, line_no) AS window_no, 'counters' AS evidence,
       start_ns, end_ns, iterations, rmap_one, skipped, skip_addr, skip_mm, invalid, hold_ns, counters_consistent
FROM window_lines;
