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
is smaller exact; one with 100,000 costs 800 kB a host and day.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

EXACT_LIMIT = 1024
DAY_EXACT_LIMIT = 1 << 20  # 8 MiB of hashes in one row: beyond, registers
# The union of several such sets (a day's sources, a window's days), kept exact as long
# as each of them is
UNION_EXACT_LIMIT = 4 * DAY_EXACT_LIMIT
P = 10
REGISTERS = 1 << P
_SET, _HLL = b"S", b"H"


class VisitorSketch:
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
        for value in values:
            self._add_register(value)

    def _to_registers(self) -> None:
        assert self.hashes is not None
        values, self.hashes = self.hashes, None
        self.registers = bytearray(REGISTERS)
        for value in values:
            self._add_register(value)

    def _add_register(self, value: int) -> None:
        assert self.registers is not None
        index = value >> (64 - P)
        rest = value & ((1 << (64 - P)) - 1)
        rank = (64 - P) - rest.bit_length() + 1
        if rank > self.registers[index]:
            self.registers[index] = rank

    def merge(self, other: VisitorSketch) -> None:
        if other.hashes is not None:
            self.add_all(other.hashes)
            return
        assert other.registers is not None
        if self.hashes is not None:
            self._to_registers()
        assert self.registers is not None
        self.registers = bytearray(map(max, self.registers, other.registers))

    def count(self) -> int:
        if self.hashes is not None:
            return len(self.hashes)
        assert self.registers is not None
        m = REGISTERS
        estimate = 0.7213 / (1 + 1.079 / m) * m * m / sum(2.0**-r for r in self.registers)
        zeros = self.registers.count(0)
        if estimate <= 2.5 * m and zeros:
            estimate = m * math.log(m / zeros)  # linear counting for small cardinalities
        return round(estimate)

    def to_bytes(self) -> bytes:
        if self.hashes is not None:
            return _SET + b"".join(h.to_bytes(8, "big") for h in sorted(self.hashes))
        assert self.registers is not None
        return _HLL + bytes(self.registers)

    @classmethod
    def from_bytes(cls, data: bytes, limit: int = EXACT_LIMIT) -> VisitorSketch:
        sketch = cls(limit)
        if data[:1] == _HLL:
            sketch.hashes = None
            sketch.registers = bytearray(data[1:])
        else:
            body = data[1:]
            sketch.add_all(int.from_bytes(body[i : i + 8], "big") for i in range(0, len(body), 8))
        return sketch
