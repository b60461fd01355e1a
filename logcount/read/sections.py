"""Sections: paths rolled up to their first N segments (`top --by path --depth N`), and
a whole section's hits per day (`hits --prefix /blog/`).

A section is the path cut after its Nth segment's slash: at depth 1 `/blog/2015/a` is in
`/blog/`, at depth 2 in `/blog/2015/`; a path with fewer segments is its own section
(`/about`, `/`). Hits, bytes and response times of a section are the sums of its paths';
its visitors, where the store keeps them, the union of its paths' visitors (per day, over
every source, summed over the days as a path row's are), never a sum of the paths'.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from logcount import timing
from logcount.dimensions import MAX_DAYS
from logcount.errors import LogcountError
from logcount.read.report import (
    SORTS,
    Window,
    WindowError,
    build_top,
    reading_redis,
)
from logcount.sinks import keys

MAX_DEPTH = 32
# A section report ranks every member of the window's path buckets: each bucket holds
# at most max_members of them (and the store as many per source and day).
ALL_ROWS = 1_000_000


class SectionError(LogcountError):
    exit_code = 2  # a usage error, like click's


def section_of(path: str, depth: int) -> str:
    """`/blog/2015/a` at depth 1 -> `/blog/`; a path of fewer segments stays itself;
    `(other)` (the members folded away) stays `(other)`."""
    if not path.startswith("/"):
        return path
    end = 0
    for _ in range(depth):
        end = path.find("/", end + 1)
        if end < 0:
            return path
    return path[: end + 1]


def check_depth(depth: int, by: str) -> int:
    if by != "path":
        raise SectionError("--depth rolls paths up into sections: use it with --by path")
    if not 1 <= depth <= MAX_DEPTH:
        raise SectionError(f"--depth must be from 1 to {MAX_DEPTH}")
    return depth


def build_sections(
    client: Any,
    store: Any,
    site: str,
    window: Window,
    depth: int,
    limit: int,
    now: datetime,
    sort: str = "hits",
) -> dict[str, Any]:
    """The `top --by path --depth N` report: the JSON shape of `top`, one row per section
    (no trend: a section is many members), `"depth": N` beside `"by"`."""
    report = build_top(client, store, site, window, "path", ALL_ROWS, now, None, sort, False)
    sections: dict[str, dict[str, Any]] = {}
    for row in report["rows"]:
        name = section_of(row["key"], depth)
        found = sections.get(name)
        if found is None:
            sections[name] = {**row, "key": name, "visitors": None, "trend": []}
        else:
            for field in ("hits", "bytes", "time_us"):
                found[field] += row[field]
    if report["window"]["source"] == "store":
        from logcount.sinks.section_store import grouped_path_visitors

        visitors = grouped_path_visitors(store, site, window.days(), lambda p: section_of(p, depth))
        for name, row in sections.items():
            row["visitors"] = visitors.get(name, 0)
    field = SORTS[sort][0]
    rows = sorted(sections.values(), key=lambda r: (-r[field], r["key"]))[:limit]
    for row in rows:
        time_us = row.pop("time_us")
        if "time_avg_ms" in row:  # the section's average, from its sums
            row["time_avg_ms"] = timing.average_ms(time_us, row["hits"])
    report["rows"] = rows
    report["depth"] = depth
    return report


def _glob(prefix: str) -> str:
    """A Redis MATCH pattern for the members starting with `prefix`, literally."""
    escaped = "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
    return escaped + "*"


def build_prefix_hits(
    client: Any, store: Any, site: str, prefix: str, days: int, today: date
) -> dict[str, Any]:
    """`hits --prefix /blog/`: the hits of every path in the section, today and per day
    (rolled-up days from the store, the rest from the live day buckets)."""
    if not 1 <= days <= MAX_DAYS:
        raise WindowError(f"--days must be from 1 to {MAX_DAYS:,}")
    dates = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
    rolled: set[date] = set()
    stored: dict[date, int] = {}
    if store is not None and days > 1:
        rolled = set(store.rolled_days(site, [d for d in dates if d < today]))
        if rolled:
            from logcount.sinks.section_store import daily_prefix_hits

            stored = daily_prefix_hits(store, site, prefix, sorted(rolled))
    history = []
    pattern = _glob(prefix)
    with reading_redis(client):
        for d in dates:
            if d in rolled:
                history.append({"date": d.isoformat(), "hits": stored.get(d, 0), "source": "store"})
                continue
            key = keys.members(site, "path", "day", d.strftime("%Y%m%d"))
            hits = sum(int(score) for _, score in client.zscan_iter(key, match=pattern, count=1000))
            history.append({"date": d.isoformat(), "hits": hits, "source": "live"})
    return {
        "site": site,
        "prefix": prefix,
        "today": history[-1]["hits"],
        "total": sum(h["hits"] for h in history),
        "days": history,
    }
