-- ksmtrace walk reconstruction, evidence (c): kprobe / kretprobe / fprobe events (kernel.md §6.3,
-- walk_rules.md (c)). Private views; the public ones are `walks` and `lock_windows`.
--
-- Probe rows are recognised by where the parser found the probe location, not by event names (names vary):
-- kind = entry for "(sym+0x../0x..)", kind = return for "(caller+0x../0x.. <- sym)"; func = sym, parent =
-- caller. function_graph rows (event funcgraph_*) and function-tracer rows are not probe rows.
-- A fetched return value is a field named ret, retval or arg1 (fprobe's default name), or $retval.

CREATE OR REPLACE MACRO _pr_out() AS TABLE
WITH rows0 AS MATERIALIZED (
    SELECT rk, line_no, ts_ns, cpu, pid, comm, fc, kc, wfunc, parent, ret, item_addr AS addr, vm_start, vm_end,
           probe_off
    FROM _ev WHERE cls = 2
),
-- walk pairing: entry and return of a walker, LIFO per (run, pid, walker) (the stack trick of
-- 12_tracepoint_walks.sql), over the walker rows only. A walker entry starts a walk only at the function
-- entry (probe offset <= 0x10: +0x0, +0x4 with x86 IBT/ENDBR, arm64 BTI ...); a larger offset is a
-- source-line probe inside the walk (e.g. the project's ksm_item probe).
ps AS (
    SELECT r.rk, r.line_no, r.ts_ns, r.cpu, r.pid, r.comm, r.wfunc AS func, r.parent, k.page_type,
           CASE WHEN kc = 0 THEN 1 ELSE -1 END AS d
    FROM rows0 r JOIN _rmap_walkers k ON r.wfunc = k.func
    WHERE r.kc = 3 OR r.probe_off IS NULL OR r.probe_off <= 16
), pp AS (
    SELECT *, sum(d) OVER k AS psum
    FROM ps WINDOW k AS (PARTITION BY rk, pid, func ORDER BY line_no ROWS UNBOUNDED PRECEDING)
), pq AS (
    SELECT *, psum - least(0, min(psum) OVER k) AS depth_after
    FROM pp WINDOW k AS (PARTITION BY rk, pid, func ORDER BY line_no ROWS UNBOUNDED PRECEDING)
), pl AS (
    SELECT *,
           CASE WHEN d = 1 THEN depth_after
                WHEN lag(depth_after, 1, 0) OVER k > 0 THEN lag(depth_after, 1, 0) OVER k END AS level
    FROM pq WINDOW k AS (PARTITION BY rk, pid, func ORDER BY line_no)
), pairs AS MATERIALIZED (
    SELECT *,
           lead(d) OVER m AS nxt_d, lead(ts_ns) OVER m AS nxt_ts, lead(line_no) OVER m AS nxt_line,
           lead(parent) OVER m AS nxt_parent
    FROM pl
    WINDOW m AS (PARTITION BY rk, pid, func, level ORDER BY line_no)
),
r AS (
    SELECT r.*, p.line_no IS NOT NULL AS w_entry,
           p.nxt_line AS w_end_line
    FROM rows0 r
    LEFT JOIN (SELECT rk, line_no, CASE WHEN nxt_d = -1 THEN nxt_line END AS nxt_line FROM pairs WHERE d = 1) p
           ON p.rk = r.rk AND p.line_no = r.line_no
),
-- (1) task order: rows inside a walk of the same pid (after its entry, before its return; an entry without
-- return keeps the rows up to the pid's next walk entry); the last rmap_item address seen (ksm_item probe)
a AS (
    SELECT *,
           last_value(CASE WHEN w_entry THEN line_no END IGNORE NULLS) OVER t AS cw_line,
           last_value(CASE WHEN w_entry THEN coalesce(w_end_line, 9223372036854775807) END IGNORE NULLS) OVER t AS cw_end,
           last_value(CASE WHEN kc = 0 AND addr IS NOT NULL THEN {'a': addr, 'l': line_no} END IGNORE NULLS)
               OVER t AS item
    FROM r
    WINDOW t AS (PARTITION BY rk, pid ORDER BY line_no ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
b AS (
    SELECT rk, cw_line AS walk_id, line_no, ts_ns, ret,
           CASE WHEN item.l > cw_line THEN item.a END AS item_addr,
           vm_start AS vs, vm_end AS ve,
           -- fc / kc codes of 11_scan.sql; a fetched return value counts when it is present and non-zero
           fc = 1 AND kc = 3 AND ret IS NOT NULL AND NOT _is_zero(ret) AS try_ok,
           fc = 1 AND kc = 3 AND ret IS NOT NULL AND _is_zero(ret) AS try_fail,
           fc = 2 AND kc = 3 AS dr_ret,
           fc = 3 AND kc = 0 AS is_up,
           fc = 4 AND kc = 3 AS is_iter,
           fc = 5 AND kc = 0 AS is_cb,
           fc = 6 AND kc = 3 AND ret IS NOT NULL AND NOT _is_zero(ret) AS inv_yes
    FROM a WHERE cw_line IS NOT NULL AND line_no > cw_line AND line_no < cw_end
),
-- (2) walk order: windows. Start = a successful trylock return or a down_read return, end = the next
-- up_read entry; wno = running count of starts; inside = no up_read between the start and the row
c AS (
    SELECT *,
           is_iter AND ret IS NOT NULL AND NOT _is_zero(ret) AS iter_hit,
           try_ok OR dr_ret AS win_start,
           sum(CASE WHEN try_ok OR dr_ret THEN 1 ELSE 0 END) OVER k AS wno,
           last_value(CASE WHEN try_ok OR dr_ret THEN line_no END IGNORE NULLS) OVER k AS ws_line,
           -- the rmap_item address of the window: the last one seen in the walk before its start
           last_value(CASE WHEN try_ok OR dr_ret THEN {'a': item_addr} END IGNORE NULLS) OVER k AS w_item,
           last_value(CASE WHEN is_up THEN line_no END IGNORE NULLS)
               OVER (PARTITION BY rk, walk_id ORDER BY line_no ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
               AS up_before
    FROM b
    WINDOW k AS (PARTITION BY rk, walk_id ORDER BY line_no ROWS UNBOUNDED PRECEDING)
),
cm AS MATERIALIZED (
    SELECT *, wno > 0 AND line_no > ws_line AND (up_before IS NULL OR up_before < ws_line) AS inside,
           _hex(w_item.a) AS a
    FROM c
),
win AS MATERIALIZED (
    SELECT rk, walk_id, wno AS window_no,
           min(ts_ns) FILTER (WHERE win_start) AS start_ns,
           min(ts_ns) FILTER (WHERE is_up AND inside) AS end_ns,
           count(*) FILTER (WHERE inside AND iter_hit) AS iterations_raw,
           count(*) FILTER (WHERE inside AND is_cb) AS rmap_one,
           count(*) FILTER (WHERE inside AND inv_yes) AS invalid,
           bool_or(dr_ret AND win_start) AS slow,
           -- skip split (project convention, walk_rules.md (c)): every counted iteration carries vm_start and
           -- vm_end, and an entry probe with addr came before the window start: iterations whose
           -- [vm_start, vm_end) does not contain addr are address skips, the rest of the skips are mm skips
           CASE WHEN any_value(a) IS NOT NULL
                 AND count(*) FILTER (WHERE inside AND iter_hit AND (vs IS NULL OR ve IS NULL)) = 0
                THEN count(*) FILTER (WHERE inside AND iter_hit AND NOT (vs <= a AND a < ve)) END AS skip_addr_raw,
           arg_max_null(iter_hit, line_no) FILTER (WHERE inside AND is_iter) AS last_iter_hit
    FROM cm WHERE wno > 0
    -- a window whose up_read was not seen (the trace ends inside it) is kept, as for function_graph:
    -- the lock was acquired; its end_ns / hold_ns are NULL
    GROUP BY rk, walk_id, wno
),
iter_runs AS (SELECT DISTINCT rk FROM rows0 WHERE fc = 4 AND kc = 3 AND ret IS NOT NULL),
w AS (
    SELECT rk, NULL::VARCHAR AS label, line_no AS walk_id, page_type, pid, comm, cpu, ts_ns AS start_ns,
           CASE WHEN nxt_d = -1 THEN nxt_ts END AS end_ns, nxt_d IS NOT DISTINCT FROM -1 AS paired,
           -- caller: the return's "(caller+0x../0x.. <- rmap_walk_ksm)" symbol, without offset
           CASE WHEN nxt_d = -1 THEN _sym(nxt_parent) END AS caller,
           line_no AS start_line, CASE WHEN nxt_d = -1 THEN nxt_line END AS end_line, true AS has_entry
    FROM pairs WHERE d = 1
    UNION ALL
    -- a return without entry (the trace began inside the walk): cpu = the return's CPU
    SELECT rk, NULL, line_no, page_type, pid, comm, cpu, NULL::BIGINT, ts_ns, false,
           _sym(parent), NULL::BIGINT, line_no, false
    FROM pairs WHERE d = -1 AND level IS NULL
),
wagg AS (
    SELECT rk, walk_id, count(*) AS n_windows,
           max(end_ns - start_ns) AS max_hold_ns, sum(end_ns - start_ns)::BIGINT AS total_hold_ns,
           sum(iterations_raw)::BIGINT AS iterations, max(iterations_raw) AS max_window_iterations,
           count(*) FILTER (WHERE slow) AS slow_windows,
           CASE WHEN count(*) FILTER (WHERE skip_addr_raw IS NULL) = 0 THEN sum(skip_addr_raw)::BIGINT END AS skip_addr,
           arg_max_null(last_iter_hit, window_no) AS early_exit
    FROM win GROUP BY rk, walk_id
),
ch AS (
    SELECT rk, walk_id, count(*) FILTER (WHERE is_cb) AS rmap_one, count(*) FILTER (WHERE inv_yes) AS invalid,
           arg_max_null(try_fail, line_no) AS bailout_last
    FROM cm GROUP BY rk, walk_id
)
SELECT 'walk' AS part, w.rk AS run_id, w.label, w.walk_id, NULL::BIGINT AS window_no, 'kprobe' AS evidence, w.page_type,
       w.pid, w.comm, w.cpu, w.start_ns, w.end_ns, w.end_ns - w.start_ns AS duration_ns, w.paired,
       CASE WHEN has_entry THEN coalesce(wagg.n_windows, 0) END AS n_windows,
       wagg.max_hold_ns, wagg.total_hold_ns,
       CASE WHEN has_entry AND it.rk IS NOT NULL THEN coalesce(wagg.iterations, 0) END AS iterations,
       CASE WHEN it.rk IS NOT NULL THEN wagg.max_window_iterations END AS max_window_iterations,
       CASE WHEN has_entry THEN coalesce(ch.rmap_one, 0) END AS rmap_one,
       CASE WHEN has_entry AND it.rk IS NOT NULL
            THEN coalesce(wagg.iterations, 0) - coalesce(ch.rmap_one, 0) - coalesce(ch.invalid, 0) END AS skipped,
       CASE WHEN it.rk IS NOT NULL THEN wagg.skip_addr END AS skip_addr,
       CASE WHEN it.rk IS NOT NULL AND wagg.skip_addr IS NOT NULL
            THEN coalesce(wagg.iterations, 0) - coalesce(ch.rmap_one, 0) - coalesce(ch.invalid, 0) - wagg.skip_addr
       END AS skip_mm,
       w.caller,
       CASE WHEN has_entry THEN coalesce(wagg.slow_windows, 0) END AS slow_windows,
       -- extras, not fixed by walk_rules.md (c): bailout = the walk's last event inside it is a failed trylock;
       -- early_exit = the last window's last iterator return was non-zero (it returned a chain)
       CASE WHEN has_entry THEN coalesce(ch.bailout_last, false) AND w.paired END AS bailout,
       CASE WHEN has_entry THEN coalesce(ch.invalid, 0) END AS invalid,
       CASE WHEN it.rk IS NOT NULL THEN wagg.early_exit END AS early_exit,
       NULL::BIGINT AS n_events, w.start_line, w.end_line,
       NULL::BIGINT AS hold_ns, NULL::BOOLEAN AS slow, NULL::BOOLEAN AS counters_consistent
FROM w
LEFT JOIN wagg USING (rk, walk_id)
LEFT JOIN ch USING (rk, walk_id)
LEFT JOIN iter_runs it ON it.rk = w.rk
UNION ALL
SELECT 'window', f.rk, NULL, f.walk_id, f.window_no, 'kprobe', NULL, NULL, NULL, NULL,
       f.start_ns, f.end_ns, NULL, NULL, NULL, NULL, NULL,
       CASE WHEN it.rk IS NOT NULL THEN f.iterations_raw END, NULL, f.rmap_one,
       CASE WHEN it.rk IS NOT NULL THEN f.iterations_raw - f.rmap_one - f.invalid END,
       CASE WHEN it.rk IS NOT NULL THEN f.skip_addr_raw END,
       CASE WHEN it.rk IS NOT NULL THEN f.iterations_raw - f.rmap_one - f.invalid - f.skip_addr_raw END,
       NULL, NULL, NULL, f.invalid, NULL, NULL, NULL, NULL,
       f.end_ns - f.start_ns, f.slow, NULL
FROM win f LEFT JOIN iter_runs it ON it.rk = f.rk;
