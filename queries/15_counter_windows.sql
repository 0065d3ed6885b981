-- ksmtrace walk reconstruction, evidence (e): instrumentation lines with explicit counters, one line per
-- lock window (kernel.md §6.5, walk_rules.md (e)). Private views; see `walks` and `lock_windows`.

-- the fields map with lower-case keys (Time_ms = time_ms); built once per candidate line
CREATE OR REPLACE MACRO _lower_keys(fields) AS
    map_from_entries(list_transform(map_entries(fields), lambda e: {'key': lower(e.key), 'value': e.value}));

-- A counter line: fields (keys compared case-insensitively) contain hold_ns, Time_ms, iterations or
-- Nr_iteration_total. Time_ms is converted exactly with DECIMAL arithmetic ('221.104' -> 221104000 ns).
-- The payload test is a cheap pre-filter; the fields test decides.
CREATE OR REPLACE VIEW _counter_lines AS
WITH c0 AS (
    SELECT run_id, label, line_no, ts_ns, cpu, pid, comm, _lower_keys(fields) AS fields
    FROM events
    WHERE fields IS NOT NULL AND kind IS NULL
      AND (payload IS NULL OR contains(payload, '_ns=') OR contains(payload, 'ime_ms=')
           OR contains(payload, 'terations=') OR contains(payload, 'teration_total='))
), c AS (
    SELECT * FROM c0
    WHERE list_has_any(map_keys(fields), ['hold_ns', 'time_ms', 'iterations', 'nr_iteration_total'])
), v AS (
    SELECT *,
           coalesce(TRY_CAST(fields['hold_ns'] AS BIGINT),
                    TRY_CAST(TRY_CAST(fields['time_ms'] AS DECIMAL(38, 9)) * 1000000 AS BIGINT)) AS hold_ns,
           TRY_CAST(coalesce(fields['nr_iteration_total'], fields['iterations']) AS BIGINT) AS iterations,
           TRY_CAST(coalesce(fields['skip_addr_out_of_range'], fields['skip_addr']) AS BIGINT) AS skip_addr,
           TRY_CAST(coalesce(fields['skip_mm_mismatch'], fields['skip_mm']) AS BIGINT) AS skip_mm,
           TRY_CAST(fields['rmap_one'] AS BIGINT) AS rmap_one,
           TRY_CAST(fields['invalid'] AS BIGINT) AS invalid
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
       TRY_CAST(fields['walk_ns'] AS BIGINT) AS walk_ns, fields['cb'] AS cb
FROM (SELECT run_id, label, line_no, ts_ns, cpu, pid, comm, _lower_keys(fields) AS fields
      FROM events
      WHERE fields IS NOT NULL AND kind IS NULL AND (payload IS NULL OR contains(lower(payload), 'walk_ns=')))
WHERE fields['walk_ns'] IS NOT NULL;

-- What happens to the counter lines (ownership by walks of other kinds, grouping of the others into
-- walks of evidence `counters`) is in _walk_parts (20_walks.sql): it needs the other kinds' walks, and
-- computing it there lets one query compute every kind once.
