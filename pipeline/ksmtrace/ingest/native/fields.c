/* ksmtrace.ingest._c_fields: the key=value split of event payloads (ingest/fields.py's rules), in C.
 *
 * split(n, payload, event) takes two Arrow string columns as (offsets, data, validity, offset, large) tuples
 * (event may be None) and returns the Arrow buffers of a map<string, string> of n rows:
 *     (map_offsets int32[n+1], key_offsets int32, key_data, value_offsets int32, value_data, n_entries,
 *      unsure int32[] row numbers)
 * Rows it is not certain of get an empty map here and are listed in `unsure`: fields.py parses them with
 * its Python rules (so the maps are the same as the pure path's for every row). Unsure are:
 *  - rows of a per-event pattern with a non-ASCII byte (the regex classes \S and \d are Unicode there);
 *  - rows whose "name: k=v" prefix would hold a non-ASCII character (\s is Unicode in the prefix rule);
 *  - rows with a value that ends in a tab (before its trailing comma): rare, and left to the Python rules,
 *    whose template and generic paths end such a value the same way (tabs, one comma, tabs).
 * Everything else follows the generic rule exactly (byte-wise, which is exact on UTF-8: the rule only looks
 * at ASCII bytes), or the pattern of PATTERNS below, each written from the regex in PATTERN_REGEX (fields.py
 * checks that those are still its EVENT_PATTERNS and does not use this module otherwise).
 *
 * No global state; the GIL is released while splitting. Every index into the input is checked.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* ---------- input columns ---------- */

/* An Arrow string column: (offsets, data, validity or None, offset, kind) with kind 0 = string (int32
 * offsets), 1 = large_string (int64 offsets), 2 = string_view (offsets = the 16-byte views, data = a tuple of
 * the data buffers; polars' own layout, so no conversion). */
enum { K_STRING, K_LARGE, K_VIEW };

typedef struct {
    int kind, has_off, has_valid;
    Py_buffer off, valid;
    Py_buffer *bufs; /* kinds 0, 1: one (data); kind 2: the view data buffers */
    Py_ssize_t nbufs, nheld, offset;
} Col;

static void col_release(Col *c) {
    if (c->has_off) PyBuffer_Release(&c->off);
    if (c->has_valid) PyBuffer_Release(&c->valid);
    for (Py_ssize_t i = 0; i < c->nheld; i++) PyBuffer_Release(&c->bufs[i]);
    PyMem_Free(c->bufs);
    c->bufs = NULL;
    c->has_off = c->has_valid = 0;
    c->nheld = 0;
}

static int col_fail(Col *c, const char *msg) {
    col_release(c);
    if (msg) PyErr_SetString(PyExc_ValueError, msg);
    return -1;
}

static int col_get(PyObject *t, Py_ssize_t n, Col *c) {
    PyObject *o_off, *o_data, *o_valid;
    Py_ssize_t offset;
    int kind;
    memset(c, 0, sizeof(*c));
    if (!PyTuple_Check(t) || !PyArg_ParseTuple(t, "OOOni", &o_off, &o_data, &o_valid, &offset, &kind)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "column: (offsets, data, validity, offset, kind)");
        return -1;
    }
    if (offset < 0 || n < 0 || kind < K_STRING || kind > K_VIEW) return col_fail(c, "bad column offset or kind");
    c->offset = offset;
    c->kind = kind;
    if (PyObject_GetBuffer(o_off, &c->off, PyBUF_SIMPLE) < 0) return -1;
    c->has_off = 1;
    if (kind == K_VIEW) {
        if (!PyTuple_Check(o_data)) {
            col_release(c);
            PyErr_SetString(PyExc_TypeError, "string_view data: a tuple of buffers");
            return -1;
        }
        c->nbufs = PyTuple_GET_SIZE(o_data);
    } else {
        c->nbufs = 1;
    }
    c->bufs = PyMem_Calloc(c->nbufs ? (size_t)c->nbufs : 1, sizeof(Py_buffer));
    if (!c->bufs) { col_release(c); PyErr_NoMemory(); return -1; }
    for (Py_ssize_t i = 0; i < c->nbufs; i++) {
        PyObject *o = kind == K_VIEW ? PyTuple_GET_ITEM(o_data, i) : o_data;
        if (PyObject_GetBuffer(o, &c->bufs[i], PyBUF_SIMPLE) < 0) return col_fail(c, NULL);
        c->nheld++;
    }
    if (o_valid != Py_None) {
        if (PyObject_GetBuffer(o_valid, &c->valid, PyBUF_SIMPLE) < 0) return col_fail(c, NULL);
        c->has_valid = 1;
        if (c->valid.len < (offset + n + 7) / 8) return col_fail(c, "validity buffer too short");
    }
    if (kind == K_VIEW ? c->off.len / 16 < offset + n : c->off.len / (kind == K_LARGE ? 8 : 4) < offset + n + 1)
        return col_fail(c, "offsets buffer too short");
    return 0;
}

static inline int64_t col_off(const Col *c, Py_ssize_t i) {
    if (c->kind == K_LARGE) { int64_t v; memcpy(&v, (const char *)c->off.buf + 8 * (c->offset + i), 8); return v; }
    int32_t v; memcpy(&v, (const char *)c->off.buf + 4 * (c->offset + i), 4); return v;
}

static inline int col_is_valid(const Col *c, Py_ssize_t i) {
    if (!c->has_valid) return 1;
    Py_ssize_t b = c->offset + i;
    return (((const unsigned char *)c->valid.buf)[b >> 3] >> (b & 7)) & 1;
}

/* length of row i as its offsets or view say (before any check) */
static inline int64_t col_len(const Col *c, Py_ssize_t i) {
    if (c->kind == K_VIEW) { int32_t l; memcpy(&l, (const char *)c->off.buf + 16 * (c->offset + i), 4); return l; }
    return col_off(c, i + 1) - col_off(c, i);
}

/* row i as (pointer, length); 0 if NULL; -1 if its offsets or view are out of range */
static inline int col_row(const Col *c, Py_ssize_t i, const unsigned char **p, Py_ssize_t *len) {
    if (c->kind == K_VIEW) {
        const unsigned char *v = (const unsigned char *)c->off.buf + 16 * (c->offset + i);
        int32_t l, idx, off;
        if (!col_is_valid(c, i)) return 0; /* a NULL slot's view may hold anything */
        memcpy(&l, v, 4);
        if (l < 0) return -1;
        if (l <= 12) {
            *p = v + 4;
        } else {
            memcpy(&idx, v + 8, 4);
            memcpy(&off, v + 12, 4);
            if (idx < 0 || idx >= c->nbufs || off < 0 || (int64_t)off + l > (int64_t)c->bufs[idx].len) return -1;
            *p = (const unsigned char *)c->bufs[idx].buf + off;
        }
        *len = l;
        return 1;
    }
    int64_t a = col_off(c, i), b = col_off(c, i + 1);
    if (a < 0 || b < a || b > (int64_t)c->bufs[0].len) return -1;
    if (!col_is_valid(c, i)) return 0;
    *p = (const unsigned char *)c->bufs[0].buf + a;
    *len = (Py_ssize_t)(b - a);
    return 1;
}

/* ---------- output ---------- */

typedef struct {
    int32_t *moff, *koff, *voff;
    unsigned char *kdat, *vdat;
    Py_ssize_t ne, ne_cap, nk, nk_cap, nv, nv_cap;
    int32_t *unsure;
    Py_ssize_t nu;
} Out;

/* row-local state: a row's entries can be rolled back (unsure rows, failed patterns) */
typedef struct { Py_ssize_t ne, nk, nv; } Mark;

static inline Mark mark(const Out *o) { Mark m = {o->ne, o->nk, o->nv}; return m; }
static inline void rollback(Out *o, Mark m) { o->ne = m.ne; o->nk = m.nk; o->nv = m.nv; }

/* short copies (most keys and values) without a libc call */
static inline void copy(unsigned char *d, const unsigned char *s, Py_ssize_t len) {
    if (len > 24) { memcpy(d, s, (size_t)len); return; }
    for (Py_ssize_t i = 0; i < len; i++) d[i] = s[i];
}

/* Room one row may need, whatever it holds (len = its length in bytes): a generic row has at most a prefix
 * and one entry per 3 bytes ("k=" and a space), keys and values from disjoint bytes of the row (+ "prefix");
 * a pattern row at most 5 entries, keys of at most 40 bytes in all, values from the row (+ "false"). The
 * writers below do not check: the row loop checks ROOM_* before each row (the totals allocated are the sum
 * of these over all rows, so it never fails unless this reasoning is wrong, and then it is an error). */
#define ROOM_E(len) ((len) / 2 + 8)
#define ROOM_K(len) ((len) + 48)
#define ROOM_V(len) ((len) + 8)

static inline void put_key(Out *o, const unsigned char *s, Py_ssize_t len) {
    copy(o->kdat + o->nk, s, len);
    o->nk += len;
    o->ne++;
    o->koff[o->ne] = (int32_t)o->nk;
}

static inline void put_val(Out *o, const unsigned char *s, Py_ssize_t len) {
    copy(o->vdat + o->nv, s, len);
    o->nv += len;
}

static inline void end_val(Out *o) { o->voff[o->ne] = (int32_t)o->nv; }

static inline void put_kv(Out *o, const char *k, Py_ssize_t klen, const unsigned char *v, Py_ssize_t vlen) {
    put_key(o, (const unsigned char *)k, klen);
    put_val(o, v, vlen);
    end_val(o);
}

/* ---------- character classes (ASCII; the callers make sure of that where it matters) ---------- */

static inline int is_key0(unsigned char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
static inline int is_key1(unsigned char c) { return is_key0(c) || (c >= '0' && c <= '9') || c == '.'; }
/* Unicode White_Space restricted to ASCII: \t \n \v \f \r and space */
static inline int is_ws(unsigned char c) { return c == ' ' || (c >= 0x09 && c <= 0x0d); }

/* length of "KEY" if p[0..len) starts with KEY= (KEY = [A-Za-z_][A-Za-z0-9_.]*), else -1 */
static inline Py_ssize_t key_len(const unsigned char *p, Py_ssize_t len) {
    if (len < 2 || !is_key0(p[0])) return -1;
    Py_ssize_t i = 1;
    while (i < len && is_key1(p[i])) i++;
    return (i < len && p[i] == '=') ? i : -1;
}

/* ---------- generic rule ---------- */

/* Close the open value: strip trailing spaces/tabs, one ',', trailing spaces/tabs. Returns 1 if the value
 * ends in a tab before its comma (unsure, see the top), else 0. */
static inline int close_val(Out *o, Py_ssize_t vstart) {
    Py_ssize_t e = o->nv;
    int unsure = 0;
    if (e > vstart && (o->vdat[e - 1] == '\t' || (o->vdat[e - 1] == ',' && e - 1 > vstart && o->vdat[e - 2] == '\t')))
        unsure = 1;
    while (e > vstart && (o->vdat[e - 1] == ' ' || o->vdat[e - 1] == '\t')) e--;
    if (e > vstart && o->vdat[e - 1] == ',') e--;
    while (e > vstart && (o->vdat[e - 1] == ' ' || o->vdat[e - 1] == '\t')) e--;
    o->nv = e;
    end_val(o);
    return unsure;
}

/* "name: k=v" prefix: ^([^\s=:]+): +KEY=  ->  length of name, 0 if none, -1 if unsure (non-ASCII name) */
static Py_ssize_t prefix_len(const unsigned char *p, Py_ssize_t len) {
    Py_ssize_t i = 0;
    int wide = 0;
    while (i < len && !is_ws(p[i]) && p[i] != '=' && p[i] != ':') { wide |= p[i] >= 0x80; i++; }
    if (i == 0 || i >= len || p[i] != ':') return 0;
    Py_ssize_t j = i + 1;
    if (j >= len || p[j] != ' ') return 0;
    while (j < len && p[j] == ' ') j++;
    if (key_len(p + j, len - j) < 0) return 0;
    return wide ? -1 : i;
}

/* One pass over the row: a token is "==>" (dropped), KEY=... (opens a field), or anything else, which continues
 * the open field's value (" " + token) or, before the first key, is not part of a field. The caller has made
 * sure the output has room for the row (ROW_ROOM). Returns 0 done, 1 unsure. */
static int generic_row(Out *o, const unsigned char *p, Py_ssize_t len) {
    if (len == 0) return 0; /* one empty token: not a key */
    Py_ssize_t pl = prefix_len(p, len);
    if (pl < 0) return 1;
    if (pl > 0) put_kv(o, "prefix", 6, p, pl);
    int open = 0, unsure = 0;
    Py_ssize_t vstart = 0, a = 0, b;
    unsigned char *vd = o->vdat;
    for (;;) {
        if (len - a >= 3 && p[a] == '=' && p[a + 1] == '=' && p[a + 2] == '>' && (len - a == 3 || p[a + 3] == ' ')) {
            b = a + 3;
        } else {
            Py_ssize_t i = a;
            if (i < len && is_key0(p[i]))
                for (i++; i < len && is_key1(p[i]); i++)
                    ;
            if (i > a && i < len && p[i] == '=') {
                if (open) unsure |= close_val(o, vstart);
                put_key(o, p + a, i - a);
                Py_ssize_t v = vstart = o->nv;
                for (b = i + 1; b < len && p[b] != ' '; b++) vd[v++] = p[b];
                o->nv = v;
                open = 1;
            } else if (open) {
                Py_ssize_t v = o->nv;
                vd[v++] = ' ';
                for (b = a; b < len && p[b] != ' '; b++) vd[v++] = p[b];
                o->nv = v;
            } else {
                for (b = i; b < len && p[b] != ' '; b++)
                    ;
            }
        }
        if (b >= len) break;
        a = b + 1;
    }
    if (open) unsure |= close_val(o, vstart);
    return unsure;
}

/* ---------- per-event patterns ---------- */

enum { OP_END, OP_LIT, OP_NONWS, OP_DIG, OP_SDIG, OP_NOTPAREN, OP_OPTFLAG };
typedef struct { int op; const char *s; Py_ssize_t len; } Op; /* OP_LIT: literal; captures, OP_OPTFLAG: key */

typedef struct { const char *event; Py_ssize_t elen; const char *regex; Op ops[16]; } Pattern;

#define L(s) {OP_LIT, s, sizeof(s) - 1}
#define K(op, s) {op, s, sizeof(s) - 1}
#define E(s) s, sizeof(s) - 1
static const Pattern PATTERNS[] = {
    {E("contention_begin"), "^(?P<lock_addr>\\S+) \\(flags=(?P<flags>[^)]*)\\)",
     {K(OP_NONWS, "lock_addr"), L(" (flags="), K(OP_NOTPAREN, "flags"), L(")"), {OP_END, 0, 0}}},
    {E("contention_end"), "^(?P<lock_addr>\\S+) \\(ret=(?P<ret>-?\\d+)\\)",
     {K(OP_NONWS, "lock_addr"), L(" (ret="), K(OP_SDIG, "ret"), L(")"), {OP_END, 0, 0}}},
    {E("ksm_start_scan"), "^seq (?P<seq>-?\\d+) rmap size (?P<rmap_size>-?\\d+)",
     {L("seq "), K(OP_SDIG, "seq"), L(" rmap size "), K(OP_SDIG, "rmap_size"), {OP_END, 0, 0}}},
    {E("ksm_stop_scan"), "^seq (?P<seq>-?\\d+) rmap size (?P<rmap_size>-?\\d+)",
     {L("seq "), K(OP_SDIG, "seq"), L(" rmap size "), K(OP_SDIG, "rmap_size"), {OP_END, 0, 0}}},
    {E("ksm_enter"), "^mm (?P<mm>\\S+)", {L("mm "), K(OP_NONWS, "mm"), {OP_END, 0, 0}}},
    {E("ksm_exit"), "^mm (?P<mm>\\S+)", {L("mm "), K(OP_NONWS, "mm"), {OP_END, 0, 0}}},
    {E("ksm_merge_one_page"),
     "^(?P<ksm_page>ksm )?pfn (?P<pfn>\\d+) rmap_item (?P<rmap_item>\\S+) mm (?P<mm>\\S+) error (?P<error>-?\\d+)",
     {K(OP_OPTFLAG, "ksm_page"), L("pfn "), K(OP_DIG, "pfn"), L(" rmap_item "), K(OP_NONWS, "rmap_item"), L(" mm "),
      K(OP_NONWS, "mm"), L(" error "), K(OP_SDIG, "error"), {OP_END, 0, 0}}},
    {E("ksm_merge_with_ksm_page"),
     "^(?P<ksm_page>ksm )?pfn (?P<pfn>\\d+) rmap_item (?P<rmap_item>\\S+) mm (?P<mm>\\S+) error (?P<error>-?\\d+)",
     {K(OP_OPTFLAG, "ksm_page"), L("pfn "), K(OP_DIG, "pfn"), L(" rmap_item "), K(OP_NONWS, "rmap_item"), L(" mm "),
      K(OP_NONWS, "mm"), L(" error "), K(OP_SDIG, "error"), {OP_END, 0, 0}}},
    {E("ksm_remove_ksm_page"), "^pfn (?P<pfn>\\d+)", {L("pfn "), K(OP_DIG, "pfn"), {OP_END, 0, 0}}},
    {E("ksm_remove_rmap_item"), "^pfn (?P<pfn>\\d+) rmap_item (?P<rmap_item>\\S+) mm (?P<mm>\\S+)",
     {L("pfn "), K(OP_DIG, "pfn"), L(" rmap_item "), K(OP_NONWS, "rmap_item"), L(" mm "), K(OP_NONWS, "mm"),
      {OP_END, 0, 0}}},
    {E("ksm_advisor"),
     "^ksm scan time (?P<scan_time>-?\\d+) pages_to_scan (?P<pages_to_scan>\\d+) cpu percent (?P<cpu_percent>\\d+)",
     {L("ksm scan time "), K(OP_SDIG, "scan_time"), L(" pages_to_scan "), K(OP_DIG, "pages_to_scan"),
      L(" cpu percent "), K(OP_DIG, "cpu_percent"), {OP_END, 0, 0}}},
    {E("sys_enter"), "^NR (?P<nr>-?\\d+) \\((?P<args>[^)]*)\\)",
     {L("NR "), K(OP_SDIG, "nr"), L(" ("), K(OP_NOTPAREN, "args"), L(")"), {OP_END, 0, 0}}},
    {E("sys_exit"), "^NR (?P<nr>-?\\d+) = (?P<ret>-?\\d+)",
     {L("NR "), K(OP_SDIG, "nr"), L(" = "), K(OP_SDIG, "ret"), {OP_END, 0, 0}}},
};
#undef L
#undef K
#undef E
#define NPATTERNS ((int)(sizeof(PATTERNS) / sizeof(PATTERNS[0])))

/* index of the pattern of this event name, or -1 */
static int pattern_of(const unsigned char *e, Py_ssize_t len) {
    for (int i = 0; i < NPATTERNS; i++)
        if (PATTERNS[i].elen == len && PATTERNS[i].event[0] == e[0] && memcmp(PATTERNS[i].event, e, (size_t)len) == 0)
            return i;
    return -1;
}

/* Every regex here is anchored at the start and deterministic: each \S+ / \d+ run is greedy and followed by
 * a literal its class cannot match (so backtracking never finds another match), and the optional "ksm "
 * is followed by "pfn ", which "ksm " does not start. So one left-to-right pass gives the regex's groups.
 * Returns 0 done (the entries, or none if it does not match), 1 unsure. */
static int pattern_row(Out *o, int pi, const unsigned char *p, Py_ssize_t len) {
    if (len == 0) return 0; /* every pattern starts with a literal or \S+ */
    for (Py_ssize_t i = 0; i < len; i++)
        if (p[i] >= 0x80) return 1;
    Mark m = mark(o);
    const Op *op = PATTERNS[pi].ops;
    Py_ssize_t i = 0;
    for (; op->op != OP_END; op++) {
        Py_ssize_t s = i;
        switch (op->op) {
        case OP_LIT:
            if (len - i < op->len || memcmp(p + i, op->s, (size_t)op->len) != 0) goto nomatch;
            i += op->len;
            continue;
        case OP_OPTFLAG: {
            int has = len - i >= 4 && memcmp(p + i, "ksm ", 4) == 0;
            if (has) i += 4;
            put_kv(o, op->s, op->len, (const unsigned char *)(has ? "true" : "false"), has ? 4 : 5);
            continue;
        }
        case OP_NONWS:
            while (i < len && !is_ws(p[i])) i++;
            if (i == s) goto nomatch;
            break;
        case OP_SDIG:
            if (i < len && p[i] == '-') i++;
            /* fall through */
        case OP_DIG: {
            Py_ssize_t d = i;
            while (i < len && p[i] >= '0' && p[i] <= '9') i++;
            if (i == d) goto nomatch;
            break;
        }
        case OP_NOTPAREN:
            while (i < len && p[i] != ')') i++;
            break;
        default:
            goto nomatch;
        }
        put_kv(o, op->s, op->len, p + s, i - s);
    }
    return 0;
nomatch:
    rollback(o, m);
    return 0;
}

/* ---------- entry point ---------- */

static PyObject *new_bytes(Py_ssize_t n) { return PyBytes_FromStringAndSize(NULL, n); }

static PyObject *fields_split(PyObject *self, PyObject *args) {
    Py_ssize_t n;
    PyObject *pt, *et;
    if (!PyArg_ParseTuple(args, "nOO", &n, &pt, &et)) return NULL;
    if (n < 0 || n >= INT32_MAX) { PyErr_SetString(PyExc_ValueError, "bad row count"); return NULL; }
    Col pc, ec;
    int has_ev = et != Py_None;
    if (col_get(pt, n, &pc) < 0) return NULL;
    if (has_ev && col_get(et, n, &ec) < 0) { col_release(&pc); return NULL; }

    PyObject *b_moff = NULL, *b_koff = NULL, *b_kdat = NULL, *b_voff = NULL, *b_vdat = NULL, *b_uns = NULL;
    PyObject *res = NULL;
    /* bytes of all rows (NULL rows included: a bound), each row's length checked again when it is read */
    int64_t total = 0;
    if (pc.kind == K_VIEW) {
        for (Py_ssize_t r = 0; r < n && total >= 0; r++) {
            if (!col_is_valid(&pc, r)) continue;
            int64_t l = col_len(&pc, r);
            total = l < 0 ? -1 : total + l;
        }
    } else {
        int64_t first = col_off(&pc, 0), last = col_off(&pc, n);
        total = (first < 0 || last < first || last > (int64_t)pc.bufs[0].len) ? -1 : last - first;
    }
    if (total < 0) {
        PyErr_SetString(PyExc_ValueError, "payload offsets out of range");
        goto done;
    }
    /* capacities: the sum of ROOM_* over the rows */
    int64_t ne_cap = ROOM_E(total) + 8 * (int64_t)n, nk_cap = ROOM_K(total) + 48 * (int64_t)n,
            nv_cap = ROOM_V(total) + 8 * (int64_t)n;
    if (ne_cap >= INT32_MAX / 4 || nk_cap >= INT32_MAX || nv_cap >= INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "chunk too large for int32 offsets");
        goto done;
    }
    b_moff = new_bytes(4 * (n + 1));
    b_koff = new_bytes(4 * (ne_cap + 1));
    b_voff = new_bytes(4 * (ne_cap + 1));
    b_kdat = new_bytes(nk_cap);
    b_vdat = new_bytes(nv_cap);
    b_uns = new_bytes(4 * n + 4);
    if (!b_moff || !b_koff || !b_voff || !b_kdat || !b_vdat || !b_uns) goto done;
    Out o = {
        (int32_t *)PyBytes_AS_STRING(b_moff), (int32_t *)PyBytes_AS_STRING(b_koff),
        (int32_t *)PyBytes_AS_STRING(b_voff), (unsigned char *)PyBytes_AS_STRING(b_kdat),
        (unsigned char *)PyBytes_AS_STRING(b_vdat), 0, (Py_ssize_t)ne_cap, 0, (Py_ssize_t)nk_cap, 0,
        (Py_ssize_t)nv_cap, (int32_t *)PyBytes_AS_STRING(b_uns), 0,
    };
    int bad = 0, prev_pi = -1;
    const unsigned char *prev_e = NULL;
    Py_ssize_t prev_len = -1;
    Py_BEGIN_ALLOW_THREADS
    o.moff[0] = 0;
    o.koff[0] = 0;
    o.voff[0] = 0;
    for (Py_ssize_t r = 0; r < n && !bad; r++) {
        const unsigned char *p = NULL;
        Py_ssize_t len = 0;
        int st = col_row(&pc, r, &p, &len);
        if (st < 0) { bad = 1; break; }
        if (st > 0) {
            int pi = -1;
            if (has_ev) {
                const unsigned char *e = NULL;
                Py_ssize_t el = 0;
                int es = col_row(&ec, r, &e, &el);
                if (es < 0) { bad = 1; break; }
                if (es > 0) {
                    /* events come in runs: reuse the previous row's answer for the same name */
                    if (!(el == prev_len && (el == 0 || memcmp(e, prev_e, (size_t)el) == 0))) {
                        prev_pi = pattern_of(e, el);
                        prev_e = e;
                        prev_len = el;
                    }
                    pi = prev_pi;
                }
            }
            if (o.ne_cap - o.ne < ROOM_E(len) || o.nk_cap - o.nk < ROOM_K(len) || o.nv_cap - o.nv < ROOM_V(len)) {
                bad = 2;
                break;
            }
            Mark m = mark(&o);
            int rc = pi >= 0 ? pattern_row(&o, pi, p, len) : generic_row(&o, p, len);
            if (rc > 0) {
                rollback(&o, m);
                o.unsure[o.nu++] = (int32_t)r;
            }
        }
        o.moff[r + 1] = (int32_t)o.ne;
    }
    Py_END_ALLOW_THREADS
    if (bad) {
        PyErr_SetString(bad == 1 ? PyExc_ValueError : PyExc_OverflowError,
                        bad == 1 ? "string offsets out of range" : "output capacity exceeded");
        goto done;
    }
    if (_PyBytes_Resize(&b_koff, 4 * (o.ne + 1)) < 0 || _PyBytes_Resize(&b_voff, 4 * (o.ne + 1)) < 0 ||
        _PyBytes_Resize(&b_kdat, o.nk) < 0 || _PyBytes_Resize(&b_vdat, o.nv) < 0 ||
        _PyBytes_Resize(&b_uns, 4 * o.nu) < 0)
        goto done;
    res = Py_BuildValue("(OOOOOnO)", b_moff, b_koff, b_kdat, b_voff, b_vdat, o.ne, b_uns);
done:
    Py_XDECREF(b_moff);
    Py_XDECREF(b_koff);
    Py_XDECREF(b_kdat);
    Py_XDECREF(b_voff);
    Py_XDECREF(b_vdat);
    Py_XDECREF(b_uns);
    col_release(&pc);
    if (has_ev) col_release(&ec);
    return res;
}

static PyMethodDef methods[] = {
    {"split", fields_split, METH_VARARGS,
     "split(n, payload, event) -> (map_offsets, key_offsets, key_data, value_offsets, value_data, n_entries, "
     "unsure_rows); payload/event: (offsets, data, validity or None, offset, large) of an Arrow string column"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_c_fields", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__c_fields(void) {
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    PyObject *d = PyDict_New();
    if (!d) { Py_DECREF(m); return NULL; }
    for (int i = 0; i < NPATTERNS; i++) {
        PyObject *v = PyUnicode_FromString(PATTERNS[i].regex);
        if (!v || PyDict_SetItemString(d, PATTERNS[i].event, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(d);
            Py_DECREF(m);
            return NULL;
        }
        Py_DECREF(v);
    }
    if (PyModule_AddObject(m, "PATTERN_REGEX", d) < 0) { Py_DECREF(d); Py_DECREF(m); return NULL; }
    return m;
}
