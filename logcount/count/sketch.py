"""Mergeable visitor sets for stored rows: exact while small, a HyperLogLog beyond.

A path's visitors of one day can come from several source files (two hosts, or the
stragglers at the top of the next day's file); summing their counts would count a visitor
seen in both twice. Each stored row therefore keeps a sketch of its visitor hashes: the
sorted 8-byte hashes themselves up to EXACT_LIMIT of them (exact unions), else HyperLogLog
registers (2^P of them, ~3 % standard error, like the live side's PFCOUNT).

A day's visitors of a site (not those of its paths and objects) stay exact far longer,
up to DAY_EXACT_LIMIT hashes per source file: hosts that serve one site see many of the
same visitors, and the day's and the window's visitors are their union, which a user
compares with other tools. Measured (bench/bench_cluster.py): 8 bytes per visitor and
source a day, against 1 KiB for a HyperLogLog: a site with fewer than 128 visitors a day
is smaller exact; one with 100,000 costs 800 kB a host and day. While a rollup counts,
such a set is a PackedSketch: the sorted hashes in an array of 8 bytes each, not a
Python set (some 70 bytes a hash), which is what a counting process hands over.
"""

from __future__ import annotations

import math
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Iterable

from logcount.count.sums import native_sum

EXACT_LIMIT = 1024
DAY_EXACT_LIMIT = 1 << 20  # 8 MiB of hashes in one row: beyond, registers
# The union of several such sets (a day's sources, a window's days), kept exact as long
# as each of them is
UNION_EXACT_LIMIT = 4 * DAY_EXACT_LIMIT
P = 10
REGISTERS = 1 << P
_SET, _HLL = b"S", b"H"
_SWAP = sys.byteorder == "little"  # the stored hashes are big-endian
REGION = 1 << 16  # hashes per slice of union_into


def packed(values: Iterable[int]) -> bytes:
    """The stored form of exact hashes: each 8 bytes, big-endian, in ascending order."""
    return _pack(array("Q", sorted(values)))


def _pack(hashes: array[int]) -> bytes:
    """packed() of hashes in ascending order already (byte-swapped in place)."""
    if _SWAP:
        hashes.byteswap()
    return _SET + hashes.tobytes()


def unpacked(body: bytes) -> array[int]:
    """The hashes of packed()'s body (without its mark), as they were stored."""
    hashes = array("Q")
    hashes.frombytes(body[: len(body) // 8 * 8])
    if _SWAP:
        hashes.byteswap()
    return hashes


def add_registers_py(registers: bytearray, values: Iterable[int]) -> None:
    """Each hash into HyperLogLog registers: its first P bits pick one, which keeps the
    largest rank seen (the position of the first 1 bit in the rest). One loop with its
    names local: a day's sets hand it hundreds of thousands of hashes (500,000: 0.05 s,
    0.01 s in its C twin, _sum.add_registers)."""
    shift, mask, top = 64 - P, (1 << (64 - P)) - 1, 64 - P + 1
    for value in values:
        index = value >> shift
        rank = top - (value & mask).bit_length()
        if rank > registers[index]:
            registers[index] = rank


def sorted_hashes_py(values: Iterable[int]) -> array[int]:
    """The hashes of `values`, each once, ascending, 8 bytes each."""
    return array("Q", sorted(set(values)))


def union_into_py(held: array[int], fresh: array[int], limit: int) -> bool:
    """Add `fresh` to `held` (both sorted, no two alike in either) in place, keeping it
    sorted; False, `held` untouched, if the union would hold more than `limit`. Made a
    slice of the hashes' range at a time, about REGION hashes each (the hashes are
    uniform), so that the Python ints it makes are never more than a slice's (a day of a
    million visitors is 8 MB as an array, 70 MB as a set of ints); and in place, so that
    a day's set near its limit is not copied whole for each batch (a copy was 8 MB more of
    a counter's peak). The hashes of each slice not held yet are found first (the limit is
    known before anything moves), then `held` grows by them and each slice, the last
    first, is moved up by the new hashes of the slices below it and merged there."""
    regions = max(1, (len(held) + len(fresh)) // REGION)
    slices: list[tuple[int, int, array[int]]] = []  # (start, end in held, its new hashes)
    added = ia = ib = 0
    for r in range(1, regions + 1):
        ja, jb = len(held), len(fresh)
        if r < regions:
            bound = (r << 64) // regions
            ja, jb = bisect_left(held, bound, ia), bisect_left(fresh, bound, ib)
        new = set(fresh[ib:jb]).difference(held[ia:ja])
        added += len(new)
        if len(held) + added > limit:
            return False
        slices.append((ia, ja, array("Q", sorted(new))))  # 8 bytes each, not an int
        ia, ib = ja, jb
    if not added:
        return True
    held.frombytes(bytes(8 * added))
    shift = added  # how far up the slice in hand moves: the new hashes of it and below
    for ia, ja, ours in reversed(slices):
        if ours:
            merged = held[ia:ja].tolist()
            merged += ours
            merged.sort()  # two ascending runs: merged in one pass
            held[ia + shift - len(ours) : ja + shift] = array("Q", merged)
            shift -= len(ours)
        elif ia < ja:
            held[ia + shift : ja + shift] = held[ia:ja]
        if not shift:  # the slices below stay where they are
            break
    return True


# The C twins (logcount/count/_sum_sketch.c; tests/test_sums.py and test_store.py hold them
# equal): a diverse day's counter hands them ~2,000 paths' sets and a day's set a batch,
# 1.1 s of a 1,000,000-line day's 5.7 in Python, 0.25 s in C.
add_registers: Callable[[bytearray, Iterable[int]], None] = getattr(
    native_sum(), "add_registers", add_registers_py
)
sorted_hashes: Callable[[Iterable[int]], array[int]] = getattr(
    native_sum(), "sorted_hashes", sorted_hashes_py
)
union_into: Callable[[array[int], array[int], int], bool] = getattr(
    native_sum(), "union_into", union_into_py
)
UNION_IN_C = union_into is not union_into_py  # then add_run leaves the merge to it


# 2.0**-r for each value a register may hold: looked up, the same floats summed in the
# same order as computing each (a rollup's parent counts some hundred sketches of
# registers as it writes a diverse day's rows: 70 -> 25 ms).
_POWERS = tuple(2.0**-r for r in range(256))


def estimate(registers: bytearray) -> int:
    m = REGISTERS
    value = 0.7213 / (1 + 1.079 / m) * m * m / sum(map(_POWERS.__getitem__, registers))
    zeros = registers.count(0)
    if value <= 2.5 * m and zeros:
        value = m * math.log(m / zeros)  # linear counting for small cardinalities
    return round(value)


class _Sketch:
    """What both kinds of sketch share: exact hashes (a set, or a sorted array) until
    `limit`, then the HyperLogLog registers they outgrew into; counted and stored alike."""

    hashes: Collection[int] | None
    registers: bytearray | None

    def _to_registers(self) -> None:
        assert self.hashes is not None
        values, self.hashes = self.hashes, None
        self.registers = bytearray(REGISTERS)
        add_registers(self.registers, values)

    def _merge_registers(self, other: _Sketch) -> None:
        """The union with a sketch of registers: registers on this side too, their max."""
        if self.hashes is not None:
            self._to_registers()
        assert self.registers is not None and other.registers is not None
        self.registers = bytearray(map(max, self.registers, other.registers))

    def _packed_hashes(self) -> bytes:
        raise NotImplementedError

    def count(self) -> int:
        if self.hashes is not None:
            return len(self.hashes)
        assert self.registers is not None
        return estimate(self.registers)

    def to_bytes(self) -> bytes:
        if self.hashes is not None:
            return self._packed_hashes()
        assert self.registers is not None
        return _HLL + bytes(self.registers)


class VisitorSketch(_Sketch):
    """A set of 64-bit visitor hashes, or the HLL registers it outgrew into."""

    def __init__(self, limit: int = EXACT_LIMIT) -> None:
        self.limit = limit  # the most hashes kept exact
        self.hashes: set[int] | None = set()
        self.registers: bytearray | None = None

    @classmethod
    def of(cls, hex_hashes: Iterable[str], limit: int = EXACT_LIMIT) -> VisitorSketch:
        sketch = cls(limit)
        sketch.add_all(int(h, 16) for h in hex_hashes)
        return sketch

    def add_all(self, values: Iterable[int]) -> None:
        if self.hashes is not None:
            self.hashes.update(values)
            if len(self.hashes) > self.limit:
                self._to_registers()
            return
        assert self.registers is not None
        add_registers(self.registers, values)

    def merge(self, other: _Sketch) -> None:
        if other.hashes is not None:
            self.add_all(other.hashes)
        else:
            self._merge_registers(other)

    def _packed_hashes(self) -> bytes:
        assert self.hashes is not None
        return packed(self.hashes)

    @classmethod
    def from_bytes(cls, data: bytes, limit: int = EXACT_LIMIT) -> VisitorSketch:
        sketch = cls(limit)
        if data[:1] == _HLL:
            sketch.hashes = None
            sketch.registers = bytearray(data[1:])
        else:
            sketch.add_all(unpacked(data[1:]))
        return sketch


class PackedSketch(_Sketch):
    """Visitor hashes while a rollup counts (a day's, a path's, an object's): exact as a
    sorted array of 8-byte hashes (up to `limit`), else the same HyperLogLog registers as
    VisitorSketch's; the same bytes stored, and merged into a VisitorSketch as one. Hashes
    are added a batch at a time (sorted, then merged into those held: union_into)."""

    def __init__(self, limit: int = DAY_EXACT_LIMIT) -> None:
        self.limit = limit
        self.hashes: array[int] | None = array("Q")
        self.registers: bytearray | None = None

    def add_all(self, values: Iterable[int]) -> None:
        if self.hashes is None:
            assert self.registers is not None
            add_registers(self.registers, values)
        else:
            self._add(sorted_hashes(values))

    def _add(self, fresh: array[int]) -> None:
        """Sorted hashes (no two alike) into this sketch."""
        if self.hashes is not None:
            if union_into(self.hashes, fresh, self.limit):
                return
            self._to_registers()
        assert self.registers is not None
        add_registers(self.registers, fresh)

    def add_run(self, fresh: array[int]) -> None:
        """Sorted hashes (no two alike) that span a small part of the range, such as one
        slice of another sketch's: merged where they fall, so that a large set handed over
        in slices costs about one pass over it, not one per slice (union_into_py's). C's
        union_into makes that pass per slice, but in C: a diverse day's part (206,000
        hashes, 4 slices) merged into the 206,000 held in 4.5 ms, against 0.16 s of sets
        and sorting here (time the parent of a rollup spends after the last line)."""
        held = self.hashes
        if held is None or not fresh or UNION_IN_C:
            self._add(fresh)
            return
        lo, hi = bisect_left(held, fresh[0]), bisect_right(held, fresh[-1])
        new = set(fresh).difference(held[lo:hi]) if lo < hi else fresh
        if len(held) + len(new) > self.limit:
            self._to_registers()
            assert self.registers is not None
            add_registers(self.registers, fresh)
        elif lo == hi:  # none held in its range (a set read in order: each slice above)
            held[lo:lo] = fresh
        elif new:
            merged = held[lo:hi].tolist()
            merged += new
            merged.sort()
            held[lo:hi] = array("Q", merged)

    def merge(self, other: PackedSketch) -> None:
        """The union (hashes, or registers once either side has them)."""
        if other.hashes is not None:
            self._add(other.hashes)
        else:
            self._merge_registers(other)

    def _packed_hashes(self) -> bytes:
        assert self.hashes is not None
        return _pack(array("Q", self.hashes))  # a copy: sorted already
