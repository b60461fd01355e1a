/*
 * logcount.count._scan's private header: what its files share (see _scan.c for what the
 * module does). _scan_match.c cuts a line by the plan, _scan_tables.c holds the hash
 * tables of joined keys and counts a cut line into them, _scan_take.c hands the tables
 * to Python (the numbered visitors too), _scan.c is the module and the Scanner's methods.
 * A function one file calls in another is scan_-prefixed and hidden (no PLT call, not
 * exported from the .so). The hot path of a line stays in two files (cut by
 * scan_match_line; its keys prepared by scan_prepare_line and counted by
 * scan_count_prepared down to the hash table), so no call inlined before crosses a
 * file; is_digit, which both use, is static inline here.
 */
#ifndef LOGCOUNT_SCAN_H
#define LOGCOUNT_SCAN_H

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
#define SCAN_VERSION 6
#define MIN_YEAR 1001
#define MAX_YEAR 9998
/* logcount/timing.py: a duration is capped at 2^36 us; bins 0 (0 us) to 145 (the cap) */
#define DUR_CAP (1LL << 36)
#define NBINS 146

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

/* 40 bytes: the offset and length of a key in 32 bits each (a table's arena stays under
   ARENA_MAX), where 64 bits each made 48 */
typedef struct {
    uint64_t hash;
    int32_t off; /* in the arena; -1: empty */
    uint32_t len;
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
/* A table's keys in bytes at most (a batch's are bounded far below it: pipeline.HARD_AT) */
#define ARENA_MAX ((size_t)INT32_MAX)

/* A set of 64-bit numbers (a visitor numbered by place: place id << 32 | visitor id),
   8 bytes a slot: the per-line look-up of a busy day's ~100,000 of a batch stays in the
   caches, where a Table's 40-byte slot and its key in the arena would not. */
#define U64_EMPTY UINT64_MAX
typedef struct {
    uint64_t *keys;
    size_t cap, used; /* cap: a power of two */
} U64Set;

/* A line's keys, composed and hashed before any is looked up (scan_prepare_line), so
   that the look-ups' cache misses overlap: on a diverse day a counter spent a fifth of
   its time waiting, one look-up after the other, for a slot and then for its key in the
   arena. Each key names its table (NULL: not looked up for this line); the composed
   ones lie in `buf`, the others (an agent, a request) in the line itself. */
enum { LK_BOT, LK_IGNORE, LK_HIT, LK_AGENT, LK_REF, LK_CLIENT, LK_WHO, LK_PLACE, LK_VISITOR, LK_N };
typedef struct {
    Table *t;
    const char *key;
    Py_ssize_t len;
    uint64_t h;
} LineKey;
/* Lines in flight in feed: one cut, its keys prepared and their slots loading, while the
   one before it is counted (3, a line more between, measured no faster: -16 % of feed's
   CPU against -18 % for 2) */
#define PIPELINE 2
typedef struct {
    LineKey k[LK_N];
    char *buf;
    Py_ssize_t cap;
} LineKeys;

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
    int vn_arrays; /* numbers_in_arrays(): each place's numbers an array('Q'), not a list */
    b2_state vn_keyed;           /* classify.visitor_number's key, its block compressed */
    Layout vn_place;             /* in a visitors key: its context, then its page fields */
    int vn_client, vn_agent;     /* in a visitors key; -1: the format has none (b"") */
    PyObject *vn_skip_of;        /* agent -> a bot not counted; None: none is */
    /* numbered as the lines are counted (number_line), so that take() walks no key: in a
       line's fields, the place (vn_place) and the visitor (context, client, agent);
       vn_whos: each visitor of the batch -> its number (Slot.value), its id << 1 | whether
       it is a bot not counted (Slot.size) and its lines (Slot.dur: the agents table is
       summed from them when vn_agents_summed); vn_numbers: the numbers by visitor id;
       vn_places: a place -> its id + 1; vn_pairs: each place id << 32 | visitor id once;
       vn_skips: skip_of's answers */
    Layout vn_place_f, vn_who_f;
    int vn_agents_summed;
    Table vn_whos, vn_places, vn_skips;
    U64Set vn_pairs;
    uint64_t *vn_numbers;
    size_t vn_numbers_cap;
    long long lines;
    /* the last `recent_size` counted lines: (source, start, length); a row tuple has start -1 */
    Py_ssize_t recent_size, recent_head, recent_count;
    PyObject **recent_src;
    Py_ssize_t *recent_start, *recent_len;
    /* reusable key buffer */
    char *buf;
    Py_ssize_t bufcap;
    /* the keys of the line being counted and of the next ones, prepared meanwhile (feed) */
    LineKeys keys[PIPELINE];
} Scanner;

#define EACH_COUNT_TABLE(s, X)                                                                 \
    X(&(s)->hits) X(&(s)->agents_t) X(&(s)->refs_t) X(&(s)->visitors_t) X(&(s)->bots)           \
        X(&(s)->ignored) X(&(s)->timings) X(&(s)->clients_t) X(&(s)->vn_whos)                 \
            X(&(s)->vn_places) X(&(s)->vn_skips)

static inline int is_digit(char c) { return c >= '0' && c <= '9'; }

#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

/* _scan_match.c */
void scan_init_match(void);
int scan_match_line(Scanner *s, const char *p, const char *end, Span *f);

/* _scan_tables.c */
int scan_init_tables(void);
int scan_table_init(Table *t);
int scan_u64_init(U64Set *set);
void scan_u64_free(U64Set *set);
void scan_u64_clear(U64Set *set);
void scan_table_free(Table *t);
void scan_table_clear(Table *t);
Slot *scan_table_slot(Table *t, const char *key, Py_ssize_t len, int insert);
uint64_t scan_hash(const char *p, size_t n);
Slot *scan_table_slot_h(Table *t, const char *key, Py_ssize_t len, uint64_t h, int insert);
int scan_prepare_line(Scanner *s, const Span *f, LineKeys *lk);
void scan_prefetch_keys(const LineKeys *lk);
int scan_count_prepared(Scanner *s, Span *f, const LineKeys *lk);
const char *scan_compose(Scanner *s, const Layout *l, const Span *f, Py_ssize_t *len);
int scan_count_key(Scanner *s, Table *t, const Layout *l, const Span *f, long long by);
int scan_decide(Table *cache, PyObject *fn, const Span *value);
void scan_remember(Scanner *s, PyObject *src, Py_ssize_t start, Py_ssize_t len);
int scan_count_fields(Scanner *s, Span *f);

/* _scan_take.c */
void scan_release_shared(Table *shared);
PyObject *scan_unjoined(Table *shared, Table *t, int width, PyObject *cls);
PyObject *scan_recent_list(Scanner *s);
int scan_agents_from_visitors(Scanner *s);
int scan_hits_and_sizes(Scanner *s, PyObject *cls, PyObject **hits, PyObject **sizes,
                        PyObject **durs);
PyObject *scan_numbered_visitors(Scanner *s);
Slot *scan_new_who(Scanner *s, const Span *f, const char *key, Py_ssize_t len);
long long scan_place_id(Scanner *s, const char *key, Py_ssize_t len, uint64_t h);
void scan_visitor_key(Scanner *s, const uint8_t *key, size_t len);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif /* LOGCOUNT_SCAN_H */
