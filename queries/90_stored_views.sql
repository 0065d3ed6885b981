-- ksmtrace standard views, last part: the public derived views read the stored files.
--
-- At ingest, ksmtrace computes each run's walks, lock_windows and lock_waits ONCE, with the private views
-- _walks_from_events, _lock_windows_from_events and _lock_waits_from_events of the files before this one
-- (numbered 00..89), over a store that holds only that run, and stores them as Parquet beside the run's
-- events: STORE/walks/label=../run_id=../part-0.parquet and so on. The views below read those files, so a
-- report or a query never reconstructs walks from the events again. Each run's manifest.json records a
-- stamp of the SQL that made its files; when queries/*.sql change, ksmtrace refuses the stale files and
-- `ksmtrace rebuild` recomputes them. The walk logic itself lives in the files before this one, once.
--
-- To try a change of the configuration tables (10_config.sql) without rebuilding, query the
-- _..._from_events views directly in the same session: they read the events.

-- the rows of one stored derived table, for committed runs only. Every file of a table has the same schema
-- (one stamp for the whole store, checked by ksmtrace before it runs this file), so the schema is read
-- from one file and a filter on label opens only that label's files.
CREATE OR REPLACE MACRO _stored(tbl) AS TABLE
SELECT *
FROM read_parquet(_store_glob(tbl), hive_partitioning = true,
                  hive_types = {'label': VARCHAR, 'run_id': VARCHAR})
WHERE run_id IN (SELECT run_id FROM runs);

CREATE OR REPLACE VIEW walks AS SELECT * FROM _stored('walks');
CREATE OR REPLACE VIEW lock_windows AS SELECT * FROM _stored('lock_windows');
CREATE OR REPLACE VIEW lock_waits AS SELECT * FROM _stored('lock_waits');
