-- ksmtrace standard views, part 0: the run catalogue.
--
-- Every file in this folder is plain DuckDB SQL. ksmtrace runs them in name
-- order after `SET VARIABLE ksmtrace_store = '<store dir>'`; so can you:
--   duckdb -c "SET VARIABLE ksmtrace_store='ksmtrace-data'" -c ".read queries/00_runs.sql" ...
-- or simply: ksmtrace sql --print-views > views.sql; duckdb -init views.sql
--
-- Conventions (after Perfetto's SQL standard library): every public view lists
-- its columns below with `@column name TYPE meaning`, says which trace data it
-- @needs, and helpers that are not part of the contract start with `_`.
--
-- The store is hive-partitioned: STORE/<table>/label=<label, percent-encoded>/run_id=<id>/*.parquet
-- (pipeline/ksmtrace/store.py). A filter on label prunes whole directories. A run is visible once its
-- `runs` partition is there (the last rename of its publication), so every other table keeps only rows of
-- runs in `runs`.

-- the store directory as a glob pattern that matches only itself: [ * ? in the path are bracketed
-- ('st[1]' -> 'st[[]1]'), so that a store named st[1] never reads st1 and st* never merges stores
CREATE OR REPLACE MACRO _glob_escape(path) AS regexp_replace(path, '([\[*?])', '[\1]', 'g');

-- the files of one table of the store (every label, every run)
CREATE OR REPLACE MACRO _store_glob(tbl) AS
    _glob_escape(getvariable('ksmtrace_store')) || '/' || tbl || '/*/*/*.parquet';

-- @view runs
-- One row per ingested input file (a "run": one boot plus one workload, the statistical unit).
-- @needs any ingested input
-- @column run_id VARCHAR unique id of the run: <label slug>-<10 hex digits>
-- @column label VARCHAR user label given at ingest, e.g. before or after; several runs may share one
-- @column source VARCHAR input path as given ("-" for stdin)
-- @column format VARCHAR input format the parser used (ftrace, function-graph, perf-script, ...)
-- @column sha256 VARCHAR sha256 of the input (decompressed text, or the binary file)
-- @column n_lines BIGINT lines read from the input
-- @column n_events BIGINT rows written to events for this run
-- @column n_malformed BIGINT trace-like lines that did not parse (see malformed_examples)
-- @column n_lost_events BIGINT events the tracer reported lost (LOST markers, overwritten entries)
-- @column first_ts_ns BIGINT smallest event timestamp, ns
-- @column last_ts_ns BIGINT largest event timestamp, ns
-- @column ingested_at TIMESTAMP WITH TIME ZONE when the run was ingested (UTC)
-- @column tracer VARCHAR ftrace tracer name (nop, function, function_graph ...) or producing tool
-- @column n_cpus INTEGER CPUs with a buffer (#P:N, cpus=N, perf nrcpus), NULL when unknown
-- @column kernel VARCHAR kernel release when the input says it, NULL otherwise
-- @column ts_unit VARCHAR ns (timestamps are nanoseconds) or counter (raw counter clock)
-- @column ts_resolution_ns BIGINT resolution of the printed timestamps: 1000 for sec.usec, 1 for --ns/-t
-- @column partial BOOLEAN input was truncated and ingested with --partial
-- @column lost_unknown BOOLEAN a loss marker without a count was seen
-- @column malformed_examples VARCHAR JSON list of the first malformed lines: {line_no, text, reason}
-- @column meta VARCHAR JSON object with further header facts (entries written, options, converter ...)
CREATE OR REPLACE VIEW runs AS
SELECT *
FROM read_parquet(_store_glob('runs'), hive_partitioning = true, union_by_name = true,
                  hive_types = {'label': VARCHAR, 'run_id': VARCHAR});
