-- ksmtrace walk reconstruction, evidence (e): instrumentation lines with explicit counters, one line per
-- lock window (docs/walk-rules.md (e)). Private; see `walks` and `lock_windows`.
--
-- A counter line is any event whose fields (keys compared case-insensitively) contain hold_ns, Time_ms,
-- iterations or Nr_iteration_total (11_scan.sql, ev_kind 'counter'). Map: Time_ms (decimal ms, converted exactly
-- with DECIMAL arithmetic: '221.104' -> 221104000 ns) | hold_ns -> hold_ns; Nr_iteration_total | iterations
-- -> iterations; Skip_addr_out_of_range | skip_addr -> skip_addr; Skip_mm_mismatch | skip_mm -> skip_mm;
-- rmap_one -> rmap_one; invalid -> invalid. The window ends at the line: end_ns = ts, start_ns = end - hold_ns.
-- Which walk a line belongs to (a walk of another kind around it, or a walk of its own) is decided in
-- 17_counter_walks.sql.
CREATE OR REPLACE MACRO _counter_lines() AS TABLE
SELECT rk, line_no, ts_ns, cpu, pid, comm,
       ts_ns - hold_ns AS start_ns, ts_ns AS end_ns, hold_ns, iterations, rmap_one,
       -- skipped = skip_addr + skip_mm when both present, else iterations - rmap_one (- invalid) when present
       CASE WHEN skip_addr IS NOT NULL AND skip_mm IS NOT NULL THEN skip_addr + skip_mm
            WHEN iterations IS NOT NULL AND rmap_one IS NOT NULL THEN iterations - rmap_one - coalesce(invalid, 0)
       END AS skipped,
       skip_addr, skip_mm, invalid,
       -- validation (docs/walk-rules.md (e)): skip_addr + skip_mm + rmap_one (+ invalid) = iterations
       CASE WHEN skip_addr IS NOT NULL AND skip_mm IS NOT NULL AND rmap_one IS NOT NULL AND iterations IS NOT NULL
            THEN skip_addr + skip_mm + rmap_one + coalesce(invalid, 0) = iterations END AS counters_consistent
FROM _ev_rare() WHERE ev_kind = 'counter';

-- summary lines "ksm_walk: walk_ns=... windows=... cb=..." printed at the end of a walk by the bpftrace
-- recipe of `ksmtrace capture --print` (docs/walk-rules.md (e))
CREATE OR REPLACE MACRO _counter_summaries() AS TABLE
SELECT rk, line_no, ts_ns, cpu, pid, comm, walk_ns, cb FROM _ev_rare() WHERE ev_kind = 'summary';
