-- ksmtrace standard views, part 3: lock contention waits (kernel.md §6.6, walk_rules.md (f)).

-- ftrace `<stack trace>` records (stacktrace trigger or option): the parser makes them rows of their own
-- (event kernel_stack) carrying the frames as callchain, on the line right after the event they belong to.
-- _stacks attaches them to that event: host_line = the event's line, same pid.
CREATE OR REPLACE VIEW _stacks AS
SELECT run_id, line_no - 1 AS host_line, pid, callchain FROM events
WHERE event = 'kernel_stack' AND callchain IS NOT NULL;

-- contention_begin / contention_end rows with their fields (lock_addr, flags / ret). lock_waits reads
-- them once (a MATERIALIZED CTE named _lock_rows that the macro _lock_pairs() below then reads; the view
-- _lock_rows stands in elsewhere), so the store is scanned once.
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
-- stack per (run, pid, lock_addr); nested spinlock waits inside an rwsem slow path have another address.
-- Same join-free stack trick as the rmap tracepoints (12_tracepoint_walks.sql).
CREATE OR REPLACE MACRO _lock_pairs() AS TABLE
WITH p AS (
    SELECT *, sum(d) OVER k AS psum
    FROM _lock_rows WINDOW k AS (PARTITION BY run_id, pid, lock_addr ORDER BY ts_ns, line_no ROWS UNBOUNDED PRECEDING)
), q AS (
    SELECT *, psum - least(0, min(psum) OVER k) AS depth_after
    FROM p WINDOW k AS (PARTITION BY run_id, pid, lock_addr ORDER BY ts_ns, line_no ROWS UNBOUNDED PRECEDING)
), l AS (
    SELECT *,
           CASE WHEN d = 1 THEN depth_after
                WHEN lag(depth_after, 1, 0) OVER k > 0 THEN lag(depth_after, 1, 0) OVER k END AS level
    FROM q WINDOW k AS (PARTITION BY run_id, pid, lock_addr ORDER BY ts_ns, line_no)
)
SELECT *, lead(d) OVER m AS nxt_d, lead(ts_ns) OVER m AS nxt_ts, lead(ret) OVER m AS nxt_ret,
       lag(d) OVER m AS prv_d
FROM l
WINDOW m AS (PARTITION BY run_id, pid, lock_addr, level ORDER BY ts_ns, line_no);

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
-- @column ret INTEGER contention_end ret: 0 acquired, -4 interrupted (-EINTR)
-- @column interrupted BOOLEAN ret <> 0
-- @column caller VARCHAR first callchain frame outside the locking primitives (NULL without callchain)
-- @column callchain STRUCT(addr VARCHAR, sym VARCHAR, off VARCHAR, dso VARCHAR)[] callchain of the contention_begin, innermost frame first
CREATE OR REPLACE VIEW _lock_waits_from_events AS
WITH _lock_rows AS MATERIALIZED (SELECT * FROM _lock_rows_scan),
pre AS (SELECT list(prefix) AS prefixes FROM _lock_primitive_prefixes),
anon AS (
    -- A (kernel.md §6.6): addresses a KSM walker itself blocked on. Choice: the READ contention whose first
    -- frame outside the locking primitives is rmap_walk_ksm (anon_vma_lock_read's slow path). A spinlock
    -- contended deeper inside a walk (a page-table lock in try_to_migrate_one, say) also has rmap_walk_ksm
    -- in its callchain but is not the anon_vma lock; counting it would credit its waiters to the rwsem.
    SELECT DISTINCT r.run_id, r.lock_addr FROM _lock_rows r CROSS JOIN pre
    WHERE r.d = 1 AND r.flags LIKE '%READ%'
      AND list_filter(r.callchain,
                      lambda f: NOT list_bool_or(list_transform(pre.prefixes, lambda x: starts_with(f.sym, x))))[1].sym
          = 'rmap_walk_ksm'
), has_cc AS (
    SELECT DISTINCT run_id FROM _lock_rows WHERE d = 1 AND callchain IS NOT NULL AND len(callchain) > 0
)
SELECT p.run_id, p.label, p.pid::INTEGER AS pid, p.comm, p.lock_addr, p.flags,
       p.ts_ns AS start_ns, p.nxt_ts AS end_ns, (p.nxt_ts - p.ts_ns)::BIGINT AS wait_ns,
       CASE WHEN h.run_id IS NOT NULL THEN a.lock_addr IS NOT NULL END AS anon_vma_lock,
       p.nxt_ret AS ret, p.nxt_ret <> 0 AS interrupted,
       list_filter(p.callchain,
                   lambda f: NOT list_bool_or(list_transform(pre.prefixes, lambda x: starts_with(f.sym, x))))[1].sym
           AS caller,
       p.callchain
FROM _lock_pairs() p
CROSS JOIN pre
LEFT JOIN anon a ON a.run_id = p.run_id AND a.lock_addr = p.lock_addr
LEFT JOIN has_cc h ON h.run_id = p.run_id
WHERE p.d = 1 AND p.nxt_d = -1;
