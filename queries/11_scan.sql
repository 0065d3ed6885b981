-- ksmtrace walk reconstruction: the one scan of `events` that every evidence kind reads.
--
-- Performance: reading the store costs more than the reconstruction itself, and DuckDB inlines a view
-- wherever it is referenced. So the walk views read `events` once: _ev_scan keeps only the rows some kind
-- needs, with the few values each kind uses already extracted (narrow, typed columns; the nested fields and
-- callchain columns are decoded once). The per-kind logic (12_* .. 16_*) is written as table macros over
-- the relation `_ev`; _walk_parts (20_walks.sql) computes `_ev` once as a MATERIALIZED CTE named `_ev`,
-- which the macros then read (a CTE shadows the view of the same name). Outside _walk_parts the view
-- `_ev` below stands in, so `SELECT * FROM _fg_out()` also works on its own.
--
-- cls (UTINYINT) says which kind a row is for:
--   1 fg     function_graph entry / leaf / exit rows (b)
--   2 pr     probe rows: kprobe / kretprobe / fprobe entry and return (c)
--   3 tp     rmap tracepoints rmap_walk_start / rmap_walk_end / rmap_walk (a)
--   4 cc     events whose callchain holds a walker frame (d)
--   5 brk    events that end a perf-callchain walk: mm_migrate_pages(_start), mm_compaction_* (d)
--   6 ctr    counter lines (fields hold_ns / Time_ms / iterations / Nr_iteration_total) (e)
--   7 sum    ksm_walk summary lines (fields walk_ns) (e)
--   8 stack  ftrace <stack trace> records (event kernel_stack), attached to the event on the line before
--   9 lost   __lost_events markers

CREATE OR REPLACE VIEW _ev_scan AS
WITH k AS (
    SELECT (SELECT list(func) FROM _rmap_walkers) AS walkers,
           (SELECT list(sym) FROM _rmap_dispatch_frames) AS dispatch,
           (SELECT list(func) FROM _rmap_walkers) || (SELECT list(sym) FROM _rmap_dispatch_frames) AS fam,
           (SELECT list(event) FROM _callchain_ignored_events) AS ignored,
           (SELECT list(func) FROM _rmap_iterator_funcs) AS iters,
           (SELECT list(func) FROM _rmap_one_callbacks) AS cbs,
           (SELECT list(func) FROM _rmap_invalid_vma_funcs) AS invs
),
e AS (
    SELECT e.*,
           CASE
               WHEN e.event IN ('funcgraph_entry', 'funcgraph_exit') THEN
                   CASE WHEN e.kind IN ('entry', 'leaf', 'exit') THEN 1 END
               WHEN e.kind IN ('entry', 'return') THEN CASE WHEN e.func IS NOT NULL AND e.event <> 'function' THEN 2 END
               WHEN e.event IN ('rmap_walk_start', 'rmap_walk_end', 'rmap_walk') THEN
                   CASE WHEN coalesce(e.system, 'rmap') = 'rmap' THEN 3 END
               WHEN e.event = '__lost_events' THEN 9
               WHEN e.event = 'kernel_stack' THEN CASE WHEN e.callchain IS NOT NULL THEN 8 END
               WHEN e.event IN ('mm_migrate_pages', 'mm_migrate_pages_start') OR starts_with(e.event, 'mm_compaction_')
                   THEN 5
               WHEN e.kind IS NULL AND e.callchain IS NOT NULL AND len(e.callchain) > 0
                    AND NOT list_contains(k.ignored, e.event)
                    AND list_has_any(list_transform(e.callchain, lambda f: f.sym), k.walkers) THEN 4
               WHEN e.kind IS NULL AND e.fields IS NOT NULL
                    AND (e.payload IS NULL OR contains(lower(e.payload), '_ns=') OR contains(lower(e.payload), 'ime_ms=')
                         OR contains(lower(e.payload), 'terations=') OR contains(lower(e.payload), 'teration_total='))
                   THEN CASE WHEN list_has_any(list_transform(map_keys(e.fields), lambda x: lower(x)),
                                               ['hold_ns', 'time_ms', 'iterations', 'nr_iteration_total']) THEN 6
                             WHEN list_contains(list_transform(map_keys(e.fields), lambda x: lower(x)), 'walk_ns')
                                 THEN 7 END
           END::UTINYINT AS cls,
           k.walkers, k.dispatch, k.fam, k.iters, k.cbs, k.invs
    FROM events e, k
),
x AS (
    SELECT *, CASE WHEN cls IN (6, 7) THEN _lower_keys(fields) END AS lf,
           -- function codes keep the rows narrow: 1 down_read_trylock, 2 down_read, 3 up_read, 4 iterator,
           -- 5 rmap_one callback, 6 invalid_vma, 9 walker, 0 anything else
           CASE WHEN cls IN (1, 2) THEN
               (CASE WHEN func = 'down_read_trylock' THEN 1 WHEN func = 'down_read' THEN 2 WHEN func = 'up_read' THEN 3
                     WHEN list_contains(iters, func) THEN 4 WHEN list_contains(cbs, func) THEN 5
                     WHEN list_contains(invs, func) THEN 6 WHEN list_contains(walkers, func) THEN 9 ELSE 0 END)::UTINYINT
           END AS fc
    FROM e WHERE cls IS NOT NULL
)
-- rk = hash(run_id): an integer run key for the sorts (20_walks.sql maps it back to run_id and label)
SELECT hash(run_id) AS rk, line_no, ts_ns, cpu, pid,
       -- comm and event only where a kind reads them (walk-defining rows), NULL elsewhere (cheap to carry)
       CASE WHEN cls NOT IN (1, 2) OR fc = 9 THEN comm END AS comm,
       CASE WHEN cls IN (3, 4, 5) THEN event END AS event,
       cls, fc,
       -- kc: 0 entry, 1 leaf, 2 exit (function_graph), 3 return (probes)
       (CASE kind WHEN 'entry' THEN 0 WHEN 'leaf' THEN 1 WHEN 'exit' THEN 2 WHEN 'return' THEN 3 END)::UTINYINT AS kc,
       CASE WHEN fc = 9 THEN func END AS wfunc,
       depth, duration_ns,
       -- rz: the printed retval is zero (true), non-zero (false) or absent (NULL)
       CASE WHEN cls = 1 THEN _is_zero(retval) END AS rz,
       -- callers: the funcgraph-retaddr comment of an entry, the "(caller+off/size <- sym)" of a probe return
       CASE WHEN fc = 9 THEN parent END AS parent,
       -- (a) tracepoint fields
       CASE WHEN cls = 3 THEN fields['folio'] END AS folio,
       CASE WHEN cls = 3 THEN fields['rwc'] END AS rwc,
       CASE WHEN cls = 3 THEN fields['page_type'] END AS tp_page_type,
       CASE WHEN cls = 3 THEN TRY_CAST(fields['duration_ns'] AS BIGINT) END AS tp_duration_ns,
       -- caller of a tracepoint walk / of a stack record: first frame outward from rmap_walk* not in that family
       CASE WHEN cls IN (3, 8) THEN _caller_after(callchain, fam, fam) END AS tp_caller,
       -- (c) probe fetch arguments; the return value is a field named ret, retval or arg1
       CASE WHEN cls = 2 THEN coalesce(fields['ret'], fields['retval'], fields['arg1'], fields['$retval']) END AS ret,
       CASE WHEN cls = 2 AND kind = 'entry' THEN fields['addr'] END AS item_addr,
       CASE WHEN cls = 2 AND kind = 'return' THEN _hex(fields['vm_start']) END AS vm_start,
       CASE WHEN cls = 2 AND kind = 'return' THEN _hex(fields['vm_end']) END AS vm_end,
       -- probe offset of a walker entry, from the payload "(sym+0xOFF/0xSIZE) ..."
       CASE WHEN cls = 2 AND kind = 'entry' AND fc = 9
            THEN _hex(regexp_extract(payload, '^\(\S+?\+(0x[0-9a-fA-F]+)/', 1)) END AS probe_off,
       -- (d) walker frame, caller (first frame outward not rmap_walk / rmap_walk_locked), addr, pte
       CASE WHEN cls = 4 THEN _walker_frame(callchain, walkers) END AS cc_walker,
       CASE WHEN cls = 4 THEN _caller_after(callchain, walkers, dispatch) END AS cc_caller,
       CASE WHEN cls = 4 THEN fields['addr'] END AS addr,
       CASE WHEN cls = 4 THEN _hex(fields['pte']) END AS pte,
       -- (e) counters (keys compared case-insensitively); Time_ms converted exactly with DECIMAL arithmetic
       CASE WHEN cls = 6 THEN coalesce(TRY_CAST(lf['hold_ns'] AS BIGINT),
                                           TRY_CAST(TRY_CAST(lf['time_ms'] AS DECIMAL(38, 9)) * 1000000 AS BIGINT))
       END AS hold_ns,
       CASE WHEN cls = 6 THEN TRY_CAST(coalesce(lf['nr_iteration_total'], lf['iterations']) AS BIGINT) END AS iterations,
       CASE WHEN cls = 6 THEN TRY_CAST(coalesce(lf['skip_addr_out_of_range'], lf['skip_addr']) AS BIGINT) END AS skip_addr,
       CASE WHEN cls = 6 THEN TRY_CAST(coalesce(lf['skip_mm_mismatch'], lf['skip_mm']) AS BIGINT) END AS skip_mm,
       CASE WHEN cls = 6 THEN TRY_CAST(lf['rmap_one'] AS BIGINT) END AS rmap_one,
       CASE WHEN cls = 6 THEN TRY_CAST(lf['invalid'] AS BIGINT) END AS invalid,
       CASE WHEN cls = 7 THEN TRY_CAST(lf['walk_ns'] AS BIGINT) END AS walk_ns,
       CASE WHEN cls = 7 THEN lf['cb'] END AS cb,
       CASE WHEN cls = 9 THEN TRY_CAST(fields['lost'] AS BIGINT) END AS lost
FROM x;

-- stand-in for the CTE `_ev` of _walk_parts (see above)
CREATE OR REPLACE VIEW _ev AS SELECT * FROM _ev_scan;
