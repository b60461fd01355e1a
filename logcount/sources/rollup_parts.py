"""A counting process's part of a file, handed to the parent of `logcount rollup` through a
file in slices, merged by the parent one slice at a time.

Handed over whole through the pool's pipe, a part was one pickle of ~14 MB at 5M lines of
a diverse day (the day's set of ~1M visitor hashes, 8 MiB, the paths' sketches, the
rows), which the parent received as bytes and unpickled beside the part it already held:
its peak grew with the lines (125 MB at 5M against 99 at 1M). Written as a sequence of
small pickles into a private directory, the part reaches the parent a slice at a time
(the rows first, then SLICE_KEYS sketches or SLICE_HASHES of a day's hashes), each merged
into what the parent holds and let go before the next is read. A counter's own day set,
past a few hashes, waits in such a file too while it counts (DaySpill).
"""

from __future__ import annotations

import os
import pickle
import tempfile
from array import array
from bisect import bisect_right
from collections.abc import Iterator
from typing import Any, BinaryIO

from logcount.count.sketch import REGISTERS, PackedSketch, add_registers, union_into
from logcount.sinks.base import merge_into
from logcount.sources.rollup_rows import UnitCounts

SLICE_KEYS = 256  # path or object sketches per slice (each up to 8 KiB of hashes)
SLICE_HASHES = 1 << 16  # a day's hashes per slice: 512 KiB
_PROTOCOL = pickle.HIGHEST_PROTOCOL


class DaySpill:
    """A counting process's day sets kept in files once they hold more than a few hashes
    (rollup_count.SPILL_HASHES): a day of a million visitors is not 8 MiB of a counter's
    memory (which grew with the lines) but a sorted file, merged with the hashes held
    since as it is rewritten (a pass over it, as union_into makes over hashes held). The
    files have no name (removed as made): a counter killed leaves none behind."""

    def __init__(self, directory: str):
        self.directory = directory
        self.files: dict[tuple[str, str], BinaryIO] = {}  # (site, day label) -> its file

    def relieve(self, days: dict[tuple[str, str], PackedSketch], at_most: int) -> None:
        """Move the hashes of each day set holding more than `at_most` to its file."""
        for key, sketch in days.items():
            if sketch.hashes is not None and len(sketch.hashes) > at_most:
                self._move(key, sketch)

    def _move(self, key: tuple[str, str], sketch: PackedSketch) -> None:
        """The sketch's hashes into its file (the union of both), or, once the union
        holds more than the sketch's limit, the sketch is the union's registers."""
        old = self.files.pop(key, None)
        if sketch.hashes is None:  # registers already: the file's hashes join them
            assert sketch.registers is not None
            for hashes in _hashes_of(old):
                add_registers(sketch.registers, hashes)
            return
        held, sketch.hashes = sketch.hashes, array("Q")
        out = tempfile.TemporaryFile(dir=self.directory)  # noqa: SIM115 (kept, closed once read)
        n = _union(old, held, out)
        del held
        if n <= sketch.limit:
            self.files[key] = out
            return
        sketch.hashes, sketch.registers = None, bytearray(REGISTERS)
        for hashes in _hashes_of(out):
            add_registers(sketch.registers, hashes)

    def slices(self, key: tuple[str, str], sketch: PackedSketch) -> Iterator[tuple[Any, ...]]:
        """A day set as _slices gives it: its registers, or its hashes (file and held)."""
        if sketch.hashes is None or sketch.hashes:
            self._move(key, sketch)
        f = self.files.pop(key, None)
        if f is None:  # the union's registers
            yield ("day", key, sketch)
            return
        yield ("day", key, PackedSketch(sketch.limit))
        for hashes in _hashes_of(f):
            yield ("hashes", key, hashes)


def _union(f: BinaryIO | None, held: array[int], out: BinaryIO) -> int:
    """Write the union of the sorted hashes in file `f` (if any, closed after) and of
    `held` (sorted, neither with two alike) to `out`, sorted; how many there are."""
    n = j = 0
    for chunk in _hashes_of(f):
        k = bisect_right(held, chunk[-1], j)
        if k > j:  # in C: 0.07 s less of a diverse day's counter than Python sets and sorting
            # the limit is both lengths together, which no union passes: it always merges
            union_into(chunk, held[j:k], len(chunk) + k - j)
        j = k
        chunk.tofile(out)
        n += len(chunk)
    rest = held[j:]
    rest.tofile(out)
    return n + len(rest)


def _hashes_of(f: BinaryIO | None) -> Iterator[array[int]]:
    """The hashes of a file of DaySpill's, a slice at a time; the file closed after."""
    if f is None:
        return
    with f:
        f.seek(0)
        while block := f.read(8 * SLICE_HASHES):
            hashes = array("Q")
            hashes.frombytes(block)
            yield hashes


def write_part(counts: UnitCounts, directory: str, spill: DaySpill | None = None) -> str:
    """Write `counts` (with the day sets `spill` holds) into a new file of `directory` (the
    parent's) in slices; its name, for read_part."""
    fd, path = tempfile.mkstemp(prefix="part-", dir=directory)
    with os.fdopen(fd, "wb") as f:
        for piece in _slices(counts, spill):
            pickle.dump(piece, f, _PROTOCOL)
    return path


def _slices(counts: UnitCounts, spill: DaySpill | None) -> Iterator[tuple[Any, ...]]:
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
        if spill is not None and key in spill.files:
            yield from spill.slices(key, day)
        elif day.hashes is None:  # registers: 1 KiB
            yield ("day", key, day)
        else:
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
