"""Sections: paths rolled up to their first N segments (`top --by path --depth N`), and
a whole section's hits per day (`hits --prefix /blog/`).

A section is the path cut after its Nth segment's slash: at depth 1 `/blog/2015/a` is in
`/blog/`, at depth 2 in `/blog/2015/`; a path with fewer segments is its own section
(`/about`, `/`). Hits, bytes and response times of a section are the sums of its paths';
its visitors the union of its paths' visitors, never a sum: in the store over every
source and day of the window, live one PFCOUNT over the section's HyperLogLogs of the
window's hour or day buckets (count/section_visitors.py keeps them).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from logcount import timing
from logcount.count.paths import section_of
from logcount.dimensions import SET_GRANS
from logcount.errors import LogcountError
from logcount.read.ranking import SORTS
from logcount.read.report import (
    Window,
    build_top,
    history_days,
    history_report,
    reading_redis,
    store_days_of,
)
from logcount.sinks import keys

MAX_DEPTH = 32
# A section report ranks every member of the window's path buckets: each bucket holds
# at most max_members of them (and the store as many per source and day).
ALL_ROWS = 1_000_000


class SectionError(LogcountError):
    exit_code = 2  # a usage error, like click's


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
    kept_depth: int = 0,
) -> dict[str, Any]:
    """The `top --by path --depth N` report: the JSON shape of `top`, one row per section
    (no trend: a section is many members), `"depth": N` beside `"by"`. `kept_depth`: the
    depths whose sections the live buckets keep visitors of ([live] section_depth)."""
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
    field = SORTS[sort][0]
    rows = sorted(sections.values(), key=lambda r: (-r[field], r["key"]))[:limit]
    _add_visitors(client, store, site, window, depth, now, report, rows, kept_depth)
    for row in rows:
        time_us = row.pop("time_us")
        if "time_avg_ms" in row:  # the section's average, from its sums
            row["time_avg_ms"] = timing.average_ms(time_us, row["hits"])
    report["rows"] = rows
    report["depth"] = depth
    return report


def _add_visitors(
    client: Any,
    store: Any,
    site: str,
    window: Window,
    depth: int,
    now: datetime,
    report: dict[str, Any],
    rows: list[dict[str, Any]],
    kept_depth: int,
) -> None:
    """Each row's visitors: the union of its paths' sets over the stored days, plus the
    union of its HyperLogLogs over the live buckets (a visitor seen on both sides counts
    twice, as in the window's total); None where one side keeps none."""
    source = report["window"]["source"]
    rolled = store_days_of(store, site, window, "path", now.date()) if source != "live" else []
    stored: dict[str, int] = {}
    if rolled:
        from logcount.sinks.section_store import grouped_path_visitors

        stored = grouped_path_visitors(store, site, rolled, lambda p: section_of(p, depth))
    days = {d.strftime("%Y%m%d") for d in rolled}
    live = [lbl for lbl in window.labels if lbl[:8] not in days] if source != "store" else []
    # Live sections keep visitors per hour and day (count/section_visitors.py), at the
    # depths of [live] section_depth: a window of minutes, or a deeper section, has none.
    known = not live or (window.gran in SET_GRANS and depth <= kept_depth)
    with reading_redis(client):
        for row in rows:
            name = row["key"]
            if not known or not name.startswith("/"):
                continue  # stays None: `(other)` is many sections, `-` none
            seen = stored.get(name, 0)
            if live:
                names = [
                    keys.section_visitors(site, str(depth), window.gran, lbl, name) for lbl in live
                ]
                here = int(client.pfcount(*names))
                if not here and source == "live":
                    continue  # hits but no visitors kept: past max_members sections
                seen += here
            row["visitors"] = seen


def _glob(prefix: str) -> str:
    """A Redis MATCH pattern for the members starting with `prefix`, literally."""
    escaped = "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
    return escaped + "*"


def build_prefix_hits(
    client: Any, store: Any, site: str, prefix: str, days: int, today: date
) -> dict[str, Any]:
    """`hits --prefix /blog/`: the hits of every path in the section, today and per day
    (rolled-up days from the store, the rest from the live day buckets)."""
    dates, rolled = history_days(store, site, days, today)
    stored: dict[date, int] = {}
    if rolled:
        from logcount.sinks.section_store import daily_prefix_hits

        stored = daily_prefix_hits(store, site, prefix, sorted(rolled))
    pattern = _glob(prefix)
    live: dict[date, int] = {}
    with reading_redis(client):
        for d in dates:
            if d not in rolled:
                key = keys.members(site, "path", "day", d.strftime("%Y%m%d"))
                scan = client.zscan_iter(key, match=pattern, count=1000)
                live[d] = sum(int(score) for _, score in scan)
    return history_report(site, ("prefix", prefix), dates, rolled, stored, live)
