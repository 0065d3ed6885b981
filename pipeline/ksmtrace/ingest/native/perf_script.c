/* The compiled fast path of the perf-script parser (ksmtrace.ingest.perf_script).
 *
 * parse(data, first_line_no, final, pmu) takes one block of whole lines (bytes, as TraceSource.chunks cuts
 * them; the lines are split here exactly as _records.lines_of splits them: one trailing LF dropped, then at
 * every LF, one trailing CR off each line) and returns a dict of Arrow buffers (bytes) for the records it is
 * sure of, and every other line (with its line number) for the Python rules.
 *
 * A line is "sure" when it is printable ASCII (or TAB) and one of:
 *   - blank (only spaces and TABs): a known non-event line;
 *   - an event line whose EVENT_RE match (perf_script.EVENT_RE, reproduced exactly below, leftmost-first
 *     with the same choice order as the regex engine) has a timestamp, whose numbers fit (at most 9 digits
 *     each), that is no "#" header, holds no "PERF_RECORD_" and whose payload does not start like a frame;
 *   - a frame line (TAB first) that parse_frames takes on its fast path with an address.
 * A record is sure when its event line is sure and every line up to the next sure event line is a sure
 * frame or blank line. Every other line (the lines of an unsure record from its event line on, and the
 * lines before the first sure event line of the block) is handed back, so the Python rules parse exactly
 * the lines they would parse without this module and see the same record boundaries: a sure event line is a
 * record start for them too, and sure lines never are malformed.
 *
 * When not final and the block ends with a sure record, that record is not returned: it is the open record
 * (its frames may continue in the next block) and "carry_byte"/"carry_line" say where it starts.
 *
 * Pure C11 + the CPython C API; the GIL is released while parsing; no global state.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* -- growable buffers ---------------------------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} buf_t;

static int buf_reserve(buf_t *b, size_t extra) {
    if (b->oom)
        return -1;
    if (b->len + extra <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) {
        if (cap > ((size_t)1 << 40)) {
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

static inline void buf_put(buf_t *b, const void *src, size_t n) {
    if (n == 0 || buf_reserve(b, n))
        return;
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static inline void buf_i32(buf_t *b, int32_t v) { buf_put(b, &v, sizeof v); }
static inline void buf_i64(buf_t *b, int64_t v) { buf_put(b, &v, sizeof v); }
static inline void buf_u8(buf_t *b, uint8_t v) { buf_put(b, &v, 1); }

static void buf_free(buf_t *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* A string column: int32 offsets, data, and one validity byte per row (packed into a bitmap at the end). */
typedef struct {
    buf_t off, data, valid;
    int64_t n, nulls;
    int overflow;
} strcol_t;

typedef struct {
    int64_t n, nulls;
    size_t data_len;
} strcol_mark_t;

static void sc_init(strcol_t *c) {
    memset(c, 0, sizeof *c);
    buf_i32(&c->off, 0);
}

static inline void sc_push(strcol_t *c, const char *s, size_t n) {
    buf_put(&c->data, s, n);
    if (c->data.len > (size_t)INT32_MAX)
        c->overflow = 1;
    buf_i32(&c->off, (int32_t)c->data.len);
    buf_u8(&c->valid, 1);
    c->n++;
}

static inline void sc_null(strcol_t *c) {
    buf_i32(&c->off, (int32_t)c->data.len);
    buf_u8(&c->valid, 0);
    c->n++;
    c->nulls++;
}

static inline strcol_mark_t sc_mark(const strcol_t *c) {
    strcol_mark_t m = {c->n, c->nulls, c->data.len};
    return m;
}

static inline void sc_rollback(strcol_t *c, strcol_mark_t m) {
    c->n = m.n;
    c->nulls = m.nulls;
    c->data.len = m.data_len;
    c->off.len = (size_t)(m.n + 1) * sizeof(int32_t);
    c->valid.len = (size_t)m.n;
}

static int sc_oom(const strcol_t *c) { return c->off.oom || c->data.oom || c->valid.oom || c->overflow; }

static void sc_free(strcol_t *c) {
    buf_free(&c->off);
    buf_free(&c->data);
    buf_free(&c->valid);
}

/* -- character classes (the line is printable ASCII or TAB) ------------------------------------------------ */

static inline int is_ws(char c) { return c == ' ' || c == '\t'; }
static inline int is_digit(char c) { return c >= '0' && c <= '9'; }
static inline int is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* -- the event line: EVENT_RE ----------------------------------------------------------------------------
 *
 *   ^\s*(?P<comm>.*?)\s+(?P<pid>-?\d+)(?:/(?P<tid>-?\d+))?\s+(?:\[(?P<cpu>\d+)\]\s+)?
 *   (?:(?P<sec>\d+)\.(?P<frac>\d+):\s+)?(?:(?P<period>\d+)\s+)?(?P<ev>[^\s]+?):(?:\s+(?P<payload>.*?))?\s*$
 *
 * Only the match with \s* taking every leading blank is searched (the regex tries it first; a line that
 * needs less goes to Python). comm ends at the start of a run of blanks (a later end in the same run gives
 * the same rest, so the same failure); the ends are tried left to right, the first that matches wins.
 */

typedef struct {
    const char *s, *e; /* [s, e); s == NULL: group did not participate */
} span_t;

typedef struct {
    span_t comm, pid, tid, cpu, sec, frac, ev, payload;
} evm_t;

/* ev + payload at j: the blank-delimited token at j ends with ':' and has at least 2 bytes */
static int ev_tail(const char *j, const char *n, evm_t *m) {
    const char *t = j;
    while (t < n && !is_ws(*t))
        t++;
    if (t - j < 2 || t[-1] != ':')
        return 0;
    m->ev.s = j;
    m->ev.e = t - 1;
    if (t == n) {
        m->payload.s = m->payload.e = NULL;
        return 1;
    }
    while (t < n && is_ws(*t))
        t++;
    const char *e = n;
    while (e > t && is_ws(e[-1]))
        e--;
    m->payload.s = t;
    m->payload.e = e;
    return 1;
}

/* (?:(\d+)\s+)? then ev_tail, with the regex's order of choices */
static int post(const char *j, const char *n, evm_t *m) {
    const char *d = j;
    while (d < n && is_digit(*d))
        d++;
    if (d > j && d < n && is_ws(*d)) {
        const char *w = d;
        while (w < n && is_ws(*w))
            w++;
        if (ev_tail(w, n, m))
            return 1;
    }
    return ev_tail(j, n, m);
}

/* the rest after comm, comm ending at i (a blank) */
static int rest(const char *i, const char *n, evm_t *m) {
    const char *j = i;
    while (j < n && is_ws(*j))
        j++;
    const char *a = j;
    if (j < n && *j == '-')
        j++;
    const char *d = j;
    while (j < n && is_digit(*j))
        j++;
    if (j == d)
        return 0;
    m->pid.s = a;
    m->pid.e = j;
    m->tid.s = m->tid.e = NULL;
    if (j < n && *j == '/') {
        const char *b = j + 1;
        const char *ts = b;
        if (b < n && *b == '-')
            b++;
        const char *bd = b;
        while (b < n && is_digit(*b))
            b++;
        if (b == bd)
            return 0;
        m->tid.s = ts;
        m->tid.e = b;
        j = b;
    }
    if (j >= n || !is_ws(*j))
        return 0;
    while (j < n && is_ws(*j))
        j++;
    m->cpu.s = m->cpu.e = NULL;
    if (j < n && *j == '[') {
        const char *c = j + 1, *cd = c;
        while (c < n && is_digit(*c))
            c++;
        if (c > cd && c < n && *c == ']' && c + 1 < n && is_ws(c[1])) {
            m->cpu.s = cd;
            m->cpu.e = c;
            j = c + 1;
            while (j < n && is_ws(*j))
                j++;
        }
    }
    /* optional sec.frac: with its choice: taken first, skipped if the rest then fails */
    m->sec.s = m->sec.e = m->frac.s = m->frac.e = NULL;
    {
        const char *s = j;
        while (s < n && is_digit(*s))
            s++;
        if (s > j && s < n && *s == '.') {
            const char *f = s + 1, *fd = f;
            while (f < n && is_digit(*f))
                f++;
            if (f > fd && f < n && *f == ':' && f + 1 < n && is_ws(f[1])) {
                const char *w = f + 1;
                while (w < n && is_ws(*w))
                    w++;
                if (post(w, n, m)) {
                    m->sec.s = j;
                    m->sec.e = s;
                    m->frac.s = fd;
                    m->frac.e = f;
                    return 1;
                }
            }
        }
    }
    return post(j, n, m);
}

static int match_event(const char *l, const char *n, evm_t *m) {
    const char *k = l;
    while (k < n && is_ws(*k))
        k++;
    for (const char *i = k + 1; i < n; i++) {
        if (is_ws(*i) && !is_ws(i[-1])) {
            if (rest(i, n, m)) {
                m->comm.s = k;
                m->comm.e = i;
                return 1;
            }
        }
    }
    return 0;
}

/* -- the PMU names whose "name:modifiers" is a sample event, not "sys:event" --------------------------------- */

typedef struct {
    const char *p;
    size_t n;
} name_t;

#define MAX_PMU 256

typedef struct {
    name_t v[MAX_PMU];
    int n;
} pmu_t;

static int pmu_has(const pmu_t *pm, const char *s, size_t n) {
    for (int i = 0; i < pm->n; i++)
        if (pm->v[i].n == n && memcmp(pm->v[i].p, s, n) == 0)
            return 1;
    return 0;
}

static inline int is_modifier(char c) { return c != '\0' && strchr("ukhIGHpPSDWeb", c) != NULL; }

/* -- parsing state ------------------------------------------------------------------------------------------ */

typedef struct {
    /* events */
    buf_t line_no, ts, cpu, cpu_valid, pid, tgid, tgid_valid, chain_start, fraclen;
    int64_t n_ev, cpu_nulls, tgid_nulls;
    strcol_t comm, system, event, payload;
    /* frames */
    strcol_t addr, sym, off, dso;
    int64_t n_fr;
    /* lines handed back */
    buf_t u_text, u_nos;
    int64_t n_u;
    int64_t n_blank;
} out_t;

typedef struct {
    int64_t n_ev, n_fr, n_blank, cpu_nulls, tgid_nulls;
    strcol_mark_t comm, system, event, payload, addr, sym, off, dso;
} mark_t;

static void out_init(out_t *o) {
    memset(o, 0, sizeof *o);
    sc_init(&o->comm);
    sc_init(&o->system);
    sc_init(&o->event);
    sc_init(&o->payload);
    sc_init(&o->addr);
    sc_init(&o->sym);
    sc_init(&o->off);
    sc_init(&o->dso);
}

static void out_free(out_t *o) {
    buf_t *bs[] = {&o->line_no, &o->ts, &o->cpu, &o->cpu_valid, &o->pid, &o->tgid, &o->tgid_valid,
                   &o->chain_start, &o->fraclen, &o->u_text, &o->u_nos};
    for (size_t i = 0; i < sizeof bs / sizeof *bs; i++)
        buf_free(bs[i]);
    strcol_t *cs[] = {&o->comm, &o->system, &o->event, &o->payload, &o->addr, &o->sym, &o->off, &o->dso};
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++)
        sc_free(cs[i]);
}

static int out_oom(const out_t *o) {
    const buf_t *bs[] = {&o->line_no, &o->ts, &o->cpu, &o->cpu_valid, &o->pid, &o->tgid, &o->tgid_valid,
                         &o->chain_start, &o->fraclen, &o->u_text, &o->u_nos};
    for (size_t i = 0; i < sizeof bs / sizeof *bs; i++)
        if (bs[i]->oom)
            return 1;
    const strcol_t *cs[] = {&o->comm, &o->system, &o->event, &o->payload, &o->addr, &o->sym, &o->off, &o->dso};
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++)
        if (sc_oom(cs[i]))
            return 1;
    return o->n_fr > INT32_MAX;
}

static mark_t out_mark(const out_t *o) {
    mark_t m;
    m.n_ev = o->n_ev;
    m.n_fr = o->n_fr;
    m.n_blank = o->n_blank;
    m.cpu_nulls = o->cpu_nulls;
    m.tgid_nulls = o->tgid_nulls;
    m.comm = sc_mark(&o->comm);
    m.system = sc_mark(&o->system);
    m.event = sc_mark(&o->event);
    m.payload = sc_mark(&o->payload);
    m.addr = sc_mark(&o->addr);
    m.sym = sc_mark(&o->sym);
    m.off = sc_mark(&o->off);
    m.dso = sc_mark(&o->dso);
    return m;
}

static void out_rollback(out_t *o, const mark_t *m) {
    size_t ne = (size_t)m->n_ev;
    o->n_ev = m->n_ev;
    o->n_fr = m->n_fr;
    o->n_blank = m->n_blank;
    o->cpu_nulls = m->cpu_nulls;
    o->tgid_nulls = m->tgid_nulls;
    o->line_no.len = o->ts.len = ne * 8;
    o->cpu.len = o->pid.len = o->tgid.len = o->chain_start.len = ne * 4;
    o->cpu_valid.len = o->tgid_valid.len = o->fraclen.len = ne;
    sc_rollback(&o->comm, m->comm);
    sc_rollback(&o->system, m->system);
    sc_rollback(&o->event, m->event);
    sc_rollback(&o->payload, m->payload);
    sc_rollback(&o->addr, m->addr);
    sc_rollback(&o->sym, m->sym);
    sc_rollback(&o->off, m->off);
    sc_rollback(&o->dso, m->dso);
}

/* decimal digits (at most 9, optional leading '-') -> int32 */
static inline int32_t small_int(span_t s) {
    const char *p = s.s;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    int32_t v = 0;
    for (; p < s.e; p++)
        v = v * 10 + (*p - '0');
    return neg ? -v : v;
}

static inline int fits9(span_t s) {
    const char *p = s.s;
    if (p < s.e && *p == '-')
        p++;
    return s.e - p <= 9;
}

enum { L_BLANK, L_EVENT, L_FRAME, L_OTHER };

/* An event line the Python rules would parse to exactly these columns? Then emit it and return 1. */
static int take_event(out_t *o, const char *l, const char *n, int64_t line_no, const pmu_t *pm) {
    evm_t m;
    if (!match_event(l, n, &m) || m.sec.s == NULL)
        return 0;
    if (!fits9(m.pid) || (m.tid.s && !fits9(m.tid)) || (m.cpu.s && !fits9(m.cpu)) || m.sec.e - m.sec.s > 9)
        return 0;
    /* sys:event split (PerfScriptParser._event_columns) */
    const char *ev = m.ev.s, *eve = m.ev.e;
    const char *colon = memchr(ev, ':', (size_t)(eve - ev));
    int has_sys = 0;
    if (colon && !memchr(ev, '/', (size_t)(eve - ev))) {
        size_t plen = (size_t)(colon - ev);
        int pmu_like = pmu_has(pm, ev, plen) || memchr(ev, '-', plen) || memchr(ev, '/', plen);
        int mods = colon + 1 < eve;
        for (const char *q = colon + 1; q < eve && mods; q++)
            mods = is_modifier(*q);
        has_sys = !(pmu_like && mods);
    }
    /* a payload that may be a same-line frame (sample events) is Python's */
    if (!has_sys && m.payload.s) {
        const char *q = m.payload.s, *pe = m.payload.e;
        while (q < pe && is_hex(*q))
            q++;
        if (q > m.payload.s && q < pe && is_ws(*q)) {
            while (q < pe && is_ws(*q))
                q++;
            if (q < pe)
                return 0;
        }
    }
    int64_t sec = 0, frac = 0;
    for (const char *q = m.sec.s; q < m.sec.e; q++)
        sec = sec * 10 + (*q - '0');
    int fl = (int)(m.frac.e - m.frac.s);
    for (int k = 0; k < 9; k++)
        frac = frac * 10 + (k < fl ? (m.frac.s[k] - '0') : 0);
    buf_i64(&o->line_no, line_no);
    buf_i64(&o->ts, sec * 1000000000LL + frac);
    if (m.cpu.s) {
        buf_i32(&o->cpu, small_int(m.cpu));
        buf_u8(&o->cpu_valid, 1);
    } else {
        buf_i32(&o->cpu, 0);
        buf_u8(&o->cpu_valid, 0);
        o->cpu_nulls++;
    }
    if (m.tid.s) {
        buf_i32(&o->pid, small_int(m.tid));
        buf_i32(&o->tgid, small_int(m.pid));
        buf_u8(&o->tgid_valid, 1);
    } else {
        buf_i32(&o->pid, small_int(m.pid));
        buf_i32(&o->tgid, 0);
        buf_u8(&o->tgid_valid, 0);
        o->tgid_nulls++;
    }
    buf_i32(&o->chain_start, (int32_t)o->n_fr);
    buf_u8(&o->fraclen, (uint8_t)(fl > 255 ? 255 : fl));
    sc_push(&o->comm, m.comm.s, (size_t)(m.comm.e - m.comm.s));
    if (has_sys) {
        sc_push(&o->system, ev, (size_t)(colon - ev));
        sc_push(&o->event, colon + 1, (size_t)(eve - colon - 1));
    } else {
        sc_null(&o->system);
        sc_push(&o->event, ev, (size_t)(eve - ev));
    }
    if (m.payload.s)
        sc_push(&o->payload, m.payload.s, (size_t)(m.payload.e - m.payload.s));
    else
        sc_push(&o->payload, "", 0);
    o->n_ev++;
    return 1;
}

/* A TAB frame line parse_frames takes on its fast path? Then emit it and return 1. [l, n) is the line. */
static int take_frame(out_t *o, const char *l, const char *n) {
    const char *s0 = l, *s1 = n;
    while (s0 < s1 && is_ws(*s0))
        s0++;
    while (s1 > s0 && is_ws(s1[-1]))
        s1--;
    if (s0 == s1)
        return 0;
    const char *sp = memchr(s0, ' ', (size_t)(s1 - s0));
    const char *ae = sp ? sp : s1;
    for (const char *q = s0; q < ae; q++)
        if (!is_hex(*q))
            return 0;
    if (ae == s0)
        return 0;
    if (!sp) {
        sc_push(&o->addr, s0, (size_t)(ae - s0));
        sc_null(&o->sym);
        sc_null(&o->off);
        sc_null(&o->dso);
        o->n_fr++;
        return 1;
    }
    const char *rs = sp + 1, *re = s1; /* rest, never empty here */
    const char *ds = NULL, *de = NULL, *se = re;
    if (re[-1] == ')') {
        const char *q = re - 1;
        while (q > rs && q[-1] != '(')
            q--;
        /* q: just after the last '(' (or rs when there is none) */
        if (q == rs)
            return 0;
        const char *lp = q - 1;
        if (lp == rs || !is_ws(lp[-1]))
            return 0;
        for (const char *t = q; t < re - 1; t++)
            if (*t == ')')
                return 0;
        ds = q;
        de = re - 1;
        se = lp - 1;
    }
    while (se > rs && is_ws(se[-1]))
        se--;
    /* +0xHEX at the end of sym+off */
    const char *os = NULL;
    {
        const char *q = se;
        while (q > rs && q[-1] != '+')
            q--;
        if (q > rs) {
            const char *h = q;
            if (se - h >= 3 && h[0] == '0' && h[1] == 'x') {
                int ok = 1;
                for (const char *t = h + 2; t < se; t++)
                    if (!is_hex(*t)) {
                        ok = 0;
                        break;
                    }
                if (ok)
                    os = h;
            }
        }
    }
    sc_push(&o->addr, s0, (size_t)(ae - s0));
    const char *sye = os ? os - 1 : se;
    if (sye > rs)
        sc_push(&o->sym, rs, (size_t)(sye - rs));
    else
        sc_null(&o->sym);
    if (os)
        sc_push(&o->off, os, (size_t)(se - os));
    else
        sc_null(&o->off);
    if (ds && de > ds)
        sc_push(&o->dso, ds, (size_t)(de - ds));
    else
        sc_null(&o->dso);
    o->n_fr++;
    return 1;
}

/* Classify [l, n) (CR already off) and emit it when sure. */
static int line_kind(const char *l, const char *n) {
    int blank = 1;
    for (const char *q = l; q < n; q++) {
        unsigned char c = (unsigned char)*q;
        if (c == '\t')
            continue;
        if (c < 0x20 || c > 0x7e)
            return L_OTHER;
        if (c != ' ')
            blank = 0;
        if (c == 'P' && n - q >= 12 && memcmp(q, "PERF_RECORD_", 12) == 0)
            return L_OTHER;
    }
    if (blank)
        return L_BLANK;
    if (*l == '\t')
        return L_FRAME;
    if (*l == '#')
        return L_OTHER;
    return L_EVENT;
}

static void hand_back(out_t *o, const char *s, const char *e, int64_t first_no, int64_t n_lines) {
    buf_put(&o->u_text, s, (size_t)(e - s));
    buf_put(&o->u_text, "\n", 1);
    for (int64_t k = 0; k < n_lines; k++)
        buf_i64(&o->u_nos, first_no + k);
    o->n_u += n_lines;
}

enum { SEG_NONE, SEG_SURE, SEG_UNSURE };

typedef struct {
    int64_t n_lines, carry_line, carry_byte;
} result_t;

static void run(const char *d, size_t len, int64_t first_no, int final, const pmu_t *pm, out_t *o, result_t *r) {
    size_t end = len;
    if (end > 0 && d[end - 1] == '\n')
        end--;
    size_t pos = 0;
    int64_t idx = 0;
    int seg = SEG_NONE;
    size_t seg_byte = 0;
    int64_t seg_line = 0;
    mark_t mk;
    memset(&mk, 0, sizeof mk);
    r->carry_line = -1;
    r->carry_byte = -1;
    for (;;) {
        const char *nl = memchr(d + pos, '\n', end - pos);
        size_t le = nl ? (size_t)(nl - d) : end;
        const char *l = d + pos, *n = d + le;
        if (n > l && n[-1] == '\r')
            n--;
        int64_t no = first_no + idx;
        int k = line_kind(l, n);
        if (k == L_EVENT) {
            mark_t m2 = out_mark(o);
            if (take_event(o, l, n, no, pm)) {
                seg = SEG_SURE;
                mk = m2;
                seg_byte = pos;
                seg_line = idx;
                goto next;
            }
            k = L_OTHER;
        }
        if (seg == SEG_SURE) {
            if (k == L_BLANK) {
                o->n_blank++;
                goto next;
            }
            if (k == L_FRAME && take_frame(o, l, n))
                goto next;
            /* this record is not sure: all of it from its event line goes to Python */
            out_rollback(o, &mk);
            hand_back(o, d + seg_byte, d + le, first_no + seg_line, idx - seg_line + 1);
            seg = SEG_UNSURE;
            goto next;
        }
        hand_back(o, l, d + le, no, 1);
    next:
        idx++;
        if (!nl)
            break;
        pos = le + 1;
    }
    r->n_lines = idx;
    if (!final && seg == SEG_SURE) {
        out_rollback(o, &mk);
        r->carry_line = seg_line;
        r->carry_byte = (int64_t)seg_byte;
    }
}

/* -- Python glue ------------------------------------------------------------------------------------------ */

static PyObject *bytes_of(const buf_t *b) { return PyBytes_FromStringAndSize(b->p ? b->p : "", (Py_ssize_t)b->len); }

/* one validity byte per row -> Arrow bitmap (LSB first) as bytes; None when there are no nulls */
static PyObject *bitmap_of(const buf_t *v, int64_t n, int64_t nulls) {
    if (nulls == 0)
        Py_RETURN_NONE;
    Py_ssize_t nb = (Py_ssize_t)((n + 7) / 8);
    PyObject *b = PyBytes_FromStringAndSize(NULL, nb);
    if (!b)
        return NULL;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(b);
    memset(p, 0, (size_t)nb);
    const unsigned char *src = (const unsigned char *)v->p;
    for (int64_t i = 0; i < n; i++)
        if (src[i])
            p[i >> 3] |= (unsigned char)(1u << (i & 7));
    return b;
}

static int put(PyObject *dict, const char *key, PyObject *v) {
    if (!v)
        return -1;
    int rc = PyDict_SetItemString(dict, key, v);
    Py_DECREF(v);
    return rc;
}

static int put_str(PyObject *dict, const char *name, const strcol_t *c) {
    char k[64];
    snprintf(k, sizeof k, "%s_off", name);
    if (put(dict, k, bytes_of(&c->off)))
        return -1;
    snprintf(k, sizeof k, "%s_data", name);
    if (put(dict, k, bytes_of(&c->data)))
        return -1;
    snprintf(k, sizeof k, "%s_valid", name);
    if (put(dict, k, bitmap_of(&c->valid, c->n, c->nulls)))
        return -1;
    snprintf(k, sizeof k, "%s_nulls", name);
    return put(dict, k, PyLong_FromLongLong(c->nulls));
}

static PyObject *py_parse(PyObject *self, PyObject *args) {
    Py_buffer data, pmub;
    long long first_no;
    int final;
    if (!PyArg_ParseTuple(args, "y*Lpy*", &data, &first_no, &final, &pmub))
        return NULL;
    pmu_t pm;
    pm.n = 0;
    {
        const char *p = pmub.buf, *e = p + pmub.len;
        while (p < e && pm.n < MAX_PMU) {
            const char *z = memchr(p, '\n', (size_t)(e - p));
            const char *ze = z ? z : e;
            pm.v[pm.n].p = p;
            pm.v[pm.n].n = (size_t)(ze - p);
            pm.n++;
            p = z ? z + 1 : e;
        }
    }
    out_t o;
    out_init(&o);
    result_t r;
    Py_BEGIN_ALLOW_THREADS
    run(data.buf, (size_t)data.len, first_no, final, &pm, &o, &r);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&pmub);
    PyBuffer_Release(&data);
    if (out_oom(&o)) {
        out_free(&o);
        Py_RETURN_NONE; /* too big for int32 offsets or out of memory: the caller takes the Python path */
    }
    /* callchain: list offsets and validity (a record without frames has a NULL callchain) */
    buf_t chain_valid = {0};
    int64_t chain_nulls = 0;
    buf_i32(&o.chain_start, (int32_t)o.n_fr);
    {
        const int32_t *cs = (const int32_t *)o.chain_start.p;
        for (int64_t i = 0; i < o.n_ev; i++) {
            int v = cs[i + 1] > cs[i];
            buf_u8(&chain_valid, (uint8_t)v);
            chain_nulls += !v;
        }
    }
    if (chain_valid.oom || o.chain_start.oom) {
        buf_free(&chain_valid);
        out_free(&o);
        return PyErr_NoMemory();
    }
    PyObject *res = PyDict_New();
    if (!res)
        goto fail;
    if (put(res, "n_lines", PyLong_FromLongLong(r.n_lines)) ||
        put(res, "carry_line", PyLong_FromLongLong(r.carry_line)) ||
        put(res, "carry_byte", PyLong_FromLongLong(r.carry_byte)) ||
        put(res, "n_events", PyLong_FromLongLong(o.n_ev)) ||
        put(res, "n_frames", PyLong_FromLongLong(o.n_fr)) ||
        put(res, "n_blank", PyLong_FromLongLong(o.n_blank)) ||
        put(res, "n_handed", PyLong_FromLongLong(o.n_u)) ||
        put(res, "handed_text", bytes_of(&o.u_text)) ||
        put(res, "handed_nos", bytes_of(&o.u_nos)) ||
        put(res, "first_frac_len", PyLong_FromLong(o.n_ev ? (long)(unsigned char)o.fraclen.p[0] : -1)) ||
        put(res, "line_no", bytes_of(&o.line_no)) ||
        put(res, "ts_ns", bytes_of(&o.ts)) ||
        put(res, "cpu", bytes_of(&o.cpu)) ||
        put(res, "cpu_valid", bitmap_of(&o.cpu_valid, o.n_ev, o.cpu_nulls)) ||
        put(res, "cpu_nulls", PyLong_FromLongLong(o.cpu_nulls)) ||
        put(res, "pid", bytes_of(&o.pid)) ||
        put(res, "tgid", bytes_of(&o.tgid)) ||
        put(res, "tgid_valid", bitmap_of(&o.tgid_valid, o.n_ev, o.tgid_nulls)) ||
        put(res, "tgid_nulls", PyLong_FromLongLong(o.tgid_nulls)) ||
        put(res, "chain_off", bytes_of(&o.chain_start)) ||
        put(res, "chain_valid", bitmap_of(&chain_valid, o.n_ev, chain_nulls)) ||
        put(res, "chain_nulls", PyLong_FromLongLong(chain_nulls)) ||
        put_str(res, "comm", &o.comm) || put_str(res, "system", &o.system) || put_str(res, "event", &o.event) ||
        put_str(res, "payload", &o.payload) || put_str(res, "addr", &o.addr) || put_str(res, "sym", &o.sym) ||
        put_str(res, "off", &o.off) || put_str(res, "dso", &o.dso))
        goto fail;
    buf_free(&chain_valid);
    out_free(&o);
    return res;
fail:
    Py_XDECREF(res);
    buf_free(&chain_valid);
    out_free(&o);
    return NULL;
}

static PyMethodDef methods[] = {
    {"parse", py_parse, METH_VARARGS,
     "parse(data: bytes, first_line_no: int, final: bool, pmu: bytes) -> dict | None\n\n"
     "The sure records of a block of perf script lines as Arrow buffers, and every other line (text and "
     "numbers) for the Python rules; None when the block is too big for int32 offsets."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_c_perf_script",
                                    "Compiled fast path of ksmtrace.ingest.perf_script.", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__c_perf_script(void) { return PyModule_Create(&module); }
