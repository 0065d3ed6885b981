-- ksmtrace walk reconstruction, evidence (b): function_graph with rmap_walk_ksm (or rmap_walk_anon /
-- rmap_walk_file) as graph function (kernel.md §6.2, walk_rules.md (b)). Private; the public views are
-- `walks` and `lock_windows` (20_walks.sql, 21_lock_windows.sql).
--
-- Every per-kind view `_<kind>_out` returns walk rows (part = 'walk') and lock-window rows
-- (part = 'window') in one relation (columns listed in 11_tracepoint_walks.sql), so that one query
-- computes each kind once.
--
-- Nesting is tracked per task (run, pid), never per CPU (a walk may move CPUs in cond_resched()), in file
-- order (line_no): the order in which the tracer printed the task's calls. Performance: three sorts in
-- all (task order for membership, walk order twice for the children), no self-joins.

-- a hold clamped at 0 (NULL stays NULL: greatest() would turn it into 0): start_ns is the trylock's whole-µs
-- entry plus its printed sub-µs duration, end_ns the up_read's whole-µs timestamp, so a hold shorter than the
-- timestamp resolution can come out below 0
CREATE OR REPLACE MACRO _hold0(h) AS CASE WHEN h < 0 THEN 0 ELSE h END;

CREATE OR REPLACE MACRO _fg_out() AS TABLE
WITH walkers AS (SELECT func, page_type FROM _rmap_walkers),
-- fc / kc / rz: function, kind and retval codes of 11_scan.sql (narrow rows for the sorts)
r AS MATERIALIZED (
    SELECT rk, line_no, ts_ns, cpu, pid, depth, duration_ns, fc, kc, rz, wfunc FROM _ev WHERE cls = 1
),
-- (1) task order: the walk each row lies in = the task's last walker entry, when no walker exit came after
-- it (the parser names the function on every closing line, from the braces or the tail comment)
a AS (
    SELECT *,
           last_value(CASE WHEN fc = 9 AND kc = 0 THEN line_no END IGNORE NULLS) OVER t AS cw_line,
           last_value(CASE WHEN fc = 9 AND kc = 0 THEN depth END IGNORE NULLS) OVER t AS cw_depth,
           last_value(CASE WHEN fc = 9 AND kc = 2 THEN line_no END IGNORE NULLS) OVER t AS cx_line
    FROM r
    WINDOW t AS (PARTITION BY rk, pid ORDER BY line_no ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
-- children (depth = walk depth + 1) with the closing lines of nested children; deeper rows are ignored
c0 AS (
    SELECT rk, cw_line AS walk_id, line_no, ts_ns, fc, kc, duration_ns, rz
    FROM a
    WHERE cw_line IS NOT NULL AND line_no > cw_line AND (cx_line IS NULL OR cx_line < cw_line)
      AND depth = cw_depth + 1
),
-- (2) walk order: what follows each child. A nested child's entry is followed by its own closing line.
c1 AS (
    SELECT *,
           lead(kc) OVER k AS nxt_kc, lead(ts_ns) OVER k AS nxt_ts, lead(rz) OVER k AS nxt_rz,
           lead(fc) OVER k AS nxt_fc, lead(fc, 2) OVER k AS nxt2_fc,
           -- next child that is a callback, an iterator or up_read (decides an invalid_vma without retval)
           first_value(CASE WHEN kc <> 2 AND fc IN (3, 4, 5) THEN fc END IGNORE NULLS)
               OVER (PARTITION BY rk, walk_id ORDER BY line_no ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)
               AS next_key_fc
    FROM c0
    WINDOW k AS (PARTITION BY rk, walk_id ORDER BY line_no)
),
c3 AS (
    SELECT rk, walk_id, line_no, ts_ns, fc, nxt_fc_child AS next_fc, ret_zero AS rz, ret_ns,
           -- trylock success: retval != 0 when printed; without retval: not followed by a down_read child and
           -- not the walk's last child (walk_rules.md (b))
           fc = 1 AND CASE WHEN ret_zero IS NOT NULL THEN NOT ret_zero
                           ELSE nxt_fc_child IS NOT NULL AND nxt_fc_child <> 2 END AS try_ok,
           -- invalid_vma rejection: retval != 0; without retval: no callback before the next iterator / up_read
           fc = 6 AND CASE WHEN ret_zero IS NOT NULL THEN NOT ret_zero
                           ELSE next_key_fc IS DISTINCT FROM 5 END AS inv_yes
    FROM (
        SELECT *,
               -- retval of the child: the leaf's own, or its closing line's
               CASE WHEN kc = 1 THEN rz WHEN nxt_kc = 2 THEN nxt_rz END AS ret_zero,
               -- return time: leaf = ts + printed duration; nested = ts of its closing line
               CASE WHEN kc = 1 THEN ts_ns + duration_ns WHEN nxt_kc = 2 THEN nxt_ts END AS ret_ns,
               CASE WHEN kc = 0 AND nxt_kc = 2 THEN nxt2_fc ELSE nxt_fc END AS nxt_fc_child
        FROM c1 WHERE kc <> 2
    )
),
-- (3) walk order again: window membership. A window starts at a successful trylock or at a down_read (the
-- slow path after a failed one) and ends at the next up_read; wno = running count of starts; a child is
-- inside its window when no up_read lies between the window's start and the child.
c AS (
    SELECT *,
           fc = 1 AND NOT try_ok AS try_fail,
           try_ok OR fc = 2 AS win_start,
           sum(CASE WHEN try_ok OR fc = 2 THEN 1 ELSE 0 END) OVER k AS wno,
           last_value(CASE WHEN try_ok OR fc = 2 THEN line_no END IGNORE NULLS) OVER k AS ws_line,
           last_value(CASE WHEN fc = 3 THEN line_no END IGNORE NULLS)
               OVER (PARTITION BY rk, walk_id ORDER BY line_no ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
               AS up_before
    FROM c3
    WINDOW k AS (PARTITION BY rk, walk_id ORDER BY line_no ROWS UNBOUNDED PRECEDING)
),
cm AS MATERIALIZED (
    SELECT rk, walk_id, line_no, ts_ns, fc, next_fc, rz, ret_ns, try_ok, inv_yes, try_fail, win_start, wno,
           wno > 0 AND line_no > ws_line AND (up_before IS NULL OR up_before < ws_line) AS inside
    FROM c
),
win AS MATERIALIZED (
    SELECT rk, walk_id, wno AS window_no,
           min(ret_ns) FILTER (WHERE win_start) AS start_ns,
           min(ts_ns) FILTER (WHERE fc = 3 AND inside) AS end_ns,
           -- iterations: with retval, iterator calls that returned non-zero; without retval all calls, minus
           -- the last one when it is directly followed by this window's up_read (it returned NULL, ending the loop)
           count(*) FILTER (WHERE inside AND fc = 4 AND rz IS NOT true)
             - CASE WHEN arg_max_null(rz IS NULL AND next_fc IS NOT DISTINCT FROM 3, line_no)
                             FILTER (WHERE inside AND fc = 4) THEN 1 ELSE 0 END AS iterations_raw,
           count(*) FILTER (WHERE inside AND fc = 5) AS rmap_one,
           count(*) FILTER (WHERE inside AND inv_yes) AS invalid,
           bool_or(fc = 2 AND win_start) AS slow,
           -- the window's last iterator call returned a chain: followed by rmap_one/done, not by up_read
           arg_max_null(CASE WHEN rz IS NOT NULL THEN NOT rz ELSE next_fc IS DISTINCT FROM 3 END, line_no)
               FILTER (WHERE inside AND fc = 4) AS last_iter_hit
    FROM cm WHERE wno > 0
    -- a window whose up_read was not seen (the trace ends inside it) is kept: the lock was acquired
    -- (kernel.md §6.0 n_windows = successful acquisitions); its end_ns / hold_ns are NULL
    GROUP BY rk, walk_id, wno
),
iter_runs AS (SELECT DISTINCT rk FROM r WHERE fc = 4),
-- walks: walker entries paired with the next walker row at the same depth when it is an exit; exits of a
-- walker without entry (the trace began inside the walk)
wr AS (
    SELECT r.rk, r.line_no, r.ts_ns, r.cpu, r.pid, r.wfunc AS func, r.depth, r.kc, r.duration_ns,
           lead(r.kc) OVER d AS nxt_kc, lead(r.ts_ns) OVER d AS nxt_ts, lead(r.duration_ns) OVER d AS nxt_dur,
           lead(r.line_no) OVER d AS nxt_line, lag(r.kc) OVER d AS prv_kc
    FROM r WHERE fc = 9 AND kc IN (0, 2)
    WINDOW d AS (PARTITION BY rk, pid, depth ORDER BY line_no)
),
w AS (
    SELECT rk, line_no AS walk_id, func, pid, cpu, ts_ns AS start_ns,
           CASE WHEN nxt_kc = 2 THEN nxt_ts END AS end_ns,
           CASE WHEN nxt_kc = 2 THEN nxt_dur END AS duration_ns,
           nxt_kc IS NOT DISTINCT FROM 2 AS paired,
           line_no AS start_line, CASE WHEN nxt_kc = 2 THEN nxt_line END AS end_line, true AS has_entry
    FROM wr WHERE kc = 0
    UNION ALL
    SELECT rk, line_no, func, pid, cpu, NULL, ts_ns, duration_ns, false, NULL, line_no, false
    FROM wr WHERE kc = 2 AND prv_kc IS DISTINCT FROM 0
),
wagg AS (
    -- holds clamped at 0 (_hold0)
    SELECT rk, walk_id, count(*) AS n_windows, max(_hold0(end_ns - start_ns)) AS max_hold_ns,
           sum(_hold0(end_ns - start_ns))::BIGINT AS total_hold_ns, sum(iterations_raw)::BIGINT AS iterations,
           max(iterations_raw) AS max_window_iterations, count(*) FILTER (WHERE slow) AS slow_windows,
           arg_max_null(last_iter_hit, window_no) AS early_exit
    FROM win GROUP BY rk, walk_id
),
ch AS (
    SELECT rk, walk_id, count(*) FILTER (WHERE fc = 5) AS rmap_one, count(*) FILTER (WHERE inv_yes) AS invalid,
           -- bailout: a failed trylock whose next child is the walk's end
           bool_or(try_fail AND next_fc IS NULL) AS bailout_child
    FROM cm GROUP BY rk, walk_id
),
-- comm, label and the funcgraph-retaddr caller of the entry line, fetched for the walk rows only
meta AS (
    SELECT e.rk, e.line_no, e.comm, e.parent
    FROM _ev e SEMI JOIN w ON w.rk = e.rk AND w.walk_id = e.line_no
    WHERE e.cls = 1 AND e.fc = 9
)
SELECT 'walk' AS part, w.rk AS run_id, NULL::VARCHAR AS label, w.walk_id, NULL::BIGINT AS window_no, 'function-graph' AS evidence,
       k.page_type, w.pid, meta.comm, w.cpu, w.start_ns, w.end_ns, w.duration_ns, w.paired,
       -- an exit without its entry: the children cannot be attributed, every count is NULL
       CASE WHEN has_entry THEN coalesce(wagg.n_windows, 0) END AS n_windows,
       wagg.max_hold_ns, wagg.total_hold_ns,
       -- iterations NULL (not 0) when the run traces no iterator at all (walk_rules.md (b))
       CASE WHEN has_entry AND it.rk IS NOT NULL THEN coalesce(wagg.iterations, 0) END AS iterations,
       CASE WHEN it.rk IS NOT NULL THEN wagg.max_window_iterations END AS max_window_iterations,
       CASE WHEN has_entry THEN coalesce(ch.rmap_one, 0) END AS rmap_one,
       CASE WHEN has_entry AND it.rk IS NOT NULL
            THEN coalesce(wagg.iterations, 0) - coalesce(ch.rmap_one, 0) - coalesce(ch.invalid, 0) END AS skipped,
       NULL::BIGINT AS skip_addr, NULL::BIGINT AS skip_mm,
       CASE WHEN has_entry THEN _sym(meta.parent) END AS caller,  -- funcgraph-retaddr comment, when printed
       CASE WHEN has_entry THEN coalesce(wagg.slow_windows, 0) END AS slow_windows,
       CASE WHEN has_entry THEN coalesce(ch.bailout_child, false) AND w.paired END AS bailout,
       CASE WHEN has_entry THEN coalesce(ch.invalid, 0) END AS invalid,
       -- no window, or no iterator in the last window: the walk did not return from inside the loop
       CASE WHEN has_entry AND it.rk IS NOT NULL THEN coalesce(wagg.early_exit, false) END AS early_exit,
       NULL::BIGINT AS n_events, w.start_line, w.end_line,
       NULL::BIGINT AS hold_ns, NULL::BOOLEAN AS slow, NULL::BOOLEAN AS counters_consistent
FROM w
JOIN walkers k ON k.func = w.func
LEFT JOIN meta ON meta.rk = w.rk AND meta.line_no = w.walk_id
LEFT JOIN wagg ON wagg.rk = w.rk AND wagg.walk_id = w.walk_id
LEFT JOIN ch ON ch.rk = w.rk AND ch.walk_id = w.walk_id
LEFT JOIN iter_runs it ON it.rk = w.rk
UNION ALL
SELECT 'window', f.rk, NULL, f.walk_id, f.window_no, 'function-graph', NULL, NULL, NULL, NULL,
       f.start_ns, f.end_ns, NULL, NULL, NULL, NULL, NULL,
       CASE WHEN it.rk IS NOT NULL THEN f.iterations_raw END, NULL, f.rmap_one,
       CASE WHEN it.rk IS NOT NULL THEN f.iterations_raw - f.rmap_one - f.invalid END,
       NULL, NULL, NULL, NULL, NULL, f.invalid, NULL, NULL, NULL, NULL,
       _hold0(f.end_ns - f.start_ns), f.slow, NULL  -- clamped at 0, see wagg
FROM win f LEFT JOIN iter_runs it ON it.rk = f.rk;
