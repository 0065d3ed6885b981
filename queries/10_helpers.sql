-- ksmtrace walk reconstruction: the named types and the shared algorithms every evidence kind uses,
-- each written once here (rules: docs/walk-rules.md).

-- named codes of the scan (11_scan.sql): which evidence kind an events row is for, what role its function
-- plays in a walk, and what kind of record it is. ENUMs keep the rows as narrow as integer codes did.
CREATE OR REPLACE TYPE _ev_kind AS ENUM (
    'funcgraph',   -- function_graph entry / leaf / exit rows (b)
    'probe',       -- kprobe / kretprobe / fprobe entry and return rows (c)
    'tracepoint',  -- rmap tracepoints rmap_walk_start / rmap_walk_end / rmap_walk (a)
    'callchain',   -- events whose callchain holds a walker frame (d)
    'breaker',     -- events that end a perf-callchain walk: mm_migrate_pages(_start), mm_compaction_* (d)
    'counter',     -- counter lines (fields hold_ns / Time_ms / iterations / Nr_iteration_total) (e)
    'summary',     -- ksm_walk summary lines (field walk_ns) (e)
    'stack',       -- ftrace <stack trace> records (event kernel_stack), attached to the event before them
    'lost'         -- __lost_events markers
);
CREATE OR REPLACE TYPE _fn_role AS ENUM (
    'other', 'trylock', 'down_read', 'up_read', 'iterator', 'rmap_one', 'invalid_vma', 'walker'
);
CREATE OR REPLACE TYPE _rec_kind AS ENUM ('entry', 'leaf', 'exit', 'return');

-- aggregate: the sum of a per-window counter over a group of counter lines, or NULL unless every line
-- carries that counter (a sum over some of the windows would pass for the walk's total)
CREATE OR REPLACE MACRO _sum_if_all(x) AS CASE WHEN count(x) = count(*) THEN sum(x)::BIGINT END;

-- a printed return value is zero: '0', '0x0', '0x0000', '-0' (docs/walk-rules.md (b): `0x0`, `0` are zero)
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

-- Callers from callchains (innermost frame first). Walks (a), (d): the first frame outward from the first
-- frame whose sym is in `walkers`, skipping frames whose sym is in `skip`; NULL when no walker frame.
CREATE OR REPLACE MACRO _caller_after(cc, walkers, skip) AS
    CASE WHEN list_position(list_transform(cc, lambda f: list_contains(walkers, f.sym)), true) IS NULL THEN NULL
         ELSE list_filter(
                  list_slice(cc, list_position(list_transform(cc, lambda f: list_contains(walkers, f.sym)), true) + 1,
                             len(cc)),
                  lambda f: NOT list_contains(skip, f.sym))[1].sym
    END;

-- Lock waits (f): the first frame whose sym starts with none of `prefixes` (the locking primitives)
CREATE OR REPLACE MACRO _first_frame_outside(cc, prefixes) AS
    list_filter(cc, lambda f: NOT list_bool_or(list_transform(prefixes, lambda x: starts_with(f.sym, x))))[1].sym;

-- the walker symbol first found in a callchain (innermost first), NULL when none
CREATE OR REPLACE MACRO _walker_frame(cc, walkers) AS
    list_filter(cc, lambda f: list_contains(walkers, f.sym))[1].sym;

-- the fields map with lower-case keys (Time_ms = time_ms); rebuilt only when a key has an upper-case letter
CREATE OR REPLACE MACRO _lower_keys(fields) AS
    CASE WHEN list_bool_or(list_transform(map_keys(fields), lambda k: k <> lower(k)))
         THEN map_from_entries(list_transform(map_entries(fields), lambda e: {'key': lower(e.key), 'value': e.value}))
         ELSE fields END;

-- An ftrace `<stack trace>` record (the parser makes it a row of its own, event kernel_stack, carrying the
-- frames as callchain) belongs to the event printed on the line right before it, of the same task: join
-- ON stack.run = host.run AND _stack_host_line(stack.line_no) = host.line_no AND stack.pid = host.pid.
CREATE OR REPLACE MACRO _stack_host_line(stack_line_no) AS stack_line_no - 1;

-- LIFO pairing of begin (+1) and end (-1) rows, one stack per key, without joins. Input: the relation
-- `_lifo_in` (a CTE of the caller; the empty view below stands in) with columns
--   k   the stack key (any type; a STRUCT for several columns), o1, o2  the order within a key,
--   d   +1 begin, -1 end,   v   what the caller wants from the paired row (any type).
-- Stack depth after each row S = P - min(0, running min of P), P = running sum of d (a stack that never
-- goes below empty: an end on an empty stack is unmatched and changes nothing). A begin sits at level S;
-- a matched end (depth before it > 0) pops level S_before. At one level, pushes and pops alternate, so a
-- begin pairs with the next row at its level iff that row is an end.
-- Output: the input columns, plus `level` (NULL for an unmatched end), `nxt_d` / `nxt_v` (d and v of the
-- next row at the same level: the paired end of a begin when nxt_d = -1) and `prv_d`.
CREATE OR REPLACE VIEW _lifo_in AS
SELECT NULL::INTEGER AS k, NULL::BIGINT AS o1, NULL::BIGINT AS o2, NULL::INTEGER AS d, NULL::INTEGER AS v
WHERE false;

CREATE OR REPLACE MACRO _lifo_pairs() AS TABLE
WITH running_sum AS (
    SELECT *, sum(d) OVER by_key AS psum
    FROM _lifo_in WINDOW by_key AS (PARTITION BY k ORDER BY o1, o2 ROWS UNBOUNDED PRECEDING)
), depth AS (
    SELECT *, psum - least(0, min(psum) OVER by_key) AS depth_after
    FROM running_sum WINDOW by_key AS (PARTITION BY k ORDER BY o1, o2 ROWS UNBOUNDED PRECEDING)
), levelled AS (
    SELECT * EXCLUDE (psum, depth_after),
           CASE WHEN d = 1 THEN depth_after
                WHEN lag(depth_after, 1, 0) OVER by_key > 0 THEN lag(depth_after, 1, 0) OVER by_key END AS level
    FROM depth WINDOW by_key AS (PARTITION BY k ORDER BY o1, o2)
)
SELECT *, lead(d) OVER same_level AS nxt_d, lead(v) OVER same_level AS nxt_v, lag(d) OVER same_level AS prv_d
FROM levelled
WINDOW same_level AS (PARTITION BY k, level ORDER BY o1, o2);

-- LIFO pairing, matched pairs only: the begins an end closes, each with the columns of `_lifo_in` plus
-- `nxt_v` (v of its end); the same pairs as `_lifo_pairs() WHERE d = 1 AND nxt_d = -1`. Two reductions
-- that keep every other pair as it is come first, so that the stack levels of _lifo_pairs are computed for
-- few rows or none: (1) per key, the ends before its first begin (on an empty stack: unmatched) and the
-- begins after its last end (never closed) are dropped; (2) a begin whose next row of the key is an end
-- pairs with it (the top of the stack), and taking such adjacent pairs out (as "()" out of a bracket
-- string) leaves the pairing of the rest unchanged; _lifo_pairs pairs the rest. (o1, o2) is unique within a
-- key, as in every caller (a line number in it): the order of tied rows, and so their pairing, is undefined.
-- Performance: the key is hashed once (GROUP BY k, which also numbers the keys): the window then sorts on
-- that BIGINT, not on k (a STRUCT of text, twice as slow); one window pass where _lifo_pairs takes four.
CREATE OR REPLACE MACRO _lifo_matched() AS TABLE
WITH _lifo_keys AS (
    SELECT k, row_number() OVER () AS _kn,
           min({'o1': o1, 'o2': o2}) FILTER (WHERE d = 1) AS _first_b,
           max({'o1': o1, 'o2': o2}) FILTER (WHERE d = -1) AS _last_e
    FROM _lifo_in GROUP BY k HAVING _first_b < _last_e
), _lifo_cand AS (
    -- (struct comparison orders as the windows do: field by field, NULLs last)
    SELECT i.*, c._kn FROM _lifo_in i JOIN _lifo_keys c ON c.k = i.k
    WHERE CASE WHEN i.d = 1 THEN {'o1': i.o1, 'o2': i.o2} < c._last_e ELSE {'o1': i.o1, 'o2': i.o2} > c._first_b END
), _lifo_adj AS MATERIALIZED (
    SELECT *, lead(d) OVER w AS _nxt_d, lead(v) OVER w AS _nxt_v, lag(d) OVER w AS _prv_d
    FROM _lifo_cand WINDOW w AS (PARTITION BY _kn ORDER BY o1, o2)
), _lifo_rest AS (
    SELECT * EXCLUDE (_nxt_d, _nxt_v, _prv_d) RENAME (k AS _k, _kn AS k) FROM _lifo_adj
    WHERE NOT (d = 1 AND _nxt_d IS NOT DISTINCT FROM -1) AND NOT (d = -1 AND _prv_d IS NOT DISTINCT FROM 1)
)
SELECT * EXCLUDE (_kn, _nxt_d, _prv_d) RENAME (_nxt_v AS nxt_v) FROM _lifo_adj WHERE d = 1 AND _nxt_d = -1
UNION ALL BY NAME
SELECT * EXCLUDE (k, level, nxt_d, prv_d) RENAME (_k AS k)
FROM (WITH _lifo_in AS (SELECT * FROM _lifo_rest) SELECT * FROM _lifo_pairs())
WHERE d = 1 AND nxt_d = -1;
