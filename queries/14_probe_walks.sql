-- ksmtrace walk reconstruction, evidence (c): kprobe / kretprobe / fprobe events (docs/walk-rules.md (c)).
-- Private; the public views are `walks` and `lock_windows`. Output columns: see 12_tracepoint_walks.sql.
--
-- Probe rows are recognised by where the parser found the probe location, not by event names (names vary):
-- kind = entry for "(sym+0x../0x..)", kind = return for "(caller+0x../0x.. <- sym)"; func = sym, parent =
-- caller. function_graph rows (event funcgraph_*) and function-tracer rows are not probe rows.
-- A fetched return value is a field named ret, retval or arg1 (fprobe's default name), or $retval.

CREATE OR REPLACE MACRO _pr_out() AS TABLE
WITH probe_rows AS NOT MATERIALIZED (  -- (each reader scans its own columns of _ev)
    SELECT rk, line_no, ts_ns, cpu, pid, comm, fn_role, rec_kind, wfunc, parent, ret, item_addr AS addr,
           vm_start, vm_end, probe_off
    FROM _ev WHERE ev_kind = 'probe'
),
-- walk pairing: entry and return of a walker, LIFO per (run, pid, walker) in file order (_lifo_pairs,
-- 10_helpers.sql), over the walker rows only. A walker entry starts a walk only at the function entry
-- (probe offset <= 0x10: +0x0, +0x4 with x86 IBT/ENDBR, arm64 BTI ...); a larger offset is a source-line
-- probe inside the walk (e.g. the project's ksm_item probe).
_lifo_in AS (
    SELECT {'rk': r.rk, 'pid': r.pid, 'func': r.wfunc} AS k, r.line_no AS o1, 0 AS o2,
           CASE WHEN r.rec_kind = 'entry' THEN 1 ELSE -1 END AS d,
           {'ts_ns': r.ts_ns, 'line_no': r.line_no, 'parent': r.parent} AS v,
           r.rk, r.line_no, r.ts_ns, r.cpu, r.pid, r.comm, r.parent, w.page_type
    FROM probe_rows r JOIN _rmap_walkers w ON r.wfunc = w.func
    WHERE r.rec_kind = 'return' OR r.probe_off IS NULL OR r.probe_off <= 16
),
walker_pairs AS MATERIALIZED (SELECT * FROM _lifo_pairs()),
walk_starts AS (
    SELECT rk, line_no, CASE WHEN nxt_d = -1 THEN nxt_v.line_no END AS end_line FROM walker_pairs WHERE d = 1
),
-- (1) task order, one pass over every probe row (rwsem probes fire in every task, so most rows lie outside
-- any walk: 1.5 M rows in a 200 MB kprobes capture), narrow: what a row means for the walk as booleans (a
-- fetched return value counts when it is present and non-zero), and three running maxima of line numbers
-- (see 13_funcgraph_walks.sql, Performance): the task's last walk entry (cw_line), its last entry probe
-- with an rmap_item address (item_l, the ksm_item probe) and its last mark (m_line). Marks are the rows
-- other than iterator returns: in a counting trace nearly every row inside a walk is an iterator return.
task_order AS (
    FROM (
    SELECT r.rk, r.pid, r.line_no, r.ts_ns, r.vm_start AS vs, r.vm_end AS ve,
           r.fn_role = 'trylock' AND r.rec_kind = 'return' AND r.ret IS NOT NULL AND NOT _is_zero(r.ret) AS try_ok,
           r.fn_role = 'trylock' AND r.rec_kind = 'return' AND r.ret IS NOT NULL AND _is_zero(r.ret) AS try_fail,
           r.fn_role = 'down_read' AND r.rec_kind = 'return' AS dr_ret,
           r.fn_role = 'up_read' AND r.rec_kind = 'entry' AS is_up,
           r.fn_role = 'iterator' AND r.rec_kind = 'return' AS is_iter,
           r.fn_role = 'iterator' AND r.rec_kind = 'return' AND r.ret IS NOT NULL AND NOT _is_zero(r.ret) AS iter_hit,
           r.fn_role = 'rmap_one' AND r.rec_kind = 'entry' AS is_cb,
           r.fn_role = 'invalid_vma' AND r.rec_kind = 'return' AND r.ret IS NOT NULL AND NOT _is_zero(r.ret) AS inv_yes,
           max(CASE WHEN s.line_no IS NOT NULL THEN r.line_no END) OVER t AS cw_line,
           max(CASE WHEN r.rec_kind = 'entry' AND r.addr IS NOT NULL THEN r.line_no END) OVER t AS item_l,
           max(CASE WHEN NOT (r.fn_role = 'iterator' AND r.rec_kind = 'return') THEN r.line_no END) OVER t AS m_line
    FROM probe_rows r LEFT JOIN walk_starts s ON s.rk = r.rk AND s.line_no = r.line_no
    WINDOW t AS (PARTITION BY r.rk, r.pid ORDER BY r.line_no ROWS UNBOUNDED PRECEDING)
    ) WHERE cw_line IS NOT NULL  -- (rows before the task's first walk entry lie in no walk)
),
-- the marks inside a walk of the same pid (after its entry, before its return; an entry without return
-- keeps the rows up to the pid's next walk entry), and the walk's entry row itself (line_no = walk_id),
-- which starts nothing and is not counted below; the last rmap_item address seen in the walk (item_l)
walk_marks AS (
    SELECT m.rk, m.cw_line AS walk_id, m.line_no, m.ts_ns, m.try_ok, m.try_fail, m.dr_ret, m.is_up, m.is_cb,
           m.inv_yes, CASE WHEN m.item_l > m.cw_line THEN m.item_l END AS item_l
    FROM task_order m JOIN walk_starts s ON s.rk = m.rk AND s.line_no = m.cw_line
    WHERE NOT m.is_iter AND m.line_no < coalesce(s.end_line, 9223372036854775807)
),
-- (2) walk order, over the marks: windows. Start = a successful trylock return or a down_read return, end =
-- the next up_read entry; wno = running count of starts; inside = no up_read between the start and the row;
-- the window's rmap_item address: the last one seen in the walk before its start (w_item)
window_marks AS (
    SELECT *,
           try_ok OR dr_ret AS win_start,
           sum(CASE WHEN try_ok OR dr_ret THEN 1 ELSE 0 END) OVER k AS wno,
           max(CASE WHEN try_ok OR dr_ret THEN line_no END) OVER k AS ws_line,
           arg_max(CASE WHEN try_ok OR dr_ret THEN {'l': item_l} END, line_no) OVER k AS w_item,
           max(CASE WHEN is_up THEN line_no END)
               OVER (PARTITION BY rk, walk_id ORDER BY line_no ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
               AS up_before
    FROM walk_marks
    WINDOW k AS (PARTITION BY rk, walk_id ORDER BY line_no ROWS UNBOUNDED PRECEDING)
),
mark_windows AS MATERIALIZED (
    SELECT w.*, w.wno > 0 AND w.line_no > w.ws_line AND (w.up_before IS NULL OR w.up_before < w.ws_line) AS inside,
           -- inside, for the rows after this mark and before the next one (an up_read mark closes the window)
           w.wno > 0 AND NOT w.is_up AND (w.up_before IS NULL OR w.up_before < w.ws_line) AS inside_after,
           _hex(i.addr) AS a
    FROM window_marks w LEFT JOIN probe_rows i ON i.rk = w.rk AND i.line_no = w.w_item.l
),
-- the iterator returns of a walk: each lies in the window of the task's last mark before it (no walk entry,
-- lock call or window start lies in between: those are marks), and is inside it as the mark leaves it
iter_rows AS (
    SELECT i.rk, m.walk_id, m.wno, i.line_no, i.iter_hit, i.vs, i.ve, m.inside_after AS inside, m.a
    FROM task_order i JOIN mark_windows m ON m.rk = i.rk AND m.line_no = i.m_line
    WHERE i.is_iter
),
row_windows AS (
    SELECT rk, walk_id, wno, line_no, ts_ns, win_start, is_up, inside, false AS iter_hit, false AS is_iter, is_cb,
           inv_yes, dr_ret, try_fail, NULL::BIGINT AS vs, NULL::BIGINT AS ve, a
    FROM mark_windows WHERE line_no > walk_id
    UNION ALL BY NAME
    SELECT rk, walk_id, wno, line_no, NULL::BIGINT AS ts_ns, false AS win_start, false AS is_up, inside, iter_hit,
           true AS is_iter, false AS is_cb, false AS inv_yes, false AS dr_ret, false AS try_fail, vs, ve, a
    FROM iter_rows
),
windows AS MATERIALIZED (
    SELECT rk, walk_id, wno AS window_no,
           min(ts_ns) FILTER (WHERE win_start) AS start_ns,
           min(ts_ns) FILTER (WHERE is_up AND inside) AS end_ns,
           count(*) FILTER (WHERE inside AND iter_hit) AS iterations_raw,
           count(*) FILTER (WHERE inside AND is_cb) AS rmap_one,
           count(*) FILTER (WHERE inside AND inv_yes) AS invalid,
           bool_or(dr_ret AND win_start) AS slow,
           -- skip split (project convention, docs/walk-rules.md (c)): every counted iteration carries vm_start
           -- and vm_end, and an entry probe with addr came before the window start: iterations whose
           -- [vm_start, vm_end) does not contain addr are address skips, the rest of the skips are mm skips
           CASE WHEN any_value(a) IS NOT NULL
                 AND count(*) FILTER (WHERE inside AND iter_hit AND (vs IS NULL OR ve IS NULL)) = 0
                THEN count(*) FILTER (WHERE inside AND iter_hit AND NOT (vs <= a AND a < ve)) END AS skip_addr_raw,
           arg_max_null(iter_hit, line_no) FILTER (WHERE inside AND is_iter) AS last_iter_hit
    FROM row_windows WHERE wno > 0
    -- a window whose up_read was not seen (the trace ends inside it) is kept, as for function_graph:
    -- the lock was acquired; its end_ns / hold_ns are NULL
    GROUP BY rk, walk_id, wno
),
runs_tracing_iterators AS (
    SELECT DISTINCT rk FROM probe_rows WHERE fn_role = 'iterator' AND rec_kind = 'return' AND ret IS NOT NULL
),
pr_walks AS (
    SELECT rk, line_no AS walk_id, page_type, pid, comm, cpu, ts_ns AS start_ns,
           CASE WHEN nxt_d = -1 THEN nxt_v.ts_ns END AS end_ns, nxt_d IS NOT DISTINCT FROM -1 AS paired,
           -- caller: the return's "(caller+0x../0x.. <- rmap_walk_ksm)" symbol, without offset
           CASE WHEN nxt_d = -1 THEN _sym(nxt_v.parent) END AS caller,
           line_no AS start_line, CASE WHEN nxt_d = -1 THEN nxt_v.line_no END AS end_line, true AS has_entry
    FROM walker_pairs WHERE d = 1
    UNION ALL BY NAME
    -- a return without entry (the trace began inside the walk): cpu = the return's CPU
    SELECT rk, line_no AS walk_id, page_type, pid, comm, cpu, NULL::BIGINT AS start_ns, ts_ns AS end_ns,
           false AS paired, _sym(parent) AS caller, NULL::BIGINT AS start_line, line_no AS end_line,
           false AS has_entry
    FROM walker_pairs WHERE d = -1 AND level IS NULL
),
walk_window_totals AS (
    SELECT rk, walk_id, count(*) AS n_windows,
           max(end_ns - start_ns) AS max_hold_ns, sum(end_ns - start_ns)::BIGINT AS total_hold_ns,
           sum(iterations_raw)::BIGINT AS iterations, max(iterations_raw) AS max_window_iterations,
           count(*) FILTER (WHERE slow) AS slow_windows,
           CASE WHEN count(*) FILTER (WHERE skip_addr_raw IS NULL) = 0 THEN sum(skip_addr_raw)::BIGINT END AS skip_addr,
           arg_max_null(last_iter_hit, window_no) AS early_exit
    FROM windows GROUP BY rk, walk_id
),
walk_row_totals AS (
    SELECT rk, walk_id, count(*) FILTER (WHERE is_cb) AS rmap_one, count(*) FILTER (WHERE inv_yes) AS invalid,
           arg_max_null(try_fail, line_no) AS bailout_last
    FROM row_windows GROUP BY rk, walk_id
)
SELECT 'walk' AS part, w.rk, w.walk_id, 'kprobe' AS evidence, w.page_type,
       w.pid, w.comm, w.cpu, w.start_ns, w.end_ns, w.end_ns - w.start_ns AS duration_ns, w.paired,
       CASE WHEN has_entry THEN coalesce(wt.n_windows, 0) END AS n_windows,
       wt.max_hold_ns, wt.total_hold_ns,
       CASE WHEN has_entry AND it.rk IS NOT NULL THEN coalesce(wt.iterations, 0) END AS iterations,
       CASE WHEN it.rk IS NOT NULL THEN wt.max_window_iterations END AS max_window_iterations,
       CASE WHEN has_entry THEN coalesce(rt.rmap_one, 0) END AS rmap_one,
       CASE WHEN has_entry AND it.rk IS NOT NULL
            THEN coalesce(wt.iterations, 0) - coalesce(rt.rmap_one, 0) - coalesce(rt.invalid, 0) END AS skipped,
       CASE WHEN it.rk IS NOT NULL THEN wt.skip_addr END AS skip_addr,
       CASE WHEN it.rk IS NOT NULL AND wt.skip_addr IS NOT NULL
            THEN coalesce(wt.iterations, 0) - coalesce(rt.rmap_one, 0) - coalesce(rt.invalid, 0) - wt.skip_addr
       END AS skip_mm,
       w.caller,
       CASE WHEN has_entry THEN coalesce(wt.slow_windows, 0) END AS slow_windows,
       -- extras, not fixed by docs/walk-rules.md (c): bailout = the walk's last event inside it is a failed
       -- trylock; early_exit = the last window's last iterator return was non-zero (it returned a chain)
       CASE WHEN has_entry THEN coalesce(rt.bailout_last, false) AND w.paired END AS bailout,
       CASE WHEN has_entry THEN coalesce(rt.invalid, 0) END AS invalid,
       CASE WHEN it.rk IS NOT NULL THEN wt.early_exit END AS early_exit,
       w.start_line, w.end_line
FROM pr_walks w
LEFT JOIN walk_window_totals wt USING (rk, walk_id)
LEFT JOIN walk_row_totals rt USING (rk, walk_id)
LEFT JOIN runs_tracing_iterators it ON it.rk = w.rk
UNION ALL BY NAME
SELECT 'window' AS part, f.rk, f.walk_id, f.window_no, 'kprobe' AS evidence, f.start_ns, f.end_ns,
       CASE WHEN it.rk IS NOT NULL THEN f.iterations_raw END AS iterations, f.rmap_one,
       CASE WHEN it.rk IS NOT NULL THEN f.iterations_raw - f.rmap_one - f.invalid END AS skipped,
       CASE WHEN it.rk IS NOT NULL THEN f.skip_addr_raw END AS skip_addr,
       CASE WHEN it.rk IS NOT NULL THEN f.iterations_raw - f.rmap_one - f.invalid - f.skip_addr_raw END AS skip_mm,
       f.invalid, f.end_ns - f.start_ns AS hold_ns, f.slow
FROM windows f LEFT JOIN runs_tracing_iterators it ON it.rk = f.rk;
