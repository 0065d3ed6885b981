-- ksmtrace standard views, part 3: lock contention waits (docs/walk-rules.md (f)).

-- ftrace `<stack trace>` records (stacktrace trigger or option), by the event they belong to
-- (_stack_host_line, 10_helpers.sql)
CREATE OR REPLACE VIEW _stacks AS
SELECT run_id, _stack_host_line(line_no) AS host_line, pid, callchain FROM events
-- (callchain IS NOT NULL written so that the Parquet scan does not take it as a filter of its own: it would
-- read every event's callchain to test it, where now it reads the callchains of kernel_stack rows only)
WHERE event = 'kernel_stack' AND (callchain IS NOT NULL OR event IS NULL);

-- contention_begin / contention_end rows with their fields (lock_addr, flags / ret). lock_waits reads
-- them once (a MATERIALIZED CTE named _lock_rows that the macro _lock_pairs() below then reads; the view
-- _lock_rows stands in elsewhere), so the events are scanned once.
CREATE OR REPLACE VIEW _lock_rows_scan AS
SELECT e.run_id, e.label, e.line_no, e.ts_ns, e.cpu, e.pid, e.comm, e.event,
       coalesce(e.callchain, s.callchain) AS callchain,  -- perf -g, or an ftrace <stack trace> record
       e.fields['lock_addr'] AS lock_addr, e.fields['flags'] AS flags, TRY_CAST(e.fields['ret'] AS INTEGER) AS ret,
       CASE WHEN e.event = 'contention_begin' THEN 1 ELSE -1 END AS d
FROM events e
LEFT JOIN _stacks s ON s.run_id = e.run_id AND s.host_line = e.line_no AND s.pid = e.pid
WHERE e.event IN ('contention_begin', 'contention_end') AND coalesce(e.system, 'lock') = 'lock';

CREATE OR REPLACE VIEW _lock_rows AS SELECT * FROM _lock_rows_scan;

-- Pairing: per (run, pid) an end closes the most recent open begin with the same lock_addr, i.e. a LIFO
-- stack per (run, pid, lock_addr) in (ts, line_no) order (_lifo_pairs, 10_helpers.sql); nested spinlock
-- waits inside an rwsem slow path have another address.
CREATE OR REPLACE MACRO _lock_pairs() AS TABLE
WITH _lifo_in AS (
    SELECT {'run_id': run_id, 'pid': pid, 'lock_addr': lock_addr} AS k, ts_ns AS o1, line_no AS o2, d,
           {'ts_ns': ts_ns, 'ret': ret} AS v, * EXCLUDE (d)
    FROM _lock_rows
)
SELECT * EXCLUDE (k, o1, o2, v, nxt_v), nxt_v.ts_ns AS nxt_ts, nxt_v.ret AS nxt_ret FROM _lifo_pairs();

-- unpaired begins (end lost or after the trace) and ends (begin before the trace), per run
CREATE OR REPLACE VIEW _lock_waits_unpaired AS
SELECT run_id, any_value(label) AS label,
       count(*) FILTER (WHERE d = 1 AND nxt_d IS DISTINCT FROM -1) AS unpaired_begins,
       count(*) FILTER (WHERE d = -1 AND level IS NULL) AS unpaired_ends
FROM _lock_pairs() GROUP BY run_id;

-- @view lock_waits
-- One row per lock contention wait: a lock:contention_begin paired with the contention_end of the same
-- task and lock address. anon_vma_lock marks waits on a lock that KSM walks wait for (its address is
-- seen in a READ contention_begin whose first frame outside the locking primitives is rmap_walk_ksm:
-- the anon_vma root rwsem taken by anon_vma_lock_read after a failed trylock); WRITE
-- waits on such a lock are writers queued behind a walker's read hold, a lower bound on that hold.
-- Lock addresses are compared as printed (hashed in tracefs, raw in perf): never across sources.
-- Unpaired begins/ends are not rows; _lock_waits_unpaired counts them per run.
-- @needs lock:contention_begin / contention_end tracepoints (perf lock record, or tracefs with a stacktrace trigger for attribution)
-- @column run_id VARCHAR run the wait belongs to
-- @column label VARCHAR label of that run
-- @column pid INTEGER waiting thread
-- @column comm VARCHAR its name as printed
-- @column lock_addr VARCHAR lock address as printed (hashed or raw)
-- @column flags VARCHAR contention flags: READ, WRITE, SPIN, ... joined by |
-- @column start_ns BIGINT contention_begin timestamp, ns
-- @column end_ns BIGINT contention_end timestamp, ns
-- @column wait_ns BIGINT end_ns - start_ns
-- @column anon_vma_lock BOOLEAN the lock is one a KSM walk waited for (NULL when no contention_begin of the run has a callchain)
-- @extras the contract columns end here (docs/walk-rules.md, "Conventions"); extras follow
-- @column ret INTEGER contention_end ret: 0 acquired, -4 interrupted (-EINTR)
-- @column interrupted BOOLEAN ret <> 0
-- @column caller VARCHAR first callchain frame outside the locking primitives (NULL without callchain)
-- @column callchain STRUCT(addr VARCHAR, sym VARCHAR, off VARCHAR, dso VARCHAR)[] callchain of the contention_begin, innermost frame first
-- Performance: the pairing (four window passes over the rows) carries narrow rows; the callchains (the bulk
-- of the bytes) are joined back to the paired begins by row id (lr_id) afterwards.
CREATE OR REPLACE VIEW _lock_waits_from_events AS
WITH _lock_rows_cc AS MATERIALIZED (SELECT *, row_number() OVER () AS lr_id FROM _lock_rows_scan),
_lock_rows AS (SELECT * EXCLUDE (callchain) FROM _lock_rows_cc),
primitives AS (SELECT list(prefix) AS prefixes FROM _lock_primitive_prefixes),
walker_locks AS (
    -- addresses a KSM walker itself blocked on (docs/walk-rules.md (f)). Choice: the READ contention whose
    -- first frame outside the locking primitives is rmap_walk_ksm (anon_vma_lock_read's slow path). A
    -- spinlock contended deeper inside a walk (a page-table lock in try_to_migrate_one, say) also has
    -- rmap_walk_ksm in its callchain but is not the anon_vma lock; counting it would credit its waiters
    -- to the rwsem.
    SELECT DISTINCT r.run_id, r.lock_addr FROM _lock_rows_cc r CROSS JOIN primitives pr
    WHERE r.d = 1 AND r.flags LIKE '%READ%' AND _first_frame_outside(r.callchain, pr.prefixes) = 'rmap_walk_ksm'
), runs_with_callchains AS (
    SELECT DISTINCT run_id FROM _lock_rows_cc WHERE d = 1 AND callchain IS NOT NULL AND len(callchain) > 0
)
SELECT p.run_id, p.label, p.pid::INTEGER AS pid, p.comm, p.lock_addr, p.flags,
       p.ts_ns AS start_ns, p.nxt_ts AS end_ns, (p.nxt_ts - p.ts_ns)::BIGINT AS wait_ns,
       CASE WHEN h.run_id IS NOT NULL THEN a.lock_addr IS NOT NULL END AS anon_vma_lock,
       p.nxt_ret AS ret, p.nxt_ret <> 0 AS interrupted,
       _first_frame_outside(c.callchain, pr.prefixes) AS caller,
       c.callchain
FROM _lock_pairs() p
JOIN _lock_rows_cc c ON c.lr_id = p.lr_id
CROSS JOIN primitives pr
LEFT JOIN walker_locks a ON a.run_id = p.run_id AND a.lock_addr = p.lock_addr
LEFT JOIN runs_with_callchains h ON h.run_id = p.run_id
WHERE p.d = 1 AND p.nxt_d = -1;
