-- ksmtrace walk reconstruction: which walks are incomplete although both their ends were seen
-- (docs/walk-rules.md, "Complete walks"). Private; used by _walk_parts (20_walks.sql), which computes the
-- relation `_walk_rows_all` (every kind's walk rows) once. Needs the empty stand-in view `_walk_rows_all`
-- that 18_coverage_gaps.sql defines (it is read when the macro below is defined; see 17_counter_walks.sql
-- for why stand-ins). A new completeness rule is one more UNION branch of _incomplete_walks().

-- loss: a __lost_events row of the run inside [start_ns, end_ns] (a marker without ts: by line number),
-- counted without a range join: n(x) = markers at or before x (ASOF lookups in the cumulative counts);
-- the walk is lossy when n(end) - n(before start) > 0
CREATE OR REPLACE MACRO _incomplete_walks() AS TABLE
WITH lost_by_ts AS MATERIALIZED (
    SELECT rk, ts_ns, row_number() OVER (PARTITION BY rk ORDER BY ts_ns) AS n
    FROM _ev WHERE ev_kind = 'lost' AND ts_ns IS NOT NULL
), lost_by_line AS MATERIALIZED (
    SELECT rk, line_no, row_number() OVER (PARTITION BY rk ORDER BY line_no) AS n
    FROM _ev WHERE ev_kind = 'lost' AND ts_ns IS NULL
)
SELECT a.rk, a.walk_id FROM _walk_rows_all a
ASOF JOIN lost_by_ts e ON e.rk = a.rk AND e.ts_ns <= a.end_ns
ASOF LEFT JOIN lost_by_ts s ON s.rk = a.rk AND s.ts_ns < a.start_ns
WHERE a.start_ns IS NOT NULL AND e.n - coalesce(s.n, 0) > 0
UNION
SELECT a.rk, a.walk_id FROM _walk_rows_all a
ASOF JOIN lost_by_line e ON e.rk = a.rk AND e.line_no <= a.end_line
ASOF LEFT JOIN lost_by_line s ON s.rk = a.rk AND s.line_no < a.start_line
WHERE a.start_line IS NOT NULL AND e.n - coalesce(s.n, 0) > 0
UNION  -- issue #16: CPU buffer coverage, loss gaps, consistency (18_coverage_gaps.sql)
SELECT rk, walk_id FROM _walk_coverage();
