"""Generate combined log lines with known counts, independently of logcount's code.

Each generated hit knows its normalised path, object, status, bot-ness and bytes, so a
test compares what logcount counted with what was written, not with logcount's own view.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

BROWSERS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.2 Safari/605.1.15",
    'Mozilla/5.0 (compatible; \\"quoted\\" agent) Firefox/99.0',
]
BOTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
]
ROUTES_TOML = """
[[route]]
pattern = "/press/<slug:slug>/<int:id>/"
object  = "press_release"

[[route]]
regex   = '^/products/(?P<id>[0-9]+)(/|$)'
object  = "product"
"""
STATUSES = [200] * 14 + [304, 404, 500, 301]


@dataclass
class Expected:
    paths: Counter[str] = field(default_factory=Counter)
    objects: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    hits: int = 0
    bots: int = 0
    bytes: int = 0
    malformed: int = 0
    visitors: set[tuple[str, str]] = field(default_factory=set)


def _path(rng: random.Random) -> tuple[str, str, str | None]:
    """(as requested, as counted, object)"""
    kind = rng.random()
    if kind < 0.25:
        n = rng.randint(1, 40)
        return f"/press/news-{n}/{n}/", f"/press/news-{n}/{n}/", f"press_release:{n}"
    if kind < 0.45:
        n = rng.randint(1, 30)
        tail = rng.choice(["", "/", "/specs"])
        return f"/products/{n}{tail}?ref=x", f"/products/{n}{tail}", f"product:{n}"
    if kind < 0.55:
        return "/a/./b/../c%7e", "/a/c~", None  # dot segments, %7e is unreserved
    if kind < 0.6:
        return '/q\\"uote', '/q"uote', None  # an escaped quote in the request line
    n = rng.randint(1, 300)
    return f"/page/{n}", f"/page/{n}", None


def generate(
    n: int, day: datetime, seed: int = 1, malformed_every: int = 0, ipv6_share: float = 0.2
) -> tuple[list[bytes], Expected]:
    """n lines on `day` (timestamps spread over the day, in order), and what they count."""
    rng = random.Random(seed)
    exp = Expected()
    lines = []
    for i in range(n):
        if malformed_every and i % malformed_every == malformed_every - 1:
            lines.append(b"garbage that is no log line " + str(i).encode())
            exp.malformed += 1
            continue
        when = day + timedelta(seconds=i * 86400 // n)
        if rng.random() < ipv6_share:
            client = f"2001:db8::{rng.randint(1, 0xFFFF):x}"
        else:
            client = f"10.{rng.randint(0, 3)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        requested, counted, obj = _path(rng)
        status = rng.choice(STATUSES)
        size = 0 if status in (304,) else rng.randint(100, 50_000)
        size_field = "-" if size == 0 else str(size)
        bot = rng.random() < 0.15
        agent = rng.choice(BOTS if bot else BROWSERS)
        referrer = rng.choice(["-", "https://www.example.org/x", "http://news.example.com/"])
        stamp = when.strftime("%d/%b/%Y:%H:%M:%S %z")
        line = (
            f'{client} - - [{stamp}] "GET {requested} HTTP/1.1" {status} {size_field} '
            f'"{referrer}" "{agent}"'
        )
        lines.append(line.encode())
        if bot:
            exp.bots += 1
            continue
        exp.hits += 1
        exp.bytes += size
        exp.paths[counted] += 1
        exp.statuses[str(status)] += 1
        if obj:
            exp.objects[obj] += 1
        exp.visitors.add((client, agent))
    return lines, exp


def day_at(year: int, month: int, day: int, offset_hours: int = 0) -> datetime:
    return datetime(year, month, day, tzinfo=timezone(timedelta(hours=offset_hours)))
