-- ksmtrace walk reconstruction: the completeness rules of issue #16 (rules in 02_coverage.sql), as one
-- branch of _incomplete_walks() (18_walk_completeness.sql). Private.

-- _walk_rows_all: an empty stand-in with the columns the macros of this file and of 18_walk_completeness.sql
-- read, defined here once (this file is read first); _walk_parts (20_walks.sql) computes the real relation
CREATE OR REPLACE VIEW _walk_rows_all AS
SELECT NULL::UBIGINT AS rk, NULL::BIGINT AS walk_id, NULL::BIGINT AS start_ns, NULL::BIGINT AS end_ns,
       NULL::BIGINT AS start_line, NULL::BIGINT AS end_line, NULL::VARCHAR AS evidence,
       NULL::BIGINT AS duration_ns, NULL::BIGINT AS max_hold_ns, NULL::INTEGER AS pid
WHERE false;

-- _walk_coverage(): (rk, walk_id) of the walks of the relation `_walk_rows_all` (the walks of every kind,
-- before the completeness rules) that lie in a
-- stretch some CPU's buffer lost, cross into a CPU whose buffer starts after them, or contradict
-- themselves. Reads `_ev` (11_scan.sql) for the loss markers and the tasks' CPU changes.
-- Gaps as rows (rk, hi, min_lo) for one ASOF join: a walk [s, e] overlaps a gap (lo, hi] when the row with
-- the smallest hi > s has min_lo < e (min_lo = the smallest lo of the gaps with hi > s): before
-- complete_start_ns, after complete_end_ns, and each per-CPU loss marker's gap.
CREATE OR REPLACE MACRO _walk_coverage() AS TABLE
WITH rc AS (
    SELECT hash(c.run_id) AS rk, c.run_id, c.first_ts_ns, c.complete_start_ns, c.complete_end_ns, c.last_ts_ns,
           r.ts_resolution_ns,
           -- the CPU-change rule: function_graph `trace` snapshots without per-CPU stats
           json_extract_string(r.meta, '$.tracefs_snapshot') = 'true' AND json_type(r.meta, '$.per_cpu_stats')
               IS DISTINCT FROM 'OBJECT' AS cross_rule
    FROM run_coverage c JOIN runs r ON r.run_id = c.run_id
),
-- how far the printed timestamps can under-read time in this run (02_coverage.sql, Consistency): the
-- largest amount by which a walk's printed duration exceeds its span (end - start); 0 on a healthy clock
clock AS (
    SELECT rk, max(duration_ns - (end_ns - start_ns)) AS lag_ns
    FROM _walk_rows_all
    WHERE evidence = 'function-graph' AND start_ns IS NOT NULL AND end_ns IS NOT NULL AND duration_ns IS NOT NULL
    GROUP BY rk
),
mk AS (SELECT rk, cpu, line_no, ts_ns FROM _ev WHERE ev_kind = 'lost' AND cpu IS NOT NULL),
-- the records around each marker on its CPU: every event of the run, not only the walk rows of _ev
near AS (
    SELECT hash(run_id) AS rk, cpu, line_no, ts_ns FROM events
    WHERE event <> '__lost_events' AND ts_ns IS NOT NULL AND cpu IS NOT NULL
      AND run_id IN (SELECT run_id FROM runs WHERE hash(run_id) IN (SELECT rk FROM mk))
),
gaps AS (
    SELECT m.rk, coalesce(p.ts_ns, -9223372036854775807) AS lo,
           coalesce(m.ts_ns, n.ts_ns, 9223372036854775807) AS hi
    FROM mk m
    ASOF LEFT JOIN near p ON p.rk = m.rk AND p.cpu = m.cpu AND p.line_no < m.line_no
    ASOF LEFT JOIN near n ON n.rk = m.rk AND n.cpu = m.cpu AND n.line_no > m.line_no
    UNION ALL
    SELECT rk, -9223372036854775807, complete_start_ns FROM rc WHERE complete_start_ns > first_ts_ns
    UNION ALL  -- every run has this row: after complete_end_ns (or nothing, lo = +inf)
    SELECT rk, CASE WHEN complete_end_ns < last_ts_ns THEN complete_end_ns ELSE 9223372036854775807 END,
           9223372036854775807 FROM rc
),
sg AS (SELECT rk, hi, min(lo) OVER (PARTITION BY rk ORDER BY hi DESC) AS min_lo FROM gaps),
-- CPU changes of a task (function_graph rows, in the task's file order; only runs the rule applies to).
-- Performance: a hole needs the task's previous row before the first event of the CPU it moved to, so
-- before m = the latest first event of any CPU of the run; such previous rows lie at or before line l
-- (the last row with ts < m), and every row after l is later than m. So the pairs are found among the
-- rows up to l and each task's first row after l (its successor there), not in a window over every row.
-- the first event of each CPU of those runs (cpu_coverage, computed once for both readers below)
cross_cpus AS MATERIALIZED (
    SELECT rc.rk, cc.cpu, cc.first_ts_ns FROM rc JOIN cpu_coverage cc ON cc.run_id = rc.run_id WHERE rc.cross_rule
),
fg_task_rows AS (
    SELECT rk, pid, cpu, line_no, ts_ns
    FROM _ev WHERE ev_kind = 'funcgraph' AND ts_ns IS NOT NULL AND cpu IS NOT NULL
               AND rk IN (SELECT rk FROM rc WHERE cross_rule)
),
early_end AS (
    SELECT f.rk, max(f.line_no) AS l
    FROM fg_task_rows f
    JOIN (SELECT rk, max(first_ts_ns) AS m FROM cross_cpus GROUP BY rk) c ON c.rk = f.rk
    WHERE f.ts_ns < c.m
    GROUP BY f.rk
),
tk AS (
    SELECT rk, pid, cpu, lag(cpu) OVER t AS pcpu, lag(ts_ns) OVER t AS pts
    FROM (SELECT f.* FROM fg_task_rows f JOIN early_end e ON e.rk = f.rk WHERE f.line_no <= e.l
          UNION ALL
          SELECT f.rk, f.pid, arg_min(f.cpu, f.line_no), min(f.line_no), arg_min(f.ts_ns, f.line_no)
          FROM fg_task_rows f JOIN early_end e ON e.rk = f.rk WHERE f.line_no > e.l
          GROUP BY f.rk, f.pid)
    WINDOW t AS (PARTITION BY rk, pid ORDER BY line_no)
),
holes AS (
    SELECT tk.rk, tk.pid, tk.pts AS lo, cc.first_ts_ns AS hi
    FROM tk JOIN cross_cpus cc ON cc.rk = tk.rk AND cc.cpu = tk.cpu
    WHERE tk.cpu <> tk.pcpu AND cc.first_ts_ns > tk.pts
),
w AS (SELECT * FROM _walk_rows_all WHERE start_ns IS NOT NULL AND end_ns IS NOT NULL)
SELECT w.rk, w.walk_id
FROM w
ASOF LEFT JOIN sg ON sg.rk = w.rk AND sg.hi > w.start_ns
LEFT JOIN rc ON rc.rk = w.rk
LEFT JOIN clock ON clock.rk = w.rk
WHERE sg.min_lo < w.end_ns
   OR _walk_inconsistent(w.evidence, w.start_ns, w.end_ns, w.duration_ns, w.max_hold_ns,
                         coalesce(rc.ts_resolution_ns, 1000) + greatest(clock.lag_ns, 0))
UNION
SELECT w.rk, w.walk_id
FROM w JOIN holes h ON h.rk = w.rk AND h.pid = w.pid AND h.lo < w.end_ns AND h.hi > w.start_ns;
