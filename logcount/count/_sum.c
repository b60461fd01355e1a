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

#define SUM_VERSION 5

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

/* One visitor key: its digest added to each set its place names. 0, or -1 on error. */
static int add_visitor(PyObject *key, Py_ssize_t nctx, PyObject *page_at, PyObject *who_at,
                       PyObject *targets, PyObject *digests, PyObject *sets_of,
                       PyObject *digest_of) {
    if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) < nctx || nctx < 0) {
        PyErr_SetString(PyExc_TypeError, "keys must be tuples of at least nctx items");
        return -1;
    }
    PyObject *ctx = PyTuple_GetSlice(key, 0, nctx);
    PyObject *page = ctx != NULL ? pick(key, page_at) : NULL;
    PyObject *where = page != NULL ? PyTuple_Pack(2, ctx, page) : NULL;
    Py_XDECREF(ctx);
    Py_XDECREF(page);
    if (where == NULL)
        return -1;
    PyObject *sets = known(targets, where, sets_of);
    Py_DECREF(where);
    if (sets == NULL)
        return -1;
    if (sets == Py_None) /* not counted (an ignored path) */
        return 0;
    Py_INCREF(sets); /* `targets` may change while digest_of runs */
    PyObject *who = pick(key, who_at);
    PyObject *digest = who != NULL ? known(digests, who, digest_of) : NULL;
    Py_XDECREF(who);
    int failed = digest == NULL;
    if (!failed && digest != Py_None) { /* None: a bot not counted */
        if (!PyTuple_Check(sets)) {
            PyErr_SetString(PyExc_TypeError, "sets_of must give a tuple of sets, or None");
            failed = 1;
        }
        for (Py_ssize_t i = 0; !failed && i < PyTuple_GET_SIZE(sets); i++) {
            PyObject *s = PyTuple_GET_ITEM(sets, i);
            failed = !PySet_Check(s) ? (PyErr_SetString(PyExc_TypeError, "not a set"), 1)
                                     : PySet_Add(s, digest) < 0;
        }
    }
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
    PyObject *it = PyObject_GetIter(keys);
    if (it == NULL)
        return NULL;
    PyObject *key;
    while ((key = PyIter_Next(it)) != NULL) {
        int failed = add_visitor(key, nctx, page_at, who_at, targets, digests, sets_of, digest_of);
        Py_DECREF(key);
        if (failed) {
            Py_DECREF(it);
            return NULL;
        }
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"add_to_sets", add_to_sets, METH_VARARGS,
     "add_to_sets(keys, nctx, page_at, who_at, targets, digests, sets_of, digest_of): for "
     "each key, the digest of its visitor (digests[who], who the items at who_at) added to "
     "each set of targets[(key[:nctx], the items at page_at)]; what is not there yet is "
     "asked of sets_of or digest_of (and kept); None from either: the key is not counted."},
    {"add_counts", add_counts, METH_VARARGS,
     "add_counts(target, source): target[k] += n for each k, n of source (a missing k "
     "starts at 0), as Counter.update without the interpreter."},
    {"add_by_members", add_by_members, METH_VARARGS,
     "add_by_members(table, nctx, where, members, out, at_of, pairs_of, more=()): for each "
     "key of table, out[where[key[:nctx]]][dim][member] += table[key] for each (dim, member) "
     "of members[key[nctx:]]; a context or rest not there yet is asked of at_of or pairs_of "
     "(and kept). Each (other, its_out) of more: the same for other[key], where the key is "
     "in other (its keys are table's, or fewer)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "logcount.count._sum",
                                    "The aggregator's per-key sums in C (optional).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__sum(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "VERSION", SUM_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
