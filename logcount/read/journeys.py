"""Who did what: `logcount visitors EXPR`, distinct visitors of a set expression of events
(`login & song_played`, `signup - paid`, `(a | b) & c`), per bucket or for a whole window.

Live, each event's bucket is a Redis bitmap over the site's visitor numbering (one bit
per visitor number, see apply.lua): the bitmaps are read whole (GET, one pipeline) and
combined here as Python integers, exactly; a window's total is the expression over each
event's union across the window's buckets. Operators, loosest first: `|` (union), `&`
(intersection), `-` (difference), as Python's sets bind them; parentheses group.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from logcount.dimensions import GRANULARITIES
from logcount.errors import LogcountError
from logcount.read.report import Window, bucket_labels, label_day, reading_redis
from logcount.sinks import keys

PER = ("hour", "day", "week")
_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[&|()-]))")


class ExpressionError(LogcountError):
    exit_code = 2  # a usage error, like click's


# --- expressions ------------------------------------------------------------------------


@dataclass(frozen=True)
class Expr:
    op: str  # "event", "&", "|", "-"
    name: str = ""
    left: Expr | None = None
    right: Expr | None = None

    def events(self) -> list[str]:
        if self.op == "event":
            return [self.name]
        assert self.left is not None and self.right is not None
        return [*self.left.events(), *self.right.events()]

    def value(self, of: Callable[[str], Any]) -> Any:
        """The expression over sets (or integers as bitmaps) given by `of(event)`."""
        if self.op == "event":
            return of(self.name)
        assert self.left is not None and self.right is not None
        a, b = self.left.value(of), self.right.value(of)
        if self.op == "&":
            return a & b
        if self.op == "|":
            return a | b
        return a & ~b if isinstance(a, int) else a - b

    def __str__(self) -> str:
        if self.op == "event":
            return self.name
        return f"({self.left} {self.op} {self.right})"


_LEVELS = ("|", "&", "-")  # loosest first


def parse_expression(text: str, known: tuple[str, ...]) -> Expr:
    """`login & (song | video) - banned` over the configured event names."""
    tokens = _tokens(text)
    pos = 0

    def level(n: int) -> Expr:
        nonlocal pos
        if n == len(_LEVELS):
            return atom()
        left = level(n + 1)
        while pos < len(tokens) and tokens[pos] == ("op", _LEVELS[n]):
            pos += 1
            left = Expr(_LEVELS[n], left=left, right=level(n + 1))
        return left

    def atom() -> Expr:
        nonlocal pos
        if pos >= len(tokens):
            raise ExpressionError(f"expression {text!r} ends where an event was expected")
        kind, value = tokens[pos]
        pos += 1
        if kind == "name":
            if value not in known:
                names = ", ".join(known) or "none configured: see [[event]]"
                raise ExpressionError(f"unknown event {value!r} (events: {names})")
            return Expr("event", value)
        if value == "(":
            inner = level(0)
            if pos >= len(tokens) or tokens[pos] != ("op", ")"):
                raise ExpressionError(f"expression {text!r}: a '(' is not closed")
            pos += 1
            return inner
        raise ExpressionError(f"expression {text!r}: {value!r} where an event was expected")

    expr = level(0)
    if pos != len(tokens):
        raise ExpressionError(f"expression {text!r}: unexpected {tokens[pos][1]!r}")
    return expr


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    if len(text) > 1000:
        raise ExpressionError("expression longer than 1,000 characters")
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ExpressionError(f"expression {text!r}: cannot read {text[pos:].strip()[:20]!r}")
        kind = "name" if m.group("name") else "op"
        out.append((kind, m.group(kind)))
        pos = m.end()
    if not out:
        raise ExpressionError("empty expression: name events, e.g. 'login & song_played'")
    return out


# --- live bitmaps -------------------------------------------------------------------------


def bitmap(data: bytes | None, size: int) -> int:
    """A Redis bitmap (bit N: byte N // 8, most significant bit first) as an integer whose
    set bits are the same for every bitmap padded to `size` bytes."""
    return int.from_bytes((data or b"").ljust(size, b"\0"), "big")


def read_bitmaps(
    client: Any, site: str, events: list[str], gran: str, labels: tuple[str, ...]
) -> tuple[dict[tuple[str, str], int], int]:
    """Each (event, label)'s bitmap, as integers comparable with each other, and the
    width in bytes they were padded to."""
    pairs = [(e, lbl) for e in events for lbl in labels]
    with reading_redis(client):
        pipe = client.pipeline(transaction=False)
        for event, label in pairs:
            pipe.get(keys.event_set(site, event, gran, label))
        replies = pipe.execute()
    size = max((len(r) for r in replies if r), default=0)
    return {pair: bitmap(r, size) for pair, r in zip(pairs, replies, strict=True)}, size


def count(value: Any) -> int:
    return value.bit_count() if isinstance(value, int) else len(value)


# --- the report -----------------------------------------------------------------------


def per_buckets(
    window: Window, per: str | None
) -> tuple[str, list[tuple[datetime, tuple[str, ...]]]]:
    """(granularity read, [(start, its labels), ...]): the window's hour or day buckets,
    grouped by `per` (a week: Monday to Sunday), each group with the start of its first
    bucket. Without `per`, one group: the window."""
    gran = "day" if window.gran == "day" and per != "hour" else "hour"
    start = window.start.replace(minute=0, second=0, microsecond=0)
    if gran == "day":
        start = start.replace(hour=0)
    end = window.end
    labels = bucket_labels(start, end if end > start else start + timedelta(seconds=1), gran)
    step = GRANULARITIES[gran].step
    starts = [start + i * step for i in range(len(labels))]
    if per is None:
        return gran, [(start, labels)]
    # A group starts at its first bucket: a week cut by the window's start (a window from
    # a Wednesday) starts that Wednesday, not on a Monday outside the window.
    groups: dict[datetime, tuple[datetime, list[str]]] = {}
    for when, label in zip(starts, labels, strict=True):
        groups.setdefault(_period_start(when, per), (when, []))[1].append(label)
    return gran, [(first, tuple(lbls)) for first, lbls in groups.values()]


def _period_start(when: datetime, per: str) -> datetime:
    """The start of the hour, day or week (from Monday) `when` is in."""
    if per == "hour":
        return when
    day = when.replace(hour=0)
    return day if per == "day" else day - timedelta(days=day.weekday())


class WindowEventSets:
    """Each (event, bucket)'s visitors for a window: live bitmaps from Redis (as integers),
    whole days before today from the store (roaring bitmaps) where it has them. The two
    number visitors each their own way: a group of buckets that takes from both is
    compared as visitor hashes."""

    def __init__(
        self,
        client: Any,
        store: Any,
        site: str,
        events: list[str],
        gran: str,
        labels: tuple[str, ...],
        today: date,
    ):
        self.client, self.store, self.site = client, store, site
        self.stored: dict[tuple[str, str], Any] = {}
        past = sorted({label_day(lbl) for lbl in labels if label_day(lbl) < today})
        if store is not None and gran == "day" and past:
            from logcount.sinks.event_store import event_bitmaps, event_days

            # a day with a file of its own rolled up (not only the next day's stragglers)
            have = event_days(store, site, past) & store.rolled_days(site, past)
            if have:
                found = event_bitmaps(store, site, sorted(have), events)
                for event in events:
                    for day in have:
                        self.stored[event, day.strftime("%Y%m%d")] = found.get((event, day))
        self.stored_labels = {lbl for _, lbl in self.stored}
        live = tuple(lbl for lbl in labels if lbl not in self.stored_labels)
        self.live, self.width = read_bitmaps(client, site, events, gran, live)
        self._hashes: bytes | None = None

    def source(self) -> str:
        if not self.stored:
            return "live"
        return "both" if self.live else "store"

    def union(self, labels: tuple[str, ...]) -> Callable[[str], Any]:
        """`of(event)`: the event's visitors over `labels`, all in one domain."""
        stored = [lbl for lbl in labels if lbl in self.stored_labels]
        live = [lbl for lbl in labels if lbl not in self.stored_labels]

        def live_of(event: str) -> int:
            out = 0
            for lbl in live:
                out |= self.live[event, lbl]
            return out

        def stored_of(event: str) -> Any:
            from pyroaring import BitMap

            out = BitMap()
            for lbl in stored:
                found = self.stored[event, lbl]
                if found is not None:
                    out |= found
            return out

        if not stored:
            return live_of
        if not live:
            return stored_of

        def mixed(event: str) -> set[str]:
            from logcount.sinks.event_store import hashes_of

            return self.live_hashes(live_of(event)) | hashes_of(
                self.store, self.site, stored_of(event)
            )

        return mixed

    def same_domain(self, values: list[Any]) -> list[Any]:
        """Values of several groups made comparable: as they are when all come from one
        side, else all as visitor hashes."""
        kinds = {type(v) for v in values}
        if len(kinds) <= 1:
            return values
        return [self.hashes(v) for v in values]

    def hashes(self, value: Any) -> set[str]:
        if isinstance(value, int):
            return self.live_hashes(value)
        if isinstance(value, set):
            return value
        from logcount.sinks.event_store import hashes_of

        return hashes_of(self.store, self.site, value)

    def live_hashes(self, bits: int) -> set[str]:
        """The visitor hashes of a live bitmap: its numbers, looked up in the reversed
        numbering (read once)."""
        if not bits:
            return set()
        if self._hashes is None:
            with reading_redis(self.client):
                self._hashes = self.client.get(keys.visitor_hashes(self.site)) or b""
        text = bin(bits)[2:].zfill(self.width * 8)  # bit N of Redis is character N
        table = self._hashes
        return {table[16 * n : 16 * n + 16].decode() for n, c in enumerate(text) if c == "1"}


def build_visitors(
    client: Any,
    store: Any,
    site: str,
    window: Window,
    expr: Expr,
    text: str,
    per: str | None,
    today: date,
) -> dict[str, Any]:
    """`{"expr", "window", "total", "per": [{"start", "visitors"}, ...]}`: the distinct
    visitors of `expr` over the whole window, and in each bucket of `per`."""
    events = sorted(set(expr.events()))
    gran, groups = per_buckets(window, per)
    labels = tuple(lbl for _, lbls in groups for lbl in lbls)
    sets = WindowEventSets(client, store, site, events, gran, labels, today)
    rows = []
    if per is not None:
        for start, lbls in groups:
            value = expr.value(sets.union(lbls))
            rows.append({"start": start.isoformat(timespec="seconds"), "visitors": count(value)})
    whole, sources = sets, {sets.source()}
    if per is not None and per_buckets(window, None)[0] != gran:
        # per hour over a window of days: the total still reads the days, so it is the
        # same with or without --per, and reaches the store's days (it keeps no hours)
        day_gran, ((_, labels),) = per_buckets(window, None)
        whole = WindowEventSets(client, store, site, events, day_gran, labels, today)
        sources.add(whole.source())
    return {
        "expr": text,
        "window": {
            "start": window.start.isoformat(timespec="seconds"),
            "end": window.end.isoformat(timespec="seconds"),
            "source": sources.pop() if len(sources) == 1 else "both",
        },
        "site": site,
        "total": count(expr.value(whole.union(labels))),
        "per": rows,
    }


# --- funnel ----------------------------------------------------------------------------


def by_hours(window: Window, within: int | None) -> bool:
    """A funnel's steps are compared by hours for a window of minutes or hours, or a span
    of a day or less; else by days."""
    return window.gran != "day" or (within is not None and within <= 86400)


def build_funnel(
    client: Any,
    store: Any,
    site: str,
    window: Window,
    events: list[str],
    within: int | None,
    today: date,
) -> dict[str, Any]:
    """`{"window", "steps": [{"event", "visitors"}, ...]}`: the visitors who did the first
    event, of those the ones who did the second in the same bucket or a later one at most
    `within` seconds of buckets after, and so on from where each reached the step before.
    Buckets are hours when the window's hours live and `within` is at most a day, else
    days: "after" is known to the bucket."""
    gran = "hour" if by_hours(window, within) else "day"
    step = GRANULARITIES[gran].step
    start = window.start.replace(minute=0, second=0, microsecond=0)
    if gran == "day":
        start = start.replace(hour=0)
    labels = bucket_labels(start, max(window.end, start + timedelta(seconds=1)), gran)
    reach = len(labels) if within is None else within // int(step.total_seconds())
    sets = WindowEventSets(client, store, site, sorted(set(events)), gran, labels, today)
    per_event = {}
    for event in sorted(set(events)):
        per_event[event] = [sets.union((lbl,))(event) for lbl in labels]
    flat = sets.same_domain([v for vs in per_event.values() for v in vs])
    n = len(labels)
    for i, event in enumerate(sorted(set(events))):
        per_event[event] = flat[i * n : (i + 1) * n]
    reached = per_event[events[0]]  # who reached the step, per bucket they reached it in
    steps = [{"event": events[0], "visitors": count(_union(reached))}]
    for event in events[1:]:
        did = per_event[event]
        nxt = [_empty(did[0]) for _ in labels]
        for t, who in enumerate(reached):
            if not count(who):
                continue
            for u in range(t, min(n, t + reach + 1)):
                nxt[u] = nxt[u] | (who & did[u])
        reached = nxt
        steps.append({"event": event, "visitors": count(_union(reached))})
    return {
        "window": {
            "start": window.start.isoformat(timespec="seconds"),
            "end": window.end.isoformat(timespec="seconds"),
            "source": sets.source(),
        },
        "site": site,
        "within": within,
        "steps": steps,
    }


def _empty(like: Any) -> Any:
    return type(like)()


def _union(values: list[Any]) -> Any:
    out = _empty(values[0]) if values else 0
    for v in values:
        out = out | v
    return out


# --- retention --------------------------------------------------------------------------

COHORTS = ("day", "week", "month")


def cohort_periods(cohort: str, periods: int, today: date) -> list[tuple[date, date]]:
    """The last `periods` periods up to today's, each (first day, day after its last)."""
    if cohort == "day":
        first = today
    elif cohort == "week":
        first = today - timedelta(days=today.weekday())
    else:
        first = today.replace(day=1)
    out = []
    for _ in range(periods):
        out.append((first, _next_period(first, cohort)))
        first = _previous_period(first, cohort)
    return out[::-1]


def _next_period(first: date, cohort: str) -> date:
    if cohort == "day":
        return first + timedelta(days=1)
    if cohort == "week":
        return first + timedelta(days=7)
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1)


def _previous_period(first: date, cohort: str) -> date:
    if cohort == "day":
        return first - timedelta(days=1)
    if cohort == "week":
        return first - timedelta(days=7)
    return (first - timedelta(days=1)).replace(day=1)


def build_retention(
    client: Any,
    store: Any,
    site: str,
    events: list[str],
    cohort: str,
    periods: int,
    today: date,
    tz: Any,
) -> dict[str, Any]:
    """`{"cohorts": [{"start", "size", "back": [N, ...]}, ...]}`: for each period, the
    visitors who did the event (any of `events`) then and in no earlier period of the
    table, and how many of them did it again in each later period."""
    spans = cohort_periods(cohort, periods, today)
    first = datetime.combine(spans[0][0], datetime.min.time(), tz)
    end = datetime.combine(spans[-1][1], datetime.min.time(), tz)
    labels = bucket_labels(first, end, "day")
    sets = WindowEventSets(client, store, site, sorted(set(events)), "day", labels, today)
    groups = [tuple(lbl for lbl in labels if a <= label_day(lbl) < b) for a, b in spans]
    values = []
    for group in groups:
        of = sets.union(group)
        value = of(events[0])
        for event in events[1:]:
            value = value | of(event)
        values.append(value)
    values = sets.same_domain(values)
    seen = _empty(values[0])
    cohorts = []
    for i, (span, value) in enumerate(zip(spans, values, strict=True)):
        fresh = value - seen if not isinstance(value, int) else value & ~seen
        seen = seen | value
        back = [count(fresh & later) for later in values[i + 1 :]]
        cohorts.append({"start": span[0].isoformat(), "size": count(fresh), "back": back})
    return {"site": site, "events": events, "cohort": cohort, "cohorts": cohorts}
