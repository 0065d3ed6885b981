-- ksmtrace walk reconstruction, evidence (a): the proposed rmap tracepoints (kernel.md §6.1,
-- walk_rules.md (a)). Private; the public view is `walks` (20_walks.sql).
--
-- Every per-kind table macro `_<kind>_out()` (over `_ev`, 11_scan.sql) returns walk rows (part = 'walk') and lock-window rows
-- (part = 'window') with the same 34 columns, in this order:
--   part, run_id, label, walk_id, window_no, evidence, page_type, pid, comm, cpu, start_ns, end_ns,
--   duration_ns, paired (both ends seen; the loss check is applied in 20_walks.sql), n_windows,
--   max_hold_ns, total_hold_ns, iterations, max_window_iterations, rmap_one, skipped, skip_addr, skip_mm,
--   caller, slow_windows, bailout, invalid, early_exit, n_events, start_line, end_line, hold_ns, slow,
--   counters_consistent
-- walk_id is the input line number of the walk's first record (its start event, or its end event when
-- the start is missing): unique within a run, and it points back into the trace file.

-- v5+ pairing: per key (run, pid, folio, rwc) a LIFO stack in (ts, line_no) order. Done without joins:
-- stack depth after each row S = P - min(0, running min of P), P = running sum of +1 (start) / -1 (end)
-- (a stack that never goes below empty: an end on an empty stack is unmatched and changes nothing).
-- A start sits at level S; a matched end (depth before it > 0) pops level S_before. At one level, pushes
-- and pops alternate, so a start pairs with the next row at its level iff that row is an end.
CREATE OR REPLACE MACRO _tp_out() AS TABLE
WITH t AS (
    SELECT e.rk, e.line_no, e.ts_ns, e.cpu, e.pid, e.comm, e.event, e.folio, e.rwc,
           e.tp_page_type AS page_type, e.tp_duration_ns,
           -- caller: from the event's callchain (perf -g), or from its ftrace <stack trace> record
           coalesce(e.tp_caller, s.tp_caller) AS caller
    FROM _ev e
    LEFT JOIN (SELECT rk, line_no - 1 AS host, pid, tp_caller FROM _ev WHERE cls = 8) s
           ON s.rk = e.rk AND s.host = e.line_no AND s.pid = e.pid
    WHERE e.cls = 3
), s AS (
    SELECT *, CASE WHEN event = 'rmap_walk_start' THEN 1 ELSE -1 END AS d
    FROM t WHERE event IN ('rmap_walk_start', 'rmap_walk_end')
), p AS (
    SELECT *, sum(d) OVER k AS psum
    FROM s WINDOW k AS (PARTITION BY rk, pid, folio, rwc ORDER BY ts_ns, line_no ROWS UNBOUNDED PRECEDING)
), q AS (
    SELECT *, psum - least(0, min(psum) OVER k) AS depth_after
    FROM p WINDOW k AS (PARTITION BY rk, pid, folio, rwc ORDER BY ts_ns, line_no ROWS UNBOUNDED PRECEDING)
), l AS (
    SELECT *,
           CASE WHEN d = 1 THEN depth_after
                WHEN lag(depth_after, 1, 0) OVER k > 0 THEN lag(depth_after, 1, 0) OVER k END AS level
    FROM q WINDOW k AS (PARTITION BY rk, pid, folio, rwc ORDER BY ts_ns, line_no)
), pr AS (
    SELECT *,
           lead(d) OVER m AS nxt_d, lead(ts_ns) OVER m AS nxt_ts, lead(line_no) OVER m AS nxt_line,
           lead(caller) OVER m AS nxt_caller
    FROM l
    WINDOW m AS (PARTITION BY rk, pid, folio, rwc, level ORDER BY ts_ns, line_no)
), raw AS (
    -- paired and unpaired starts; cpu = the start's CPU
    SELECT rk, line_no AS walk_id, page_type, pid, comm, cpu, ts_ns AS start_ns,
           CASE WHEN nxt_d = -1 THEN nxt_ts END AS end_ns,
           nxt_d IS NOT DISTINCT FROM -1 AS paired,
           coalesce(caller, CASE WHEN nxt_d = -1 THEN nxt_caller END) AS caller,
           line_no AS start_line, CASE WHEN nxt_d = -1 THEN nxt_line END AS end_line
    FROM pr WHERE d = 1
    UNION ALL
    -- unmatched ends (start before the trace began, or lost): cpu = the end's CPU (the only one seen)
    SELECT rk, line_no, page_type, pid, comm, cpu, NULL::BIGINT, ts_ns, false, caller, NULL::BIGINT, line_no
    FROM pr WHERE d = -1 AND level IS NULL
    UNION ALL
    -- v4: one event at the end of the walk, start = end - duration_ns
    SELECT rk, line_no, page_type, pid, comm, cpu, ts_ns - tp_duration_ns, ts_ns, true, caller, line_no, line_no
    FROM t WHERE event = 'rmap_walk'
)
SELECT 'walk' AS part, rk AS run_id, NULL::VARCHAR AS label, walk_id, NULL::BIGINT AS window_no, 'tracepoint' AS evidence,
       page_type, pid, comm, cpu, start_ns, end_ns, end_ns - start_ns AS duration_ns, paired,
       NULL::BIGINT AS n_windows, NULL::BIGINT AS max_hold_ns, NULL::BIGINT AS total_hold_ns,
       NULL::BIGINT AS iterations, NULL::BIGINT AS max_window_iterations, NULL::BIGINT AS rmap_one,
       NULL::BIGINT AS skipped, NULL::BIGINT AS skip_addr, NULL::BIGINT AS skip_mm,
       caller,  -- (a) first frame outward from rmap_walk* that is not one of the rmap_walk family
       NULL::BIGINT AS slow_windows, NULL::BOOLEAN AS bailout, NULL::BIGINT AS invalid,
       NULL::BOOLEAN AS early_exit, NULL::BIGINT AS n_events, start_line, end_line,
       NULL::BIGINT AS hold_ns, NULL::BOOLEAN AS slow, NULL::BOOLEAN AS counters_consistent
FROM raw;
