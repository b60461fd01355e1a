"""From what `logcount rollup` counted to store rows: the mergeable UnitCounts a counting
process hands over (bounded, see UnitCounts.bound), and the rows of one source file
(facts_of). The counting processes import it too: the store (SQLAlchemy) is imported only
where rows are built, in the parent."""

from __future__ import annotations

import heapq
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from logcount.count.agents import RAW_AGENT
from logcount.count.delta import Delta
from logcount.count.sketch import EXACT_LIMIT, PackedSketch
from logcount.sinks.keys import OTHER
from logcount.sources.rollup_files import Input, source_name

if TYPE_CHECKING:
    from logcount.sinks.store import SourceFacts

# Agent members come from the counting processes unnamed (agents.RAW_AGENT + their text);
# the parent turns each into its family (families_of), so that ua-parser is loaded and
# asked once per distinct agent in the parent, while the counters count.
NAMED_BY_PARENT = ("agent", "bot", "os")  # the dimensions whose members come so marked


Sketches = dict[tuple[str, str, str], PackedSketch]  # (site, day, member) -> visitors


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
                _merge_into(mine, key, sketch)
        self.lines += other.lines
        self.malformed += other.malformed
        self.edges += other.edges

    def add_visitors(
        self,
        day: dict[tuple[str, str, str], set[int]],
        path: dict[tuple[str, str, str], set[int]],
        obj: dict[tuple[str, str, str], set[int]],
    ) -> None:
        """Visitor hashes (classify.visitor_number) of a batch, into the sketches."""
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


def _merge_into(table: dict[Any, PackedSketch], key: Any, sketch: PackedSketch) -> None:
    found = table.get(key)
    if found is None:
        table[key] = sketch
    else:
        found.merge(sketch)


def families_of(delta: Delta, family: Callable[[str], str] | None = None) -> None:
    """Name the agent, bot and os members a DayClassifier left unnamed (in place); agents
    of one family, bots of one name, systems of one name, add up."""
    from logcount.count.agents import agent_family, bot_name, os_family

    family = family or agent_family
    name_of = {"agent": family, "bot": lambda text: bot_name(text, family), "os": os_family}
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


# --- rows ---------------------------------------------------------------------------


def _day(label: str) -> date:
    return date(int(label[:4]), int(label[4:6]), int(label[6:8]))


INT64_MAX = (1 << 63) - 1  # SQL's BIGINT; sums of numbers each below 2^53 can pass it


def _saturated(value: int) -> int:
    """A stored count or sum, saturated at the largest BIGINT (the writer never fails)."""
    return min(int(value), INT64_MAX)


def _text(value: str) -> str:
    return value.replace("\x00", "\\x00")  # PostgreSQL text cannot hold NUL


def malformed_day(inp: Input, counts: UnitCounts, mtime: float) -> date:
    """A line that does not parse has no time: the file's own day when the template gives
    it, else the day most of the file's lines belong to, else the file's modification day."""
    if inp.day is not None:
        return inp.day
    per_day: Counter[str] = Counter()
    for (_site, _gran, label), c in counts.delta.totals.items():
        per_day[label] += c["hits"] + c["bots"] + c["ignored"]
    if per_day:
        return _day(max(sorted(per_day), key=per_day.__getitem__))
    return datetime.fromtimestamp(mtime).date()


def facts_of(
    inp: Input,
    counts: UnitCounts,
    host: str,
    site: str,
    started: float,
    stat: os.stat_result,
    cap: int = 10_000,
) -> SourceFacts:
    """The rows of one file. `cap` members per site, day and dimension keep their rows (the
    most hit, ties by name); the others are one `(other)` row (see UnitCounts.bound)."""
    from logcount.sinks.store import MEMBER_DIMS, TOTAL_COLUMNS, SourceFacts
    from logcount.timing import histogram_of

    counts.bound(cap)  # the store's bound: `cap` members per site, day and dimension
    _fit_members(counts)
    d = counts.delta
    facts = SourceFacts(
        host=host,
        path=source_name(inp.path),
        size=stat.st_size,
        mtime=stat.st_mtime,
        lines=counts.lines + counts.malformed,
        malformed=counts.malformed,
        started=started,
    )
    totals = {(s, label): Counter(c) for (s, _g, label), c in d.totals.items()}
    if counts.malformed:
        key = (site, malformed_day(inp, counts, stat.st_mtime).strftime("%Y%m%d"))
        totals.setdefault(key, Counter())["malformed"] += counts.malformed
    for (s, label), c in totals.items():
        day = _day(label)
        facts.totals.append(
            {
                "site": s,
                "day": day,
                "own_day": inp.day in (None, day),
                **{name: _saturated(c.get(name, 0)) for name in TOTAL_COLUMNS},
            }
        )
        for b, n in sorted(histogram_of(c).items()):
            facts.timings.append({"site": s, "day": day, "bin": b, "hits": _saturated(n)})
    for (s, dim, _g, label), c in d.members.items():
        day = _day(label)
        sizes = d.member_bytes.get((s, dim, _g, label), Counter())
        durations = d.member_durations.get((s, dim, _g, label), Counter())
        for member, hits in c.items():
            row = {
                "site": s,
                "day": day,
                "hits": hits,
                "bytes": _saturated(sizes.get(member, 0)),
                "duration_us": _saturated(durations.get(member, 0)),
            }
            if dim in ("path", "object"):
                found = counts.path_visitors if dim == "path" else counts.object_visitors
                seen = found.get((s, label, member)) or PackedSketch(EXACT_LIMIT)
                row.update(
                    {
                        dim: _text(member),
                        "visitors": seen.count(),
                        "visitor_set": seen.to_bytes(),
                    }
                )
                (facts.paths if dim == "path" else facts.objects).append(row)
            elif dim in MEMBER_DIMS:
                facts.members.append({**row, "dim": dim, "member": _text(member)})
    for (s, label), sketch in counts.day_visitors.items():
        facts.visitor_sets.append({"site": s, "day": _day(label), "visitor_set": sketch.to_bytes()})
    for (s, event, _g, label), hashes in d.events.items():
        facts.events.append({"site": s, "day": _day(label), "event": event, "hashes": hashes})
    return facts


def _fit_members(counts: UnitCounts) -> None:
    """Members as a store column holds them: no NUL (PostgreSQL's text has none), at most
    KEY_LENGTH characters (a VARCHAR refuses more); members that become one add up."""
    from logcount.sinks.store import KEY_LENGTH

    d = counts.delta
    for key, members in d.members.items():
        if all(len(m) <= KEY_LENGTH and "\x00" not in m for m in members):
            continue
        site, dim, _gran, label = key
        sides = [table.get(key, Counter()) for table in (d.member_bytes, d.member_durations)]
        sketches = {"path": counts.path_visitors, "object": counts.object_visitors}.get(dim)
        fitted: Counter[str] = Counter()
        fitted_sums: list[Counter[str]] = [Counter(), Counter()]
        for member, hits in members.items():
            text = _text(member)[:KEY_LENGTH]
            fitted[text] += hits
            for side, into in zip(sides, fitted_sums, strict=True):
                if side.get(member):
                    into[text] += side[member]
            seen = sketches.pop((site, label, member), None) if sketches is not None else None
            if seen is not None and sketches is not None:
                _merge_into(sketches, (site, label, text), seen)
        members.clear()
        members.update(fitted)
        d.member_bytes[key], d.member_durations[key] = fitted_sums
