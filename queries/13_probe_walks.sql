-- ksmtrace walk reconstruction, evidence (c): kprobe / kretprobe / fprobe events (kernel.md §6.3,
-- walk_rules.md (c)). Private views; the public ones are `walks` and `lock_windows`.
--
-- Probe rows are recognised by where the parser found the probe location, not by event names (names vary):
-- kind = entry for "(sym+0x../0x..)", kind = return for "(caller+0x../0x.. <- sym)"; func = sym, parent =
-- caller. function_graph rows (event funcgraph_*) and function-tracer rows are not probe rows.
-- A fetched return value is a field named ret, retval or arg1 (fprobe's default name), or $retval.

CREATE OR REPLACE VIEW _pr_rows AS
SELECT run_id, label, line_no, ts_ns, cpu, pid, comm, func, parent, kind, fields,
       coalesce(fields['ret'], fields['retval'], fields['arg1'], fields['$retval']) AS ret,
       -- probe offset of an entry, from the payload "(sym+0xOFF/0xSIZE) ..."; a walker entry is a walk
       -- start only at the function entry (offset <= 0x10: +0x0, +0x4 with x86 IBT/ENDBR, arm64 BTI ...);
       -- a larger offset is a source-line probe inside the walk (e.g. the project's ksm_item probe)
       _hex(regexp_extract(payload, '^\(\S+?\+(0x[0-9a-fA-F]+)/', 1)) AS probe_off,
       row_number() OVER (PARTITION BY run_id, pid ORDER BY ts_ns, line_no) AS rn
FROM events
WHERE kind IN ('entry', 'return') AND event NOT IN ('funcgraph_entry', 'funcgraph_exit', 'function')
  AND func IS NOT NULL;

-- walk pairing: entry and return of a walker, LIFO per (run, pid, walker) (same stack trick as
-- _tp_pairs in 11_tracepoint_walks.sql).
CREATE OR REPLACE VIEW _pr_pairs AS
WITH s AS (
    SELECT r.*, k.page_type, CASE WHEN kind = 'entry' THEN 1 ELSE -1 END AS d
    FROM _pr_rows r JOIN _rmap_walkers k ON r.func = k.func
    WHERE r.kind = 'return' OR r.probe_off IS NULL OR r.probe_off <= 16
), p AS (
    SELECT *, sum(d) OVER k AS psum
    FROM s WINDOW k AS (PARTITION BY run_id, pid, func ORDER BY rn ROWS UNBOUNDED PRECEDING)
), q AS (
    SELECT *, psum - least(0, min(psum) OVER k) AS depth_after
    FROM p WINDOW k AS (PARTITION BY run_id, pid, func ORDER BY rn ROWS UNBOUNDED PRECEDING)
), l AS (
    SELECT *,
           CASE WHEN d = 1 THEN depth_after
                WHEN lag(depth_after, 1, 0) OVER k > 0 THEN lag(depth_after, 1, 0) OVER k END AS level
    FROM q WINDOW k AS (PARTITION BY run_id, pid, func ORDER BY rn)
)
SELECT *,
       lead(d) OVER m AS nxt_d, lead(ts_ns) OVER m AS nxt_ts, lead(line_no) OVER m AS nxt_line,
       lead(rn) OVER m AS nxt_rn, lead(parent) OVER m AS nxt_parent
FROM l
WINDOW m AS (PARTITION BY run_id, pid, func, level ORDER BY rn);

-- Rows inside a walk of the same pid (between its entry and its return; an entry without return keeps
-- the rows up to the pid's next walk entry). Membership by last_value IGNORE NULLS, no join.
CREATE OR REPLACE VIEW _pr_inside AS
WITH m AS (
    SELECT r.*, p.line_no AS w_id, coalesce(p.nxt_rn, 9223372036854775807) AS w_end_rn
    FROM _pr_rows r
    LEFT JOIN (SELECT run_id, pid, rn, line_no, CASE WHEN nxt_d = -1 THEN nxt_rn END AS nxt_rn
               FROM _pr_pairs WHERE d = 1) p USING (run_id, pid, rn)
), c AS (
    SELECT *,
           last_value(w_id IGNORE NULLS) OVER t AS cw_id,
           last_value(w_end_rn IGNORE NULLS) OVER t AS cw_end_rn
    FROM m WINDOW t AS (PARTITION BY run_id, pid ORDER BY rn ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
), i AS (
    SELECT *,
           func = 'down_read_trylock' AND kind = 'return' AND ret IS NOT NULL AND NOT _is_zero(ret) AS try_ok,
           func = 'down_read_trylock' AND kind = 'return' AND ret IS NOT NULL AND _is_zero(ret) AS try_fail,
           func = 'down_read' AND kind = 'return' AS dr_ret,
           func = 'up_read' AND kind = 'entry' AS is_up,
           func IN (SELECT func FROM _rmap_iterator_funcs) AND kind = 'return' AS is_iter,
           func IN (SELECT func FROM _rmap_one_callbacks) AND kind = 'entry' AS is_cb,
           func IN (SELECT func FROM _rmap_invalid_vma_funcs) AND kind = 'return'
               AND ret IS NOT NULL AND NOT _is_zero(ret) AS inv_yes
    FROM c WHERE cw_id IS NOT NULL AND rn < cw_end_rn
)
SELECT run_id, pid, cw_id AS walk_id, rn, line_no, ts_ns, func, kind, ret, fields,
       try_ok, try_fail, dr_ret, is_up, is_iter, is_cb, inv_yes,
       is_iter AND ret IS NOT NULL AND NOT _is_zero(ret) AS iter_hit,
       -- window number: running count of window starts (successful trylock return, or down_read return)
       sum(CASE WHEN try_ok OR dr_ret THEN 1 ELSE 0 END) OVER w AS wno,
       -- the rmap_item address of the project's source-line probe (e.g. ksm_item) seen last in this walk
       last_value(CASE WHEN kind = 'entry' THEN fields['addr'] END IGNORE NULLS) OVER w AS item_addr,
       lead(func) OVER v AS next_func
FROM i
WINDOW w AS (PARTITION BY run_id, cw_id ORDER BY rn ROWS UNBOUNDED PRECEDING),
       v AS (PARTITION BY run_id, cw_id ORDER BY rn);

CREATE OR REPLACE VIEW _pr_iter_runs AS
SELECT DISTINCT run_id FROM _pr_rows
WHERE func IN (SELECT func FROM _rmap_iterator_funcs) AND kind = 'return' AND ret IS NOT NULL;

-- windows: start = the window's trylock/down_read return, end = entry of the next up_read
CREATE OR REPLACE VIEW _pr_windows AS
WITH c AS (
    SELECT *, min(rn) OVER g AS start_rn, min(CASE WHEN is_up THEN rn END) OVER g AS close_rn,
           arg_min_null(item_addr, rn) OVER g AS w_addr
    FROM _pr_inside WHERE wno > 0
    WINDOW g AS (PARTITION BY run_id, walk_id, wno)
), m AS (
    SELECT *, rn > start_rn AND rn < coalesce(close_rn, 9223372036854775807) AS inside,
           _hex(fields['vm_start']) AS vs, _hex(fields['vm_end']) AS ve, _hex(w_addr) AS a
    FROM c
)
SELECT run_id, walk_id, wno AS window_no,
       arg_min_null(ts_ns, rn) AS start_ns,
       min(ts_ns) FILTER (WHERE rn = close_rn) AS end_ns,
       count(*) FILTER (WHERE inside AND iter_hit) AS iterations_raw,
       count(*) FILTER (WHERE inside AND is_cb) AS rmap_one,
       count(*) FILTER (WHERE inside AND inv_yes) AS invalid,
       arg_min_null(dr_ret, rn) AS slow,
       -- skip split (project convention, walk_rules.md (c)): every counted iteration carries vm_start and
       -- vm_end, and an entry probe with addr came before the window start: iterations whose
       -- [vm_start, vm_end) does not contain addr are address skips
       CASE WHEN any_value(a) IS NOT NULL
             AND count(*) FILTER (WHERE inside AND iter_hit AND (vs IS NULL OR ve IS NULL)) = 0
            THEN count(*) FILTER (WHERE inside AND iter_hit AND NOT (vs <= a AND a < ve)) END AS skip_addr_raw,
       arg_max_null(iter_hit, rn) FILTER (WHERE inside AND is_iter) AS last_iter_hit
FROM m
GROUP BY run_id, walk_id, wno;

CREATE OR REPLACE VIEW _walks_kprobe AS
WITH w AS (
    SELECT run_id, label, line_no AS walk_id, page_type, pid, comm, cpu, ts_ns AS start_ns,
           CASE WHEN nxt_d = -1 THEN nxt_ts END AS end_ns, nxt_d IS NOT DISTINCT FROM -1 AS paired,
           -- caller: the return's "(caller+0x../0x.. <- rmap_walk_ksm)" symbol, without offset
           CASE WHEN nxt_d = -1 THEN _sym(nxt_parent) END AS caller,
           line_no AS start_line, CASE WHEN nxt_d = -1 THEN nxt_line END AS end_line, true AS has_entry
    FROM _pr_pairs WHERE d = 1
    UNION ALL
    -- a return without entry (the trace began inside the walk): cpu = the return's CPU
    SELECT run_id, label, line_no, page_type, pid, comm, cpu, NULL::BIGINT, ts_ns, false,
           _sym(parent), NULL::BIGINT, line_no, false
    FROM _pr_pairs WHERE d = -1 AND level IS NULL
), win AS (
    SELECT run_id, walk_id, count(*) AS n_windows,
           max(end_ns - start_ns) AS max_hold_ns, sum(end_ns - start_ns)::BIGINT AS total_hold_ns,
           sum(iterations_raw)::BIGINT AS iterations, max(iterations_raw) AS max_window_iterations,
           count(*) FILTER (WHERE slow) AS slow_windows,
           CASE WHEN count(*) FILTER (WHERE skip_addr_raw IS NULL) = 0 THEN sum(skip_addr_raw)::BIGINT END AS skip_addr,
           arg_max_null(last_iter_hit, window_no) AS early_exit
    FROM _pr_windows GROUP BY run_id, walk_id
), ch AS (
    SELECT run_id, walk_id, count(*) FILTER (WHERE is_cb) AS rmap_one, count(*) FILTER (WHERE inv_yes) AS invalid,
           -- bailout: the walk's last traced event is a failed trylock
           arg_max_null(try_fail, rn) AS bailout_last
    FROM _pr_inside GROUP BY run_id, walk_id
)
SELECT w.run_id, w.label, w.walk_id, 'kprobe' AS evidence, w.page_type, w.pid, w.comm, w.cpu,
       w.start_ns, w.end_ns, w.end_ns - w.start_ns AS duration_ns, w.paired,
       CASE WHEN has_entry THEN coalesce(win.n_windows, 0) END AS n_windows,
       win.max_hold_ns, win.total_hold_ns,
       CASE WHEN has_entry AND it.run_id IS NOT NULL THEN coalesce(win.iterations, 0) END AS iterations,
       CASE WHEN it.run_id IS NOT NULL THEN win.max_window_iterations END AS max_window_iterations,
       CASE WHEN has_entry THEN coalesce(ch.rmap_one, 0) END AS rmap_one,
       CASE WHEN has_entry AND it.run_id IS NOT NULL
            THEN coalesce(win.iterations, 0) - coalesce(ch.rmap_one, 0) - coalesce(ch.invalid, 0) END AS skipped,
       CASE WHEN it.run_id IS NOT NULL THEN win.skip_addr END AS skip_addr,
       CASE WHEN it.run_id IS NOT NULL AND win.skip_addr IS NOT NULL
            THEN coalesce(win.iterations, 0) - coalesce(ch.rmap_one, 0) - coalesce(ch.invalid, 0) - win.skip_addr
       END AS skip_mm,
       w.caller,
       CASE WHEN has_entry THEN coalesce(win.slow_windows, 0) END AS slow_windows,
       -- extras, not fixed by walk_rules.md (c): bailout = the walk's last event inside it is a failed trylock;
       -- early_exit = the last window's last iterator return was non-zero (it returned a chain)
       CASE WHEN has_entry THEN coalesce(ch.bailout_last, false) AND w.paired END AS bailout,
       CASE WHEN has_entry THEN coalesce(ch.invalid, 0) END AS invalid,
       CASE WHEN it.run_id IS NOT NULL THEN win.early_exit END AS early_exit,
       NULL::BIGINT AS n_events, w.start_line, w.end_line
FROM w
LEFT JOIN win USING (run_id, walk_id)
LEFT JOIN ch USING (run_id, walk_id)
LEFT JOIN _pr_iter_runs it ON it.run_id = w.run_id;

CREATE OR REPLACE VIEW _lock_windows_kprobe AS
SELECT f.run_id, f.walk_id, f.window_no, f.start_ns, f.end_ns, f.end_ns - f.start_ns AS hold_ns,
       CASE WHEN it.run_id IS NOT NULL THEN f.iterations_raw END AS iterations,
       f.rmap_one,
       CASE WHEN it.run_id IS NOT NULL THEN f.iterations_raw - f.rmap_one - f.invalid END AS skipped,
       CASE WHEN it.run_id IS NOT NULL THEN f.skip_addr_raw END AS skip_addr,
       CASE WHEN it.run_id IS NOT NULL THEN f.iterations_raw - f.rmap_one - f.invalid - f.skip_addr_raw END AS skip_mm,
       f.invalid, f.slow
FROM _pr_windows f LEFT JOIN _pr_iter_runs it ON it.run_id = f.run_id;
