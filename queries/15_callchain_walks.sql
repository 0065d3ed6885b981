-- ksmtrace walk reconstruction, evidence (d): perf callchains on stock kernels, typically
-- migrate:set_migration_pte / remove_migration_pte recorded with -g (kernel.md §6.4, walk_rules.md (d)).
-- HEURISTIC: the grouping into walks is inferred; start/end are the first/last selected event, so
-- duration_ns is a LOWER BOUND of the walk (it misses the first window up to its callback, the rest of
-- the last window and, for restore walks, the silent pass 1). Private views; see `walks`, `lock_windows`.

CREATE OR REPLACE MACRO _cc_out() AS TABLE
WITH cc_rows AS (
    -- selected events (a walker frame in the callchain; 11_scan.sql) and the walk breakers
    -- (another migrate event: mm_migrate_pages(_start), or a compaction event, of the same pid)
    SELECT e.rk, e.line_no, e.ts_ns, e.cpu, e.pid, e.comm, e.event, w.page_type, e.cc_caller AS caller,
           e.addr,
           -- page key: ((invert ? ~pte : pte) >> shift) & (2^bits - 1), pte as unsigned 64-bit (10_config.sql)
           CASE WHEN pk.event IS NOT NULL AND e.pte IS NOT NULL THEN
               ((CASE WHEN pk.invert THEN ~e.pte ELSE e.pte END) >> pk.shift) & (((1::UBIGINT) << pk.bits) - 1)
           END AS page_key,
           false AS breaker
    FROM _ev e JOIN _rmap_walkers w ON w.func = e.cc_walker
    LEFT JOIN _pte_page_keys pk ON pk.event = e.event
    WHERE e.cls = 4
    UNION ALL
    SELECT rk, line_no, ts_ns, NULL, pid, NULL, event, NULL, NULL, NULL, NULL, true
    FROM _ev WHERE cls = 5 AND pid IS NOT NULL
), o AS (
    -- (1) per (run, pid) in ts order, with the walk breakers: a new walk starts at a selected event when the
    -- previous row is a breaker (another migrate / compaction event of the task), or when caller, page_type,
    -- event or page key (both non-NULL) differ from the previous selected event
    SELECT *,
           lag(breaker) OVER t AS prv_breaker, lag(caller) OVER t AS prv_caller,
           lag(page_type) OVER t AS prv_page_type, lag(event) OVER t AS prv_event, lag(page_key) OVER t AS prv_key,
           row_number() OVER t AS pos
    FROM cc_rows WINDOW t AS (PARTITION BY rk, pid ORDER BY ts_ns, line_no)
), s AS (
    SELECT *,
           prv_breaker IS NULL OR prv_breaker
           OR caller IS DISTINCT FROM prv_caller OR page_type IS DISTINCT FROM prv_page_type
           OR event IS DISTINCT FROM prv_event
           OR (page_key IS NOT NULL AND prv_key IS NOT NULL AND page_key <> prv_key) AS new_seg
    FROM o WHERE NOT breaker
), g AS MATERIALIZED (
    -- (2) segments: first line / position of the segment, previous selected event's ts
    SELECT rk, line_no, ts_ns, cpu, pid, comm, page_type, caller, addr, pos,
           last_value(CASE WHEN new_seg THEN line_no END IGNORE NULLS) OVER t AS seg_line,
           last_value(CASE WHEN new_seg THEN pos END IGNORE NULLS) OVER t AS seg_pos,
           lag(ts_ns) OVER t AS prev_ts
    FROM s WINDOW t AS (PARTITION BY rk, pid ORDER BY ts_ns, line_no ROWS UNBOUNDED PRECEDING)
),
-- A walk also ends when fields['addr'] repeats within it (walk_rules.md (d)). Exact greedy rule, without a
-- row-by-row loop, for the (rare) segments with a repeated addr: with prev(i) = position of the previous
-- row of the segment with the same addr, the walk starting at position s ends before
-- b(s) = min{ i : prev(i) >= s }: a running minimum over rows sorted by prev, looked up with an ASOF join;
-- the walk starts are the chain s0, b(s0), b(b(s0)) ... (a recursive CTE, one step per walk).
rep AS (
    SELECT DISTINCT rk, pid, seg_line FROM g WHERE addr IS NOT NULL
    GROUP BY rk, pid, seg_line, addr HAVING count(*) > 1
), p AS MATERIALIZED (
    SELECT g.*, lag(g.pos) OVER (PARTITION BY g.rk, g.pid, g.seg_line, g.addr ORDER BY g.pos) AS prev_pos
    FROM g SEMI JOIN rep ON rep.rk = g.rk AND rep.pid = g.pid AND rep.seg_line = g.seg_line
), thr AS (   -- g(t) = min pos among rows with prev_pos >= t
    SELECT rk, pid, seg_line, prev_pos,
           min(pos) OVER (PARTITION BY rk, pid, seg_line ORDER BY prev_pos DESC ROWS UNBOUNDED PRECEDING) AS b
    FROM p WHERE addr IS NOT NULL AND prev_pos IS NOT NULL
), nxt AS MATERIALIZED (
    SELECT q.rk, q.pid, q.seg_line, q.pos AS s, t.b
    FROM p q ASOF JOIN thr t ON q.rk = t.rk AND q.pid = t.pid AND q.seg_line = t.seg_line
                                AND q.pos <= t.prev_pos
), chain AS (
    WITH RECURSIVE ch(rk, pid, seg_line, s) AS (
        SELECT rk, pid, seg_line, min(pos) FROM p GROUP BY rk, pid, seg_line
        UNION ALL
        SELECT ch.rk, ch.pid, ch.seg_line, n.b
        FROM ch JOIN nxt n ON ch.rk = n.rk AND ch.pid = n.pid AND ch.seg_line = n.seg_line AND ch.s = n.s
    )
    SELECT c.rk, c.pid, c.seg_line, c.s AS start_pos, p.line_no AS start_line
    FROM ch c JOIN p ON p.rk = c.rk AND p.pid = c.pid AND p.seg_line = c.seg_line AND p.pos = c.s
), split AS (
    SELECT p.rk, p.line_no, c.start_line, c.start_pos
    FROM p ASOF JOIN chain c ON p.rk = c.rk AND p.pid = c.pid AND p.seg_line = c.seg_line
                                AND p.pos >= c.start_pos
), rows AS MATERIALIZED (
    -- walk id = line of the walk's first event; window_no = events since that one
    SELECT g.*, coalesce(sp.start_line, g.seg_line) AS walk_id, g.pos - coalesce(sp.start_pos, g.seg_pos) AS window_no
    FROM g LEFT JOIN split sp ON sp.rk = g.rk AND sp.line_no = g.line_no
), w AS (
    SELECT rk, NULL::VARCHAR AS label, walk_id, any_value(page_type) AS page_type, any_value(pid) AS pid,
           arg_min_null(comm, pos) AS comm, arg_min_null(cpu, pos) AS cpu,
           min(ts_ns) AS start_ns, max(ts_ns) AS end_ns, count(*) AS n_events,
           max(ts_ns - prev_ts) FILTER (WHERE window_no > 0) AS max_hold_ns,
           sum(ts_ns - prev_ts) FILTER (WHERE window_no > 0) AS total_hold_ns,
           any_value(caller) AS caller, min(line_no) AS start_line, max(line_no) AS end_line
    FROM rows GROUP BY rk, walk_id
)
SELECT 'walk' AS part, w.rk AS run_id, w.label, w.walk_id, NULL::BIGINT AS window_no, 'perf-callchain' AS evidence,
       w.page_type, w.pid, w.comm, w.cpu, w.start_ns, w.end_ns, w.end_ns - w.start_ns AS duration_ns,
       -- complete needs the walk to lie wholly inside the trace (not at its first or last timestamp)
       w.start_ns <> b.first_ts_ns AND w.end_ns <> b.last_ts_ns AS paired,
       w.n_events - 1 AS n_windows, w.max_hold_ns, w.total_hold_ns::BIGINT AS total_hold_ns,
       NULL::BIGINT AS iterations, NULL::BIGINT AS max_window_iterations, w.n_events AS rmap_one,
       NULL::BIGINT AS skipped, NULL::BIGINT AS skip_addr, NULL::BIGINT AS skip_mm, w.caller,
       NULL::BIGINT AS slow_windows, NULL::BOOLEAN AS bailout, NULL::BIGINT AS invalid,
       NULL::BOOLEAN AS early_exit, w.n_events, w.start_line, w.end_line,
       NULL::BIGINT AS hold_ns, NULL::BOOLEAN AS slow, NULL::BOOLEAN AS counters_consistent
FROM w JOIN (SELECT hash(run_id) AS rk, first_ts_ns, last_ts_ns FROM runs) b USING (rk)
UNION ALL
-- lock windows: the gaps between consecutive events of one walk (a proxy for one window, kernel.md §6.4)
SELECT 'window', rk, NULL, walk_id, window_no, 'perf-callchain', NULL, NULL, NULL, NULL,
       prev_ts, ts_ns, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, ts_ns - prev_ts, NULL, NULL
FROM rows WHERE window_no > 0;
