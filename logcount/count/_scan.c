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
#include "_scan.h"

/* ---- the type ------------------------------------------------------------------------- */

static void fresh(Scanner *s) {
#define CLEAR(t) scan_table_clear(t);
    EACH_COUNT_TABLE(s, CLEAR)
#undef CLEAR
    scan_u64_clear(&s->vn_pairs);
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
    int failed = scan_table_init(&s->flag_bot) < 0 || scan_table_init(&s->flag_ignore) < 0 ||
                 scan_table_init(&s->shared) < 0 || s->big_sizes == NULL;
#define INIT(t) failed = failed || scan_table_init(t) < 0;
    EACH_COUNT_TABLE(s, INIT)
#undef INIT
    failed = failed || scan_u64_init(&s->vn_pairs) < 0;
    if (s->recent_size < 0)
        s->recent_size = 0;
    Py_ssize_t slots = s->recent_size ? s->recent_size : 1;
    s->recent_src = PyMem_Calloc(slots, sizeof(PyObject *));
    s->recent_start = PyMem_Calloc(slots, sizeof(Py_ssize_t));
    s->recent_len = PyMem_Calloc(slots, sizeof(Py_ssize_t));
    s->bufcap = 1024;
    s->buf = PyMem_Malloc(s->bufcap);
    for (int i = 0; i < PIPELINE; i++) {
        s->keys[i].cap = 1024;
        s->keys[i].buf = PyMem_Malloc(s->keys[i].cap);
        failed = failed || s->keys[i].buf == NULL;
    }
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
    scan_table_free(&s->flag_bot);
    scan_table_free(&s->flag_ignore);
    scan_table_free(&s->shared);
#define FREE(t) scan_table_free(t);
    EACH_COUNT_TABLE(s, FREE)
#undef FREE
    scan_u64_free(&s->vn_pairs);
    PyMem_Free(s->vn_numbers);
    if (s->recent_src) {
        for (Py_ssize_t i = 0; i < (s->recent_size ? s->recent_size : 1); i++)
            Py_XDECREF(s->recent_src[i]);
        PyMem_Free(s->recent_src);
    }
    PyMem_Free(s->recent_start);
    PyMem_Free(s->recent_len);
    PyMem_Free(s->elems);
    PyMem_Free(s->buf);
    for (int i = 0; i < PIPELINE; i++)
        PyMem_Free(s->keys[i].buf);
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

/* The lines of a chunk in flight (see Scanner_feed): their fields, where each starts in
   the chunk and its length; the keys are the scanner's (Scanner.keys) */
typedef struct {
    Span f[PIPELINE][MAX_FIELDS + 2];
    Py_ssize_t start[PIPELINE], len[PIPELINE];
    int next, waiting; /* the slot of the next line; lines cut and not counted yet */
} InFlight;

/* Count the oldest line in flight. */
static int count_oldest(Scanner *s, PyObject *src, InFlight *fl) {
    int i = (fl->next + PIPELINE - fl->waiting) % PIPELINE;
    scan_prefetch_keys(&s->keys[i]);
    if (scan_count_prepared(s, fl->f[i], &s->keys[i]) < 0)
        return -1;
    scan_remember(s, src, fl->start[i], fl->len[i]);
    fl->waiting--;
    return 0;
}

/* A line matched into fl->f[fl->next]: its keys prepared (their slots start loading),
   then the oldest line in flight counted once PIPELINE are (its slots loaded meanwhile;
   its keys in the arenas start loading all at once before it is counted). */
static int in_flight(Scanner *s, PyObject *src, InFlight *fl, Py_ssize_t start, Py_ssize_t len) {
    int i = fl->next;
    if (scan_prepare_line(s, fl->f[i], &s->keys[i]) < 0)
        return -1;
    fl->start[i] = start;
    fl->len[i] = len;
    fl->next = (i + 1) % PIPELINE;
    if (fl->waiting > 0 && PIPELINE > 2) /* a line cut earlier: its keys start loading */
        scan_prefetch_keys(&s->keys[(i + PIPELINE - 1) % PIPELINE]);
    fl->waiting++;
    return fl->waiting == PIPELINE ? count_oldest(s, src, fl) : 0;
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
    /* A line is counted after the next one is cut: its keys load from memory meanwhile
       (see LineKeys) */
    InFlight fl;
    fl.next = fl.waiting = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', end - p);
        const char *eol = nl ? nl : end;
        if (eol > p) {
            Span *f = fl.f[fl.next];
            for (int i = 0; i <= s->nfields; i++) {
                f[i].p = p;
                f[i].n = 0;
            }
            if (scan_match_line(s, p, eol, f)) {
                if (in_flight(s, arg, &fl, p - base, eol - p) < 0)
                    goto error;
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
    while (fl.waiting > 0)
        if (count_oldest(s, arg, &fl) < 0)
            goto error;
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
    if (scan_count_fields(s, f) < 0)
        return NULL;
    scan_remember(s, row, -1, 0);
    Py_RETURN_NONE;
}
/* number_visitors' layouts in a line's fields (see Scanner.vn_place_f): the place, and
   the visitor (context, client, agent; a field the format lacks is the empty slot). */
static void numbering_layouts(Scanner *s, int client, int agent) {
    s->vn_place_f.n = s->vn_place.n;
    for (int k = 0; k < s->vn_place.n; k++)
        s->vn_place_f.idx[k] = s->visitors.idx[s->vn_place.idx[k]];
    Layout *who = &s->vn_who_f;
    *who = s->ctx;
    who->idx[who->n++] = client >= 0 ? s->visitors.idx[client] : s->nfields;
    who->idx[who->n++] = agent >= 0 ? s->visitors.idx[agent] : s->nfields;
    /* the agents table can be summed from the visitors when its keys are of their fields */
    int summed = s->agents.n > 0;
    for (int j = 0; j < s->agents.n && summed; j++) {
        summed = 0;
        for (int k = 0; k < who->n; k++)
            summed = summed || who->idx[k] == s->agents.idx[j];
    }
    s->vn_agents_summed = summed;
}

/* Numbering turned off or changed while visitors numbered the old way wait for take():
   they would be handed over under numbers they were not given. */
static PyObject *numbered_visitors_pending(void) {
    PyErr_SetString(PyExc_ValueError, "visitors numbered are pending: take() them first");
    return NULL;
}

static PyObject *Scanner_number_visitors(Scanner *s, PyObject *args) {
    PyObject *key, *place, *skip_of;
    int client, agent;
    if (!PyArg_ParseTuple(args, "OOiiO", &key, &place, &client, &agent, &skip_of))
        return NULL;
    if (key == Py_None && s->vn_whos.used)
        return numbered_visitors_pending();
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
    if (width <= 0 || s->ctx.n + 2 > MAX_LAYOUT || client < -1 || client >= width ||
        agent < -1 || agent >= width ||
        (skip_of != Py_None && !PyCallable_Check(skip_of))) {
        PyErr_SetString(PyExc_ValueError, "bad visitor numbering (no visitors counted?)");
        return NULL;
    }
    Layout was = s->vn_place;
    if (layout_from(place, &s->vn_place, width - 1) < 0)
        return NULL;
    /* the visitors numbered so far stay (a reload that keeps the counter): numbered with
       the key of their time, in places of the same layout */
    if (s->vn_whos.used && (client != s->vn_client || agent != s->vn_agent ||
                            memcmp(&was, &s->vn_place, sizeof was) != 0)) {
        s->vn_place = was;
        return numbered_visitors_pending();
    }
    numbering_layouts(s, client, agent);
    scan_visitor_key(s, (const uint8_t *)PyBytes_AS_STRING(key), (size_t)PyBytes_GET_SIZE(key));
    s->vn_client = client;
    s->vn_agent = agent;
    Py_INCREF(skip_of);
    Py_XSETREF(s->vn_skip_of, skip_of);
    s->vn_on = 1;
    Py_RETURN_NONE;
}

/* A rollup's sketches take the numbers as they lie (sketch.sorted_hashes): no Python int
   per visitor. The live side's add_numbered reads lists, so it stays off there. */
static PyObject *Scanner_numbers_in_arrays(Scanner *s, PyObject *on) {
    int flag = PyObject_IsTrue(on);
    if (flag < 0)
        return NULL;
    s->vn_arrays = flag;
    Py_RETURN_NONE;
}

static PyObject *Scanner_take(Scanner *s, PyObject *args) {
    PyObject *cls;
    int with_recent;
    if (!PyArg_ParseTuple(args, "Op", &cls, &with_recent))
        return NULL;
    PyObject *parts[13] = {NULL}, *out = NULL;
    parts[0] = PyLong_FromLongLong(s->lines);
    if (scan_hits_and_sizes(s, cls, &parts[1], &parts[8], &parts[11]) < 0)
        goto done;
    if (s->vn_on) { /* the numbers by place (and the agents, in the same pass), no key tuples */
        parts[4] = PySet_New(NULL);
        if ((parts[12] = scan_numbered_visitors(s)) == NULL)
            goto done;
    } else {
        if (s->agents_from[0] >= 0 && scan_agents_from_visitors(s) < 0)
            goto done;
        parts[4] = scan_unjoined(&s->shared, &s->visitors_t, s->visitors.n < 0 ? 0 : s->visitors.n,
                            NULL);
        parts[12] = PyDict_New();
    }
    parts[2] = scan_unjoined(&s->shared, &s->agents_t, s->agents.n < 0 ? 0 : s->agents.n, cls);
    parts[3] = scan_unjoined(&s->shared, &s->refs_t, s->refs.n < 0 ? 0 : s->refs.n, cls);
    parts[5] = scan_unjoined(&s->shared, &s->bots, s->agents.n < 0 ? 0 : s->agents.n, cls);
    parts[6] = scan_unjoined(&s->shared, &s->ignored, s->ctx.n, cls);
    parts[7] = scan_unjoined(&s->shared, &s->timings, s->timing_l.n, cls);
    parts[9] = scan_unjoined(&s->shared, &s->clients_t, s->clients.n < 0 ? 0 : s->clients.n, cls);
    parts[10] = with_recent ? scan_recent_list(s) : PyList_New(0);
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
    scan_release_shared(&s->shared);
    for (int i = 0; i < 13; i++)
        Py_XDECREF(parts[i]);
    return out;
}

static PyObject *Scanner_pending(Scanner *s, PyObject *Py_UNUSED(ignored)) {
    /* The bytes of the keys held: 8 KB agents and referrers make few lines a lot of
       memory, so the readers classify by bytes as well as by lines and keys. */
    size_t held = s->hits.arena_len + s->agents_t.arena_len + s->refs_t.arena_len +
                  s->visitors_t.arena_len + s->bots.arena_len + s->ignored.arena_len +
                  s->timings.arena_len + s->clients_t.arena_len + s->vn_whos.arena_len +
                  s->vn_places.arena_len + s->vn_pairs.used * sizeof(uint64_t);
    /* a visitor numbered by place (vn_pairs) is a visitors key that was not made */
    return Py_BuildValue("Lnn", s->lines,
                         (Py_ssize_t)(s->hits.used + s->visitors_t.used + s->vn_pairs.used +
                                      s->refs_t.used + s->clients_t.used),
                         (Py_ssize_t)held);
}

static PyObject *Scanner_forget(Scanner *s, PyObject *Py_UNUSED(ignored)) {
    scan_table_clear(&s->flag_bot);
    scan_table_clear(&s->flag_ignore);
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
    if (!scan_match_line(s, p, p + PyBytes_GET_SIZE(arg), f))
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
    {"numbers_in_arrays", (PyCFunction)Scanner_numbers_in_arrays, METH_O,
     "numbers_in_arrays(flag): numbered hands each place's numbers as an array('Q')."},
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

PyMODINIT_FUNC PyInit__scan(void) {
    scan_init_match();
    if (scan_init_tables() < 0)
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
