-- ksmtrace standard views, part 3: lock contention waits (docs/walk-rules.md (f)).

-- ftrace `<stack trace>` records (stacktrace trigger or option), by the event they belong to
-- (_stack_host_line, 10_helpers.sql)
CREATE OR REPLACE VIEW _stacks AS
SELECT run_id, _stack_host_line(line_no) AS host_line, pid, callchain FROM events
-- (callchain IS NOT NULL written so that the Parquet scan does not take it as a filter of its own: it would
-- read every event's callchain to test it, where now it reads the callchains of kernel_stack rows only)
WHERE event = 'kernel_stack' AND (callchain IS NOT NULL OR event IS NULL);

-- contention_begin / contention_end rows with their fields (lock_addr, flags / ret), without callchains
-- (_lock_waits_from_events reads those for the runs with a wait only). The macro _lock_pairs() below reads
-- them as `_lock_rows`: the view of that name, or a caller's CTE that shadows it.
CREATE OR REPLACE VIEW _lock_rows_scan AS
SELECT e.run_id, e.label, e.line_no, e.ts_ns, e.cpu, e.pid, e.comm, e.event,
       e.fields['lock_addr'] AS lock_addr, e.fields['flags'] AS flags, TRY_CAST(e.fields['ret'] AS INTEGER) AS ret,
       CASE WHEN e.event = 'contention_begin' THEN 1 ELSE -1 END AS d
FROM events e
WHERE e.event IN ('contention_begin', 'contention_end') AND coalesce(e.system, 'lock') = 'lock';

CREATE OR REPLACE VIEW _lock_rows AS SELECT * FROM _lock_rows_scan;

-- Pairing: per (run, pid) an end closes the most recent open begin with the same lock_addr, i.e. a LIFO
-- stack per (run, pid, lock_addr) in (ts, line_no) order (_lifo_pairs, 10_helpers.sql); nested spinlock
-- waits inside an rwsem slow path have another address. _lock_pairs() gives every row with its level (what
-- _lock_waits_unpaired counts); _lock_waits_from_events takes the same pairs from _lifo_matched (the pairs
-- only, 10_helpers.sql) over the same key and order.
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
-- Performance: the pairing reads narrow rows (no callchain) and keeps only the begins an end closes
-- (_lifo_matched, 10_helpers.sql: one window pass, none for keys without a begin before an end). The
-- callchains (the bulk of the bytes: decoding them costs more than all the rest) are read only for the runs
-- with a wait: without one, the semi-join on `waits` is empty and ends that scan at its first rows. The
-- locking-primitive prefixes are one list column of one row (a cross product, not a join condition) and
-- the first frame outside them is evaluated only for the begins that need it: the waits themselves, and the
-- READ begins on a lock address some wait has. What is left is mostly the decoding of `fields` (Parquet
-- decodes that MAP column whole wherever contention rows are spread: ~0.15 s for 1.7 M events).
CREATE OR REPLACE VIEW _lock_waits_from_events AS
WITH _lifo_in AS MATERIALIZED (
    SELECT {'run_id': run_id, 'pid': pid, 'lock_addr': lock_addr} AS k, ts_ns AS o1, line_no AS o2, d,
           {'ts_ns': ts_ns, 'ret': ret} AS v, CASE WHEN d = 1 THEN flags END AS flags
    FROM _lock_rows_scan
),
waits AS MATERIALIZED (
    SELECT k.run_id, k.pid, k.lock_addr, o1 AS ts_ns, o2 AS line_no, flags, nxt_v.ts_ns AS nxt_ts, nxt_v.ret AS nxt_ret
    FROM _lifo_matched()
),
read_begins AS (
    -- READ contention_begins on a lock address some wait has (what walker_locks below looks at)
    SELECT i.k.run_id AS run_id, i.o2 AS line_no, i.k.lock_addr AS lock_addr FROM _lifo_in i
    SEMI JOIN (SELECT DISTINCT run_id, lock_addr FROM waits) a ON a.run_id = i.k.run_id AND a.lock_addr = i.k.lock_addr
    WHERE i.d = 1 AND i.flags LIKE '%READ%'
),
primitives AS (SELECT list(prefix) AS prefixes FROM _lock_primitive_prefixes),
begins AS MATERIALIZED (
    -- the contention_begins of the runs with a wait: whether it has a callchain; for the waits' own begins
    -- their label, comm and callchain; for those and read_begins the first frame outside the locking
    -- primitives. A begin's callchain is its own (perf -g) or else its ftrace <stack trace> record's
    -- (_stacks), coalesce(e.callchain, s.callchain), written out in the CASE branches so that the lists
    -- are copied only for the rows that need them.
    SELECT e.run_id, e.line_no, w.line_no IS NOT NULL AS is_wait, r.lock_addr AS read_lock_addr,
           CASE WHEN e.callchain IS NOT NULL THEN len(e.callchain) > 0 ELSE coalesce(len(s.callchain) > 0, false)
           END AS has_callchain,
           CASE WHEN w.line_no IS NOT NULL OR r.line_no IS NOT NULL
                THEN _first_frame_outside(CASE WHEN e.callchain IS NOT NULL THEN e.callchain ELSE s.callchain END,
                                          pr.prefixes) END AS first_frame,
           CASE WHEN w.line_no IS NOT NULL THEN e.label END AS label,
           CASE WHEN w.line_no IS NOT NULL THEN e.comm END AS comm,
           CASE WHEN w.line_no IS NOT NULL THEN coalesce(e.callchain, s.callchain) END AS callchain
    FROM events e
    LEFT JOIN _stacks s ON s.run_id = e.run_id AND s.host_line = e.line_no AND s.pid = e.pid
    CROSS JOIN primitives pr
    -- (line_no: unique in a run)
    LEFT JOIN waits w ON w.run_id = e.run_id AND w.line_no = e.line_no
    LEFT JOIN read_begins r ON r.run_id = e.run_id AND r.line_no = e.line_no
    WHERE e.event = 'contention_begin' AND coalesce(e.system, 'lock') = 'lock'
      AND e.run_id IN (SELECT run_id FROM waits)
),
walker_locks AS (
    -- addresses a KSM walker itself blocked on (docs/walk-rules.md (f)). Choice: the READ contention whose
    -- first frame outside the locking primitives is rmap_walk_ksm (anon_vma_lock_read's slow path). A
    -- spinlock contended deeper inside a walk (a page-table lock in try_to_migrate_one, say) also has
    -- rmap_walk_ksm in its callchain but is not the anon_vma lock; counting it would credit its waiters
    -- to the rwsem.
    SELECT DISTINCT run_id, read_lock_addr AS lock_addr FROM begins WHERE first_frame = 'rmap_walk_ksm' AND read_lock_addr IS NOT NULL
), runs_with_callchains AS (
    SELECT DISTINCT run_id FROM begins WHERE has_callchain
)
SELECT p.run_id, c.label, p.pid::INTEGER AS pid, c.comm, p.lock_addr, p.flags,
       p.ts_ns AS start_ns, p.nxt_ts AS end_ns, (p.nxt_ts - p.ts_ns)::BIGINT AS wait_ns,
       CASE WHEN h.run_id IS NOT NULL THEN a.lock_addr IS NOT NULL END AS anon_vma_lock,
       p.nxt_ret AS ret, p.nxt_ret <> 0 AS interrupted,
       c.first_frame AS caller,
       c.callchain
FROM waits p
JOIN begins c ON c.is_wait AND c.run_id = p.run_id AND c.line_no = p.line_no
LEFT JOIN walker_locks a ON a.run_id = p.run_id AND a.lock_addr = p.lock_addr
LEFT JOIN runs_with_callchains h ON h.run_id = p.run_id;
