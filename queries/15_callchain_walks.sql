-- ksmtrace walk reconstruction, evidence (d): perf callchains on stock kernels, typically
-- migrate:set_migration_pte / remove_migration_pte recorded with -g (docs/walk-rules.md (d)).
-- HEURISTIC: the grouping into walks is inferred; start/end are the first/last selected event, so
-- duration_ns is a LOWER BOUND of the walk (it misses the first window up to its callback, the rest of
-- the last window and, for restore walks, the silent pass 1). Private; see `walks`, `lock_windows`; output
-- columns: see 12_tracepoint_walks.sql.

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
    FROM _ev_rare() e JOIN _rmap_walkers w ON w.func = e.cc_walker
    LEFT JOIN _pte_page_keys pk ON pk.event = e.event
    WHERE e.ev_kind = 'callchain'
    UNION ALL BY NAME
    SELECT rk, line_no, ts_ns, pid, event, true AS breaker
    FROM _ev_rare() WHERE ev_kind = 'breaker' AND pid IS NOT NULL
), task_order AS (
    -- (1) per (run, pid) in ts order, with the walk breakers: a new walk starts at a selected event when the
    -- previous row is a breaker (another migrate / compaction event of the task), or when caller, page_type,
    -- event or page key (both non-NULL) differ from the previous selected event
    SELECT *,
           lag(breaker) OVER t AS prv_breaker, lag(caller) OVER t AS prv_caller,
           lag(page_type) OVER t AS prv_page_type, lag(event) OVER t AS prv_event, lag(page_key) OVER t AS prv_key,
           row_number() OVER t AS pos
    FROM cc_rows WINDOW t AS (PARTITION BY rk, pid ORDER BY ts_ns, line_no)
), segment_starts AS (
    SELECT *,
           prv_breaker IS NULL OR prv_breaker
           OR caller IS DISTINCT FROM prv_caller OR page_type IS DISTINCT FROM prv_page_type
           OR event IS DISTINCT FROM prv_event
           OR (page_key IS NOT NULL AND prv_key IS NOT NULL AND page_key <> prv_key) AS new_seg
    FROM task_order WHERE NOT breaker
), segments AS MATERIALIZED (
    -- (2) segments: first line / position of the segment, previous selected event's ts
    SELECT rk, line_no, ts_ns, cpu, pid, comm, page_type, caller, addr, pos,
           -- the last non-NULL value so far, as max / arg_max by pos (the row's rank in this very order; see
           -- 13_funcgraph_walks.sql, Performance)
           arg_max(CASE WHEN new_seg THEN line_no END, pos) OVER t AS seg_line,
           max(CASE WHEN new_seg THEN pos END) OVER t AS seg_pos,
           lag(ts_ns) OVER t AS prev_ts
    FROM segment_starts WINDOW t AS (PARTITION BY rk, pid ORDER BY ts_ns, line_no ROWS UNBOUNDED PRECEDING)
),
-- A walk also ends when fields['addr'] repeats within it (docs/walk-rules.md (d)). Exact greedy rule, without a
-- row-by-row loop, for the (rare) segments with a repeated addr: with prev(i) = position of the previous
-- row of the segment with the same addr, the walk starting at position s ends before
-- b(s) = min{ i : prev(i) >= s }: a running minimum over rows sorted by prev, looked up with an ASOF join;
-- the walk starts are the chain s0, b(s0), b(b(s0)) ... (a recursive CTE, one step per walk).
segments_with_repeats AS (
    SELECT DISTINCT rk, pid, seg_line FROM segments WHERE addr IS NOT NULL
    GROUP BY rk, pid, seg_line, addr HAVING count(*) > 1
), p AS MATERIALIZED (   -- the rows of those segments, with the position of the previous row of the same addr
    SELECT g.*, lag(g.pos) OVER (PARTITION BY g.rk, g.pid, g.seg_line, g.addr ORDER BY g.pos) AS prev_pos
    FROM segments g SEMI JOIN segments_with_repeats rep
         ON rep.rk = g.rk AND rep.pid = g.pid AND rep.seg_line = g.seg_line
), break_before AS (   -- b(t) = min pos among rows with prev_pos >= t
    SELECT rk, pid, seg_line, prev_pos,
           min(pos) OVER (PARTITION BY rk, pid, seg_line ORDER BY prev_pos DESC ROWS UNBOUNDED PRECEDING) AS b
    FROM p WHERE addr IS NOT NULL AND prev_pos IS NOT NULL
), next_walk_start AS MATERIALIZED (
    SELECT q.rk, q.pid, q.seg_line, q.pos AS s, t.b
    FROM p q ASOF JOIN break_before t ON q.rk = t.rk AND q.pid = t.pid AND q.seg_line = t.seg_line
                                AND q.pos <= t.prev_pos
), walk_starts AS (
    WITH RECURSIVE ch(rk, pid, seg_line, s) AS (
        SELECT rk, pid, seg_line, min(pos) FROM p GROUP BY rk, pid, seg_line
        UNION ALL
        SELECT ch.rk, ch.pid, ch.seg_line, n.b
        FROM ch JOIN next_walk_start n ON ch.rk = n.rk AND ch.pid = n.pid AND ch.seg_line = n.seg_line AND ch.s = n.s
    )
    SELECT c.rk, c.pid, c.seg_line, c.s AS start_pos, p.line_no AS start_line
    FROM ch c JOIN p ON p.rk = c.rk AND p.pid = c.pid AND p.seg_line = c.seg_line AND p.pos = c.s
), split_rows AS (
    SELECT p.rk, p.line_no, c.start_line, c.start_pos
    FROM p ASOF JOIN walk_starts c ON p.rk = c.rk AND p.pid = c.pid AND p.seg_line = c.seg_line
                                AND p.pos >= c.start_pos
), cc_walk_rows AS MATERIALIZED (
    -- walk id = line of the walk's first event; window_no = events since that one
    SELECT g.*, coalesce(sp.start_line, g.seg_line) AS walk_id, g.pos - coalesce(sp.start_pos, g.seg_pos) AS window_no
    FROM segments g LEFT JOIN split_rows sp ON sp.rk = g.rk AND sp.line_no = g.line_no
), cc_walks AS (
    SELECT rk, walk_id, any_value(page_type) AS page_type, any_value(pid) AS pid,
           arg_min_null(comm, pos) AS comm, arg_min_null(cpu, pos) AS cpu,
           min(ts_ns) AS start_ns, max(ts_ns) AS end_ns, count(*) AS n_events,
           max(ts_ns - prev_ts) FILTER (WHERE window_no > 0) AS max_hold_ns,
           sum(ts_ns - prev_ts) FILTER (WHERE window_no > 0) AS total_hold_ns,
           any_value(caller) AS caller, min(line_no) AS start_line, max(line_no) AS end_line
    FROM cc_walk_rows GROUP BY rk, walk_id
)
SELECT 'walk' AS part, w.rk, w.walk_id, 'perf-callchain' AS evidence,
       w.page_type, w.pid, w.comm, w.cpu, w.start_ns, w.end_ns, w.end_ns - w.start_ns AS duration_ns,
       -- complete needs the walk to lie wholly inside the trace (not at its first or last timestamp)
       w.start_ns <> b.first_ts_ns AND w.end_ns <> b.last_ts_ns AS paired,
       w.n_events - 1 AS n_windows, w.max_hold_ns, w.total_hold_ns::BIGINT AS total_hold_ns,
       w.n_events AS rmap_one, w.caller, w.n_events, w.start_line, w.end_line
FROM cc_walks w JOIN (SELECT hash(run_id) AS rk, first_ts_ns, last_ts_ns FROM runs) b USING (rk)
UNION ALL BY NAME
-- lock windows: the gaps between consecutive events of one walk (a proxy for one window, docs/walk-rules.md (d))
SELECT 'window' AS part, rk, walk_id, window_no, 'perf-callchain' AS evidence,
       prev_ts AS start_ns, ts_ns AS end_ns, ts_ns - prev_ts AS hold_ns
FROM cc_walk_rows WHERE window_no > 0;
