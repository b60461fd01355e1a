/*
 * logcount.count._sum's private header: what its files share (see _sum.c for what the
 * module does). _sum.c is the module and the per-member sums (add_by_members,
 * add_counts), _sum_sets.c the visitor sets (add_to_sets, add_to_place_sets,
 * add_numbered, their identity caches), _sum_numbers.c VisitorNumbers, _sum_sketch.c the
 * sketches (HyperLogLog registers, sorted hashes and their unions). A function one file
 * calls in another is sum_-prefixed and hidden (no PLT call, not exported from the .so):
 * the module's entries, called through its method table, and sum_known, which was never
 * inlined. Each entry's loop stays within its file, so no call inlined before crosses one.
 */
#ifndef LOGCOUNT_SUM_H
#define LOGCOUNT_SUM_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif

/* _sum.c */
PyObject *sum_known(PyObject *cache, PyObject *key, PyObject *learn);

/* _sum_sets.c */
PyObject *sum_add_to_sets(PyObject *self, PyObject *args);
PyObject *sum_add_to_place_sets(PyObject *self, PyObject *args);
PyObject *sum_add_numbered(PyObject *self, PyObject *args);

/* _sum_numbers.c: VisitorNumbers made ready and added to the module; -1 with an error */
int sum_add_numbers_type(PyObject *m);

/* _sum_json.c */
PyObject *sum_json_compact(PyObject *self, PyObject *args);

/* _sum_sketch.c */
PyObject *sum_add_registers(PyObject *self, PyObject *args);
PyObject *sum_sorted_hashes(PyObject *self, PyObject *values);
PyObject *sum_union_into(PyObject *self, PyObject *args);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#endif /* LOGCOUNT_SUM_H */
