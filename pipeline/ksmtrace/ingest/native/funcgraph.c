/* ksmtrace.ingest._c_funcgraph: the common lines of function_graph text, and the per-task depth walk.

   parse(data, first_line_no) -> (rows, n_rows, n_abs, rest, nos)
       Splits a chunk (bytes, whole lines) and takes every line it is sure of: printable ASCII, an optional
       abstime column, the CPU column, an optional proc column, optional latency flags, the duration column
       (with or without a duration) and one of the three common texts ``f();``, ``f() {`` and ``}``. Every
       group is read the way ksmtrace.ingest.funcgraph.GRAPH_RE reads it (each optional group is taken where
       it matches, in order). A line whose numbers would not fit the schema, a REL TIME or irq-marker column,
       or anything else goes back to Python: ``rest`` holds the other lines, verbatim, and one empty line in
       place of each run of taken lines; ``nos`` (int64) the line number of each line of ``rest`` (-1 for those
       empty ones); ``rows`` an opaque handle for walk(), ``n_abs`` how many taken lines have an abstime.

   new_state() -> state: the per-task open-call stacks and the CPU -> task map of the task-change banners,
       carried across chunks (what ksmtrace.ingest.funcgraph._DepthState.run keeps).
   walk(state, rows | None, lines, kinds, funcs, cpus, pids, inds) -> (columns | None, (depth, func, pid, comm,
       unmatched))
       Runs the depth rule of _DepthState.run over the taken rows and the rows Python parsed (given as lists,
       kinds 0 tracer header reset, 1 task switch (funcs: the task's comm, pids: its pid or None), 2 entry,
       3 exit, 4 any other graph row), merged in line order. Returns the taken rows' final columns as Arrow
       buffers and, for the Python rows, the lists _DepthState.run returns.
   n_unmatched(state) -> int: exits that found an empty stack so far.

   Pure C11 and the CPython C API; the GIL is released while a chunk is read and while the rows are walked;
   no global state. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define INT64_MAX_ ((int64_t)0x7fffffffffffffffLL)
#define MAX_SEC (INT64_MAX_ / 1000000000LL)
#define MAX_SEC_FRAC (INT64_MAX_ - MAX_SEC * 1000000000LL)

/* ------------------------------------------------------------------ growable byte buffer */

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} buf_t;

static int buf_grow(buf_t *b, size_t add) {
    if (b->oom)
        return -1;
    if (b->n + add <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + add) {
        if (cap > SIZE_MAX / 2) {
            b->oom = 1;
            return -1;
        }
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static void buf_put(buf_t *b, const void *s, size_t n) {
    if (n == 0 || buf_grow(b, n))
        return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void buf_free(buf_t *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

static PyObject *bytes_of(const buf_t *b) { return PyBytes_FromStringAndSize(b->p ? b->p : "", (Py_ssize_t)b->n); }

/* ------------------------------------------------------------------ one line */

enum { K_LEAF = 1, K_ENTRY = 2, K_EXIT = 3 };

typedef struct {
    int64_t line_no, ts, dur;
    Py_ssize_t comm_off, flags_off, func_off, ret_off, par_off;
    int32_t cpu, pid, ind;
    int32_t comm_len, flags_len, func_len, ret_len, par_len;
    uint8_t kind, has_ts, has_pid, has_dur, has_flags, has_func, has_ret, has_par;
} row_t;

static inline int is_digit(char c) { return c >= '0' && c <= '9'; }
static inline int is_flag_char(char c) {
    return c == '.' || is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}
static inline int is_mark(char c) {
    return c == '+' || c == '!' || c == '#' || c == '*' || c == '@' || c == '$';
}
/* [^\s(){};/] of a printable ASCII byte */
static inline int is_name_char(char c) {
    return c != ' ' && c != '(' && c != ')' && c != '{' && c != '}' && c != ';' && c != '/';
}

static inline Py_ssize_t skip_spaces(const char *s, Py_ssize_t i, Py_ssize_t n) {
    while (i < n && s[i] == ' ')
        i++;
    return i;
}
static inline Py_ssize_t skip_digits(const char *s, Py_ssize_t i, Py_ssize_t n) {
    while (i < n && is_digit(s[i]))
        i++;
    return i;
}

/* decimal digits s[a:b] (at most 18 of them) -> value; -1 when there are more */
static int64_t digits_value(const char *s, Py_ssize_t a, Py_ssize_t b) {
    if (b - a > 18 || b <= a)
        return -1;
    int64_t v = 0;
    for (Py_ssize_t i = a; i < b; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

/* The first k digits of s[a:b], right-padded with zeros to k digits. */
static int64_t frac_value(const char *s, Py_ssize_t a, Py_ssize_t b, int k) {
    int64_t v = 0;
    for (int i = 0; i < k; i++)
        v = v * 10 + (a + i < b ? s[a + i] - '0' : 0);
    return v;
}

/* t[0:tl]: the text of an exit line with a tail comment: "}", spaces, the comment opener, c, the closer at the
   end (EXIT_RE; c without its surrounding spaces), c read by EXIT_CMT_RE: a name of bytes other than space, '=',
   '(' and ')', an optional "()", then optionally spaces and "= " or "ret=" and a retval without spaces (func and
   retval both NULL when c is not of that shape). 0: no such comment (the line is left to Python). */
static int exit_comment(const char *t, Py_ssize_t tl, Py_ssize_t base, row_t *r) {
    Py_ssize_t a = skip_spaces(t, 1, tl);
    if (!(a + 4 <= tl && t[a] == '/' && t[a + 1] == '*' && t[tl - 2] == '*' && t[tl - 1] == '/'))
        return 0;
    Py_ssize_t ca = skip_spaces(t, a + 2, tl - 2), cb = tl - 2;
    while (cb > ca && t[cb - 1] == ' ')
        cb--;
    Py_ssize_t fe = ca;
    while (fe < cb && t[fe] != ' ' && t[fe] != '=' && t[fe] != '(' && t[fe] != ')')
        fe++;
    if (fe == ca)
        return 1;
    Py_ssize_t q = fe, ra = -1;
    if (q + 2 <= cb && t[q] == '(' && t[q + 1] == ')')
        q += 2;
    if (q < cb) {
        Py_ssize_t sp = skip_spaces(t, q, cb);
        if (sp == q)
            return 1;
        if (sp + 2 <= cb && t[sp] == '=' && t[sp + 1] == ' ')
            ra = sp + 2;
        else if (sp + 4 <= cb && memcmp(t + sp, "ret=", 4) == 0)
            ra = sp + 4;
        else
            return 1;
        if (ra >= cb || memchr(t + ra, ' ', (size_t)(cb - ra)))
            return 1;
        r->has_ret = 1;
        r->ret_off = base + ra;
        r->ret_len = (int32_t)(cb - ra);
    }
    r->has_func = 1;
    r->func_off = base + ca;
    r->func_len = (int32_t)(fe - ca);
    return 1;
}

/* c[0:n] (the text after a call's "();" or "() {": spaces, the comment opener, c, the closer at the end, as
   CALL_RE reads it): c read by CALL_CMT_RE, an optional "<-" return address (no spaces) and an optional
   "= " or "ret=" retval (no spaces). 0: another shape, or one where CALL_RE / CALL_CMT_RE could backtrack to
   another reading (left to Python). An empty tail is no comment. */
static int call_comment(const char *t, Py_ssize_t tl, Py_ssize_t base, row_t *r) {
    if (tl == 0)
        return 1;
    Py_ssize_t a = skip_spaces(t, 0, tl);
    if (!(a + 4 <= tl && t[a] == '/' && t[a + 1] == '*' && t[tl - 2] == '*' && t[tl - 1] == '/'))
        return 0;
    Py_ssize_t ca = skip_spaces(t, a + 2, tl - 2), cb = tl - 2;
    while (cb > ca && t[cb - 1] == ' ')
        cb--;
    if (ca == cb)
        return 1;
    Py_ssize_t q = ca;
    if (q + 2 <= cb && t[q] == '<' && t[q + 1] == '-') {
        Py_ssize_t e = q + 2;
        while (e < cb && t[e] != ' ')
            e++;
        if (e == q + 2 || t[e - 1] == '=') /* no address, or one a shorter match could end before "= " */
            return 0;
        r->has_par = 1;
        r->par_off = base + q + 2;
        r->par_len = (int32_t)(e - q - 2);
        if (e == cb)
            return 1;
        q = skip_spaces(t, e, cb);
    }
    Py_ssize_t ra;
    if (q + 2 <= cb && t[q] == '=' && t[q + 1] == ' ')
        ra = q + 2;
    else if (q + 4 <= cb && memcmp(t + q, "ret=", 4) == 0)
        ra = q + 4;
    else
        return 0;
    if (ra >= cb || memchr(t + ra, ' ', (size_t)(cb - ra)))
        return 0;
    r->has_ret = 1;
    r->ret_off = base + ra;
    r->ret_len = (int32_t)(cb - ra);
    return 1;
}

/* s[0:n]: one line, right-stripped. 1 and *r filled when the line is one this module is sure of. */
static int printable(const char *s, Py_ssize_t n) {
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        /* a byte below 0x20, or above 0x7e (its high bit set after adding 1) */
        if (((w - ones * 0x20) & ~w & high) | (((w + ones * 0x01) | w) & high))
            return 0;
    }
    for (; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

static int parse_line(const char *s, Py_ssize_t n, Py_ssize_t base, row_t *r) {
    if (!printable(s, n))
        return 0;
    Py_ssize_t pos = 0, p, q;
    memset(r, 0, sizeof *r);

    /* abstime: \s*(\d+\.\d+)\s+\| */
    p = skip_spaces(s, 0, n);
    q = skip_digits(s, p, n);
    if (q > p && q < n && s[q] == '.') {
        Py_ssize_t fa = q + 1, fb = skip_digits(s, q + 1, n);
        Py_ssize_t t = skip_spaces(s, fb, n);
        if (fb > fa && t > fb && t < n && s[t] == '|') {
            int64_t sec = digits_value(s, p, q);
            if (sec < 0)
                return 0;
            int64_t f = frac_value(s, fa, fb, 9);
            if (!(sec < MAX_SEC || (sec == MAX_SEC && f <= MAX_SEC_FRAC)))
                return 0;
            r->ts = sec * 1000000000LL + f;
            r->has_ts = 1;
            pos = t + 1;
        }
    }
    /* REL TIME: \s*(\d+) us\s+\| (left to Python) */
    p = skip_spaces(s, pos, n);
    q = skip_digits(s, p, n);
    if (q > p && q + 3 <= n && memcmp(s + q, " us", 3) == 0) {
        Py_ssize_t t = skip_spaces(s, q + 3, n);
        if (t > q + 3 && t < n && s[t] == '|')
            return 0;
    }
    /* cpu: \s*(\d+)\)  (required) */
    p = skip_spaces(s, pos, n);
    q = skip_digits(s, p, n);
    if (!(q > p && q + 1 < n && s[q] == ')' && s[q + 1] == ' '))
        return 0;
    {
        int64_t cpu = digits_value(s, p, q);
        if (cpu < 0 || cpu > INT32_MAX)
            return 0;
        r->cpu = (int32_t)cpu;
    }
    pos = q + 2;
    /* proc: \s*([^|\s][^|]*?)-(\d+)\s*\| */
    p = skip_spaces(s, pos, n);
    if (p < n && s[p] != '|') {
        const char *bar = memchr(s + p, '|', (size_t)(n - p));
        if (bar) {
            Py_ssize_t b = bar - s, j = b - 1;
            while (j > p && s[j] != '-')
                j--;
            if (j > p && s[j] == '-') {
                Py_ssize_t d = skip_digits(s, j + 1, b);
                if (d > j + 1 && skip_spaces(s, d, b) == b) {
                    int64_t pid = digits_value(s, j + 1, d);
                    if (pid < 0 || pid > INT32_MAX)
                        return 0;
                    r->pid = (int32_t)pid;
                    r->has_pid = 1;
                    Py_ssize_t ce = j;
                    while (ce > p && s[ce - 1] == ' ')
                        ce--;
                    r->comm_off = base + p;
                    r->comm_len = (int32_t)(ce - p);
                    pos = b + 1;
                }
            }
        }
    }
    /* latency flags: \s*([.A-Za-z0-9]{4,7})\s+\| */
    p = skip_spaces(s, pos, n);
    q = p;
    while (q < n && is_flag_char(s[q]))
        q++;
    if (q - p >= 4 && q - p <= 7) {
        Py_ssize_t t = skip_spaces(s, q, n);
        if (t > q && t < n && s[t] == '|') {
            r->has_flags = 1;
            r->flags_off = base + p;
            r->flags_len = (int32_t)(q - p);
            pos = t + 1;
        }
    }
    /* duration column: *(?:[+!#*@$]? *(\d+(?:\.\d+)?) us|irq marker)? *\|  (required, no irq marker) */
    p = skip_spaces(s, pos, n);
    if (p + 11 <= n && (memcmp(s + p, "==========>", 11) == 0 || memcmp(s + p, "<==========", 11) == 0))
        return 0;
    q = p;
    if (q < n && is_mark(s[q]))
        q++;
    q = skip_spaces(s, q, n);
    {
        Py_ssize_t da = q, db = skip_digits(s, q, n), fa = db, fb = db;
        int inner = 0;
        if (db > da) {
            if (db + 1 < n && s[db] == '.' && is_digit(s[db + 1])) {
                fa = db + 1;
                fb = skip_digits(s, fa, n);
            }
            if (fb + 3 <= n && memcmp(s + fb, " us", 3) == 0)
                inner = 1;
        }
        Py_ssize_t t = inner ? skip_spaces(s, fb + 3, n) : p;
        if (inner && t < n && s[t] == '|') {
            int64_t us = digits_value(s, da, db);
            if (us < 0 || us >= INT64_MAX_ / 1000)
                return 0;
            r->dur = us * 1000 + frac_value(s, fa, fb, 3);
            r->has_dur = 1;
            pos = t + 1;
        } else if (p < n && s[p] == '|') {
            pos = p + 1;
        } else {
            return 0;
        }
    }
    /* indentation and text */
    p = skip_spaces(s, pos, n);
    Py_ssize_t indn = p - pos, tl = n - p;
    const char *t = s + p;
    if (tl <= 0) /* no text */
        return 0;
    r->ind = (int32_t)((indn > 2 ? indn - 2 : 0) / 2);
    if (indn > INT32_MAX)
        return 0;
    if (t[0] == '}') {
        r->kind = K_EXIT;
        return tl == 1 || exit_comment(t, tl, base + p, r);
    }
    /* a call: name, then "();" or "() {", then nothing or a comment */
    Py_ssize_t name = 0;
    while (name < tl && is_name_char(t[name]))
        name++;
    if (name == 0)
        return 0;
    Py_ssize_t after;
    if (name + 3 <= tl && memcmp(t + name, "();", 3) == 0) {
        r->kind = K_LEAF;
        after = name + 3;
    } else if (name + 4 <= tl && memcmp(t + name, "() {", 4) == 0) {
        r->kind = K_ENTRY;
        after = name + 4;
    } else {
        return 0;
    }
    if (!call_comment(t + after, tl - after, base + p + after, r))
        return 0;
    if (name > INT32_MAX)
        return 0;
    r->func_off = base + p;
    r->func_len = (int32_t)name;
    r->has_func = 1;
    return 1;
}

/* ------------------------------------------------------------------ parse() */

typedef struct {
    PyObject *data; /* the chunk (bytes): rows point into it */
    row_t *rows;
    Py_ssize_t n;
} parsed_t;

static void parsed_free(PyObject *cap) {
    parsed_t *pr = PyCapsule_GetPointer(cap, "ksmtrace.funcgraph.rows");
    if (!pr)
        return;
    Py_XDECREF(pr->data);
    free(pr->rows);
    free(pr);
}

static PyObject *fg_parse(PyObject *self, PyObject *args) {
    PyObject *data;
    long long first;
    if (!PyArg_ParseTuple(args, "SL", &data, &first))
        return NULL;
    const char *s = PyBytes_AS_STRING(data);
    Py_ssize_t n = PyBytes_GET_SIZE(data);
    PyObject *rest = PyBytes_FromStringAndSize(NULL, n + 1);
    if (!rest)
        return NULL;
    char *out = PyBytes_AS_STRING(rest);
    Py_ssize_t on = 0, nr = 0, cap = 0, n_abs = 0;
    row_t *rows = NULL;
    buf_t nos = {0};
    int oom = 0, in_run = 0;
    const int64_t none = -1;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t i = 0;
    int64_t ln = first;
    while (i < n && !nos.oom) {
        const char *nl = memchr(s + i, '\n', (size_t)(n - i));
        Py_ssize_t e = nl ? nl - s : n, le = e;
        while (le > i && (s[le - 1] == ' ' || s[le - 1] == '\t' || s[le - 1] == '\r' || s[le - 1] == '\n'
                          || s[le - 1] == '\x0b' || s[le - 1] == '\x0c'))
            le--;
        if (nr == cap) {
            Py_ssize_t nc = cap ? cap * 2 : 4096;
            row_t *nrws = realloc(rows, (size_t)nc * sizeof *rows);
            if (!nrws) {
                oom = 1;
                break;
            }
            rows = nrws;
            cap = nc;
        }
        if (parse_line(s + i, le - i, i, &rows[nr])) {
            rows[nr].line_no = ln;
            n_abs += rows[nr].has_ts;
            nr++;
            if (!in_run) { /* one empty line for the run (also when it ends the input without a newline) */
                out[on++] = '\n';
                buf_put(&nos, &none, sizeof none);
            }
            in_run = 1;
        } else {
            memcpy(out + on, s + i, (size_t)(e - i));
            on += e - i;
            if (nl)
                out[on++] = '\n';
            buf_put(&nos, &ln, sizeof ln);
            in_run = 0;
        }
        i = e + 1;
        ln++;
    }
    Py_END_ALLOW_THREADS
    if (oom || nos.oom) {
        free(rows);
        buf_free(&nos);
        Py_DECREF(rest);
        return PyErr_NoMemory();
    }
    if (_PyBytes_Resize(&rest, on) < 0) {
        free(rows);
        buf_free(&nos);
        return NULL;
    }
    PyObject *lines = bytes_of(&nos);
    buf_free(&nos);
    parsed_t *pr = malloc(sizeof *pr);
    if (!lines || !pr) {
        Py_XDECREF(lines);
        Py_DECREF(rest);
        free(rows);
        free(pr);
        return lines ? PyErr_NoMemory() : NULL;
    }
    pr->data = data;
    Py_INCREF(data);
    pr->rows = rows;
    pr->n = nr;
    PyObject *capo = PyCapsule_New(pr, "ksmtrace.funcgraph.rows", parsed_free);
    if (!capo) {
        Py_DECREF(data);
        free(rows);
        free(pr);
        Py_DECREF(rest);
        Py_DECREF(lines);
        return NULL;
    }
    return Py_BuildValue("(NnnNN)", capo, nr, n_abs, rest, lines);
}

/* ------------------------------------------------------------------ depth state */

typedef struct {
    size_t start, len;
    int isnull;
} entry_t;

typedef struct {
    entry_t *e;
    size_t n, cap;
    buf_t arena; /* the names, one after another (a stack: pop truncates) */
} stack_t_;

typedef struct {
    int64_t pid;
    buf_t comm;
    int set;
} task_t;

/* keys: tag 0 a pid, tag 1 a CPU (no task known on it), tag 2 no CPU; tag 3 in the task map: "last" */
typedef struct {
    uint8_t tag;
    int64_t v;
    int32_t idx; /* -1: empty slot */
} slot_t;

typedef struct {
    slot_t *s;
    size_t cap, used;
} map_t;

typedef struct {
    map_t stack_map;
    stack_t_ *stacks;
    size_t n_stacks, cap_stacks;
    map_t task_map;
    task_t *tasks;
    size_t n_tasks, cap_tasks;
    int64_t n_unmatched;
    int busy;
    /* the stack of the last lookup (rows of one task come in runs) */
    int c_ok;
    uint8_t c_tag;
    int64_t c_v;
    size_t c_idx;
} state_t;

static uint64_t key_hash(uint8_t tag, int64_t v) {
    uint64_t x = (uint64_t)v * 0x9E3779B97F4A7C15ULL + tag * 0xC2B2AE3D27D4EB4FULL;
    x ^= x >> 31;
    return x;
}

/* index of the key (inserting new -> *isnew and idx = next), -2 on no memory */
static int32_t map_get(map_t *m, uint8_t tag, int64_t v, int32_t next, int insert) {
    if (insert && (m->used + 1) * 2 > m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 64;
        slot_t *ns = malloc(nc * sizeof *ns);
        if (!ns)
            return -2;
        for (size_t i = 0; i < nc; i++)
            ns[i].idx = -1;
        for (size_t i = 0; i < m->cap; i++) {
            if (m->s[i].idx < 0)
                continue;
            size_t h = key_hash(m->s[i].tag, m->s[i].v) & (nc - 1);
            while (ns[h].idx >= 0)
                h = (h + 1) & (nc - 1);
            ns[h] = m->s[i];
        }
        free(m->s);
        m->s = ns;
        m->cap = nc;
    }
    if (!m->cap)
        return -1;
    size_t h = key_hash(tag, v) & (m->cap - 1);
    while (m->s[h].idx >= 0) {
        if (m->s[h].tag == tag && m->s[h].v == v)
            return m->s[h].idx;
        h = (h + 1) & (m->cap - 1);
    }
    if (!insert)
        return -1;
    m->s[h].tag = tag;
    m->s[h].v = v;
    m->s[h].idx = next;
    m->used++;
    return next;
}

static void map_clear(map_t *m) {
    free(m->s);
    m->s = NULL;
    m->cap = m->used = 0;
}

static void state_clear(state_t *st) {
    for (size_t i = 0; i < st->n_stacks; i++) {
        free(st->stacks[i].e);
        buf_free(&st->stacks[i].arena);
    }
    free(st->stacks);
    st->stacks = NULL;
    st->n_stacks = st->cap_stacks = 0;
    map_clear(&st->stack_map);
    for (size_t i = 0; i < st->n_tasks; i++)
        buf_free(&st->tasks[i].comm);
    free(st->tasks);
    st->tasks = NULL;
    st->n_tasks = st->cap_tasks = 0;
    map_clear(&st->task_map);
    st->c_ok = 0;
}

static void state_free(PyObject *cap) {
    state_t *st = PyCapsule_GetPointer(cap, "ksmtrace.funcgraph.state");
    if (!st)
        return;
    state_clear(st);
    free(st);
}

static stack_t_ *get_stack(state_t *st, uint8_t tag, int64_t v) {
    if (st->c_ok && st->c_tag == tag && st->c_v == v)
        return &st->stacks[st->c_idx];
    int32_t idx = map_get(&st->stack_map, tag, v, (int32_t)st->n_stacks, 1);
    if (idx == -2)
        return NULL;
    if ((size_t)idx == st->n_stacks) {
        if (st->n_stacks == st->cap_stacks) {
            size_t nc = st->cap_stacks ? st->cap_stacks * 2 : 64;
            stack_t_ *ns = realloc(st->stacks, nc * sizeof *ns);
            if (!ns)
                return NULL;
            st->stacks = ns;
            st->cap_stacks = nc;
        }
        memset(&st->stacks[st->n_stacks], 0, sizeof(stack_t_));
        st->n_stacks++;
    }
    st->c_ok = 1;
    st->c_tag = tag;
    st->c_v = v;
    st->c_idx = (size_t)idx;
    return &st->stacks[idx];
}

static task_t *get_task(state_t *st, uint8_t tag, int64_t v, int insert) {
    int32_t idx = map_get(&st->task_map, tag, v, (int32_t)st->n_tasks, insert);
    if (idx == -2 || idx == -1)
        return NULL;
    if ((size_t)idx == st->n_tasks) {
        if (st->n_tasks == st->cap_tasks) {
            size_t nc = st->cap_tasks ? st->cap_tasks * 2 : 16;
            task_t *nt = realloc(st->tasks, nc * sizeof *nt);
            if (!nt)
                return NULL;
            st->tasks = nt;
            st->cap_tasks = nc;
        }
        memset(&st->tasks[st->n_tasks], 0, sizeof(task_t));
        st->n_tasks++;
    }
    return &st->tasks[idx];
}

static int push(stack_t_ *sk, const char *s, size_t n, int isnull) {
    if (sk->n == sk->cap) {
        size_t nc = sk->cap ? sk->cap * 2 : 16;
        entry_t *ne = realloc(sk->e, nc * sizeof *ne);
        if (!ne)
            return -1;
        sk->e = ne;
        sk->cap = nc;
    }
    entry_t *e = &sk->e[sk->n++];
    e->start = sk->arena.n;
    e->len = n;
    e->isnull = isnull;
    buf_put(&sk->arena, s, n);
    return sk->arena.oom ? -1 : 0;
}

static inline int entry_eq(const stack_t_ *sk, const entry_t *e, const char *s, size_t n) {
    return !e->isnull && e->len == n && (n == 0 || memcmp(sk->arena.p + e->start, s, n) == 0);
}

/* an exit whose tail comment names a call below the top of its stack: pop to it (lost exits) */
static void resync(stack_t_ *sk, const char *f, size_t n) {
    if (!sk->n || entry_eq(sk, &sk->e[sk->n - 1], f, n))
        return;
    int found = 0;
    for (size_t k = 0; k < sk->n && !found; k++)
        found = entry_eq(sk, &sk->e[k], f, n);
    if (found)
        while (sk->n && !entry_eq(sk, &sk->e[sk->n - 1], f, n)) {
            sk->n--;
            sk->arena.n = sk->e[sk->n].start;
        }
}

static PyObject *fg_new_state(PyObject *self, PyObject *noargs) {
    state_t *st = calloc(1, sizeof *st);
    if (!st)
        return PyErr_NoMemory();
    PyObject *c = PyCapsule_New(st, "ksmtrace.funcgraph.state", state_free);
    if (!c)
        free(st);
    return c;
}

static PyObject *fg_n_unmatched(PyObject *self, PyObject *arg) {
    state_t *st = PyCapsule_GetPointer(arg, "ksmtrace.funcgraph.state");
    if (!st)
        return NULL;
    return PyLong_FromLongLong(st->n_unmatched);
}

/* ------------------------------------------------------------------ walk() */

/* a string column: int32 offsets and validity bitmap (one slot per row, allocated up front as bytes objects
   written in place), data (grows) */
typedef struct {
    PyObject *off_b, *valid_b;
    int32_t *off;
    uint8_t *valid;
    buf_t data;
    Py_ssize_t nulls;
} scol_t;

/* a writable bytes object of n >= 1 bytes (n == 0 would be the shared empty one), zeroed when asked */
static PyObject *out_bytes(Py_ssize_t n, int zero, char **p) {
    PyObject *b = PyBytes_FromStringAndSize(NULL, n > 0 ? n : 1);
    if (!b)
        return NULL;
    *p = PyBytes_AS_STRING(b);
    if (zero)
        memset(*p, 0, (size_t)(n > 0 ? n : 1));
    return b;
}

static int scol_init(scol_t *c, Py_ssize_t n, size_t reserve) {
    memset(c, 0, sizeof *c);
    char *p;
    if (!(c->off_b = out_bytes((n + 1) * 4, 0, &p)))
        return -1;
    c->off = (int32_t *)p;
    c->off[0] = 0;
    if (!(c->valid_b = out_bytes((n + 7) / 8, 1, &p)))
        return -1;
    c->valid = (uint8_t *)p;
    return reserve ? buf_grow(&c->data, reserve) : 0;
}

static inline void scol_set(scol_t *c, Py_ssize_t i, const char *s, size_t n, int isnull) {
    if (isnull) {
        c->nulls++;
    } else {
        c->valid[i >> 3] |= (uint8_t)(1u << (i & 7));
        if (n && !buf_grow(&c->data, n)) {
            memcpy(c->data.p + c->data.n, s, n);
            c->data.n += n;
        }
    }
    if (c->data.n > INT32_MAX)
        c->data.oom = 1;
    c->off[i + 1] = (int32_t)c->data.n;
}

static void scol_free(scol_t *c) {
    Py_XDECREF(c->off_b);
    Py_XDECREF(c->valid_b);
    buf_free(&c->data);
}

/* (validity or None, offsets, data) */
static PyObject *scol_tuple(scol_t *c) {
    PyObject *v = c->nulls ? c->valid_b : Py_None;
    Py_INCREF(v);
    Py_INCREF(c->off_b);
    return Py_BuildValue("(NNN)", v, c->off_b, bytes_of(&c->data));
}

/* (validity or None, values) of a fixed-width column */
static PyObject *fcol_tuple(PyObject *valid, Py_ssize_t nulls, PyObject *values) {
    PyObject *v = nulls ? valid : Py_None;
    Py_INCREF(v);
    Py_INCREF(values);
    return Py_BuildValue("(NN)", v, values);
}

#define BIT_SET(bm, i) ((bm)[(i) >> 3] |= (uint8_t)(1u << ((i) & 7)))

typedef struct {
    int64_t line;
    uint8_t kind;
    const char *func;
    Py_ssize_t func_len;
    int func_null;
    int64_t cpu, pid, ind;
    int has_cpu, has_pid, has_ind;
} xrow_t;

typedef struct {
    int64_t depth, pid;
    int has_depth, has_pid, unm;
    size_t func_start, func_len, comm_start, comm_len;
    int has_func, has_comm;
} xout_t;

static int int_item(PyObject *o, int64_t *v, int *has) {
    if (o == Py_None) {
        *has = 0;
        *v = 0;
        return 0;
    }
    *has = 1;
    *v = PyLong_AsLongLong(o);
    return (*v == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* the stack of a row: its pid; else the task the last banner put on its CPU ("last": no CPU column);
   else the CPU itself. *task: that banner's task (fills pid and comm), or NULL. */
static stack_t_ *stack_of(state_t *st, int has_pid, int64_t pid, int has_cpu, int64_t cpu, task_t **task) {
    *task = NULL;
    if (has_pid)
        return get_stack(st, 0, pid);
    task_t *t = has_cpu ? get_task(st, 1, cpu, 0) : get_task(st, 3, 0, 0);
    if (t && t->set) {
        *task = t;
        return get_stack(st, 0, t->pid);
    }
    return has_cpu ? get_stack(st, 1, cpu) : get_stack(st, 2, 0);
}

static PyObject *fg_walk(PyObject *self, PyObject *args) {
    PyObject *stcap, *rcap, *l_line, *l_kind, *l_func, *l_cpu, *l_pid, *l_ind;
    if (!PyArg_ParseTuple(args, "OOO!O!O!O!O!O!", &stcap, &rcap, &PyList_Type, &l_line, &PyList_Type, &l_kind,
                          &PyList_Type, &l_func, &PyList_Type, &l_cpu, &PyList_Type, &l_pid, &PyList_Type, &l_ind))
        return NULL;
    state_t *st = PyCapsule_GetPointer(stcap, "ksmtrace.funcgraph.state");
    if (!st)
        return NULL;
    parsed_t *pr = NULL;
    if (rcap != Py_None && !(pr = PyCapsule_GetPointer(rcap, "ksmtrace.funcgraph.rows")))
        return NULL;
    Py_ssize_t nx = PyList_GET_SIZE(l_line);
    if (PyList_GET_SIZE(l_kind) != nx || PyList_GET_SIZE(l_func) != nx || PyList_GET_SIZE(l_cpu) != nx
        || PyList_GET_SIZE(l_pid) != nx || PyList_GET_SIZE(l_ind) != nx) {
        PyErr_SetString(PyExc_ValueError, "walk: the row lists differ in length");
        return NULL;
    }
    if (st->busy) {
        PyErr_SetString(PyExc_RuntimeError, "walk: the state is in use by another thread");
        return NULL;
    }
    xrow_t *xr = calloc((size_t)(nx ? nx : 1), sizeof *xr);
    xout_t *xo = calloc((size_t)(nx ? nx : 1), sizeof *xo);
    if (!xr || !xo) {
        free(xr);
        free(xo);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < nx; i++) {
        int has, dummy;
        int64_t kind;
        if (int_item(PyList_GET_ITEM(l_line, i), &xr[i].line, &has) || int_item(PyList_GET_ITEM(l_kind, i), &kind, &dummy)
            || int_item(PyList_GET_ITEM(l_cpu, i), &xr[i].cpu, &xr[i].has_cpu)
            || int_item(PyList_GET_ITEM(l_pid, i), &xr[i].pid, &xr[i].has_pid)
            || int_item(PyList_GET_ITEM(l_ind, i), &xr[i].ind, &xr[i].has_ind))
            goto fail_x;
        if (kind < 0 || kind > 4) {
            PyErr_SetString(PyExc_ValueError, "walk: bad kind");
            goto fail_x;
        }
        xr[i].kind = (uint8_t)kind;
        PyObject *f = PyList_GET_ITEM(l_func, i);
        if (f == Py_None) {
            xr[i].func_null = 1;
        } else {
            xr[i].func = PyUnicode_AsUTF8AndSize(f, &xr[i].func_len);
            if (!xr[i].func)
                goto fail_x;
        }
    }

    Py_ssize_t nr = pr ? pr->n : 0;
    const char *data = pr ? PyBytes_AS_STRING(pr->data) : NULL;
    const row_t *rows = pr ? pr->rows : NULL;
    size_t r_comm = 0, r_func = 0, r_flags = 0;
    for (Py_ssize_t k = 0; k < nr; k++) {
        r_comm += (size_t)rows[k].comm_len;
        r_func += (size_t)rows[k].func_len;
        r_flags += (size_t)rows[k].flags_len;
    }
    scol_t c_comm, c_func, c_event, c_kind, c_flags, c_ret, c_par, x_str;
    int ok = scol_init(&c_comm, nr, r_comm) == 0;
    ok &= scol_init(&c_par, nr, 0) == 0;
    ok &= scol_init(&c_func, nr, r_func + 64) == 0;
    ok &= scol_init(&c_event, nr, (size_t)nr * 15) == 0;
    ok &= scol_init(&c_kind, nr, (size_t)nr * 5) == 0;
    ok &= scol_init(&c_flags, nr, r_flags) == 0;
    ok &= scol_init(&c_ret, nr, 0) == 0;
    ok &= scol_init(&x_str, 0, 0) == 0; /* the Python rows' popped names and comms, one after another */
    char *p = NULL;
    PyObject *o_line = out_bytes(nr * 8, 0, &p);
    int64_t *v_line = (int64_t *)p;
    PyObject *o_ts = out_bytes(nr * 8, 0, &p);
    int64_t *v_ts = (int64_t *)p;
    PyObject *o_tsv = out_bytes((nr + 7) / 8, 1, &p);
    uint8_t *v_tsv = (uint8_t *)p;
    PyObject *o_cpu = out_bytes(nr * 4, 0, &p);
    int32_t *v_cpu = (int32_t *)p;
    PyObject *o_pid = out_bytes(nr * 4, 0, &p);
    int32_t *v_pid = (int32_t *)p;
    PyObject *o_pidv = out_bytes((nr + 7) / 8, 1, &p);
    uint8_t *v_pidv = (uint8_t *)p;
    PyObject *o_depth = out_bytes(nr * 4, 0, &p);
    int32_t *v_depth = (int32_t *)p;
    PyObject *o_dur = out_bytes(nr * 8, 0, &p);
    int64_t *v_dur = (int64_t *)p;
    PyObject *o_durv = out_bytes((nr + 7) / 8, 1, &p);
    uint8_t *v_durv = (uint8_t *)p;
    PyObject *o_map = out_bytes((nr + 1) * 4, 0, &p);
    int32_t *v_map = (int32_t *)p;
    ok &= o_line && o_ts && o_tsv && o_cpu && o_pid && o_pidv && o_depth && o_dur && o_durv && o_map;
    Py_ssize_t pid_nulls = 0, ts_nulls = 0, dur_nulls = 0, n_unm = 0;
    int err = ok ? 0 : 1;
    st->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t ri = 0, xi = 0;
    if (!err)
        v_map[0] = 0;
    while (!err && (ri < nr || xi < nx)) {
        if (ri < nr && (xi >= nx || rows[ri].line_no < xr[xi].line)) {
            const Py_ssize_t i = ri;
            const row_t *r = &rows[ri++];
            task_t *task;
            stack_t_ *sk = stack_of(st, r->has_pid, r->pid, 1, r->cpu, &task);
            if (!sk) {
                err = 1;
                break;
            }
            int32_t depth;
            int unm = 0;
            if (r->kind == K_ENTRY) {
                depth = (int32_t)sk->n;
                if (push(sk, data + r->func_off, (size_t)r->func_len, 0)) {
                    err = 1;
                    break;
                }
                scol_set(&c_func, i, data + r->func_off, (size_t)r->func_len, 0);
                scol_set(&c_kind, i, "entry", 5, 0);
            } else if (r->kind == K_EXIT) {
                const char *f = r->has_func ? data + r->func_off : NULL;
                size_t fl = (size_t)r->func_len;
                if (f)
                    resync(sk, f, fl);
                if (sk->n) {
                    entry_t *e = &sk->e[--sk->n];
                    if (f) /* the tail comment's name is the row's func */
                        scol_set(&c_func, i, f, fl, 0);
                    else
                        scol_set(&c_func, i, sk->arena.p + e->start, e->len, e->isnull);
                    sk->arena.n = e->start;
                    depth = (int32_t)sk->n;
                } else {
                    depth = r->ind;
                    unm = 1;
                    st->n_unmatched++;
                    scol_set(&c_func, i, f, fl, f == NULL);
                }
                scol_set(&c_kind, i, "exit", 4, 0);
            } else {
                depth = (int32_t)sk->n;
                scol_set(&c_func, i, data + r->func_off, (size_t)r->func_len, 0);
                scol_set(&c_kind, i, "leaf", 4, 0);
            }
            v_line[i] = r->line_no;
            v_ts[i] = r->ts;
            if (r->has_ts)
                BIT_SET(v_tsv, i);
            else
                ts_nulls++;
            v_cpu[i] = r->cpu;
            if (r->has_pid) {
                v_pid[i] = r->pid;
                BIT_SET(v_pidv, i);
                scol_set(&c_comm, i, data + r->comm_off, (size_t)r->comm_len, 0);
            } else if (task) {
                v_pid[i] = (int32_t)task->pid;
                BIT_SET(v_pidv, i);
                scol_set(&c_comm, i, task->comm.p, task->comm.n, 0);
            } else {
                v_pid[i] = 0;
                pid_nulls++;
                scol_set(&c_comm, i, NULL, 0, 1);
            }
            scol_set(&c_flags, i, data + r->flags_off, (size_t)r->flags_len, !r->has_flags);
            scol_set(&c_ret, i, data + r->ret_off, (size_t)r->ret_len, !r->has_ret);
            scol_set(&c_par, i, data + r->par_off, (size_t)r->par_len, !r->has_par);
            if (r->kind == K_EXIT)
                scol_set(&c_event, i, "funcgraph_exit", 14, 0);
            else
                scol_set(&c_event, i, "funcgraph_entry", 15, 0);
            v_depth[i] = depth;
            v_dur[i] = r->dur;
            if (r->has_dur)
                BIT_SET(v_durv, i);
            else
                dur_nulls++;
            n_unm += unm;
            v_map[i + 1] = (int32_t)n_unm;
            continue;
        }
        /* a row Python parsed: _DepthState.run's loop body */
        const xrow_t *x = &xr[xi];
        xout_t *o = &xo[xi++];
        if (x->kind == 0) { /* tracer header: the stacks start again */
            state_clear(st);
            continue;
        }
        if (x->kind == 1) { /* task switch: funcs = comm, pids = pid (None: the banner names no pid) */
            if (!x->has_pid)
                continue;
            /* both inserted first: a second insertion may move the first one's task */
            task_t *t = x->has_cpu ? get_task(st, 1, x->cpu, 1) : get_task(st, 2, 0, 1);
            task_t *last = t ? get_task(st, 3, 0, 1) : NULL;
            t = last ? (x->has_cpu ? get_task(st, 1, x->cpu, 0) : get_task(st, 2, 0, 0)) : NULL;
            if (!t || !last) {
                err = 1;
                break;
            }
            t->pid = last->pid = x->pid;
            t->set = last->set = 1;
            t->comm.n = last->comm.n = 0;
            buf_put(&t->comm, x->func, (size_t)x->func_len);
            buf_put(&last->comm, x->func, (size_t)x->func_len);
            if (t->comm.oom || last->comm.oom) {
                err = 1;
                break;
            }
            o->pid = x->pid;
            o->has_pid = 1;
            continue;
        }
        task_t *task;
        stack_t_ *sk = stack_of(st, x->has_pid, x->pid, x->has_cpu, x->cpu, &task);
        if (!sk) {
            err = 1;
            break;
        }
        if (task) {
            o->pid = task->pid;
            o->has_pid = 1;
            o->comm_start = x_str.data.n;
            o->comm_len = task->comm.n;
            o->has_comm = 1;
            buf_put(&x_str.data, task->comm.p, task->comm.n);
        }
        if (x->kind == 2) {
            o->depth = (int64_t)sk->n;
            o->has_depth = 1;
            if (push(sk, x->func, (size_t)x->func_len, x->func_null)) {
                err = 1;
                break;
            }
        } else if (x->kind == 3) {
            if (!x->func_null)
                resync(sk, x->func, (size_t)x->func_len);
            if (sk->n) {
                entry_t *e = &sk->e[--sk->n];
                if (!e->isnull) {
                    o->func_start = x_str.data.n;
                    o->func_len = e->len;
                    o->has_func = 1;
                    buf_put(&x_str.data, sk->arena.p + e->start, e->len);
                }
                sk->arena.n = e->start;
                o->depth = (int64_t)sk->n;
            } else {
                o->depth = x->has_ind ? x->ind : 0;
                o->unm = 1;
                st->n_unmatched++;
            }
            o->has_depth = 1;
        } else {
            o->depth = (int64_t)sk->n;
            o->has_depth = 1;
        }
        if (x_str.data.oom)
            err = 1;
    }
    Py_END_ALLOW_THREADS
    st->busy = 0;
    if (ok && (c_comm.data.oom || c_func.data.oom || c_event.data.oom || c_kind.data.oom || c_flags.data.oom
               || c_ret.data.oom || c_par.data.oom))
        err = 1;
    PyObject *res = NULL, *cols = NULL, *xlists = NULL;
    if (err) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        goto done;
    }
    if (pr) {
        cols = Py_BuildValue("{s:n,s:O,s:N,s:O,s:N,s:N,s:N,s:N,s:N,s:N,s:O,s:N,s:O,s:n,s:N,s:N}", "n", nr, "line_no",
                             o_line, "ts_ns", fcol_tuple(o_tsv, ts_nulls, o_ts), "cpu", o_cpu, "pid",
                             fcol_tuple(o_pidv, pid_nulls, o_pid), "comm", scol_tuple(&c_comm), "flags",
                             scol_tuple(&c_flags), "event", scol_tuple(&c_event), "func", scol_tuple(&c_func),
                             "kind", scol_tuple(&c_kind), "depth", o_depth, "duration_ns",
                             fcol_tuple(o_durv, dur_nulls, o_dur), "fields_offsets", o_map, "n_unmatched", n_unm,
                             "retval", scol_tuple(&c_ret), "parent", scol_tuple(&c_par));
        if (!cols)
            goto done;
    } else {
        cols = Py_None;
        Py_INCREF(cols);
    }
    {
        PyObject *ld = PyList_New(nx), *lf = PyList_New(nx), *lp = PyList_New(nx), *lc = PyList_New(nx),
                 *lu = PyList_New(nx);
        xlists = Py_BuildValue("(NNNNN)", ld, lf, lp, lc, lu);
        if (!ld || !lf || !lp || !lc || !lu || !xlists)
            goto done;
        for (Py_ssize_t i = 0; i < nx; i++) {
            const xout_t *o = &xo[i];
            PyObject *d = o->has_depth ? PyLong_FromLongLong(o->depth) : (Py_INCREF(Py_None), Py_None);
            PyObject *f = o->has_func ? PyUnicode_DecodeUTF8(x_str.data.p + o->func_start, (Py_ssize_t)o->func_len,
                                                             "strict")
                                      : (Py_INCREF(Py_None), Py_None);
            PyObject *p = o->has_pid ? PyLong_FromLongLong(o->pid) : (Py_INCREF(Py_None), Py_None);
            PyObject *c = o->has_comm ? PyUnicode_DecodeUTF8(x_str.data.p + o->comm_start, (Py_ssize_t)o->comm_len,
                                                             "strict")
                                      : (Py_INCREF(Py_None), Py_None);
            PyObject *u = PyBool_FromLong(o->unm);
            if (!d || !f || !p || !c) {
                Py_XDECREF(d);
                Py_XDECREF(f);
                Py_XDECREF(p);
                Py_XDECREF(c);
                Py_DECREF(u);
                goto done;
            }
            PyList_SET_ITEM(ld, i, d);
            PyList_SET_ITEM(lf, i, f);
            PyList_SET_ITEM(lp, i, p);
            PyList_SET_ITEM(lc, i, c);
            PyList_SET_ITEM(lu, i, u);
        }
    }
    res = Py_BuildValue("(OO)", cols, xlists);
done:
    Py_XDECREF(cols);
    Py_XDECREF(xlists);
    scol_free(&c_comm);
    scol_free(&c_func);
    scol_free(&c_event);
    scol_free(&c_kind);
    scol_free(&c_flags);
    scol_free(&c_ret);
    scol_free(&c_par);
    scol_free(&x_str);
    Py_XDECREF(o_line);
    Py_XDECREF(o_ts);
    Py_XDECREF(o_tsv);
    Py_XDECREF(o_cpu);
    Py_XDECREF(o_pid);
    Py_XDECREF(o_pidv);
    Py_XDECREF(o_depth);
    Py_XDECREF(o_dur);
    Py_XDECREF(o_durv);
    Py_XDECREF(o_map);
    free(xr);
    free(xo);
    return res;
fail_x:
    free(xr);
    free(xo);
    return NULL;
}

static PyMethodDef methods[] = {
    {"parse", fg_parse, METH_VARARGS, "parse(data, first_line_no) -> (rows, n_rows, n_abs, rest, nos)"},
    {"new_state", fg_new_state, METH_NOARGS, "new_state() -> the depth state carried across chunks"},
    {"walk", fg_walk, METH_VARARGS,
     "walk(state, rows, lines, kinds, funcs, cpus, pids, inds) -> (columns, (depth, func, pid, comm, unmatched))"},
    {"n_unmatched", fg_n_unmatched, METH_O, "n_unmatched(state) -> exits that found an empty stack"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_c_funcgraph",
                                    "function_graph lines and depth walk (see ksmtrace.ingest.funcgraph)", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__c_funcgraph(void) { return PyModule_Create(&module); }
