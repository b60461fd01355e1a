/* logcount.count._sum: the visitor sketches' C twins (see _sum.h): HyperLogLog registers,
 * sorted arrays of hashes and their unions, as logcount/count/sketch.py defines them. */
#include "_sum.h"

/* --- HyperLogLog registers (the twin of sketch.add_registers) */

#define HLL_P 10

static inline void add_register(uint8_t *reg, uint64_t value) {
    const uint64_t mask = (1ULL << (64 - HLL_P)) - 1;
    uint64_t rest = value & mask;
    int bits = rest ? 64 - __builtin_clzll(rest) : 0;
    uint8_t rank = (uint8_t)(64 - HLL_P + 1 - bits);
    size_t index = (size_t)(value >> (64 - HLL_P));
    if (rank > reg[index])
        reg[index] = rank;
}

static int u64_buffer(PyObject *obj, Py_buffer *view, int writable);

/* An array('Q') of hashes (a rollup's, see sorted_of_array) read where it lies: 1 if
   added, 0 if `values` is no such buffer. */
static int add_register_array(uint8_t *reg, PyObject *values) {
    Py_buffer view;
    if (PyList_Check(values) || !PyObject_CheckBuffer(values))
        return 0;
    if (u64_buffer(values, &view, 0) < 0) {
        PyErr_Clear();
        return 0;
    }
    for (Py_ssize_t i = 0; i < view.len / 8; i++)
        add_register(reg, ((const uint64_t *)view.buf)[i]);
    PyBuffer_Release(&view);
    return 1;
}

PyObject *sum_add_registers(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *registers, *values;
    if (!PyArg_ParseTuple(args, "O!O", &PyByteArray_Type, &registers, &values))
        return NULL;
    if (PyByteArray_GET_SIZE(registers) != (1 << HLL_P)) {
        PyErr_SetString(PyExc_ValueError, "registers must be 2^P bytes");
        return NULL;
    }
    uint8_t *reg = (uint8_t *)PyByteArray_AS_STRING(registers);
    if (add_register_array(reg, values))
        Py_RETURN_NONE;
    PyObject *it = PyObject_GetIter(values);
    if (it == NULL)
        return NULL;
    PyObject *item;
    while ((item = PyIter_Next(it)) != NULL) {
        unsigned long long value = PyLong_AsUnsignedLongLong(item);
        Py_DECREF(item);
        if (value == (unsigned long long)-1 && PyErr_Occurred()) {
            Py_DECREF(it);
            return NULL;
        }
        add_register(reg, value);
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

/* Sorted, each once, into a new array('Q'): buf[0..n) (PyMem, freed here). */
static PyObject *sorted_once(uint64_t *buf, Py_ssize_t n) {
    sort_u64(buf, n, depth_for(n));
    Py_ssize_t kept = 0; /* the values may repeat: each once */
    for (Py_ssize_t i = 0; i < n; i++)
        if (kept == 0 || buf[kept - 1] != buf[i])
            buf[kept++] = buf[i];
    PyObject *out = new_u64_array(buf, kept);
    PyMem_Free(buf);
    return out;
}

/* An array('Q') (what a rollup's scanner hands over, see number_in_scanner): copied
   whole, no int made per hash. NULL with no error set: not one (iterated then). */
static PyObject *sorted_of_array(PyObject *values) {
    Py_buffer view;
    if (u64_buffer(values, &view, 0) < 0) {
        PyErr_Clear();
        return NULL;
    }
    Py_ssize_t n = view.len / 8;
    uint64_t *buf = PyMem_Malloc((size_t)(n > 0 ? n : 1) * 8);
    if (buf != NULL)
        memcpy(buf, view.buf, (size_t)n * 8);
    PyBuffer_Release(&view);
    return buf != NULL ? sorted_once(buf, n) : PyErr_NoMemory();
}

PyObject *sum_sorted_hashes(PyObject *self, PyObject *values) {
    (void)self;
    if (array_type != NULL && PyObject_TypeCheck(values, (PyTypeObject *)array_type)) {
        PyObject *out = sorted_of_array(values);
        if (out != NULL || PyErr_Occurred())
            return out;
    }
    PyObject *it = PyObject_GetIter(values);
    if (it == NULL)
        return NULL;
    Py_ssize_t hint = PyObject_LengthHint(values, 16), n = 0, cap = hint > 16 ? hint : 16;
    uint64_t *buf = hint < 0 ? NULL : PyMem_Malloc((size_t)cap * 8);
    PyObject *item;
    if (buf == NULL) {
        Py_DECREF(it);
        return hint < 0 ? NULL : PyErr_NoMemory();
    }
    while ((item = PyIter_Next(it)) != NULL) {
        unsigned long long v = PyLong_AsUnsignedLongLong(item);
        Py_DECREF(item);
        if (v == (unsigned long long)-1 && PyErr_Occurred())
            break;
        if (n == cap) {
            uint64_t *more = PyMem_Realloc(buf, (size_t)cap * 2 * 8);
            if (more == NULL) {
                PyErr_NoMemory();
                break;
            }
            buf = more;
            cap *= 2;
        }
        buf[n++] = v;
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) { /* a value no hash, out of memory, or the iteration's own */
        PyMem_Free(buf);
        return NULL;
    }
    return sorted_once(buf, n);
}

PyObject *sum_union_into(PyObject *self, PyObject *args) {
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
