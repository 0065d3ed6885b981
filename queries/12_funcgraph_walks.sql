-- ksmtrace walk reconstruction, evidence (b): function_graph with rmap_walk_ksm (or rmap_walk_anon /
-- rmap_walk_file) as graph function (kernel.md §6.2, walk_rules.md (b)). Private views; the public
-- ones are `walks` and `lock_windows`.
--
-- Nesting is tracked per task (run, pid), never per CPU: a walk may move CPUs in cond_resched().
-- Rows are ordered per task by (ts_ns, line_no); rn is that order.

CREATE OR REPLACE VIEW _fg_rows AS
WITH r AS (
    SELECT run_id, label, line_no, ts_ns, cpu, pid, comm, func, parent, depth, kind, duration_ns, retval
    FROM events
    WHERE event IN ('funcgraph_entry', 'funcgraph_exit') AND kind IN ('entry', 'leaf', 'exit')
)
SELECT *, row_number() OVER (PARTITION BY run_id, pid ORDER BY ts_ns, line_no) AS rn FROM r;

-- Pair every entry with its exit: the next row of the same task at the same depth. In a well-formed
-- trace that row is the closing `}`; anything else (entry, leaf) means the exit is missing.
-- The lag gives exits without entry (the trace began inside the call).
CREATE OR REPLACE VIEW _fg_paired AS
SELECT *,
       lead(kind) OVER d AS nxt_kind, lead(ts_ns) OVER d AS nxt_ts, lead(rn) OVER d AS nxt_rn,
       lead(duration_ns) OVER d AS nxt_dur, lead(line_no) OVER d AS nxt_line, lead(retval) OVER d AS nxt_retval,
       lag(kind) OVER d AS prv_kind
FROM _fg_rows
WINDOW d AS (PARTITION BY run_id, pid, depth ORDER BY rn);

-- Children: rows of depth = walk depth + 1 between the walk's entry and its exit (kinds entry, leaf).
-- Membership without a join: the most recent walk entry of the task (last_value IGNORE NULLS) with its
-- exit's rn; a row belongs when it comes before that exit. An entry without exit keeps its children up
-- to the next row at the walk's depth (or to the end of the trace).
CREATE OR REPLACE VIEW _fg_children AS
WITH marked AS (
    SELECT p.*,
           CASE WHEN kind = 'entry' AND func IN (SELECT func FROM _rmap_walkers) THEN line_no END AS w_id,
           CASE WHEN kind = 'entry' AND func IN (SELECT func FROM _rmap_walkers) THEN coalesce(nxt_rn, 9223372036854775807) END AS w_end_rn,
           CASE WHEN kind = 'entry' AND func IN (SELECT func FROM _rmap_walkers) THEN depth END AS w_depth
    FROM _fg_paired p
), cur AS (
    SELECT *,
           last_value(w_id IGNORE NULLS) OVER t AS cw_id,
           last_value(w_end_rn IGNORE NULLS) OVER t AS cw_end_rn,
           last_value(w_depth IGNORE NULLS) OVER t AS cw_depth
    FROM marked
    WINDOW t AS (PARTITION BY run_id, pid ORDER BY rn ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
)
SELECT run_id, pid, cw_id AS walk_id, rn, line_no, ts_ns, func, kind, duration_ns,
       -- retval of the child: the leaf's own, or the closing line's for a nested call
       CASE WHEN kind = 'leaf' THEN retval WHEN nxt_kind = 'exit' THEN nxt_retval END AS retval,
       -- return time: leaf = ts + printed duration; nested = ts of its closing line
       CASE WHEN kind = 'leaf' THEN ts_ns + duration_ns WHEN nxt_kind = 'exit' THEN nxt_ts END AS ret_ns
FROM cur
WHERE cw_id IS NOT NULL AND rn < cw_end_rn AND depth = cw_depth + 1 AND kind IN ('entry', 'leaf');

-- Children classified, with what follows each one in its walk.
CREATE OR REPLACE VIEW _fg_children_cls AS
WITH c AS (
    SELECT c.*,
           func = 'down_read_trylock' AS is_try,
           func = 'down_read' AS is_dr,
           func = 'up_read' AS is_up,
           func IN (SELECT func FROM _rmap_iterator_funcs) AS is_iter,
           func IN (SELECT func FROM _rmap_one_callbacks) AS is_cb,
           func IN (SELECT func FROM _rmap_invalid_vma_funcs) AS is_inv
    FROM _fg_children c
), n AS (
    SELECT *,
           lead(func) OVER w AS next_func,
           -- the next child that is a callback, an iterator or up_read (decides an invalid_vma without retval)
           first_value(CASE WHEN is_cb OR is_iter OR is_up THEN func END IGNORE NULLS) OVER f AS next_key_func
    FROM c
    WINDOW w AS (PARTITION BY run_id, walk_id ORDER BY rn),
           f AS (PARTITION BY run_id, walk_id ORDER BY rn ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)
), s AS (
    SELECT *,
           -- trylock success: retval != 0 when printed; without retval: not followed by a down_read
           -- child and not the walk's last child (walk_rules.md (b))
           is_try AND CASE WHEN retval IS NOT NULL THEN NOT _is_zero(retval)
                           ELSE next_func IS NOT NULL AND next_func <> 'down_read' END AS try_ok
    FROM n
)
SELECT *,
       is_try AND NOT try_ok AS try_fail,
       -- a window starts at a successful trylock, or at down_read (the slow path after a failed trylock)
       try_ok OR is_dr AS win_start,
       sum(CASE WHEN try_ok OR is_dr THEN 1 ELSE 0 END) OVER w AS wno,
       -- invalid_vma rejection: retval != 0; without retval: no callback before the next iterator / up_read
       is_inv AND CASE WHEN retval IS NOT NULL THEN NOT _is_zero(retval)
                       ELSE next_key_func IS NULL OR next_key_func NOT IN (SELECT func FROM _rmap_one_callbacks) END
           AS inv_yes
FROM s
WINDOW w AS (PARTITION BY run_id, walk_id ORDER BY rn ROWS UNBOUNDED PRECEDING);

-- runs whose trace contains iterator rows at all (else iterations are unknown: NULL, not 0)
CREATE OR REPLACE VIEW _fg_iter_runs AS
SELECT DISTINCT run_id FROM _fg_rows WHERE func IN (SELECT func FROM _rmap_iterator_funcs);

-- One row per lock window: from its start child's return time to the entry of the next up_read child.
-- A window groups the children from its start child (wno = running count of starts) up to its first
-- up_read; children after that up_read (cond_resched, a failed trylock ...) belong to no window.
CREATE OR REPLACE VIEW _fg_windows AS
WITH c AS (
    SELECT *, min(rn) OVER g AS start_rn, min(CASE WHEN is_up THEN rn END) OVER g AS close_rn
    FROM _fg_children_cls WHERE wno > 0
    WINDOW g AS (PARTITION BY run_id, walk_id, wno)
), m AS (
    SELECT *, rn > start_rn AND rn < coalesce(close_rn, 9223372036854775807) AS inside FROM c
)
SELECT run_id, walk_id, wno AS window_no,
       arg_min_null(ret_ns, rn) AS start_ns,
       min(ts_ns) FILTER (WHERE rn = close_rn) AS end_ns,
       -- iterations: with retval, iterator calls that returned non-zero; without retval all calls, minus the
       -- last one when it is directly followed by this window's up_read (it returned NULL and ended the loop)
       sum(CASE WHEN inside AND is_iter AND (retval IS NULL OR NOT _is_zero(retval)) THEN 1 ELSE 0 END)::BIGINT
         - CASE WHEN arg_max_null(retval IS NULL AND next_func = 'up_read', rn) FILTER (WHERE inside AND is_iter)
                THEN 1 ELSE 0 END AS iterations_raw,
       count(*) FILTER (WHERE inside AND is_cb) AS rmap_one,
       count(*) FILTER (WHERE inside AND inv_yes) AS invalid,
       -- slow window: acquired by down_read after a failed trylock
       arg_min_null(is_dr, rn) AS slow,
       -- the window's last iterator call returned a chain: followed by rmap_one/done, not by up_read
       arg_max_null(CASE WHEN retval IS NOT NULL THEN NOT _is_zero(retval) ELSE next_func IS DISTINCT FROM 'up_read' END,
               rn) FILTER (WHERE inside AND is_iter) AS last_iter_hit
FROM m
GROUP BY run_id, walk_id, wno;

CREATE OR REPLACE VIEW _walks_function_graph AS
WITH w AS (
    -- walks: entries of a walker (paired when the next row at that depth is its exit), and exits
    -- of a walker without an entry (the trace began inside the walk)
    SELECT p.run_id, p.label, p.line_no AS walk_id, k.page_type, p.pid, p.comm, p.cpu,
           p.ts_ns AS start_ns,
           CASE WHEN nxt_kind = 'exit' THEN nxt_ts END AS end_ns,
           CASE WHEN nxt_kind = 'exit' THEN nxt_dur END AS duration_ns,
           nxt_kind IS NOT DISTINCT FROM 'exit' AS paired,
           _sym(p.parent) AS caller,  -- funcgraph-retaddr comment of the entry line, when printed
           p.line_no AS start_line, CASE WHEN nxt_kind = 'exit' THEN nxt_line END AS end_line,
           true AS has_entry
    FROM _fg_paired p JOIN _rmap_walkers k ON p.func = k.func
    WHERE p.kind = 'entry'
    UNION ALL
    SELECT p.run_id, p.label, p.line_no, k.page_type, p.pid, p.comm, p.cpu, NULL::BIGINT, p.ts_ns,
           p.duration_ns, false, NULL::VARCHAR, NULL::BIGINT, p.line_no, false
    FROM _fg_paired p JOIN _rmap_walkers k ON p.func = k.func
    WHERE p.kind = 'exit' AND p.prv_kind IS DISTINCT FROM 'entry'
), win AS (
    SELECT run_id, walk_id,
           count(*) AS n_windows,
           max(end_ns - start_ns) AS max_hold_ns,
           sum(end_ns - start_ns)::BIGINT AS total_hold_ns,
           sum(iterations_raw)::BIGINT AS iterations,
           max(iterations_raw) AS max_window_iterations,
           count(*) FILTER (WHERE slow) AS slow_windows,
           arg_max_null(last_iter_hit, window_no) AS early_exit
    FROM _fg_windows GROUP BY run_id, walk_id
), ch AS (
    SELECT run_id, walk_id,
           count(*) FILTER (WHERE is_cb) AS rmap_one,
           count(*) FILTER (WHERE inv_yes) AS invalid,
           -- bailout: a failed trylock whose next child is the walk's end
           bool_or(try_fail AND next_func IS NULL) AS bailout_child
    FROM _fg_children_cls GROUP BY run_id, walk_id
)
SELECT w.run_id, w.label, w.walk_id, 'function-graph' AS evidence, w.page_type, w.pid, w.comm, w.cpu,
       w.start_ns, w.end_ns, w.duration_ns, w.paired,
       -- an exit without its entry: the children cannot be attributed, every count is NULL
       CASE WHEN has_entry THEN coalesce(win.n_windows, 0) END AS n_windows,
       win.max_hold_ns, win.total_hold_ns,
       CASE WHEN has_entry AND it.run_id IS NOT NULL THEN coalesce(win.iterations, 0) END AS iterations,
       CASE WHEN it.run_id IS NOT NULL THEN win.max_window_iterations END AS max_window_iterations,
       CASE WHEN has_entry THEN coalesce(ch.rmap_one, 0) END AS rmap_one,
       CASE WHEN has_entry AND it.run_id IS NOT NULL
            THEN coalesce(win.iterations, 0) - coalesce(ch.rmap_one, 0) - coalesce(ch.invalid, 0) END AS skipped,
       NULL::BIGINT AS skip_addr, NULL::BIGINT AS skip_mm,
       w.caller,
       CASE WHEN has_entry THEN coalesce(win.slow_windows, 0) END AS slow_windows,
       CASE WHEN has_entry THEN coalesce(ch.bailout_child, false) AND w.paired END AS bailout,
       CASE WHEN has_entry THEN coalesce(ch.invalid, 0) END AS invalid,
       -- no window, or no iterator call in the last window: the walk did not return from inside the loop
       CASE WHEN has_entry AND it.run_id IS NOT NULL THEN coalesce(win.early_exit, false) END AS early_exit,
       NULL::BIGINT AS n_events, w.start_line, w.end_line
FROM w
LEFT JOIN win USING (run_id, walk_id)
LEFT JOIN ch USING (run_id, walk_id)
LEFT JOIN _fg_iter_runs it ON it.run_id = w.run_id;

-- lock windows of function_graph walks, in the shape of the public lock_windows view
CREATE OR REPLACE VIEW _lock_windows_function_graph AS
SELECT f.run_id, f.walk_id, f.window_no, f.start_ns, f.end_ns, f.end_ns - f.start_ns AS hold_ns,
       CASE WHEN it.run_id IS NOT NULL THEN f.iterations_raw END AS iterations,
       f.rmap_one,
       CASE WHEN it.run_id IS NOT NULL THEN f.iterations_raw - f.rmap_one - f.invalid END AS skipped,
       NULL::BIGINT AS skip_addr, NULL::BIGINT AS skip_mm, f.invalid, f.slow
FROM _fg_windows f LEFT JOIN _fg_iter_runs it ON it.run_id = f.run_id;
