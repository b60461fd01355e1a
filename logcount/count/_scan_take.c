/* logcount.count._scan: take() handing the tables over to Python as tuples, and the
   visitors numbered by place (see _scan.h). */
#include "_scan.h"

/* One bytes object per distinct field value in a take(): the same minute, status or agent
   in thousands of keys is one object, which halves the memory of a batch. */
static PyObject *shared_bytes(Table *shared, const char *p, Py_ssize_t n) {
    Slot *e = scan_table_slot(shared, p, n, 1);
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

void scan_release_shared(Table *shared) {
    for (size_t i = 0; i < shared->cap; i++)
        if (shared->slots[i].off >= 0 && shared->slots[i].value != 0)
            Py_DECREF((PyObject *)(intptr_t)shared->slots[i].value);
    scan_table_clear(shared);
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
PyObject *scan_unjoined(Table *shared, Table *t, int width, PyObject *cls) {
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

PyObject *scan_recent_list(Scanner *s) {
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
static void split_joined(const char *p, Py_ssize_t len, int width, Span *out) {
    const char *end = p + len;
    for (int k = 0; k < width; k++) {
        const char *nl = k + 1 < width ? memchr(p, '\n', end - p) : NULL;
        out[k].p = p;
        out[k].n = (nl ? nl : end) - p;
        p = nl ? nl + 1 : end;
    }
}

static void split_visitor(const Scanner *s, const Slot *e, Span *vis) {
    split_joined(s->visitors_t.arena + e->off, e->len, s->visitors.n, vis);
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
    /* scan_count_key composes into s->buf, which `vis` does not point into */
    return scan_count_key(s, &s->agents_t, &direct, f, by);
}

int scan_agents_from_visitors(Scanner *s) {
    Span vis[MAX_LAYOUT];
    scan_table_clear(&s->agents_t); /* filled here only: a take() that failed left it full */
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
int scan_hits_and_sizes(Scanner *s, PyObject *cls, PyObject **hits, PyObject **sizes,
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
 * rollup counter two fifths of its time on a diverse day. Here each visitor (context,
 * client, agent) of the batch is numbered once as the lines are counted (scan_new_who,
 * called by _scan_tables.c's number_line) and each (place, visitor) is kept once as one
 * 64-bit number, so that take() only lists them: splitting ~100,000 visitors keys again
 * at take() cost a third of a counter's CPU. The Python twin is regex_scan.numbered_py. */

typedef struct {
    uint32_t place;
    uint64_t number;
} Numbered;

/* The id of a place (0, 1, ... in the order first seen; vn_places keeps it + 1) from its
   key and the key's hash (scan_hash); -1 with an error set when memory runs out. */
long long scan_place_id(Scanner *s, const char *key, Py_ssize_t len, uint64_t h) {
    Slot *e = scan_table_slot_h(&s->vn_places, key, len, h, 1);
    if (e == NULL)
        return -1;
    if (e->value == 0)
        e->value = (long long)s->vn_places.used;
    return e->value - 1;
}

/* A visitor (`key`: its context, client and agent joined, in s->buf) first seen in the
   batch: numbered, and whether it is a bot not counted decided (once per agent). */
Slot *scan_new_who(Scanner *s, const Span *f, const char *key, Py_ssize_t len) {
    const Span *client = &f[s->vn_who_f.idx[s->vn_who_f.n - 2]];
    const Span *agent = &f[s->vn_who_f.idx[s->vn_who_f.n - 1]];
    int skip = 0;
    if (s->vn_skip_of != Py_None && (skip = scan_decide(&s->vn_skips, s->vn_skip_of, agent)) < 0)
        return NULL;
    /* scan_decide() composes nothing, so `key` still holds the joined visitor */
    size_t id = s->vn_whos.used;
    if (id >= s->vn_numbers_cap) {
        size_t cap = s->vn_numbers_cap ? 2 * s->vn_numbers_cap : TABLE_MIN;
        uint64_t *grown =
            id < UINT32_MAX ? PyMem_Realloc(s->vn_numbers, cap * sizeof(uint64_t)) : NULL;
        if (grown == NULL)
            return (Slot *)PyErr_NoMemory();
        s->vn_numbers = grown;
        s->vn_numbers_cap = cap;
    }
    Slot *e = scan_table_slot(&s->vn_whos, key, len, 1);
    if (e == NULL)
        return NULL;
    e->size = (long long)(id << 1) | skip;
    e->value = skip ? 0
                    : (long long)b2_visitor(&s->vn_keyed, client->p, (size_t)client->n,
                                            agent->p, (size_t)agent->n);
    s->vn_numbers[id] = (uint64_t)e->value;
    return e;
}

/* The agents table summed from the visitors numbered (vn_agents_summed): a visitor's
   context and agent are an agents key, its lines (Slot.dur) the lines to add. */
static int agents_from_whos(Scanner *s) {
    Span parts[MAX_LAYOUT], f[MAX_FIELDS + 2];
    const Layout *who = &s->vn_who_f;
    for (size_t i = 0; i < s->vn_whos.cap; i++) {
        const Slot *e = &s->vn_whos.slots[i];
        if (e->off < 0)
            continue;
        split_joined(s->vn_whos.arena + e->off, e->len, who->n, parts);
        for (int k = 0; k < who->n; k++)
            f[who->idx[k]] = parts[k];
        if (scan_count_key(s, &s->agents_t, &s->agents, f, e->dur) < 0)
            return -1;
    }
    return 0;
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
    const char *key = scan_compose(s, &both, who, &len);
    if (key == NULL)
        return -2;
    Slot *e = scan_table_slot(whos, key, len, 0);
    if (e == NULL) {
        int skip = 0;
        if (s->vn_skip_of != Py_None && (skip = scan_decide(skips, s->vn_skip_of, agent)) < 0)
            return -2;
        /* scan_decide() composes nothing, so `key` still holds the joined pair */
        if ((e = scan_table_slot(whos, key, len, 1)) == NULL)
            return -2;
        e->size = skip;
        e->value = skip ? 0
                        : (long long)b2_visitor(&s->vn_keyed, client->p, (size_t)client->n,
                                                agent->p, (size_t)agent->n);
    }
    *out = (uint64_t)e->value;
    return e->size ? -1 : 0;
}

/* Each place's numbers as an array('Q') (numbers_in_arrays): the bytes of lists[g],
   filled, become the array's (frombytes copies them once, no int per number). */
static int lists_to_arrays(PyObject **lists, size_t groups) {
    static PyObject *array_type = NULL;
    if (array_type == NULL) {
        PyObject *mod = PyImport_ImportModule("array");
        array_type = mod != NULL ? PyObject_GetAttrString(mod, "array") : NULL;
        Py_XDECREF(mod);
        if (array_type == NULL)
            return -1;
    }
    for (size_t g = 0; g < groups; g++) {
        PyObject *arr = PyObject_CallFunction(array_type, "sO", "Q", lists[g]);
        if (arr == NULL)
            return -1;
        Py_SETREF(lists[g], arr);
    }
    return 0;
}

/* Each visitor's number into the list of its place: a dict {place tuple: [numbers]}
   (or {place tuple: array('Q')} when vn_arrays). */
static PyObject *places_dict(Scanner *s, Table *places, const Numbered *got, size_t n) {
    size_t groups = places->used;
    Py_ssize_t *fill = PyMem_Calloc(groups + 1, sizeof(Py_ssize_t));
    PyObject **lists = PyMem_Calloc(groups + 1, sizeof(PyObject *));
    PyObject *out = fill && lists ? PyDict_New() : NULL;
    int failed = out == NULL, raw = s->vn_arrays;
    for (size_t i = 0; i < n && !failed; i++)
        fill[got[i].place]++;
    for (size_t g = 0; g < groups && !failed; g++) {
        lists[g] = raw ? PyBytes_FromStringAndSize(NULL, fill[g] * 8) : PyList_New(fill[g]);
        failed = lists[g] == NULL;
        fill[g] = 0;
    }
    for (size_t i = 0; i < n && !failed && raw; i++) {
        uint64_t *at = (uint64_t *)PyBytes_AS_STRING(lists[got[i].place]);
        at[fill[got[i].place]++] = got[i].number;
    }
    for (size_t i = 0; i < n && !failed && !raw; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(got[i].number);
        failed = v == NULL;
        if (v != NULL)
            PyList_SET_ITEM(lists[got[i].place], fill[got[i].place]++, v);
    }
    if (!failed && raw)
        failed = lists_to_arrays(lists, groups) < 0;
    for (size_t i = 0; i < places->cap && !failed; i++) {
        const Slot *e = &places->slots[i];
        if (e->off < 0)
            continue;
        PyObject *key = split_key(&s->shared, places->arena + e->off, e->len, s->vn_place.n);
        failed = key == NULL || PyDict_SetItem(out, key, lists[e->value - 1]) < 0;
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

/* classify.visitor_number's key for number_visitors (here, beside its one other use of
   BLAKE2b: one copy of its compression in the module). */
void scan_visitor_key(Scanner *s, const uint8_t *key, size_t len) {
    b2_keyed(&s->vn_keyed, key, len);
}

/* The visitors as {place: [visitor numbers]} (see number_visitors): those numbered as
   they were counted (vn_pairs), and any counted as keys before number_visitors() was
   called (the visitors table, numbered here). */
PyObject *scan_numbered_visitors(Scanner *s) {
    Table whos = {0}, skips = {0};
    size_t most = s->visitors_t.used + s->vn_pairs.used;
    Numbered *got = PyMem_Malloc((most + 1) * sizeof(Numbered));
    PyObject *out = NULL;
    size_t n = 0;
    if (got == NULL || scan_table_init(&whos) < 0 || scan_table_init(&skips) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    Span vis[MAX_LAYOUT];
    int agents = s->agents_from[0] >= 0; /* their agents were not counted line by line */
    if (agents && s->vn_agents_summed) /* filled here only: a take() that failed left it full */
        scan_table_clear(&s->agents_t);
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
        const char *key = scan_compose(s, &s->vn_place, vis, &len);
        long long place = key ? scan_place_id(s, key, len, scan_hash(key, (size_t)len)) : -1;
        if (place < 0)
            goto done;
        got[n].place = (uint32_t)place;
        got[n++].number = number;
    }
    if (s->vn_agents_summed && agents_from_whos(s) < 0)
        goto done;
    for (size_t i = 0; i < s->vn_pairs.cap; i++) {
        uint64_t pair = s->vn_pairs.keys[i];
        if (pair == U64_EMPTY)
            continue;
        got[n].place = (uint32_t)(pair >> 32);
        got[n++].number = s->vn_numbers[pair & UINT32_MAX];
    }
    out = places_dict(s, &s->vn_places, got, n);
done:
    PyMem_Free(got);
    scan_table_free(&whos);
    scan_table_free(&skips);
    return out;
}
