-- ksmtrace standard views, part 1: configuration of the walk reconstruction.
-- The rules these tables feed are written down in docs/walk-rules.md; letters (a)..(f) name its sections.
--
-- These private tables hold the kernel symbols and constants the walk views
-- (11_*.sql .. 30_*.sql) match against. They are ordinary DuckDB tables:
-- you may INSERT rows into them (for example a new rmap_one callback of your
-- kernel, or another locking primitive to skip when naming a lock's caller)
-- and query the views that compute from events (_walks_from_events, _lock_windows_from_events,
-- _lock_waits_from_events); the public walks / lock_windows / lock_waits read what ingest stored
-- (90_stored_views.sql): to change those, edit this file and run `ksmtrace rebuild`. Re-running
-- this file keeps rows you added (CREATE TABLE IF NOT EXISTS + INSERT OR IGNORE).
--   INSERT INTO _rmap_one_callbacks VALUES ('__damon_pa_mkold', 'damon');

-- rmap_one callbacks (docs/walk-rules.md (b)): a child call of one of
-- these counts as one rmap_one invocation. caller = the walk's caller it implies.
CREATE TABLE IF NOT EXISTS _rmap_one_callbacks (func VARCHAR PRIMARY KEY, caller VARCHAR);
INSERT OR IGNORE INTO _rmap_one_callbacks VALUES
    ('try_to_migrate_one', 'try_to_migrate'),
    ('remove_migration_pte', 'remove_migration_ptes'),
    ('try_to_unmap_one', 'try_to_unmap'),
    ('folio_referenced_one', 'folio_referenced'),
    ('page_idle_clear_pte_refs_one', 'page_idle'),
    ('damon_folio_mkold_one', 'damon'),
    ('damon_folio_young_one', 'damon');

-- rwc->invalid_vma callbacks (docs/walk-rules.md (b), invalid).
CREATE TABLE IF NOT EXISTS _rmap_invalid_vma_funcs (func VARCHAR PRIMARY KEY);
INSERT OR IGNORE INTO _rmap_invalid_vma_funcs VALUES ('invalid_folio_referenced_vma');

-- interval-tree iterators: one call per loop step, the last call of a loop returns NULL (docs/walk-rules.md (b)).
CREATE TABLE IF NOT EXISTS _rmap_iterator_funcs (func VARCHAR PRIMARY KEY);
INSERT OR IGNORE INTO _rmap_iterator_funcs VALUES
    ('anon_vma_interval_tree_iter_first'), ('anon_vma_interval_tree_iter_next');

-- the walkers and the page type each one implies (docs/walk-rules.md (b), (d)).
CREATE TABLE IF NOT EXISTS _rmap_walkers (func VARCHAR PRIMARY KEY, page_type VARCHAR);
INSERT OR IGNORE INTO _rmap_walkers VALUES
    ('rmap_walk_ksm', 'ksm'), ('rmap_walk_anon', 'anon'), ('rmap_walk_file', 'file');

-- dispatcher frames that are never "the caller" of a walk (docs/walk-rules.md (a), (d)).
CREATE TABLE IF NOT EXISTS _rmap_dispatch_frames (sym VARCHAR PRIMARY KEY);
INSERT OR IGNORE INTO _rmap_dispatch_frames VALUES ('rmap_walk'), ('rmap_walk_locked');

-- lock-primitive frame name prefixes skipped when naming the caller of a lock wait
-- (docs/walk-rules.md (f); perf lock contention --stack-skip 0 shows the same frame).
-- '[unknown]' (a frame perf could not resolve) is skipped too: it never names a caller.
CREATE TABLE IF NOT EXISTS _lock_primitive_prefixes (prefix VARCHAR PRIMARY KEY);
INSERT OR IGNORE INTO _lock_primitive_prefixes VALUES
    ('rwsem_down_'), ('down_read'), ('down_write'), ('__down'), ('_raw_spin'), ('queued_'),
    ('native_queued'), ('__pv_queued'), ('pv_queued'), ('do_raw_spin'), ('__traceiter_'), ('trace_contention'),
    ('lock_'), ('[unknown]');

-- page key of a perf-callchain walk event (docs/walk-rules.md (d), x86-64 defaults, checked on a real
-- set_migration_pte / remove_migration_pte pair of one page: both give PFN 0x128d38):
--   key = ((invert ? ~pte : pte) >> shift) & (2^bits - 1), pte parsed as unsigned 64-bit hex.
-- Other architectures: replace these rows. Events without a row have no key (a NULL key never splits).
CREATE TABLE IF NOT EXISTS _pte_page_keys (event VARCHAR PRIMARY KEY, shift INTEGER, invert BOOLEAN, bits INTEGER);
INSERT OR IGNORE INTO _pte_page_keys VALUES
    ('remove_migration_pte', 12, false, 40),   -- new PTE: PFN in bits 12..51
    ('set_migration_pte', 9, true, 34);        -- swap entry: offset stored inverted from bit 9

-- events that are never perf-callchain walk evidence even when their callchain holds a walker frame:
-- they are evidence of other kinds (rmap tracepoints (a), lock waits (f) of docs/walk-rules.md).
CREATE TABLE IF NOT EXISTS _callchain_ignored_events (event VARCHAR PRIMARY KEY);
INSERT OR IGNORE INTO _callchain_ignored_events VALUES
    ('rmap_walk'), ('rmap_walk_start'), ('rmap_walk_end'), ('contention_begin'), ('contention_end'),
    ('kernel_stack'), ('user_stack');  -- ftrace stack records: attached to their event instead
