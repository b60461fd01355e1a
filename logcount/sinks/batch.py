"""A batch of counts for Redis: a frozen Delta with the id that makes it count once, as
the one Lua call (apply.lua) that applies it, and as the line the spool keeps of it.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from logcount.config import Config
from logcount.count.delta import Delta
from logcount.count.sums import json_compact
from logcount.dimensions import GRANULARITY_NAMES
from logcount.sinks import keys
from logcount.sinks.sent_visitors import SentVisitors

LUA_MAX = 2**53  # the largest count apply.lua takes: exact as a double
MARKER_TTL = 7 * 86400
BATCH_MAX_BYTES = 4 << 20  # one Lua call (Redis refuses requests past 512 MB)
# How to_line's JSON starts: the batch id comes first (with a space: lines of versions
# that kept the delta as a string of JSON in it, still replayed)
_ID_STARTS = (b'{"id":"', b'{"id": "')
_MORE = b',"more":1,'
FINEST = GRANULARITY_NAMES[0]  # minute: its buckets' totals feed the monotonic totals


def build_call(
    delta: Delta,
    config: Config,
    marker_site: str | None,
    batch_id: str | None,
    extra: dict[str, str] | None = None,
    list_sites: bool = True,
    sent: SentVisitors | None = None,
) -> tuple[list[str], bytes]:
    """KEYS and the JSON payload of one apply.lua call for `delta`, as bytes: redis-py
    sends bytes as they are, but encodes a str into a copy, which lived beside it for as
    long as Redis ran the call (a diverse day's batches: ~10 MB for 0.4 s and more).
    `sent`: the visitor hashes earlier batches applied, left out of this one (noted in
    it: its commit() once this call is applied)."""
    key_list: list[str] = []
    index: dict[str, int] = {}

    def k(name: str) -> int:
        if name not in index:
            key_list.append(name)
            index[name] = len(key_list)
        return index[name]

    ttl = config.ttl
    marker = 0
    if marker_site is not None and batch_id is not None:
        marker = k(keys.batch_marker(marker_site, batch_id))
    ops = _Ops(marker)
    # A line is in one bucket of each granularity: the finest buckets' totals, summed per
    # site, are what it adds to the site's monotonic totals, in this same atomic call.
    lifetime: dict[str, Counter[str]] = {}
    for (site, gran, label), counts in delta.totals.items():
        fields = _counters(counts)
        if fields:
            ops.append(["h", k(keys.totals(site, gran, label)), ttl[gran], fields])
            if gran == FINEST:
                lifetime.setdefault(site, Counter()).update(counts)
    for site, counts in lifetime.items():
        ops.append(["h", k(keys.lifetime(site)), 0, _counters(counts)])  # ttl 0: kept
    for mkey, counts in delta.members.items():
        site, dim, gran, label = mkey
        # Members once, hits, bytes and durations in lists beside them: path members are
        # most of the payload, and would be written thrice as the keys of three objects.
        names = list(counts)
        data: list[Any] = [config.max_members, names, list(counts.values())]
        for side, key_of in (
            (delta.member_bytes, keys.member_bytes),
            (delta.member_durations, keys.member_durations),
        ):
            sums = side.get(mkey)
            if sums:
                skey = k(key_of(site, dim, gran, label))
                # A sorted set's score is a double anyway: sums past 2^53 are not exact
                # there (max() first: one pass in C, the clamp only when it is needed).
                values = list(map(sums.get, names, repeat(0)))
                if values and max(values) > LUA_MAX:
                    values = [min(n, LUA_MAX) for n in values]
                data += [skey, values]
        ops.append(["z", k(keys.members(site, dim, gran, label)), ttl[gran], data])
    for op in _visitor_ops(delta, config, k, sent):
        ops.append(op)
    for op in _section_ops(delta, config, k, sent):
        ops.append(op)
    longest = max(ttl.values())
    for (site, event, gran, label), hashes in delta.events.items():
        # The numbering lives as long as the longest bucket past its last write.
        numbering = [k(keys.visitor_ids(site)), k(keys.visitor_hashes(site)), longest]
        data = [*numbering, config.max_event_visitors, sorted(hashes)]
        ops.append(["e", k(keys.event_set(site, event, gran, label)), ttl[gran], data])
    for site, items in delta.recent.items():
        ops.append(
            ["l", k(keys.recent(site)), longest, [config.recent_size, items[-config.recent_size :]]]
        )
    for site, items in delta.samples.items():
        ops.append(["l", k(keys.malformed_sample(site)), longest, [20, items[-20:]]])
    sites = sorted(delta.sites())
    if sites and list_sites:
        ops.append(["a", k(keys.SITES), 0, sites])
    for name, value in (extra or {}).items():
        ops.append(["s", k(name), 0, value])
    return key_list, ops.payload()


class _Ops:
    """apply.lua's ops, each made JSON as it is added, and the call's payload of them.
    json.dumps of the whole call held a str per token (each hash, each name) until it
    joined them, and the ops' lists beside: ~4 times a diverse day's payload at once; an
    op at a time, then one join, holds about twice it."""

    def __init__(self, marker: int):
        self.pieces = [b'{"m":%d,"mt":%d,"ops":[' % (marker, MARKER_TTL)]

    def append(self, op: list[Any]) -> None:
        if len(self.pieces) > 1:
            self.pieces.append(b",")
        # As json writes it, in bytes at once (the C twin: no str made and then encoded)
        self.pieces.append(json_compact(op))

    def payload(self) -> bytes:
        """The call's JSON, as json.dumps({"m", "mt", "ops"}) writes it."""
        self.pieces.append(b"]}")
        return b"".join(self.pieces)


def _new_hashes(sent: SentVisitors | None, key: str, hashes: set[str]) -> list[str]:
    """The hashes to send to `key`: all of them, or those it does not hold yet."""
    return list(hashes) if sent is None else sent.new_hashes(key, hashes)


def _visitor_ops(
    delta: Delta, config: Config, k: Callable[[str], int], sent: SentVisitors | None
) -> list[list[Any]]:
    """apply.lua's operations for the site's visitors: a list of hashes sent once for
    every bucket of its site that gets the same list (its hour and day are copies of the
    same minute sets, in the same order: a third of the site's hashes in the payload).
    Each key gets the same PFADDs in the same order as with an operation each."""
    ops: list[list[Any]] = []
    ttl = config.ttl
    by_site: dict[str, list[list[Any]]] = {}  # site -> its operations
    for (site, gran, label), hashes in delta.visitors.items():
        name = keys.visitors(site, gran, label)
        key = k(name)
        listed = _new_hashes(sent, name, hashes)
        alike = by_site.setdefault(site, [])
        for op in alike:
            if op[3] == listed:  # list == compares the lengths first
                if len(op) == 4:
                    op.append([])
                op[4] += (key, ttl[gran])
                break
        else:
            alike.append(["p", key, ttl[gran], listed])
            ops.append(alike[-1])
    return ops


def _section_ops(
    delta: Delta, config: Config, k: Callable[[str], int], sent: SentVisitors | None
) -> list[list[Any]]:
    """apply.lua's operations for the sections' visitors: a list of hashes sent once for
    every bucket of its section that gets the same list (a batch within one hour gives a
    section's hour and day sets the same visitors in the same order: a third of the
    payload's visitor hashes at depth 1, each encoded here and decoded by Redis' cjson;
    a page of one segment, `/about`, is the same section at every depth). Each key gets
    the same PFADDs in the same order as with an operation each: the lists are equal,
    and a bucket's sections keep the delta's order (its first max_members are kept): a
    list joins an earlier operation only if no section of its bucket came after."""
    ops: list[list[Any]] = []
    ttl = config.ttl
    by_section: dict[tuple[str, str], list[tuple[list[str], int]]] = {}  # -> (list, op index)
    last_at: dict[tuple[str, str, str, str], int] = {}  # bucket -> its latest op's index
    for (site, depth, section, gran, label), hashes in delta.sections.items():
        bucket = (site, depth, gran, label)
        kept = k(keys.sections_kept(site, depth, gran, label))
        name = keys.section_visitors(site, depth, gran, label, section)
        sets = k(name)
        listed = _new_hashes(sent, name, hashes)
        alike = by_section.setdefault((site, section), [])  # its name: one for every target
        after = last_at.get(bucket, -1)
        for seen, at in alike:
            if at >= after and seen == listed:
                ops[at][3] += (sets, kept, ttl[gran])
                break
        else:
            at = len(ops)
            ops.append(["q", sets, ttl[gran], [config.max_members, kept, section, listed]])
            alike.append((listed, at))
        last_at[bucket] = at
    return ops


def _counters(counts: Counter[str]) -> dict[str, int | str]:
    """A totals hash's increments for apply.lua: past 2^53 as digits (a Lua number would
    round them)."""
    fields: dict[str, int | str] = {f: int(n) for f, n in counts.items() if n}
    for name, n in fields.items():
        if isinstance(n, int) and n > LUA_MAX:
            fields[name] = str(n)
    return fields


@dataclass
class Batch:
    """A frozen delta with the id that makes its application idempotent."""

    delta: Delta
    extra: dict[str, str] = field(default_factory=dict)
    batch_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_line(self) -> str:
        """The spool's line: the delta as objects in it, not as a string of JSON (which
        held the JSON twice while written, and twice again while read back)."""
        return self.to_bytes().decode("ascii")

    def to_bytes(self, more: bool = False) -> bytes:
        """to_line()'s line as the spool writes it (ASCII: json escapes the rest), made
        as bytes at once (sums.json_compact) rather than as a str, then encoded. `more`:
        the line is not the last of a spill that must be replayed whole (LiveSink._spill);
        it follows the id, where more_follows() finds it without decoding the line."""
        line: dict[str, Any] = {"id": self.batch_id}
        if more:
            line["more"] = 1
        line.update(x=self.extra, d=self.delta.to_obj())
        return json_compact(line, newline=True)

    @staticmethod
    def id_of_line(line: bytes) -> str | None:
        """The id of a line to_line wrote, read from the line's start; None when the line
        does not start so (from_line then decides what it is)."""
        start, end = _id_span(line)
        return line[start:end].decode("ascii", "replace") if end > 0 else None

    @staticmethod
    def more_follows(line: bytes) -> bool:
        """Does a spool line say that more lines of its spill follow it (to_bytes' `more`)?"""
        end = _id_span(line)[1]
        return end > 0 and line.startswith(_MORE, end + 1)

    @classmethod
    def from_line(cls, line: str | bytes) -> Batch:
        """The batch of a spool line; ValueError when the line is not one."""
        return cls.from_data(cls.decode(line))

    @staticmethod
    def decode(line: str | bytes) -> Any:
        """A spool line's JSON objects (ValueError when it is not JSON): a replay lets the
        line go before from_data() makes its batch of them."""
        try:
            return json.loads(line)
        except (TypeError, RecursionError) as exc:
            raise ValueError(f"not a batch ({type(exc).__name__})") from None

    @classmethod
    def from_data(cls, data: Any) -> Batch:
        """The batch of a spool line's JSON objects, taken apart as its delta is made (each
        bucket's objects go once converted); ValueError when they are not one."""
        try:
            batch_id, extra, delta = data["id"], data.get("x", {}), data["d"]
        except (TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"not a batch ({type(exc).__name__})") from None
        if not isinstance(batch_id, str) or not 0 < len(batch_id) <= 64:
            raise ValueError("not a batch id")
        if not isinstance(delta, (str, dict)) or not isinstance(extra, dict):
            raise ValueError("not a batch")
        # Only the values a tail stores with its counts (its positions).
        for name, value in extra.items():
            if not name.startswith(f"{keys.PREFIX}:") or not isinstance(value, str):
                raise ValueError("not a batch's extra value")
        if isinstance(delta, str):  # written by a version before the objects
            return cls(Delta.from_json(delta), extra, batch_id)
        return cls(Delta.from_obj(delta), extra, batch_id)

    def essential(self) -> Batch | None:
        """The same batch with its totals and extra only (None if it has neither): what
        is kept of it when the rest cannot be. Same id: it counts once with the batch."""
        if not (self.delta.totals or self.extra):
            return None
        delta = Delta(totals=self.delta.totals, lines=self.delta.lines)
        return Batch(delta, self.extra, self.batch_id)

    @classmethod
    def each_part(
        cls,
        delta: Delta,
        extra: dict[str, str],
        weight: int,
        limit: int = BATCH_MAX_BYTES,
        consume: bool = False,
    ) -> Iterator[Batch]:
        """`delta` (of `weight`) as batches of at most `limit` weight, in order; `extra`
        (a tail's positions) rides in the last, once every count before it is in. Each is
        made when the one before is taken: a spill writes them one by one (`consume`:
        Delta.parts's, the delta emptied as they are made)."""
        if weight <= limit:
            yield cls(delta, extra)
            return
        parts = delta.parts(limit, consume)
        part = next(parts)
        for following in parts:
            yield cls(part)
            part = following
        yield cls(part, extra)


def _id_span(line: bytes) -> tuple[int, int]:
    """Where a spool line's id starts and ends (its closing quote); (0, -1) when the line
    does not start with one."""
    for start in _ID_STARTS:
        if line.startswith(start):
            return len(start), line.find(b'"', len(start), len(start) + 65)
    return 0, -1
