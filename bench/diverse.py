"""Combined log lines as diverse as a real busy day, deterministic from a seed, streamed.

    .venv/bin/python bench/diverse.py [--lines N] [--seed S] [options] [-o FILE]

The benches' other input repeats 10,000 real lines, so every cache in the counting code
hits: ~1,900 visitors, ~1,700 request lines and ~560 agents however many lines are fed.
This generator draws each line from populations sized like a real day's instead (see
`Spec` for the defaults and the README's Performance section for why):

- visitors (client address + agent) come in short sessions of a few requests, several
  sessions open at once so their lines interleave; their number grows with the lines, and
  several visitors may share an address (NAT, carriers); a share of addresses is IPv6;
- request lines: a site's pages and assets, popularity Zipf-like, plus a share of
  one-off requests (scanners probing for /wp-login.php and .env, query strings) that are
  new every time and answered 404;
- agents: browser strings built from families and version numbers, Zipf-like, plus a
  dozen named crawlers that fetch pages from a few addresses each, without referrer;
- referrers: "-" for a share of landings, external sites (search, social, a long tail of
  hosts and pages) for the rest, then the visitor's previous page on this site;
- statuses from a mix (mostly 200 and 304, some 30x, 404s and 5xx), sizes drawn from a
  log-normal law ("-" where Apache writes no body);
- timestamps over one day in order, denser in the afternoon than at night.

Memory stays constant whatever the number of lines: every member is derived from its
index (addresses by a bijection of the index, strings by a hash of it), and the only
tables are bounded by the fixed populations (pages, agents, referrers), never by lines.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from pathlib import Path

DAY = 86_400
# Addresses 1.0.0.0-223.255.255.255: a bijection index -> address through a multiplier
# prime to the range, so n indices give exactly n distinct addresses in scattered nets.
_V4_BASE, _V4_RANGE, _V4_MUL = 1 << 24, 223 << 24, 2_654_435_761

BROWSERS = (
    (
        30,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/{a}.0.{b}.{c} Safari/537.36",
    ),
    (
        22,
        "Mozilla/5.0 (Linux; Android {o}; {d}) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/{a}.0.{b}.{c} Mobile Safari/537.36",
    ),
    (
        18,
        "Mozilla/5.0 (iPhone; CPU iPhone OS {o}_{c2} like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/{o}.{c2} Mobile/15E148 Safari/604.1",
    ),
    (
        9,
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_{c2}) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/{o}.{c2} Safari/605.1.15",
    ),
    (8, "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{a}.0) Gecko/20100101 Firefox/{a}.0"),
    (
        6,
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/{a}.0.{b}.{c} Safari/537.36 Edg/{a}.0.{b}.{c}",
    ),
    (
        3,
        "Mozilla/5.0 (Linux; Android {o}; SAMSUNG {d}) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/{o}.0 Chrome/{a}.0.0.0 Mobile Safari/537.36",
    ),
    (2, "Mozilla/5.0 (X11; Linux x86_64; rv:{a}.0) Gecko/20100101 Firefox/{a}.0"),
    (1, "Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1; Trident/5.0; {d})"),
    (1, "python-requests/2.{c2}.{o}"),
)
DEVICES = ("SM-G991B", "Pixel 7", "SM-A536B", "Redmi Note 12", "K", "moto g(60)", "CPH2211")
# (share of bot lines, agent): the crawlers a public site sees most.
BOTS = (
    (30, "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
    (15, "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"),
    (
        10,
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
        "+https://openai.com/gptbot)",
    ),
    (10, "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)"),
    (8, "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)"),
    (6, "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)"),
    (5, "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)"),
    (4, "Mozilla/5.0 (compatible; Applebot/0.1; +http://www.apple.com/go/applebot)"),
    (4, "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"),
    (3, "Mozilla/5.0 (compatible; DuckDuckBot-Https/1.1; https://duckduckgo.com/duckduckbot)"),
    (3, "Mozilla/5.0 (compatible; PetalBot;+https://webmaster.petalsearch.com/site/petalbot)"),
    (2, "Mozilla/5.0 (compatible; MJ12bot/v1.4.8; http://mj12bot.com/)"),
)
SECTIONS = ("news", "products", "press", "blog", "docs", "support", "events", "jobs", "about")
ASSETS = ("css", "js", "png", "jpg", "svg", "woff2", "webp", "ico")
SEARCH = (
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://duckduckgo.com/",
    "https://www.google.de/",
    "https://search.yahoo.com/",
    "https://yandex.ru/",
)
PROBES = (
    "/wp-login.php",
    "/.env",
    "/xmlrpc.php",
    "/phpmyadmin/index.php",
    "/cgi-bin/luci/;stok=/locale",
    "/.git/config",
    "/vendor/phpunit/eval-stdin.php",
)


@dataclass(frozen=True)
class Spec:
    """What a generated day holds. The defaults are a busy public site's day; per-line
    populations are multiplied by the number of lines (a day with more traffic meets more
    people, not more pages)."""

    lines: int = 1_000_000
    seed: int = 1
    date: str = "2015-05-17"  # the real log's day, so the benches' day keys are the same
    visitors_per_line: float = 1.5  # population of (address, agent) pairs drawn from
    clients_per_visitor: float = 0.9  # < 1: some addresses serve several visitors
    session_lines: float = 2.0  # mean requests a session makes (geometric)
    open_sessions: int = 48  # sessions whose lines interleave at any time
    ipv6_share: float = 0.15
    requests: int = 2_000  # a site's distinct pages and assets
    oneoff_share: float = 0.003  # requests never seen before: probes and query strings
    agents: int = 3_000  # distinct browser agent strings
    bot_share: float = 0.12  # lines from the crawlers in BOTS
    bot_clients: int = 40  # addresses each crawler fetches from
    referrers: int = 20_000  # distinct external referrers (hosts x pages)
    no_referrer_share: float = 0.4  # landings without referrer
    statuses: str = "200:80,304:9,301:2,302:2,404:5,403:0.5,500:0.8,502:0.2,503:0.5"
    size_median: int = 6_000  # bytes of a body, log-normal around this
    diurnal: float = 0.6  # 0: flat; 0.6: the busiest second 4x the quietest

    def name(self) -> str:
        """A file name that changes with every field (a cached file is this spec's)."""
        digest = hashlib.sha256(repr(sorted(asdict(self).items())).encode()).hexdigest()
        return f"diverse-{self.lines}-{digest[:10]}.log"


def _mix(x: int) -> int:
    """splitmix64's finaliser: the hash that turns an index into its member's traits."""
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def zipf(u: float, n: int, s: float = 1.0) -> int:
    """An index in [0, n) from a uniform u, popularity falling as 1/rank^s (the inverse
    of the continuous law's distribution: one pow per draw, no table)."""
    x = (n + 1) ** u if s == 1.0 else (((n + 1) ** (1 - s) - 1) * u + 1) ** (1 / (1 - s))
    return min(n - 1, int(x) - 1)


def weighted(pairs: tuple[tuple[float, str], ...]) -> tuple[list[float], list[str]]:
    total = sum(w for w, _ in pairs)
    acc, cum = 0.0, []
    for w, _ in pairs:
        acc += w / total
        cum.append(acc)
    return cum, [v for _, v in pairs]


def pick(cum: list[float], values: list[str], u: float) -> str:
    for c, v in zip(cum, values, strict=True):
        if u < c:
            return v
    return values[-1]


def address(index: int, ipv6_share: float, seed: int) -> str:
    h = _mix(index ^ (seed << 40))
    if (h & 0xFFFF) / 65536 < ipv6_share:
        # the index itself in the low groups keeps distinct indices distinct
        return f"2a0{h >> 60 & 7:x}:{h >> 32 & 0xFFFF:x}:{h >> 16 & 0xFFF:x}::{index:x}"
    v = _V4_BASE + (index * _V4_MUL + seed) % _V4_RANGE
    return f"{v >> 24}.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}"


def browser(index: int, seed: int) -> str:
    h = _mix(index * 7 + seed)
    template = pick(*_BROWSERS, (h & 0xFFFF) / 65536)
    return template.format(
        a=100 + (h >> 16) % 25,
        b=4000 + (h >> 24) % 2500,
        c=(h >> 36) % 200,
        c2=(h >> 44) % 7,
        o=10 + (h >> 48) % 8,
        d=DEVICES[(h >> 56) % len(DEVICES)],
    )


_BROWSERS = weighted(BROWSERS)
_BOTS = weighted(BOTS)


class Day:
    """The lines of one generated day, in order; iterate `chunks()` to write them."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.visitors = max(1, int(spec.lines * spec.visitors_per_line))
        self.clients = max(1, int(self.visitors * spec.clients_per_visitor))
        self.assets = max(1, spec.requests // 5)  # the most requested: css, js, logos
        self.pages = max(1, spec.requests - self.assets)
        self.statuses = weighted(
            tuple((float(w), s) for s, w in (p.split(":") for p in spec.statuses.split(",")))
        )
        # bounded by the populations, not by the lines: strings made once per member
        self._agents: dict[int, str] = {}
        self._paths: dict[int, str] = {}
        self._referrers: dict[int, str] = {}
        self.sessions = [self._session() for _ in range(spec.open_sessions)]

    def _session(self) -> list[object]:
        """[address, agent, protocol, lines left, current page or -1, landing referrer]"""
        spec, rng = self.spec, self.rng
        v = zipf(rng.random(), self.visitors, 0.3)  # returning visitors, mildly skewed
        h = _mix(v ^ spec.seed)
        client = address(h % self.clients, spec.ipv6_share, spec.seed)
        a = zipf((h >> 32) / 2**32, spec.agents)
        agent = self._agents.get(a) or self._agents.setdefault(a, browser(a, spec.seed))
        proto = "HTTP/2.0" if (h >> 8) & 1 else "HTTP/1.1"
        left = 1 + int(math.log(1 - rng.random()) / math.log(1 - 1 / spec.session_lines))
        referrer = "-" if rng.random() < spec.no_referrer_share else self._external()
        return [client, agent, proto, left, -1, referrer]

    def _external(self) -> str:
        r = zipf(self.rng.random(), self.spec.referrers)
        found = self._referrers.get(r)
        if found is None:
            h = _mix(r + (self.spec.seed << 32))
            if r % 4 == 0:
                found = SEARCH[h % len(SEARCH)]
            else:  # a long tail of sites linking here, a few pages each
                found = f"https://{'www.' if h & 1 else ''}site{h % (self.spec.referrers // 3 + 1)}"
                found += f".{('com', 'org', 'net', 'de', 'fr', 'io')[(h >> 8) % 6]}"
                found += f"/{SECTIONS[(h >> 16) % len(SECTIONS)]}/{(h >> 24) % 997}.html"
            self._referrers[r] = found
        return found

    @staticmethod
    def method(index: int) -> str:
        """Forms take POSTs, monitors send HEADs: the method is the request's own."""
        m = index % 50
        return "POST" if m == 7 else "HEAD" if m == 13 else "GET"

    def path(self, index: int) -> str:
        """Member `index` of the site's requests: assets first (the most requested)."""
        found = self._paths.get(index)
        if found is None:
            h = _mix(index * 31 + self.spec.seed)
            section = SECTIONS[h % len(SECTIONS)]
            if index < self.assets:
                ext = ASSETS[(h >> 8) % len(ASSETS)]
                found = f"/static/{section}/{(h >> 16) % 100_000:05d}.{ext}"
            elif (h >> 8) % 10 == 0:  # listings: one page with a page number
                found = f"/{section}/?page={(h >> 16) % 40 + 1}"
            else:
                found = f"/{section}/{(h >> 16) % 1_000_000}-item-{index}/"
            self._paths[index] = found
        return found

    def _human(self) -> tuple[str, str, str, str, bool]:
        """(address, request line, referrer, agent, one-off) of a browser's next request."""
        rng, spec = self.rng, self.spec
        slot = rng.randrange(len(self.sessions))
        session = self.sessions[slot]
        client, agent, proto, left, page, referrer = session
        assert isinstance(page, int) and isinstance(left, int)
        if page >= 0:
            referrer = f"https://www.example.com{self.path(page)}"
        if page >= 0 and rng.random() < 0.6:
            target = zipf(rng.random(), self.assets)
        else:
            target = page = self.assets + zipf(rng.random(), self.pages)
        path, oneoff = self.path(target), rng.random() < spec.oneoff_share
        if oneoff and rng.random() < 0.5:  # a scanner's probe, new every time
            path = f"{PROBES[rng.randrange(len(PROBES))]}?{rng.getrandbits(40):x}"
            if rng.random() < 0.5:
                path = f"/wp-content/plugins/{rng.getrandbits(40):x}/readme.txt"
        elif oneoff:  # a link shared with a tracking id
            path = f"{path}{'&' if '?' in path else '?'}fbclid={rng.getrandbits(64):x}"
        if left <= 1:
            self.sessions[slot] = self._session()
        else:
            session[3], session[4] = left - 1, page
        return (
            str(client),
            f"{self.method(target)} {path} {proto}",
            str(referrer),
            str(agent),
            oneoff,
        )

    def _bot(self) -> tuple[str, str, str, str, bool]:
        """A crawler's request: one of its few addresses, any page alike, no referrer."""
        rng, spec = self.rng, self.spec
        u = rng.random()
        agent = pick(*_BOTS, u)
        crawler = _BOTS[1].index(agent)
        client = address(
            self.clients + crawler * spec.bot_clients + rng.randrange(spec.bot_clients),
            0.0,
            spec.seed,
        )
        target = (
            "/robots.txt"
            if rng.random() < 0.01
            else self.path(self.assets + rng.randrange(self.pages))
        )
        return client, f"GET {target} HTTP/1.1", "-", agent, False

    def _size(self, status: str) -> str:
        if status in ("304", "204"):
            return "-"  # Apache's %b for no body
        if status[0] != "2":
            return str(180 + self.rng.randrange(400))
        median = self.spec.size_median
        return str(max(1, int(self.rng.lognormvariate(math.log(median), 1.2))))

    def seconds(self) -> Iterator[int]:
        """The second of the day of each line, in order: the lines' share of the day's
        traffic up to second t follows a rate quietest at 04:00, busiest at 16:00."""
        n, amp = self.spec.lines, self.spec.diurnal
        cum, acc = [0.0], 0.0
        for t in range(DAY):
            acc += 1 - amp * math.cos(2 * math.pi * (t - 4 * 3600) / DAY)
            cum.append(acc)
        t = 0
        for i in range(n):
            target = (i + 0.5) / n * acc
            while cum[t + 1] < target:
                t += 1
            yield t

    def chunks(self, lines_per_chunk: int = 8192) -> Iterator[bytes]:
        spec, rng = self.spec, self.rng
        start = datetime.strptime(spec.date, "%Y-%m-%d")
        stamp_of, stamp = -1, ""
        out: list[str] = []
        for t in self.seconds():
            if t != stamp_of:
                when = start + timedelta(seconds=t)
                stamp_of, stamp = t, when.strftime("[%d/%b/%Y:%H:%M:%S +0000]")
            is_bot = rng.random() < spec.bot_share
            client, request, referrer, agent, oneoff = self._bot() if is_bot else self._human()
            status = (
                "404" if oneoff and "fbclid" not in request else pick(*self.statuses, rng.random())
            )
            out.append(
                f'{client} - - {stamp} "{request}" {status} {self._size(status)} '
                f'"{referrer}" "{agent}"\n'
            )
            if len(out) == lines_per_chunk:
                yield "".join(out).encode()
                out.clear()
        if out:
            yield "".join(out).encode()


def write(spec: Spec, path: Path) -> None:
    with open(path, "wb") as fh:
        for chunk in Day(spec).chunks():
            fh.write(chunk)


def diverse_lines(spec: Spec, directory: Path) -> Path:
    """The file of `spec`'s lines in `directory`, written once and then reused."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / spec.name()
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        write(spec, tmp)
        tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for f in fields(Spec):
        default = f.default
        ap.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=type(default),
            default=default,
            help=f"default {default}",
        )
    ap.add_argument("-o", "--output", help="file to write (default: stdout)")
    args = vars(ap.parse_args(argv))
    output = args.pop("output")
    spec = Spec(**args)
    if output:
        write(spec, Path(output))
        return
    for chunk in Day(spec).chunks():
        sys.stdout.buffer.write(chunk)


if __name__ == "__main__":
    main()
