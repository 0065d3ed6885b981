-- ksmtrace standard views, part 1: configuration of the walk reconstruction.
--
-- These private tables hold the kernel symbols and constants the walk views
-- (11_*.sql .. 30_*.sql) match against. They are ordinary DuckDB tables:
-- you may INSERT rows into them (for example a new rmap_one callback of your
-- kernel, or another locking primitive to skip when naming a lock's caller)
-- before querying the views; the views read them at query time. Re-running
-- this file keeps rows you added (CREATE TABLE IF NOT EXISTS + INSERT OR IGNORE).
--   INSERT INTO _rmap_one_callbacks VALUES ('__damon_pa_mkold', 'damon');

-- rmap_one callbacks (kernel.md §3, walk_rules.md (b)): a child call of one of
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

-- rwc->invalid_vma callbacks (kernel.md §6.2 `invalid`).
CREATE TABLE IF NOT EXISTS _rmap_invalid_vma_funcs (func VARCHAR PRIMARY KEY);
INSERT OR IGNORE INTO _rmap_invalid_vma_funcs VALUES ('invalid_folio_referenced_vma');

-- interval-tree iterators: one call per loop step, the last call of a loop returns NULL (kernel.md §2).
CREATE TABLE IF NOT EXISTS _rmap_iterator_funcs (func VARCHAR PRIMARY KEY);
INSERT OR IGNORE INTO _rmap_iterator_funcs VALUES
    ('anon_vma_interval_tree_iter_first'), ('anon_vma_interval_tree_iter_next');

-- the walkers and the page type each one implies (walk_rules.md (b), (d)).
CREATE TABLE IF NOT EXISTS _rmap_walkers (func VARCHAR PRIMARY KEY, page_type VARCHAR);
INSERT OR IGNORE INTO _rmap_walkers VALUES
    ('rmap_walk_ksm', 'ksm'), ('rmap_walk_anon', 'anon'), ('rmap_walk_file', 'file');

-- dispatcher frames that are never "the caller" of a walk (walk_rules.md (a), (d)).
CREATE TABLE IF NOT EXISTS _rmap_dispatch_frames (sym VARCHAR PRIMARY KEY);
INSERT OR IGNORE INTO _rmap_dispatch_frames VALUES ('rmap_walk'), ('rmap_walk_locked');

-- lock-primitive frame name prefixes skipped when naming the caller of a lock wait
-- (walk_rules.md (f); perf lock contention --stack-skip 0 shows the same frame).
-- '[unknown]' (an unresolved frame, formats.md §7.5) is skipped too: it never names a caller.
CREATE TABLE IF NOT EXISTS _lock_primitive_prefixes (prefix VARCHAR PRIMARY KEY);
INSERT OR IGNORE INTO _lock_primitive_prefixes VALUES
    ('rwsem_down_'), ('down_read'), ('down_write'), ('__down'), ('_raw_spin'), ('queued_'),
    ('native_queued'), ('__pv_queued'), ('pv_queued'), ('do_raw_spin'), ('__traceiter_'), ('trace_contention'),
    ('lock_'), ('[unknown]');

-- page key of a perf-callchain walk event (walk_rules.md (d), x86-64 defaults, checked on the REAL
-- lines of formats.md §7.3: both give PFN 0x128d38):
--   key = ((invert ? ~pte : pte) >> shift) & (2^bits - 1), pte parsed as unsigned 64-bit hex.
-- Other architectures: replace these rows. Events without a row have no key (a NULL key never splits).
CREATE TABLE IF NOT EXISTS _pte_page_keys (event VARCHAR PRIMARY KEY, shift INTEGER, invert BOOLEAN, bits INTEGER);
INSERT OR IGNORE INTO _pte_page_keys VALUES
    ('remove_migration_pte', 12, false, 40),   -- new PTE: PFN in bits 12..51
    ('set_migration_pte', 9, true, 34);        -- swap entry: offset stored inverted from bit 9

-- events that are never perf-callchain walk evidence even when their callchain holds a walker frame:
-- they are evidence of other kinds (rmap tracepoints (a), lock waits (f)).
CREATE TABLE IF NOT EXISTS _callchain_ignored_events (event VARCHAR PRIMARY KEY);
INSERT OR IGNORE INTO _callchain_ignored_events VALUES
    ('rmap_walk'), ('rmap_walk_start'), ('rmap_walk_end'), ('contention_begin'), ('contention_end'),
    ('kernel_stack'), ('user_stack');  -- ftrace stack records: attached to their event instead

-- helpers ---------------------------------------------------------------------------------------

-- aggregate: the sum of a per-window counter over a group of counter lines, or NULL unless every line
-- carries that counter (a sum over some of the windows would pass for the walk's total)
CREATE OR REPLACE MACRO _sum_if_all(x) AS CASE WHEN count(x) = count(*) THEN sum(x)::BIGINT END;

-- a printed return value is zero: '0', '0x0', '0x0000', '-0' (walk_rules.md (b): `0x0`, `0` are zero)
-- (string functions, no regex: this runs on every function_graph row)
-- fast paths first: '0' / '0x0'; a hex or decimal number whose first digit is not 0 is non-zero
CREATE OR REPLACE MACRO _is_zero(v) AS
    CASE WHEN v IS NULL THEN NULL
         WHEN v = '0x0' OR v = '0' THEN true
         WHEN starts_with(v, '0x') AND length(v) > 2 AND substr(v, 3, 1) <> '0' THEN false
         WHEN substr(v, 1, 1) BETWEEN '1' AND '9' THEN false
         ELSE length(v) > 0 AND translate(trim(v), '0xX+-', '') = '' END;

-- symbol of "sym+0xoff/0xsize", "<-sym+0x8e/0xc0" or "sym": the name without offset
CREATE OR REPLACE MACRO _sym(v) AS
    nullif(regexp_replace(regexp_replace(trim(v), '^<-\s*', ''), '[+ ].*$', ''), '');

-- hex text (with or without 0x) -> UBIGINT; NULL when not hex
CREATE OR REPLACE MACRO _hex(v) AS
    TRY_CAST(CASE WHEN lower(trim(v)) LIKE '0x%' THEN trim(v) ELSE '0x' || trim(v) END AS UBIGINT);

-- first frame outward (towards the end of the innermost-first list) from the first frame whose sym is
-- in `walkers`, skipping frames whose sym is in `skip`; NULL when no walker frame is present.
CREATE OR REPLACE MACRO _caller_after(cc, walkers, skip) AS
    CASE WHEN list_position(list_transform(cc, lambda f: list_contains(walkers, f.sym)), true) IS NULL THEN NULL
         ELSE list_filter(
                  list_slice(cc, list_position(list_transform(cc, lambda f: list_contains(walkers, f.sym)), true) + 1,
                             len(cc)),
                  lambda f: NOT list_contains(skip, f.sym))[1].sym
    END;

-- the walker symbol first found in a callchain (innermost first), NULL when none
CREATE OR REPLACE MACRO _walker_frame(cc, walkers) AS
    list_filter(cc, lambda f: list_contains(walkers, f.sym))[1].sym;

-- the fields map with lower-case keys (Time_ms = time_ms); rebuilt only when a key has an upper-case letter
CREATE OR REPLACE MACRO _lower_keys(fields) AS
    CASE WHEN list_bool_or(list_transform(map_keys(fields), lambda k: k <> lower(k)))
         THEN map_from_entries(list_transform(map_entries(fields), lambda e: {'key': lower(e.key), 'value': e.value}))
         ELSE fields END;
