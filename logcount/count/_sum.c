/* logcount.count._sum: the aggregator's per-key sums in C (optional, as _scan).
 *
 * A batch of a day's diverse traffic has nearly one distinct key per line (a minute, a
 * request, a status; a minute and a referrer ...), and the aggregator adds each key's
 * count to a member of every dimension the key yields: in Python that loop was half of
 * the time `pipe` spent classifying (bench/profile_diverse.py). The Python twin,
 * logcount/count/sums.py, defines what this computes; tests/test_sums.py holds both equal.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define SUM_VERSION 8

/* The dict under `key` in `outer`, created empty when missing; a borrowed reference. */
static PyObject *inner_dict(PyObject *outer, PyObject *key) {
    PyObject *found = PyDict_GetItemWithError(outer, key);
    if (found != NULL || PyErr_Occurred())
        return found;
    found = PyDict_New();
    if (found == NULL)
        return NULL;
    int failed = PyDict_SetItem(outer, key, found);
    Py_DECREF(found); /* `outer` holds it */
    return failed ? NULL : found;
}

/* per[member] += n */
static int add_to(PyObject *per, PyObject *member, PyObject *n) {
    PyObject *now = PyDict_GetItemWithError(per, member);
    if (now == NULL) {
        if (PyErr_Occurred())
            return -1;
        return PyDict_SetItem(per, member, n);
    }
    PyObject *sum = PyNumber_Add(now, n);
    if (sum == NULL)
        return -1;
    int failed = PyDict_SetItem(per, member, sum);
    Py_DECREF(sum);
    return failed;
}

/* Adds the pairs of one key: `pairs` is a tuple of (dimension, member) tuples. */
static int add_pairs(PyObject *dims, PyObject *pairs, PyObject *n) {
    if (!PyTuple_Check(pairs)) {
        PyErr_SetString(PyExc_TypeError, "members must be a tuple of (dimension, member)");
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(pairs); i++) {
        PyObject *pair = PyTuple_GET_ITEM(pairs, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "a member must be a (dimension, member) tuple");
            return -1;
        }
        PyObject *per = inner_dict(dims, PyTuple_GET_ITEM(pair, 0));
        if (per == NULL || add_to(per, PyTuple_GET_ITEM(pair, 1), n) < 0)
            return -1;
    }
    return 0;
}

/* where[key] (or members[key]), asked of `learn` and kept there when missing; borrowed. */
static PyObject *known(PyObject *cache, PyObject *key, PyObject *learn) {
    PyObject *found = PyDict_GetItemWithError(cache, key);
    if (found != NULL || PyErr_Occurred())
        return found;
    PyObject *fresh = PyObject_CallOneArg(learn, key);
    if (fresh == NULL)
        return NULL;
    int failed = PyDict_SetItem(cache, key, fresh);
    Py_DECREF(fresh); /* `cache` holds it */
    return failed ? NULL : PyDict_GetItemWithError(cache, key);
}

/* `more`: a tuple of (table, out) pairs whose tables are keyed as the main one (a subset of
   its keys); or NULL. 0, or -1 with TypeError. */
static int check_more(PyObject *more) {
    if (more == NULL)
        return 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(more); i++) {
        PyObject *two = PyTuple_GET_ITEM(more, i);
        if (!PyTuple_Check(two) || PyTuple_GET_SIZE(two) != 2 ||
            !PyDict_Check(PyTuple_GET_ITEM(two, 0)) || !PyDict_Check(PyTuple_GET_ITEM(two, 1))) {
            PyErr_SetString(PyExc_TypeError, "more must hold (table, out) pairs of dicts");
            return -1;
        }
    }
    return 0;
}

/* The pairs of `key` (at `at`) added with its value in each table of `more`: the sizes and
   durations of a hit key ride on the hit's own look-ups. */
static int add_more(PyObject *more, PyObject *key, PyObject *at, PyObject *pairs) {
    for (Py_ssize_t i = 0; more != NULL && i < PyTuple_GET_SIZE(more); i++) {
        PyObject *two = PyTuple_GET_ITEM(more, i);
        PyObject *n = PyDict_GetItemWithError(PyTuple_GET_ITEM(two, 0), key);
        if (n == NULL) {
            if (PyErr_Occurred())
                return -1;
            continue; /* not in this table (a size of 0, no duration) */
        }
        PyObject *dims = inner_dict(PyTuple_GET_ITEM(two, 1), at);
        if (dims == NULL || add_pairs(dims, pairs, n) < 0)
            return -1;
    }
    return 0;
}

static PyObject *add_by_members(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *table, *where, *members, *out, *at_of, *pairs_of, *more = NULL;
    Py_ssize_t nctx;
    if (!PyArg_ParseTuple(args, "O!nO!O!O!OO|O!", &PyDict_Type, &table, &nctx, &PyDict_Type,
                          &where, &PyDict_Type, &members, &PyDict_Type, &out, &at_of, &pairs_of,
                          &PyTuple_Type, &more))
        return NULL;
    if (check_more(more) < 0)
        return NULL;
    Py_ssize_t pos = 0;
    PyObject *key, *n;
    while (PyDict_Next(table, &pos, &key, &n)) {
        if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) < nctx || nctx < 0) {
            PyErr_SetString(PyExc_TypeError, "keys must be tuples of at least nctx items");
            return NULL;
        }
        PyObject *ctx = PyTuple_GetSlice(key, 0, nctx);
        if (ctx == NULL)
            return NULL;
        PyObject *at = known(where, ctx, at_of);
        Py_DECREF(ctx);
        if (at == NULL)
            return NULL;
        Py_INCREF(at); /* `where` may change while pairs_of runs */
        PyObject *rest = PyTuple_GetSlice(key, nctx, PyTuple_GET_SIZE(key));
        PyObject *pairs = rest != NULL ? known(members, rest, pairs_of) : NULL;
        Py_XINCREF(pairs);
        Py_XDECREF(rest);
        PyObject *dims = pairs != NULL ? inner_dict(out, at) : NULL;
        int failed = dims == NULL || add_pairs(dims, pairs, n) < 0 ||
                     add_more(more, key, at, pairs) < 0;
        Py_DECREF(at);
        Py_XDECREF(pairs);
        if (failed)
            return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *add_counts(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *target, *source;
    if (!PyArg_ParseTuple(args, "O!O!", &PyDict_Type, &target, &PyDict_Type, &source))
        return NULL;
    Py_ssize_t pos = 0;
    PyObject *key, *n;
    while (PyDict_Next(source, &pos, &key, &n))
        if (add_to(target, key, n) < 0)
            return NULL;
    Py_RETURN_NONE;
}

/* A tuple of key[i] for each index i of `at` (a tuple of ints). */
static PyObject *pick(PyObject *key, PyObject *at) {
    Py_ssize_t n = PyTuple_GET_SIZE(at);
    PyObject *out = PyTuple_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t j = 0; j < n; j++) {
        Py_ssize_t i = PyLong_AsSsize_t(PyTuple_GET_ITEM(at, j));
        if (i < 0 || i >= PyTuple_GET_SIZE(key)) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_IndexError, "an index past the key");
            Py_DECREF(out);
            return NULL;
        }
        PyObject *item = PyTuple_GET_ITEM(key, i);
        Py_INCREF(item);
        PyTuple_SET_ITEM(out, j, item);
    }
    return out;
}

/* A cache in front of add_to_sets' dicts, keyed by the identity of a key's items: the
   scanner's take() hands one bytes object per distinct value, so the items of a place
   (context and request) or of a visitor are the same objects from key to key, and a
   lookup needs no tuple made and hashed (~900,000 keys a diverse day, ~1,500 instructions
   each). Only an optimisation: items alike but not the same object miss it and find the
   dict as before, which is filled (and asked of) exactly as without it. */
#define PC_ITEMS 8

typedef struct {
    PyObject *items[PC_ITEMS]; /* strong references, as the value */
    PyObject *value;           /* NULL: an empty slot */
} PcSlot;

typedef struct {
    PcSlot *slots;
    size_t cap, used;
    int width; /* items per key; 0: the cache is off (more than PC_ITEMS) */
} PcTable;

static size_t pc_hash(PyObject **items, int width) {
    uint64_t h = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < width; i++)
        h = (h ^ ((uintptr_t)items[i] >> 4)) * 0xff51afd7ed558ccdULL;
    return (size_t)(h ^ (h >> 29));
}

static PcSlot *pc_find(PcTable *t, PyObject **items) {
    size_t mask = t->cap - 1, i = pc_hash(items, t->width) & mask;
    for (;; i = (i + 1) & mask) {
        PcSlot *e = &t->slots[i];
        if (e->value == NULL || memcmp(e->items, items, sizeof(PyObject *) * t->width) == 0)
            return e;
    }
}

static int pc_init(PcTable *t, int width) {
    t->width = width <= PC_ITEMS ? width : 0;
    t->cap = 1024;
    t->used = 0;
    t->slots = t->width ? PyMem_Calloc(t->cap, sizeof(PcSlot)) : NULL;
    if (t->width && t->slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void pc_free(PcTable *t) {
    for (size_t i = 0; t->slots != NULL && i < t->cap; i++) {
        if (t->slots[i].value == NULL)
            continue;
        Py_DECREF(t->slots[i].value);
        for (int j = 0; j < t->width; j++)
            Py_DECREF(t->slots[i].items[j]);
    }
    PyMem_Free(t->slots);
    t->slots = NULL;
}

/* Keeps value under items (not there yet); the table grows at half full. */
static int pc_put(PcTable *t, PyObject **items, PyObject *value) {
    if (2 * (t->used + 1) > t->cap) {
        PcSlot *old = t->slots;
        size_t oldcap = t->cap;
        t->slots = PyMem_Calloc(oldcap * 2, sizeof(PcSlot));
        if (t->slots == NULL) {
            t->slots = old;
            PyErr_NoMemory();
            return -1;
        }
        t->cap = oldcap * 2;
        for (size_t i = 0; i < oldcap; i++)
            if (old[i].value != NULL)
                *pc_find(t, old[i].items) = old[i];
        PyMem_Free(old);
    }
    PcSlot *e = pc_find(t, items);
    memcpy(e->items, items, sizeof(PyObject *) * t->width);
    for (int j = 0; j < t->width; j++) /* held: no other object takes their address */
        Py_INCREF(items[j]);
    Py_INCREF(value);
    e->value = value;
    t->used++;
    return 0;
}

/* The items of `key` at the indexes of `at` after its first `first` items, into out. */
static int pc_items(PyObject *key, Py_ssize_t first, PyObject *at, PyObject **out) {
    for (Py_ssize_t i = 0; i < first; i++)
        out[i] = PyTuple_GET_ITEM(key, i);
    for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(at); j++) {
        Py_ssize_t i = PyLong_AsSsize_t(PyTuple_GET_ITEM(at, j));
        if (i < 0 || i >= PyTuple_GET_SIZE(key)) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_IndexError, "an index past the key");
            return -1;
        }
        out[first + j] = PyTuple_GET_ITEM(key, i);
    }
    return 0;
}

/* The value of a key's place or visitor: from the identity cache `pc`, else from the dict
   `cache` (asking `learn` what it lacks, with the tuple `make` builds), then kept in pc.
   A borrowed reference, or NULL on error. */
static PyObject *cached(PcTable *pc, PyObject **items, PyObject *cache, PyObject *learn,
                        PyObject *(*make)(PyObject *, Py_ssize_t, PyObject *), PyObject *key,
                        Py_ssize_t nctx, PyObject *at) {
    PcSlot *hit = pc->width ? pc_find(pc, items) : NULL;
    if (hit != NULL && hit->value != NULL)
        return hit->value;
    PyObject *lookup = make(key, nctx, at);
    if (lookup == NULL)
        return NULL;
    PyObject *found = known(cache, lookup, learn);
    Py_DECREF(lookup);
    if (found != NULL && pc->width && pc_put(pc, items, found) < 0)
        return NULL;
    return found;
}

/* (key[:nctx], the items at page_at): a key's place, as targets is keyed. */
static PyObject *place_of(PyObject *key, Py_ssize_t nctx, PyObject *page_at) {
    PyObject *ctx = PyTuple_GetSlice(key, 0, nctx);
    PyObject *page = ctx != NULL ? pick(key, page_at) : NULL;
    PyObject *where = page != NULL ? PyTuple_Pack(2, ctx, page) : NULL;
    Py_XDECREF(ctx);
    Py_XDECREF(page);
    return where;
}

/* The items at who_at: a key's visitor, as digests is keyed. */
static PyObject *who_of(PyObject *key, Py_ssize_t nctx, PyObject *who_at) {
    (void)nctx;
    return pick(key, who_at);
}

/* One visitor key: its digest added to each set its place names. 0, or -1 on error. */

/* `digest` added to each set of the tuple `sets` sets_of gave; None: a bot not counted,
   nothing added. -1 with an exception set when `sets` is not a tuple of sets. */
static int add_to_each(PyObject *sets, PyObject *digest) {
    if (digest == Py_None)
        return 0;
    if (!PyTuple_Check(sets)) {
        PyErr_SetString(PyExc_TypeError, "sets_of must give a tuple of sets, or None");
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(sets); i++) {
        PyObject *s = PyTuple_GET_ITEM(sets, i);
        if (!PySet_Check(s)) {
            PyErr_SetString(PyExc_TypeError, "not a set");
            return -1;
        }
        if (PySet_Add(s, digest) < 0)
            return -1;
    }
    return 0;
}
static int add_visitor(PyObject *key, Py_ssize_t nctx, PyObject *page_at, PyObject *who_at,
                       PyObject *targets, PyObject *digests, PyObject *sets_of,
                       PyObject *digest_of, PcTable *places, PcTable *whos) {
    if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) < nctx || nctx < 0) {
        PyErr_SetString(PyExc_TypeError, "keys must be tuples of at least nctx items");
        return -1;
    }
    PyObject *items[PC_ITEMS];
    if (places->width && pc_items(key, nctx, page_at, items) < 0)
        return -1;
    PyObject *sets = cached(places, items, targets, sets_of, place_of, key, nctx, page_at);
    if (sets == NULL)
        return -1;
    if (sets == Py_None) /* not counted (an ignored path) */
        return 0;
    Py_INCREF(sets); /* `targets` may change while digest_of runs */
    PyObject *digest = NULL;
    if (!whos->width || pc_items(key, 0, who_at, items) == 0)
        digest = cached(whos, items, digests, digest_of, who_of, key, nctx, who_at);
    int failed = digest == NULL || add_to_each(sets, digest) < 0;
    Py_DECREF(sets);
    return failed ? -1 : 0;
}

static PyObject *add_to_sets(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *keys, *page_at, *who_at, *targets, *digests, *sets_of, *digest_of;
    Py_ssize_t nctx;
    if (!PyArg_ParseTuple(args, "OnO!O!O!O!OO", &keys, &nctx, &PyTuple_Type, &page_at,
                          &PyTuple_Type, &who_at, &PyDict_Type, &targets, &PyDict_Type,
                          &digests, &sets_of, &digest_of))
        return NULL;
    PcTable places = {NULL, 0, 0, 0}, whos = {NULL, 0, 0, 0};
    if (nctx < 0 || pc_init(&places, (int)(nctx + PyTuple_GET_SIZE(page_at))) < 0 ||
        pc_init(&whos, (int)PyTuple_GET_SIZE(who_at)) < 0) {
        pc_free(&places);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "nctx must not be negative");
        return NULL;
    }
    PyObject *it = PyObject_GetIter(keys), *key;
    int failed = it == NULL;
    while (!failed && (key = PyIter_Next(it)) != NULL) {
        failed = add_visitor(key, nctx, page_at, who_at, targets, digests, sets_of, digest_of,
                             &places, &whos);
        Py_DECREF(key);
    }
    Py_XDECREF(it);
    pc_free(&places);
    pc_free(&whos);
    if (failed || PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

/* The key's first nctx items: its context, as `places` is keyed. */
static PyObject *ctx_of(PyObject *key, Py_ssize_t nctx, PyObject *at) {
    (void)at;
    return PyTuple_GetSlice(key, 0, nctx);
}

/* The sets of a (place, page) pair: from the identity cache `pairs` (place and page are
   the objects place_of and page_of gave, so equal ones are mostly the same object), else
   from `targets`, asking sets_of what it lacks. A new reference, or NULL on error. */
static PyObject *pair_sets(PcTable *pairs, PyObject *place, PyObject *page, PyObject *targets,
                           PyObject *sets_of) {
    PyObject *two[2] = {place, page};
    PcSlot *hit = pc_find(pairs, two);
    if (hit->value != NULL) {
        Py_INCREF(hit->value);
        return hit->value;
    }
    PyObject *lookup = PyTuple_Pack(2, place, page);
    PyObject *sets = lookup != NULL ? known(targets, lookup, sets_of) : NULL;
    Py_XDECREF(lookup);
    if (sets == NULL || pc_put(pairs, two, sets) < 0)
        return NULL;
    Py_INCREF(sets); /* `targets` may change while digest_of runs */
    return sets;
}

/* add_to_sets in two levels: a key's context and its page are each resolved once
   (place_of, page_of), and their pair once (sets_of): a minute's keys share their hour's
   and day's sets, and the Python callbacks run per distinct context, page and pair,
   not per (context, page). */
typedef struct {
    PyObject *page_at, *who_at, *places, *pages, *targets, *digests;
    PyObject *place_of, *page_of, *sets_of, *digest_of, *none_at;
    Py_ssize_t nctx;
    PcTable ctxs, pgs, pairs, whos;
} PlaceSets;

/* The sets of a key's (place, page) pair (see add_place_visitor): a new reference;
   Py_None (a new reference) when place_of, page_of or sets_of said None; NULL on error. */
static PyObject *place_sets(PlaceSets *ps, PyObject *key) {
    if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) < ps->nctx) {
        PyErr_SetString(PyExc_TypeError, "keys must be tuples of at least nctx items");
        return NULL;
    }
    PyObject *items[PC_ITEMS];
    if (ps->ctxs.width && pc_items(key, ps->nctx, ps->none_at, items) < 0)
        return NULL;
    PyObject *place =
        cached(&ps->ctxs, items, ps->places, ps->place_of, ctx_of, key, ps->nctx, NULL);
    if (place == NULL || place == Py_None) /* an error, or not counted */
        return Py_XNewRef(place);
    Py_INCREF(place);
    PyObject *page = NULL;
    if (!ps->pgs.width || pc_items(key, 0, ps->page_at, items) == 0)
        page = cached(&ps->pgs, items, ps->pages, ps->page_of, who_of, key, 0, ps->page_at);
    PyObject *sets = page == NULL || page == Py_None
                         ? Py_XNewRef(page)
                         : pair_sets(&ps->pairs, place, page, ps->targets, ps->sets_of);
    Py_DECREF(place);
    return sets;
}

/* One visitor key of add_to_place_sets. 0, or -1 on error. */
static int add_place_visitor(PlaceSets *ps, PyObject *key) {
    PyObject *sets = place_sets(ps, key);
    if (sets == NULL)
        return -1;
    if (sets == Py_None) { /* an ignored path */
        Py_DECREF(sets);
        return 0;
    }
    PyObject *items[PC_ITEMS], *digest = NULL;
    if (!ps->whos.width || pc_items(key, 0, ps->who_at, items) == 0)
        digest = cached(&ps->whos, items, ps->digests, ps->digest_of, who_of, key, 0, ps->who_at);
    int failed = digest == NULL || add_to_each(sets, digest) < 0;
    Py_DECREF(sets);
    return failed ? -1 : 0;
}

/* The caches of a PlaceSets made (every width known); -1 with an error set. */
static int place_sets_init(PlaceSets *ps) {
    if (ps->nctx < 0) {
        PyErr_SetString(PyExc_ValueError, "nctx must not be negative");
        return -1;
    }
    ps->none_at = PyTuple_New(0);
    return ps->none_at == NULL || pc_init(&ps->ctxs, (int)ps->nctx) < 0 ||
                   pc_init(&ps->pgs, (int)PyTuple_GET_SIZE(ps->page_at)) < 0 ||
                   pc_init(&ps->pairs, 2) < 0 ||
                   pc_init(&ps->whos, (int)PyTuple_GET_SIZE(ps->who_at)) < 0
               ? -1
               : 0;
}

static void place_sets_free(PlaceSets *ps) {
    Py_XDECREF(ps->none_at);
    pc_free(&ps->ctxs);
    pc_free(&ps->pgs);
    pc_free(&ps->pairs);
    pc_free(&ps->whos);
}

static PyObject *add_to_place_sets(PyObject *self, PyObject *args) {
    (void)self;
    PlaceSets ps = {0};
    PyObject *keys;
    if (!PyArg_ParseTuple(args, "OnO!O!O!O!O!O!OOOO", &keys, &ps.nctx, &PyTuple_Type,
                          &ps.page_at, &PyTuple_Type, &ps.who_at, &PyDict_Type, &ps.places,
                          &PyDict_Type, &ps.pages, &PyDict_Type, &ps.targets, &PyDict_Type,
                          &ps.digests, &ps.place_of, &ps.page_of, &ps.sets_of, &ps.digest_of))
        return NULL;
    int failed = place_sets_init(&ps) < 0;
    PyObject *it = failed ? NULL : PyObject_GetIter(keys), *key;
    failed = failed || it == NULL;
    while (!failed && (key = PyIter_Next(it)) != NULL) {
        failed = add_place_visitor(&ps, key);
        Py_DECREF(key);
    }
    Py_XDECREF(it);
    place_sets_free(&ps);
    if (failed || PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

/* --- visitors numbered by the scanner: their sets.
 *
 * A live reader's scanner may number a batch's visitors itself (LineCounter.number_visitors):
 * {place: [visitor numbers]}, a place being a context and the page asked for. The live
 * sets hold the numbers as classify.visitor_hash's text (what Redis' HyperLogLogs are fed),
 * made here once per visitor of the batch and kept in `hexes`. */

/* f"{n:016x}" of a visitor number, from `hexes` or made and kept there; borrowed. */
static PyObject *hex_of(PyObject *hexes, PyObject *number) {
    static const char digits[] = "0123456789abcdef";
    PyObject *found = PyDict_GetItemWithError(hexes, number);
    if (found != NULL || PyErr_Occurred())
        return found;
    unsigned long long n = PyLong_AsUnsignedLongLong(number);
    if (n == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    PyObject *text = PyUnicode_New(16, 127);
    if (text == NULL)
        return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(text);
    for (int i = 15; i >= 0; i--, n >>= 4)
        out[i] = (Py_UCS1)digits[n & 15];
    int failed = PyDict_SetItem(hexes, number, text);
    Py_DECREF(text); /* `hexes` holds it */
    return failed ? NULL : text;
}

/* One place of add_numbered: each of its numbers' text added to the sets of its pair. */
static int add_numbered_place(PlaceSets *ps, PyObject *hexes, PyObject *key, PyObject *numbers) {
    if (!PyList_Check(numbers)) {
        PyErr_SetString(PyExc_TypeError, "a place's visitor numbers must be a list");
        return -1;
    }
    PyObject *sets = place_sets(ps, key);
    if (sets == NULL)
        return -1;
    int failed = 0;
    for (Py_ssize_t i = 0; sets != Py_None && !failed && i < PyList_GET_SIZE(numbers); i++) {
        PyObject *text = hex_of(hexes, PyList_GET_ITEM(numbers, i));
        failed = text == NULL || add_to_each(sets, text) < 0;
    }
    Py_DECREF(sets);
    return failed ? -1 : 0;
}

static PyObject *add_numbered(PyObject *self, PyObject *args) {
    (void)self;
    PlaceSets ps = {0};
    PyObject *numbered, *hexes;
    if (!PyArg_ParseTuple(args, "O!nO!O!O!O!O!OOO", &PyDict_Type, &numbered, &ps.nctx,
                          &PyTuple_Type, &ps.page_at, &PyDict_Type, &ps.places, &PyDict_Type,
                          &ps.pages, &PyDict_Type, &ps.targets, &PyDict_Type, &hexes,
                          &ps.place_of, &ps.page_of, &ps.sets_of))
        return NULL;
    ps.who_at = PyTuple_New(0); /* no visitor items: the numbers stand for them */
    int failed = ps.who_at == NULL || place_sets_init(&ps) < 0;
    PyObject *key, *numbers;
    Py_ssize_t pos = 0;
    Py_INCREF(numbered); /* a callback must not free it under the loop */
    while (!failed && PyDict_Next(numbered, &pos, &key, &numbers)) {
        Py_INCREF(key);
        Py_INCREF(numbers);
        failed = add_numbered_place(&ps, hexes, key, numbers);
        Py_DECREF(key);
        Py_DECREF(numbers);
    }
    Py_DECREF(numbered);
    Py_XDECREF(ps.who_at);
    place_sets_free(&ps);
    if (failed || PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

/* --- visitor numbers: the keyed blake2b of classify.visitor_number, without the interpreter.
 *
 * A diverse day has a distinct visitor (client, agent) every few lines, and in Python each
 * cost a call, a copy of the keyed state, an update, a digest and an int (~4 us, a third of
 * a rollup counter's time). BLAKE2b as RFC 7693 specifies it (8-byte digest, keyed); the
 * number is the digest read big-endian, as int.from_bytes(digest, "big").
 * tests/test_sums.py holds it equal to hashlib's on random keys, clients and agents. */

#include "_blake2b.h"

typedef struct {
    PyObject_HEAD
    b2_state keyed; /* after the key's block: every visitor's bytes follow it */
    Py_ssize_t ci, ai;
    PyObject *skipped; /* agent -> True/False: a bot not counted */
    PyObject *skip_of; /* asked for an agent not in skipped; None: no agent is skipped */
} VisitorNumbers;

static void vn_dealloc(VisitorNumbers *self) {
    Py_XDECREF(self->skipped);
    Py_XDECREF(self->skip_of);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int vn_init(VisitorNumbers *self, PyObject *args, PyObject *kwds) {
    (void)kwds;
    Py_buffer key;
    PyObject *skipped, *skip_of;
    Py_ssize_t ci, ai;
    if (!PyArg_ParseTuple(args, "y*nnO!O", &key, &ci, &ai, &PyDict_Type, &skipped, &skip_of))
        return -1;
    if (key.len < 1 || key.len > 64) {
        PyBuffer_Release(&key);
        PyErr_SetString(PyExc_ValueError, "a blake2b key has 1 to 64 bytes");
        return -1;
    }
    b2_keyed(&self->keyed, (const uint8_t *)key.buf, (size_t)key.len);
    PyBuffer_Release(&key);
    self->ci = ci;
    self->ai = ai;
    Py_INCREF(skipped);
    Py_XSETREF(self->skipped, skipped);
    Py_INCREF(skip_of);
    Py_XSETREF(self->skip_of, skip_of);
    return 0;
}

/* who[i] as bytes, b"" when i < 0; a borrowed reference or NULL with an error. */
static PyObject *who_item(PyObject *who, Py_ssize_t i) {
    static PyObject *empty = NULL;
    if (i < 0) {
        if (empty == NULL && (empty = PyBytes_FromStringAndSize("", 0)) == NULL)
            return NULL;
        return empty;
    }
    if (i >= PyTuple_GET_SIZE(who) || !PyBytes_Check(PyTuple_GET_ITEM(who, i))) {
        PyErr_SetString(PyExc_TypeError, "a visitor's client and agent must be bytes");
        return NULL;
    }
    return PyTuple_GET_ITEM(who, i);
}

static PyObject *vn_call(VisitorNumbers *self, PyObject *args, PyObject *kwds) {
    PyObject *who;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O!", &PyTuple_Type, &who))
        return NULL;
    PyObject *client = who_item(who, self->ci), *agent = who_item(who, self->ai);
    if (client == NULL || agent == NULL)
        return NULL;
    if (self->skip_of != Py_None) {
        PyObject *skip = PyDict_GetItemWithError(self->skipped, agent);
        if (skip == NULL) {
            if (PyErr_Occurred())
                return NULL;
            PyObject *said = PyObject_CallOneArg(self->skip_of, agent);
            int truth = said != NULL ? PyObject_IsTrue(said) : -1;
            Py_XDECREF(said);
            skip = truth < 0 ? NULL : truth ? Py_True : Py_False;
            if (skip == NULL || PyDict_SetItem(self->skipped, agent, skip) < 0)
                return NULL;
        }
        if (skip == Py_True)
            Py_RETURN_NONE;
    }
    return PyLong_FromUnsignedLongLong(b2_visitor(&self->keyed, PyBytes_AS_STRING(client),
                                                  (size_t)PyBytes_GET_SIZE(client),
                                                  PyBytes_AS_STRING(agent),
                                                  (size_t)PyBytes_GET_SIZE(agent)));
}

static PyTypeObject VisitorNumbersType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "logcount.count._sum.VisitorNumbers",
    .tp_basicsize = sizeof(VisitorNumbers),
    .tp_dealloc = (destructor)vn_dealloc,
    .tp_call = (ternaryfunc)vn_call,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "VisitorNumbers(key, ci, ai, skipped, skip_of): called with a visitor's tuple, "
              "the number of classify.visitor_number(key)(who[ci], who[ai]) (b\"\" for an "
              "index < 0), or None when skip_of (asked once per agent, the answer kept in "
              "skipped) says its agent is a bot not counted; skip_of None: none is.",
    .tp_init = (initproc)vn_init,
    .tp_new = PyType_GenericNew,
};

/* --- HyperLogLog registers (the twin of sketch.add_registers) */

#define HLL_P 10

static PyObject *add_registers(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *registers, *values;
    if (!PyArg_ParseTuple(args, "O!O", &PyByteArray_Type, &registers, &values))
        return NULL;
    if (PyByteArray_GET_SIZE(registers) != (1 << HLL_P)) {
        PyErr_SetString(PyExc_ValueError, "registers must be 2^P bytes");
        return NULL;
    }
    PyObject *it = PyObject_GetIter(values);
    if (it == NULL)
        return NULL;
    uint8_t *reg = (uint8_t *)PyByteArray_AS_STRING(registers);
    const uint64_t mask = (1ULL << (64 - HLL_P)) - 1;
    PyObject *item;
    while ((item = PyIter_Next(it)) != NULL) {
        unsigned long long value = PyLong_AsUnsignedLongLong(item);
        Py_DECREF(item);
        if (value == (unsigned long long)-1 && PyErr_Occurred()) {
            Py_DECREF(it);
            return NULL;
        }
        uint64_t rest = value & mask;
        int bits = rest ? 64 - __builtin_clzll(rest) : 0;
        uint8_t rank = (uint8_t)(64 - HLL_P + 1 - bits);
        size_t index = (size_t)(value >> (64 - HLL_P));
        if (rank > reg[index])
            reg[index] = rank;
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

/* --- sorted arrays of visitor hashes (the twins of sketch.sorted_hashes_py and
   sketch.union_into_py): a diverse day's batch hands some 2,000 paths' sets and a day's
   set of ~40,000 to them; in Python each union cost ~50 us of slicing and ints. */

static PyObject *array_type = NULL; /* array.array */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Sorts n uint64s ascending. glibc's qsort calls the comparison through a pointer (~385
   instructions a hash on a diverse day's visitor lists): a quicksort of its own (Hoare's
   partition about a median of three, so runs of one value and sorted input split
   evenly; insertion sort below 24), the smaller side recursed into. Past 2 log2(n)
   levels (input that defeats the medians: hashes are keyed, so never by design) a range
   goes to qsort, so the time stays n log n. */
static void sort_u64(uint64_t *a, Py_ssize_t n, int depth) {
    while (n > 24) {
        if (depth-- <= 0) {
            qsort(a, (size_t)n, 8, cmp_u64);
            return;
        }
        uint64_t x = a[0], y = a[n / 2], z = a[n - 1], pivot;
        pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        Py_ssize_t i = -1, j = n;
        for (;;) { /* a[..i] <= pivot <= a[j..] once they cross */
            do
                i++;
            while (a[i] < pivot);
            do
                j--;
            while (a[j] > pivot);
            if (i >= j)
                break;
            uint64_t t = a[i];
            a[i] = a[j];
            a[j] = t;
        }
        Py_ssize_t left = j + 1; /* a[0..j] and a[j+1..n-1], both non-empty */
        if (left < n - left) {
            sort_u64(a, left, depth);
            a += left;
            n -= left;
        } else {
            sort_u64(a + left, n - left, depth);
            n = left;
        }
    }
    for (Py_ssize_t i = 1; i < n; i++) {
        uint64_t v = a[i];
        Py_ssize_t k = i;
        for (; k > 0 && a[k - 1] > v; k--)
            a[k] = a[k - 1];
        a[k] = v;
    }
}

static int depth_for(Py_ssize_t n) {
    int d = 0;
    for (; n > 1; n >>= 1)
        d++;
    return 2 * d;
}

/* A new array('Q') of n native uint64s. */
static PyObject *new_u64_array(const uint64_t *values, Py_ssize_t n) {
    if (array_type == NULL) {
        PyObject *mod = PyImport_ImportModule("array");
        array_type = mod != NULL ? PyObject_GetAttrString(mod, "array") : NULL;
        Py_XDECREF(mod);
        if (array_type == NULL)
            return NULL;
    }
    PyObject *out = PyObject_CallFunction(array_type, "s", "Q");
    if (out == NULL || n == 0)
        return out;
    PyObject *raw = PyBytes_FromStringAndSize((const char *)values, n * 8);
    PyObject *done = raw != NULL ? PyObject_CallMethod(out, "frombytes", "O", raw) : NULL;
    Py_XDECREF(raw);
    if (done == NULL) {
        Py_DECREF(out);
        return NULL;
    }
    Py_DECREF(done);
    return out;
}

/* A buffer of an array('Q') (8-byte unsigned items), writable or not; -1 on error. */
static int u64_buffer(PyObject *obj, Py_buffer *view, int writable) {
    if (PyObject_GetBuffer(obj, view, PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    if (view->itemsize != 8 || view->format == NULL || strcmp(view->format, "Q") != 0) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_TypeError, "an array('Q') of hashes expected");
        return -1;
    }
    return 0;
}

static PyObject *sorted_hashes(PyObject *self, PyObject *values) {
    (void)self;
    PyObject *it = PyObject_GetIter(values);
    if (it == NULL)
        return NULL;
    Py_ssize_t hint = PyObject_LengthHint(values, 16), n = 0, cap = hint > 16 ? hint : 16;
    uint64_t *buf = hint < 0 ? NULL : PyMem_Malloc((size_t)cap * 8);
    PyObject *item, *out = NULL;
    if (buf == NULL) {
        Py_DECREF(it);
        return hint < 0 ? NULL : PyErr_NoMemory();
    }
    while ((item = PyIter_Next(it)) != NULL) {
        unsigned long long v = PyLong_AsUnsignedLongLong(item);
        Py_DECREF(item);
        if (v == (unsigned long long)-1 && PyErr_Occurred())
            goto done;
        if (n == cap) {
            uint64_t *more = PyMem_Realloc(buf, (size_t)cap * 2 * 8);
            if (more == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            buf = more;
            cap *= 2;
        }
        buf[n++] = v;
    }
    if (PyErr_Occurred())
        goto done;
    sort_u64(buf, n, depth_for(n));
    Py_ssize_t kept = 0; /* the values may repeat (any iterable): each once */
    for (Py_ssize_t i = 0; i < n; i++)
        if (kept == 0 || buf[kept - 1] != buf[i])
            buf[kept++] = buf[i];
    out = new_u64_array(buf, kept);
done:
    Py_DECREF(it);
    PyMem_Free(buf);
    return out;
}

static PyObject *union_into(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *held, *fresh;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "OOn", &held, &fresh, &limit))
        return NULL;
    Py_buffer a, b;
    if (u64_buffer(fresh, &b, 0) < 0)
        return NULL;
    if (u64_buffer(held, &a, 0) < 0) {
        PyBuffer_Release(&b);
        return NULL;
    }
    /* the hashes of fresh not held yet: the limit is known before anything moves */
    const uint64_t *x = a.buf, *y = b.buf;
    Py_ssize_t na = a.len / 8, nb = b.len / 8, i = 0, j = 0, added = 0;
    while (j < nb) {
        if (i < na && x[i] < y[j])
            i++;
        else {
            added += !(i < na && x[i] == y[j]);
            i += i < na && x[i] == y[j];
            j++;
        }
    }
    PyBuffer_Release(&a);
    if (na + added > limit || added == 0) {
        PyBuffer_Release(&b);
        return PyBool_FromLong(na + added <= limit);
    }
    /* held grows by the new hashes, then is merged from its end down, in place */
    PyObject *zeros = PyBytes_FromStringAndSize(NULL, added * 8);
    if (zeros != NULL)
        memset(PyBytes_AS_STRING(zeros), 0, (size_t)added * 8);
    PyObject *done = zeros != NULL ? PyObject_CallMethod(held, "frombytes", "O", zeros) : NULL;
    Py_XDECREF(zeros);
    if (done == NULL || u64_buffer(held, &a, 1) < 0) {
        Py_XDECREF(done);
        PyBuffer_Release(&b);
        return NULL;
    }
    Py_DECREF(done);
    uint64_t *out = a.buf;
    Py_ssize_t k = na + added - 1;
    i = na - 1;
    j = nb - 1;
    while (j >= 0) {
        if (i >= 0 && out[i] > y[j])
            out[k--] = out[i--];
        else {
            if (i >= 0 && out[i] == y[j])
                i--;
            out[k--] = y[j--];
        }
    }
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    Py_RETURN_TRUE;
}

static PyMethodDef methods[] = {
    {"add_to_sets", add_to_sets, METH_VARARGS,
     "add_to_sets(keys, nctx, page_at, who_at, targets, digests, sets_of, digest_of): for "
     "each key, the digest of its visitor (digests[who], who the items at who_at) added to "
     "each set of targets[(key[:nctx], the items at page_at)]; what is not there yet is "
     "asked of sets_of or digest_of (and kept); None from either: the key is not counted."},
    {"add_to_place_sets", add_to_place_sets, METH_VARARGS,
     "add_to_place_sets(keys, nctx, page_at, who_at, places, pages, targets, digests, "
     "place_of, page_of, sets_of, digest_of): for each key, its visitor's digest added to "
     "each set of targets[(places[key[:nctx]], pages[the items at page_at])]; what is not "
     "there yet is asked of place_of, page_of, sets_of or digest_of (and kept); None from "
     "any: the key is not counted."},
    {"add_numbered", add_numbered, METH_VARARGS,
     "add_numbered(numbered, nctx, page_at, places, pages, targets, hexes, place_of, "
     "page_of, sets_of): for each place key of numbered ({key: [visitor numbers]}), the "
     "text of each number (f'{n:016x}', kept in hexes) added to each set of "
     "targets[(places[key[:nctx]], pages[the items at page_at])]; what is not there yet is "
     "asked of place_of, page_of or sets_of (and kept); None from any: the key is not "
     "counted."},
    {"add_counts", add_counts, METH_VARARGS,
     "add_counts(target, source): target[k] += n for each k, n of source (a missing k "
     "starts at 0), as Counter.update without the interpreter."},
    {"add_by_members", add_by_members, METH_VARARGS,
     "add_by_members(table, nctx, where, members, out, at_of, pairs_of, more=()): for each "
     "key of table, out[where[key[:nctx]]][dim][member] += table[key] for each (dim, member) "
     "of members[key[nctx:]]; a context or rest not there yet is asked of at_of or pairs_of "
     "(and kept). Each (other, its_out) of more: the same for other[key], where the key is "
     "in other (its keys are table's, or fewer)."},
    {"add_registers", add_registers, METH_VARARGS,
     "add_registers(registers, values): each 64-bit hash of values into the HyperLogLog "
     "registers (a bytearray of 2^10), as sketch.add_registers_py."},
    {"sorted_hashes", sorted_hashes, METH_O,
     "sorted_hashes(values): the 64-bit hashes of values, each once, ascending, as an "
     "array('Q'), as sketch.sorted_hashes_py."},
    {"union_into", union_into, METH_VARARGS,
     "union_into(held, fresh, limit): fresh (an array('Q'), ascending, each once) merged "
     "into held (the same) in place; False, held untouched, when the union would hold more "
     "than limit hashes; as sketch.union_into_py."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "logcount.count._sum",
                                    "The aggregator's per-key sums in C (optional).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__sum(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyType_Ready(&VisitorNumbersType) < 0 ||
        PyModule_AddObjectRef(m, "VisitorNumbers", (PyObject *)&VisitorNumbersType) < 0 ||
        PyModule_AddIntConstant(m, "VERSION", SUM_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
