-- ksmtrace standard views, part 2b: the anon_vma read-lock windows of every walk (docs/walk-rules.md).

-- @view lock_windows
-- One row per lock window of a walk: one anon_vma read-lock acquisition (per rmap_item per pass), from the
-- return of the successful down_read_trylock (or of down_read on the slow path) to the entry of up_read.
-- function_graph and kprobes give them directly; counter lines give one window each (and become the
-- windows of a walk of another kind that has none of its own, e.g. an rmap tracepoint walk); for
-- perf-callchain walks a window is the gap between two consecutive events of the walk (a proxy for one
-- window, docs/walk-rules.md (d)). Join to walks on (run_id, walk_id).
-- @needs function_graph with rmap_walk_ksm as graph function and the lock functions traced, kprobes/fprobes on the lock functions, perf -g callchains on migrate events, or counter lines
-- @column run_id VARCHAR run the window belongs to
-- @column label VARCHAR label of that run
-- @column walk_id BIGINT the walk (walks.walk_id)
-- @column window_no BIGINT 1-based position of the window in its walk
-- @column start_ns BIGINT lock acquired (trylock/down_read return; counters: end - hold_ns; perf-callchain: previous event)
-- @column end_ns BIGINT up_read entry (counters: the line's timestamp; perf-callchain: this event); NULL when not seen
-- @column hold_ns BIGINT end_ns - start_ns, never negative (function_graph: 0 when the hold is below the whole-µs timestamp resolution; counters: the printed hold)
-- @column iterations BIGINT interval-tree iterations in the window (NULL when the iterators were not traced)
-- @column rmap_one BIGINT rmap_one callbacks in the window
-- @column skipped BIGINT iterations - rmap_one - invalid
-- @column skip_addr BIGINT address skips (counters, argument-fetching probes)
-- @column skip_mm BIGINT mm skips (counters, argument-fetching probes)
-- @extras the contract columns end here (docs/walk-rules.md, "Conventions"); extras follow
-- @column invalid BIGINT invalid_vma rejections in the window
-- @column slow BOOLEAN acquired with down_read after a failed trylock (NULL when the evidence cannot tell)
-- @column evidence VARCHAR where the window comes from: function-graph, kprobe, perf-callchain or counters
-- @column counters_consistent BOOLEAN counter lines: skip_addr + skip_mm + rmap_one (+ invalid) = iterations (NULL unless all present)
CREATE OR REPLACE VIEW _lock_windows_from_events AS
SELECT a.run_id, a.label, a.walk_id::BIGINT AS walk_id, a.window_no::BIGINT AS window_no,
       a.start_ns::BIGINT AS start_ns, a.end_ns::BIGINT AS end_ns, a.hold_ns::BIGINT AS hold_ns,
       a.iterations::BIGINT AS iterations, a.rmap_one::BIGINT AS rmap_one, a.skipped::BIGINT AS skipped,
       a.skip_addr::BIGINT AS skip_addr, a.skip_mm::BIGINT AS skip_mm, a.invalid::BIGINT AS invalid,
       a.slow, a.evidence, a.counters_consistent
FROM _walk_parts a
WHERE a.part = 'window';
