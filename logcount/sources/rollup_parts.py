"""A counting process's part of a file, handed to the parent of `logcount rollup` through a
file in slices, merged by the parent one slice at a time.

Handed over whole through the pool's pipe, a part was one pickle of ~14 MB at 5M lines of
a diverse day (the day's set of ~1M visitor hashes, 8 MiB, the paths' sketches, the
rows), which the parent received as bytes and unpickled beside the part it already held:
its peak grew with the lines (125 MB at 5M against 99 at 1M). Written as a sequence of
small pickles into a private directory, the part reaches the parent a slice at a time
(the rows first, then SLICE_KEYS sketches or SLICE_HASHES of a day's hashes), each merged
into what the parent holds and let go before the next is read.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Iterator
from typing import Any

from logcount.count.sketch import PackedSketch
from logcount.sinks.base import merge_into
from logcount.sources.rollup_rows import UnitCounts

SLICE_KEYS = 256  # path or object sketches per slice (each up to 8 KiB of hashes)
SLICE_HASHES = 1 << 16  # a day's hashes per slice: 512 KiB
_PROTOCOL = pickle.HIGHEST_PROTOCOL


def write_part(counts: UnitCounts, directory: str) -> str:
    """Write `counts` into a new file of `directory` (the parent's, see spill_directory)
    in slices; its name, for read_part."""
    fd, path = tempfile.mkstemp(prefix="part-", dir=directory)
    with os.fdopen(fd, "wb") as f:
        for piece in _slices(counts):
            pickle.dump(piece, f, _PROTOCOL)
    return path


def _slices(counts: UnitCounts) -> Iterator[tuple[Any, ...]]:
    sketches = (counts.path_visitors, counts.object_visitors, counts.day_visitors)
    rows = UnitCounts(
        delta=counts.delta, lines=counts.lines, malformed=counts.malformed, edges=counts.edges
    )
    yield ("rows", rows)
    for table, sketch_table in (("path", sketches[0]), ("object", sketches[1])):
        keys = list(sketch_table)
        for i in range(0, len(keys), SLICE_KEYS):
            yield (table, {k: sketch_table[k] for k in keys[i : i + SLICE_KEYS]})
    for key, day in sketches[2].items():
        if day.hashes is None:  # registers: 1 KiB
            yield ("day", key, day)
            continue
        yield ("day", key, PackedSketch(day.limit))  # so that an empty set is stored too
        for i in range(0, len(day.hashes), SLICE_HASHES):
            yield ("hashes", key, day.hashes[i : i + SLICE_HASHES])


def read_part(path: str, into: UnitCounts | None) -> UnitCounts:
    """The part written at `path` merged into `into` (or on its own, when None), a slice at
    a time; the file is removed. `into` is merged as UnitCounts.merge would merge it: the
    caller bounds it after."""
    try:
        with open(path, "rb") as f:
            kind, rows = pickle.load(f)
            assert kind == "rows"
            if into is None:
                into = rows
            else:
                into.delta.merge(rows.delta)
                into.lines += rows.lines
                into.malformed += rows.malformed
                into.edges += rows.edges
            del rows
            _merge_slices(f, into)
    finally:
        os.unlink(path)
    return into


def _merge_slices(f: Any, into: UnitCounts) -> None:
    tables = {"path": into.path_visitors, "object": into.object_visitors}
    days = into.day_visitors
    while True:
        try:
            piece = pickle.load(f)
        except EOFError:
            return
        kind = piece[0]
        if kind in tables:
            for key, sketch in piece[1].items():
                merge_into(tables[kind], key, sketch)
        elif kind == "day":  # its hashes follow (merged by add_run), or its registers
            key, sketch = piece[1], piece[2]
            if key not in days:
                days[key] = sketch
            elif sketch.hashes is None:
                days[key].merge(sketch)
        else:  # "hashes": a slice of a day's sorted hashes, in order
            days[piece[1]].add_run(piece[2])
        del piece
