-- ksmtrace standard views, part 2: every rmap walk, whatever the evidence (issue #4).
-- Rules: /work/shared/reference/kernel.md §6 and the project's walk_rules.md; per-kind logic in
-- 11_tracepoint_walks.sql (a), 12_funcgraph_walks.sql (b), 13_probe_walks.sql (c),
-- 14_callchain_walks.sql (d), 15_counter_windows.sql (e).

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
-- @column comm VARCHAR its name as printed
-- @column cpu INTEGER CPU the walk started on (NULL when the start was not seen)
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
-- @column caller VARCHAR walk caller: first caller frame outside rmap_walk*, the kretprobe's caller, the funcgraph-retaddr symbol
-- @column slow_windows BIGINT windows acquired with down_read after a failed trylock
-- @column bailout BOOLEAN the walk returned because a trylock failed (rwc->try_lock)
-- @column invalid BIGINT invalid_vma rejections
-- @column early_exit BOOLEAN the walk returned from inside the loop (rmap_one or done stopped it)
-- @column n_events BIGINT perf-callchain: selected events in the walk; counters: counter lines
CREATE OR REPLACE VIEW walks AS
WITH k AS (
    SELECT * FROM _walks_kinds
    UNION ALL
    SELECT * FROM _walks_counters
), lossy AS (
    -- any loss marker of the run inside the walk (by ts; a marker without ts by line number)
    SELECT DISTINCT k.run_id, k.walk_id
    FROM k JOIN _lost l ON l.run_id = k.run_id
    WHERE (l.ts_ns IS NOT NULL AND l.ts_ns BETWEEN k.start_ns AND k.end_ns)
       OR (l.ts_ns IS NULL AND l.line_no BETWEEN k.start_line AND k.end_line)
)
SELECT k.run_id, k.label, k.walk_id::BIGINT AS walk_id, k.evidence, k.page_type, k.pid::INTEGER AS pid, k.comm,
       k.cpu::INTEGER AS cpu, k.start_ns::BIGINT AS start_ns, k.end_ns::BIGINT AS end_ns,
       k.duration_ns::BIGINT AS duration_ns,
       (k.paired AND lossy.walk_id IS NULL) AS complete,
       -- counter lines inside the walk fill the columns its own evidence left NULL (walk_rules.md (e))
       coalesce(k.n_windows, f.n_windows)::BIGINT AS n_windows,
       coalesce(k.max_hold_ns, f.max_hold_ns)::BIGINT AS max_hold_ns,
       coalesce(k.total_hold_ns, f.total_hold_ns)::BIGINT AS total_hold_ns,
       coalesce(k.iterations, f.iterations)::BIGINT AS iterations,
       coalesce(k.max_window_iterations, f.max_window_iterations)::BIGINT AS max_window_iterations,
       coalesce(k.rmap_one, f.rmap_one)::BIGINT AS rmap_one,
       coalesce(k.skipped, f.skipped)::BIGINT AS skipped,
       coalesce(k.skip_addr, f.skip_addr)::BIGINT AS skip_addr,
       coalesce(k.skip_mm, f.skip_mm)::BIGINT AS skip_mm,
       k.caller,
       k.slow_windows::BIGINT AS slow_windows, k.bailout,
       coalesce(k.invalid, f.invalid)::BIGINT AS invalid,
       k.early_exit, k.n_events::BIGINT AS n_events
FROM k
LEFT JOIN lossy ON lossy.run_id = k.run_id AND lossy.walk_id = k.walk_id
LEFT JOIN _counter_fill f ON f.run_id = k.run_id AND f.walk_id = k.walk_id AND f.evidence = k.evidence;
