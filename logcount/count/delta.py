"""Delta: counter increments per bucket, what a sink (Redis or SQL) applies.

The aggregator produces one per batch of lines; the Redis sink merges those waiting to be
sent, and writes them to its spool as JSON while Redis is away. A delta's `weight` is an
estimate of its size once sent (bytes of JSON): the sink bounds what it holds and sends
by it, so the estimate must be cheap (C-level sums over names) and never serialise.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Collection, Container, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import filterfalse
from typing import Any

from logcount.count.sums import add_counts, counter_copy

SAMPLE_SIZE = 20  # malformed lines kept as samples
# Estimated JSON bytes around each entry (quotes, separators, its counts), and per bucket.
ENTRY_OVERHEAD = 32
BUCKET_OVERHEAD = 160
NUMBER_LIMIT = 1 << 53  # what a Lua number (a double) holds exactly
_STR, _INT = {str}, {int}  # the item types a spool line's lists and counters may hold

BucketKey = tuple[str, str, str]  # site, granularity, label
MemberKey = tuple[str, str, str, str]  # site, dimension, granularity, label
EventKey = tuple[str, str, str, str]  # site, event, granularity, label (count/events.py)
# site, depth, section, granularity, label (count/section_visitors.py)
SectionKey = tuple[str, str, str, str, str]


@dataclass
class Delta:
    """Counter increments per bucket, mergeable; what a sink (Redis or SQL) applies."""

    totals: dict[BucketKey, Counter[str]] = field(default_factory=dict)
    members: dict[MemberKey, Counter[str]] = field(default_factory=dict)
    member_bytes: dict[MemberKey, Counter[str]] = field(default_factory=dict)
    # The sum of the members' durations in microseconds (formats with %D, %T)
    member_durations: dict[MemberKey, Counter[str]] = field(default_factory=dict)
    visitors: dict[BucketKey, set[str]] = field(default_factory=dict)
    # The visitor hashes of each event's bucket: kept exactly (sets, not HyperLogLogs)
    events: dict[EventKey, set[str]] = field(default_factory=dict)
    # The visitor hashes of each section's bucket (kept live as HyperLogLogs)
    sections: dict[SectionKey, set[str]] = field(default_factory=dict)
    recent: dict[str, list[str]] = field(default_factory=dict)  # site -> JSON, oldest first
    samples: dict[str, list[str]] = field(default_factory=dict)
    lines: int = 0
    malformed: int = 0

    def __bool__(self) -> bool:
        return bool(self.totals or self.recent or self.samples)

    def size(self) -> int:
        """Rough count of entries, for the memory budget."""
        return (
            sum(len(c) for c in self.members.values())
            + sum(len(v) for v in self.visitors.values())
            + sum(len(v) for v in self.events.values())
            + sum(len(v) for v in self.sections.values())
            + len(self.totals)
        )

    def sites(self) -> set[str]:
        return (
            {k[0] for k in self.totals}
            | {k[0] for k in self.members}
            | {k[0] for k in self.events}
            | {k[0] for k in self.sections}
            | set(self.recent)
            | set(self.samples)
        )

    def weight(self) -> int:
        """Estimated bytes of this delta once sent (see the module's docstring)."""
        total = sum(BUCKET_OVERHEAD + ENTRY_OVERHEAD * len(c) for c in self.totals.values())
        for counts in self.members.values():
            total += BUCKET_OVERHEAD + _names_weight(counts)
        for sets in (self.visitors, self.events, self.sections):
            for hashes in sets.values():
                total += BUCKET_OVERHEAD + _hashes_weight(hashes)
        for lists in (self.recent, self.samples):
            total += sum(_names_weight(items) for items in lists.values())
        return total

    def merge(self, other: Delta, keep_recent: int | None = None, adopt: bool = False) -> int:
        """Add `other` in; returns the weight this delta grew by (new entries only).

        `keep_recent`: keep only that many recent requests per site (a sink holding
        deltas while Redis is away would otherwise keep every batch's list). `adopt`:
        `other` is let go by the caller, and a bucket of counts new here is taken as it
        is, not copied (a sink's pending delta, which each batch's delta is merged into:
        on a diverse day most of its buckets are new to it)."""
        copy = _adopted if adopt else counter_copy
        grown = 0
        for bkey, counts in other.totals.items():
            found = self.totals.get(bkey)
            if found is None:
                self.totals[bkey] = copy(counts)
                grown += BUCKET_OVERHEAD + ENTRY_OVERHEAD * len(counts)
            else:
                grown += ENTRY_OVERHEAD * len(_new(counts, found))
                add_counts(found, counts)
        grown += _merge_named(self.members, other.members, copy)
        _merge_named(self.member_bytes, other.member_bytes, copy)
        _merge_named(self.member_durations, other.member_durations, copy)
        # Sets are copied all the same: a set grown by adds holds a larger table than its
        # copy (pending's visitor and section sets: +8 % adopted)
        grown += _merge_sets(self.visitors, other.visitors)
        grown += _merge_sets(self.events, other.events)
        grown += _merge_sets(self.sections, other.sections)
        for site, items in other.recent.items():
            merged = self.recent.setdefault(site, [])
            merged.extend(items)
            grown += _names_weight(items)
            if keep_recent is not None and len(merged) > keep_recent:
                grown -= _names_weight(merged[:-keep_recent])
                del merged[:-keep_recent]
        for site, items in other.samples.items():
            merged = self.samples.setdefault(site, [])
            merged.extend(items)
            grown += _names_weight(items) - _names_weight(merged[:-SAMPLE_SIZE])
            del merged[:-SAMPLE_SIZE]
        self.lines += other.lines
        self.malformed += other.malformed
        return grown

    def parts(self, limit: int, consume: bool = False) -> Iterator[Delta]:
        """This delta in parts of at most `limit` weight each (an entry heavier than that
        makes a part of its own), in a fixed order: the same delta always splits the same
        way. The first part carries the line counts. Each is yielded once full: a spill
        writes a part and lets it go
        before the next is made (all made first, their copies of the large sets were
        ~9 MB of a diverse day's spill of 250,000 entries). A bucket that fits in a part
        goes there as it is, not copied; only the buckets cut over parts are.
        `consume`: each bucket is taken out of this delta as it is placed, so that what
        was written is freed before the rest (a spill's delta is held by nothing else)."""
        parts = _Splitter(limit)
        parts.parts[0].lines, parts.parts[0].malformed = self.lines, self.malformed
        for _ in self._fill(parts, consume):
            yield from parts.full()
        yield from parts.done()

    def _fill(self, parts: _Splitter, consume: bool) -> Iterator[None]:
        """Place every entry in `parts`; yields after each bucket or piece of one (the
        parts before the last are full then)."""
        for bkey, counts in _buckets(self.totals, consume):
            parts.room(BUCKET_OVERHEAD + ENTRY_OVERHEAD * len(counts)).totals[bkey] = counts
            yield
        for mkey, counts in _buckets(self.members, consume):
            sides = [(s, t) for s, t in self._sums(mkey, consume) if t]
            whole = parts.whole(BUCKET_OVERHEAD + _names_weight(counts))
            if whole is not None:
                # The bucket fits: its counters as they are, not rebuilt name by name
                # (most buckets of a many-site delta hold a few names each).
                whole.members[mkey] = counts
                for side, sums in sides:
                    getattr(whole, side)[mkey] = sums
                yield
                continue
            for part, names in parts.chunks(counts):
                part.members[mkey] = Counter({n: counts[n] for n in names})
                for side, sums in sides:
                    getattr(part, side)[mkey] = Counter({n: sums[n] for n in names if n in sums})
                yield
        for name in ("visitors", "events", "sections"):
            sets: dict[Any, set[str]] = getattr(self, name)
            for key, hashes in _buckets(sets, consume):
                if not hashes:
                    continue  # nothing to send (cut into no chunk, as before)
                whole = parts.whole(BUCKET_OVERHEAD + _hashes_weight(hashes))
                if whole is not None:
                    getattr(whole, name)[key] = hashes
                    yield
                    continue
                for part, chunk in parts.chunks(sorted(hashes)):
                    getattr(part, name)[key] = set(chunk)
                    yield
        for name in ("recent", "samples"):
            for site, items in _buckets(getattr(self, name), consume):
                for part, chunk in parts.chunks(items):
                    getattr(part, name)[site] = chunk
                    yield

    def _sums(
        self, mkey: MemberKey, consume: bool = False
    ) -> list[tuple[str, Counter[str] | None]]:
        """The sums kept beside a bucket's member hits (bytes, durations), by field name;
        `consume`: taken out of this delta."""
        return [
            (name, sums.pop(mkey, None) if consume else sums.get(mkey))
            for name, sums in (
                ("member_bytes", self.member_bytes),
                ("member_durations", self.member_durations),
            )
        ]

    def split_by_site(self) -> dict[str, Delta]:
        out: dict[str, Delta] = {}
        for name in ("totals", "visitors"):
            for key, value in getattr(self, name).items():
                getattr(out.setdefault(key[0], Delta()), name)[key] = value
        for name in ("members", "member_bytes", "member_durations", "events", "sections"):
            for key, value in getattr(self, name).items():
                getattr(out.setdefault(key[0], Delta()), name)[key] = value
        for name in ("recent", "samples"):
            for site, value in getattr(self, name).items():
                getattr(out.setdefault(site, Delta()), name)[site] = value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_obj(), separators=(",", ":"))

    def to_obj(self) -> dict[str, Any]:
        """The delta as JSON's objects (to_json's, or a part of a larger document's)."""
        return {
            # (key, Counter) pairs as they are: JSON writes a tuple as a list and a
            # Counter as an object, without a copy of each.
            "t": list(self.totals.items()),
            "m": list(self.members.items()),
            "b": list(self.member_bytes.items()),
            "d": list(self.member_durations.items()),
            "v": [[list(k), sorted(v)] for k, v in self.visitors.items()],
            "e": [[list(k), sorted(v)] for k, v in self.events.items()],
            "q": [[list(k), sorted(v)] for k, v in self.sections.items()],
            "r": self.recent,
            "s": self.samples,
            "n": [self.lines, self.malformed],
        }

    @classmethod
    def from_json(cls, text: str) -> Delta:
        """The delta written by to_json; ValueError for anything else (a spool line is
        data on disk, and whatever it holds must not reach Redis unchecked)."""
        try:
            data = json.loads(text)
        except RecursionError:
            raise ValueError("not a delta (RecursionError)") from None
        return cls.from_obj(data)

    @classmethod
    def from_obj(cls, data: Any) -> Delta:
        """The delta of to_obj's objects, read back from JSON; ValueError for anything else.
        The objects are taken apart as they are read (a bucket's go once it is made)."""
        try:
            pop = data.pop
            return cls(
                totals={_key(k, 3): _counts(v) for k, v in _pairs(pop("t"))},
                members={_key(k, 4): _counts(v) for k, v in _pairs(pop("m"))},
                member_bytes={_key(k, 4): _counts(v) for k, v in _pairs(pop("b"))},
                # a spool written before durations has none
                member_durations={_key(k, 4): _counts(v) for k, v in _pairs(pop("d", []))},
                visitors={_key(k, 3): set(_strings(v)) for k, v in _pairs(pop("v"))},
                # a spool written before events has none
                events={_key(k, 4): set(_strings(v)) for k, v in _pairs(pop("e", []))},
                # nor sections before they were kept live
                sections={_key(k, 5): set(_strings(v)) for k, v in _pairs(pop("q", []))},
                recent={_str(k): _strings(v) for k, v in _dict(data["r"]).items()},
                samples={_str(k): _strings(v) for k, v in _dict(data["s"]).items()},
                lines=_count(data["n"][0]),
                malformed=_count(data["n"][1]),
            )
        except (KeyError, IndexError, TypeError, AttributeError, RecursionError) as exc:
            raise ValueError(f"not a delta ({type(exc).__name__}: {exc})") from None


def _buckets(buckets: dict[Any, Any], consume: bool) -> Iterable[tuple[Any, Any]]:
    """The buckets' items in order; `consume`: each taken out of `buckets` as it comes."""
    if not consume:
        yield from buckets.items()
        return
    for key in list(buckets):
        yield key, buckets.pop(key)


def _names_weight(names: Collection[str]) -> int:
    """Weight of entries named `names`: C-level sums, no Python code per name."""
    return sum(map(len, names)) + ENTRY_OVERHEAD * len(names)


def _hashes_weight(hashes: Collection[str]) -> int:
    """Weight of visitor hashes, which all have one length (summing lengths over a set
    costs more than the merge itself)."""
    for first in hashes:
        return (len(first) + ENTRY_OVERHEAD) * len(hashes)
    return 0


def _new(names: Iterable[str], known: Container[str]) -> list[str]:
    """`names` not in `known`, in a C loop over `names` only (a set difference of dict
    views would go over `known`, the whole pending delta, at every merge)."""
    return list(filterfalse(known.__contains__, names))


def _adopted(value: Any) -> Any:
    """merge(adopt=True)'s copy: none, the value itself."""
    return value


def _merge_sets(into: dict[Any, set[str]], other: dict[Any, set[str]]) -> int:
    grown = 0
    for key, hashes in other.items():
        seen = into.get(key)
        if seen is None:
            into[key] = set(hashes)
            grown += BUCKET_OVERHEAD + _hashes_weight(hashes)
        else:
            grown += _hashes_weight(_new(hashes, seen))
            seen.update(hashes)
    return grown


def _merge_named(
    into: dict[Any, Counter[str]],
    other: dict[Any, Counter[str]],
    copy: Callable[[Any], Any] = counter_copy,
) -> int:
    grown = 0
    for key, counts in other.items():
        found = into.get(key)
        if found is None:
            into[key] = copy(counts)
            grown += BUCKET_OVERHEAD + _names_weight(counts)
        else:
            grown += _names_weight(_new(counts, found))
            add_counts(found, counts)
    return grown


class _Splitter:
    """Deltas filled one after the other up to a weight limit."""

    def __init__(self, limit: int):
        self.limit = limit
        self.parts = [Delta()]
        self.left = limit

    def room(self, weight: int) -> Delta:
        """The part an entry of `weight` goes in (a new one when the current is full)."""
        if weight > self.left and self.left < self.limit:
            self.parts.append(Delta())
            self.left = self.limit
        self.left -= weight
        return self.parts[-1]

    def whole(self, weight: int) -> Delta | None:
        """The current part, when an entry of `weight` fits in what is left of it."""
        if weight > self.left:
            return None
        self.left -= weight
        return self.parts[-1]

    def chunks(self, names: Iterable[str]) -> Iterable[tuple[Delta, list[str]]]:
        """`names` (one bucket's entries) cut where the parts fill up, in order."""
        chunk: list[str] = []
        part: Delta | None = None
        for name in names:
            weight = len(name) + ENTRY_OVERHEAD
            if part is None or weight > self.left:
                if chunk:
                    yield part, chunk  # type: ignore[misc]
                    chunk = []
                part = self.room(BUCKET_OVERHEAD + weight)
            else:
                self.left -= weight
            chunk.append(name)
        if chunk:
            yield part, chunk  # type: ignore[misc]

    def full(self) -> list[Delta]:
        """The parts filled up (all but the last), taken out of the splitter."""
        done, self.parts = self.parts[:-1], self.parts[-1:]
        return done

    def done(self) -> list[Delta]:
        return self.parts


def _pairs(value: Any) -> Iterator[tuple[Any, Any]]:
    """The pairs of a list of them, each taken out of the list as it is read."""
    if not isinstance(value, list):
        raise TypeError("a list of pairs expected")
    value.reverse()
    while value:
        k, v = value.pop()
        yield k, v


def _dict(value: Any) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise TypeError("an object expected")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("a string expected")
    return value


def _strings(value: Any) -> list[str]:
    # The types of the list's items gathered in C: a spool line holds millions of names.
    if not isinstance(value, list) or not set(map(type, value)) <= _STR:
        raise TypeError("a list of strings expected")
    return value


def _key(value: Any, length: int) -> Any:  # a BucketKey or MemberKey
    if len(_strings(value)) != length:
        raise TypeError(f"a key of {length} strings expected")
    return tuple(value)


def _count(value: Any) -> int:
    if type(value) is not int or not 0 <= value < NUMBER_LIMIT:
        raise TypeError(f"a count below 2**53 expected, not {str(value)[:40]}")
    return value


def _counts(value: Any) -> Counter[str]:
    numbers = _dict(value).values()
    # One check in C for the common case (ints in range); _count names the bad one.
    if numbers and not (
        set(map(type, numbers)) <= _INT and min(numbers) >= 0 and max(numbers) < NUMBER_LIMIT
    ):
        for n in numbers:
            _count(n)
    return counter_copy(value)
