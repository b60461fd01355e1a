/* logcount.count._sum: the visitor sets (see _sum.h). add_to_sets, add_to_place_sets and
 * add_numbered add each visitor's digest (or number's text) to the sets of its place, with
 * identity caches (PcTable) in front of the dicts they fill; the twins are in sums.py. */
#include "_sum.h"

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
    PyObject *found = sum_known(cache, lookup, learn);
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

/* One visitor key: its digest added to each set its place names. 0, or -1 on error. */
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

PyObject *sum_add_to_sets(PyObject *self, PyObject *args) {
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
    PyObject *sets = lookup != NULL ? sum_known(targets, lookup, sets_of) : NULL;
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

PyObject *sum_add_to_place_sets(PyObject *self, PyObject *args) {
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

PyObject *sum_add_numbered(PyObject *self, PyObject *args) {
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
