-- ksmtrace standard views, part 0b: how much of each run the trace really covers (issue #16). Public (cheap:
-- runs and events only); the walk rule that uses it is _walk_coverage() in 18_coverage_gaps.sql.
--
-- Rules (the project's own reading of the tracefs ring buffer; docs in the @view texts below):
--
-- * Every CPU has its own ring buffer. In overwrite mode (tracefs' default) a full buffer drops its
--   OLDEST events silently: a `trace` snapshot of a function_graph run has no loss marker and no
--   entries-written line, so each CPU's record simply starts later. Before the latest of the per-CPU
--   first timestamps the record is incomplete for any task that could have run on another CPU: a walk
--   entry seen on CPU 1 can be followed by an exit on CPU 0 that belongs to a later walk, because the walk
--   boundary between them was overwritten on CPU 0. The complete interval of a run therefore starts at
--   the latest first timestamp of the CPUs whose buffer lost its oldest events, and a walk that starts
--   before it is incomplete. A walk that moves (cond_resched) into a CPU whose buffer does not reach back
--   to the walk's start is covered by the same rule: that CPU's first timestamp is at most the start of
--   the complete interval.
-- * Which CPUs lost their oldest events (loss_evidence):
--     per-cpu stats    the capture read per_cpu/cpuN/stats before tracing stopped (sidecar key
--                      per_cpu_stats; a trace.dat carries its own, from `trace-cmd report --stat`,
--                      per CPU the largest of the buffers it lists): overrun > 0 on that CPU. Decisive, CPU by CPU; dropped_events > 0
--                      (non-overwrite mode: the NEWEST events dropped) ends the complete interval at that
--                      CPU's last timestamp instead.
--     header           an ftrace header whose entries-written exceeds entries-in-buffer: some CPU
--                      overwrote; which one is unknown, so every CPU counts.
--     buffer-started   `##### CPU N buffer started ####` lines (the kernel prints them only after an
--                      overrun): every CPU counts.
--     perf overwrite   perf record --overwrite (flight-recorder mode, seen in the header's cmdline).
--   A function_graph `trace` snapshot without per-CPU stats says nothing either way (no header line, no
--   marker); taking every CPU's first timestamp there would also cut runs whose CPUs were merely idle at
--   first, so only the walks' own evidence counts: the CPU-change rule and the consistency checks below.
--   Without any of these (trace_pipe text, trace-cmd record, perf record) losses are reported by markers
--   (__lost_events), which _walk_coverage() (18_coverage_gaps.sql) turns into per-CPU gaps.
-- * CPU change (function_graph `trace` snapshots without per-CPU stats): when a task's next record is on
--   another CPU whose buffer starts after the task's previous record (cpu_coverage.first_ts_ns > the time it
--   left the old CPU), it crossed into a CPU whose buffer does not reach back that far: what the task did
--   there before that CPU's first record is unknown, so its walks overlapping (left, first record) are
--   incomplete (a task that moved to a CPU idle until then is counted too: the text cannot tell the two
--   apart). With per-CPU stats the complete interval already
--   starts after the first timestamp of every CPU that lost events; streamed traces report losses by markers.
-- * Markers: `CPU:N [LOST M EVENTS]`, trace-cmd `CPU:N [M EVENTS DROPPED]` and perf PERF_RECORD_LOST
--   (with a CPU) mean that CPU lost events after its previous record and before the marker (or, without
--   a marker timestamp, before its next record). A walk overlapping that gap is incomplete, whichever CPU
--   it ran on: it may have run on the lossy CPU during the gap.
-- * Consistency (_walk_inconsistent): where the trace prints a walk's duration (function_graph close
--   line), end - start must agree with it within the timestamp resolution plus the tracer's own
--   entry/exit overhead (the printed timestamps are those of the ring-buffer records, written just
--   after the call time and just after the return time; measured on a 6.1 TCG guest: 6-34 us; allowed:
--   60 us plus 1% of the printed duration, for an interrupt between the clock read and the record);
--   otherwise the entry and the exit belong to different walks glued over a loss. A lock window
--   longer than its walk is impossible too. Such walks are never glued: they are incomplete.
--   The resolution is the printed one (runs.ts_resolution_ns) plus how far the run's printed timestamps
--   are seen to under-read time: the largest amount by which a function_graph walk's printed duration
--   exceeds its span. On a Debian 6.1 TCG guest the ring buffer gave a run of records one timestamp for
--   3.4 ms (a walk with equal entry and exit timestamps, 200 windows, printed 3.4 ms; the next walk's entry
--   shares that timestamp), while the printed durations stay exact. A walk glued over a loss has a span
--   far above its printed duration, which this allowance never absorbs (the 34 s window of a 2 s walk).

-- @view cpu_coverage
-- One row per (run, CPU): the stretch of time that CPU's buffer holds in the trace, and what the capture's
-- per-CPU ring-buffer statistics (per_cpu/cpuN/stats, sidecar key per_cpu_stats) say it lost.
-- @needs any ingested input; per-CPU stats need a capture sidecar (FILE.meta.json) with per_cpu_stats
-- @column run_id VARCHAR run (runs.run_id)
-- @column label VARCHAR label of that run
-- @column cpu INTEGER CPU number
-- @column first_ts_ns BIGINT first timestamp logged on that CPU in the trace (NULL: no event on it)
-- @column last_ts_ns BIGINT last timestamp logged on that CPU in the trace
-- @column n_events BIGINT events of that CPU in the trace
-- @column overrun BIGINT per_cpu stats overrun: events overwritten in this CPU's buffer (NULL: no stats)
-- @column dropped_events BIGINT per_cpu stats dropped_events: events dropped because the buffer was full (non-overwrite mode)
-- @column lost_oldest BOOLEAN this CPU's buffer lost its oldest events: overrun > 0 (NULL without stats)
CREATE OR REPLACE VIEW cpu_coverage AS
WITH ev AS (
    SELECT run_id, cpu, min(ts_ns) AS first_ts_ns, max(ts_ns) AS last_ts_ns, count(*) AS n_events
    FROM events WHERE cpu IS NOT NULL AND ts_ns IS NOT NULL AND event <> '__lost_events'
    GROUP BY run_id, cpu
),
st AS (
    SELECT run_id, TRY_CAST(k AS INTEGER) AS cpu,
           TRY_CAST(json_extract_string(meta, '$.per_cpu_stats."' || k || '".overrun') AS BIGINT) AS overrun,
           TRY_CAST(json_extract_string(meta, '$.per_cpu_stats."' || k || '".dropped_events') AS BIGINT)
               AS dropped_events
    FROM (SELECT run_id, meta, unnest(json_keys(meta, '$.per_cpu_stats')) AS k
          FROM runs WHERE json_type(meta, '$.per_cpu_stats') = 'OBJECT')
)
SELECT r.run_id, r.label, coalesce(ev.cpu, st.cpu)::INTEGER AS cpu, ev.first_ts_ns::BIGINT AS first_ts_ns,
       ev.last_ts_ns::BIGINT AS last_ts_ns, coalesce(ev.n_events, 0)::BIGINT AS n_events, st.overrun,
       st.dropped_events, st.overrun > 0 AS lost_oldest
FROM ev FULL JOIN st ON st.run_id = ev.run_id AND st.cpu = ev.cpu
JOIN runs r ON r.run_id = coalesce(ev.run_id, st.run_id);

-- @view run_coverage
-- One row per run: the complete interval of the trace (the time for which every CPU's buffer still holds
-- what was logged; rules at the top of 02_coverage.sql), how much of the run it is, and the evidence.
-- Walks that start before complete_start_ns or end after complete_end_ns are incomplete.
-- @needs any ingested input
-- @column run_id VARCHAR run (runs.run_id)
-- @column label VARCHAR label of that run
-- @column first_ts_ns BIGINT first timestamp of the run
-- @column last_ts_ns BIGINT last timestamp of the run
-- @column complete_start_ns BIGINT start of the complete interval (first_ts_ns when no CPU lost its oldest events)
-- @column complete_end_ns BIGINT end of the complete interval (last_ts_ns unless a CPU dropped its newest events)
-- @column complete_fraction DOUBLE (complete_end_ns - complete_start_ns) / (last_ts_ns - first_ts_ns); 1 when nothing was lost
-- @column loss_evidence VARCHAR per-cpu stats, header, buffer-started, snapshot or perf overwrite; NULL when nothing says a buffer lost its oldest events
-- @column lossy_cpus VARCHAR CPUs counted as having lost their oldest (or newest) events, comma-separated
-- @column overrun_events BIGINT events overwritten: sum of the per-CPU stats overrun, else the header's entries-written - entries-in-buffer; NULL when unknown
-- @column dropped_events BIGINT events dropped (per-CPU stats dropped_events), NULL without stats
-- @column lost_markers BIGINT loss markers (__lost_events rows) in the trace
CREATE OR REPLACE VIEW run_coverage AS
WITH lm AS (
    SELECT run_id, count(*) FILTER (WHERE event = '__lost_events') AS n,
           count(*) FILTER (WHERE event = '__buffer_started') AS n_started
    FROM events WHERE event IN ('__lost_events', '__buffer_started') GROUP BY run_id
),
m AS (
    SELECT r.run_id, label, first_ts_ns, last_ts_ns,
           CASE WHEN json_type(meta, '$.per_cpu_stats') = 'OBJECT' THEN 'per-cpu stats'
                WHEN TRY_CAST(json_extract_string(meta, '$.overwritten') AS BIGINT) > 0 THEN 'header'
                WHEN lm.n_started > 0 THEN 'buffer-started'
                WHEN regexp_matches(coalesce(json_extract_string(meta, '$.cmdline'), ''), '(^|\s)--overwrite(\s|$)')
                    THEN 'perf overwrite'
           END AS evidence,
           TRY_CAST(json_extract_string(meta, '$.overwritten') AS BIGINT) AS hdr_overwritten, lm.n AS n_markers
    FROM runs r LEFT JOIN lm ON lm.run_id = r.run_id
),
c AS (
    SELECT m.run_id, m.evidence,
           -- per-cpu stats: only CPUs that overran; other evidence: every CPU with events
           max(cc.first_ts_ns) FILTER (WHERE CASE WHEN m.evidence = 'per-cpu stats' THEN cc.lost_oldest
                                                  ELSE m.evidence IS NOT NULL END) AS cut_start,
           min(cc.last_ts_ns) FILTER (WHERE m.evidence = 'per-cpu stats' AND cc.dropped_events > 0) AS cut_end,
           string_agg(cc.cpu::VARCHAR, ',' ORDER BY cc.cpu) FILTER (
               WHERE cc.first_ts_ns IS NOT NULL AND CASE WHEN m.evidence = 'per-cpu stats'
                                                         THEN cc.lost_oldest OR cc.dropped_events > 0
                                                         ELSE m.evidence IS NOT NULL END) AS lossy_cpus,
           sum(cc.overrun)::BIGINT AS overrun, sum(cc.dropped_events)::BIGINT AS dropped
    FROM m JOIN cpu_coverage cc ON cc.run_id = m.run_id
    GROUP BY m.run_id, m.evidence
)
SELECT m.run_id, m.label, m.first_ts_ns, m.last_ts_ns,
       greatest(m.first_ts_ns, coalesce(c.cut_start, m.first_ts_ns))::BIGINT AS complete_start_ns,
       least(m.last_ts_ns, coalesce(c.cut_end, m.last_ts_ns))::BIGINT AS complete_end_ns,
       CASE WHEN m.last_ts_ns > m.first_ts_ns
            THEN greatest(0, least(m.last_ts_ns, coalesce(c.cut_end, m.last_ts_ns))
                             - greatest(m.first_ts_ns, coalesce(c.cut_start, m.first_ts_ns)))
                 / (m.last_ts_ns - m.first_ts_ns)::DOUBLE
            ELSE 1.0 END AS complete_fraction,
       CASE WHEN c.lossy_cpus IS NOT NULL THEN m.evidence END AS loss_evidence,
       c.lossy_cpus,
       coalesce(c.overrun, m.hdr_overwritten)::BIGINT AS overrun_events,
       c.dropped AS dropped_events,
       coalesce(m.n_markers, 0)::BIGINT AS lost_markers
FROM m LEFT JOIN c ON c.run_id = m.run_id;

-- _walk_inconsistent: the walk's own numbers contradict each other (rules above); res_ns = the run's
-- timestamp resolution (runs.ts_resolution_ns).
CREATE OR REPLACE MACRO _walk_inconsistent(evidence, start_ns, end_ns, duration_ns, max_hold_ns, res_ns) AS
    coalesce(evidence = 'function-graph' AND abs((end_ns - start_ns) - duration_ns)
                 > greatest(coalesce(res_ns, 1000), 1000) + 60000 + duration_ns // 100, false)
    OR coalesce(max_hold_ns > duration_ns + greatest(coalesce(res_ns, 1000), 1000) + 60000, false);
