"""Held-out visitor journeys for issue 15's acceptance (tests/test_journeys_heldout.py):
scripted visitors over three whole past days (a fifth starting in the hour before a
midnight, some walking a pricing -> signup -> checkout funnel, some logged in, most with a
session cookie, every seventh back today), written as cronolog's files of two hosts, and
the answers worked out by hand from who did what when: sets of visitors, apart from
tests/test_events.py's generator and from logcount's code."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ZONE: Any = UTC  # days and hours are counted in this zone (the config's timezone)
WRITTEN: Any = UTC  # the offset the lines are written in
TODAY: date
DAYS: list[date]  # the three whole past days
START: datetime
END: datetime


def set_days() -> None:
    """Today and the three past days, taken when a test writes its lines (set_days() at
    its start), not at import: a run that crosses midnight would ask of other days."""
    global TODAY, DAYS, START, END
    TODAY = datetime.now(ZONE).date()
    DAYS = [TODAY - timedelta(days=n) for n in (3, 2, 1)]
    START = datetime(DAYS[0].year, DAYS[0].month, DAYS[0].day, tzinfo=ZONE)
    END = START + timedelta(days=3)


set_days()
FORMAT = '%h %l %u %t \\"%r\\" %>s %b \\"%{Referer}i\\" \\"%{User-Agent}i\\" \\"%{sessionid}C\\"'
SECRET = "held-out journeys' secret, 32 bytes"

CONFIG = f"""site = "@SITE@"
timezone = "@TZ@"
log_format = "{FORMAT}"
event_identity = "@IDENTITY@"

[live]
section_depth = 1

[privacy]
secret = "{SECRET}"

[[route]]
pattern = "/shop/<slug:slug>/<int:id>/"
object = "product"

[[event]]
name = "signup"
path = "/accounts/signup/"
method = "POST"
status = "302"

[[event]]
name = "pricing"
path = "/pricing/"
method = "GET"

[[event]]
name = "paid"
path = "/checkout/"
method = "POST"
status = "2xx"

[[event]]
name = "viewed"
object = "product"

[[event]]
name = "docs"
regex = '^/docs/v[0-9]+/'

[[event]]
name = "post"
path = "/blog/*/*"

[[event]]
name = "api_error"
path = "/api/*"
status = "5xx"
"""
EVENTS = ("signup", "pricing", "paid", "viewed", "docs", "post", "api_error")


@dataclass(frozen=True)
class Line:
    who: int  # the visitor: one address and agent
    when: datetime
    method: str
    path: str  # as requested (a query string is not part of the counted path)
    status: int
    size: int
    user: str  # %u, "-" when not logged in
    cookie: str  # %{sessionid}C, "-" without one
    bot: bool = False


def address(who: int) -> str:
    return f"198.51.{100 + who // 150}.{who % 50 + 1}"  # three visitors an address


def agent(who: int, bot: bool = False) -> str:
    if bot:
        return "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"
    return f"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{110 + who % 3}.0) Firefox/{who // 50}"


def path_only(line: Line) -> str:
    return line.path.partition("?")[0]


def events_of(line: Line) -> set[str]:
    """The configured events, written out by hand."""
    if line.bot:
        return set()
    path, out = path_only(line), set()
    if path == "/accounts/signup/" and line.method == "POST" and line.status == 302:
        out.add("signup")
    if path == "/pricing/" and line.method == "GET":
        out.add("pricing")
    if path == "/checkout/" and line.method == "POST" and 200 <= line.status < 300:
        out.add("paid")
    parts = path.split("/")
    if len(parts) == 5 and parts[1] == "shop" and parts[3].isdigit() and parts[4] == "":
        out.add("viewed")
    if path.startswith("/docs/v") and path[7:].partition("/")[0].isdigit() and path[7:8] != "/":
        out.add("docs")
    if path.startswith("/blog/") and "/" in path[len("/blog/") :]:
        out.add("post")
    if path.startswith("/api/") and line.status >= 500:
        out.add("api_error")
    return out


# What a visitor may do next: (method, path, status), the events among others.
MOVES = [
    ("GET", "/", 200),
    ("GET", "/about", 200),
    ("GET", "/blog", 301),
    ("GET", "/blog/", 200),
    ("GET", "/blog/2026/held-out?utm=x", 200),
    ("GET", "/blog/2025/other", 200),
    ("GET", "/pricing/", 200),
    ("GET", "/pricing/?plan=pro", 200),
    ("POST", "/pricing/", 405),
    ("GET", "/accounts/signup/", 200),
    ("POST", "/accounts/signup/", 302),
    ("POST", "/accounts/signup/", 200),  # the form again: no signup
    ("POST", "/checkout/", 200),
    ("POST", "/checkout/", 402),
    ("GET", "/checkout/", 200),
    ("GET", "/shop/red-shoes/12/", 200),
    ("GET", "/shop/red-shoes/x/", 404),
    ("GET", "/docs/v2/intro", 200),
    ("GET", "/docs/latest/intro", 200),
    ("GET", "/api/items", 500),
    ("GET", "/api/items", 200),
    ("GET", "/blog/2026/", 200),
]
FUNNEL = [
    ("GET", "/pricing/", 200),
    ("POST", "/accounts/signup/", 302),
    ("POST", "/checkout/", 201),
]
GAPS = [timedelta(minutes=m) for m in (0, 2, 15, 50, 65, 130, 600, 1500, 2000)]


def journeys(seed: int, visitors: int) -> list[Line]:
    """Each visitor starts at a random time of the three days (a fifth of them in the hour
    before a midnight), wanders, and sometimes walks the funnel; some log in (%u: a user
    on two devices is two visitors and one user), most carry a session cookie."""
    rng = random.Random(seed)
    lines = []
    for who in range(visitors):
        if who % 5 == 0:
            when = START + timedelta(days=rng.randrange(2), hours=23, minutes=rng.randrange(60))
        else:
            when = START + timedelta(seconds=rng.randrange(3 * 86400))
        user = f"user{who // 8}@example.org" if who % 4 == 0 else "-"
        cookie = f"s{who // 2:05d}" if who % 3 else "-"
        moves = [rng.choice(MOVES) for _ in range(rng.randint(1, 7))]
        if who % 3 == 0:
            moves[rng.randrange(len(moves)) :] = FUNNEL[: rng.randint(1, 3)]
        for i, (method, path, status) in enumerate(moves):
            when += rng.choice(GAPS)
            if when >= END:
                break
            logged = user if i >= len(moves) // 2 else "-"
            lines.append(
                Line(who, when, method, path, status, 100 + rng.randrange(9000), logged, cookie)
            )
    for n in range(40):  # a crawler walks the same pages: no hit, no visitor, no event
        method, path, status = MOVES[n % len(MOVES)]
        lines.append(
            Line(0, START + timedelta(minutes=97 * n), method, path, status, 10, "-", "-", True)
        )
    return sorted(lines + back_today(rng, visitors), key=lambda x: (x.when, x.who))


def back_today(rng: random.Random, visitors: int) -> list[Line]:
    """Every seventh visitor comes back today, before now: counted live only (today's
    file is not rolled up yet)."""
    now = datetime.now(ZONE)
    today = datetime(TODAY.year, TODAY.month, TODAY.day, tzinfo=ZONE)
    span = int((now - today).total_seconds()) - 120
    if span < 60:
        return []
    out = []
    for who in range(0, visitors, 7):
        method, path, status = rng.choice(FUNNEL + MOVES[6:8] + MOVES[15:18])
        when = today + timedelta(seconds=rng.randrange(span))
        user = f"user{who // 8}@example.org" if who % 4 == 0 else "-"
        cookie = f"s{who // 2:05d}" if who % 3 else "-"
        out.append(Line(who, when, method, path, status, 100 + rng.randrange(9000), user, cookie))
    return out


def log_line(line: Line) -> str:
    stamp = line.when.astimezone(WRITTEN).strftime("%d/%b/%Y:%H:%M:%S %z")
    return (
        f'{address(line.who)} - {line.user} [{stamp}] "{line.method} {line.path} HTTP/1.1" '
        f'{line.status} {line.size} "-" "{agent(line.who, line.bot)}" "{line.cookie}"\n'
    )


def write_files(root: Path, lines: list[Line]) -> dict[str, list[Line]]:
    """cronolog's files: web1 every day, web2 the middle day's odd visitors; a line in the
    last two minutes before the first two midnights sits in the next day's file."""
    files: dict[str, list[Line]] = defaultdict(list)
    for line in lines:
        day = line.when.date()
        late = line.when.hour == 23 and line.when.minute >= 58 and day != DAYS[-1]
        day += timedelta(days=late)
        host = "web2" if day == DAYS[1] and line.who % 2 else "web1"
        files[f"{host}/{day:%Y/%m/%d}/access.log"].append(line)
    for name, some in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("".join(map(log_line, some)))
    return files


# --- the reference answers --------------------------------------------------------------


def identity(line: Line, kind: str) -> Any:
    """Who did it for each `event_identity`; None: nobody known."""
    value = {"visitor": line.who, "%u": line.user, "%{sessionid}C": line.cookie}[kind]
    return None if value == "-" else value


def did(
    lines: list[Line], kind: str, keep: Callable[[Line], bool] = lambda x: True
) -> dict[str, set[Any]]:
    out: dict[str, set[Any]] = {e: set() for e in EVENTS}
    for line in lines:
        who = identity(line, kind)
        if who is not None and keep(line):
            for event in events_of(line):
                out[event].add(who)
    return out


EXPRESSIONS: list[tuple[str, Callable[[dict[str, set[Any]]], set[Any]]]] = [
    ("pricing & signup", lambda d: d["pricing"] & d["signup"]),
    ("signup - paid", lambda d: d["signup"] - d["paid"]),
    ("viewed | docs", lambda d: d["viewed"] | d["docs"]),
    ("pricing - signup - paid", lambda d: d["pricing"] - d["signup"] - d["paid"]),
    (
        "(pricing | viewed) & (signup - paid)",
        lambda d: (d["pricing"] | d["viewed"]) & (d["signup"] - d["paid"]),
    ),
    ("docs | viewed & paid", lambda d: d["docs"] | (d["viewed"] & d["paid"])),
    ("viewed & signup - paid", lambda d: d["viewed"] & (d["signup"] - d["paid"])),
    (
        "(post | api_error) - (docs | pricing)",
        lambda d: (d["post"] | d["api_error"]) - (d["docs"] | d["pricing"]),
    ),
]


def between(start: datetime, end: datetime) -> Callable[[Line], bool]:
    return lambda x: start <= x.when < end


def visitors_answer(
    lines: list[Line],
    kind: str,
    expr: Callable[..., set[Any]],
    days: int,
    per: str | None,
    until: datetime,
) -> dict[str, Any]:
    """The expression over the whole window of `days` days from START, and per bucket up
    to `until` (the window's end: now, for a window with today)."""
    end = START + timedelta(days=days)
    rows = []
    if per == "week":  # Monday to Sunday, cut to the window; labelled by its first day in it
        for monday in sorted(
            {period_of(START.date() + timedelta(days=i), "week") for i in range(days)}
        ):
            first = max(datetime(monday.year, monday.month, monday.day, tzinfo=ZONE), START)
            keep = between(first, min(first + timedelta(days=7 - first.weekday()), end))
            rows.append({"start": first.isoformat(), "visitors": len(expr(did(lines, kind, keep)))})
    elif per is not None:
        width = timedelta(hours=1) if per == "hour" else timedelta(days=1)
        every = days * 24 if per == "hour" else days
        for s in [START + i * width for i in range(every) if START + i * width < until]:
            n = len(expr(did(lines, kind, between(s, s + width))))
            rows.append({"start": s.isoformat(), "visitors": n})
    return {"total": len(expr(did(lines, kind, between(START, end)))), "per": rows}


def funnel_answer(lines: list[Line], kind: str, events: list[str], within: int | None) -> list[int]:
    """README: with --within of a day or less steps are compared by hour buckets, else
    by days; a step in the same bucket as the one before counts as after it; SPAN is
    rounded down to whole buckets past it."""
    step = 3600 if within is not None and within <= 86400 else 86400
    reach = 10**9 if within is None else within // step
    at: dict[Any, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for line in lines:
        who = identity(line, kind)
        for event in events_of(line) if who is not None else ():
            at[who][event].add(int((line.when - START).total_seconds()) // step)
    out = [0] * len(events)
    for buckets in at.values():
        reached = buckets[events[0]]
        for i, event in enumerate(events):
            if i:
                reached = {u for u in buckets[event] if any(t <= u <= t + reach for t in reached)}
            if not reached:
                break
            out[i] += 1
    return out


def period_of(day: date, cohort: str) -> date:
    """The first day of the day, week (from Monday) or calendar month `day` is in."""
    if cohort == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1) if cohort == "month" else day


def retention_answer(
    lines: list[Line], kind: str, event: str | None, cohort: str, n: int
) -> list[dict[str, Any]]:
    """The last `n` periods up to today's: who did the event in each and in no earlier
    one of the table, and how many of them did it again in each later period."""
    periods = [period_of(TODAY, cohort)]
    while len(periods) < n:
        periods.insert(0, period_of(periods[0] - timedelta(days=1), cohort))
    did_on: list[set[Any]] = [set() for _ in periods]
    for line in lines:
        who = identity(line, kind)
        names = events_of(line) if event is None else events_of(line) & {event}
        start = period_of(line.when.date(), cohort)
        if who is not None and names and start in periods:
            did_on[periods.index(start)].add(who)
    seen: set[Any] = set()
    out = []
    for i, day in enumerate(periods):
        fresh = did_on[i] - seen
        seen |= did_on[i]
        out.append(
            {
                "start": day.isoformat(),
                "size": len(fresh),
                "back": [len(fresh & later) for later in did_on[i + 1 :]],
            }
        )
    return out


def section(path: str) -> str:
    first, slash, _ = path[1:].partition("/")
    return f"/{first}/" if slash else path


def sections_answer(lines: list[Line], days: list[date], stored: bool) -> list[dict[str, Any]]:
    hits: dict[str, int] = defaultdict(int)
    size: dict[str, int] = defaultdict(int)
    seen: dict[str, set[int]] = defaultdict(set)  # over the window: a union, not a sum
    for line in lines:
        if line.bot or line.when.date() not in days:
            continue
        key = section(path_only(line))
        hits[key] += 1
        size[key] += line.size
        seen[key].add(line.who)
    rows = []
    for key in sorted(hits, key=lambda k: (-hits[k], k)):
        visitors = len(seen[key]) if stored else None
        rows.append({"key": key, "hits": hits[key], "bytes": size[key], "visitors": visitors})
    return rows


def prefix_answer(lines: list[Line], prefix: str) -> list[int]:
    return [
        sum(
            1 for x in lines if not x.bot and x.when.date() == d and path_only(x).startswith(prefix)
        )
        for d in [*DAYS, TODAY]
    ]


def secrets_of(lines: list[Line]) -> set[bytes]:
    """The raw addresses, user names and cookies of the lines."""
    raw = {address(x.who) for x in lines} | {x.user for x in lines} | {x.cookie for x in lines}
    return {s.encode() for s in raw if s != "-"}
