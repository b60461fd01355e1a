"""`Counts`: the read side, for reports and for web applications.

from logcount import Counts
counts = Counts.from_config()
counts.hits_today("/press/42/")
"""

from __future__ import annotations

import json
import os
import threading
from datetime import date, datetime, timedelta
from typing import Any

from logcount.config import Config, load_config
from logcount.count.paths import section_of
from logcount.dimensions import DIMENSION_NAMES, GRANULARITY_NAMES
from logcount.errors import LogcountError, RedisUnavailable, StoreError
from logcount.read.drill import status_filter
from logcount.read.ratios import add_metric, parse_metric
from logcount.read.report import (
    Window,
    WindowError,
    build_hits,
    build_top,
    check_sort,
    parse_datetime,
    parse_window,
    read_malformed,
    read_recent,
    reading_redis,
    spark_buckets,
    window_between,
)
from logcount.read.sections import (
    ALL_ROWS,
    SectionError,
    build_prefix_hits,
    build_sections,
    check_depth,
)
from logcount.read.series import (
    Period,
    buckets_of,
    build_series,
    build_stats,
    lifetime_totals,
    totals_version,
)
from logcount.sinks import keys
from logcount.sinks.connection import connect, reason
from logcount.sinks.embedded import redis_url
from logcount.zones import zone_of


class Counts:
    """Read live counters (and, for past days, the durable store)."""

    def __init__(
        self,
        redis_url: str | None = None,
        store_url: str | None = None,
        config: Config | None = None,
        site: str | None = None,
    ):
        base = config or Config()
        self.config = base.with_overrides(redis=redis_url, store=store_url)
        self.site = site or self.config.site
        self._redis: Any = None
        self._store: Any = None
        self._opening = threading.Lock()

    @classmethod
    def from_config(cls, path: str | None = None, **overrides: Any) -> Counts:
        """From the config file (and LOGCOUNT_* environment), as the CLI reads it."""
        return cls(config=load_config(path, **overrides))

    @classmethod
    def from_settings(cls, config: Config) -> Counts:
        """For the command line: the settings it has read already (file, environment and
        flags)."""
        return cls(config=config)

    @property
    def redis(self) -> Any:
        if self._redis is None:
            with self._opening:
                if self._redis is None:
                    self._redis = connect(redis_url(self.config))
        return self._redis

    @property
    def store(self) -> Any:
        """The durable store, or None when there is none to read (nothing rolled up yet:
        looked for again next time, as a long-running `serve` outlives the first rollup)."""
        if self._store is None:
            # `logcount serve` asks from many threads: one opens it, the others wait
            with self._opening:
                if self._store is None:
                    self._store = open_store(self.config)
        return self._store

    def now(self) -> datetime:
        return datetime.now(zone_of(self.config))

    def window(
        self,
        spec: str = "today",
        since: str | datetime | None = None,
        until: str | datetime | None = None,
    ) -> Window:
        """A named window, or the buckets between `since` and `until` (default: now)."""
        now = self.now()
        if since is None:
            if until is not None:
                raise WindowError("--until needs --since")
            return parse_window(spec, now, self.config.ttl["minute"], self.config.ttl["hour"])
        tz = zone_of(self.config)
        start = since if isinstance(since, datetime) else parse_datetime(since, tz)
        end = until if until is None or isinstance(until, datetime) else parse_datetime(until, tz)
        return window_between(start, end, now, self.config.ttl)

    def report(
        self,
        window: str = "today",
        by: str = "path",
        limit: int = 20,
        site: str | None = None,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        status: str | None = None,
        sort: str = "hits",
        depth: int | None = None,
        metric: str | None = None,
    ) -> dict[str, Any]:
        """The full report (JSON shape of `logcount top --format json`, plus the table's
        extras: status classes, rate per minute and each row's trend). With `status`
        ("404", or a class "4xx"; `by` path), the paths of that status. Rows ranked by
        `sort`: hits, bytes or time (the sum of the member's response times). With
        `depth` (`by` path), sections: paths rolled up to their first `depth` segments.
        With `metric` ("bytes/hits"), each row's ratio of two of its totals."""
        if by not in DIMENSION_NAMES:
            raise WindowError(f"unknown dimension {by!r} (use {', '.join(DIMENSION_NAMES)})")
        check_sort(sort, by)
        if status is not None:
            status = status_filter(status, by)
        if depth is not None:
            check_depth(depth, by)
            if status is not None:
                raise SectionError("--depth and --status: give one of them")
        ratio = parse_metric(metric, by) if metric is not None else None
        if by == "client" and not (self.config.count_clients or self.config.store_clients):
            raise WindowError(
                "client addresses are not counted: set [privacy] count_clients = true "
                "(live; store_clients = true for the store)"
            )
        win = self.window(window, since, until)
        now = self.now()
        # Only past whole days can come from the store: `today` never imports SQLAlchemy.
        store = self.store if win.gran == "day" and win.start.date() < now.date() else None
        site = site or self.site
        if depth is not None:
            report = build_sections(
                self.redis,
                store,
                site,
                win,
                depth,
                limit,
                now,
                sort,
                kept_depth=self.config.section_depth,
            )
        else:
            report = build_top(self.redis, store, site, win, by, limit, now, status, sort)
        if ratio is not None:

            def class_hits(cls: str) -> dict[str, int]:
                """Hits of a status class per path (per section with `depth`)."""
                rows = build_top(
                    self.redis, store, site, win, "path", ALL_ROWS, now, cls, sort, False
                )["rows"]
                out: dict[str, int] = {}
                for row in rows:
                    key = row["key"] if depth is None else section_of(row["key"], depth)
                    out[key] = out.get(key, 0) + row["hits"]
                return out

            add_metric(report, ratio, class_hits)
        return report

    def sites(self) -> list[dict[str, Any]]:
        """Every site seen live or in the store, with today's hits (`logcount sites`)."""
        from logcount.read.sites import list_sites

        return list_sites(self.redis, self.store, self.now().date())

    def other_sites(
        self,
        window: str = "today",
        site: str | None = None,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
    ) -> list[tuple[str, int]]:
        """The sites but `site` with hits in the window, busiest first, with their hits."""
        from logcount.read.sites import sites_with_hits

        win = self.window(window, since, until)
        store = self.store if win.gran == "day" and win.start.date() < self.now().date() else None
        return sites_with_hits(self.redis, store, win, site or self.site)

    def recent(self, limit: int = 20, site: str | None = None) -> list[dict[str, Any]]:
        """The last requests (time, path, status, bytes, agent, bot), newest first."""
        return read_recent(self.redis, site or self.site, limit)

    def malformed(self, site: str | None = None) -> list[str]:
        """The last lines of a site that did not parse (at most 20), newest first."""
        return read_malformed(self.redis, site or self.site)

    def history(
        self,
        path: str | None = None,
        object: tuple[str, Any] | str | None = None,
        days: int = 30,
        site: str | None = None,
    ) -> list[tuple[date, int]]:
        """Hits per day of a path or an object, oldest first, today last, zero days filled."""
        report = self.hits(path, object, days, site)
        return [(date.fromisoformat(d["date"]), d["hits"]) for d in report["days"]]

    def hits(
        self,
        path: str | None = None,
        object: tuple[str, Any] | str | None = None,
        days: int = 30,
        site: str | None = None,
    ) -> dict[str, Any]:
        """The `logcount hits` report: today, total and one entry per day with its source."""
        dim, member = self._member(path, object)
        return build_hits(
            self.redis,
            self.store if days > 1 else None,
            site or self.site,
            dim,
            member,
            days,
            self.now().date(),
        )

    def section_hits(self, prefix: str, days: int = 30, site: str | None = None) -> dict[str, Any]:
        """The `logcount hits --prefix` report: the hits of every path under `prefix`
        (normalised as paths are), today and per day."""
        _, member = self._member(prefix, None)
        return build_prefix_hits(
            self.redis,
            self.store if days > 1 else None,
            site or self.site,
            member,
            days,
            self.now().date(),
        )

    def visitors(
        self,
        expr: str,
        window: str = "today",
        per: str | None = None,
        site: str | None = None,
    ) -> dict[str, Any]:
        """The `logcount visitors` report: distinct visitors of a set expression of the
        configured events (`"login & song_played"`), for the window and per `per`
        (hour, day, week)."""
        from logcount.read.journeys import PER, build_visitors, parse_expression

        if per is not None and per not in PER:
            raise WindowError(f"unknown --per {per!r} (use {', '.join(PER)})")
        parsed = parse_expression(expr, self.event_names())
        win = self.window(window)
        today = self.now().date()
        store = self.store if win.gran == "day" and win.start.date() < today else None
        return build_visitors(self.redis, store, site or self.site, win, parsed, expr, per, today)

    def funnel(
        self,
        events: list[str],
        window: str = "today",
        within: str | int | None = None,
        site: str | None = None,
    ) -> dict[str, Any]:
        """The `logcount funnel` report: how many did the first event, of those how many
        did the next after it (within `within`: "1h", "1d", "7d" or seconds), and so on."""
        from logcount.read.journeys import build_funnel, by_hours

        if not events:
            raise WindowError("name the funnel's events, in order")
        self._known_events(events)
        seconds = None if within is None else _within(within)
        win = self.window(window)
        kept = self.config.ttl["hour"]
        if by_hours(win, seconds) and win.start < self.now() - timedelta(seconds=kept):
            # hours live in Redis only: past their TTL the steps would silently count 0
            raise WindowError(
                f"--within {within} compares the steps by hour, and hours are kept "
                f"{kept / 86400:g} days: the window starts before that (use a later window, "
                "or --within of more than a day)"
            )
        today = self.now().date()
        store = self.store if win.gran == "day" and win.start.date() < today else None
        return build_funnel(self.redis, store, site or self.site, win, events, seconds, today)

    def retention(
        self,
        event: str | None = None,
        cohort: str = "week",
        periods: int = 8,
        site: str | None = None,
    ) -> dict[str, Any]:
        """The `logcount retention` cohort table: visitors first seen doing `event` (any
        event without one) in each of the last `periods` days, weeks or months, and how
        many of them did it again in each later period."""
        from logcount.read.journeys import COHORTS, build_retention

        if cohort not in COHORTS:
            raise WindowError(f"unknown cohort {cohort!r} (use {', '.join(COHORTS)})")
        if not 1 <= periods <= 60:
            raise WindowError("--periods must be from 1 to 60")
        events = [event] if event is not None else list(self.event_names())
        if not events:
            raise WindowError("no events are configured: see [[event]] in the README")
        self._known_events(events)
        today = self.now().date()
        return build_retention(
            self.redis,
            self.store if periods > 1 or cohort != "day" else None,
            site or self.site,
            events,
            cohort,
            periods,
            today,
            zone_of(self.config),
        )

    def event_names(self) -> tuple[str, ...]:
        """The configured events' names, in config order."""
        return tuple(e["name"] for e in self.config.events if isinstance(e, dict))

    def _known_events(self, events: list[str]) -> None:
        from logcount.read.journeys import ExpressionError

        known = self.event_names()
        for event in events:
            if event not in known:
                names = ", ".join(known) or "none configured: see [[event]]"
                raise ExpressionError(f"unknown event {event!r} (events: {names})")

    def top(
        self,
        window: str = "1h",
        by: str = "path",
        limit: int = 10,
        site: str | None = None,
        sort: str = "hits",
    ) -> list[dict[str, Any]]:
        """Rows as in the JSON output: [{"key", "hits", "bytes", "visitors"}, ...], and
        "time_avg_ms" when the window has response times."""
        return self.report(window, by, limit, site, sort=sort)["rows"]

    def _member(self, path: str | None, object: tuple[str, Any] | str | None) -> tuple[str, str]:
        if (path is None) == (object is None):
            raise ValueError("give exactly one of path or object")
        if object is not None:
            member = object if isinstance(object, str) else f"{object[0]}:{object[1]}"
            if ":" not in member:
                raise ValueError(f"object {member!r} is not TYPE:ID")
            return "object", member
        assert path is not None
        from logcount.count.paths import KEYS_NOT_PATHS, normalise_target  # `top` needs none

        if path not in KEYS_NOT_PATHS and not path.startswith("/") and "://" not in path:
            path = "/" + path  # "press/42/" means the path, as a person types it
        return "path", normalise_target(path.encode(), tuple(self.config.keep_query))

    def hits_today(
        self,
        path: str | None = None,
        object: tuple[str, Any] | str | None = None,
        site: str | None = None,
    ) -> int:
        """Today's hits of a path or an object: one Redis round trip."""
        dim, member = self._member(path, object)
        label = self.now().strftime("%Y%m%d")
        client = self.redis
        with reading_redis(client):
            score = client.zscore(keys.members(site or self.site, dim, "day", label), member)
        return int(score or 0)

    def series(
        self,
        path: str | None = None,
        object: tuple[str, Any] | str | None = None,
        window: str = "24h",
        granularity: str | None = None,
        site: str | None = None,
    ) -> dict[str, Any]:
        """Hits (and visitors) per bucket of a window, of the site or of one path or
        object: {"points": [[iso time, hits, visitors], ...], ...}, zeros where nothing
        was counted. Default granularity: as `top` draws its trends (a day by hours)."""
        win = self.window(window)
        now = self.now()
        gran = granularity or spark_buckets(win, now)[0]
        if gran not in GRANULARITY_NAMES:
            raise WindowError(f"unknown granularity {gran!r} (use {', '.join(GRANULARITY_NAMES)})")
        member = None if path is None and object is None else self._member(path, object)
        buckets = buckets_of(win, gran)
        store = self.store if gran == "day" and win.start.date() < now.date() else None
        return build_series(self.redis, store, site or self.site, buckets, member, now.date())

    def stats(
        self,
        year: int,
        month: int | None = None,
        day: int | None = None,
        hour: int | None = None,
        site: str | None = None,
    ) -> dict[str, Any]:
        """One period's hits and its segments (a year's months, a month's days, a day's
        hours, an hour's minutes): {"total": N, "data": {"1": n, ...}, ...}."""
        period = Period(year, month, day, hour).check()
        now = self.now()
        past = date(year, month or 1, day or 1) < now.date()
        store = self.store if past and hour is None else None
        return build_stats(self.redis, store, site or self.site, period, now)

    def lifetime(self, sites: list[str]) -> dict[str, dict[str, int]]:
        """The sites' monotonic totals (never reset by a bucket's TTL)."""
        return lifetime_totals(self.redis, sites)

    def totals_version(self, site: str | None = None) -> tuple[Any, ...]:
        """A value that changes whenever a reader applies a batch of the site (its
        monotonic totals): what `serve` knows its answers by."""
        return totals_version(self.redis, site or self.site)

    def health(self) -> dict[str, str]:
        """ "ok" or why not, for Redis and the store ("none": nothing rolled up yet)."""
        out = {}
        try:
            with reading_redis(self.redis):
                self.redis.ping()
            out["redis"] = "ok"
        except LogcountError as exc:
            out["redis"] = str(exc)
        try:
            store = self.store
            if store is not None:
                store.rolled_days(self.site, [self.now().date()])
            out["store"] = "ok" if store is not None else "none"
        except LogcountError as exc:
            out["store"] = str(exc)
        return out

    def readers(self) -> list[dict[str, Any]]:
        """Heartbeats of running readers, newest first."""
        client = self.redis
        try:
            names = sorted(client.scan_iter(match=keys.HEARTBEAT_PATTERN, count=1000))
            values = [client.get(n) for n in names]
        except Exception as exc:
            raise RedisUnavailable(f"cannot read from Redis: {reason(exc)}") from None
        out = [beat for beat in map(_heartbeat, values) if beat is not None]
        return sorted(out, key=lambda r: (str(r["host"]), r["pid"]))


def _within(value: str | int) -> int:
    """`--within`: 1h, 1d, 7d (or seconds), at most ten years."""
    from logcount.config import parse_duration
    from logcount.errors import ConfigError

    try:
        seconds = parse_duration(value, "--within")
    except ConfigError as exc:
        raise WindowError(str(exc)) from None
    if seconds > 3660 * 86400:
        raise WindowError(f"--within {value!r} is longer than ten years")
    return seconds


def open_store(config: Config) -> Any:
    """The configured store when there is one to read; None before any rollup (a default
    SQLite file that does not exist yet) or while the store module is not installed."""
    url = config.resolved_store()
    if url.startswith("sqlite:///") and not os.path.exists(os.path.expanduser(url[10:])):
        return None  # nothing rolled up yet: SQLAlchemy need not even be imported
    try:
        from logcount.sinks.store import Store
    except ImportError:
        return None
    try:
        return Store.from_config(config)
    except LogcountError:
        raise
    except Exception as exc:  # SQLAlchemy errors of every kind
        raise StoreError(f"cannot open the store: {type(exc).__name__}") from None


_BEAT_FIELDS = {
    "host": "?",
    "pid": 0,
    "mode": "?",
    "lines": 0,
    "rate": 0.0,
    "malformed": 0,
    "lag": 0,
}


def _heartbeat(value: Any) -> dict[str, Any] | None:
    """A reader's heartbeat as `status` shows it, or None for a value that is not one:
    any process that can write to this Redis writes heartbeats, and one bad value must not
    hide the others."""
    try:
        beat = json.loads(value) if value else None
    except ValueError:
        return None
    if not isinstance(beat, dict):
        return None
    for name, default in _BEAT_FIELDS.items():
        kinds = (int, float) if isinstance(default, int | float) else (str,)
        value = beat.get(name)
        if not isinstance(value, kinds) or isinstance(value, bool):
            beat[name] = default
    return beat
