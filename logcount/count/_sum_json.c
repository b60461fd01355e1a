/* logcount.count._sum: json_compact, the JSON of apply.lua's operations written in C.
 *
 * A diverse day's Lua calls are lists of names, hashes and counts (~100 bytes a line), and
 * json's own C encoder spent ~9,000 instructions a line on them: a call into it per
 * object, its accumulator of str pieces, then the str encoded to bytes. Here the same
 * text goes into one byte buffer. It writes exactly what
 * json.dumps(obj, separators=(",", ":")) writes (ensure_ascii, the escapes and the
 * lowercase \u hex of json's py_encode_basestring_ascii) for str, exact int, bool, None,
 * list, tuple and dict (or a subclass with dict's items(), a Counter) with str keys;
 * anything else (a float, a subclass, a deep nest)
 * raises TypeError, and the caller asks json (sums.json_compact). tests/test_sums.py
 * holds the two equal. */
#include "_sum.h"

#define JSON_MAX_DEPTH 32

/* The text goes straight into the bytes object returned, grown as it fills and cut to its
   length at the end (a spool line of a 4 MB batch is not copied once more). */
typedef struct {
    PyObject *bytes;
    char *p;
    size_t len, cap;
} Buf;

static int grow(Buf *b, size_t more) {
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more)
        cap *= 2;
    if (cap > PY_SSIZE_T_MAX) {
        PyErr_NoMemory();
        return -1;
    }
    if (b->bytes == NULL) {
        b->bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap);
        if (b->bytes == NULL)
            return -1;
    } else if (_PyBytes_Resize(&b->bytes, (Py_ssize_t)cap) < 0) {
        return -1; /* b->bytes freed and NULL */
    }
    b->p = PyBytes_AS_STRING(b->bytes);
    b->cap = cap;
    return 0;
}

static int put(Buf *b, const char *s, size_t n) {
    if (grow(b, n) < 0)
        return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

static const char HEX[] = "0123456789abcdef";

static size_t escape_u(char *out, Py_UCS4 c) {
    out[0] = '\\';
    out[1] = 'u';
    out[2] = HEX[(c >> 12) & 0xf];
    out[3] = HEX[(c >> 8) & 0xf];
    out[4] = HEX[(c >> 4) & 0xf];
    out[5] = HEX[c & 0xf];
    return 6;
}

/* One character as json's ascii_escape_unichar writes it; the number of bytes. */
static size_t escape_char(char *out, Py_UCS4 c) {
    if (c >= ' ' && c <= '~' && c != '\\' && c != '"') {
        out[0] = (char)c;
        return 1;
    }
    const char *two = c == '\\'  ? "\\\\"
                      : c == '"' ? "\\\""
                      : c == '\b' ? "\\b"
                      : c == '\f' ? "\\f"
                      : c == '\n' ? "\\n"
                      : c == '\r' ? "\\r"
                      : c == '\t' ? "\\t"
                                  : NULL;
    if (two != NULL) {
        out[0] = two[0];
        out[1] = two[1];
        return 2;
    }
    if (c >= 0x10000) { /* a UTF-16 surrogate pair */
        size_t n = escape_u(out, 0xd800 | ((c - 0x10000) >> 10));
        return n + escape_u(out + n, 0xdc00 | ((c - 0x10000) & 0x3ff));
    }
    return escape_u(out, c);
}

static int put_str(Buf *b, PyObject *s) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (grow(b, 2 + 12 * (size_t)n) < 0) /* at most 12 bytes a character */
        return -1;
    char *out = b->p + b->len;
    *out++ = '"';
    if (PyUnicode_KIND(s) == PyUnicode_1BYTE_KIND) {
        const Py_UCS1 *d = PyUnicode_1BYTE_DATA(s);
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_UCS1 c = d[i];
            if (c >= ' ' && c <= '~' && c != '\\' && c != '"')
                *out++ = (char)c;
            else
                out += escape_char(out, c);
        }
    } else {
        int kind = PyUnicode_KIND(s);
        const void *d = PyUnicode_DATA(s);
        for (Py_ssize_t i = 0; i < n; i++)
            out += escape_char(out, PyUnicode_READ(kind, d, i));
    }
    *out++ = '"';
    b->len = (size_t)(out - b->p);
    return 0;
}

static int put_int(Buf *b, PyObject *v) {
    int overflow = 0;
    long long n = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (n == -1 && PyErr_Occurred())
        return -1;
    if (overflow) { /* past 64 bits: its decimal text, as int.__repr__ */
        PyObject *text = PyObject_Repr(v);
        if (text == NULL)
            return -1;
        Py_ssize_t len;
        const char *s = PyUnicode_AsUTF8AndSize(text, &len);
        int rc = s == NULL ? -1 : put(b, s, (size_t)len);
        Py_DECREF(text);
        return rc;
    }
    /* its digits from the last, as int.__repr__ writes them (snprintf's parsing of its
       format was a third of a count's cost) */
    char digits[24], *end = digits + sizeof digits, *d = end;
    unsigned long long u = n < 0 ? 0ULL - (unsigned long long)n : (unsigned long long)n;
    do {
        *--d = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (n < 0)
        *--d = '-';
    return put(b, d, (size_t)(end - d));
}

static int put_obj(Buf *b, PyObject *o, int depth);

static int put_items(Buf *b, PyObject *seq, int depth) {
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    if (put(b, "[", 1) < 0)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        if ((i && put(b, ",", 1) < 0) || put_obj(b, items[i], depth + 1) < 0)
            return -1;
    }
    return put(b, "]", 1);
}

static int put_dict(Buf *b, PyObject *d, int depth) {
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    int first = 1;
    if (put(b, "{", 1) < 0)
        return -1;
    while (PyDict_Next(d, &pos, &k, &v)) {
        if (!PyUnicode_CheckExact(k)) {
            PyErr_SetString(PyExc_TypeError, "json_compact: a key that is not a str");
            return -1;
        }
        if ((!first && put(b, ",", 1) < 0) || put_str(b, k) < 0 || put(b, ":", 1) < 0 ||
            put_obj(b, v, depth + 1) < 0)
            return -1;
        first = 0;
    }
    return put(b, "}", 1);
}

/* A dict subclass whose items() is dict's (a Counter): json writes its items() in the
   dict's own order, which PyDict_Next walks. */
static int plain_items(PyObject *o) {
    static PyObject *name = NULL, *dict_items = NULL; /* dict's own: borrowed, never freed */
    if (name == NULL && (name = PyUnicode_InternFromString("items")) == NULL) {
        PyErr_Clear();
        return 0;
    }
    if (dict_items == NULL && (dict_items = _PyType_Lookup(&PyDict_Type, name)) == NULL)
        return 0;
    return _PyType_Lookup(Py_TYPE(o), name) == dict_items;
}

static int put_obj(Buf *b, PyObject *o, int depth) {
    if (depth > JSON_MAX_DEPTH) {
        PyErr_SetString(PyExc_TypeError, "json_compact: nested too deep");
        return -1;
    }
    if (PyUnicode_CheckExact(o))
        return put_str(b, o);
    if (PyLong_CheckExact(o))
        return put_int(b, o);
    if (o == Py_None)
        return put(b, "null", 4);
    if (o == Py_True)
        return put(b, "true", 4);
    if (o == Py_False)
        return put(b, "false", 5);
    if (PyList_CheckExact(o) || PyTuple_CheckExact(o))
        return put_items(b, o, depth);
    if (PyDict_CheckExact(o) || (PyDict_Check(o) && plain_items(o)))
        return put_dict(b, o, depth);
    PyErr_Format(PyExc_TypeError, "json_compact: a %.100s", Py_TYPE(o)->tp_name);
    return -1;
}

PyObject *sum_json_compact(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *obj;
    int newline = 0;
    if (!PyArg_ParseTuple(args, "O|p", &obj, &newline))
        return NULL;
    Buf b = {NULL, NULL, 0, 0};
    if (put_obj(&b, obj, 0) < 0 || (newline && put(&b, "\n", 1) < 0) || grow(&b, 1) < 0 ||
        _PyBytes_Resize(&b.bytes, (Py_ssize_t)b.len) < 0) {
        Py_XDECREF(b.bytes);
        return NULL;
    }
    return b.bytes;
}
