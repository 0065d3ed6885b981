-- @view events
-- One row per trace record, whatever the input format (ftrace text, function_graph,
-- perf script, trace-cmd report, trace.dat, perf.data). Columns a format cannot
-- fill are NULL. Non-event lines with meaning get synthetic event names:
-- __lost_events (fields['lost'] = count), __buffer_started, __task_switch.
-- @needs any ingested input
-- @column run_id VARCHAR run the record belongs to (runs.run_id)
-- @column label VARCHAR label of that run
-- @column line_no BIGINT 1-based line number of the record in the input text
-- @column ts_ns BIGINT timestamp in integer ns, exact (17258.057760 -> 17258057760000)
-- @column cpu INTEGER CPU the record was logged on
-- @column pid INTEGER thread id as the tracer prints it
-- @column tgid INTEGER thread group id when printed (record-tgid, perf pid/tid), else NULL
-- @column comm VARCHAR task name as printed ("<...>" kept as is)
-- @column flags VARCHAR raw irq/preempt flags column (e.g. d..1.), NULL when absent
-- @column system VARCHAR event system when printed (perf "migrate:..."), else NULL
-- @column event VARCHAR event name without system (set_migration_pte, rmap_walk_start, funcgraph_entry ...)
-- @column payload VARCHAR the text after the event name, verbatim
-- @column fields MAP(VARCHAR, VARCHAR) key=value fields of the payload, values as text
-- @column func VARCHAR function name (function tracer, function_graph, probes)
-- @column parent VARCHAR caller (function tracer <-parent, kretprobe caller+off/size)
-- @column depth INTEGER function_graph nesting depth, 0 = outermost
-- @column kind VARCHAR function_graph: entry, exit, leaf, comment, irq_enter, irq_exit; probes: entry, return
-- @column duration_ns BIGINT function_graph: duration printed on leaf and exit lines, ns
-- @column retval VARCHAR function_graph return value as printed (0x1, -22), NULL when absent
-- @column callchain STRUCT(addr VARCHAR, sym VARCHAR, off VARCHAR, dso VARCHAR)[] callchain or stack, innermost frame first
CREATE OR REPLACE VIEW events AS
SELECT *
FROM read_parquet(_store_glob('events'), hive_partitioning = true, union_by_name = true,
                  hive_types = {'label': VARCHAR, 'run_id': VARCHAR})
WHERE run_id IN (SELECT run_id FROM runs);
