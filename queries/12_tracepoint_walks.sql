-- ksmtrace walk reconstruction, evidence (a): the proposed rmap tracepoints (docs/walk-rules.md (a)).
-- Private; the public view is `walks` (20_walks.sql).
--
-- Every per-kind table macro `_<kind>_out()` (over `_ev`, 11_scan.sql) returns walk rows (part = 'walk') and
-- lock-window rows (part = 'window') keyed by the run key rk, with only the columns its evidence gives; the
-- kinds are combined with UNION ALL BY NAME in _walk_parts (20_walks.sql), which fills the other columns
-- with NULL. The columns a kind may give: walk_id, window_no, evidence, page_type, pid, comm, cpu, start_ns,
-- end_ns, duration_ns, paired (both ends seen; the loss check is applied in 18_walk_completeness.sql),
-- n_windows, max_hold_ns, total_hold_ns, iterations, max_window_iterations, rmap_one, skipped, skip_addr,
-- skip_mm, caller, slow_windows, bailout, invalid, early_exit, n_events, start_line, end_line, hold_ns,
-- slow, counters_consistent (meanings: the @column lines of 20_walks.sql and 21_lock_windows.sql).
-- walk_id is the input line number of the walk's first record (its start event, or its end event when
-- the start is missing): unique within a run, and it points back into the trace file.

-- v5+ pairing: per key (run, pid, folio, rwc) a LIFO stack in (ts, line_no) order (_lifo_pairs,
-- 10_helpers.sql). v4: one rmap_walk event at the end of the walk, with its duration.
CREATE OR REPLACE MACRO _tp_out() AS TABLE
WITH tp_rows AS (
    SELECT e.rk, e.line_no, e.ts_ns, e.cpu, e.pid, e.comm, e.event, e.folio, e.rwc,
           e.tp_page_type AS page_type, e.tp_duration_ns,
           -- caller: from the event's callchain (perf -g), or from its ftrace <stack trace> record
           coalesce(e.tp_caller, st.tp_caller) AS caller
    FROM _ev_rare() e
    LEFT JOIN (SELECT rk, _stack_host_line(line_no) AS host_line, pid, tp_caller FROM _ev_rare() WHERE ev_kind = 'stack') st
           ON st.rk = e.rk AND st.host_line = e.line_no AND st.pid = e.pid
    WHERE e.ev_kind = 'tracepoint'
), _lifo_in AS (
    SELECT {'rk': rk, 'pid': pid, 'folio': folio, 'rwc': rwc} AS k, ts_ns AS o1, line_no AS o2,
           CASE WHEN event = 'rmap_walk_start' THEN 1 ELSE -1 END AS d,
           {'ts_ns': ts_ns, 'line_no': line_no, 'caller': caller} AS v,
           rk, line_no, ts_ns, cpu, pid, comm, page_type, caller
    FROM tp_rows WHERE event IN ('rmap_walk_start', 'rmap_walk_end')
), paired AS (
    SELECT * FROM _lifo_pairs()
), tp_walks AS (
    -- paired and unpaired starts; cpu = the start's CPU
    SELECT rk, line_no AS walk_id, page_type, pid, comm, cpu, ts_ns AS start_ns,
           CASE WHEN nxt_d = -1 THEN nxt_v.ts_ns END AS end_ns,
           nxt_d IS NOT DISTINCT FROM -1 AS paired,
           coalesce(caller, CASE WHEN nxt_d = -1 THEN nxt_v.caller END) AS caller,
           line_no AS start_line, CASE WHEN nxt_d = -1 THEN nxt_v.line_no END AS end_line
    FROM paired WHERE d = 1
    UNION ALL BY NAME
    -- unmatched ends (start before the trace began, or lost): cpu = the end's CPU (the only one seen)
    SELECT rk, line_no AS walk_id, page_type, pid, comm, cpu, NULL::BIGINT AS start_ns, ts_ns AS end_ns,
           false AS paired, caller, NULL::BIGINT AS start_line, line_no AS end_line
    FROM paired WHERE d = -1 AND level IS NULL
    UNION ALL BY NAME
    -- v4: one event at the end of the walk, start = end - duration_ns
    SELECT rk, line_no AS walk_id, page_type, pid, comm, cpu, ts_ns - tp_duration_ns AS start_ns, ts_ns AS end_ns,
           true AS paired, caller, line_no AS start_line, line_no AS end_line
    FROM tp_rows WHERE event = 'rmap_walk'
)
-- caller: the first frame outward from rmap_walk* that is not one of the rmap_walk family
SELECT 'walk' AS part, rk, walk_id, 'tracepoint' AS evidence, page_type, pid, comm, cpu, start_ns, end_ns,
       end_ns - start_ns AS duration_ns, paired, caller, start_line, end_line
FROM tp_walks;
