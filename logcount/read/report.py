"""Windows and the reports (`top`, `hits`, `--recent`), from the live counters and the store.

A window is a set of bucket labels of one granularity. Live totals are summed over them,
visitors counted with one PFCOUNT over their HyperLogLogs, and rows ranked (read.ranking) on
the server with ZUNIONSTORE into a short-lived scratch key in the site's slot, or in Python
on a read-only replica. Whole days before today
that the nightly rollup has written come from the durable store instead; a window that
spans such days and live ones is "both".
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from functools import wraps
from typing import Any

import redis

from logcount import timing
from logcount.dimensions import (
    DIMENSIONS,
    GRANULARITIES,
    GRANULARITY_NAMES,
    MAX_DAYS,
)
from logcount.errors import LogcountError, RedisUnavailable
from logcount.read import drill
from logcount.read.ranking import SORTS, member_series, ranked_rows, text_of
from logcount.sinks import keys
from logcount.sinks.connection import unreachable, where_of

TOTAL_FIELDS = ("hits", "bytes", "visitors", "bots", "malformed")
STATUS_FIELDS = ("s1xx", "s2xx", "s3xx", "s4xx", "s5xx")
UNTIMED_NOTE = "no response times in this window: ranked by hits"
_RELATIVE = re.compile(r"^(\d+)([mhd])$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# How long each granularity's buckets live when the configuration does not say: a window
# reaches back as far as its buckets live (dimensions.GRANULARITIES).
_DEFAULT_TTL = {g.name: g.default_ttl_seconds for g in GRANULARITIES.values()}


class WindowError(LogcountError):
    exit_code = 2  # a usage error, like click's


def check_sort(sort: str, by: str) -> str:
    if sort not in SORTS:
        raise WindowError(f"unknown sort {sort!r} (use {', '.join(SORTS)})")
    if sort == "time" and not DIMENSIONS[by].timed:
        timed = ", ".join(n for n, d in DIMENSIONS.items() if d.timed and d.listed)
        raise WindowError(f"--sort time: {by} keeps no response times (only {timed})")
    return sort


@dataclass(frozen=True)
class Window:
    spec: str
    start: datetime
    end: datetime
    gran: str  # minute | hour | day
    labels: tuple[str, ...]

    def days(self) -> list[date]:
        return sorted({label_day(lbl) for lbl in self.labels})


def label_day(label: str) -> date:
    return date(int(label[:4]), int(label[4:6]), int(label[6:8]))


def _labels(start: datetime, end: datetime, gran: str) -> tuple[str, ...]:
    g = GRANULARITIES[gran]
    step, most, label = g.step, g.max_labels, g.label
    count = -((start - end) // step)  # buckets that start before `end`
    if count > most:
        raise WindowError(f"the window holds {count:,} {gran} buckets; at most {most:,}")
    out = []
    t = start
    for _ in range(count):
        out.append(t.strftime(label))
        if len(out) < count:  # never a step past the last: 9999-12-31 has no next day
            t += step
    return tuple(out)


def bucket_labels(start: datetime, end: datetime, gran: str) -> tuple[str, ...]:
    """The labels of the `gran` buckets from `start` (a bucket's start) to `end`."""
    return _labels(start, end, gran)


def _calendar_bound(spec: str) -> Callable[[Callable[..., Window]], Callable[..., Window]]:
    """An OverflowError of the date arithmetic (a window at 0001-01-01 or 9999-12-31)
    becomes one line, as any other bad window."""

    def decorate(fn: Callable[..., Window]) -> Callable[..., Window]:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Window:
            try:
                return fn(*args, **kwargs)
            except OverflowError:
                what = f"window {args[0]!r}" if spec == "spec" else "--since/--until"
                raise WindowError(f"{what} reaches past the dates a calendar holds") from None

        return wrapper

    return decorate


def _floor(t: datetime, gran: str) -> datetime:
    t = t.replace(second=0, microsecond=0)
    if gran in ("hour", "day"):
        t = t.replace(minute=0)
    if gran == "day":
        t = t.replace(hour=0)
    return t


def _ceil(t: datetime, gran: str) -> datetime:
    f = _floor(t, gran)
    return f if f == t else f + GRANULARITIES[gran].step


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise WindowError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def parse_datetime(text: str, tz: tzinfo) -> datetime:
    """'2026-11-22', '2026-11-22 14:05', '2026-11-22T14:05:30+01:00' (naive: the zone)."""
    try:
        value = datetime.fromisoformat(text.strip())
        return value.replace(tzinfo=tz) if value.tzinfo is None else value.astimezone(tz)
    except ValueError:
        raise WindowError(
            f"{text!r} is not a date-time (YYYY-MM-DD[THH:MM[:SS]][+HH:MM])"
        ) from None
    except OverflowError:
        raise WindowError(f"{text!r} is past the dates a calendar holds") from None


@_calendar_bound("spec")
def parse_window(
    spec: str,
    now: datetime,
    minute_ttl: int = _DEFAULT_TTL["minute"],
    hour_ttl: int = _DEFAULT_TTL["hour"],
) -> Window:
    """'5m', '1h', '24h', 'today', 'yesterday', '7d', 'YYYY-MM-DD[..YYYY-MM-DD]'. A window
    longer than its buckets live (minutes and hours) or than ten years is refused."""
    spec = spec.strip().lower()
    tz = now.tzinfo
    midnight = _floor(now, "day")
    if spec in ("today", "yesterday"):
        start = midnight if spec == "today" else midnight - timedelta(days=1)
        end = start + timedelta(days=1)
        return Window(
            spec,
            start,
            min(end, now) if spec == "today" else end,
            "day",
            _labels(start, end, "day"),
        )
    m = _RELATIVE.match(spec)
    if m:
        # Past 18 digits, any number is too long a window (and int() of 4,301 refuses).
        digits, unit = m.group(1), m.group(2)
        n = int(digits) if len(digits) <= 18 else 10**18
        if n <= 0:
            raise WindowError(f"window {spec!r} must be positive")
        _check_relative(spec, n, unit, hour_ttl)
        if unit == "d":
            start = midnight - timedelta(days=n - 1)
            return Window(spec, start, now, "day", _labels(start, now, "day"))
        span = timedelta(minutes=n) if unit == "m" else timedelta(hours=n)
        if span.total_seconds() <= minute_ttl:
            end = _floor(now, "minute") + timedelta(minutes=1)
            start = end - span
            return Window(spec, start, now, "minute", _labels(start, end, "minute"))
        end = _floor(now, "hour") + timedelta(hours=1)
        start = end - timedelta(hours=max(1, round(span.total_seconds() / 3600)))
        return Window(spec, start, now, "hour", _labels(start, end, "hour"))
    first, sep, last = spec.partition("..")
    if _DAY.match(first) and (not sep or _DAY.match(last)):
        d1 = parse_day(first)
        d2 = parse_day(last) if sep else d1
        if d2 < d1:
            raise WindowError(f"window {spec!r} ends before it starts")
        if (d2 - d1).days >= MAX_DAYS:
            raise WindowError(f"window {spec!r} spans more than {MAX_DAYS:,} days (ten years)")
        start = datetime.combine(d1, datetime.min.time(), tz)
        end = datetime.combine(d2 + timedelta(days=1), datetime.min.time(), tz)
        return Window(spec, start, end, "day", _labels(start, end, "day"))
    raise WindowError(
        f"unknown window {spec!r} (use 5m, 15m, 1h, 6h, 24h, today, yesterday, 7d, 30d, "
        "YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD)"
    )


def _check_relative(spec: str, n: int, unit: str, hour_ttl: int) -> None:
    """Checked before any arithmetic: timedelta(hours=10**12) would overflow, and a window
    of 9,999,999 hours would name as many buckets (minutes of work, nothing to read)."""
    if unit == "d":
        if n > MAX_DAYS:
            raise WindowError(f"window {spec!r} is longer than {MAX_DAYS:,} days (ten years)")
        return
    seconds = n * (60 if unit == "m" else 3600)
    if seconds > hour_ttl:
        raise WindowError(
            f"window {spec!r} reaches back past the hour buckets ({hour_ttl // 3600:,} h, "
            "live.ttl.hour): use days (Nd) or dates"
        )


@_calendar_bound("since")
def window_between(
    since: datetime, until: datetime | None, now: datetime, ttl: dict[str, int] | None = None
) -> Window:
    """--since/--until: the finest buckets that still live at `since`, whole buckets."""
    ttl = ttl or _DEFAULT_TTL
    end = until or now
    if end <= since:
        raise WindowError("--until must be later than --since")
    age = (now - since).total_seconds()
    gran = next(g for g in GRANULARITY_NAMES if g == "day" or age <= ttl[g])
    # A minute window of a day would be 1,440 buckets: use hours beyond the minute TTL span.
    if gran == "minute" and (end - since).total_seconds() > ttl["minute"]:
        gran = "hour"
    start, stop = _floor(since, gran), _ceil(end, gran)
    return Window(
        "since", start, min(stop, now) if stop > now else stop, gran, _labels(start, stop, gran)
    )


def spark_buckets(window: Window, now: datetime) -> tuple[str, tuple[str, ...]]:
    """The buckets a row's sparkline is drawn from: a single day is drawn by its hours
    (tried even for old days: a replayed log writes their hour buckets now)."""
    if window.gran == "day" and len(window.labels) == 1:
        stop = min(window.start + timedelta(days=1), _ceil(now, "hour"))
        return "hour", _labels(window.start, stop, "hour")
    return window.gran, window.labels


# --- reading Redis --------------------------------------------------------------------


@contextmanager
def reading_redis(client: Any) -> Iterator[None]:
    """Any Redis or socket error of `client` becomes RedisUnavailable (one line, no
    password): "cannot read from Redis: connecting to h:6379: Connection refused"."""
    try:
        yield
    except LogcountError:
        raise
    except Exception as exc:
        if isinstance(exc, OSError | redis.RedisError | redis.RedisClusterException):
            why = unreachable(exc, where_of(client, exc))
            raise RedisUnavailable(f"cannot read from Redis: {why}") from None
        raise


def live_totals(
    client: Any, site: str, gran: str, labels: tuple[str, ...], rate_label: str | None = None
) -> dict[str, int]:
    """Counters summed over buckets, visitors (PFCOUNT) and the hits of `rate_label`."""
    pipe = client.pipeline(transaction=False)
    for label in labels:
        pipe.hgetall(keys.totals(site, gran, label))
    if rate_label:
        pipe.hget(keys.totals(site, "minute", rate_label), "hits")
    replies = pipe.execute()
    # Not in the pipeline: redis-py refuses a multi-key PFCOUNT in a cluster pipeline
    # (the keys share the site's slot, so the command itself is fine).
    visitors = client.pfcount(*[keys.visitors(site, gran, lbl) for lbl in labels]) if labels else 0
    totals: dict[str, int] = {}
    for reply in replies[: len(labels)]:
        for field, value in reply.items():
            name = text_of(field)
            totals[name] = totals.get(name, 0) + int(value)
    totals["visitors"] = int(visitors)
    if rate_label:
        totals["rate"] = int(replies[-1] or 0)
    return totals


def read_recent(client: Any, site: str, limit: int) -> list[dict[str, Any]]:
    """The last `limit` requests of the recent list, newest first."""
    with reading_redis(client):
        items = client.lrange(keys.recent(site), 0, limit - 1)
    out = []
    for raw in items:
        item = json.loads(raw)
        label = str(item.get("time", ""))
        if len(label) == 12 and label.isdigit():
            item["time"] = f"{label[:4]}-{label[4:6]}-{label[6:8]}T{label[8:10]}:{label[10:]}"
        out.append({k: item.get(k) for k in ("time", "path", "status", "bytes", "agent", "bot")})
    return out


def read_malformed(client: Any, site: str) -> list[str]:
    """The malformed lines kept for a site (the last SAMPLE_SIZE), newest first."""
    with reading_redis(client):
        items = client.lrange(keys.malformed_sample(site), 0, -1)
    return [i.decode("utf-8", "backslashreplace") if isinstance(i, bytes) else i for i in items]


# --- the reports ----------------------------------------------------------------------


def store_days_of(store: Any, site: str, window: Window, by: str, today: date) -> list[date]:
    """Whole days before today in the window that the rollup has written."""
    if store is None or window.gran != "day":
        return []
    past = [d for d in window.days() if d < today]
    if not past:
        return []
    return sorted(store.rolled_days(site, past))


# A drill-down ranks every member of its status, then folds them into paths.
DRILL_ROWS = 1_000_000


def build_top(
    client: Any,
    store: Any,
    site: str,
    window: Window,
    by: str,
    limit: int,
    now: datetime,
    status: str | None = None,
    sort: str = "hits",
    trends: bool = True,
) -> dict[str, Any]:
    """The `top` report of one window in the documented JSON shape (plus table extras);
    with `status` (checked by drill.status_filter), the paths of that status or class;
    rows ranked by `sort` (hits, bytes, time). Without `trends` no row has a trend (a
    report that reads every member, as sections do, reads no series for them)."""
    check_sort(sort, by)
    dim = drill.DIM if status else by
    fetch = DRILL_ROWS if status else limit
    like = drill.member_like(status) if status else None
    store_days = store_days_of(store, site, window, dim, now.date())
    rolled = {d.strftime("%Y%m%d") for d in store_days}
    live_labels = tuple(lbl for lbl in window.labels if lbl[:8] not in rolled)
    source = "live" if not store_days else ("both" if live_labels else "store")
    last_minute = _floor(now, "minute") - timedelta(minutes=1)
    rate_label = last_minute.strftime(GRANULARITIES["minute"].label)
    spark_gran, spark_labels = spark_buckets(window, now)
    if source == "store" and len(window.labels) == 1:
        spark_labels = ()  # one rolled-up day has no finer shape in the store
    with reading_redis(client):
        totals = live_totals(client, site, window.gran, live_labels, rate_label)
        stored_rows: list[dict[str, Any]] = []
        hist = timing.histogram_of(totals)
        if store_days:
            _add_store_totals(totals, store.day_totals(site, store_days))
            timing.merge(hist, store.day_timings(site, store_days))
        # A window without response times (a format without %D) has nothing to rank by
        # time: its rows come by hits, and the report says so, rather than no rows at all.
        untimed = sort == "time" and not hist
        sort = "hits" if untimed else sort
        if store_days:
            # Mixed windows rank in Redis: the store's leading rows join the live buckets in
            # a scratch sorted set. A key outside the store's first `wanted` rows would miss
            # its stored hits; 50x the limit makes that a key far below the cut.
            wanted = fetch if source == "store" else max(fetch * 50, 1000)
            stored_rows = list(store.top_rows(site, store_days, dim, wanted, like, sort))
        if source == "store":
            rows = [_row(r) for r in stored_rows]
        else:
            rows = ranked_rows(
                client, site, window.gran, live_labels, dim, fetch, stored_rows, sort
            )
        parts = drill.fold(rows, status, limit, SORTS[sort][0]) if status else {}
        members = [m for ms in parts.values() for m in ms] if status else [r["key"] for r in rows]
        live_spark = tuple(lbl for lbl in spark_labels if lbl[:8] not in rolled)
        if not trends:
            members, spark_labels, live_spark, store_days_spark = [], (), (), []
        else:
            store_days_spark = store_days
        series = member_series(client, site, dim, spark_gran, live_spark, members)
    trend = _trends(store, site, dim, members, spark_labels, live_spark, store_days_spark, series)
    if status:
        trend = drill.fold_trends(trend, parts) if trends else {}
    if not any(any(values) for values in trend.values()):
        trend = {r["key"]: [] for r in rows}  # buckets expired: no trend rather than flat
    timed = bool(hist) and DIMENSIONS[dim].timed
    for row in rows:
        # Kept for a caller that sums rows (sections) when it asked for no trends.
        time_us = row.pop("time_us", 0) if trends else row.get("time_us", 0)
        if timed:  # a window without durations has no time fields
            row["time_avg_ms"] = timing.average_ms(time_us, row["hits"])
        row["trend"] = trend[row["key"]]
    report = {
        "window": {
            "start": window.start.isoformat(timespec="seconds"),
            "end": window.end.isoformat(timespec="seconds"),
            "source": source,
        },
        "site": site,
        "by": by,
        "total": {name: totals.get(name, 0) for name in (*TOTAL_FIELDS, *STATUS_FIELDS)}
        | timing.quantiles(hist),
        "rows": rows,
        "status": {name: totals.get(name, 0) for name in STATUS_FIELDS},
        "rate": totals.get("rate", 0),
        "spec": window.spec,
    }
    if status:
        report["status_filter"] = status
    if untimed:
        report["sort_note"] = UNTIMED_NOTE
    return report


def _row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": str(r["key"]),
        "hits": int(r["hits"]),
        "bytes": int(r.get("bytes") or 0),
        "visitors": None if r.get("visitors") is None else int(r["visitors"]),
        "time_us": int(r.get("time_us") or 0),
    }


def _add_store_totals(totals: dict[str, int], stored: dict[str, Any]) -> None:
    # Visitors: the store's distinct visitors of its days plus Redis' PFCOUNT of the live
    # days; one visitor seen on both sides counts twice (documented).
    for name in ("hits", "bytes", "visitors", "bots", "malformed", *STATUS_FIELDS):
        totals[name] = totals.get(name, 0) + int(stored.get(name) or 0)


def _trends(
    store: Any,
    site: str,
    by: str,
    members: list[str],
    labels: tuple[str, ...],
    live_labels: tuple[str, ...],
    store_days: list[date],
    live: dict[str, list[int]],
) -> dict[str, list[int]]:
    """Each member's hits per spark bucket: live buckets, then rolled-up days from the store."""
    out = {}
    for member in members:
        values = dict(zip(live_labels, live.get(member, []), strict=False))
        if store_days and labels:
            daily = store.daily_hits(site, by, member, store_days)
            for day, hits in daily.items():
                values[day.strftime("%Y%m%d")] = int(hits)
        out[member] = [values.get(lbl, 0) for lbl in labels]
    return out


def history_days(store: Any, site: str, days: int, today: date) -> tuple[list[date], set[date]]:
    """The `days` days up to today, and those before today that the rollup has written
    (they are read from the store, the others from the live day buckets)."""
    if not 1 <= days <= MAX_DAYS:  # the command line's IntRange; the API checks here
        raise WindowError(f"--days must be from 1 to {MAX_DAYS:,}")
    dates = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
    if store is None or days == 1:
        return dates, set()
    return dates, set(store.rolled_days(site, [d for d in dates if d < today]))


def history_report(
    site: str,
    what: tuple[str, str],
    dates: list[date],
    rolled: set[date],
    stored: dict[date, int],
    live: dict[date, int],
) -> dict[str, Any]:
    """`hits`' JSON: every day present, zero when nothing was counted; `what`: the
    (field, value) the hits are of (a path, an object, a prefix)."""
    history = [
        {"date": d.isoformat(), "hits": stored.get(d, 0), "source": "store"}
        if d in rolled
        else {"date": d.isoformat(), "hits": live.get(d, 0), "source": "live"}
        for d in dates
    ]
    return {
        "site": site,
        what[0]: what[1],
        "today": history[-1]["hits"],
        "total": sum(h["hits"] for h in history),
        "days": history,
    }


def build_hits(
    client: Any, store: Any, site: str, dim: str, member: str, days: int, today: date
) -> dict[str, Any]:
    """Today's count (live) and the daily history: rolled-up days from the store, the rest
    from the live day buckets."""
    dates, rolled = history_days(store, site, days, today)
    stored: dict[date, int] = {}
    if rolled:
        stored = {d: int(n) for d, n in store.daily_hits(site, dim, member, sorted(rolled)).items()}
    live_dates = [d for d in dates if d not in rolled]
    with reading_redis(client):
        pipe = client.pipeline(transaction=False)
        for d in live_dates:
            pipe.zscore(keys.members(site, dim, "day", d.strftime("%Y%m%d")), member)
        live = {d: int(n or 0) for d, n in zip(live_dates, pipe.execute(), strict=True)}
    return history_report(site, (dim, member), dates, rolled, stored, live)
