-- ksmtrace walk reconstruction, evidence (b): function_graph with rmap_walk_ksm (or rmap_walk_anon /
-- rmap_walk_file) as graph function (docs/walk-rules.md (b)). Private; the public views are `walks` and
-- `lock_windows` (20_walks.sql, 21_lock_windows.sql). Output columns: see 12_tracepoint_walks.sql.
--
-- Nesting is tracked per task (run, pid), never per CPU (a walk may move CPUs in cond_resched()), in file
-- order (line_no): the order in which the tracer printed the task's calls. Performance: one pass over every
-- row (a narrow running max in task order, which groups the iterator leaves into runs), then sorts of the
-- few other rows only: in a counting trace nearly every row is an iterator leaf (200 MB of a real 6.1
-- capture: 2.17 M of 2.2 M rows), and the row-by-row form (every leaf its own child through an ASOF join
-- and two window passes) took 2.1 s there where this takes 0.7 s; tests/test_fg_runs_equiv.py checks
-- the two agree. No self-joins.
-- "The last non-NULL x so far" is written max(x) when x is the line number itself and arg_max(x, line_no)
-- otherwise (line_no is unique in a run, arg_max skips a NULL x): running aggregates DuckDB computes with a
-- segment tree, where last_value(x IGNORE NULLS) searches back row by row (5x slower here); over every row
-- of a task, where the marks are few (walker entries), an ASOF join to the marks costs half as much again.
-- "The next non-NULL x" is lead(x IGNORE NULLS), where arg_min(x, line_no) over the following rows costs
-- twice as much. Same rules in 14_probe_walks.sql and 15_callchain_walks.sql.

-- a hold clamped at 0 (NULL stays NULL: greatest() would turn it into 0): start_ns is the trylock's whole-µs
-- entry plus its printed sub-µs duration, end_ns the up_read's whole-µs timestamp, so a hold shorter than the
-- timestamp resolution can come out below 0
CREATE OR REPLACE MACRO _hold0(h) AS CASE WHEN h < 0 THEN 0 ELSE h END;

CREATE OR REPLACE MACRO _fg_out() AS TABLE
WITH
-- fn_role / rec_kind / rz of 11_scan.sql (narrow rows for the sorts). The rows are split in two: the leaf
-- calls of an interval-tree iterator (the bulk of a counting trace: one row per chain the loop steps over)
-- and the others, the marks (walker, lock, callback and other calls, closing lines: few).
fg_marks AS MATERIALIZED (
    SELECT rk, coalesce(pid, -1099511627776) AS tk, line_no, ts_ns, cpu, pid, depth, duration_ns, fn_role,
           rec_kind, rz, wfunc
    FROM _ev WHERE ev_kind = 'funcgraph' AND NOT (fn_role = 'iterator' AND rec_kind = 'leaf')
),
-- (1) task order: the walk each mark lies in = the task's last walker entry, when no walker exit came after
-- it (the parser names the function on every closing line, from the braces or the tail comment): the latest
-- walker entry or exit row of the task at or before the row (an ASOF join), when it is an entry. The walk's
-- depth: that of the task's last walker entry with a depth (a trace-cmd record may lack it). A trace without
-- the proc column has pid NULL: one task, as in a window's PARTITION BY (the key tk = coalesce(pid, -2^40)
-- lies outside the INTEGER range).
walker_marks AS (
    SELECT rk, tk, line_no AS w_line, rec_kind AS w_rec,
           arg_max(CASE WHEN rec_kind = 'entry' THEN depth END, line_no)
               OVER (PARTITION BY rk, tk ORDER BY line_no ROWS UNBOUNDED PRECEDING) AS w_depth
    FROM fg_marks WHERE fn_role = 'walker' AND rec_kind IN ('entry', 'exit')
),
marks_in_walk AS MATERIALIZED (
    SELECT r.*, w.w_line AS cw_line, w.w_depth AS cw_depth
    FROM fg_marks r
    ASOF JOIN walker_marks w ON w.rk = r.rk AND w.tk = r.tk AND w.w_line <= r.line_no
    WHERE w.w_rec = 'entry'
),
-- iterator leaves, one row per run of them: the leaves of a task that follow one mark (the task's latest mark
-- at or before them: a running max in task order, the one pass over every row) at one depth. Between two
-- marks of a task lies no walker row, no lock call and no closing line, so such a run is consecutive among
-- its walk's children (below), lies in one lock window, and what follows each leaf but the last is another
-- iterator call: the run stands for its leaves as one child row at the line of its last leaf, with that
-- leaf's retval (rz) and n_ok = its leaves whose retval is not zero (or not printed): the iterations they count.
task_order AS (
    SELECT rk, coalesce(pid, -1099511627776) AS tk, line_no, depth, rz,
           fn_role = 'iterator' AND rec_kind = 'leaf' AS is_leaf,
           max(CASE WHEN NOT (fn_role = 'iterator' AND rec_kind = 'leaf') THEN line_no END)
               OVER (PARTITION BY rk, coalesce(pid, -1099511627776) ORDER BY line_no ROWS UNBOUNDED PRECEDING)
               AS m_line
    FROM _ev WHERE ev_kind = 'funcgraph'
),
iterator_runs AS (
    SELECT rk, tk, m_line, depth, max(line_no) AS line_no, arg_max_null(rz, line_no) AS rz,
           count(*) FILTER (WHERE rz IS NOT true) AS n_ok
    FROM task_order WHERE is_leaf AND m_line IS NOT NULL
    GROUP BY rk, tk, m_line, depth
),
-- children (depth = walk depth + 1) with the closing lines of nested children; deeper rows are ignored. A run
-- of iterator leaves lies in the walk of the mark before it.
walk_children AS (
    SELECT rk, cw_line AS walk_id, line_no, ts_ns, fn_role, rec_kind, duration_ns, rz, NULL::BIGINT AS n_ok
    FROM marks_in_walk
    WHERE line_no > cw_line AND depth = cw_depth + 1
    UNION ALL BY NAME
    SELECT r.rk, m.cw_line AS walk_id, r.line_no, NULL AS ts_ns, 'iterator'::_fn_role AS fn_role,
           'leaf'::_rec_kind AS rec_kind, NULL AS duration_ns, r.rz, r.n_ok
    FROM iterator_runs r JOIN marks_in_walk m ON m.rk = r.rk AND m.tk = r.tk AND m.line_no = r.m_line
    WHERE r.depth = m.cw_depth + 1
),
-- (2) walk order: what follows each child. A nested child's entry is followed by its own closing line.
children_next AS (
    SELECT *,
           lead(rec_kind) OVER k AS nxt_rec, lead(ts_ns) OVER k AS nxt_ts, lead(rz) OVER k AS nxt_rz,
           lead(fn_role) OVER k AS nxt_role, lead(fn_role, 2) OVER k AS nxt2_role,
           -- next child that is a callback, an iterator or up_read (decides an invalid_vma without retval)
           lead(CASE WHEN rec_kind <> 'exit' AND fn_role IN ('up_read', 'iterator', 'rmap_one') THEN fn_role END
                IGNORE NULLS) OVER k AS next_key_role
    FROM walk_children
    WINDOW k AS (PARTITION BY rk, walk_id ORDER BY line_no)
),
child_calls AS (
    SELECT *,
           -- retval of the child: the leaf's own, or its closing line's
           CASE WHEN rec_kind = 'leaf' THEN rz WHEN nxt_rec = 'exit' THEN nxt_rz END AS ret_zero,
           -- return time: leaf = ts + printed duration; nested = ts of its closing line
           CASE WHEN rec_kind = 'leaf' THEN ts_ns + duration_ns WHEN nxt_rec = 'exit' THEN nxt_ts END AS ret_ns,
           -- the role of the next child call (after a nested child's closing line)
           CASE WHEN rec_kind = 'entry' AND nxt_rec = 'exit' THEN nxt2_role ELSE nxt_role END AS next_child_role
    FROM children_next WHERE rec_kind <> 'exit'
),
child_outcomes AS (
    SELECT rk, walk_id, line_no, ts_ns, fn_role, next_child_role AS next_role, ret_zero AS rz, ret_ns,
           -- the iterations the row counts: an iterator call whose retval is not zero (a run: its n_ok)
           CASE WHEN fn_role = 'iterator' THEN coalesce(n_ok, CASE WHEN ret_zero IS NOT true THEN 1 ELSE 0 END)
                ELSE 0 END AS iter_ok,
           -- trylock success: retval != 0 when printed; without retval: not followed by a down_read child and
           -- not the walk's last child (docs/walk-rules.md (b))
           fn_role = 'trylock' AND CASE WHEN ret_zero IS NOT NULL THEN NOT ret_zero
                                        ELSE next_child_role IS NOT NULL AND next_child_role <> 'down_read' END
               AS try_ok,
           -- invalid_vma rejection: retval != 0; without retval: no callback before the next iterator / up_read
           fn_role = 'invalid_vma' AND CASE WHEN ret_zero IS NOT NULL THEN NOT ret_zero
                                            ELSE next_key_role IS DISTINCT FROM 'rmap_one' END AS inv_yes
    FROM child_calls
),
-- (3) walk order again: window membership. A window starts at a successful trylock or at a down_read (the
-- slow path after a failed one) and ends at the next up_read; wno = running count of starts; a child is
-- inside its window when no up_read lies between the window's start and the child.
window_marks AS (
    SELECT *,
           fn_role = 'trylock' AND NOT try_ok AS try_fail,
           try_ok OR fn_role = 'down_read' AS win_start,
           sum(CASE WHEN try_ok OR fn_role = 'down_read' THEN 1 ELSE 0 END) OVER k AS wno,
           max(CASE WHEN try_ok OR fn_role = 'down_read' THEN line_no END) OVER k AS ws_line,
           max(CASE WHEN fn_role = 'up_read' THEN line_no END)
               OVER (PARTITION BY rk, walk_id ORDER BY line_no ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
               AS up_before
    FROM child_outcomes
    WINDOW k AS (PARTITION BY rk, walk_id ORDER BY line_no ROWS UNBOUNDED PRECEDING)
),
child_windows AS MATERIALIZED (
    SELECT rk, walk_id, line_no, ts_ns, fn_role, next_role, rz, ret_ns, iter_ok, try_ok, inv_yes, try_fail,
           win_start, wno,
           wno > 0 AND line_no > ws_line AND (up_before IS NULL OR up_before < ws_line) AS inside
    FROM window_marks
),
windows AS MATERIALIZED (
    SELECT rk, walk_id, wno AS window_no,
           min(ret_ns) FILTER (WHERE win_start) AS start_ns,
           min(ts_ns) FILTER (WHERE fn_role = 'up_read' AND inside) AS end_ns,
           -- iterations: with retval, iterator calls that returned non-zero; without retval all calls, minus
           -- the last one when it is directly followed by this window's up_read (it returned NULL, ending the loop)
           coalesce(sum(iter_ok) FILTER (WHERE inside), 0)::BIGINT
             - CASE WHEN arg_max_null(rz IS NULL AND next_role IS NOT DISTINCT FROM 'up_read', line_no)
                             FILTER (WHERE inside AND fn_role = 'iterator') THEN 1 ELSE 0 END AS iterations_raw,
           count(*) FILTER (WHERE inside AND fn_role = 'rmap_one') AS rmap_one,
           count(*) FILTER (WHERE inside AND inv_yes) AS invalid,
           bool_or(fn_role = 'down_read' AND win_start) AS slow,
           -- the window's last iterator call returned a chain: followed by rmap_one/done, not by up_read
           arg_max_null(CASE WHEN rz IS NOT NULL THEN NOT rz ELSE next_role IS DISTINCT FROM 'up_read' END, line_no)
               FILTER (WHERE inside AND fn_role = 'iterator') AS last_iter_hit
    FROM child_windows WHERE wno > 0
    -- a window whose up_read was not seen (the trace ends inside it) is kept: the lock was acquired
    -- (docs/walk-rules.md (b): n_windows counts successful acquisitions); its end_ns / hold_ns are NULL
    GROUP BY rk, walk_id, wno
),
runs_tracing_iterators AS (SELECT DISTINCT rk FROM _ev WHERE ev_kind = 'funcgraph' AND fn_role = 'iterator'),
-- walks: walker entries paired with the next walker row at the same depth when it is an exit; exits of a
-- walker without entry (the trace began inside the walk)
walker_rows AS (
    SELECT rk, line_no, ts_ns, cpu, pid, wfunc AS func, depth, rec_kind, duration_ns,
           lead(rec_kind) OVER d AS nxt_rec, lead(ts_ns) OVER d AS nxt_ts, lead(duration_ns) OVER d AS nxt_dur,
           lead(line_no) OVER d AS nxt_line, lag(rec_kind) OVER d AS prv_rec
    FROM fg_marks WHERE fn_role = 'walker' AND rec_kind IN ('entry', 'exit')
    WINDOW d AS (PARTITION BY rk, pid, depth ORDER BY line_no)
),
fg_walks AS (
    SELECT rk, line_no AS walk_id, func, pid, cpu, ts_ns AS start_ns,
           CASE WHEN nxt_rec = 'exit' THEN nxt_ts END AS end_ns,
           CASE WHEN nxt_rec = 'exit' THEN nxt_dur END AS duration_ns,
           nxt_rec IS NOT DISTINCT FROM 'exit' AS paired,
           line_no AS start_line, CASE WHEN nxt_rec = 'exit' THEN nxt_line END AS end_line, true AS has_entry
    FROM walker_rows WHERE rec_kind = 'entry'
    UNION ALL BY NAME
    SELECT rk, line_no AS walk_id, func, pid, cpu, NULL AS start_ns, ts_ns AS end_ns, duration_ns, false AS paired,
           NULL AS start_line, line_no AS end_line, false AS has_entry
    FROM walker_rows WHERE rec_kind = 'exit' AND prv_rec IS DISTINCT FROM 'entry'
),
walk_window_totals AS (
    -- holds clamped at 0 (_hold0)
    SELECT rk, walk_id, count(*) AS n_windows, max(_hold0(end_ns - start_ns)) AS max_hold_ns,
           sum(_hold0(end_ns - start_ns))::BIGINT AS total_hold_ns, sum(iterations_raw)::BIGINT AS iterations,
           max(iterations_raw) AS max_window_iterations, count(*) FILTER (WHERE slow) AS slow_windows,
           arg_max_null(last_iter_hit, window_no) AS early_exit
    FROM windows GROUP BY rk, walk_id
),
walk_child_totals AS (
    SELECT rk, walk_id, count(*) FILTER (WHERE fn_role = 'rmap_one') AS rmap_one,
           count(*) FILTER (WHERE inv_yes) AS invalid,
           -- bailout: a failed trylock whose next child is the walk's end
           bool_or(try_fail AND next_role IS NULL) AS bailout_child
    FROM child_windows GROUP BY rk, walk_id
),
-- comm and the funcgraph-retaddr caller of the entry line, fetched for the walk rows only
walk_entry_lines AS (
    SELECT e.rk, e.line_no, e.comm, e.parent
    FROM _ev e SEMI JOIN fg_walks w ON w.rk = e.rk AND w.walk_id = e.line_no
    WHERE e.ev_kind = 'funcgraph' AND e.fn_role = 'walker'
)
SELECT 'walk' AS part, w.rk, w.walk_id, 'function-graph' AS evidence,
       k.page_type, w.pid, m.comm, w.cpu, w.start_ns, w.end_ns, w.duration_ns, w.paired,
       -- an exit without its entry: the children cannot be attributed, every count is NULL
       CASE WHEN has_entry THEN coalesce(wt.n_windows, 0) END AS n_windows,
       wt.max_hold_ns, wt.total_hold_ns,
       -- iterations NULL (not 0) when the run traces no iterator at all (docs/walk-rules.md (b))
       CASE WHEN has_entry AND it.rk IS NOT NULL THEN coalesce(wt.iterations, 0) END AS iterations,
       CASE WHEN it.rk IS NOT NULL THEN wt.max_window_iterations END AS max_window_iterations,
       CASE WHEN has_entry THEN coalesce(ct.rmap_one, 0) END AS rmap_one,
       CASE WHEN has_entry AND it.rk IS NOT NULL
            THEN coalesce(wt.iterations, 0) - coalesce(ct.rmap_one, 0) - coalesce(ct.invalid, 0) END AS skipped,
       CASE WHEN has_entry THEN _sym(m.parent) END AS caller,  -- funcgraph-retaddr comment, when printed
       CASE WHEN has_entry THEN coalesce(wt.slow_windows, 0) END AS slow_windows,
       CASE WHEN has_entry THEN coalesce(ct.bailout_child, false) AND w.paired END AS bailout,
       CASE WHEN has_entry THEN coalesce(ct.invalid, 0) END AS invalid,
       -- no window, or no iterator in the last window: the walk did not return from inside the loop
       CASE WHEN has_entry AND it.rk IS NOT NULL THEN coalesce(wt.early_exit, false) END AS early_exit,
       w.start_line, w.end_line
FROM fg_walks w
JOIN _rmap_walkers k ON k.func = w.func
LEFT JOIN walk_entry_lines m ON m.rk = w.rk AND m.line_no = w.walk_id
LEFT JOIN walk_window_totals wt ON wt.rk = w.rk AND wt.walk_id = w.walk_id
LEFT JOIN walk_child_totals ct ON ct.rk = w.rk AND ct.walk_id = w.walk_id
LEFT JOIN runs_tracing_iterators it ON it.rk = w.rk
UNION ALL BY NAME
SELECT 'window' AS part, f.rk, f.walk_id, f.window_no, 'function-graph' AS evidence, f.start_ns, f.end_ns,
       CASE WHEN it.rk IS NOT NULL THEN f.iterations_raw END AS iterations, f.rmap_one,
       CASE WHEN it.rk IS NOT NULL THEN f.iterations_raw - f.rmap_one - f.invalid END AS skipped,
       f.invalid, _hold0(f.end_ns - f.start_ns) AS hold_ns, f.slow  -- clamped at 0, see _hold0
FROM windows f LEFT JOIN runs_tracing_iterators it ON it.rk = f.rk;
