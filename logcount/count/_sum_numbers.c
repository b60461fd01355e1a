/* logcount.count._sum: VisitorNumbers (see _sum.h), the keyed blake2b of
 * classify.visitor_number, without the interpreter.
 *
 * A diverse day has a distinct visitor (client, agent) every few lines, and in Python each
 * cost a call, a copy of the keyed state, an update, a digest and an int (~4 us, a third of
 * a rollup counter's time). BLAKE2b as RFC 7693 specifies it (8-byte digest, keyed); the
 * number is the digest read big-endian, as int.from_bytes(digest, "big").
 * tests/test_sums.py holds it equal to hashlib's on random keys, clients and agents. */
#include "_sum.h"

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

int sum_add_numbers_type(PyObject *m) {
    if (PyType_Ready(&VisitorNumbersType) < 0)
        return -1;
    return PyModule_AddObjectRef(m, "VisitorNumbers", (PyObject *)&VisitorNumbersType);
}
