/*
 * logcount.count._scan: the hot loop of LineCounter in C (optional; logcount/count/aggregate.py keeps
 * a pure-Python path that gives the same counts).
 *
 * A Scanner is built from a "plan" that logcount/count/scan_plan.py derives from a LogFormat: a list
 * of elements (literal, quoted string, word, number, status, %t). It accepts exactly the
 * lines the format's fast regex accepts and cuts them at the same places (each element is
 * deterministic: a field always ends at the first byte its class refuses, so no
 * backtracking can give another split). A line it refuses is handed back to Python, which
 * tries apachelogs' own regex or counts it malformed.
 *
 * Counting happens without building a tuple per line: each counter is a dict keyed by the
 * projection's fields joined with '\n' (which no line holds), so a line costs one bytes
 * object and one dict update per counter. take() hands the dicts to Python, which splits
 * the distinct keys back into tuples.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_blake2b.h"

enum { K_LIT, K_QUOTED, K_WORD, K_INT, K_INT_DASH, K_STATUS, K_TIME, K_COUNT, K_COUNT_DASH, K_MILLIS };

#define MAX_FIELDS 32
#define MAX_LAYOUT 16
#define CACHE_LIMIT 200000
/* ...and at most this many bytes of keys: 200,000 agents of 8 KB would hold 1.6 GB */
#define CACHE_BYTES (16u << 20)
/* logcount/count/format_atoms.py MIN_YEAR, MAX_YEAR: a line dated outside is malformed */
/* What take() returns and Scanner() takes: aggregate.py refuses a module of another
   version (a stale build beside newer Python code) and counts with the pure path. */
#define SCAN_VERSION 5
#define MIN_YEAR 1001
#define MAX_YEAR 9998
/* logcount/timing.py: a duration is capped at 2^36 us; bins 0 (0 us) to 145 (the cap) */
#define DUR_CAP (1LL << 36)
#define NBINS 146
static char BIN_TEXT[NBINS][4]; /* a bin's number as text: the last field of its key */

typedef struct {
    int kind;
    int field;  /* capture slot, or -1 */
    int field2; /* K_TIME: slot of the offset */
    int stop;   /* K_WORD: the byte that ends it (besides the common ones), or -1;
                   K_TIME: how much of DD/Mon/YYYY:HH:MM to capture (11: the day), or -1 */
    const char *lit; /* K_LIT: the bytes; K_COUNT*: the largest value allowed, in digits */
    Py_ssize_t litlen;
} Elem;

typedef struct {
    const char *p;
    Py_ssize_t n;
} Span;

typedef struct {
    int idx[MAX_LAYOUT];
    int n; /* -1: this counter is off */
} Layout;

/* ---- a hash table of byte strings (no Python object per line) ------------------------ */

typedef struct {
    uint64_t hash;
    Py_ssize_t off; /* in the arena; -1: empty */
    Py_ssize_t len;
    long long value;
    long long size; /* the hits table: the sum of its lines' %b (0 elsewhere) */
    long long dur;  /* the hits table: the sum of its lines' durations in us, capped */
} Slot;

typedef struct {
    Slot *slots;
    size_t cap, used; /* cap: a power of two */
    char *arena;
    size_t arena_len, arena_cap;
} Table;

#define TABLE_MIN 1024

static uint64_t hash_seed;

static inline uint64_t mum(uint64_t a, uint64_t b) {
#ifdef __SIZEOF_INT128__
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
#else
    uint64_t r = a * b;
    return r ^ (r >> 32);
#endif
}

/* Seeded (per process, from os.urandom) so that crafted URLs cannot be made to collide. */
static uint64_t hash_bytes(const char *p, size_t n) {
    const uint64_t k1 = 0xa0761d6478bd642full, k2 = 0xe7037ed1a0b428dbull;
    uint64_t h = hash_seed ^ mum(n ^ k1, k2), a, b;
    while (n > 16) {
        memcpy(&a, p, 8);
        memcpy(&b, p + 8, 8);
        h = mum(a ^ k1, b ^ h);
        p += 16;
        n -= 16;
    }
    a = b = 0;
    if (n >= 8) {
        memcpy(&a, p, 8);
        memcpy(&b, p + n - 8, 8);
    } else if (n >= 4) {
        uint32_t x, y;
        memcpy(&x, p, 4);
        memcpy(&y, p + n - 4, 4);
        a = x;
        b = y;
    } else if (n > 0) {
        a = ((uint64_t)(unsigned char)p[0] << 16) | ((uint64_t)(unsigned char)p[n >> 1] << 8) |
            (unsigned char)p[n - 1];
    }
    return mum(a ^ k2 ^ h, b ^ k1 ^ n);
}

static int table_init(Table *t) {
    t->slots = PyMem_Malloc(TABLE_MIN * sizeof(Slot));
    t->arena = PyMem_Malloc(TABLE_MIN * 64);
    if (t->slots == NULL || t->arena == NULL)
        return -1;
    for (size_t i = 0; i < TABLE_MIN; i++)
        t->slots[i].off = -1;
    t->cap = TABLE_MIN;
    t->arena_cap = TABLE_MIN * 64;
    t->used = t->arena_len = 0;
    return 0;
}

static void table_free(Table *t) {
    PyMem_Free(t->slots);
    PyMem_Free(t->arena);
    t->slots = NULL;
    t->arena = NULL;
}

/* Empty it; a table grown large by a burst goes back to its first size. */
static void table_clear(Table *t) {
    if (t->cap > 16 * TABLE_MIN) {
        Slot *small = PyMem_Realloc(t->slots, TABLE_MIN * sizeof(Slot));
        if (small != NULL) {
            t->slots = small;
            t->cap = TABLE_MIN;
        }
    }
    if (t->arena_cap > 256 * TABLE_MIN) {
        char *small = PyMem_Realloc(t->arena, TABLE_MIN * 64);
        if (small != NULL) {
            t->arena = small;
            t->arena_cap = TABLE_MIN * 64;
        }
    }
    for (size_t i = 0; i < t->cap; i++)
        t->slots[i].off = -1;
    t->used = t->arena_len = 0;
}

static int table_grow(Table *t) {
    size_t cap = t->cap * 2;
    Slot *slots = PyMem_Malloc(cap * sizeof(Slot));
    if (slots == NULL)
        return -1;
    for (size_t i = 0; i < cap; i++)
        slots[i].off = -1;
    for (size_t i = 0; i < t->cap; i++) {
        if (t->slots[i].off < 0)
            continue;
        size_t j = t->slots[i].hash & (cap - 1);
        while (slots[j].off >= 0)
            j = (j + 1) & (cap - 1);
        slots[j] = t->slots[i];
    }
    PyMem_Free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

/* The slot of `key` (found, or NULL when absent and !insert); NULL with an error set when
   memory runs out. A new slot has value 0. */
static Slot *table_slot(Table *t, const char *key, Py_ssize_t len, int insert) {
    uint64_t h = hash_bytes(key, (size_t)len);
    size_t i = h & (t->cap - 1);
    for (;;) {
        Slot *e = &t->slots[i];
        if (e->off < 0)
            break;
        if (e->hash == h && e->len == len && memcmp(t->arena + e->off, key, len) == 0)
            return e;
        i = (i + 1) & (t->cap - 1);
    }
    if (!insert)
        return NULL;
    if ((t->used + 1) * 2 > t->cap) {
        if (table_grow(t) < 0) {
            PyErr_NoMemory();
            return NULL;
        }
        i = h & (t->cap - 1);
        while (t->slots[i].off >= 0)
            i = (i + 1) & (t->cap - 1);
    }
    if (t->arena_len + (size_t)len > t->arena_cap) {
        size_t cap = (t->arena_cap + (size_t)len) * 2;
        char *arena = PyMem_Realloc(t->arena, cap);
        if (arena == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        t->arena = arena;
        t->arena_cap = cap;
    }
    memcpy(t->arena + t->arena_len, key, len);
    Slot *e = &t->slots[i];
    e->hash = h;
    e->off = (Py_ssize_t)t->arena_len;
    e->len = len;
    e->value = 0;
    e->size = 0;
    e->dur = 0;
    t->arena_len += (size_t)len;
    t->used++;
    return e;
}

typedef struct {
    PyObject_HEAD
    Elem *elems;
    int nelems;
    PyObject *plan; /* keeps the literal bytes alive */
    int nfields;
    Layout ctx, hits_l, agents, refs, visitors, clients;
    /* agents_from[j]: where the j-th field of an agents key sits in a visitors key, when
       every one does (-1 in [0] otherwise): the agent counts are then summed from the
       visitors table at take() instead of counted line by line (one table less a line) */
    int agents_from[MAX_LAYOUT];
    int agent_i, target_i, dur_i, size_i;
    long long dur_scale; /* microseconds per unit of the duration field */
    /* the histogram's keys: the context's fields, then the bin (as text, in slot
       nfields + 1 of a line's fields) */
    Layout timing_l;
    int count_bots, ignore_on;
    PyObject *decide_bot, *decide_ignore; /* callables bytes -> bool */
    Table flag_bot, flag_ignore;          /* the decisions so far (value 0/1) */
    /* what take() hands over: joined key -> count; `timings` is keyed by the context and
       a duration's bin (logcount/timing.py) */
    Table hits, agents_t, refs_t, visitors_t, bots, ignored, timings, clients_t;
    /* a hit key's lines' %b are summed in its slot (Slot.size), so that a size is no part
       of a key (random sizes made nearly every line a key of its own); sums that would
       pass a long long go on in big_sizes (joined key bytes -> int) */
    PyObject *big_sizes;
    Table shared; /* field value -> its bytes object, during take() */
    /* number_visitors(): take() hands the visitors over as their numbers grouped by place
       (numbered_visitors) instead of a set of key tuples; off while vn_on is 0 */
    int vn_on;
    b2_state vn_keyed;           /* classify.visitor_number's key, its block compressed */
    Layout vn_place;             /* in a visitors key: its context, then its page fields */
    int vn_client, vn_agent;     /* in a visitors key; -1: the format has none (b"") */
    PyObject *vn_skip_of;        /* agent -> a bot not counted; None: none is */
    long long lines;
    /* the last `recent_size` counted lines: (source, start, length); a row tuple has start -1 */
    Py_ssize_t recent_size, recent_head, recent_count;
    PyObject **recent_src;
    Py_ssize_t *recent_start, *recent_len;
    /* reusable key buffer */
    char *buf;
    Py_ssize_t bufcap;
} Scanner;

/* Printable ASCII but '"' and '\\' (what Apache writes unescaped in a string). */
static unsigned char QUOTED_OK[256];
static unsigned char WORD_OK[256]; /* the same without the space */

static void init_tables(void) {
    for (int b = 0; b < NBINS; b++)
        snprintf(BIN_TEXT[b], sizeof BIN_TEXT[b], "%d", b);
    for (int c = 0x20; c < 0x7f; c++) {
        QUOTED_OK[c] = (c != '"' && c != '\\');
        WORD_OK[c] = QUOTED_OK[c] && c != ' ';
    }
}

/* ---- matching one line --------------------------------------------------------------- */

#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SWAR 1
#define FIRST_MARK(m) (__builtin_ctzll(m) >> 3)
#else
#define SWAR 0
#define FIRST_MARK(m) 0
#endif

#if defined(__SSE2__) && defined(__GNUC__)
#include <emmintrin.h>
#define SIMD16 1
#else
#define SIMD16 0
#endif

/* A mask with the high bit set in (at least) the first byte of `w` that is below 0x20,
   above 0x7e, '"', '\\' or one of `x`, `y` (SWAR: eight bytes per step, for the long runs
   of plain text in URLs and agents). Borrows can only mark bytes after a true one, so the
   lowest mark is exact. */
static inline uint64_t marks(uint64_t w, uint64_t x, uint64_t y) {
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    uint64_t low = (w - ones * 0x20) & ~w;        /* bytes < 0x20 */
    uint64_t big = (w + ones * (0x80 - 0x7f)) | w; /* bytes >= 0x7f */
    uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\'), u = w ^ x, v = w ^ y;
    uint64_t eq = ((q - ones) & ~q) | ((b - ones) & ~b) | ((u - ones) & ~u) | ((v - ones) & ~v);
    return (low | big | eq) & high;
}

/* The end of a string field: the first byte its class refuses, a `\\x` escape taking the
   byte after it. A word also ends at a space and at `stop`. */
static const char *scan_escaped(const char *p, const char *end, int word, int stop) {
    const uint64_t ones = 0x0101010101010101ull;
    /* a quoted string repeats '"' in place of the space and the stop byte it does not have */
    char xb = word ? ' ' : '"', yb = word && stop >= 0 ? (char)stop : '"';
    uint64_t x = ones * (unsigned char)xb, y = ones * (unsigned char)yb;
    const unsigned char *ok = word ? WORD_OK : QUOTED_OK;
#if SIMD16
    const __m128i lo = _mm_set1_epi8(0x20), span = _mm_set1_epi8(0x7e - 0x20);
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\');
    const __m128i xv = _mm_set1_epi8(xb), yv = _mm_set1_epi8(yb);
#endif
    while (p < end) {
        uint64_t w, m;
#if SIMD16
        /* sixteen bytes per step: a mark on every byte outside 0x20..0x7e, on '"', '\\',
           x and y; the lowest mark is where the byte-wise loop below takes over */
        if (end - p >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)p);
            __m128i t = _mm_sub_epi8(v, lo);
            __m128i inside = _mm_cmpeq_epi8(_mm_min_epu8(t, span), t);
            __m128i hit = _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash));
            hit = _mm_or_si128(hit, _mm_or_si128(_mm_cmpeq_epi8(v, xv), _mm_cmpeq_epi8(v, yv)));
            unsigned mask = (unsigned)(_mm_movemask_epi8(hit) | (~_mm_movemask_epi8(inside) & 0xffff));
            if (mask == 0) {
                p += 16;
                continue;
            }
            p += __builtin_ctz(mask);
        } else
#endif
        if (SWAR && end - p >= 8) {
            memcpy(&w, p, 8);
            m = marks(w, x, y);
            if (m == 0) {
                p += 8;
                continue;
            }
            p += FIRST_MARK(m);
        }
        unsigned char c = (unsigned char)*p;
        if (ok[c] && (int)c != stop)
            p++;
        else if (c == '\\' && p + 1 < end)
            p += 2;
        else
            break;
    }
    return p;
}

static inline int is_digit(char c) { return c >= '0' && c <= '9'; }

static const char *scan_number(const char *p, const char *end, int dash) {
    /* 0 | -?[1-9][0-9]* | - (when dash) */
    if (p < end && *p == '0')
        return p + 1;
    const char *q = p;
    if (q < end && *q == '-')
        q++;
    if (q < end && *q >= '1' && *q <= '9') {
        q++;
        while (q < end && is_digit(*q))
            q++;
        return q;
    }
    if (dash && p < end && *p == '-')
        return p + 1;
    return NULL;
}

/* A counted number (bytes, a duration): 0 | [1-9][0-9]* no larger than the element's
   limit (compared as digit strings: the same length, then memcmp) | - (when dash). */
static const char *scan_count(const char *p, const char *end, const Elem *e) {
    if (p < end && *p == '0')
        return p + 1;
    if (p < end && *p >= '1' && *p <= '9') {
        const char *q = p + 1;
        while (q < end && is_digit(*q))
            q++;
        Py_ssize_t n = q - p;
        if (n > e->litlen || (n == e->litlen && memcmp(p, e->lit, n) > 0))
            return NULL;
        return q;
    }
    if (e->kind == K_COUNT_DASH && p < end && *p == '-')
        return p + 1;
    return NULL;
}

static int month_index(const char *m) {
    static const char *names = "JanFebMarAprMayJunJulAugSepOctNovDec";
    for (int i = 0; i < 12; i++)
        if (memcmp(names + 3 * i, m, 3) == 0)
            return i;
    return -1;
}

static int two(const char *p) { return (p[0] - '0') * 10 + (p[1] - '0'); }

static int digits(const char *p, int n) {
    for (int i = 0; i < n; i++)
        if (!is_digit(p[i]))
            return 0;
    return 1;
}

/* nginx's $request_time: 0 | [1-9][0-9]{0,8}, a point, three digits (format_atoms.MILLIS). */
static const char *scan_millis(const char *p, const char *end) {
    const char *q = p;
    if (q < end && *q == '0')
        q++;
    else if (q < end && *q >= '1' && *q <= '9') {
        q++;
        while (q < end && q - p < 9 && is_digit(*q))
            q++;
    } else
        return NULL;
    if (end - q < 4 || *q != '.' || !digits(q + 1, 3))
        return NULL;
    return q + 4;
}

/* [DD/Mon/YYYY:HH:MM:SS +HHMM] with a date that exists; minute and offset spans. */
static const char *scan_time(const char *p, const char *end, Span *minute, Span *offset) {
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (end - p < 28 || p[0] != '[' || p[3] != '/' || p[7] != '/' || p[12] != ':' ||
        p[15] != ':' || p[18] != ':' || p[21] != ' ' || p[27] != ']')
        return NULL;
    if (!digits(p + 1, 2) || !digits(p + 8, 4) || !digits(p + 13, 2) || !digits(p + 16, 2) ||
        !digits(p + 19, 2) || !digits(p + 23, 4))
        return NULL;
    int day = two(p + 1), mon = month_index(p + 4);
    if (mon < 0 || day < 1 || day > mdays[mon])
        return NULL;
    int year = two(p + 8) * 100 + two(p + 10);
    if (year < MIN_YEAR || year > MAX_YEAR)
        return NULL;
    if (mon == 1 && day == 29) {
        int hi = two(p + 8), lo = two(p + 10);
        int leap = lo ? (lo % 4 == 0) : (hi % 4 == 0);
        if (!leap)
            return NULL;
    }
    if (two(p + 13) > 23 || p[16] > '5' || p[19] > '5')
        return NULL;
    if ((p[22] != '+' && p[22] != '-') || two(p + 23) > 23 || p[25] > '5')
        return NULL;
    minute->p = p + 1;
    minute->n = 17;
    offset->p = p + 22;
    offset->n = 5;
    return p + 28;
}

/* Fill `f` with the fields of one line; 0 when the plan refuses it. */
static int match_line(Scanner *s, const char *p, const char *end, Span *f) {
    for (int i = 0; i < s->nelems; i++) {
        const Elem *e = &s->elems[i];
        const char *start = p, *q;
        switch (e->kind) {
        case K_LIT: /* a few bytes (a quote, a space): compared in place, no call */
            if (end - p < e->litlen)
                return 0;
            for (Py_ssize_t k = 0; k < e->litlen; k++)
                if (p[k] != e->lit[k])
                    return 0;
            p += e->litlen;
            continue;
        case K_QUOTED:
            q = scan_escaped(p, end, 0, -1);
            break;
        case K_WORD:
            q = scan_escaped(p, end, 1, e->stop);
            break;
        case K_INT:
        case K_INT_DASH:
            q = scan_number(p, end, e->kind == K_INT_DASH);
            if (q == NULL)
                return 0;
            break;
        case K_COUNT:
        case K_COUNT_DASH:
            q = scan_count(p, end, e);
            if (q == NULL)
                return 0;
            break;
        case K_MILLIS:
            q = scan_millis(p, end);
            if (q == NULL)
                return 0;
            break;
        case K_STATUS:
            if (end - p >= 3 && digits(p, 3))
                q = p + 3;
            else if (p < end && *p == '-')
                q = p + 1;
            else
                return 0;
            break;
        case K_TIME: {
            Span minute, offset;
            q = scan_time(p, end, &minute, &offset);
            if (q == NULL)
                return 0;
            if (e->stop > 0 && e->stop < minute.n)
                minute.n = e->stop; /* the day only (the rollup's keys) */
            if (e->field >= 0)
                f[e->field] = minute;
            if (e->field2 >= 0)
                f[e->field2] = offset;
            p = q;
            continue;
        }
        default:
            return 0;
        }
        if (e->field >= 0) {
            f[e->field].p = start;
            f[e->field].n = q - start;
        }
        p = q;
    }
    return p == end;
}

/* ---- counting ------------------------------------------------------------------------ */

/* The fields of a layout joined with '\n' (no line holds one), in the scanner's buffer. */
static const char *compose(Scanner *s, const Layout *l, const Span *f, Py_ssize_t *len) {
    Py_ssize_t size = l->n ? l->n - 1 : 0;
    for (int i = 0; i < l->n; i++)
        size += f[l->idx[i]].n;
    if (size > s->bufcap) {
        char *grown = PyMem_Realloc(s->buf, size * 2);
        if (grown == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        s->buf = grown;
        s->bufcap = size * 2;
    }
    char *w = s->buf;
    for (int i = 0; i < l->n; i++) {
        if (i)
            *w++ = '\n';
        const Span *x = &f[l->idx[i]];
        memcpy(w, x->p, x->n);
        w += x->n;
    }
    *len = size;
    return s->buf;
}

static Slot *count_key_slot(Scanner *s, Table *t, const Layout *l, const Span *f, long long by) {
    Py_ssize_t len;
    const char *key = compose(s, l, f, &len);
    if (key == NULL)
        return NULL;
    Slot *e = table_slot(t, key, len, 1);
    if (e == NULL)
        return NULL;
    e->value += by;
    return e;
}

static int count_key(Scanner *s, Table *t, const Layout *l, const Span *f, long long by) {
    return count_key_slot(s, t, l, f, by) == NULL ? -1 : 0;
}

/* The cached decision for `value` (a bot agent, an ignored request); -1 on error. */
static int decide(Table *cache, PyObject *fn, const Span *value) {
    Slot *e = table_slot(cache, value->p, value->n, 0);
    if (e != NULL)
        return (int)e->value;
    PyObject *key = PyBytes_FromStringAndSize(value->p, value->n);
    if (key == NULL)
        return -1;
    PyObject *r = PyObject_CallOneArg(fn, key);
    Py_DECREF(key);
    int flag = r == NULL ? -1 : PyObject_IsTrue(r);
    Py_XDECREF(r);
    if (flag < 0)
        return -1;
    if (cache->used >= CACHE_LIMIT || cache->arena_len >= CACHE_BYTES)
        table_clear(cache);
    e = table_slot(cache, value->p, value->n, 1);
    if (e == NULL)
        return -1;
    e->value = flag;
    return flag;
}

static void remember(Scanner *s, PyObject *src, Py_ssize_t start, Py_ssize_t len) {
    if (s->recent_size <= 0)
        return;
    Py_ssize_t slot = s->recent_head;
    Py_XDECREF(s->recent_src[slot]);
    Py_INCREF(src);
    s->recent_src[slot] = src;
    s->recent_start[slot] = start;
    s->recent_len[slot] = len;
    s->recent_head = (slot + 1) % s->recent_size;
    if (s->recent_count < s->recent_size)
        s->recent_count++;
}

/* A line's duration in microseconds, capped at DUR_CAP; 0 when it has none ('-', or no
   number: the plan and the regexes let through no negative one, nor one past 2^53). A
   point is skipped: "0.125" (nginx's seconds, logformat.MILLIS) is 125 milliseconds. */
static int parse_duration(const Span *x, long long scale, long long *out) {
    if (x->n == 0 || x->n > 19)
        return 0;
    long long v = 0;
    int points = 0;
    for (Py_ssize_t i = 0; i < x->n; i++) {
        if (x->p[i] == '.' && i > 0 && points++ == 0)
            continue;
        if (!is_digit(x->p[i]))
            return 0;
        v = v * 10 + (x->p[i] - '0');
    }
    *out = v >= DUR_CAP / scale ? DUR_CAP : v * scale;
    return 1;
}

/* logcount/timing.py bin_of: four bins per doubling (the two bits after the leading one) */
static inline int bin_of(long long us) {
    if (us <= 0)
        return 0;
#if defined(__GNUC__)
    int e = 63 - __builtin_clzll((unsigned long long)us);
#else
    int e = 0;
    while ((us >> (e + 1)) != 0)
        e++;
#endif
    return 1 + 4 * e + (int)((((unsigned long long)us << 2) >> e) & 3);
}

/* A timed line: its duration into its hit key's sum, a line into its context's bin. */
static int add_time(Scanner *s, Slot *hit, Span *f) {
    long long us;
    if (!parse_duration(&f[s->dur_i], s->dur_scale, &us))
        return 0;
    hit->dur = hit->dur > LLONG_MAX - us ? LLONG_MAX : hit->dur + us;
    const char *text = BIN_TEXT[bin_of(us)];
    f[s->nfields + 1].p = text;
    f[s->nfields + 1].n = (Py_ssize_t)strlen(text);
    return count_key(s, &s->timings, &s->timing_l, f, 1);
}

/* A line's %b into its hit key's sum ('-' is 0; the scanner and the regexes let through
   no number past 2^53, anything else not a number is 0 too). */
static int add_size(Scanner *s, Slot *e, const Span *f) {
    const Span *x = &f[s->size_i];
    long long v = 0;
    if (x->n > 18)
        return 0;
    for (Py_ssize_t i = 0; i < x->n; i++) {
        if (!is_digit(x->p[i]))
            return 0;
        v = v * 10 + (x->p[i] - '0');
    }
    if (v == 0)
        return 0;
    if (e->size > LLONG_MAX - v) { /* 1,024 lines of 2^53 bytes: go on in a Python int */
        PyObject *k = PyBytes_FromStringAndSize(s->hits.arena + e->off, e->len);
        PyObject *held = PyLong_FromLongLong(e->size), *sum = NULL;
        PyObject *before = k ? PyDict_GetItemWithError(s->big_sizes, k) : NULL;
        if (k != NULL && held != NULL && !PyErr_Occurred())
            sum = before ? PyNumber_Add(before, held) : Py_NewRef(held);
        int rc = sum != NULL ? PyDict_SetItem(s->big_sizes, k, sum) : -1;
        Py_XDECREF(k);
        Py_XDECREF(held);
        Py_XDECREF(sum);
        if (rc < 0)
            return -1;
        e->size = 0;
    }
    e->size += v;
    return 0;
}

/* Count one parsed line (fields in f, slot nfields is empty, nfields + 1 free). */
static int count_fields(Scanner *s, Span *f) {
    s->lines++;
    int bot = 0, ignored = 0;
    if (s->agent_i >= 0) {
        bot = decide(&s->flag_bot, s->decide_bot, &f[s->agent_i]);
        if (bot < 0)
            return -1;
        /* keyed by the agent too (agents' layout): bots are counted by their name */
        if (bot && count_key(s, &s->bots, &s->agents, f, 1) < 0)
            return -1;
    }
    int excluded = bot && !s->count_bots;
    if (s->ignore_on && s->target_i >= 0) {
        ignored = decide(&s->flag_ignore, s->decide_ignore, &f[s->target_i]);
        if (ignored < 0)
            return -1;
        if (ignored && !excluded && count_key(s, &s->ignored, &s->ctx, f, 1) < 0)
            return -1;
        excluded = excluded || ignored;
    }
    if (excluded)
        return 0;
    Slot *hit = count_key_slot(s, &s->hits, &s->hits_l, f, 1);
    if (hit == NULL || (s->size_i >= 0 && add_size(s, hit, f) < 0) ||
        (s->dur_i >= 0 && add_time(s, hit, f) < 0))
        return -1;
    if (s->agents.n >= 0 && s->agents_from[0] < 0 &&
        count_key(s, &s->agents_t, &s->agents, f, 1) < 0)
        return -1;
    if (s->refs.n >= 0 && count_key(s, &s->refs_t, &s->refs, f, 1) < 0)
        return -1;
    if (s->clients.n >= 0 && count_key(s, &s->clients_t, &s->clients, f, 1) < 0)
        return -1;
    if (s->visitors.n >= 0 && count_key(s, &s->visitors_t, &s->visitors, f, 1) < 0)
        return -1;
    return 0;
}

/* ---- the type ------------------------------------------------------------------------- */

#define EACH_COUNT_TABLE(s, X)                                                                 \
    X(&(s)->hits) X(&(s)->agents_t) X(&(s)->refs_t) X(&(s)->visitors_t) X(&(s)->bots)           \
        X(&(s)->ignored) X(&(s)->timings) X(&(s)->clients_t)

static void fresh(Scanner *s) {
#define CLEAR(t) table_clear(t);
    EACH_COUNT_TABLE(s, CLEAR)
#undef CLEAR
    s->lines = 0;
    PyDict_Clear(s->big_sizes);
    for (Py_ssize_t i = 0; i < s->recent_size; i++)
        Py_CLEAR(s->recent_src[i]);
    s->recent_head = s->recent_count = 0;
}

static int layout_from(PyObject *seq, Layout *l, int nfields) {
    if (seq == Py_None) {
        l->n = -1;
        return 0;
    }
    PyObject *t = PySequence_Tuple(seq);
    if (t == NULL)
        return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(t);
    if (n > MAX_LAYOUT) {
        Py_DECREF(t);
        PyErr_SetString(PyExc_ValueError, "layout too long");
        return -1;
    }
    l->n = (int)n;
    for (Py_ssize_t i = 0; i < n; i++) {
        long v = PyLong_AsLong(PyTuple_GET_ITEM(t, i));
        if (v < 0 || v > nfields) {
            Py_DECREF(t);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "layout index out of range");
            return -1;
        }
        l->idx[i] = (int)v;
    }
    Py_DECREF(t);
    return 0;
}

static int plan_from(Scanner *s, PyObject *plan) {
    PyObject *t = PySequence_Tuple(plan);
    if (t == NULL)
        return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(t);
    s->elems = PyMem_Calloc(n ? n : 1, sizeof(Elem));
    if (s->elems == NULL) {
        Py_DECREF(t);
        PyErr_NoMemory();
        return -1;
    }
    s->nelems = (int)n;
    s->plan = t; /* owns the literals */
    for (Py_ssize_t i = 0; i < n; i++) {
        Elem *e = &s->elems[i];
        PyObject *lit = NULL;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(t, i), "iiiiO", &e->kind, &e->field, &e->field2,
                              &e->stop, &lit))
            return -1;
        if (e->kind < K_LIT || e->kind > K_MILLIS || e->field >= s->nfields ||
            e->field2 >= s->nfields) {
            PyErr_SetString(PyExc_ValueError, "bad plan element");
            return -1;
        }
        if (e->kind == K_LIT || e->kind == K_COUNT || e->kind == K_COUNT_DASH) {
            if (!PyBytes_Check(lit) || (e->kind != K_LIT && PyBytes_GET_SIZE(lit) == 0)) {
                PyErr_SetString(PyExc_TypeError, "a literal (a limit) must be bytes");
                return -1;
            }
            e->lit = PyBytes_AS_STRING(lit);
            e->litlen = PyBytes_GET_SIZE(lit);
        }
    }
    return 0;
}

static int Scanner_init(Scanner *s, PyObject *args, PyObject *kw) {
    static char *names[] = {"plan",         "nfields",   "ctx",         "hits",
                            "agents",       "referrers", "visitors",    "agent",
                            "target",       "duration",  "recent_size", "decide_bot",
                            "decide_ignore", "count_bots", "ignore",    "size",
                            "clients",      "duration_scale", NULL};
    PyObject *plan, *ctx, *hits, *agents, *refs, *vis, *bot_fn, *ign_fn, *clients = Py_None;
    int count_bots, ignore_on;
    s->size_i = -1;
    s->dur_scale = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OiOOOOOiiinOOpp|iOL", names, &plan, &s->nfields,
                                     &ctx, &hits, &agents, &refs, &vis, &s->agent_i,
                                     &s->target_i, &s->dur_i, &s->recent_size, &bot_fn, &ign_fn,
                                     &count_bots, &ignore_on, &s->size_i, &clients,
                                     &s->dur_scale))
        return -1;
    if (s->nfields < 0 || s->nfields >= MAX_FIELDS || s->elems != NULL) {
        PyErr_SetString(PyExc_ValueError, "bad field count (or init called twice)");
        return -1;
    }
    if (plan_from(s, plan) < 0 || layout_from(ctx, &s->ctx, s->nfields) < 0 ||
        layout_from(hits, &s->hits_l, s->nfields) < 0 ||
        layout_from(agents, &s->agents, s->nfields) < 0 ||
        layout_from(refs, &s->refs, s->nfields) < 0 ||
        layout_from(vis, &s->visitors, s->nfields) < 0 ||
        layout_from(clients, &s->clients, s->nfields) < 0)
        return -1;
    if (s->ctx.n < 0 || s->hits_l.n < 0 || s->agent_i > s->nfields || s->target_i > s->nfields ||
        s->dur_i > s->nfields || s->size_i > s->nfields || s->dur_scale < 1 ||
        s->dur_scale > DUR_CAP || s->ctx.n >= MAX_LAYOUT) {
        PyErr_SetString(PyExc_ValueError, "bad layout");
        return -1;
    }
    s->timing_l = s->ctx;
    s->timing_l.idx[s->timing_l.n++] = s->nfields + 1;
    s->agents_from[0] = -1;
    if (s->agents.n > 0 && s->visitors.n > 0) {
        int found = 1;
        for (int j = 0; j < s->agents.n && found; j++) {
            found = 0;
            for (int k = 0; k < s->visitors.n; k++)
                if (s->visitors.idx[k] == s->agents.idx[j]) {
                    s->agents_from[j] = k;
                    found = 1;
                    break;
                }
        }
        if (!found)
            s->agents_from[0] = -1;
    }
    s->count_bots = count_bots;
    s->ignore_on = ignore_on;
    Py_INCREF(bot_fn);
    s->decide_bot = bot_fn;
    Py_INCREF(ign_fn);
    s->decide_ignore = ign_fn;
    s->big_sizes = PyDict_New();
    int failed = table_init(&s->flag_bot) < 0 || table_init(&s->flag_ignore) < 0 ||
                 table_init(&s->shared) < 0 || s->big_sizes == NULL;
#define INIT(t) failed = failed || table_init(t) < 0;
    EACH_COUNT_TABLE(s, INIT)
#undef INIT
    if (s->recent_size < 0)
        s->recent_size = 0;
    Py_ssize_t slots = s->recent_size ? s->recent_size : 1;
    s->recent_src = PyMem_Calloc(slots, sizeof(PyObject *));
    s->recent_start = PyMem_Calloc(slots, sizeof(Py_ssize_t));
    s->recent_len = PyMem_Calloc(slots, sizeof(Py_ssize_t));
    s->bufcap = 1024;
    s->buf = PyMem_Malloc(s->bufcap);
    if (failed || !s->recent_src || !s->recent_start || !s->recent_len || !s->buf) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void Scanner_dealloc(Scanner *s) {
    Py_XDECREF(s->plan);
    Py_XDECREF(s->decide_bot);
    Py_XDECREF(s->decide_ignore);
    Py_XDECREF(s->big_sizes);
    Py_XDECREF(s->vn_skip_of);
    table_free(&s->flag_bot);
    table_free(&s->flag_ignore);
    table_free(&s->shared);
#define FREE(t) table_free(t);
    EACH_COUNT_TABLE(s, FREE)
#undef FREE
    if (s->recent_src) {
        for (Py_ssize_t i = 0; i < (s->recent_size ? s->recent_size : 1); i++)
            Py_XDECREF(s->recent_src[i]);
        PyMem_Free(s->recent_src);
    }
    PyMem_Free(s->recent_start);
    PyMem_Free(s->recent_len);
    PyMem_Free(s->elems);
    PyMem_Free(s->buf);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

/* The recent lines that point into `src` (a buffer that may be reused once feed returns)
   become copies of their own. */
static int detach_recent(Scanner *s, PyObject *src, const char *base) {
    Py_ssize_t size = s->recent_size ? s->recent_size : 1;
    for (Py_ssize_t i = 0; i < size; i++) {
        if (s->recent_src[i] != src || s->recent_start[i] < 0)
            continue;
        PyObject *copy = PyBytes_FromStringAndSize(base + s->recent_start[i], s->recent_len[i]);
        if (copy == NULL)
            return -1;
        s->recent_src[i] = copy;
        s->recent_start[i] = 0;
        Py_DECREF(src);
    }
    return 0;
}

static PyObject *Scanner_feed(Scanner *s, PyObject *arg) {
    if (s->elems == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Scanner not initialised");
        return NULL;
    }
    /* bytes, or any contiguous buffer (a memoryview of a reused bytearray: the rollup reads
       a file into one buffer and scans it in place) */
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_TypeError, "feed() takes bytes or a contiguous buffer");
        return NULL;
    }
    PyObject *bad = PyList_New(0);
    if (bad == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const char *base = view.buf, *p = base, *end = base + view.len;
    Span f[MAX_FIELDS + 2];
    while (p < end) {
        const char *nl = memchr(p, '\n', end - p);
        const char *eol = nl ? nl : end;
        if (eol > p) {
            for (int i = 0; i <= s->nfields; i++) {
                f[i].p = p;
                f[i].n = 0;
            }
            if (match_line(s, p, eol, f)) {
                if (count_fields(s, f) < 0)
                    goto error;
                remember(s, arg, p - base, eol - p);
            } else {
                PyObject *line = PyBytes_FromStringAndSize(p, eol - p);
                if (line == NULL || PyList_Append(bad, line) < 0) {
                    Py_XDECREF(line);
                    goto error;
                }
                Py_DECREF(line);
            }
        }
        p = eol + 1;
    }
    if (!PyBytes_CheckExact(arg) && detach_recent(s, arg, base) < 0)
        goto error;
    PyBuffer_Release(&view);
    return bad;
error:
    if (!PyBytes_CheckExact(arg))
        detach_recent(s, arg, base);
    PyBuffer_Release(&view);
    Py_DECREF(bad);
    return NULL;
}

static PyObject *Scanner_count_row(Scanner *s, PyObject *row) {
    if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) < s->nfields) {
        PyErr_SetString(PyExc_TypeError, "count_row() takes a tuple of the fields");
        return NULL;
    }
    Span f[MAX_FIELDS + 2];
    for (int i = 0; i < s->nfields; i++) {
        PyObject *v = PyTuple_GET_ITEM(row, i);
        if (!PyBytes_Check(v)) {
            PyErr_SetString(PyExc_TypeError, "fields must be bytes");
            return NULL;
        }
        f[i].p = PyBytes_AS_STRING(v);
        f[i].n = PyBytes_GET_SIZE(v);
    }
    f[s->nfields].p = "";
    f[s->nfields].n = 0;
    if (count_fields(s, f) < 0)
        return NULL;
    remember(s, row, -1, 0);
    Py_RETURN_NONE;
}

/* One bytes object per distinct field value in a take(): the same minute, status or agent
   in thousands of keys is one object, which halves the memory of a batch. */
static PyObject *shared_bytes(Table *shared, const char *p, Py_ssize_t n) {
    Slot *e = table_slot(shared, p, n, 1);
    if (e == NULL)
        return NULL;
    if (e->value == 0) {
        PyObject *v = PyBytes_FromStringAndSize(p, n);
        if (v == NULL)
            return NULL;
        e->value = (long long)(intptr_t)v; /* the table's reference */
    }
    PyObject *v = (PyObject *)(intptr_t)e->value;
    Py_INCREF(v);
    return v;
}

static void release_shared(Table *shared) {
    for (size_t i = 0; i < shared->cap; i++)
        if (shared->slots[i].off >= 0 && shared->slots[i].value != 0)
            Py_DECREF((PyObject *)(intptr_t)shared->slots[i].value);
    table_clear(shared);
}

/* A joined key back as the tuple of its `width` fields. */
static PyObject *split_key(Table *shared, const char *p, Py_ssize_t len, int width) {
    PyObject *t = PyTuple_New(width);
    if (t == NULL)
        return NULL;
    const char *end = p + len;
    for (int i = 0; i < width; i++) {
        const char *nl = i + 1 < width ? memchr(p, '\n', end - p) : NULL;
        const char *stop = nl ? nl : end;
        PyObject *v = shared_bytes(shared, p, stop - p);
        if (v == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, v);
        p = nl ? nl + 1 : end;
    }
    return t;
}

/* A table as a new `cls` instance (a dict subclass) mapping tuples to counts; as a set of
   tuples when cls is NULL. */
static PyObject *unjoined(Table *shared, Table *t, int width, PyObject *cls) {
    PyObject *out = cls == NULL ? PySet_New(NULL) : PyObject_CallNoArgs(cls);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < t->cap; i++) {
        const Slot *e = &t->slots[i];
        if (e->off < 0)
            continue;
        PyObject *key = split_key(shared, t->arena + e->off, e->len, width), *value = NULL;
        int rc = -1;
        if (key != NULL && cls == NULL) {
            rc = PySet_Add(out, key);
        } else if (key != NULL && (value = PyLong_FromLongLong(e->value)) != NULL) {
            rc = PyDict_SetItem(out, key, value);
        }
        Py_XDECREF(key);
        Py_XDECREF(value);
        if (rc < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

static PyObject *recent_list(Scanner *s) {
    PyObject *recent = PyList_New(s->recent_count);
    if (recent == NULL)
        return NULL;
    Py_ssize_t size = s->recent_size ? s->recent_size : 1;
    Py_ssize_t first = (s->recent_head - s->recent_count + size) % size;
    for (Py_ssize_t i = 0; i < s->recent_count; i++) {
        Py_ssize_t slot = (first + i) % size;
        PyObject *src = s->recent_src[slot], *item;
        if (s->recent_start[slot] < 0) {
            Py_INCREF(src);
            item = src;
        } else {
            item = PyBytes_FromStringAndSize(PyBytes_AS_STRING(src) + s->recent_start[slot],
                                             s->recent_len[slot]);
            if (item == NULL) {
                Py_DECREF(recent);
                return NULL;
            }
        }
        PyList_SET_ITEM(recent, i, item);
    }
    return recent;
}

/* The agents table as the sums of the visitors table (whose keys hold every field of an
   agents key, and which counts the same lines): see agents_from. */
static void split_visitor(const Scanner *s, const Slot *e, Span *vis) {
    const char *p = s->visitors_t.arena + e->off, *end = p + e->len;
    for (int k = 0; k < s->visitors.n; k++) {
        const char *nl = k + 1 < s->visitors.n ? memchr(p, '\n', end - p) : NULL;
        vis[k].p = p;
        vis[k].n = (nl ? nl : end) - p;
        p = nl ? nl + 1 : end;
    }
}

/* A visitors key's lines (`by`) added to its agents key (see agents_from). */
static int add_agent_of(Scanner *s, const Span *vis, long long by) {
    Span f[MAX_LAYOUT];
    Layout direct;
    direct.n = s->agents.n;
    for (int j = 0; j < direct.n; j++) {
        direct.idx[j] = j;
        f[j] = vis[s->agents_from[j]];
    }
    /* count_key composes into s->buf, which `vis` does not point into */
    return count_key(s, &s->agents_t, &direct, f, by);
}

static int agents_from_visitors(Scanner *s) {
    Span vis[MAX_LAYOUT];
    table_clear(&s->agents_t); /* filled here only: a take() that failed left it full */
    for (size_t i = 0; i < s->visitors_t.cap; i++) {
        const Slot *e = &s->visitors_t.slots[i];
        if (e->off >= 0) {
            split_visitor(s, e, vis);
            if (add_agent_of(s, vis, e->value) < 0)
                return -1;
        }
    }
    return 0;
}

static int add_big_sizes(Scanner *s, PyObject *out);

/* The hits table as (cls of tuple -> count, dict of the same tuples -> sum of sizes), with
   the sums that went on in big_sizes added. */
static int hits_and_sizes(Scanner *s, PyObject *cls, PyObject **hits, PyObject **sizes,
                          PyObject **durs) {
    Table *t = &s->hits;
    PyObject *counts = PyObject_CallNoArgs(cls), *out = PyDict_New(), *times = PyDict_New();
    *hits = counts;
    *sizes = out;
    *durs = times;
    if (counts == NULL || out == NULL || times == NULL)
        return -1;
    for (size_t i = 0; i < t->cap; i++) {
        const Slot *e = &t->slots[i];
        if (e->off < 0)
            continue;
        PyObject *key = split_key(&s->shared, t->arena + e->off, e->len, s->hits_l.n);
        PyObject *n = key ? PyLong_FromLongLong(e->value) : NULL;
        int rc = n != NULL ? PyDict_SetItem(counts, key, n) : -1;
        Py_XDECREF(n);
        if (rc == 0 && e->size) {
            PyObject *size = PyLong_FromLongLong(e->size);
            rc = size != NULL ? PyDict_SetItem(out, key, size) : -1;
            Py_XDECREF(size);
        }
        if (rc == 0 && e->dur) {
            PyObject *dur = PyLong_FromLongLong(e->dur);
            rc = dur != NULL ? PyDict_SetItem(times, key, dur) : -1;
            Py_XDECREF(dur);
        }
        Py_XDECREF(key);
        if (rc < 0)
            return -1;
    }
    return add_big_sizes(s, out);
}

/* The sums of sizes that went on in big_sizes, added to `out`. */
static int add_big_sizes(Scanner *s, PyObject *out) {
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (out != NULL && PyDict_Next(s->big_sizes, &pos, &k, &v)) {
        PyObject *key = split_key(&s->shared, PyBytes_AS_STRING(k), PyBytes_GET_SIZE(k),
                                  s->hits_l.n);
        PyObject *now = key ? PyDict_GetItemWithError(out, key) : NULL;
        PyObject *sum = key && !PyErr_Occurred() ? (now ? PyNumber_Add(now, v) : Py_NewRef(v))
                                                 : NULL;
        int rc = sum != NULL ? PyDict_SetItem(out, key, sum) : -1;
        Py_XDECREF(key);
        Py_XDECREF(sum);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* ---- visitors numbered by place (number_visitors) ----------------------------------------
 *
 * A rollup wants, per place (a context and the page asked for), the numbers of the
 * visitors who came (classify.visitor_number of client and agent). Handing the visitors
 * table over as ~100,000 key tuples a batch that Python then grouped and hashed cost a
 * rollup counter two fifths of its time on a diverse day; here each distinct (client,
 * agent) of the batch is numbered once and each key adds its number to its place. The
 * Python twin is regex_scan.numbered_py. */

typedef struct {
    uint32_t place;
    uint64_t number;
} Numbered;

/* The id of `key` in `t` (its value), a new one (`*next`, then counted up) the first time;
   -1 with an error set when memory runs out. */
static long long id_of(Table *t, const char *key, Py_ssize_t len, long long *next) {
    Slot *e = table_slot(t, key, len, 0);
    if (e != NULL)
        return e->value;
    if ((e = table_slot(t, key, len, 1)) == NULL)
        return -1;
    e->value = (*next)++;
    return e->value;
}

/* The visitor of a visitors key `vis` (its fields): its number, or -1 for a bot not
   counted (as a number: 1 when skipped); -2 with an error set. `whos` keeps each
   (client, agent) of the batch: its number, and in Slot.size whether it is skipped. */
static int visitor_of(Scanner *s, Table *whos, Table *skips, const Span *vis, uint64_t *out) {
    static const Span none = {"", 0};
    const Span *client = s->vn_client >= 0 ? &vis[s->vn_client] : &none;
    const Span *agent = s->vn_agent >= 0 ? &vis[s->vn_agent] : &none;
    Span who[2] = {*client, *agent};
    Layout both = {{0, 1}, 2};
    Py_ssize_t len;
    const char *key = compose(s, &both, who, &len);
    if (key == NULL)
        return -2;
    Slot *e = table_slot(whos, key, len, 0);
    if (e == NULL) {
        int skip = 0;
        if (s->vn_skip_of != Py_None && (skip = decide(skips, s->vn_skip_of, agent)) < 0)
            return -2;
        /* decide() composes nothing, so `key` still holds the joined pair */
        if ((e = table_slot(whos, key, len, 1)) == NULL)
            return -2;
        e->size = skip;
        e->value = skip ? 0
                        : (long long)b2_visitor(&s->vn_keyed, client->p, (size_t)client->n,
                                                agent->p, (size_t)agent->n);
    }
    *out = (uint64_t)e->value;
    return e->size ? -1 : 0;
}

/* Each visitor's number into the list of its place: a dict {place tuple: [numbers]}. */
static PyObject *places_dict(Scanner *s, Table *places, const Numbered *got, size_t n) {
    size_t groups = places->used;
    Py_ssize_t *fill = PyMem_Calloc(groups + 1, sizeof(Py_ssize_t));
    PyObject **lists = PyMem_Calloc(groups + 1, sizeof(PyObject *));
    PyObject *out = fill && lists ? PyDict_New() : NULL;
    int failed = out == NULL;
    for (size_t i = 0; i < n && !failed; i++)
        fill[got[i].place]++;
    for (size_t g = 0; g < groups && !failed; g++) {
        failed = (lists[g] = PyList_New(fill[g])) == NULL;
        fill[g] = 0;
    }
    for (size_t i = 0; i < n && !failed; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(got[i].number);
        failed = v == NULL;
        if (v != NULL)
            PyList_SET_ITEM(lists[got[i].place], fill[got[i].place]++, v);
    }
    for (size_t i = 0; i < places->cap && !failed; i++) {
        const Slot *e = &places->slots[i];
        if (e->off < 0)
            continue;
        PyObject *key = split_key(&s->shared, places->arena + e->off, e->len, s->vn_place.n);
        failed = key == NULL || PyDict_SetItem(out, key, lists[e->value]) < 0;
        Py_XDECREF(key);
    }
    for (size_t g = 0; lists && g < groups; g++)
        Py_XDECREF(lists[g]);
    PyMem_Free(fill);
    PyMem_Free(lists);
    if (failed) {
        Py_XDECREF(out);
        return PyErr_Occurred() ? NULL : PyErr_NoMemory();
    }
    return out;
}

/* The visitors table as {place: [visitor numbers]} (see number_visitors). */
static PyObject *numbered_visitors(Scanner *s) {
    Table places = {0}, whos = {0}, skips = {0};
    Numbered *got = PyMem_Malloc((s->visitors_t.used + 1) * sizeof(Numbered));
    PyObject *out = NULL;
    size_t n = 0;
    long long next = 0;
    if (got == NULL || table_init(&places) < 0 || table_init(&whos) < 0 ||
        table_init(&skips) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    Span vis[MAX_LAYOUT];
    int agents = s->agents_from[0] >= 0; /* the agents table summed in the same pass */
    if (agents)
        table_clear(&s->agents_t);
    for (size_t i = 0; i < s->visitors_t.cap; i++) {
        const Slot *e = &s->visitors_t.slots[i];
        if (e->off < 0)
            continue;
        split_visitor(s, e, vis);
        if (agents && add_agent_of(s, vis, e->value) < 0)
            goto done;
        uint64_t number;
        int rc = visitor_of(s, &whos, &skips, vis, &number);
        if (rc == -2)
            goto done;
        if (rc == -1)
            continue;
        Py_ssize_t len;
        const char *key = compose(s, &s->vn_place, vis, &len);
        long long place = key ? id_of(&places, key, len, &next) : -1;
        if (place < 0)
            goto done;
        got[n].place = (uint32_t)place;
        got[n++].number = number;
    }
    out = places_dict(s, &places, got, n);
done:
    PyMem_Free(got);
    table_free(&places);
    table_free(&whos);
    table_free(&skips);
    return out;
}

static PyObject *Scanner_number_visitors(Scanner *s, PyObject *args) {
    PyObject *key, *place, *skip_of;
    int client, agent;
    if (!PyArg_ParseTuple(args, "OOiiO", &key, &place, &client, &agent, &skip_of))
        return NULL;
    if (key == Py_None) {
        s->vn_on = 0;
        Py_CLEAR(s->vn_skip_of);
        Py_RETURN_NONE;
    }
    if (!PyBytes_Check(key) || PyBytes_GET_SIZE(key) < 1 || PyBytes_GET_SIZE(key) > 64) {
        PyErr_SetString(PyExc_ValueError, "a visitor key is 1 to 64 bytes");
        return NULL;
    }
    int width = s->visitors.n;
    if (width <= 0 || client < -1 || client >= width || agent < -1 || agent >= width ||
        (skip_of != Py_None && !PyCallable_Check(skip_of))) {
        PyErr_SetString(PyExc_ValueError, "bad visitor numbering (no visitors counted?)");
        return NULL;
    }
    if (layout_from(place, &s->vn_place, width - 1) < 0)
        return NULL;
    b2_keyed(&s->vn_keyed, (const uint8_t *)PyBytes_AS_STRING(key), (size_t)PyBytes_GET_SIZE(key));
    s->vn_client = client;
    s->vn_agent = agent;
    Py_INCREF(skip_of);
    Py_XSETREF(s->vn_skip_of, skip_of);
    s->vn_on = 1;
    Py_RETURN_NONE;
}

static PyObject *Scanner_take(Scanner *s, PyObject *args) {
    PyObject *cls;
    int with_recent;
    if (!PyArg_ParseTuple(args, "Op", &cls, &with_recent))
        return NULL;
    PyObject *parts[13] = {NULL}, *out = NULL;
    parts[0] = PyLong_FromLongLong(s->lines);
    if (hits_and_sizes(s, cls, &parts[1], &parts[8], &parts[11]) < 0)
        goto done;
    if (s->vn_on) { /* the numbers by place (and the agents, in the same pass), no key tuples */
        parts[4] = PySet_New(NULL);
        if ((parts[12] = numbered_visitors(s)) == NULL)
            goto done;
    } else {
        if (s->agents_from[0] >= 0 && agents_from_visitors(s) < 0)
            goto done;
        parts[4] = unjoined(&s->shared, &s->visitors_t, s->visitors.n < 0 ? 0 : s->visitors.n,
                            NULL);
        parts[12] = PyDict_New();
    }
    parts[2] = unjoined(&s->shared, &s->agents_t, s->agents.n < 0 ? 0 : s->agents.n, cls);
    parts[3] = unjoined(&s->shared, &s->refs_t, s->refs.n < 0 ? 0 : s->refs.n, cls);
    parts[5] = unjoined(&s->shared, &s->bots, s->agents.n < 0 ? 0 : s->agents.n, cls);
    parts[6] = unjoined(&s->shared, &s->ignored, s->ctx.n, cls);
    parts[7] = unjoined(&s->shared, &s->timings, s->timing_l.n, cls);
    parts[9] = unjoined(&s->shared, &s->clients_t, s->clients.n < 0 ? 0 : s->clients.n, cls);
    parts[10] = with_recent ? recent_list(s) : PyList_New(0);
    for (int i = 0; i < 13; i++)
        if (parts[i] == NULL)
            goto done;
    out = PyTuple_New(13);
    if (out == NULL)
        goto done;
    for (int i = 0; i < 13; i++) {
        PyTuple_SET_ITEM(out, i, parts[i]);
        parts[i] = NULL;
    }
    fresh(s);
done:
    release_shared(&s->shared);
    for (int i = 0; i < 13; i++)
        Py_XDECREF(parts[i]);
    return out;
}

static PyObject *Scanner_pending(Scanner *s, PyObject *Py_UNUSED(ignored)) {
    /* The bytes of the keys held: 8 KB agents and referrers make few lines a lot of
       memory, so the readers classify by bytes as well as by lines and keys. */
    size_t held = s->hits.arena_len + s->agents_t.arena_len + s->refs_t.arena_len +
                  s->visitors_t.arena_len + s->bots.arena_len + s->ignored.arena_len +
                  s->timings.arena_len + s->clients_t.arena_len;
    return Py_BuildValue("Lnn", s->lines,
                         (Py_ssize_t)(s->hits.used + s->visitors_t.used + s->refs_t.used +
                                      s->clients_t.used),
                         (Py_ssize_t)held);
}

static PyObject *Scanner_forget(Scanner *s, PyObject *Py_UNUSED(ignored)) {
    table_clear(&s->flag_bot);
    table_clear(&s->flag_ignore);
    Py_RETURN_NONE;
}

static PyObject *Scanner_rebind(Scanner *s, PyObject *args) {
    int count_bots, ignore_on;
    if (!PyArg_ParseTuple(args, "pp", &count_bots, &ignore_on))
        return NULL;
    s->count_bots = count_bots;
    s->ignore_on = ignore_on;
    return Scanner_forget(s, NULL);
}

static PyObject *Scanner_match(Scanner *s, PyObject *arg) {
    /* The fields of one line as a tuple (slot nfields empty), or None: for tests. */
    if (!PyBytes_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "match() takes bytes");
        return NULL;
    }
    Span f[MAX_FIELDS + 2];
    const char *p = PyBytes_AS_STRING(arg);
    for (int i = 0; i <= s->nfields; i++) {
        f[i].p = p;
        f[i].n = 0;
    }
    if (!match_line(s, p, p + PyBytes_GET_SIZE(arg), f))
        Py_RETURN_NONE;
    PyObject *t = PyTuple_New(s->nfields + 1);
    if (t == NULL)
        return NULL;
    for (int i = 0; i <= s->nfields; i++) {
        PyObject *v = PyBytes_FromStringAndSize(f[i].p, f[i].n);
        if (v == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, v);
    }
    return t;
}

static PyMethodDef Scanner_methods[] = {
    {"feed", (PyCFunction)Scanner_feed, METH_O,
     "Count the lines of a chunk; return the lines the plan refused."},
    {"count_row", (PyCFunction)Scanner_count_row, METH_O,
     "Count one line already cut into fields (a row of the regex path)."},
    {"take", (PyCFunction)Scanner_take, METH_VARARGS,
     "take(counter_class, with_recent): (lines, hits, agents, referrers, visitors, bots, "
     "ignored, timings, sizes, clients, recent, durations, numbered), keys as tuples; "
     "numbered: {place: [visitor numbers]} after number_visitors() (visitors then empty); "
     "then start afresh."},
    {"number_visitors", (PyCFunction)Scanner_number_visitors, METH_VARARGS,
     "number_visitors(key, place, client, agent, skip_of): take() hands the visitors over "
     "as classify.visitor_number(key) of the fields at client and agent (-1: b\"\"), "
     "grouped by the fields at place; skip_of(agent) true: not counted (None: none is). "
     "key None: as key tuples again."},
    {"pending", (PyCFunction)Scanner_pending, METH_NOARGS, "(lines, distinct keys, bytes of keys) pending."},
    {"forget", (PyCFunction)Scanner_forget, METH_NOARGS, "Drop the cached decisions."},
    {"rebind", (PyCFunction)Scanner_rebind, METH_VARARGS,
     "rebind(count_bots, ignore): new rules (a reload); drops the cached decisions."},
    {"match", (PyCFunction)Scanner_match, METH_O, "The fields of one line, or None."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "logcount.count._scan.Scanner",
    .tp_basicsize = sizeof(Scanner),
    .tp_dealloc = (destructor)Scanner_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Match and count the lines of one log format.",
    .tp_methods = Scanner_methods,
    .tp_init = (initproc)Scanner_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "logcount.count._scan",
                                    "The optional C hot loop of LineCounter.", -1, NULL};

static int init_seed(void) {
    PyObject *os = PyImport_ImportModule("os");
    PyObject *raw = os ? PyObject_CallMethod(os, "urandom", "i", 8) : NULL;
    Py_XDECREF(os);
    if (raw == NULL)
        return -1;
    memcpy(&hash_seed, PyBytes_AS_STRING(raw), 8);
    Py_DECREF(raw);
    return 0;
}

PyMODINIT_FUNC PyInit__scan(void) {
    init_tables();
    if (init_seed() < 0)
        return NULL;
    if (PyType_Ready(&ScannerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ScannerType);
    if (PyModule_AddObject(m, "Scanner", (PyObject *)&ScannerType) < 0 ||
        PyModule_AddIntConstant(m, "VERSION", SCAN_VERSION) < 0 ||
        PyModule_AddIntConstant(m, "LIT", K_LIT) < 0 ||
        PyModule_AddIntConstant(m, "QUOTED", K_QUOTED) < 0 ||
        PyModule_AddIntConstant(m, "WORD", K_WORD) < 0 ||
        PyModule_AddIntConstant(m, "INT", K_INT) < 0 ||
        PyModule_AddIntConstant(m, "INT_DASH", K_INT_DASH) < 0 ||
        PyModule_AddIntConstant(m, "STATUS", K_STATUS) < 0 ||
        PyModule_AddIntConstant(m, "TIME", K_TIME) < 0 ||
        PyModule_AddIntConstant(m, "COUNT", K_COUNT) < 0 ||
        PyModule_AddIntConstant(m, "COUNT_DASH", K_COUNT_DASH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
