-- ksmtrace walk reconstruction, evidence (d): perf callchains on stock kernels, typically
-- migrate:set_migration_pte / remove_migration_pte recorded with -g (kernel.md §6.4, walk_rules.md (d)).
-- HEURISTIC: the grouping into walks is inferred; start/end are the first/last selected event, so
-- duration_ns is a LOWER BOUND of the walk (it misses the first window up to its callback, the rest of
-- the last window and, for restore walks, the silent pass 1). Private views; see `walks`, `lock_windows`.

-- selected events (a walker frame in the callchain) and the events that end a walk (migrate/compaction)
CREATE OR REPLACE VIEW _cc_rows AS
WITH k AS (
    SELECT (SELECT list(func) FROM _rmap_walkers) AS walkers,
           (SELECT list(sym) FROM _rmap_dispatch_frames) AS dispatch
), sel AS (
    SELECT e.run_id, e.label, e.line_no, e.ts_ns, e.cpu, e.pid, e.comm, e.event, e.fields,
           _walker_frame(e.cc, k.walkers) AS walker,
           -- caller: first frame outward from the walker frame that is not rmap_walk / rmap_walk_locked
           _caller_after(e.cc, k.walkers, k.dispatch) AS caller
    FROM (SELECT e.*, coalesce(e.callchain, s.callchain) AS cc  -- perf -g, or an ftrace <stack trace> record
          FROM events e
          LEFT JOIN _stacks s ON s.run_id = e.run_id AND s.host_line = e.line_no AND s.pid = e.pid) e, k
    WHERE e.cc IS NOT NULL AND len(e.cc) > 0
      AND e.kind IS NULL
      AND e.event NOT IN (SELECT event FROM _callchain_ignored_events)
      AND list_has_any(list_transform(e.cc, lambda f: f.sym), k.walkers)
)
SELECT s.run_id, s.label, s.line_no, s.ts_ns, s.cpu, s.pid, s.comm, s.event, w.page_type, s.caller,
       s.fields['addr'] AS addr,
       -- page key: ((invert ? ~pte : pte) >> shift) & (2^bits - 1), pte as unsigned 64-bit (10_config.sql)
       CASE WHEN pk.event IS NOT NULL AND _hex(s.fields['pte']) IS NOT NULL THEN
           ((CASE WHEN pk.invert THEN ~_hex(s.fields['pte']) ELSE _hex(s.fields['pte']) END) >> pk.shift)
           & (((1::UBIGINT) << pk.bits) - 1)
       END AS page_key,
       false AS breaker
FROM sel s JOIN _rmap_walkers w ON w.func = s.walker
LEFT JOIN _pte_page_keys pk ON pk.event = s.event
UNION ALL
SELECT run_id, label, line_no, ts_ns, cpu, pid, comm, event, NULL, NULL, NULL, NULL, true
FROM events e
WHERE EXISTS (SELECT 1 FROM _callchain_walk_breakers b WHERE e.event LIKE b.event_like ESCAPE '\')
  AND pid IS NOT NULL;

-- Grouping per (run, pid) in ts order: a new walk starts at a selected event when the previous row is a
-- breaker, or when caller, page_type, event or page key (both non-NULL) differ from the previous selected
-- event. That gives segments.
CREATE OR REPLACE VIEW _cc_segments AS
WITH o AS (
    SELECT *,
           lag(breaker) OVER t AS prv_breaker, lag(caller) OVER t AS prv_caller,
           lag(page_type) OVER t AS prv_page_type, lag(event) OVER t AS prv_event, lag(page_key) OVER t AS prv_key
    FROM _cc_rows WINDOW t AS (PARTITION BY run_id, pid ORDER BY ts_ns, line_no)
), s AS (
    SELECT *,
           prv_breaker IS NULL OR prv_breaker
           OR caller IS DISTINCT FROM prv_caller OR page_type IS DISTINCT FROM prv_page_type
           OR event IS DISTINCT FROM prv_event
           OR (page_key IS NOT NULL AND prv_key IS NOT NULL AND page_key <> prv_key) AS new_seg
    FROM o WHERE NOT breaker
)
SELECT *, sum(new_seg::INTEGER) OVER (PARTITION BY run_id, pid ORDER BY ts_ns, line_no ROWS UNBOUNDED PRECEDING) AS seg,
       row_number() OVER (PARTITION BY run_id, pid ORDER BY ts_ns, line_no) AS pos
FROM s;

-- A walk also ends when fields['addr'] repeats within it. Exact greedy rule, without a row-by-row loop:
-- with prev(i) = position of the previous row of the segment with the same addr, the walk starting at
-- position s ends before b(s) = min{ i : prev(i) >= s }. b() is a running minimum over rows sorted by
-- prev (an ASOF lookup); the walk starts are then the chain s0, b(s0), b(b(s0)) ... followed only in
-- segments that contain a repeat (a recursive CTE, one step per walk of such a segment).
CREATE OR REPLACE VIEW _cc_walk_rows AS
WITH p AS (
    SELECT *, lag(pos) OVER (PARTITION BY run_id, pid, seg, addr ORDER BY pos) AS prev_pos
    FROM _cc_segments
), seginfo AS (
    SELECT run_id, pid, seg, min(pos) AS first_pos, bool_or(addr IS NOT NULL AND prev_pos IS NOT NULL) AS has_repeat
    FROM p GROUP BY run_id, pid, seg
), thr AS (   -- g(t) = min pos among rows with prev_pos >= t
    SELECT p.run_id, p.pid, p.seg, p.prev_pos,
           min(p.pos) OVER (PARTITION BY p.run_id, p.pid, p.seg ORDER BY p.prev_pos DESC
                            ROWS UNBOUNDED PRECEDING) AS g
    FROM p JOIN seginfo USING (run_id, pid, seg)
    WHERE has_repeat AND p.addr IS NOT NULL AND p.prev_pos IS NOT NULL
), chain AS (
    WITH RECURSIVE ch(run_id, pid, seg, s) AS (
        SELECT run_id, pid, seg, first_pos FROM seginfo WHERE has_repeat
        UNION ALL
        SELECT ch.run_id, ch.pid, ch.seg, t.g
        FROM ch ASOF JOIN thr t ON ch.run_id = t.run_id AND ch.pid = t.pid AND ch.seg = t.seg AND t.prev_pos >= ch.s
    )
    SELECT run_id, pid, seg, s AS start_pos FROM ch
)
SELECT p.*,
       -- walk id: line of the walk's first event
       first_value(p.line_no) OVER (PARTITION BY p.run_id, p.pid, p.seg, sub ORDER BY p.pos) AS walk_id
FROM (
    SELECT p.*,
           CASE WHEN si.has_repeat
                THEN count(c.start_pos) OVER (PARTITION BY p.run_id, p.pid, p.seg ORDER BY p.pos ROWS UNBOUNDED PRECEDING)
                ELSE 0 END AS sub
    FROM p JOIN seginfo si USING (run_id, pid, seg)
    LEFT JOIN chain c ON c.run_id = p.run_id AND c.pid = p.pid AND c.seg = p.seg AND c.start_pos = p.pos
) p;

CREATE OR REPLACE VIEW _lock_windows_callchain AS
SELECT run_id, walk_id,
       row_number() OVER (PARTITION BY run_id, walk_id ORDER BY ts_ns, line_no) - 1 AS window_no,
       lag(ts_ns) OVER (PARTITION BY run_id, walk_id ORDER BY ts_ns, line_no) AS start_ns,
       ts_ns AS end_ns
FROM _cc_walk_rows
QUALIFY window_no >= 1;

CREATE OR REPLACE VIEW _walks_callchain AS
WITH w AS (
    SELECT run_id, any_value(label) AS label, walk_id, any_value(page_type) AS page_type, any_value(pid) AS pid,
           arg_min_null(comm, pos) AS comm, arg_min_null(cpu, pos) AS cpu,
           min(ts_ns) AS start_ns, max(ts_ns) AS end_ns, count(*) AS n_events,
           any_value(caller) AS caller, min(line_no) AS start_line, max(line_no) AS end_line
    FROM _cc_walk_rows GROUP BY run_id, walk_id
), g AS (
    SELECT run_id, walk_id, max(end_ns - start_ns) AS max_hold_ns, sum(end_ns - start_ns)::BIGINT AS total_hold_ns
    FROM _lock_windows_callchain GROUP BY run_id, walk_id
)
SELECT w.run_id, w.label, w.walk_id, 'perf-callchain' AS evidence, w.page_type, w.pid, w.comm, w.cpu,
       w.start_ns, w.end_ns, w.end_ns - w.start_ns AS duration_ns,
       -- complete needs the walk to lie wholly inside the trace (not at its first or last timestamp)
       w.start_ns <> b.first_ts_ns AND w.end_ns <> b.last_ts_ns AS paired,
       w.n_events - 1 AS n_windows, g.max_hold_ns, g.total_hold_ns,
       NULL::BIGINT AS iterations, NULL::BIGINT AS max_window_iterations, w.n_events AS rmap_one,
       NULL::BIGINT AS skipped, NULL::BIGINT AS skip_addr, NULL::BIGINT AS skip_mm, w.caller,
       NULL::BIGINT AS slow_windows, NULL::BOOLEAN AS bailout, NULL::BIGINT AS invalid,
       NULL::BOOLEAN AS early_exit, w.n_events, w.start_line, w.end_line
FROM w JOIN _run_bounds b USING (run_id) LEFT JOIN g USING (run_id, walk_id);
