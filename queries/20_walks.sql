-- ksmtrace standard views, part 2: every rmap walk, whatever the evidence.
-- Rules: docs/walk-rules.md; per-kind logic in 12_tracepoint_walks.sql (a), 13_funcgraph_walks.sql (b),
-- 14_probe_walks.sql (c), 15_callchain_walks.sql (d), 16_counter_windows.sql and 17_counter_walks.sql (e);
-- completeness in 18_walk_completeness.sql.

-- _walk_parts: walks (part = 'walk') and lock windows (part = 'window') of every kind, counter lines
-- attached and the completeness rules applied. One query, every shared relation computed once
-- (MATERIALIZED CTEs named like the stand-in views the macros read), so `walks` and `lock_windows` each
-- cost one pass over the events; ingest computes _walk_parts once for both (ksmtrace.db.SHARED).
-- The query is the table macro _walk_parts_of_ev() over the relation `_ev` (the one scan of the events,
-- 11_scan.sql): the view _walk_parts gives it `_ev` as a MATERIALIZED CTE; ingest gives it a temp table
-- `_ev` instead (SHARED), which each reader scans for its own columns only, where the CTE is read back
-- whole by every reader once it outgrows the memory limit and spills (200 MB kprobes: 8.3 s -> 4.0 s).
CREATE OR REPLACE MACRO _walk_parts_of_ev() AS TABLE
WITH
-- the kinds' walks and windows, keyed by the run key rk = hash(run_id) until the end
_kind_parts AS MATERIALIZED (
    SELECT * FROM _tp_out()
    UNION ALL BY NAME SELECT * FROM _fg_out()
    UNION ALL BY NAME SELECT * FROM _pr_out()
    UNION ALL BY NAME SELECT * FROM _cc_out()
),
_counter_line_rows AS MATERIALIZED (SELECT * FROM _counter_lines()),
_counter_owned_rows AS MATERIALIZED (SELECT * FROM _counter_owned()),
_counter_walk_line_rows AS MATERIALIZED (SELECT * FROM _counter_walk_lines()),
_walk_rows_all AS MATERIALIZED (
    SELECT * FROM _kind_parts WHERE part = 'walk'
    UNION ALL BY NAME SELECT * FROM _counter_walks()
),
incomplete AS (SELECT DISTINCT rk, walk_id FROM _incomplete_walks()),
fill AS (SELECT * FROM _counter_fill()),
walk_rows AS (
    SELECT a.* REPLACE (
               (a.paired AND x.walk_id IS NULL) AS paired,
               coalesce(a.n_windows, f.n_windows) AS n_windows,
               coalesce(a.max_hold_ns, f.max_hold_ns) AS max_hold_ns,
               coalesce(a.total_hold_ns, f.total_hold_ns) AS total_hold_ns,
               coalesce(a.iterations, f.iterations) AS iterations,
               coalesce(a.max_window_iterations, f.max_window_iterations) AS max_window_iterations,
               coalesce(a.rmap_one, f.rmap_one) AS rmap_one,
               coalesce(a.skipped, f.skipped) AS skipped,
               coalesce(a.skip_addr, f.skip_addr) AS skip_addr,
               coalesce(a.skip_mm, f.skip_mm) AS skip_mm,
               coalesce(a.invalid, f.invalid) AS invalid)
    FROM _walk_rows_all a
    LEFT JOIN incomplete x ON x.rk = a.rk AND x.walk_id = a.walk_id
    LEFT JOIN fill f ON f.rk = a.rk AND f.walk_id = a.walk_id AND f.evidence = a.evidence
),
parts AS (
    SELECT * FROM walk_rows
    UNION ALL BY NAME SELECT * FROM _kind_parts WHERE part = 'window'
    UNION ALL BY NAME SELECT * FROM _counter_windows()
)
SELECT r.run_id, r.label, p.* EXCLUDE (rk)
FROM parts p JOIN (SELECT hash(run_id) AS rk, run_id, label FROM runs) r ON r.rk = p.rk;

CREATE OR REPLACE VIEW _walk_parts AS
WITH _ev AS MATERIALIZED (SELECT * FROM _ev_scan)   -- the one scan of the events (11_scan.sql)
SELECT * FROM _walk_parts_of_ev();

-- @view walks
-- One row per reconstructed rmap walk (rmap_walk_ksm, and rmap_walk_anon / rmap_walk_file where the
-- evidence shows them), from whichever evidence the run holds: rmap tracepoints, function_graph,
-- kprobes/fprobes, perf callchains of migrate events, or per-window counter lines. A column the evidence
-- cannot give is NULL, never 0. Counter lines that fall inside a walk of another kind fill that walk's NULL
-- columns. For evidence perf-callchain the walk is a heuristic grouping of events and duration_ns is a
-- LOWER BOUND (first to last event). A loss marker (__lost_events) inside [start_ns, end_ns] makes a walk
-- incomplete.
-- @needs rmap tracepoints, function_graph with rmap_walk_ksm as graph function, kprobes/fprobes on rmap_walk_ksm, perf -g callchains on migrate events, or counter lines
-- @column run_id VARCHAR run the walk belongs to (runs.run_id)
-- @column label VARCHAR label of that run
-- @column walk_id BIGINT unique within the run: the input line number of the walk's first record
-- @column evidence VARCHAR tracepoint, function-graph, kprobe, perf-callchain or counters
-- @column page_type VARCHAR ksm, anon or file
-- @column pid INTEGER thread that executed the walk
-- @column comm VARCHAR its name as printed (function_graph cuts it to 7 characters)
-- @column cpu INTEGER CPU the walk started on (the CPU of its end when the start was not seen)
-- @column start_ns BIGINT walk entry, ns (NULL when the trace began inside the walk)
-- @column end_ns BIGINT walk return, ns (NULL when the return was not seen)
-- @column duration_ns BIGINT end - start, or the duration the producer printed (function_graph, v4 tracepoint, ksm_walk walk_ns)
-- @column complete BOOLEAN both ends seen and no loss marker inside [start_ns, end_ns]; perf-callchain: also lies wholly inside the trace
-- @column n_windows BIGINT lock windows (anon_vma read-lock acquisitions); perf-callchain: gaps = n_events - 1
-- @column max_hold_ns BIGINT longest window hold, ns
-- @column total_hold_ns BIGINT sum of window holds, ns
-- @column iterations BIGINT interval-tree iterations (chains returned) over the walk
-- @column max_window_iterations BIGINT most iterations in one window
-- @column rmap_one BIGINT rmap_one callback invocations (perf-callchain: n_events)
-- @column skipped BIGINT iterations - rmap_one - invalid
-- @column skip_addr BIGINT skips because the rmap_item address lies outside the VMA (counters, argument-fetching probes)
-- @column skip_mm BIGINT skips because the VMA's mm is wrong for the pass (counters, argument-fetching probes)
-- @extras the contract columns end here (docs/walk-rules.md, "Conventions"); extras follow
-- @column caller VARCHAR walk caller: first caller frame outside rmap_walk*, the kretprobe's caller, the funcgraph-retaddr symbol
-- @column slow_windows BIGINT windows acquired with down_read after a failed trylock
-- @column bailout BOOLEAN the walk returned because a trylock failed (rwc->try_lock)
-- @column invalid BIGINT invalid_vma rejections
-- @column early_exit BOOLEAN the walk returned from inside the loop (rmap_one or done stopped it)
-- @column n_events BIGINT perf-callchain: selected events in the walk; counters: counter lines
CREATE OR REPLACE VIEW _walks_from_events AS
SELECT run_id, label, walk_id::BIGINT AS walk_id, evidence, page_type, pid::INTEGER AS pid, comm,
       cpu::INTEGER AS cpu, start_ns::BIGINT AS start_ns, end_ns::BIGINT AS end_ns,
       duration_ns::BIGINT AS duration_ns, paired AS complete,
       n_windows::BIGINT AS n_windows, max_hold_ns::BIGINT AS max_hold_ns, total_hold_ns::BIGINT AS total_hold_ns,
       iterations::BIGINT AS iterations, max_window_iterations::BIGINT AS max_window_iterations,
       rmap_one::BIGINT AS rmap_one, skipped::BIGINT AS skipped, skip_addr::BIGINT AS skip_addr,
       skip_mm::BIGINT AS skip_mm, caller, slow_windows::BIGINT AS slow_windows, bailout,
       invalid::BIGINT AS invalid, early_exit, n_events::BIGINT AS n_events
FROM _walk_parts WHERE part = 'walk';
