/* logcount.count._scan: matching one line against the plan (see _scan.h). */
#include "_scan.h"

/* Printable ASCII but '"' and '\\' (what Apache writes unescaped in a string). */
static unsigned char QUOTED_OK[256];
static unsigned char WORD_OK[256]; /* the same without the space */

void scan_init_match(void) {
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
int scan_match_line(Scanner *s, const char *p, const char *end, Span *f) {
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
