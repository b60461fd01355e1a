"""The C scanner's interface (logcount/count/_scan.c) in Python, over the format's chunk regex.

LineCounter chooses one scanner at start: the C one, or this one where the C scanner is
not built, is told off (LOGCOUNT_PURE_PYTHON=1) or cannot read the format (no plan). Both
take the same field indexes, count into the same tables, and answer feed(), count_row(),
take(), pending() and rebind() alike, so nothing above them asks which one counts.

One `findall` of the chunk regex over a whole chunk, and C-level Counter and set updates
over projections of the matched tuples: no Python code runs per line, but for a bot or
ignored decision not seen before and for the sizes and durations summed per key.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Callable, Sequence
from itertools import compress, repeat
from operator import is_, itemgetter, not_, or_
from typing import Any

from logcount.count.classify import visitor_numbers_py
from logcount.timing import CAP_US, bin_of

# Decisions (bot, ignored) kept per distinct agent or request: at most this many, holding
# at most this many bytes of keys (as the C scanner's CACHE_LIMIT and CACHE_BYTES).
DECISIONS_KEPT = 200_000
DECISION_BYTES = 16 << 20

Row = tuple[bytes, ...]


def numbered_py(
    keys: set[Row],
    place: Sequence[int],
    client: int,
    agent: int,
    key: bytes,
    skip_of: Callable[[bytes], object] | None,
) -> dict[Row, list[int]]:
    """Visitor keys as {place: [visitor numbers]} (the C scanner's numbered_visitors): a
    key's place is its items at `place`, its visitor classify.visitor_number(key) of its
    items at client and agent (b"" for an index < 0), numbered once per pair; a key whose
    agent skip_of calls a bot not counted (asked once per agent) is left out."""
    number_of = visitor_numbers_py(key, 0, 1, {}, skip_of)
    numbers: dict[tuple[bytes, bytes], int | None] = {}
    out: dict[Row, list[int]] = {}
    for row in keys:
        who = (row[client] if client >= 0 else b"", row[agent] if agent >= 0 else b"")
        n = numbers.get(who, -1)
        if n == -1:
            n = numbers[who] = number_of(who)
        if n is not None:
            out.setdefault(tuple([row[i] for i in place]), []).append(n)
    return out


def getter(indexes: Sequence[int]) -> Callable[[Row], Row]:
    if not indexes:
        return lambda t: ()
    if len(indexes) == 1:
        i = indexes[0]
        return lambda t: (t[i],)
    return itemgetter(*indexes)


class RegexScanner:
    """Counts the rows of a chunk regex (its last group: a line it did not parse)."""

    def __init__(
        self,
        lines: re.Pattern[bytes],
        ctx: Sequence[int],
        hits: Sequence[int],
        agents: Sequence[int] | None,
        referrers: Sequence[int] | None,
        visitors: Sequence[int] | None,
        agent: int,
        target: int,
        duration: int,
        size: int,
        clients: Sequence[int] | None,
        recent_size: int,
        decide_bot: Callable[[bytes], bool],
        decide_ignore: Callable[[bytes], bool],
        duration_scale: int = 1,
    ):
        self.lines_rgx = lines
        self.bad = itemgetter(lines.groups - 1)
        self.ctx = getter(ctx)
        self.key = getter(hits)
        self.agent_key = getter(agents) if agents is not None else None
        self.ref = getter(referrers) if referrers is not None else None
        self.vis = getter(visitors) if visitors is not None else None
        self.client = getter(clients) if clients is not None else None
        self.agent = itemgetter(agent) if agent >= 0 else None
        self.target = itemgetter(target) if target >= 0 else None
        self.size = itemgetter(size) if size >= 0 else None
        self.duration = duration if duration >= 0 else None
        self.duration_scale = duration_scale
        # a bin's key part, as the C scanner writes it: its number as text
        self.bin_text = [str(b).encode() for b in range(bin_of(CAP_US) + 1)]
        self.recent_size = recent_size
        self.decide_bot, self.decide_ignore = decide_bot, decide_ignore
        self.count_bots, self.ignore = False, False
        self.numbering: tuple[Any, ...] | None = None  # number_visitors()'s arguments
        self.forget()
        self._fresh()

    def _fresh(self) -> None:
        self.lines = 0
        self.fed = 0  # bytes fed since the last take(): an upper bound of the keys' bytes
        self.hits: Counter[Row] = Counter()
        self.sizes: dict[Row, int] = {}
        self.agents: Counter[Row] = Counter()
        self.referrers: Counter[Row] = Counter()
        self.clients: Counter[Row] = Counter()
        self.visitors: set[Row] = set()
        self.bots: Counter[Row] = Counter()
        self.ignored: Counter[Row] = Counter()
        self.durations: dict[Row, int] = {}  # hit key -> the sum of its durations (us)
        self.timings: Counter[Row] = Counter()  # (context..., bin) -> lines
        self.recent: deque[Row] = deque(maxlen=self.recent_size)

    def rebind(self, count_bots: bool, ignore: bool) -> None:
        self.count_bots, self.ignore = count_bots, ignore
        self.forget()

    def forget(self) -> None:
        """Drop the decisions made so far (a new classifier decides anew)."""
        self.bot_flags: dict[bytes, bool] = {}
        self.ignore_flags: dict[bytes, bool] = {}
        self.flag_bytes = {id(self.bot_flags): 0, id(self.ignore_flags): 0}

    def pending(self) -> tuple[int, int, int]:
        keys = len(self.hits) + len(self.visitors) + len(self.referrers) + len(self.clients)
        return self.lines, keys, self.fed

    def feed(self, chunk: bytes) -> list[bytes]:
        """Count the lines of `chunk` the regex parses; the others are returned."""
        self.fed += len(chunk)
        found = self.lines_rgx.findall(chunk)
        bad = list(map(self.bad, found))
        if any(bad):
            found = list(compress(found, map(not_, bad)))
        self._count(found)
        return list(filter(None, bad))

    def count_row(self, row: Row) -> None:
        """A line read otherwise (apachelogs' regex), as a row of the chunk regex."""
        self._count([row])

    def number_visitors(
        self,
        key: bytes | None,
        place: Sequence[int],
        client: int,
        agent: int,
        skip_of: Callable[[bytes], object] | None,
    ) -> None:
        """take() hands the visitors over numbered by place (numbered_py); key None: as
        key tuples again."""
        if self.vis is None and key is not None:
            raise ValueError("bad visitor numbering (no visitors counted?)")
        self.numbering = None if key is None else (tuple(place), client, agent, key, skip_of)

    def take(self, cls: Any, with_recent: bool) -> tuple[Any, ...]:
        """What was counted (C's order), then start afresh. The tables are handed over
        as they are: Counters, which is the `cls` LineCounter asks the C scanner for."""
        numbered: dict[Row, list[int]] = {}
        if self.numbering is not None:
            numbered = numbered_py(self.visitors, *self.numbering)
            self.visitors = set()
        out = (
            self.lines,
            self.hits,
            self.agents,
            self.referrers,
            self.visitors,
            self.bots,
            self.ignored,
            self.timings,
            self.sizes,
            self.clients,
            list(self.recent) if with_recent else [],
            self.durations,
            numbered,
        )
        self._fresh()
        return out

    def _flags(self, values: list[bytes], cache: dict[bytes, bool], decide: Any) -> list[bool]:
        flags = list(map(cache.get, values))
        if None in flags:
            new = set(compress(values, map(is_, flags, repeat(None))))
            for value in new:
                cache[value] = decide(value)
            # Bounded in entries and in bytes (8 KB agents would hold 1.6 GB at 200,000):
            # the byte count is that of the keys added since the last clear.
            added = self.flag_bytes[id(cache)] + sum(map(len, new))
            self.flag_bytes[id(cache)] = added
            if len(cache) > DECISIONS_KEPT or added > DECISION_BYTES:
                cache.clear()
                self.flag_bytes[id(cache)] = 0
                return [decide(v) for v in values]
            flags = list(map(cache.__getitem__, values))
        return flags  # type: ignore[return-value]

    def _excluded(self, rows: list[Row]) -> list[bool] | None:
        """Per line: not a hit (a bot unless count_bots, or an ignored extension)."""
        excluded = None
        if self.agent is not None and self.agent_key is not None:
            bots = self._flags(list(map(self.agent, rows)), self.bot_flags, self.decide_bot)
            if any(bots):
                self.bots.update(map(self.agent_key, compress(rows, bots)))
                if not self.count_bots:
                    excluded = bots
        if self.ignore and self.target is not None:
            ignored = self._flags(
                list(map(self.target, rows)), self.ignore_flags, self.decide_ignore
            )
            if any(ignored):
                if excluded is not None:
                    ignored = list(map(bool.__gt__, ignored, excluded))  # ignored, no bot
                    excluded = list(map(or_, excluded, ignored))
                else:
                    excluded = ignored
                self.ignored.update(map(self.ctx, compress(rows, ignored)))
        return excluded

    def _count(self, rows: list[Row]) -> None:
        if not rows:
            return
        self.lines += len(rows)
        self.recent.extend(rows[-self.recent_size :] if self.recent_size else ())
        excluded = self._excluded(rows)
        hits = list(compress(rows, map(not_, excluded))) if excluded else rows
        self.hits.update(map(self.key, hits))
        if self.size is not None:
            sizes = self.sizes
            for key, size in zip(map(self.key, hits), map(self.size, hits), strict=True):
                if size.isdigit() and size != b"0":
                    sizes[key] = sizes.get(key, 0) + int(size)
        if self.agent_key is not None:
            self.agents.update(map(self.agent_key, hits))
        if self.ref is not None:
            self.referrers.update(map(self.ref, hits))
        if self.client is not None:
            self.clients.update(map(self.client, hits))
        if self.vis is not None:
            self.visitors.update(map(self.vis, hits))
        if self.duration is not None:
            self._times(hits)

    def _times(self, hits: list[Row]) -> None:
        """Per hit key the sum of its durations, per context and bin the lines (a
        duration capped at CAP_US; '-' is no duration)."""
        d, scale, durations = self.duration, self.duration_scale, self.durations
        timings: dict[Row, int] = {}
        text = self.bin_text
        for key, ctx, row in zip(map(self.key, hits), map(self.ctx, hits), hits, strict=True):
            raw = row[d]  # type: ignore[index]
            if not raw.isdigit():
                raw = raw.replace(b".", b"", 1)  # nginx's seconds: milliseconds (MILLIS)
                if not raw.isdigit():
                    continue
            us = min(int(raw) * scale, CAP_US)
            if us:  # as the C scanner: a key of 0 us has no sum
                durations[key] = durations.get(key, 0) + us
            tkey = (*ctx, text[bin_of(us)])
            timings[tkey] = timings.get(tkey, 0) + 1
        self.timings.update(timings)
