-- ksmtrace walk reconstruction: the one view over `events` that every evidence kind reads (two Parquet scans
-- of disjoint rows inside it: see Performance below).
--
-- Performance: reading the events costs more than the reconstruction itself, and DuckDB inlines a view
-- wherever it is referenced. So the walk views read `events` once, through _ev_scan: it keeps only the rows
-- some kind needs, with the few values each kind uses already extracted (narrow, typed columns; the nested
-- fields and callchain columns are decoded once). The per-kind logic (12_* .. 16_*) is written as table
-- macros over the relation `_ev`; _walk_parts (20_walks.sql) computes `_ev` once as a MATERIALIZED CTE named
-- `_ev`, which the macros then read (a CTE shadows the view of the same name); ingest materialises it once as
-- a temp table `_ev` instead (ksmtrace.db.SHARED, 20_walks.sql). Elsewhere the view `_ev` below stands in,
-- so `SELECT * FROM _fg_out()` also works on its own.
--
-- ev_kind (ENUM _ev_kind of 10_helpers.sql) says which kind a row is for; fn_role (_fn_role) what its
-- function does in a walk; rec_kind (_rec_kind) whether it is an entry, leaf, exit or return record.
-- Letters (a)..(f) are the sections of docs/walk-rules.md.
--
-- Performance: the scan costs per row and per expression, and most rows are function_graph or probe rows
-- (2.2 M in a 200 MB capture), so every expression is shaped for those rows:
--   * function_graph rows (event funcgraph_entry / funcgraph_exit) are read by a scan of their own, UNION ALL
--     a scan of every other row. Both filters are on the event column alone, so DuckDB applies them inside
--     the Parquet scan, before it decodes the other columns: the function_graph scan never reads payload,
--     fields or callchain (the nested columns, ~0.1 s for 2.2 M rows even when empty), and the other scan
--     skips the function_graph rows' nested columns. On a capture without function_graph rows the first
--     scan reads the event column only (~0.01 s per 1.5 M rows);
--   * the ENUM values are typed constants ('probe'::_ev_kind) in each CASE branch: a CASE over strings cast
--     to the ENUM afterwards costs a string->ENUM lookup per row (~30 ns; ~0.2 s over the three ENUMs);
--   * the values of the other kinds are computed inside the one CASE that builds x, so a funcgraph or probe
--     row evaluates one test for all of them instead of one CASE per value;
--   * _hex() and _is_zero() take the CASE as argument (NULL gives NULL) rather than sit inside it: a
--     function inside a CASE branch runs on a sliced vector, ~twice as slow;
--   * the counter test rejects most rows with case-sensitive contains() on the raw payload before any
--     lower() of it (see classified below);
--   * the callchain test asks, frame by frame, whether the sym is a walker, instead of building the list of
--     syms first (list_has_any): one lambda pass and no intermediate list per row.
-- What is left is mostly the Parquet decoding of the columns read (fields and callchain of every row but the
-- function_graph ones: any such row may be a counter or a callchain row; a filter on two columns is not
-- applied inside the Parquet scan, and the scan decodes a nested column for a whole vector of rows), the map
-- lookups of the probe values, and the append of the 20 columns to the temp table (~0.3 s per 2 M rows).

-- fn_role of a function_graph or probe row's function (the lists are those of config_lists below)
CREATE OR REPLACE MACRO _ev_fn_role(func, iters, cbs, invs, walkers) AS
    CASE WHEN func = 'down_read_trylock' THEN 'trylock'::_fn_role
         WHEN func = 'down_read' THEN 'down_read'::_fn_role
         WHEN func = 'up_read' THEN 'up_read'::_fn_role
         WHEN list_contains(iters, func) THEN 'iterator'::_fn_role
         WHEN list_contains(cbs, func) THEN 'rmap_one'::_fn_role
         WHEN list_contains(invs, func) THEN 'invalid_vma'::_fn_role
         WHEN list_contains(walkers, func) THEN 'walker'::_fn_role
         ELSE 'other'::_fn_role END;

CREATE OR REPLACE VIEW _ev_scan AS
WITH config_lists AS (
    SELECT (SELECT list(func) FROM _rmap_walkers) AS walkers,
           (SELECT list(sym) FROM _rmap_dispatch_frames) AS dispatch,
           (SELECT list(func) FROM _rmap_walkers) || (SELECT list(sym) FROM _rmap_dispatch_frames) AS fam,
           (SELECT list(event) FROM _callchain_ignored_events) AS ignored,
           (SELECT list(func) FROM _rmap_iterator_funcs) AS iters,
           (SELECT list(func) FROM _rmap_one_callbacks) AS cbs,
           (SELECT list(func) FROM _rmap_invalid_vma_funcs) AS invs
),
-- (b) function_graph rows (the first test of the kinds below), in a scan of their own: see Performance above
fg_rows AS (
    SELECT e.run_id, e.line_no, e.ts_ns, e.cpu, e.pid, e.comm, e.func, e.parent, e.depth, e.kind, e.duration_ns,
           e.retval, _ev_fn_role(e.func, c.iters, c.cbs, c.invs, c.walkers) AS fn_role
    FROM events e, config_lists c
    WHERE e.event IN ('funcgraph_entry', 'funcgraph_exit') AND e.kind IN ('entry', 'leaf', 'exit')
),
-- every other row, and its kind; the tests are in order, the first that holds decides
classified AS (
    SELECT e.run_id, e.line_no, e.ts_ns, e.cpu, e.pid, e.comm, e.event, e.payload, e.fields, e.func, e.parent,
           e.depth, e.kind, e.duration_ns, e.retval, e.callchain,
           CASE
               WHEN e.kind IN ('entry', 'return') THEN
                   CASE WHEN e.func IS NOT NULL AND e.event <> 'function' THEN 'probe'::_ev_kind END
               WHEN e.event IN ('rmap_walk_start', 'rmap_walk_end', 'rmap_walk') THEN
                   CASE WHEN coalesce(e.system, 'rmap') = 'rmap' THEN 'tracepoint'::_ev_kind END
               WHEN e.event = '__lost_events' THEN 'lost'::_ev_kind
               WHEN e.event = 'kernel_stack' THEN CASE WHEN e.callchain IS NOT NULL THEN 'stack'::_ev_kind END
               WHEN e.event IN ('mm_migrate_pages', 'mm_migrate_pages_start') OR starts_with(e.event, 'mm_compaction_')
                   THEN 'breaker'::_ev_kind
               WHEN e.kind IS NULL AND e.callchain IS NOT NULL AND len(e.callchain) > 0
                    AND NOT list_contains(c.ignored, e.event)
                    AND list_bool_or(list_transform(e.callchain, lambda f: list_contains(c.walkers, f.sym)))
                   THEN 'callchain'::_ev_kind
               WHEN e.kind IS NULL AND e.fields IS NOT NULL
                    -- a counter or summary payload names one of those keys: lower(payload) contains '_ns=',
                    -- 'ime_ms=', 'terations=' or 'teration_total=', so it contains 's=' or 'l='. lower() maps
                    -- code point to code point and only 's'/'S' ('l'/'L') to 's' ('l'), so the raw payload
                    -- then contains s=, S=, l= or L=: that cheap test first (tests/test_ev_scan_speed.py)
                    AND (e.payload IS NULL
                         OR (contains(e.payload, 's=') OR contains(e.payload, 'S=') OR contains(e.payload, 'l=')
                             OR contains(e.payload, 'L='))
                            AND (contains(lower(e.payload), '_ns=') OR contains(lower(e.payload), 'ime_ms=')
                                 OR contains(lower(e.payload), 'terations=')
                                 OR contains(lower(e.payload), 'teration_total=')))
                   THEN CASE WHEN list_has_any(list_transform(map_keys(e.fields), lambda x: lower(x)),
                                               ['hold_ns', 'time_ms', 'iterations', 'nr_iteration_total'])
                                 THEN 'counter'::_ev_kind
                             WHEN list_contains(list_transform(map_keys(e.fields), lambda x: lower(x)), 'walk_ns')
                                 THEN 'summary'::_ev_kind END
           END AS ev_kind,
           c.walkers, c.dispatch, c.fam, c.iters, c.cbs, c.invs
    FROM events e, config_lists c
    WHERE e.event IS NULL OR e.event NOT IN ('funcgraph_entry', 'funcgraph_exit')
),
with_roles AS (
    SELECT *, CASE WHEN ev_kind IN ('counter', 'summary') THEN _lower_keys(fields) END AS lf,
           CASE WHEN ev_kind = 'probe' THEN _ev_fn_role(func, iters, cbs, invs, walkers) END AS fn_role
    FROM classified WHERE ev_kind IS NOT NULL
)
-- rk = hash(run_id): an integer run key for the sorts (20_walks.sql maps it back to run_id and label)
SELECT hash(run_id) AS rk, line_no, ts_ns, cpu, pid,
       -- comm only where a kind reads it (walk-defining rows), NULL elsewhere (cheap to carry)
       CASE WHEN fn_role = 'walker' THEN comm END AS comm,
       'funcgraph'::_ev_kind AS ev_kind, fn_role,
       CASE kind WHEN 'leaf' THEN 'leaf'::_rec_kind WHEN 'entry' THEN 'entry'::_rec_kind
                 WHEN 'exit' THEN 'exit'::_rec_kind END AS rec_kind,
       CASE WHEN fn_role = 'walker' THEN func END AS wfunc,
       depth, duration_ns,
       -- rz: the printed retval is zero (true), non-zero (false) or absent (NULL)
       _is_zero(retval) AS rz,
       -- callers: the funcgraph-retaddr comment of an entry
       CASE WHEN fn_role = 'walker' THEN parent END AS parent,
       NULL AS ret, NULL AS item_addr, NULL AS vm_start, NULL AS vm_end, NULL AS probe_off, NULL AS x
FROM fg_rows
UNION ALL
SELECT hash(run_id) AS rk, line_no, ts_ns, cpu, pid,
       CASE WHEN ev_kind <> 'probe' OR fn_role = 'walker' THEN comm END AS comm,
       ev_kind, fn_role,
       CASE kind WHEN 'leaf' THEN 'leaf'::_rec_kind WHEN 'entry' THEN 'entry'::_rec_kind
                 WHEN 'exit' THEN 'exit'::_rec_kind WHEN 'return' THEN 'return'::_rec_kind END AS rec_kind,
       CASE WHEN fn_role = 'walker' THEN func END AS wfunc,
       depth, duration_ns,
       NULL::BOOLEAN AS rz,
       -- callers: the "(caller+off/size <- sym)" of a probe return
       CASE WHEN fn_role = 'walker' THEN parent END AS parent,
       -- (c) probe fetch arguments; the return value is a field named ret, retval or arg1
       CASE WHEN ev_kind = 'probe' THEN coalesce(fields['ret'], fields['retval'], fields['arg1'], fields['$retval'])
       END AS ret,
       CASE WHEN ev_kind = 'probe' AND kind = 'entry' THEN fields['addr'] END AS item_addr,
       _hex(CASE WHEN ev_kind = 'probe' AND kind = 'return' THEN fields['vm_start'] END) AS vm_start,
       _hex(CASE WHEN ev_kind = 'probe' AND kind = 'return' THEN fields['vm_end'] END) AS vm_end,
       -- probe offset of a walker entry, from the payload "(sym+0xOFF/0xSIZE) ..."
       CASE WHEN ev_kind = 'probe' AND kind = 'entry' AND fn_role = 'walker'
            THEN _hex(regexp_extract(payload, '^\(\S+?\+(0x[0-9a-fA-F]+)/', 1)) END AS probe_off,
       -- Performance: the values of the kinds other than funcgraph and probe (the kinds with many rows) are one
       -- list column x of one struct, NULL in funcgraph and probe rows: a column of the materialised _ev costs
       -- its full width in every row, NULL or not (39 columns: 499 MB for the 2.2 M rows of a 200 MB
       -- function_graph capture, more than the compute memory limit, so _ev and every sort after it spilled),
       -- where a NULL list costs its offset only (255 MB). _ev_rare() below gives those rows with x unpacked
       -- into columns. Each value is computed here, inside the one CASE, for those rows only.
       CASE WHEN ev_kind <> 'probe' THEN [{
           'event': CASE WHEN ev_kind IN ('tracepoint', 'callchain', 'breaker') THEN event END,
           -- (a) tracepoint fields
           'folio': CASE WHEN ev_kind = 'tracepoint' THEN fields['folio'] END,
           'rwc': CASE WHEN ev_kind = 'tracepoint' THEN fields['rwc'] END,
           'tp_page_type': CASE WHEN ev_kind = 'tracepoint' THEN fields['page_type'] END,
           'tp_duration_ns': CASE WHEN ev_kind = 'tracepoint' THEN TRY_CAST(fields['duration_ns'] AS BIGINT) END,
           -- caller of a tracepoint walk / of a stack record: first frame outward from rmap_walk* not in that family
           'tp_caller': CASE WHEN ev_kind IN ('tracepoint', 'stack') THEN _caller_after(callchain, fam, fam) END,
           -- (d) walker frame, caller (first frame outward not rmap_walk / rmap_walk_locked), addr, pte
           'cc_walker': CASE WHEN ev_kind = 'callchain' THEN _walker_frame(callchain, walkers) END,
           'cc_caller': CASE WHEN ev_kind = 'callchain' THEN _caller_after(callchain, walkers, dispatch) END,
           'addr': CASE WHEN ev_kind = 'callchain' THEN fields['addr'] END,
           'pte': CASE WHEN ev_kind = 'callchain' THEN _hex(fields['pte']) END,
           -- (e) counters (keys compared case-insensitively); Time_ms converted exactly with DECIMAL arithmetic
           'hold_ns': CASE WHEN ev_kind = 'counter' THEN coalesce(TRY_CAST(lf['hold_ns'] AS BIGINT),
                               TRY_CAST(TRY_CAST(lf['time_ms'] AS DECIMAL(38, 9)) * 1000000 AS BIGINT)) END,
           'iterations': CASE WHEN ev_kind = 'counter'
                              THEN TRY_CAST(coalesce(lf['nr_iteration_total'], lf['iterations']) AS BIGINT) END,
           'skip_addr': CASE WHEN ev_kind = 'counter'
                             THEN TRY_CAST(coalesce(lf['skip_addr_out_of_range'], lf['skip_addr']) AS BIGINT) END,
           'skip_mm': CASE WHEN ev_kind = 'counter'
                           THEN TRY_CAST(coalesce(lf['skip_mm_mismatch'], lf['skip_mm']) AS BIGINT) END,
           'rmap_one': CASE WHEN ev_kind = 'counter' THEN TRY_CAST(lf['rmap_one'] AS BIGINT) END,
           'invalid': CASE WHEN ev_kind = 'counter' THEN TRY_CAST(lf['invalid'] AS BIGINT) END,
           'walk_ns': CASE WHEN ev_kind = 'summary' THEN TRY_CAST(lf['walk_ns'] AS BIGINT) END,
           'cb': CASE WHEN ev_kind = 'summary' THEN lf['cb'] END,
           'lost': CASE WHEN ev_kind = 'lost' THEN TRY_CAST(fields['lost'] AS BIGINT) END}]
       END AS x
FROM with_roles;

-- stand-in for the CTE `_ev` of _walk_parts (see above)
CREATE OR REPLACE VIEW _ev AS SELECT * FROM _ev_scan;

-- the rows of `_ev` of the kinds other than funcgraph and probe, with the values of x as columns (event,
-- folio, rwc, tp_page_type, tp_duration_ns, tp_caller, cc_walker, cc_caller, addr, pte, hold_ns, iterations,
-- skip_addr, skip_mm, rmap_one, invalid, walk_ns, cb, lost); a macro, so that `_ev` is the caller's
CREATE OR REPLACE MACRO _ev_rare() AS TABLE
SELECT * EXCLUDE (x), unnest(x[1]) FROM _ev WHERE ev_kind NOT IN ('funcgraph', 'probe');
