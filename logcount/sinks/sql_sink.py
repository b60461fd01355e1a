"""The SQL sink: the counts of one whole file become store rows, which replace what that
file stored before, in one transaction (store.Store.replace_source): a re-run, or a run
after a crash, leaves the same numbers. The rows are bounded as the store is: `cap`
members per site, day and dimension (the most hit, ties by name), the others one
`(other)` row; members fitted to the store's columns.

`logcount rollup` (sources/rollup.py) opens it once the counting processes are forked,
and hands it each file once all its parts are counted (sinks/base.py: the protocol).
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import date, datetime

from logcount.config import Config
from logcount.count.sketch import EXACT_LIMIT, PackedSketch
from logcount.sinks.base import DayCounts, SourceFile, merge_into
from logcount.sinks.store import Store
from logcount.sinks.store_schema import KEY_LENGTH, MEMBER_DIMS, TOTAL_COLUMNS, SourceFacts
from logcount.timing import histogram_of


class StoreSink:
    """The sink of `logcount rollup`: a file's counts at a time, into the store."""

    def __init__(self, store: Store, site: str, cap: int):
        self.store = store
        self.site = site  # the configured site: a malformed line's (it has no %v)
        self.cap = cap
        self.begun: dict[tuple[str, str], float] = {}

    @classmethod
    def open(cls, config: Config, host: str, paths: list[str]) -> StoreSink:
        """The store of `config`, with these files of `host` marked begun (until their
        rows commit, the store shows the run over them as unfinished)."""
        sink = cls(Store.from_config(config), config.site, config.store_cap())
        for path in paths:
            sink.store.mark_started(host, path)
            sink.begun[host, path] = time.time()
        return sink

    def submit(self, counts: DayCounts, origin: SourceFile) -> None:
        """Replace `origin`'s rows with these counts (bounded first, in place); StoreError
        when the store cannot be written (nothing of the file is, then)."""
        started = self.begun.get((origin.host, origin.path), time.time())
        self.store.replace_source(facts_of(origin, counts, self.site, started, self.cap))

    def flush(self, force: bool = False) -> bool:
        return True  # each file was written by its submit, in its own transaction

    def close(self) -> bool:
        self.store.dispose()
        return True


def _day(label: str) -> date:
    return date(int(label[:4]), int(label[4:6]), int(label[6:8]))


INT64_MAX = (1 << 63) - 1  # SQL's BIGINT; sums of numbers each below 2^53 can pass it


def _saturated(value: int) -> int:
    """A stored count or sum, saturated at the largest BIGINT (the writer never fails)."""
    return min(int(value), INT64_MAX)


def _text(value: str) -> str:
    return value.replace("\x00", "\\x00")  # PostgreSQL text cannot hold NUL


def malformed_day(origin: SourceFile, counts: DayCounts) -> date:
    """A line that does not parse has no time: the file's own day when the template gives
    it, else the day most of the file's lines belong to, else the file's modification day."""
    if origin.day is not None:
        return origin.day
    per_day: Counter[str] = Counter()
    for (_site, _gran, label), c in counts.delta.totals.items():
        per_day[label] += c["hits"] + c["bots"] + c["ignored"]
    if per_day:
        return _day(max(sorted(per_day), key=per_day.__getitem__))
    return datetime.fromtimestamp(origin.mtime).date()


def facts_of(
    origin: SourceFile, counts: DayCounts, site: str, started: float, cap: int = 10_000
) -> SourceFacts:
    """The rows of one file. `cap` members per site, day and dimension keep their rows (the
    most hit, ties by name); the others are one `(other)` row (see UnitCounts.bound)."""
    counts.bound(cap)  # the store's bound: `cap` members per site, day and dimension
    _fit_members(counts)
    d = counts.delta
    facts = SourceFacts(
        host=origin.host,
        path=origin.path,
        size=origin.size,
        mtime=origin.mtime,
        lines=counts.lines + counts.malformed,
        malformed=counts.malformed,
        started=started,
    )
    totals = {(s, label): Counter(c) for (s, _g, label), c in d.totals.items()}
    if counts.malformed:
        key = (site, malformed_day(origin, counts).strftime("%Y%m%d"))
        totals.setdefault(key, Counter())["malformed"] += counts.malformed
    for (s, label), c in totals.items():
        day = _day(label)
        facts.totals.append(
            {
                "site": s,
                "day": day,
                "own_day": origin.day in (None, day),
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


def _fit_members(counts: DayCounts) -> None:
    """Members as a store column holds them: no NUL (PostgreSQL's text has none), at most
    KEY_LENGTH characters (a VARCHAR refuses more); members that become one add up."""
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
                merge_into(sketches, (site, label, text), seen)
        members.clear()
        members.update(fitted)
        d.member_bytes[key], d.member_durations[key] = fitted_sums
