"""From raw log fields to what is counted: site, path, object, bot, agent family, buckets.

Every function here runs once per distinct value, never once per line: the Classifier
keeps a bounded cache for each kind of value (paths, agents, referrers, timestamps).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from logcount.config import Config
from logcount.count.agents import (
    AGENT_PREFIX,
    RAW_AGENT,
    agent_family,
    agent_prefix,
    bot_matcher,
    bot_name,
    device_type,
    os_family,
)
from logcount.count.format_atoms import DAY_LENGTH, clf_value, unescape
from logcount.count.logformat import CompiledFormat, compile_format
from logcount.count.paths import (
    NO_PATH,
    NOT_HTTP,
    normalise_target,
    request_target,
    truncate_utf8,
)
from logcount.count.routes import MAX_TYPE_BYTES, RouteTable
from logcount.dimensions import BOT_DEVICE

MAX_HOST_BYTES = 253  # a DNS name's limit: a longer referrer host is INVALID
MAX_SITE_BYTES = 253  # %v is a server name: the same limit
MAX_OBJECT_BYTES = 200  # "type:id"; a longer id is "type:(invalid)"
# A referrer's host is looked for in its first bytes only; an authority running past them
# is no host (a host is at most 253 bytes, and real user:password parts are short).
REFERRER_PREFIX = 1024
DIRECT = "(direct)"
OTHER_MEMBER = "(other)"  # as keys.OTHER: what a member is folded into
INVALID = "(invalid)"  # a referrer host, site or object id past its cap
CACHE_BYTES = 8 << 20  # keys held by one classifier cache, at most (bytes)
FIRST_YEAR, LAST_YEAR = 1970, 9999  # the store's days: a line outside them is malformed
MONTHS = {
    m: i
    for i, m in enumerate(
        (
            b"Jan",
            b"Feb",
            b"Mar",
            b"Apr",
            b"May",
            b"Jun",
            b"Jul",
            b"Aug",
            b"Sep",
            b"Oct",
            b"Nov",
            b"Dec",
        ),
        1,
    )
}

K = TypeVar("K")
V = TypeVar("V")


def _weight(key: Any) -> int:
    """Bytes (or characters) a key holds: a bytes or str value, or a tuple of them."""
    if isinstance(key, bytes | str):
        return len(key)
    return sum(len(part) for part in key) if isinstance(key, tuple) else 0


class BoundedCache(Generic[K, V]):
    """A dict cache that is emptied when full: cheap, and bounded under a flood, in
    entries and in the bytes of its keys (8 KB values would otherwise make 100,000
    entries some 800 MB).

    With `prefix`, a bytes key longer than that is cut before it is looked up and
    computed: for values that are decided on their first bytes (agents, referrers), so
    that distinct long values share one entry and the cost of computing is bounded."""

    def __init__(
        self,
        compute: Callable[[K], V],
        limit: int = 100_000,
        prefix: int | None = None,
        max_bytes: int = CACHE_BYTES,
    ):
        self.compute = compute
        self.limit = limit
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.held = 0  # bytes of the keys held
        self.data: dict[K, V] = {}

    def __call__(self, key: K) -> V:
        try:
            return self.data[key]
        except KeyError:
            pass
        if self.prefix is not None and len(key) > self.prefix:  # type: ignore[arg-type]
            return self(key[: self.prefix])  # type: ignore[index]
        weight = _weight(key)
        if len(self.data) >= self.limit or self.held + weight > self.max_bytes:
            self.data.clear()
            self.held = 0
        value = self.data[key] = self.compute(key)
        self.held += weight
        return value


# --- agents, referrers --------------------------------------------------------------


def client_member(raw: bytes) -> str:
    """The client address (%h, %a) as a member: an address, or a host name when Apache
    looks them up; INVALID past a DNS name's length."""
    if len(raw) > MAX_HOST_BYTES:
        return INVALID
    return raw.decode("utf-8", "backslashreplace") or "-"


def referrer_host(raw: bytes) -> str:
    """The host a referrer names, lower case; DIRECT without one, "(other)" when it is
    not a URL with a host, INVALID when the host is too long to be a DNS name."""
    value = clf_value(raw[: 4 * REFERRER_PREFIX + 4])  # a byte is logged as 4 at most
    if not value:
        return DIRECT
    text = value[:REFERRER_PREFIX].decode("utf-8", "backslashreplace")
    host = url_hostname(text)
    if not host:
        return "(other)"
    if len(value) > REFERRER_PREFIX and not _AUTHORITY_END.search(text.partition("//")[2]):
        return INVALID  # the authority runs past the prefix: its host is cut
    if len(host.encode("utf-8", "surrogatepass")) > MAX_HOST_BYTES:
        return INVALID
    return host


_AUTHORITY_END = re.compile(r"[/?#]")

# "scheme://host[:port]" followed by a path, query, fragment or nothing: what nearly every
# referrer is. urlsplit took a third of the classifying time on a day of distinct referrers.
_PLAIN_AUTHORITY = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*://([A-Za-z0-9._-]+)(?::[0-9]*)?(?=[/?#]|\Z)"
)


def url_hostname(text: str) -> str | None:
    """urlsplit(text).hostname (None for a URL it cannot split), with the plain case read
    by one regex: no user info, brackets, spaces or controls before the path."""
    plain = _PLAIN_AUTHORITY.match(text)
    if plain is not None:
        return plain.group(1).lower()
    try:
        return urlsplit(text).hostname
    except ValueError:
        return None


def cap_object(found: str) -> str:
    """An object "type:id" within MAX_OBJECT_BYTES: a longer one is "type:(invalid)"."""
    if len(found) * 4 <= MAX_OBJECT_BYTES or len(found.encode()) <= MAX_OBJECT_BYTES:
        return found
    kind = truncate_utf8(found.partition(":")[0], MAX_TYPE_BYTES)
    return f"{kind}:{INVALID}"


# --- time ---------------------------------------------------------------------------


def _offset(raw: bytes) -> timezone:
    sign = -1 if raw[:1] == b"-" else 1
    return timezone(sign * timedelta(hours=int(raw[1:3]), minutes=int(raw[3:5])))


@dataclass(frozen=True)
class Buckets:
    """Labels of the minute, hour and day a line falls in, in the reporting time zone."""

    minute: str  # YYYYMMDDHHMM
    hour: str  # YYYYMMDDHH
    day: str  # YYYYMMDD


def buckets_of(when: datetime) -> Buckets:
    m = when.strftime("%Y%m%d%H%M")
    return Buckets(m, m[:10], m[:8])


def _unnamed(text: str) -> str:
    """An agent left for another process to name (see RAW_AGENT)."""
    return RAW_AGENT + text


class Classifier:
    """Per-distinct-value classification, configured once (and again on reload).

    The live readers use it as it is. A rollup configures it for the store: `store_days`
    (a time may be the day alone, compile_format's day_only; a time no store can hold, a
    year outside FIRST_YEAR..LAST_YEAR, makes its line malformed; `fallback`, a file's
    day, dates lines without a time) and `raw_agents` (agents, bots and systems left
    unnamed, RAW_AGENT + their text, for the parent process to name once)."""

    def __init__(
        self,
        config: Config,
        fmt: CompiledFormat | None = None,
        *,
        store_days: bool = False,
        raw_agents: bool = False,
    ):
        self.config = config
        self.fallback: Buckets | None = None  # the buckets of lines without a time, if set
        self._family: Callable[[str], str] = _unnamed if raw_agents else agent_family
        self._os_family: Callable[[str], str] = _unnamed if raw_agents else os_family
        self.format = fmt or compile_format(config.log_format)
        self.routes = RouteTable.from_config(config.routes, config.django_settings)
        self.zone: tzinfo | None = ZoneInfo(config.timezone) if config.timezone else None
        self.keep_query = tuple(config.keep_query)
        self.ignore_ext = tuple(config.ignore_extensions)
        self.site = self._make_site_cache()
        self.path_of_request = BoundedCache(self._path_of_request)
        self.path_of_uri = BoundedCache(self._path_of_uri)
        self.object_of = BoundedCache(self._object_of)
        self.ignored = BoundedCache(self._ignored)
        # Agents and referrers are decided on their first bytes: a long one is looked up
        # by them (as logged: a byte is written as four at most).
        self.agent = BoundedCache(self._agent, 50_000, prefix=4 * AGENT_PREFIX + 4)
        self.os = BoundedCache(self._os, 50_000, prefix=4 * AGENT_PREFIX + 4)
        self.device = BoundedCache(self._device, 50_000, prefix=4 * AGENT_PREFIX + 4)
        self.client = BoundedCache(client_member, 50_000)
        self.referrer = BoundedCache(referrer_host, 50_000, prefix=4 * REFERRER_PREFIX + 4)
        self.buckets = BoundedCache(self._store_buckets if store_days else self._buckets, 20_000)
        self._is_bot = bot_matcher()

    def cached(self) -> int:
        """Entries its caches hold."""
        return sum(len(c.data) for c in vars(self).values() if isinstance(c, BoundedCache))

    def _make_site_cache(self) -> BoundedCache[bytes, str]:
        default = self.config.site

        def site(raw: bytes) -> str:
            value = clf_value(raw) if raw else None
            if not value:
                return default
            text = value.decode("utf-8", "backslashreplace").lower().strip()
            if len(text.encode("utf-8", "surrogatepass")) > MAX_SITE_BYTES:
                return INVALID
            return text.replace("{", "(").replace("}", ")") or default

        return BoundedCache(site, 10_000)

    def _path_of_request(self, raw: bytes) -> str:
        target = request_target(raw)
        if target is None:
            return NO_PATH
        return normalise_target(target, self.keep_query) if target else NOT_HTTP

    def _path_of_uri(self, raw: tuple[bytes, bytes]) -> str:
        uri, query = raw
        value = clf_value(uri)
        if not value:
            return NO_PATH
        target = value + unescape(query) if query else value
        return normalise_target(target, self.keep_query)

    def _object_of(self, path: str) -> str | None:
        if path in (NO_PATH, NOT_HTTP):
            return None
        found = self.routes.resolve(path)
        return None if found is None else cap_object(found)

    def _ignored(self, path: str) -> bool:
        if not self.ignore_ext:
            return False
        return path.partition("?")[0].lower().endswith(self.ignore_ext)

    def _agent(self, raw: bytes) -> tuple[bool, str]:
        value = clf_value(raw[: 4 * AGENT_PREFIX + 4])  # what holds the prefix's bytes
        if not value:
            return False, "(none)"
        text = agent_prefix(value.decode("utf-8", "backslashreplace"))
        if self._is_bot(text):
            return True, bot_name(text, self._family)
        return False, self._family(text)

    def _os(self, raw: bytes) -> str:
        value = clf_value(raw[: 4 * AGENT_PREFIX + 4])
        if not value:
            return "(none)"
        return self._os_family(agent_prefix(value.decode("utf-8", "backslashreplace")))

    def _device(self, raw: bytes) -> str:
        """A bot's line (a hit with count_bots) is BOT_DEVICE, as `agent` names the
        crawler: a crawler's agent imitates a browser's device (Googlebot an iPhone)."""
        value = clf_value(raw[: 4 * AGENT_PREFIX + 4])
        if not value:
            return "(none)"
        if self.agent(raw)[0]:  # the bot flag, decided once per agent for `agent`
            return BOT_DEVICE
        return device_type(value.decode("utf-8", "backslashreplace"))

    def _buckets(self, raw: tuple[bytes, bytes]) -> Buckets | None:
        tmin, ttz = raw
        try:
            day, mon, rest = tmin.split(b"/")
            year, hour, minute = rest.split(b":")
            month = MONTHS[mon]
            if self.zone is None and ttz:
                # The wall clock written in the line is already in the reporting zone.
                return Buckets(
                    f"{int(year):04d}{month:02d}{int(day):02d}{int(hour):02d}{int(minute):02d}",
                    f"{int(year):04d}{month:02d}{int(day):02d}{int(hour):02d}",
                    f"{int(year):04d}{month:02d}{int(day):02d}",
                )
            when = datetime(
                int(year),
                month,
                int(day),
                int(hour),
                int(minute),
                tzinfo=_offset(ttz) if ttz else None,
            )
        except (ValueError, KeyError):
            return None
        if self.zone is not None:
            when = when.astimezone(self.zone) if when.tzinfo else when.replace(tzinfo=self.zone)
        return buckets_of(when)

    def _store_buckets(self, raw: tuple[bytes, bytes]) -> Buckets | None:
        """A line's buckets for the store; None when its time is no day a store can hold
        (year 0001, a conversion to the configured zone past year 9999)."""
        tmin, ttz = raw
        if len(tmin) == DAY_LENGTH:  # dd/Mon/YYYY: compile_format's day_only capture
            tmin += b":00:00"
        try:
            found = self._buckets((tmin, ttz))
        except (OverflowError, ValueError):  # out of datetime's range once converted
            return None
        if found is None or len(found.minute) != 12 or not found.minute.isdigit():
            return None  # strftime writes year 1 as "1", not "0001"
        if not FIRST_YEAR <= int(found.day[:4]) <= LAST_YEAR:
            return None
        return found

    def now_buckets(self) -> Buckets:
        """Buckets of the present moment (for malformed lines and lines with no %t), or
        the fallback a rollup sets (the file's day)."""
        if self.fallback is not None:
            return self.fallback
        now = datetime.now(self.zone) if self.zone else datetime.now().astimezone()
        return buckets_of(now)


def visitor_hash(client: bytes, agent: bytes, key: bytes) -> str:
    """Visitor id: address and agent are never stored in clear, and without the key
    (Config.visitor_key) nobody can find an address by hashing candidates: blake2b with
    a key is a MAC."""
    return hashlib.blake2b(client + b"\0" + agent, digest_size=8, key=key).hexdigest()


def visitor_digests(key: bytes, fields: int) -> Callable[[tuple[bytes, ...]], str]:
    """visitor_hash of a (client, agent) tuple (of a (client,) one when `fields` is 1), for
    a batch's thousands of visitors: the keyed state is made once and copied, which spares
    hashing the key's block for each (a third of a digest's cost), and a call."""
    copy = hashlib.blake2b(digest_size=8, key=key).copy
    join = b"\0".join

    def pair(who: tuple[bytes, ...]) -> str:
        found = copy()
        found.update(join(who))
        return found.hexdigest()

    def alone(who: tuple[bytes, ...]) -> str:
        found = copy()
        found.update(who[0] + b"\0")
        return found.hexdigest()

    return pair if fields == 2 else alone


def visitor_number(key: bytes) -> Callable[[bytes, bytes], int]:
    """visitor_hash as a number (int(visitor_hash(...), 16)), for the store's sets: the
    keyed state is made once and copied per visitor (half the cost of keying each)."""
    keyed = hashlib.blake2b(digest_size=8, key=key)
    from_bytes = int.from_bytes

    def number(client: bytes, agent: bytes) -> int:
        h = keyed.copy()
        h.update(client + b"\0" + agent)
        return from_bytes(h.digest(), "big")

    return number


Who = tuple[bytes, ...]  # a visitor's items (client, agent, ...)


def visitor_numbers_py(
    key: bytes,
    ci: int,
    ai: int,
    skipped: dict[bytes, bool],
    skip_of: Callable[[bytes], object] | None,
) -> Callable[[Who], int | None]:
    """The number of a visitor (a tuple with its client at ci, its agent at ai; b"" for an
    index < 0): classify.visitor_number(key) of the two; None when skip_of says its agent
    is a bot not counted (asked once per agent, the answer kept in `skipped`; skip_of
    None: no agent is). The C twin (_sum.VisitorNumbers) hashes without the interpreter."""
    number = visitor_number(key)

    def digest_of(who: Who) -> int | None:
        client, agent = who[ci] if ci >= 0 else b"", who[ai] if ai >= 0 else b""
        if skip_of is not None:
            skip = skipped.get(agent)
            if skip is None:
                skip = skipped[agent] = bool(skip_of(agent))
            if skip:
                return None
        return number(client, agent)

    return digest_of


# RFC 9110's methods and PATCH (RFC 5789): a member each; any other token, or a request
# line without one, is (other), so that a scanner's made-up methods cannot fill the set.
METHODS = frozenset(
    (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH")
)


def method_of(fields: dict[str, bytes]) -> str | None:
    """The method member of a hit's fields (%m, else the first word of %r); None when the
    format logs neither."""
    if "method" in fields:
        word = fields["method"]
    elif "request" in fields:
        word = fields["request"].partition(b" ")[0]
    else:
        return None
    return word.decode("ascii") if word in METHODS else OTHER_MEMBER


def status_class(status: str) -> str:
    return f"s{status[0]}xx" if len(status) == 3 and status[0] in "12345" else "sother"
