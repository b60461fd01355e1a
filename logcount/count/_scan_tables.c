/* logcount.count._scan: the hash tables of joined keys, and counting a cut line into
   them (see _scan.h). */
#include "_scan.h"

static char BIN_TEXT[NBINS][4]; /* a bin's number as text: the last field of its key */

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

int scan_table_init(Table *t) {
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

void scan_table_free(Table *t) {
    PyMem_Free(t->slots);
    PyMem_Free(t->arena);
    t->slots = NULL;
    t->arena = NULL;
}

/* Empty it; a table grown large by a burst goes back to its first size. */
void scan_table_clear(Table *t) {
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

uint64_t scan_hash(const char *p, size_t n) { return hash_bytes(p, n); }

/* The slot of `key` (found, or NULL when absent and !insert); NULL with an error set when
   memory runs out. A new slot has value 0. */
Slot *scan_table_slot(Table *t, const char *key, Py_ssize_t len, int insert) {
    return scan_table_slot_h(t, key, len, hash_bytes(key, (size_t)len), insert);
}

/* The same, the key's hash (scan_hash) given. */
Slot *scan_table_slot_h(Table *t, const char *key, Py_ssize_t len, uint64_t h, int insert) {
    size_t i = h & (t->cap - 1);
    for (;;) {
        Slot *e = &t->slots[i];
        if (e->off < 0)
            break;
        if (e->hash == h && (Py_ssize_t)e->len == len && memcmp(t->arena + e->off, key, len) == 0)
            return e;
        i = (i + 1) & (t->cap - 1);
    }
    if (!insert)
        return NULL;
    /* Grown at three quarters full, not half: its slots are most of a diverse batch's
       tables (the keys' bytes lie in the arena, untouched past its end), and a table just
       grown at half full stood at a quarter (-4 MB of a counter's peak, ~13,000 lines) */
    if ((t->used + 1) * 4 > t->cap * 3) {
        if (table_grow(t) < 0) {
            PyErr_NoMemory();
            return NULL;
        }
        i = h & (t->cap - 1);
        while (t->slots[i].off >= 0)
            i = (i + 1) & (t->cap - 1);
    }
    if (t->arena_len + (size_t)len > ARENA_MAX) {
        PyErr_SetString(PyExc_MemoryError, "a counter's table passed 2 GiB of keys");
        return NULL;
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
    e->off = (int32_t)t->arena_len;
    e->len = (uint32_t)len;
    e->value = 0;
    e->size = 0;
    e->dur = 0;
    t->arena_len += (size_t)len;
    t->used++;
    return e;
}

int scan_u64_init(U64Set *set) {
    set->keys = PyMem_Malloc(TABLE_MIN * sizeof(uint64_t));
    if (set->keys == NULL)
        return -1;
    memset(set->keys, 0xff, TABLE_MIN * sizeof(uint64_t));
    set->cap = TABLE_MIN;
    set->used = 0;
    return 0;
}

void scan_u64_free(U64Set *set) {
    PyMem_Free(set->keys);
    set->keys = NULL;
}

/* Empty it; one grown large by a burst goes back to its first size. */
void scan_u64_clear(U64Set *set) {
    if (set->cap > 16 * TABLE_MIN) {
        uint64_t *small = PyMem_Realloc(set->keys, TABLE_MIN * sizeof(uint64_t));
        if (small != NULL) {
            set->keys = small;
            set->cap = TABLE_MIN;
        }
    }
    memset(set->keys, 0xff, set->cap * sizeof(uint64_t));
    set->used = 0;
}

static inline size_t u64_slot(uint64_t key, size_t cap) {
    return (size_t)mum(key ^ hash_seed, 0x9e3779b97f4a7c15ull) & (cap - 1);
}

static int u64_grow(U64Set *set) {
    size_t cap = set->cap * 2;
    uint64_t *keys = PyMem_Malloc(cap * sizeof(uint64_t));
    if (keys == NULL)
        return -1;
    memset(keys, 0xff, cap * sizeof(uint64_t));
    for (size_t i = 0; i < set->cap; i++) {
        if (set->keys[i] == U64_EMPTY)
            continue;
        size_t j = u64_slot(set->keys[i], cap);
        while (keys[j] != U64_EMPTY)
            j = (j + 1) & (cap - 1);
        keys[j] = set->keys[i];
    }
    PyMem_Free(set->keys);
    set->keys = keys;
    set->cap = cap;
    return 0;
}

/* `key` (never U64_EMPTY) into the set; -1 with an error set when memory runs out. */
static int u64_add(U64Set *set, uint64_t key) {
    size_t i = u64_slot(key, set->cap);
    for (; set->keys[i] != U64_EMPTY; i = (i + 1) & (set->cap - 1))
        if (set->keys[i] == key)
            return 0;
    if ((set->used + 1) * 2 > set->cap) {
        if (u64_grow(set) < 0) {
            PyErr_NoMemory();
            return -1;
        }
        for (i = u64_slot(key, set->cap); set->keys[i] != U64_EMPTY; i = (i + 1) & (set->cap - 1))
            ;
    }
    set->keys[i] = key;
    set->used++;
    return 0;
}

/* ---- counting ------------------------------------------------------------------------ */

static inline Py_ssize_t joined_len(const Layout *l, const Span *f) {
    Py_ssize_t size = l->n ? l->n - 1 : 0;
    for (int i = 0; i < l->n; i++)
        size += f[l->idx[i]].n;
    return size;
}

/* The fields of a layout joined with '\n' at w; the end of what was written. */
static inline char *join_into(char *w, const Layout *l, const Span *f) {
    for (int i = 0; i < l->n; i++) {
        if (i)
            *w++ = '\n';
        const Span *x = &f[l->idx[i]];
        memcpy(w, x->p, x->n);
        w += x->n;
    }
    return w;
}

/* The fields of a layout joined with '\n' (no line holds one), in the scanner's buffer. */
const char *scan_compose(Scanner *s, const Layout *l, const Span *f, Py_ssize_t *len) {
    Py_ssize_t size = joined_len(l, f);
    if (size > s->bufcap) {
        char *grown = PyMem_Realloc(s->buf, size * 2);
        if (grown == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        s->buf = grown;
        s->bufcap = size * 2;
    }
    join_into(s->buf, l, f);
    *len = size;
    return s->buf;
}

static Slot *count_key_slot(Scanner *s, Table *t, const Layout *l, const Span *f, long long by) {
    Py_ssize_t len;
    const char *key = scan_compose(s, l, f, &len);
    if (key == NULL)
        return NULL;
    Slot *e = scan_table_slot(t, key, len, 1);
    if (e == NULL)
        return NULL;
    e->value += by;
    return e;
}

int scan_count_key(Scanner *s, Table *t, const Layout *l, const Span *f, long long by) {
    return count_key_slot(s, t, l, f, by) == NULL ? -1 : 0;
}

/* The cached decision for `value` (a bot agent, an ignored request), hashed h; -1 on
   error. */
static int decide_h(Table *cache, PyObject *fn, const Span *value, uint64_t h) {
    Slot *e = scan_table_slot_h(cache, value->p, value->n, h, 0);
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
        scan_table_clear(cache);
    e = scan_table_slot_h(cache, value->p, value->n, h, 1);
    if (e == NULL)
        return -1;
    e->value = flag;
    return flag;
}

int scan_decide(Table *cache, PyObject *fn, const Span *value) {
    return decide_h(cache, fn, value, hash_bytes(value->p, (size_t)value->n));
}

void scan_remember(Scanner *s, PyObject *src, Py_ssize_t start, Py_ssize_t len) {
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
    return scan_count_key(s, &s->timings, &s->timing_l, f, 1);
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

/* ---- a line's keys, prepared before they are looked up (see LineKeys) --------------- */

static inline void prefetch_span(const void *p, size_t n) {
#if defined(__GNUC__)
    const char *c = p;
    __builtin_prefetch(c);
    if (n > 64)
        __builtin_prefetch(c + 64);
    if (n > 128)
        __builtin_prefetch(c + n - 1);
#else
    (void)p;
    (void)n;
#endif
}

/* Compose and hash the keys that scan_count_prepared will look up for the line `f`, and
   start loading the slot each hash points at; -1 with an error set when memory runs out.
   What is looked up depends only on the scanner's settings, never on the tables. */
int scan_prepare_line(Scanner *s, const Span *f, LineKeys *lk) {
    int agents_later = s->vn_on ? s->vn_agents_summed : s->agents_from[0] >= 0;
    int numbered = s->visitors.n >= 0 && s->vn_on;
    const struct {
        int k;
        Table *t;
        const Layout *l;
    } joined[] = {
        {LK_HIT, &s->hits, &s->hits_l},
        {LK_AGENT, s->agents.n >= 0 && !agents_later ? &s->agents_t : NULL, &s->agents},
        {LK_REF, s->refs.n >= 0 ? &s->refs_t : NULL, &s->refs},
        {LK_CLIENT, s->clients.n >= 0 ? &s->clients_t : NULL, &s->clients},
        {LK_WHO, numbered ? &s->vn_whos : NULL, &s->vn_who_f},
        {LK_PLACE, numbered ? &s->vn_places : NULL, &s->vn_place_f},
        {LK_VISITOR, s->visitors.n >= 0 && !s->vn_on ? &s->visitors_t : NULL, &s->visitors},
    };
    enum { NJOINED = sizeof joined / sizeof joined[0] };
    Py_ssize_t need = 0;
    for (int j = 0; j < NJOINED; j++)
        if (joined[j].t != NULL)
            need += joined_len(joined[j].l, f);
    if (need > lk->cap) {
        char *grown = PyMem_Realloc(lk->buf, need * 2);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        lk->buf = grown;
        lk->cap = need * 2;
    }
    LineKey *k = lk->k;
    char *w = lk->buf;
    for (int j = 0; j < NJOINED; j++) {
        LineKey *x = &k[joined[j].k];
        x->t = joined[j].t;
        if (x->t != NULL) {
            x->key = w;
            w = join_into(w, joined[j].l, f);
            x->len = w - x->key;
        }
    }
    /* the decisions' caches are keyed by the field itself */
    k[LK_BOT].t = s->agent_i >= 0 ? &s->flag_bot : NULL;
    k[LK_IGNORE].t = s->ignore_on && s->target_i >= 0 ? &s->flag_ignore : NULL;
    if (k[LK_BOT].t != NULL) {
        k[LK_BOT].key = f[s->agent_i].p;
        k[LK_BOT].len = f[s->agent_i].n;
    }
    if (k[LK_IGNORE].t != NULL) {
        k[LK_IGNORE].key = f[s->target_i].p;
        k[LK_IGNORE].len = f[s->target_i].n;
    }
    for (int j = 0; j < LK_N; j++) {
        if (k[j].t == NULL)
            continue;
        k[j].h = hash_bytes(k[j].key, (size_t)k[j].len);
        prefetch_span(&k[j].t->slots[k[j].h & (k[j].t->cap - 1)], sizeof(Slot));
    }
    return 0;
}

/* Start loading the keys in the arenas that the prepared keys' slots hold (their slots
   loaded by now, a line later): a hint only, the look-ups probe as ever. */
void scan_prefetch_keys(const LineKeys *lk) {
    for (int j = 0; j < LK_N; j++) {
        const LineKey *k = &lk->k[j];
        if (k->t == NULL)
            continue;
        const Slot *e = &k->t->slots[k->h & (k->t->cap - 1)];
        if (e->off >= 0 && e->hash == k->h)
            prefetch_span(k->t->arena + e->off, (size_t)e->len);
    }
}

static inline Slot *add_prepared(const LineKey *k, long long by) {
    Slot *e = scan_table_slot_h(k->t, k->key, k->len, k->h, 1);
    if (e != NULL)
        e->value += by;
    return e;
}

/* number_visitors on: the line's visitor numbered, its number added once to its place's
   (see _scan_take.c), instead of a visitors key that take() would split again. */
static int number_line(Scanner *s, const Span *f, const LineKeys *lk) {
    const LineKey *w = &lk->k[LK_WHO], *place_key = &lk->k[LK_PLACE];
    Slot *who = scan_table_slot_h(&s->vn_whos, w->key, w->len, w->h, 0);
    if (who == NULL && (who = scan_new_who(s, f, w->key, w->len)) == NULL)
        return -1;
    who->dur++;
    if (who->size & 1) /* a bot not counted */
        return 0;
    uint64_t id = (uint64_t)who->size >> 1;
    long long place = scan_place_id(s, place_key->key, place_key->len, place_key->h);
    if (place < 0)
        return -1;
    return u64_add(&s->vn_pairs, (uint64_t)place << 32 | id);
}

/* Count one parsed line (fields in f, slot nfields is empty, nfields + 1 free) whose
   keys scan_prepare_line prepared. */
int scan_count_prepared(Scanner *s, Span *f, const LineKeys *lk) {
    const LineKey *k = lk->k;
    s->lines++;
    int bot = 0, ignored = 0;
    if (k[LK_BOT].t != NULL) {
        bot = decide_h(&s->flag_bot, s->decide_bot, &f[s->agent_i], k[LK_BOT].h);
        if (bot < 0)
            return -1;
        /* keyed by the agent too (agents' layout): bots are counted by their name */
        if (bot && scan_count_key(s, &s->bots, &s->agents, f, 1) < 0)
            return -1;
    }
    int excluded = bot && !s->count_bots;
    if (k[LK_IGNORE].t != NULL) {
        ignored = decide_h(&s->flag_ignore, s->decide_ignore, &f[s->target_i], k[LK_IGNORE].h);
        if (ignored < 0)
            return -1;
        if (ignored && !excluded && scan_count_key(s, &s->ignored, &s->ctx, f, 1) < 0)
            return -1;
        excluded = excluded || ignored;
    }
    if (excluded)
        return 0;
    Slot *hit = add_prepared(&k[LK_HIT], 1);
    if (hit == NULL || (s->size_i >= 0 && add_size(s, hit, f) < 0) ||
        (s->dur_i >= 0 && add_time(s, hit, f) < 0))
        return -1;
    /* the agents table is prepared only when not summed at take() from a table that
       counts the same lines (agents_from, vn_agents_summed) */
    for (int j = LK_AGENT; j <= LK_CLIENT; j++)
        if (k[j].t != NULL && add_prepared(&k[j], 1) == NULL)
            return -1;
    if (k[LK_WHO].t != NULL)
        return number_line(s, f, lk);
    if (k[LK_VISITOR].t != NULL && add_prepared(&k[LK_VISITOR], 1) == NULL)
        return -1;
    return 0;
}

/* Count one parsed line (a row of the regex path): its keys prepared, then counted. */
int scan_count_fields(Scanner *s, Span *f) {
    if (scan_prepare_line(s, f, &s->keys[0]) < 0)
        return -1;
    return scan_count_prepared(s, f, &s->keys[0]);
}

/* The bins' texts, and the hash seed from os.urandom. */
int scan_init_tables(void) {
    for (int b = 0; b < NBINS; b++)
        snprintf(BIN_TEXT[b], sizeof BIN_TEXT[b], "%d", b);
    PyObject *os = PyImport_ImportModule("os");
    PyObject *raw = os ? PyObject_CallMethod(os, "urandom", "i", 8) : NULL;
    Py_XDECREF(os);
    if (raw == NULL)
        return -1;
    memcpy(&hash_seed, PyBytes_AS_STRING(raw), 8);
    Py_DECREF(raw);
    return 0;
}
