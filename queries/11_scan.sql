-- ksmtrace walk reconstruction: the one scan of `events` that every evidence kind reads.
--
-- Performance: reading the events costs more than the reconstruction itself, and DuckDB inlines a view
-- wherever it is referenced. So the walk views read `events` once: _ev_scan keeps only the rows some kind
-- needs, with the few values each kind uses already extracted (narrow, typed columns; the nested fields and
-- callchain columns are decoded once). The per-kind logic (12_* .. 16_*) is written as table macros over
-- the relation `_ev`; _walk_parts (20_walks.sql) computes `_ev` once as a MATERIALIZED CTE named `_ev`,
-- which the macros then read (a CTE shadows the view of the same name); ingest materialises it once as a
-- temp table `_ev` instead (ksmtrace.db.SHARED, 20_walks.sql). Elsewhere the view `_ev` below stands in,
-- so `SELECT * FROM _fg_out()` also works on its own.
--
-- ev_kind (ENUM _ev_kind of 10_helpers.sql) says which kind a row is for; fn_role (_fn_role) what its
-- function does in a walk; rec_kind (_rec_kind) whether it is an entry, leaf, exit or return record.
-- Letters (a)..(f) are the sections of docs/walk-rules.md.

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
classified AS (
    SELECT e.*,
           CASE
               WHEN e.event IN ('funcgraph_entry', 'funcgraph_exit') THEN
                   CASE WHEN e.kind IN ('entry', 'leaf', 'exit') THEN 'funcgraph' END
               WHEN e.kind IN ('entry', 'return') THEN
                   CASE WHEN e.func IS NOT NULL AND e.event <> 'function' THEN 'probe' END
               WHEN e.event IN ('rmap_walk_start', 'rmap_walk_end', 'rmap_walk') THEN
                   CASE WHEN coalesce(e.system, 'rmap') = 'rmap' THEN 'tracepoint' END
               WHEN e.event = '__lost_events' THEN 'lost'
               WHEN e.event = 'kernel_stack' THEN CASE WHEN e.callchain IS NOT NULL THEN 'stack' END
               WHEN e.event IN ('mm_migrate_pages', 'mm_migrate_pages_start') OR starts_with(e.event, 'mm_compaction_')
                   THEN 'breaker'
               WHEN e.kind IS NULL AND e.callchain IS NOT NULL AND len(e.callchain) > 0
                    AND NOT list_contains(c.ignored, e.event)
                    AND list_has_any(list_transform(e.callchain, lambda f: f.sym), c.walkers) THEN 'callchain'
               WHEN e.kind IS NULL AND e.fields IS NOT NULL
                    AND (e.payload IS NULL OR contains(lower(e.payload), '_ns=') OR contains(lower(e.payload), 'ime_ms=')
                         OR contains(lower(e.payload), 'terations=') OR contains(lower(e.payload), 'teration_total='))
                   THEN CASE WHEN list_has_any(list_transform(map_keys(e.fields), lambda x: lower(x)),
                                               ['hold_ns', 'time_ms', 'iterations', 'nr_iteration_total']) THEN 'counter'
                             WHEN list_contains(list_transform(map_keys(e.fields), lambda x: lower(x)), 'walk_ns')
                                 THEN 'summary' END
           END::_ev_kind AS ev_kind,
           c.walkers, c.dispatch, c.fam, c.iters, c.cbs, c.invs
    FROM events e, config_lists c
),
with_roles AS (
    SELECT *, CASE WHEN ev_kind IN ('counter', 'summary') THEN _lower_keys(fields) END AS lf,
           CASE WHEN ev_kind IN ('funcgraph', 'probe') THEN
               (CASE WHEN func = 'down_read_trylock' THEN 'trylock' WHEN func = 'down_read' THEN 'down_read'
                     WHEN func = 'up_read' THEN 'up_read'
                     WHEN list_contains(iters, func) THEN 'iterator' WHEN list_contains(cbs, func) THEN 'rmap_one'
                     WHEN list_contains(invs, func) THEN 'invalid_vma' WHEN list_contains(walkers, func) THEN 'walker'
                     ELSE 'other' END)::_fn_role
           END AS fn_role
    FROM classified WHERE ev_kind IS NOT NULL
),
-- rk = hash(run_id): an integer run key for the sorts (20_walks.sql maps it back to run_id and label)
scanned AS (
SELECT hash(run_id) AS rk, line_no, ts_ns, cpu, pid,
       -- comm and event only where a kind reads them (walk-defining rows), NULL elsewhere (cheap to carry)
       CASE WHEN ev_kind NOT IN ('funcgraph', 'probe') OR fn_role = 'walker' THEN comm END AS comm,
       CASE WHEN ev_kind IN ('tracepoint', 'callchain', 'breaker') THEN event END AS event,
       ev_kind, fn_role,
       CASE WHEN kind IN ('entry', 'leaf', 'exit', 'return') THEN kind END::_rec_kind AS rec_kind,
       CASE WHEN fn_role = 'walker' THEN func END AS wfunc,
       depth, duration_ns,
       -- rz: the printed retval is zero (true), non-zero (false) or absent (NULL)
       CASE WHEN ev_kind = 'funcgraph' THEN _is_zero(retval) END AS rz,
       -- callers: the funcgraph-retaddr comment of an entry, the "(caller+off/size <- sym)" of a probe return
       CASE WHEN fn_role = 'walker' THEN parent END AS parent,
       -- (a) tracepoint fields
       CASE WHEN ev_kind = 'tracepoint' THEN fields['folio'] END AS folio,
       CASE WHEN ev_kind = 'tracepoint' THEN fields['rwc'] END AS rwc,
       CASE WHEN ev_kind = 'tracepoint' THEN fields['page_type'] END AS tp_page_type,
       CASE WHEN ev_kind = 'tracepoint' THEN TRY_CAST(fields['duration_ns'] AS BIGINT) END AS tp_duration_ns,
       -- caller of a tracepoint walk / of a stack record: first frame outward from rmap_walk* not in that family
       CASE WHEN ev_kind IN ('tracepoint', 'stack') THEN _caller_after(callchain, fam, fam) END AS tp_caller,
       -- (c) probe fetch arguments; the return value is a field named ret, retval or arg1
       CASE WHEN ev_kind = 'probe' THEN coalesce(fields['ret'], fields['retval'], fields['arg1'], fields['$retval'])
       END AS ret,
       CASE WHEN ev_kind = 'probe' AND kind = 'entry' THEN fields['addr'] END AS item_addr,
       CASE WHEN ev_kind = 'probe' AND kind = 'return' THEN _hex(fields['vm_start']) END AS vm_start,
       CASE WHEN ev_kind = 'probe' AND kind = 'return' THEN _hex(fields['vm_end']) END AS vm_end,
       -- probe offset of a walker entry, from the payload "(sym+0xOFF/0xSIZE) ..."
       CASE WHEN ev_kind = 'probe' AND kind = 'entry' AND fn_role = 'walker'
            THEN _hex(regexp_extract(payload, '^\(\S+?\+(0x[0-9a-fA-F]+)/', 1)) END AS probe_off,
       -- (d) walker frame, caller (first frame outward not rmap_walk / rmap_walk_locked), addr, pte
       CASE WHEN ev_kind = 'callchain' THEN _walker_frame(callchain, walkers) END AS cc_walker,
       CASE WHEN ev_kind = 'callchain' THEN _caller_after(callchain, walkers, dispatch) END AS cc_caller,
       CASE WHEN ev_kind = 'callchain' THEN fields['addr'] END AS addr,
       CASE WHEN ev_kind = 'callchain' THEN _hex(fields['pte']) END AS pte,
       -- (e) counters (keys compared case-insensitively); Time_ms converted exactly with DECIMAL arithmetic
       CASE WHEN ev_kind = 'counter' THEN coalesce(TRY_CAST(lf['hold_ns'] AS BIGINT),
                                              TRY_CAST(TRY_CAST(lf['time_ms'] AS DECIMAL(38, 9)) * 1000000 AS BIGINT))
       END AS hold_ns,
       CASE WHEN ev_kind = 'counter' THEN TRY_CAST(coalesce(lf['nr_iteration_total'], lf['iterations']) AS BIGINT)
       END AS iterations,
       CASE WHEN ev_kind = 'counter' THEN TRY_CAST(coalesce(lf['skip_addr_out_of_range'], lf['skip_addr']) AS BIGINT)
       END AS skip_addr,
       CASE WHEN ev_kind = 'counter' THEN TRY_CAST(coalesce(lf['skip_mm_mismatch'], lf['skip_mm']) AS BIGINT)
       END AS skip_mm,
       CASE WHEN ev_kind = 'counter' THEN TRY_CAST(lf['rmap_one'] AS BIGINT) END AS rmap_one,
       CASE WHEN ev_kind = 'counter' THEN TRY_CAST(lf['invalid'] AS BIGINT) END AS invalid,
       CASE WHEN ev_kind = 'summary' THEN TRY_CAST(lf['walk_ns'] AS BIGINT) END AS walk_ns,
       CASE WHEN ev_kind = 'summary' THEN lf['cb'] END AS cb,
       CASE WHEN ev_kind = 'lost' THEN TRY_CAST(fields['lost'] AS BIGINT) END AS lost
FROM with_roles
)
-- Performance: the values of the kinds other than funcgraph and probe (the kinds with many rows) are one
-- list column x of one struct, NULL in funcgraph and probe rows: a column of the materialised _ev costs its
-- full width in every row, NULL or not (39 columns: 499 MB for the 2.2 M rows of a 200 MB function_graph
-- capture, more than the compute memory limit, so _ev and every sort after it spilled), where a NULL list
-- costs its offset only (255 MB). _ev_rare() below gives those rows with x unpacked into columns.
SELECT rk, line_no, ts_ns, cpu, pid, comm, ev_kind, fn_role, rec_kind, wfunc, depth, duration_ns, rz, parent,
       ret, item_addr, vm_start, vm_end, probe_off,
       CASE WHEN ev_kind NOT IN ('funcgraph', 'probe') THEN
           [{'event': event, 'folio': folio, 'rwc': rwc, 'tp_page_type': tp_page_type,
             'tp_duration_ns': tp_duration_ns, 'tp_caller': tp_caller, 'cc_walker': cc_walker,
             'cc_caller': cc_caller, 'addr': addr, 'pte': pte, 'hold_ns': hold_ns, 'iterations': iterations,
             'skip_addr': skip_addr, 'skip_mm': skip_mm, 'rmap_one': rmap_one, 'invalid': invalid,
             'walk_ns': walk_ns, 'cb': cb, 'lost': lost}]
       END AS x
FROM scanned;

-- stand-in for the CTE `_ev` of _walk_parts (see above)
CREATE OR REPLACE VIEW _ev AS SELECT * FROM _ev_scan;

-- the rows of `_ev` of the kinds other than funcgraph and probe, with the values of x as columns (event,
-- folio, rwc, tp_page_type, tp_duration_ns, tp_caller, cc_walker, cc_caller, addr, pte, hold_ns, iterations,
-- skip_addr, skip_mm, rmap_one, invalid, walk_ns, cb, lost); a macro, so that `_ev` is the caller's
CREATE OR REPLACE MACRO _ev_rare() AS TABLE
SELECT * EXCLUDE (x), unnest(x[1]) FROM _ev WHERE ev_kind NOT IN ('funcgraph', 'probe');
