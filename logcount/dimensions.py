"""The tables the counting and the reports are driven by: dimensions and granularities.

A dimension is what a hit is counted by besides its bucket (its path, status, ...); its
members are the values it takes. A granularity is the size of a live bucket. Adding either
starts here: the CLI's choices, the API's checks, the Redis keys, the store's reads and the
README's table are made from these rows. This module imports nothing of logcount, so that
every part may import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Dimension:
    name: str
    member: str  # what one member is, for --help and the README
    # distinct visitors kept per member: in the store (a sketch per row); the live buckets
    # keep visitors per site only (a HyperLogLog per bucket), so live rows show none
    visitors: bool
    # What yields a member: "hit" (a hit key's fields: Aggregator._describe), or one of
    # the scanner's other tables: "agent", "referrer", "client", "bot" (a bot line's agent)
    source: str = "hit"
    listed: bool = True  # a --by choice (a hidden one serves another report)

    @property
    def timed(self) -> bool:
        """Durations summed per member (formats with %D, %T): a hit key's dimensions,
        whose sums ride in the scanner's hit-key slot."""
        return self.source == "hit"


DIMENSIONS: dict[str, Dimension] = {
    d.name: d
    for d in (
        Dimension("path", "the normalised request path", visitors=True),
        Dimension("object", "the application object a path shows (see [routes])", visitors=True),
        Dimension("status", "the response status code", visitors=False),
        Dimension("method", "the request method; one not in RFC 9110 is (other)", visitors=False),
        Dimension("bot", "the crawler's name, for the lines of bots", False, "bot"),
        # "404 /missing": the paths of an error status, for `top --by path --status 404`
        Dimension("status_path", "an error status and a path", visitors=False, listed=False),
        Dimension("os", "the operating system the user agent names", False, "agent"),
        # its types are the rows of DEVICE_TYPES below
        Dimension("device", "the type of device the user agent names", False, "agent"),
        Dimension("client", "the client address (%h, %a); see [privacy]", False, "client"),
        Dimension("referrer", "the referring host, (direct) without one", False, "referrer"),
        Dimension("agent", "the browser or crawler family of the user agent", False, "agent"),
    )
}
# The status classes whose paths status_path keeps: a drill-down is for 404s and 5xx, and
# 2xx-3xx would count nearly every path a second time.
ERROR_CLASSES = ("4", "5")
# The device types (agents.device_type): the first row whose pattern is found in the
# agent's first AGENT_PREFIX bytes names it, none "other". Agents name several kinds at
# once (a TV says Linux and Safari, a Kindle Fire "Mobile Safari", an Xbox "Windows NT"),
# so the specific rows come first. Each pattern is literals and bounded repeats, without
# nested ones: one search costs linear time in the prefix.
# Kept as text: agents.device_type compiles them once, in the process that counts
# agents (every command imports this table; a compile is ~7 M instructions).
DEVICE_TYPES: tuple[tuple[str, str], ...] = (
    ("console", r"PlayStation|PLAYSTATION|Xbox|Nintendo"),
    (
        "tv",
        r"(?i:smart[- ]?tv)|HbbTV|AppleTV|Apple TV|tvOS|CrKey|GoogleTV|Google TV|Android TV"
        r"|BRAVIA|NetCast|NETTV|Web0S|webOS\.TV|Roku|\bAFT[A-Z]|VIDAA|Opera TV|Viera",
    ),
    # "Tablet PC 2.0" is Windows' pen support on desktops and laptops
    ("tablet", r"iPad|Tablet(?! PC)|Kindle|Silk/|\bKF[A-Z]{2,6}\b|PlayBook|TouchPad"),
    (
        "mobile",
        r"Mobi|iPhone|iPod|Windows Phone|BlackBerry|BB10|Opera Mini|Symbian|Series ?[46]0"
        r"|Nokia|MIDP|MAUI|Maui|KAIOS|KaiOS|webOS|Fennec|UP\.Browser|NetFront",
    ),
    # Android's browsers say Mobile on a phone and not on a tablet; the agents of its
    # apps (Dalvik/, Instagram's) say neither, so only a browser's is read so
    ("tablet", r"^Mozilla/5\.0 \(Linux; (?:U; )?Android"),
    (
        "desktop",
        r"Windows NT|Windows (?:9[58]|XP|ME|2000)|Win(?:9[58]|NT|32|64)\b|Macintosh"
        r"|MacBook|iMac|Macmini|Mac OS X|X11|CrOS|Linux (?:x86_64|i[3-6]86|aarch64)"
        r"|FreeBSD|OpenBSD|NetBSD|SunOS",
    ),
)
OTHER_DEVICE = "other"  # an agent no row names (curl, a feed reader, an app's own)
BOT_DEVICE = "bot"  # a bot's line, counted in hits with count_bots = true
HIT_KEY_DIMS = tuple(name for name, d in DIMENSIONS.items() if d.source == "hit")
DIMENSION_NAMES = tuple(name for name, d in DIMENSIONS.items() if d.listed)
# `top --sort`: what rows are ranked by (report.SORTS says where each is kept); time is
# the sum of a member's response times, for the timed dimensions only
SORT_NAMES = ("hits", "bytes", "time")


@dataclass(frozen=True)
class Granularity:
    name: str
    label: str  # strftime of a bucket's label; labels of one length per granularity
    step: timedelta
    default_ttl: str  # how long its buckets live, as the config spells it
    max_labels: int  # buckets one window may name: a window is a command per bucket

    @property
    def cut(self) -> int:
        """Characters of a minute label ("YYYYmmddHHMM") that make this one's label."""
        return len(datetime(2000, 1, 1).strftime(self.label))

    @property
    def default_ttl_seconds(self) -> int:
        number, unit = int(self.default_ttl[:-1]), self.default_ttl[-1]
        return number * {"m": 60, "h": 3600, "d": 86400}[unit]


# Day windows reach the store, which keeps every day: ten years, as `hits --days`.
MAX_DAYS = 3660

# Finest first: a window uses the finest whose buckets still live.
GRANULARITIES: dict[str, Granularity] = {
    g.name: g
    for g in (
        Granularity("minute", "%Y%m%d%H%M", timedelta(minutes=1), "3h", 7 * 1440),
        Granularity("hour", "%Y%m%d%H", timedelta(hours=1), "8d", 366 * 24),
        Granularity("day", "%Y%m%d", timedelta(days=1), "40d", MAX_DAYS),
    )
}
GRANULARITY_NAMES = tuple(GRANULARITIES)
# The live sets of visitors per event and per section are kept per hour and day (their
# TTLs), not per minute: one set a minute for each would cost sixty an hour.
SET_GRANS = ("hour", "day")
