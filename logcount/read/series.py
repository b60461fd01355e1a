"""Hits over time: a window's points for graphs, one period's total and its segments,
and the sites' monotonic totals (what `logcount serve` answers besides `top` and `hits`).

Points and segments come from the live buckets while they live; whole days before today
that the rollup has written come from the store (days only: the store keeps no hours).
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from logcount.dimensions import GRANULARITIES
from logcount.read.report import Window, WindowError, _ceil, _floor, _labels, reading_redis
from logcount.sinks import keys

# The fields of a site's monotonic totals that count lines (the rest are sums of bytes
# and durations, and the response-time bins).
LINE_CLASSES = ("s1xx", "s2xx", "s3xx", "s4xx", "s5xx", "bots", "malformed")


@dataclass(frozen=True)
class Buckets:
    """Buckets of one granularity: their labels and the times they start."""

    gran: str
    labels: tuple[str, ...]
    starts: tuple[datetime, ...]


def buckets_of(window: Window, gran: str) -> Buckets:
    """The buckets of `gran` that cover `window` (a day window drawn by hours, ...)."""
    g = GRANULARITIES[gran]
    start = _floor(window.start, gran)
    end = max(_ceil(window.end, gran), start + g.step)
    labels = _labels(start, end, gran)
    tz = window.start.tzinfo
    starts = tuple(datetime.strptime(lbl, g.label).replace(tzinfo=tz) for lbl in labels)
    return Buckets(gran, labels, starts)


def _live_points(
    client: Any, site: str, buckets: Buckets, member: tuple[str, str] | None
) -> list[tuple[int, int | None]]:
    """(hits, visitors) per bucket: the totals' hits and the bucket's HyperLogLog, or a
    member's score (members keep no visitors live: None)."""
    pipe = client.pipeline(transaction=False)
    for label in buckets.labels:
        if member is None:
            pipe.hget(keys.totals(site, buckets.gran, label), "hits")
        else:
            pipe.zscore(keys.members(site, member[0], buckets.gran, label), member[1])
    hits = [int(n or 0) for n in pipe.execute()]
    if member is not None:
        return [(n, None) for n in hits]
    # One PFCOUNT per bucket (a multi-key PFCOUNT would count their union).
    pipe = client.pipeline(transaction=False)
    for label in buckets.labels:
        pipe.pfcount(keys.visitors(site, buckets.gran, label))
    return list(zip(hits, [int(v) for v in pipe.execute()], strict=True))


def _stored_days(
    store: Any, site: str, days: list[date], member: tuple[str, str] | None, today: date
) -> dict[date, tuple[int, int | None]]:
    """(hits, visitors) of the rolled-up days before today among `days`."""
    past = [d for d in days if d < today]
    if store is None or not past:
        return {}
    rolled = sorted(store.rolled_days(site, past))
    if not rolled:
        return {}
    if member is None:
        found: dict[date, tuple[int, int | None]] = dict(store.daily_totals(site, rolled))
    else:
        hits = store.daily_hits(site, member[0], member[1], rolled)
        found = {d: (int(n), None) for d, n in hits.items()}
    return {d: found.get(d, (0, 0 if member is None else None)) for d in rolled}


def build_series(
    client: Any,
    store: Any,
    site: str,
    buckets: Buckets,
    member: tuple[str, str] | None,
    today: date,
) -> dict[str, Any]:
    """Points [iso time, hits, visitors] per bucket, zeros where nothing was counted;
    rolled-up days from the store when the buckets are days."""
    with reading_redis(client):
        points = _live_points(client, site, buckets, member)
    stored: dict[date, tuple[int, int | None]] = {}
    if buckets.gran == "day":
        stored = _stored_days(store, site, [t.date() for t in buckets.starts], member, today)
        points = [stored.get(t.date(), p) for t, p in zip(buckets.starts, points, strict=True)]
    source = "live" if not stored else ("store" if len(stored) == len(points) else "both")
    out: dict[str, Any] = {"site": site, "granularity": buckets.gran, "source": source}
    if member is not None:
        out[member[0]] = member[1]
    out["points"] = [
        [t.isoformat(timespec="seconds"), h, v]
        for t, (h, v) in zip(buckets.starts, points, strict=True)
    ]
    return out


# --- one period: a year's months, a month's days, a day's hours, an hour's minutes ----


@dataclass(frozen=True)
class Period:
    year: int
    month: int | None = None
    day: int | None = None
    hour: int | None = None

    def check(self) -> Period:
        """ValueError naming the part that is out of range."""
        if not 1001 <= self.year <= 9998:
            raise PeriodError("year", "year must be from 1001 to 9998")
        if self.month is not None and not 1 <= self.month <= 12:
            raise PeriodError("month", "month must be from 1 to 12")
        if self.day is not None:
            assert self.month is not None
            last = calendar.monthrange(self.year, self.month)[1]
            if not 1 <= self.day <= last:
                raise PeriodError("day", f"day must be from 1 to {last}")
        if self.hour is not None and not 0 <= self.hour <= 23:
            raise PeriodError("hour", "hour must be from 0 to 23")
        return self


class PeriodError(WindowError):
    """A part of a period out of range; `parameter` names it."""

    def __init__(self, parameter: str, message: str):
        super().__init__(message)
        self.parameter = parameter


def build_stats(
    client: Any, store: Any, site: str, period: Period, now: datetime
) -> dict[str, Any]:
    """One period's hits and its segments, e.g. {"total": 15, "data": {"1": 10, "2": 5}}:
    days from the live day buckets, or the store once rolled up; hours and minutes from
    their live buckets while they live (zeros beyond)."""
    period.check()
    y, m, d, h = period.year, period.month, period.day, period.hour
    today = now.date()
    if d is None:
        months = [m] if m is not None else list(range(1, 13))
        days = [date(y, mo, n) for mo in months for n in _days_in(y, mo)]
        days = [day for day in days if day <= today]
        per_day = _day_hits(client, store, site, days, today)
        key: Callable[[date], int] = (lambda x: x.month) if m is None else (lambda x: x.day)
        segments = [*range(1, 13)] if m is None else [*_days_in(y, m)]
        data = dict.fromkeys(segments, 0)
        for day, n in per_day.items():
            data[key(day)] += n
        total = sum(data.values())
    else:
        assert m is not None
        day_label = f"{y:04d}{m:02d}{d:02d}"
        if h is None:
            labels = [f"{day_label}{i:02d}" for i in range(24)]
            gran = "hour"
            day = date(y, m, d)
            total = _day_hits(client, store, site, [day], today).get(day, 0) if day <= today else 0
        else:
            labels = [f"{day_label}{h:02d}{i:02d}" for i in range(60)]
            gran = "minute"
            with reading_redis(client):
                total = int(client.hget(keys.totals(site, "hour", labels[0][:10]), "hits") or 0)
        with reading_redis(client):
            pipe = client.pipeline(transaction=False)
            for label in labels:
                pipe.hget(keys.totals(site, gran, label), "hits")
            values = [int(n or 0) for n in pipe.execute()]
        data = dict(enumerate(values))
        total = max(total, sum(values))
    return {
        "site": site,
        "year": y,
        "month": m,
        "day": d,
        "hour": h,
        "total": total,
        "data": {str(k): n for k, n in data.items()},
    }


def _days_in(year: int, month: int) -> range:
    return range(1, calendar.monthrange(year, month)[1] + 1)


def _day_hits(client: Any, store: Any, site: str, days: list[date], today: date) -> dict[date, int]:
    stored = _stored_days(store, site, days, None, today)
    live = [d for d in days if d not in stored]
    with reading_redis(client):
        pipe = client.pipeline(transaction=False)
        for d in live:
            pipe.hget(keys.totals(site, "day", d.strftime("%Y%m%d")), "hits")
        values = pipe.execute() if live else []
    out = {d: h for d, (h, _) in stored.items()}
    out.update({d: int(n or 0) for d, n in zip(live, values, strict=True)})
    return out


# --- monotonic totals ------------------------------------------------------------------


def lifetime_totals(client: Any, sites: list[str]) -> dict[str, dict[str, int]]:
    """Each site's monotonic totals (keys.lifetime): hits, bytes, s2xx, bots, ..."""
    with reading_redis(client):
        pipe = client.pipeline(transaction=False)
        for site in sites:
            pipe.hgetall(keys.lifetime(site))
        replies = pipe.execute() if sites else []
    out = {}
    for site, reply in zip(sites, replies, strict=True):
        out[site] = {_text(f): int(v) for f, v in reply.items()}
    return out


def totals_version(client: Any, site: str) -> tuple[Any, ...]:
    """What moves whenever a batch of the site is applied: its lines counted so far."""
    with reading_redis(client):
        return tuple(client.hmget(keys.lifetime(site), "hits", "bots", "malformed", "ignored"))


def _text(value: Any) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)
