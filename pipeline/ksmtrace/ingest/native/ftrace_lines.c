/* Compiled fast path of the ftrace event-line parser (ksmtrace.ingest._ftrace_lines).
 *
 * parse_chunk(data, first_line_no) splits a chunk of whole lines (bytes) at LF and parses every line it is
 * certain of: printable ASCII (after the trailing-whitespace strip of the Python rules) in the common
 * "%16s-%-7d [%03d] flags ts: rest" layout, or in the layout GENERAL_RE takes (record-tgid column, unpadded
 * comm), whose rest is an event ("name: payload", "name:"), a function-tracer line ("func <-parent") or a
 * trace_printk text; kprobe "(loc)" / kretprobe "(caller <- func)" payloads and "sym+0x../0x.." event names
 * are split as the Python rules split them. Every other line (headers, markers, stack records and frames,
 * tabs, control bytes, non-ASCII, numbers out of range, other layouts, anything not certain) is returned by
 * line number, raw, for the Python rules. The rules emulated here are those of _ftrace_lines._fast_prefix,
 * _GENERAL_PREFIX_RE, _split_rest, exact_ns (base.py); each is quoted where it is emulated.
 *
 * Returns a dict of Arrow buffers (bytes): int64 line_no/ts_ns, int32 cpu/pid/tgid (+ validity), and for the
 * string columns int32 offsets, UTF-8 data and a validity bitmap (None when no NULL), plus the timestamp unit
 * facts (all_dot, max_fraclen) and the rejected lines (int64 line numbers, their raw bytes joined by LF).
 * No global state; the GIL is released while parsing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define INT32_MAX_V 2147483647LL
#define INT64_MAX_V 9223372036854775807LL
/* largest whole second whose ns value fits int64, and the largest fraction (ns) at that second */
#define MAX_SEC 9223372036LL
#define MAX_SEC_FRAC 854775807LL

/* ------------------------------------------------------------------ output buffers
 *
 * Every output buffer is a bytes object allocated (with the GIL) at an upper bound of its size before the parse,
 * filled without the GIL and shrunk to its length at the end: no copy, no realloc. The bounds: at most one row
 * per line; a string column's values are substrings of their lines (or a literal no longer than any line that
 * gets it), so its data never exceeds the chunk; each put still checks its bound. */

typedef struct {
    PyObject *obj;
    char *p;
    size_t n, cap;
} Buf;

static int buf_alloc(Buf *b, size_t cap) {
    b->obj = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap);
    if (!b->obj)
        return -1;
    b->p = PyBytes_AS_STRING(b->obj);
    b->n = 0;
    b->cap = cap;
    return 0;
}

static inline int buf_put(Buf *b, const void *src, size_t len) {
    if (len > b->cap - b->n)
        return -1;
    memcpy(b->p + b->n, src, len);
    b->n += len;
    return 0;
}

/* the bytes object, shrunk to its length (a new reference; the Buf gives it up) */
static PyObject *buf_take(Buf *b) {
    PyObject *o = b->obj;
    b->obj = NULL;
    if (o && _PyBytes_Resize(&o, (Py_ssize_t)b->n) < 0)
        return NULL;
    return o;
}

static void buf_free(Buf *b) { Py_CLEAR(b->obj); }

/* validity bitmap (Arrow: LSB first); n = number of values so far */
static inline int bits_put(Buf *b, int64_t n, int valid) {
    if ((n & 7) == 0) {
        if (b->n >= b->cap)
            return -1;
        b->p[b->n++] = 0;
    }
    if (valid)
        b->p[n >> 3] |= (char)(1u << (n & 7));
    return 0;
}

typedef struct {
    Buf off, data, valid;
    int64_t n, nulls;
} StrCol;

static int strcol_alloc(StrCol *c, size_t rows, size_t data) {
    int32_t z = 0;
    if (buf_alloc(&c->off, 4 * (rows + 1)) || buf_alloc(&c->data, data) || buf_alloc(&c->valid, rows / 8 + 1))
        return -1;
    return buf_put(&c->off, &z, sizeof z);
}

static inline int strcol_put(StrCol *c, const char *s, Py_ssize_t len, int valid) {
    if (!valid)
        len = 0;
    if (bits_put(&c->valid, c->n, valid))
        return -1;
    if (len && buf_put(&c->data, s, (size_t)len))
        return -1;
    int32_t end = (int32_t)c->data.n;
    if (buf_put(&c->off, &end, sizeof end))
        return -1;
    c->n++;
    c->nulls += !valid;
    return 0;
}

static void strcol_free(StrCol *c) {
    buf_free(&c->off);
    buf_free(&c->data);
    buf_free(&c->valid);
}

/* ------------------------------------------------------------------ one line */

typedef struct {
    const char *p;
    Py_ssize_t len;
    int valid;
} Str;

typedef struct {
    int64_t ts;
    int32_t cpu, pid, tgid;
    int tgid_valid;
    int dot;
    Py_ssize_t fraclen;
    Str comm, flags, event, payload, func, parent, kind;
} Row;

enum { TAKE = 0, REJECT = 1, NOT_THIS = 2 };

static Str str_of(const char *p, Py_ssize_t len) {
    Str s = {p, len, 1};
    return s;
}

static const Str NULL_STR = {NULL, 0, 0};

static inline int is_digit(char c) { return c >= '0' && c <= '9'; }

static inline int is_hex(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* [.A-Za-z0-9] of GENERAL_RE's flags group */
static inline int is_flag_char(char c) {
    return c == '.' || is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/* first index of the two-byte sequence a b in l[0:n], or -1 */
static Py_ssize_t find2(const char *l, Py_ssize_t n, char a, char b) {
    Py_ssize_t i = 0;
    while (i + 1 < n) {
        const char *q = memchr(l + i, a, (size_t)(n - 1 - i));
        if (!q)
            return -1;
        i = q - l;
        if (l[i + 1] == b)
            return i;
        i++;
    }
    return -1;
}

static Py_ssize_t find1(const char *l, Py_ssize_t n, char a) {
    const char *q = n > 0 ? memchr(l, a, (size_t)n) : NULL;
    return q ? q - l : -1;
}

/* decimal digits (all of s[0:n], n >= 1) -> value; -1 when it exceeds lim (polars' cast gives NULL) */
static int64_t digits_value(const char *s, Py_ssize_t n, int64_t lim) {
    if (n < 1)
        return -1;
    int64_t v = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return -1;
        int d = s[i] - '0';
        if (v > (lim - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    return v;
}

/* t[0:n] is "\d+(\.\d+)?": the timestamp -> exact int64 ns (base.exact_ns); returns REJECT when out of range.
 * Sets ts, dot, fraclen. */
static int ts_value(const char *t, Py_ssize_t n, Row *r) {
    Py_ssize_t dot = find1(t, n, '.');
    Py_ssize_t ns = dot < 0 ? n : dot;
    int64_t sec = digits_value(t, ns, INT64_MAX_V);
    if (sec < 0)
        return REJECT; /* sec.cast(Int64) is NULL: out of range */
    if (dot < 0) {
        r->ts = sec; /* a counter value, kept raw */
        r->dot = 0;
        r->fraclen = 0;
        return TAKE;
    }
    const char *f = t + dot + 1;
    Py_ssize_t fl = n - dot - 1;
    int64_t frac = 0;
    for (Py_ssize_t i = 0; i < 9; i++)
        frac = frac * 10 + (i < fl ? f[i] - '0' : 0);
    if (!(sec < MAX_SEC || (sec == MAX_SEC && frac <= MAX_SEC_FRAC)))
        return REJECT;
    r->ts = sec * 1000000000LL + frac;
    r->dot = 1;
    r->fraclen = fl;
    return TAKE;
}

/* t[0:n] matches ^\d+(?:\.\d+)?$ */
static int is_ts_text(const char *t, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n && is_digit(t[i]))
        i++;
    if (i == 0)
        return 0;
    if (i == n)
        return 1;
    if (t[i] != '.')
        return 0;
    Py_ssize_t j = ++i;
    while (i < n && is_digit(t[i]))
        i++;
    return i > j && i == n;
}

/* what polars' non-strict string -> int cast does with s[0:n]: TAKE (decimal digits: a value, or NULL when it
 * does not fit, see digits_value), NOT_THIS (certainly NULL: empty, or a character other than a digit or a
 * sign), REJECT (a sign: left to the cast) */
static int cast_kind(const char *s, Py_ssize_t n) {
    if (n < 1)
        return NOT_THIS;
    int sign = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s[i] == '+' || s[i] == '-')
            sign = 1;
        else if (!is_digit(s[i]))
            return NOT_THIS;
    }
    return sign ? REJECT : TAKE;
}

/* _fast_prefix: comm = l[0:16].lstrip(" "), "-" at 16, "[" at 23 or 25 = (first "] ") - 4, pid = l[17:[].rstrip(" "),
 * cpu = the 3 characters before "]", flags = up to the first space after "] " (4..7 bytes), ts up to the first
 * ": " of the line, rest after it. TAKE: the line is that layout; NOT_THIS: certainly not (the Python rules
 * try GENERAL_RE next); REJECT: not certain (e.g. a pid the cast may take, like "+5"). */
static int try_fast(const char *l, Py_ssize_t L, Row *r, Str *rest) {
    Py_ssize_t b = find2(l, L, ']', ' ');
    if (b < 0)
        return NOT_THIS;
    Py_ssize_t hl = b - 4;
    if ((hl != 23 && hl != 25) || l[hl] != '[' || l[16] != '-')
        return NOT_THIS;
    Py_ssize_t p = find2(l, L, ':', ' ');
    if (p < 0 || p <= b)
        return NOT_THIS;
    const char *fts = l + b + 2;
    Py_ssize_t fl = p - b - 2;
    Py_ssize_t sp = find1(fts, fl, ' ');
    if (sp < 0)
        return NOT_THIS; /* ts = slice(NULL) is NULL */
    if (sp > 0) {
        if (sp < 4 || sp > 7)
            return NOT_THIS;
        r->flags = str_of(fts, sp);
    } else {
        r->flags = NULL_STR;
    }
    Py_ssize_t t = sp;
    while (t < fl && fts[t] == ' ')
        t++;
    if (!is_ts_text(fts + t, fl - t))
        return NOT_THIS;
    /* pid and cpu: clean digits are certain, and so is text polars' cast cannot take (empty, or a character
     * that is no digit or sign, like the "(-----)" of the tgid layout); a sign is left to the cast */
    Py_ssize_t pe = hl;
    while (pe > 17 && l[pe - 1] == ' ')
        pe--;
    int cp = cast_kind(l + 17, pe - 17), cc = cast_kind(l + b - 3, 3);
    if (cp == NOT_THIS || cc == NOT_THIS)
        return NOT_THIS;
    int64_t pid = digits_value(l + 17, pe - 17, INT32_MAX_V);
    int64_t cpu = digits_value(l + b - 3, 3, INT32_MAX_V);
    if (cp == REJECT || cc == REJECT || pid < 0 || cpu < 0)
        return REJECT;
    if (ts_value(fts + t, fl - t, r) != TAKE)
        return REJECT;
    Py_ssize_t c = 0;
    while (c < 16 && l[c] == ' ')
        c++;
    r->comm = str_of(l + c, 16 - c);
    r->pid = (int32_t)pid;
    r->cpu = (int32_t)cpu;
    r->tgid_valid = 0;
    r->tgid = 0;
    *rest = str_of(l + p + 2, L - p - 2);
    return TAKE;
}

/* GENERAL_RE (ASCII, so \s is the space):
 *   ^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*(?P<tgid>\d+|-+)\)\s+)?\[(?P<cpu>\d+)\]\s+
 *   (?:(?P<flags>[.A-Za-z0-9]{4,7})\s+)?(?P<ts>\d+(?:\.\d+)?):(?: (?P<rest>.*))?$
 * comm is lazy: the first "-" after the leading spaces from which the rest matches. Past that "-" the pattern
 * is deterministic (every repetition is followed by a character it cannot take). */
static int general_tail(const char *l, Py_ssize_t L, Py_ssize_t j, Row *r, Str *rest) {
    Py_ssize_t k = j;
    while (k < L && is_digit(l[k]))
        k++;
    if (k == j)
        return NOT_THIS;
    Py_ssize_t pid0 = j, pid1 = k;
    j = k;
    while (k < L && l[k] == ' ')
        k++;
    if (k == j)
        return NOT_THIS;
    Py_ssize_t tg0 = -1, tg1 = -1;
    int tg_digits = 0;
    if (k < L && l[k] == '(') {
        k++;
        while (k < L && l[k] == ' ')
            k++;
        j = k;
        if (k < L && is_digit(l[k])) {
            while (k < L && is_digit(l[k]))
                k++;
            tg_digits = 1;
        } else {
            while (k < L && l[k] == '-')
                k++;
        }
        if (k == j || k >= L || l[k] != ')')
            return NOT_THIS;
        tg0 = j;
        tg1 = k;
        k++;
        j = k;
        while (k < L && l[k] == ' ')
            k++;
        if (k == j)
            return NOT_THIS;
    }
    if (k >= L || l[k] != '[')
        return NOT_THIS;
    j = ++k;
    while (k < L && is_digit(l[k]))
        k++;
    if (k == j || k >= L || l[k] != ']')
        return NOT_THIS;
    Py_ssize_t cpu0 = j, cpu1 = k;
    j = ++k;
    while (k < L && l[k] == ' ')
        k++;
    if (k == j)
        return NOT_THIS;
    /* optional flags: a run of 4..7 flag characters followed by a space */
    Py_ssize_t f = k;
    while (f < L && f - k < 8 && is_flag_char(l[f]))
        f++;
    Str flags = NULL_STR;
    if (f - k >= 4 && f - k <= 7 && f < L && l[f] == ' ') {
        flags = str_of(l + k, f - k);
        k = f;
        while (k < L && l[k] == ' ')
            k++;
    }
    /* ts: \d+(\.\d+)? then ":" */
    Py_ssize_t t0 = k;
    while (k < L && is_digit(l[k]))
        k++;
    if (k == t0)
        return NOT_THIS;
    if (k < L && l[k] == '.') {
        Py_ssize_t d = ++k;
        while (k < L && is_digit(l[k]))
            k++;
        if (k == d)
            return NOT_THIS;
    }
    Py_ssize_t t1 = k;
    if (k >= L || l[k] != ':')
        return NOT_THIS;
    k++;
    if (k < L && l[k] != ' ')
        return NOT_THIS;
    /* the match: numbers that do not fit are malformed lines (the Python rules count them) */
    int64_t pid = digits_value(l + pid0, pid1 - pid0, INT32_MAX_V);
    int64_t cpu = digits_value(l + cpu0, cpu1 - cpu0, INT32_MAX_V);
    if (pid < 0 || cpu < 0)
        return REJECT;
    if (tg_digits) {
        int64_t tg = digits_value(l + tg0, tg1 - tg0, INT32_MAX_V);
        if (tg < 0)
            return REJECT;
        r->tgid = (int32_t)tg;
        r->tgid_valid = 1;
    } else {
        r->tgid = 0;
        r->tgid_valid = 0;
    }
    if (ts_value(l + t0, t1 - t0, r) != TAKE)
        return REJECT;
    r->pid = (int32_t)pid;
    r->cpu = (int32_t)cpu;
    r->flags = flags;
    *rest = k < L ? str_of(l + k + 1, L - k - 1) : str_of(l + L, 0);
    return TAKE;
}

static int try_general(const char *l, Py_ssize_t L, Row *r, Str *rest) {
    Py_ssize_t c = 0;
    while (c < L && l[c] == ' ')
        c++;
    int tries = 0;
    /* every "-" from c on, in order */
    for (Py_ssize_t d = c; d < L; d++) {
        if (l[d] != '-')
            continue;
        if (++tries > 64)
            return REJECT; /* pathological line: the Python rules take it */
        int res = general_tail(l, L, d + 1, r, rest);
        if (res == NOT_THIS)
            continue;
        if (res == TAKE)
            r->comm = str_of(l + c, d - c);
        return res;
    }
    return NOT_THIS;
}

/* "\+0x[0-9a-fA-F]+/0x[0-9a-fA-F]+$" matches s[p:] (p is a '+') */
static int is_symoff_suffix(const char *s, Py_ssize_t n, Py_ssize_t p) {
    Py_ssize_t k = p + 1;
    if (k + 1 >= n || s[k] != '0' || s[k + 1] != 'x')
        return 0;
    k += 2;
    Py_ssize_t h = k;
    while (k < n && is_hex(s[k]))
        k++;
    if (k == h || k + 2 >= n || s[k] != '/' || s[k + 1] != '0' || s[k + 2] != 'x')
        return 0;
    k += 3;
    h = k;
    while (k < n && is_hex(s[k]))
        k++;
    return k > h && k == n;
}

/* the position of the match of "\+0x..+/0x..+$" in s, or -1: only the last '+' can start it */
static Py_ssize_t symoff_at(const char *s, Py_ssize_t n) {
    for (Py_ssize_t p = n - 1; p >= 0; p--) {
        if (s[p] == '+')
            return is_symoff_suffix(s, n, p) ? p : -1;
    }
    return -1;
}

static int has_space_or_paren(const char *s, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        if (s[i] == ' ' || s[i] == '(' || s[i] == ')')
            return 1;
    return 0;
}

static int has_char(const char *s, Py_ssize_t n, char c) { return find1(s, n, c) >= 0; }

static const char FUNCTION[] = "function";
static const char ENTRY[] = "entry";
static const char RETURN[] = "return";

/* _split_rest: rest -> event/payload/func/parent/kind; REJECT for stack records (their frames attach to them
 * in the Python rules) */
static int split_rest(Str rest, Row *r) {
    const char *s = rest.p;
    Py_ssize_t n = rest.len;
    r->event = r->payload = r->func = r->parent = r->kind = NULL_STR;
    Py_ssize_t q = find2(s, n, ':', ' ');
    int isev = q >= 0 && !has_space_or_paren(s, q);
    if (isev) {
        r->event = str_of(s, q);
        Py_ssize_t k = q + 2;
        while (k < n && s[k] == ' ')
            k++;
        r->payload = str_of(s + k, n - k);
    } else if (n >= 2 && s[n - 1] == ':' && !has_space_or_paren(s, n - 1)) {
        /* "^[^\s()]+:$": an event with an empty payload */
        r->event = str_of(s, n - 1);
        r->payload = str_of(s, 0);
    } else {
        if ((n == 13 && memcmp(s, "<stack trace>", 13) == 0) || (n == 18 && memcmp(s, "<user stack trace>", 18) == 0))
            return REJECT;
        /* FUNC_RE "^(?P<func>[^\s:()]+)(?: <-(?P<parent>\S+))?$" */
        Py_ssize_t f = 0;
        while (f < n && s[f] != ' ' && s[f] != ':' && s[f] != '(' && s[f] != ')')
            f++;
        int fm = 0;
        if (f > 0 && f == n) {
            fm = 1;
            r->parent = NULL_STR;
        } else if (f > 0 && n - f > 3 && s[f] == ' ' && s[f + 1] == '<' && s[f + 2] == '-'
                   && !has_char(s + f + 3, n - f - 3, ' ')) {
            fm = 1;
            r->parent = str_of(s + f + 3, n - f - 3);
        }
        if (fm) {
            r->event = str_of(FUNCTION, 8); /* function lines carry no payload */
            Py_ssize_t so = symoff_at(s, f);
            r->func = str_of(s, so >= 0 ? so : f);
        } else {
            r->payload = rest; /* trace_printk text: no event name */
        }
    }
    /* PROBE_RE "^\((?P<loc>[^\s()]+)(?: <- (?P<target>[^\s()]+))?\)(?: |$)" on event rows */
    if (r->event.valid && r->payload.valid && r->payload.len > 0 && r->payload.p[0] == '(') {
        const char *p = r->payload.p;
        Py_ssize_t m = r->payload.len, k = 1;
        while (k < m && p[k] != ' ' && p[k] != '(' && p[k] != ')')
            k++;
        Str loc = str_of(p + 1, k - 1), tgt = NULL_STR;
        int ok = 0;
        if (k > 1 && k < m) {
            if (p[k] == ')' && (k + 1 == m || p[k + 1] == ' ')) {
                ok = 1;
            } else if (k + 3 < m && p[k] == ' ' && p[k + 1] == '<' && p[k + 2] == '-' && p[k + 3] == ' ') {
                Py_ssize_t t0 = k + 4, t = t0;
                while (t < m && p[t] != ' ' && p[t] != '(' && p[t] != ')')
                    t++;
                if (t > t0 && t < m && p[t] == ')' && (t + 1 == m || p[t + 1] == ' ')) {
                    ok = 1;
                    tgt = str_of(p + t0, t - t0);
                }
            }
        }
        if (ok) {
            r->kind = tgt.valid ? str_of(RETURN, 6) : str_of(ENTRY, 5);
            Str fn = tgt.valid ? tgt : loc;
            Py_ssize_t so = symoff_at(fn.p, fn.len);
            r->func = str_of(fn.p, so >= 0 ? so : fn.len);
            if (tgt.valid)
                r->parent = loc;
        }
    }
    /* SYMOFF_RE "^(?P<sym>.+?)\+0x[0-9a-fA-F]+/0x[0-9a-fA-F]+$" on the event name (trace_printk with a caller) */
    if (r->event.valid) {
        Py_ssize_t so = symoff_at(r->event.p, r->event.len);
        if (so >= 1) {
            r->event.len = so;
            r->func = r->event;
        }
    }
    return TAKE;
}

/* printable ASCII after the strip of " \t\r\n\x0b\x0c" from the end; returns the stripped length or -1 */
static Py_ssize_t clean_len(const char *l, Py_ssize_t n) {
    while (n > 0) {
        char c = l[n - 1];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\x0b' || c == '\x0c')
            n--;
        else
            break;
    }
    /* eight bytes at a time: a byte below 0x20 sets its high bit in (x - 0x20..) & ~x, a byte of 0x7f or more
     * in x | (x + 0x01..) (the carry out of a byte >= 0x80 only follows a byte already found) */
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, l + i, 8);
        if ((((x - ones * 0x20) & ~x) | x | (x + ones)) & highs)
            return -1;
    }
    for (; i < n; i++) {
        unsigned char c = (unsigned char)l[i];
        if (c < 0x20 || c > 0x7e)
            return -1;
    }
    return n;
}

static int parse_line(const char *l, Py_ssize_t raw_len, Row *r) {
    Py_ssize_t L = clean_len(l, raw_len);
    if (L <= 0)
        return REJECT;
    Str rest;
    int res = L > 27 ? try_fast(l, L, r, &rest) : NOT_THIS;
    if (res == NOT_THIS)
        res = try_general(l, L, r, &rest);
    if (res != TAKE)
        return REJECT;
    return split_rest(rest, r);
}

/* ------------------------------------------------------------------ the chunk */

typedef struct {
    Buf line_no, ts, cpu, pid, tgid, tgid_valid;
    StrCol comm, flags, event, payload, func, parent, kind;
    Buf rej_no, rej_data;
    int64_t n, n_rej, tgid_nulls;
    int all_dot;
    Py_ssize_t max_fraclen;
} Out;

static StrCol *out_strcols(Out *o, int i) {
    StrCol *cols[] = {&o->comm, &o->flags, &o->event, &o->payload, &o->func, &o->parent, &o->kind};
    return cols[i];
}
#define N_STRCOLS 7
static const char *STRCOL_NAMES[N_STRCOLS] = {"comm", "flags", "event", "payload", "func", "parent", "kind"};

static void out_free(Out *o) {
    Buf *bufs[] = {&o->line_no, &o->ts, &o->cpu, &o->pid, &o->tgid, &o->tgid_valid, &o->rej_no, &o->rej_data};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        buf_free(bufs[i]);
    for (int i = 0; i < N_STRCOLS; i++)
        strcol_free(out_strcols(o, i));
}

static int out_row(Out *o, int64_t line_no, const Row *r) {
    if (buf_put(&o->line_no, &line_no, 8) || buf_put(&o->ts, &r->ts, 8) || buf_put(&o->cpu, &r->cpu, 4)
        || buf_put(&o->pid, &r->pid, 4) || buf_put(&o->tgid, &r->tgid, 4)
        || bits_put(&o->tgid_valid, o->n, r->tgid_valid))
        return -1;
    o->tgid_nulls += !r->tgid_valid;
    const Str *s[] = {&r->comm, &r->flags, &r->event, &r->payload, &r->func, &r->parent, &r->kind};
    for (int i = 0; i < N_STRCOLS; i++)
        if (strcol_put(out_strcols(o, i), s[i]->p, s[i]->len, s[i]->valid))
            return -1;
    if (!r->dot)
        o->all_dot = 0;
    else if (r->fraclen > o->max_fraclen)
        o->max_fraclen = r->fraclen;
    o->n++;
    return 0;
}

static int out_reject(Out *o, int64_t line_no, const char *l, Py_ssize_t len) {
    if (o->n_rej && buf_put(&o->rej_data, "\n", 1))
        return -1;
    if (buf_put(&o->rej_no, &line_no, 8) || buf_put(&o->rej_data, l, (size_t)len))
        return -1;
    o->n_rej++;
    return 0;
}

static int parse_all(const char *data, Py_ssize_t n, int64_t first, Out *o) {
    Py_ssize_t s = 0;
    int64_t ln = first;
    /* _frame_of: one line per LF; a final LF ends the last line (no empty line after it) */
    while (s < n || (s == n && n == 0)) {
        const char *nl = memchr(data + s, '\n', (size_t)(n - s));
        Py_ssize_t e = nl ? nl - data : n;
        Row r;
        memset(&r, 0, sizeof r);
        if (parse_line(data + s, e - s, &r) == TAKE) {
            if (out_row(o, ln, &r))
                return -1;
        } else if (out_reject(o, ln, data + s, e - s)) {
            return -1;
        }
        ln++;
        if (!nl)
            break;
        s = e + 1;
        if (s == n)
            break;
    }
    return 0;
}

static int set_item(PyObject *d, const char *k, PyObject *v) {
    if (!v)
        return -1;
    int rc = PyDict_SetItemString(d, k, v);
    Py_DECREF(v);
    return rc;
}

static PyObject *valid_or_none(Buf *b, int64_t nulls) {
    if (nulls)
        return buf_take(b);
    Py_RETURN_NONE;
}

static int out_alloc(Out *o, size_t rows, size_t len) {
    if (buf_alloc(&o->line_no, 8 * rows) || buf_alloc(&o->ts, 8 * rows) || buf_alloc(&o->cpu, 4 * rows)
        || buf_alloc(&o->pid, 4 * rows) || buf_alloc(&o->tgid, 4 * rows) || buf_alloc(&o->tgid_valid, rows / 8 + 1)
        || buf_alloc(&o->rej_no, 8 * rows) || buf_alloc(&o->rej_data, len))
        return -1;
    for (int i = 0; i < N_STRCOLS; i++)
        if (strcol_alloc(out_strcols(o, i), rows, len))
            return -1;
    return 0;
}

static Py_ssize_t count_lines(const char *data, Py_ssize_t n) {
    Py_ssize_t k = 1;
    const char *p = data, *end = data + n;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        k++;
        p++;
    }
    return k;
}

static PyObject *parse_chunk(PyObject *self, PyObject *args) {
    Py_buffer view;
    long long first;
    if (!PyArg_ParseTuple(args, "y*L", &view, &first))
        return NULL;
    if (view.len >= INT32_MAX_V - 16) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE; /* int32 offsets: the Python rules take a chunk this large */
    }
    Out o;
    memset(&o, 0, sizeof o);
    o.all_dot = 1;
    Py_ssize_t rows;
    Py_BEGIN_ALLOW_THREADS
    rows = count_lines((const char *)view.buf, view.len);
    Py_END_ALLOW_THREADS
    PyObject *d = NULL;
    if (out_alloc(&o, (size_t)rows, (size_t)view.len + 1))
        goto fail;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = parse_all((const char *)view.buf, view.len, (int64_t)first, &o);
    Py_END_ALLOW_THREADS
    if (rc) {
        PyErr_SetString(PyExc_RuntimeError, "_c_ftrace_lines: an output buffer bound was exceeded");
        goto fail;
    }
    d = PyDict_New();
    if (!d)
        goto fail;
    if (set_item(d, "n", PyLong_FromLongLong(o.n)) || set_item(d, "line_no", buf_take(&o.line_no))
        || set_item(d, "ts_ns", buf_take(&o.ts)) || set_item(d, "cpu", buf_take(&o.cpu))
        || set_item(d, "pid", buf_take(&o.pid)) || set_item(d, "tgid", buf_take(&o.tgid))
        || set_item(d, "tgid_valid", valid_or_none(&o.tgid_valid, o.tgid_nulls))
        || set_item(d, "all_dot", PyBool_FromLong(o.all_dot))
        || set_item(d, "max_fraclen", PyLong_FromSsize_t(o.max_fraclen))
        || set_item(d, "n_rejected", PyLong_FromLongLong(o.n_rej))
        || set_item(d, "rejected_line_no", buf_take(&o.rej_no))
        || set_item(d, "rejected", buf_take(&o.rej_data)))
        goto fail;
    for (int i = 0; i < N_STRCOLS; i++) {
        StrCol *c = out_strcols(&o, i);
        PyObject *t = PyTuple_New(3);
        if (!t)
            goto fail;
        PyTuple_SET_ITEM(t, 0, valid_or_none(&c->valid, c->nulls));
        PyTuple_SET_ITEM(t, 1, buf_take(&c->off));
        PyTuple_SET_ITEM(t, 2, buf_take(&c->data));
        if (!PyTuple_GET_ITEM(t, 0) || !PyTuple_GET_ITEM(t, 1) || !PyTuple_GET_ITEM(t, 2)) {
            Py_DECREF(t);
            goto fail;
        }
        if (set_item(d, STRCOL_NAMES[i], t))
            goto fail;
    }
    PyBuffer_Release(&view);
    out_free(&o);
    return d;
fail:
    PyBuffer_Release(&view);
    Py_XDECREF(d);
    out_free(&o);
    return NULL;
}

static PyMethodDef methods[] = {
    {"parse_chunk", parse_chunk, METH_VARARGS,
     "parse_chunk(data: bytes, first_line_no: int) -> dict of Arrow buffers (see the module source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_c_ftrace_lines",
    "Compiled fast path of the ftrace event-line parser (see ksmtrace.ingest._ftrace_lines).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__c_ftrace_lines(void) { return PyModule_Create(&module); }
