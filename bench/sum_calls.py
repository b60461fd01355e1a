"""Every entry of logcount.count._sum fed a diverse batch, for callgrind: a build of the
module can be compared with another (e.g. before and after a refactoring of _sum*.c) by
the instructions spent in its object.

    valgrind --tool=callgrind --callgrind-out-file=out .venv/bin/python \
        bench/sum_calls.py [--so PATH/_sum.cpython-...so]
    callgrind_annotate out | grep _sum.cpython   # the module's functions, self cost

The inputs are made from a seeded generator with a diverse day's spread (tens of
thousands of clients, thousands of requests, few agents), so the module's caches miss
as they do on such a day; the same seed gives the same calls on every build."""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import random
from array import array
from types import ModuleType
from typing import Any


def load(so: str | None) -> ModuleType:
    """The module from `so` (another build of it), or the one installed."""
    if so is None:
        from logcount.count import _sum

        return _sum
    loader = importlib.machinery.ExtensionFileLoader("logcount.count._sum", so)
    spec = importlib.util.spec_from_file_location("logcount.count._sum", so, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def batch(rng: random.Random, lines: int) -> dict[tuple[bytes, ...], int]:
    """A batch's visitors table: (site, minute, request, client, agent) -> hits."""
    sites = [b"acme", b"shop"]
    requests = [b"GET /page/%d HTTP/1.1" % i for i in range(4000)]
    agents = [b"Mozilla/5.0 agent %d" % i for i in range(9)]
    table: dict[tuple[bytes, ...], int] = {}
    interned: dict[bytes, bytes] = {}  # one object per value, as the scanner's take()
    for _ in range(lines):
        raw = (
            rng.choice(sites),
            b"2026-12-07T13:%02d" % rng.randrange(60),
            rng.choice(requests),
            b"10.%d.%d.%d" % (rng.randrange(4), rng.randrange(128), rng.randrange(128)),
            rng.choice(agents),
        )
        key = tuple(interned.setdefault(v, v) for v in raw)
        table[key] = table.get(key, 0) + 1
    return table


def sums(mod: ModuleType, table: dict[tuple[bytes, ...], int]) -> None:
    """add_by_members (with a `more` table) and add_counts."""
    sizes = {k: 512 * n for k, n in table.items()}
    out: dict[Any, Any] = {}
    sized: dict[Any, Any] = {}

    def pairs_of(rest: tuple[bytes, ...]) -> tuple[tuple[str, str], ...]:
        return (("path", rest[0].decode()), ("agent", rest[2].decode()))

    mod.add_by_members(table, 2, {}, {}, out, tuple, pairs_of, ((sizes, sized),))
    total: dict[Any, int] = {}
    for dims in out.values():
        mod.add_counts(total, dims["path"])


def sets(mod: ModuleType, table: dict[tuple[bytes, ...], int]) -> None:
    """add_to_sets, add_to_place_sets, VisitorNumbers and add_numbered on one batch."""

    def sets_of(_: Any) -> tuple[set[Any], ...]:
        return (set(), set())

    mod.add_to_sets(table, 2, (2,), (3, 4), {}, {}, sets_of, hash)
    mod.add_to_place_sets(table, 2, (2,), (3, 4), {}, {}, {}, {}, tuple, tuple, sets_of, hash)
    numbers = mod.VisitorNumbers(b"a key of 16 byte", 0, 1, {}, None)
    numbered: dict[tuple[bytes, ...], list[int]] = {}
    for key in table:
        numbered.setdefault(key[:3], []).append(numbers(key[3:]))
    mod.add_numbered(numbered, 2, (2,), {}, {}, {}, {}, tuple, tuple, sets_of)


def sketches(mod: ModuleType, rng: random.Random) -> None:
    """sorted_hashes, union_into and add_registers as a rollup's paths and day use them."""
    day = mod.sorted_hashes([])
    registers = bytearray(1 << 10)
    for _ in range(200):
        hashes = [rng.getrandbits(64) for _ in range(rng.choice((5, 50, 500)))]
        mod.union_into(day, mod.sorted_hashes(hashes), 1 << 20)
        mod.add_registers(registers, hashes)
    mod.sorted_hashes([rng.getrandbits(64) for _ in range(100_000)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--so", help="the _sum module's shared object to load")
    parser.add_argument("--lines", type=int, default=100_000)
    args = parser.parse_args()
    mod = load(args.so)
    rng = random.Random(7)
    table = batch(rng, args.lines)
    sums(mod, table)
    sets(mod, table)
    sketches(mod, rng)
    print(f"{len(table)} keys, {array('Q').itemsize}-byte hashes, module {mod.__file__}")


if __name__ == "__main__":
    main()
