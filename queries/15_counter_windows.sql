-- ksmtrace walk reconstruction, evidence (e): instrumentation lines with explicit counters, one line per
-- lock window (kernel.md §6.5, walk_rules.md (e)). Private views; see `walks` and `lock_windows`.

-- value of a field, key compared case-insensitively (Time_ms = time_ms)
CREATE OR REPLACE MACRO _fget(fields, k) AS list_filter(map_entries(fields), lambda e: lower(e.key) = k)[1].value;

-- The walks of kinds (a)-(d), one relation (the union the public `walks` view extends).
CREATE OR REPLACE VIEW _walks_kinds AS
SELECT * FROM _walks_tracepoint
UNION ALL SELECT * FROM _walks_function_graph
UNION ALL SELECT * FROM _walks_kprobe
UNION ALL SELECT * FROM _walks_callchain;

-- A counter line: fields (keys compared case-insensitively) contain hold_ns, Time_ms, iterations or
-- Nr_iteration_total. Time_ms is converted exactly with DECIMAL arithmetic ('221.104' -> 221104000 ns).
-- The payload test is a cheap pre-filter; the fields test decides.
CREATE OR REPLACE VIEW _counter_lines AS
WITH c AS (
    SELECT run_id, label, line_no, ts_ns, cpu, pid, comm, fields
    FROM events
    WHERE fields IS NOT NULL AND kind IS NULL
      AND (payload IS NULL OR regexp_matches(payload, '(?i)(hold_ns|time_ms|iterations|nr_iteration_total)='))
      AND list_has_any(list_transform(map_keys(fields), lambda k: lower(k)),
                       ['hold_ns', 'time_ms', 'iterations', 'nr_iteration_total'])
), v AS (
    SELECT *,
           coalesce(TRY_CAST(_fget(fields, 'hold_ns') AS BIGINT),
                    TRY_CAST(TRY_CAST(_fget(fields, 'time_ms') AS DECIMAL(38, 9)) * 1000000 AS BIGINT)) AS hold_ns,
           TRY_CAST(coalesce(_fget(fields, 'nr_iteration_total'), _fget(fields, 'iterations')) AS BIGINT) AS iterations,
           TRY_CAST(coalesce(_fget(fields, 'skip_addr_out_of_range'), _fget(fields, 'skip_addr')) AS BIGINT) AS skip_addr,
           TRY_CAST(coalesce(_fget(fields, 'skip_mm_mismatch'), _fget(fields, 'skip_mm')) AS BIGINT) AS skip_mm,
           TRY_CAST(_fget(fields, 'rmap_one') AS BIGINT) AS rmap_one,
           TRY_CAST(_fget(fields, 'invalid') AS BIGINT) AS invalid
    FROM c
)
SELECT run_id, label, line_no, ts_ns, cpu, pid, comm,
       ts_ns - hold_ns AS start_ns, ts_ns AS end_ns, hold_ns, iterations, rmap_one,
       -- skipped = skip_addr + skip_mm when both present, else iterations - rmap_one (- invalid) when present
       CASE WHEN skip_addr IS NOT NULL AND skip_mm IS NOT NULL THEN skip_addr + skip_mm
            WHEN iterations IS NOT NULL AND rmap_one IS NOT NULL THEN iterations - rmap_one - coalesce(invalid, 0)
       END AS skipped,
       skip_addr, skip_mm, invalid,
       -- validation (kernel.md §6.5): skip_addr + skip_mm + rmap_one (+ invalid) = iterations
       CASE WHEN skip_addr IS NOT NULL AND skip_mm IS NOT NULL AND rmap_one IS NOT NULL AND iterations IS NOT NULL
            THEN skip_addr + skip_mm + rmap_one + coalesce(invalid, 0) = iterations END AS counters_consistent
FROM v;

-- bpftrace recipe summary lines "ksm_walk: walk_ns=... windows=..." (capture.md §7)
CREATE OR REPLACE VIEW _counter_summaries AS
SELECT run_id, label, line_no, ts_ns, cpu, pid, comm,
       TRY_CAST(_fget(fields, 'walk_ns') AS BIGINT) AS walk_ns, _fget(fields, 'cb') AS cb
FROM events
WHERE fields IS NOT NULL AND kind IS NULL AND (payload IS NULL OR contains(lower(payload), 'walk_ns='))
  AND list_contains(list_transform(map_keys(fields), lambda k: lower(k)), 'walk_ns');

-- Counter lines inside a walk of another kind (same run and pid, start_ns <= ts <= end_ns) belong to it.
-- One ASOF lookup per kind (the latest walk starting at or before the line), so no range join.
CREATE OR REPLACE VIEW _counter_owned AS
WITH k AS (SELECT run_id, pid, walk_id, evidence, start_ns, end_ns FROM _walks_kinds
           WHERE start_ns IS NOT NULL AND end_ns IS NOT NULL)
SELECT c.*, w.walk_id, w.evidence
FROM _counter_lines c ASOF JOIN (SELECT * FROM k WHERE evidence = 'tracepoint') w
     ON c.run_id = w.run_id AND c.pid = w.pid AND c.ts_ns >= w.start_ns
WHERE c.ts_ns <= w.end_ns
UNION ALL
SELECT c.*, w.walk_id, w.evidence
FROM _counter_lines c ASOF JOIN (SELECT * FROM k WHERE evidence = 'function-graph') w
     ON c.run_id = w.run_id AND c.pid = w.pid AND c.ts_ns >= w.start_ns
WHERE c.ts_ns <= w.end_ns
UNION ALL
SELECT c.*, w.walk_id, w.evidence
FROM _counter_lines c ASOF JOIN (SELECT * FROM k WHERE evidence = 'kprobe') w
     ON c.run_id = w.run_id AND c.pid = w.pid AND c.ts_ns >= w.start_ns
WHERE c.ts_ns <= w.end_ns
UNION ALL
SELECT c.*, w.walk_id, w.evidence
FROM _counter_lines c ASOF JOIN (SELECT * FROM k WHERE evidence = 'perf-callchain') w
     ON c.run_id = w.run_id AND c.pid = w.pid AND c.ts_ns >= w.start_ns
WHERE c.ts_ns <= w.end_ns;

-- Lines of no other walk form counter walks. Consecutive lines of one pid are one walk only when a
-- ksm_walk summary line of that pid follows them (walk ends at the summary, duration = walk_ns);
-- otherwise every line is a walk of its own (one window; start/end = the window's; duration = hold_ns).
CREATE OR REPLACE VIEW _counter_free AS
WITH free AS (
    SELECT c.* FROM _counter_lines c
    WHERE NOT EXISTS (SELECT 1 FROM _counter_owned o WHERE o.run_id = c.run_id AND o.line_no = c.line_no)
), seq AS (
    SELECT run_id, label, line_no, ts_ns, cpu, pid, comm, false AS is_summary FROM free
    UNION ALL
    SELECT run_id, label, line_no, ts_ns, cpu, pid, comm, true FROM _counter_summaries
), g AS (
    SELECT *,
           -- group = summaries strictly before this row; a summary closes the group it is in
           coalesce(sum(is_summary::INTEGER) OVER (PARTITION BY run_id, pid ORDER BY ts_ns, line_no
                                                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS grp
    FROM seq
), closing AS (
    SELECT g.run_id, g.pid, g.grp, g.line_no AS summary_line, g.ts_ns AS summary_ts, s.walk_ns, s.cb
    FROM g JOIN _counter_summaries s USING (run_id, line_no) WHERE g.is_summary
)
SELECT f.*,
       CASE WHEN cl.summary_line IS NOT NULL
            THEN first_value(f.line_no) OVER (PARTITION BY f.run_id, f.pid, g.grp ORDER BY f.ts_ns, f.line_no)
            ELSE f.line_no END AS walk_id,
       cl.summary_line, cl.summary_ts, cl.walk_ns, cl.cb
FROM free f
JOIN g ON g.run_id = f.run_id AND g.line_no = f.line_no AND NOT g.is_summary
LEFT JOIN closing cl ON cl.run_id = f.run_id AND cl.pid = f.pid AND cl.grp = g.grp;

CREATE OR REPLACE VIEW _walks_counters AS
WITH a AS (
    SELECT run_id, any_value(label) AS label, walk_id, any_value(pid) AS pid,
           arg_min_null(comm, line_no) AS comm, arg_min_null(cpu, line_no) AS cpu,
           any_value(summary_line) AS summary_line, any_value(summary_ts) AS summary_ts,
           any_value(walk_ns) AS walk_ns, any_value(cb) AS cb,
           min(start_ns) AS first_start_ns, max(end_ns) AS last_end_ns,
           count(*) AS n_windows,
           max(hold_ns) AS max_hold_ns,
           CASE WHEN count(hold_ns) = count(*) THEN sum(hold_ns)::BIGINT END AS total_hold_ns,
           CASE WHEN count(iterations) = count(*) THEN sum(iterations)::BIGINT END AS iterations,
           max(iterations) AS max_window_iterations,
           CASE WHEN count(rmap_one) = count(*) THEN sum(rmap_one)::BIGINT END AS rmap_one,
           CASE WHEN count(skipped) = count(*) THEN sum(skipped)::BIGINT END AS skipped,
           CASE WHEN count(skip_addr) = count(*) THEN sum(skip_addr)::BIGINT END AS skip_addr,
           CASE WHEN count(skip_mm) = count(*) THEN sum(skip_mm)::BIGINT END AS skip_mm,
           CASE WHEN count(invalid) = count(*) THEN sum(invalid)::BIGINT END AS invalid,
           min(line_no) AS start_line, max(line_no) AS last_line
    FROM _counter_free GROUP BY run_id, walk_id
)
SELECT run_id, label, walk_id, 'counters' AS evidence, 'ksm' AS page_type, pid, comm, cpu,
       -- grouped by a summary line: the walk ends at the summary, duration = walk_ns, start = end - walk_ns;
       -- a single line: the window itself (start = end - hold_ns, duration = hold_ns)
       CASE WHEN summary_line IS NOT NULL THEN summary_ts - walk_ns ELSE first_start_ns END AS start_ns,
       CASE WHEN summary_line IS NOT NULL THEN summary_ts ELSE last_end_ns END AS end_ns,
       CASE WHEN summary_line IS NOT NULL THEN walk_ns ELSE max_hold_ns END AS duration_ns,
       true AS paired, n_windows, max_hold_ns, total_hold_ns, iterations, max_window_iterations, rmap_one,
       skipped, skip_addr, skip_mm,
       cbt.caller,  -- from the summary's cb= callback symbol, when present
       NULL::BIGINT AS slow_windows, NULL::BOOLEAN AS bailout, invalid, NULL::BOOLEAN AS early_exit,
       n_windows AS n_events, start_line, coalesce(summary_line, last_line) AS end_line
FROM a LEFT JOIN _rmap_one_callbacks cbt ON cbt.func = _sym(a.cb);

-- per-walk sums of the counter lines owned by a walk of another kind (fills that walk's NULL columns)
CREATE OR REPLACE VIEW _counter_fill AS
SELECT run_id, walk_id, evidence,
       count(*) AS n_windows,
       max(hold_ns) AS max_hold_ns,
       CASE WHEN count(hold_ns) = count(*) THEN sum(hold_ns)::BIGINT END AS total_hold_ns,
       CASE WHEN count(iterations) = count(*) THEN sum(iterations)::BIGINT END AS iterations,
       max(iterations) AS max_window_iterations,
       CASE WHEN count(rmap_one) = count(*) THEN sum(rmap_one)::BIGINT END AS rmap_one,
       CASE WHEN count(skipped) = count(*) THEN sum(skipped)::BIGINT END AS skipped,
       CASE WHEN count(skip_addr) = count(*) THEN sum(skip_addr)::BIGINT END AS skip_addr,
       CASE WHEN count(skip_mm) = count(*) THEN sum(skip_mm)::BIGINT END AS skip_mm,
       CASE WHEN count(invalid) = count(*) THEN sum(invalid)::BIGINT END AS invalid
FROM _counter_owned GROUP BY run_id, walk_id, evidence;
