"""What `logcount rollup` (and `report`) counted: the mergeable UnitCounts a counting
process hands over (bounded, see UnitCounts.bound), with its agents named in the parent
(families_of). The counting processes import it: the rows it becomes are built by the
SQL sink (sinks/sql_sink.py), in the parent."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from logcount.count.agents import RAW_AGENT
from logcount.count.delta import Delta
from logcount.count.sketch import EXACT_LIMIT, REGISTERS, PackedSketch
from logcount.sinks.base import Sketches, merge_into
from logcount.sinks.keys import OTHER

# Agent members come from the counting processes unnamed (agents.RAW_AGENT + their text);
# the parent turns each into its family (families_of), so that ua-parser is loaded and
# asked once per distinct agent in the parent, while the counters count.
NAMED_BY_PARENT = ("agent", "bot", "os")  # the dimensions whose members come so marked


@dataclass
class UnitCounts:
    """What a unit (or a merged file) counted, before it becomes store rows. Bounded: see
    bound(); visitors are sketches (a path's exact up to 1,024 hashes, a day's up to 2^20
    packed 8 bytes each, then 1 KiB of registers)."""

    delta: Delta = field(default_factory=Delta)
    path_visitors: Sketches = field(default_factory=dict)
    object_visitors: Sketches = field(default_factory=dict)
    day_visitors: dict[tuple[str, str], PackedSketch] = field(default_factory=dict)
    lines: int = 0
    malformed: int = 0
    # The first and last lines of each unit read (whole lines of its first and last 8 KiB):
    # where a one-shot report finds the first and last time of its files
    edges: list[bytes] = field(default_factory=list)

    def merge(self, other: UnitCounts) -> None:
        self.delta.merge(other.delta)
        for mine, theirs in (
            (self.path_visitors, other.path_visitors),
            (self.object_visitors, other.object_visitors),
            (self.day_visitors, other.day_visitors),
        ):
            for key, sketch in theirs.items():
                merge_into(mine, key, sketch)
        self.lines += other.lines
        self.malformed += other.malformed
        self.edges += other.edges

    def sketch_bytes(self) -> int:
        """Bytes of the visitor sketches: 8 a hash, or their registers."""
        return sum(
            8 * len(sketch.hashes) if sketch.hashes is not None else REGISTERS
            for table in (self.path_visitors, self.object_visitors, self.day_visitors)
            for sketch in table.values()
        )

    def add_visitors(
        self,
        day: Mapping[tuple[str, str, str], Collection[int]],
        path: Mapping[tuple[str, str, str], Collection[int]],
        obj: Mapping[tuple[str, str, str], Collection[int]],
    ) -> None:
        """Visitor hashes (classify.visitor_number) of a batch, into the sketches (a hash
        may come more than once)."""
        for (site, _gran, label), hashes in day.items():
            self.day_visitors.setdefault((site, label), PackedSketch()).add_all(hashes)
        for mine, fresh in ((self.path_visitors, path), (self.object_visitors, obj)):
            for key, hashes in fresh.items():
                sketch = mine.get(key)
                if sketch is None:
                    sketch = mine[key] = PackedSketch(EXACT_LIMIT)
                sketch.add_all(hashes)

    def bound(self, keep: int, family: Callable[[str], str] | None = None) -> None:
        """At most `keep` members per site, day and dimension: the most hit (ties by name)
        keep their rows, the others fold into OTHER (hits, bytes, visitors), so every
        dimension still adds up to the totals. Agents are named (`family`) before they
        are folded, so that the many spellings of one browser add up first."""
        d = self.delta
        if family is not None and any(
            k[1] in NAMED_BY_PARENT and len(m) > keep for k, m in d.members.items()
        ):
            families_of(d, family)
        for key, members in list(d.members.items()):
            if len(members) > keep:
                self._fold(key, members, keep)

    def _fold(self, key: tuple[str, str, str, str], members: Counter[str], keep: int) -> None:
        site, dim, _gran, label = key
        d = self.delta
        sides = [table.get(key, Counter()) for table in (d.member_bytes, d.member_durations)]
        sketches = {"path": self.path_visitors, "object": self.object_visitors}.get(dim)
        other_hits = members.pop(OTHER, 0)
        other_sums = [side.pop(OTHER, 0) for side in sides]
        kept = Counter(dict(heapq.nsmallest(keep, members.items(), key=_by_hits)))
        other_seen = sketches.pop((site, label, OTHER), None) if sketches is not None else None
        for member, hits in members.items():
            if member in kept:
                continue
            other_hits += hits
            for i, side in enumerate(sides):
                other_sums[i] += side.pop(member, 0)
            if sketches is not None:
                seen = sketches.pop((site, label, member), None)
                if seen is not None and other_seen is None:
                    other_seen = seen
                elif seen is not None and other_seen is not None:
                    other_seen.merge(seen)
        kept[OTHER] = other_hits
        d.members[key] = kept
        for table, side, other in zip(
            (d.member_bytes, d.member_durations), sides, other_sums, strict=True
        ):
            table[key] = Counter({m: side[m] for m in kept if side.get(m)})
            if other:
                table[key][OTHER] = other
        if sketches is not None and other_seen is not None:
            sketches[site, label, OTHER] = other_seen


def _by_hits(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def families_of(
    delta: Delta,
    family: Callable[[str], str] | None = None,
    system: Callable[[str], str] | None = None,
) -> None:
    """Name the agent, bot and os members a DayClassifier left unnamed (in place); agents
    of one family, bots of one name, systems of one name, add up. `family` and `system`:
    agent_family and os_family, or caches of them."""
    from logcount.count.agents import agent_family, bot_name, os_family

    family = family or agent_family
    name_of = {
        "agent": family,
        "bot": lambda text: bot_name(text, family),
        "os": system or os_family,
    }
    assert set(name_of) == set(NAMED_BY_PARENT)
    for table in (delta.members, delta.member_bytes, delta.member_durations):
        for key, members in table.items():
            resolve = name_of.get(key[1])
            if resolve is None or not any(m.startswith(RAW_AGENT) for m in members):
                continue
            named: Counter[str] = Counter()
            for member, n in members.items():
                named[resolve(member[1:]) if member.startswith(RAW_AGENT) else member] += n
            table[key] = named
