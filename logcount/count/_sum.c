/* logcount.count._sum: the aggregator's per-key sums in C (optional, as _scan).
 *
 * A batch of a day's diverse traffic has nearly one distinct key per line (a minute, a
 * request, a status; a minute and a referrer ...), and the aggregator adds each key's
 * count to a member of every dimension the key yields: in Python that loop was half of
 * the time `pipe` spent classifying (bench/profile_diverse.py). The Python twin,
 * logcount/count/sums.py, defines what this computes; tests/test_sums.py holds both equal.
 * This file is the module, its method table and the per-member sums; the visitor sets,
 * VisitorNumbers and the sketches are in the files _sum.h names.
 */
#include "_sum.h"

#define SUM_VERSION 9

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
PyObject *sum_known(PyObject *cache, PyObject *key, PyObject *learn) {
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
        PyObject *at = sum_known(where, ctx, at_of);
        Py_DECREF(ctx);
        if (at == NULL)
            return NULL;
        Py_INCREF(at); /* `where` may change while pairs_of runs */
        PyObject *rest = PyTuple_GetSlice(key, nctx, PyTuple_GET_SIZE(key));
        PyObject *pairs = rest != NULL ? sum_known(members, rest, pairs_of) : NULL;
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

static PyMethodDef methods[] = {
    {"add_to_sets", sum_add_to_sets, METH_VARARGS,
     "add_to_sets(keys, nctx, page_at, who_at, targets, digests, sets_of, digest_of): for "
     "each key, the digest of its visitor (digests[who], who the items at who_at) added to "
     "each set of targets[(key[:nctx], the items at page_at)]; what is not there yet is "
     "asked of sets_of or digest_of (and kept); None from either: the key is not counted."},
    {"add_to_place_sets", sum_add_to_place_sets, METH_VARARGS,
     "add_to_place_sets(keys, nctx, page_at, who_at, places, pages, targets, digests, "
     "place_of, page_of, sets_of, digest_of): for each key, its visitor's digest added to "
     "each set of targets[(places[key[:nctx]], pages[the items at page_at])]; what is not "
     "there yet is asked of place_of, page_of, sets_of or digest_of (and kept); None from "
     "any: the key is not counted."},
    {"add_numbered", sum_add_numbered, METH_VARARGS,
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
    {"add_registers", sum_add_registers, METH_VARARGS,
     "add_registers(registers, values): each 64-bit hash of values into the HyperLogLog "
     "registers (a bytearray of 2^10), as sketch.add_registers_py."},
    {"sorted_hashes", sum_sorted_hashes, METH_O,
     "sorted_hashes(values): the 64-bit hashes of values, each once, ascending, as an "
     "array('Q'), as sketch.sorted_hashes_py."},
    {"union_into", sum_union_into, METH_VARARGS,
     "union_into(held, fresh, limit): fresh (an array('Q'), ascending, each once) merged "
     "into held (the same) in place; False, held untouched, when the union would hold more "
     "than limit hashes; as sketch.union_into_py."},
    {"json_compact", sum_json_compact, METH_VARARGS,
     "json_compact(obj, newline=False): json.dumps(obj, separators=(',', ':')) as ASCII "
     "bytes (then a newline), for str, int, bool, None, list, tuple and dict (or a "
     "subclass with dict's items()) with str keys; TypeError for anything else."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "logcount.count._sum",
                                    "The aggregator's per-key sums in C (optional).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__sum(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (sum_add_numbers_type(m) < 0 ||
        PyModule_AddIntConstant(m, "VERSION", SUM_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
