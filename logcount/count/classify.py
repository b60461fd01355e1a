"""From raw log fields to what is counted: site, path, object, bot, agent family, buckets.

Every function here runs once per distinct value, never once per line: the Classifier
keeps a bounded cache for each kind of value (paths, agents, referrers, timestamps).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit
from zoneinfo import ZoneInfo

from logcount.config import Config
from logcount.count.logformat import CompiledFormat, clf_value, compile_format, unescape
from logcount.count.routes import MAX_TYPE_BYTES, RouteTable
from logcount.dimensions import BOT_DEVICE, DEVICE_TYPES, OTHER_DEVICE

# Every member is capped in bytes (UTF-8), whatever a log line holds, so that a flood of
# long values costs bounded memory in the reader, Redis and the store.
MAX_PATH_BYTES = 512
MAX_HOST_BYTES = 253  # a DNS name's limit: a longer referrer host is INVALID
MAX_SITE_BYTES = 253  # %v is a server name: the same limit
MAX_FAMILY_BYTES = 64  # ua-parser's families are words ("Chrome Mobile WebView"): longer is Other
MAX_OBJECT_BYTES = 200  # "type:id"; a longer id is "type:(invalid)"
# An agent is classified (bot, family) on its first bytes only, so that its cost is
# bounded: the longest agents of the real logs and of crawler-user-agents' examples are
# under 300 bytes; the regexes' cost grows with the length of the text they search.
AGENT_PREFIX = 512
# A referrer's host is looked for in its first bytes only; an authority running past them
# is no host (a host is at most 253 bytes, and real user:password parts are short).
REFERRER_PREFIX = 1024
NO_PATH = "-"  # a request line Apache could not read ("-" or garbage)
DIRECT = "(direct)"
BOT = "(bot)"  # a bot whose name is not known
BOT_NAME_STRIP = " /;:,()[]-_+"
OTHER_MEMBER = "(other)"  # as keys.OTHER: what a member is folded into
INVALID = "(invalid)"  # a referrer host, site or object id past its cap
CACHE_BYTES = 8 << 20  # keys held by one classifier cache, at most (bytes)
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


# --- paths (RFC 3986 section 6.2.2) ------------------------------------------------

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PCT = re.compile(rb"%([0-9A-Fa-f]{2})")
_HEX2 = re.compile(rb"[0-9A-Fa-f]{2}")


def _pct_normalise(hexdigits: bytes) -> bytes:
    byte = int(hexdigits, 16)
    if byte in _UNRESERVED:
        return bytes([byte])
    return b"%" + hexdigits.upper()


def pct_normalise(path: bytes) -> bytes:
    """Escapes of unreserved characters decoded, the others in upper case. A stray `%`
    (not an escape) is left as it is, unless the characters decoded after it would make it
    one ("%%32%65" is "%2e", which a second pass would read as "."): that one is written
    `%25`, so that normalising a normalised path changes nothing."""
    parts = _PCT.split(path)  # literal bytes, then the hex digits of an escape, ...
    out = [parts[0]]
    strays = [i for i, c in enumerate(parts[0]) if c == 0x25]  # every % left is stray
    size = len(parts[0])
    for i in range(1, len(parts), 2):
        decoded, literal = _pct_normalise(parts[i]), parts[i + 1]
        strays += [size + len(decoded) + j for j, c in enumerate(literal) if c == 0x25]
        out += (decoded, literal)
        size += len(decoded) + len(literal)
    result = b"".join(out)
    made = [p for p in strays if _HEX2.fullmatch(result, p + 1, p + 3)]
    if not made:
        return result
    pieces: list[bytes] = []
    last = 0
    for p in made:
        pieces += (result[last:p], b"%25")
        last = p + 1
    pieces.append(result[last:])
    return b"".join(pieces)


def remove_dot_segments(path: bytes) -> bytes:
    """RFC 3986 section 5.2.4."""
    if b"." not in path:
        return path
    out: list[bytes] = []
    segments = path.split(b"/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == b".":
            if last:
                out.append(b"")
        elif seg == b"..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append(b"")
        else:
            out.append(seg)
    result = b"/".join(out)
    if path.startswith(b"/") and not result.startswith(b"/"):
        result = b"/" + result
    return result


_PARTIAL_ESCAPE = re.compile(r"\\(?:x[0-9a-f]?)?$")
_PARTIAL_PCT = re.compile(r"%[0-9A-Fa-f]?$")


def truncate_utf8(text: str, limit: int = MAX_PATH_BYTES) -> str:
    """At most `limit` bytes of UTF-8, cut between characters (and not inside the `\\xhh`
    that shows a byte that is not UTF-8, nor inside a `%xx` escape)."""
    raw = text.encode("utf-8", "surrogateescape")
    if len(raw) <= limit:
        return text
    cut = raw[:limit].decode("utf-8", "ignore")
    if "\\" in cut[-3:]:
        cut = _PARTIAL_ESCAPE.sub("", cut)
    if "%" in cut[-2:]:
        cut = _PARTIAL_PCT.sub("", cut)
    return cut


def normalise_target(target: bytes, keep_query: tuple[str, ...] = ()) -> str:
    """A request target (as received) -> the normalised path we count."""
    if not target:
        return NO_PATH
    if _looks_absolute(target):
        # absolute-form (proxies): drop scheme and authority. Cut by hand: urlsplit raises
        # on a malformed authority ("http://[x/"), and a reader must not stop on bad data.
        rest = target.partition(b"://")[2]
        ends = [i for i in (rest.find(b"/"), rest.find(b"?"), rest.find(b"#")) if i >= 0]
        target = rest[min(ends) :] if ends else b""
        if not target.startswith(b"/"):
            target = b"/" + target
    path, _, query = target.partition(b"?")
    path = path.partition(b"#")[0]
    if b"%" in path:
        path = pct_normalise(path)
    path = remove_dot_segments(path)
    if path[:1] != b"/":
        while _looks_absolute(path):  # decoding made a scheme: "%41://x" is not one
            path = path.replace(b"://", b"%3A//", 1)
    text = _cut_path(path.decode("utf-8", "backslashreplace"))
    if keep_query and query:
        text += _kept_query(query, keep_query, MAX_PATH_BYTES - len(text.encode()))
    return text or NO_PATH  # "?x", "#", ".": no path, as "" is


def _looks_absolute(target: bytes) -> bool:
    """An absolute-form target (a proxy's "http://host/path"), as normalise_target tells."""
    return target[:1] != b"/" and b"://" in target[:12]


def _cut_path(text: str) -> str:
    """At most MAX_PATH_BYTES; a cut that leaves a last segment of "." or ".." drops it,
    as it is no dot segment (which a second normalisation would resolve)."""
    cut = truncate_utf8(text)
    if cut is not text and cut.rpartition("/")[2] in (".", ".."):
        cut = cut[: cut.rfind("/") + 1]
    return cut


def _kept_query(query: bytes, keep: tuple[str, ...], room: int) -> str:
    """The kept parameters (after a "?"), sorted, as many as fit in `room` bytes: whole
    parameters only, as half of one would read as another value."""
    pairs = parse_qsl(query.decode("utf-8", "backslashreplace"), keep_blank_values=True)
    kept = sorted((k, v) for k, v in pairs if k in keep)
    out = ""
    for pair in kept:
        more = ("&" if out else "?") + urlencode([pair])
        if len(out) + len(more) > room:  # urlencode writes ASCII: characters are bytes
            break
        out += more
    return out


_METHOD = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+\Z")  # an RFC 9110 token (M-SEARCH)


def request_target(request_line: bytes) -> bytes | None:
    """The target of a %r request line ("GET /a?b HTTP/1.1" -> b"/a?b"), None if unreadable."""
    line = clf_value(request_line)
    if not line:
        return None
    method, sep, rest = line.partition(b" ")
    if not sep or not _METHOD.match(method):
        return None
    target, sep, proto = rest.rpartition(b" ")
    if not sep or not proto.startswith(b"HTTP/"):
        target = rest  # HTTP/0.9 or a truncated line: the rest is the target
    return target or None


# --- agents, referrers --------------------------------------------------------------


_REGEX_SPECIALS = frozenset(".^$*+?{}[]|()")


def _plain_literal(pattern: str) -> str | None:
    """The text a regex matches when it is a plain string (escaped punctuation allowed:
    `Googlebot\\/` is `Googlebot/`); None when it has any other regex syntax."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            nxt = pattern[i + 1 : i + 2]
            if not nxt or nxt.isalnum() or nxt == "_":  # \d, \b, \1 ... are syntax
                return None
            out.append(nxt)
            i += 2
            continue
        if c in _REGEX_SPECIALS:
            return None
        out.append(c)
        i += 1
    return "".join(out)


class CrawlerMatcher:
    """crawler-user-agents' patterns, deciding exactly as its is_crawler() (a
    case-sensitive re.search of every pattern), about four times faster.

    is_crawler() runs some 60 regexes of 25 alternatives each over the agent, which Python's
    re tries at every position: ~130 us an agent, the largest part of classifying the
    distinct agents of a log. Nearly all patterns (1,468 of 1,504 in 2026) are plain
    strings: those are looked up by their first three characters among the agent's
    three-character substrings, then tested with `in`; the few real regexes are
    searched as one alternation."""

    def __init__(self, patterns: list[str]):
        self.by_prefix: dict[str, list[str]] = {}
        regexes = []
        for pattern in patterns:
            text = _plain_literal(pattern)
            if text is None or len(text) < 3:
                regexes.append(pattern)
            else:
                self.by_prefix.setdefault(text[:3], []).append(text)
        self.regex = re.compile("|".join(f"(?:{p})" for p in regexes)) if regexes else None

    def __call__(self, agent: str) -> bool:
        agent = agent_prefix(agent)
        if len(agent) >= 3:
            grams = {agent[i : i + 3] for i in range(len(agent) - 2)}
            for gram in grams.intersection(self.by_prefix):
                for text in self.by_prefix[gram]:
                    if text in agent:
                        return True
        return self.regex is not None and self.regex.search(agent) is not None

    def name(self, agent: str) -> str:
        """The crawler an agent names: the text of a pattern it matches, the one that
        starts first in the agent (then the longest: "YandexBot", not "yandex.com/bots"
        further on), without punctuation around it; "(bot)" when that leaves nothing."""
        agent = agent_prefix(agent)
        grams = {agent[i : i + 3] for i in range(len(agent) - 2)} & self.by_prefix.keys()
        found = [
            (agent.find(text), -len(text), text)
            for gram in grams
            for text in self.by_prefix[gram]
            if text in agent
        ]
        if self.regex is not None:
            found += [(m.start(), -len(m[0]), m[0]) for m in self.regex.finditer(agent) if m[0]]
        if not found:
            return BOT
        best = min(found)[2]
        return truncate_utf8(best.strip(BOT_NAME_STRIP), MAX_FAMILY_BYTES) or BOT


class _AskTheLibrary:
    """crawler-user-agents' own is_crawler(), when its data is not as CrawlerMatcher
    reads it: no names then."""

    def __init__(self) -> None:
        from crawleruseragents import is_crawler

        self.is_crawler = is_crawler

    def __call__(self, agent: str) -> bool:
        return bool(self.is_crawler(agent_prefix(agent)))

    def name(self, agent: str) -> str:
        return BOT


@functools.cache
def _bot_matcher() -> CrawlerMatcher | _AskTheLibrary:
    try:
        from crawleruseragents import CRAWLER_USER_AGENTS_DATA

        return CrawlerMatcher([entry["pattern"] for entry in CRAWLER_USER_AGENTS_DATA])
    except (ImportError, KeyError, TypeError, re.error):  # the library changed: ask it
        return _AskTheLibrary()


@functools.cache
def _family_parser() -> Any:
    """ua-parser with its user-agent and OS matchers: its device table would cost 15 MB
    more in every reader (11.5 to 26.5 MB for ua-parser; see device_type). The lazy
    matchers: the eager ones compile every regex in Python on import (~0.1 s), and the
    Rust resolver reads the pattern strings, never their Python regexes."""
    from ua_parser import BasicResolver, Parser
    from ua_parser.loaders import load_lazy_builtins

    try:
        from ua_parser import RegexResolver as resolver
    except ImportError:
        resolver = None
    agents, systems, _ = load_lazy_builtins()
    return Parser((resolver or BasicResolver)((agents, systems, [])))


def agent_prefix(agent: str) -> str:
    """The first AGENT_PREFIX bytes (UTF-8) of an agent, what decides its bot flag and
    family: the text the matchers search is bounded, whatever the agent's length."""
    head = agent[:AGENT_PREFIX]  # a character is one byte or more
    raw = head.encode("utf-8", "surrogatepass")
    if len(raw) <= AGENT_PREFIX:
        return head
    return raw[:AGENT_PREFIX].decode("utf-8", "ignore")


def bot_name(agent: str, family: Callable[[str], str] | None = None) -> str:
    """A bot's name: ua-parser knows most crawlers (YandexBot, where the pattern that
    caught it is "yandex.com/bots"), else the text of the crawler pattern it matches."""
    found = (family or agent_family)(agent)
    return found if found != "Other" else _bot_matcher().name(agent)


def agent_family(agent: str) -> str:
    """ua-parser's family of an agent's prefix; a family past MAX_FAMILY_BYTES (some
    patterns take a whole run of letters as the name) is "Other", as an unknown agent."""
    return _capped(_family_parser().parse_user_agent(agent_prefix(agent)))


def os_family(agent: str) -> str:
    """ua-parser's operating system of an agent's prefix (Windows, Android, iOS, Mac OS X,
    ...), "Other" when it names none or one past MAX_FAMILY_BYTES."""
    return _capped(_family_parser().parse_os(agent_prefix(agent)))


def device_type(agent: str) -> str:
    """The type of device an agent's prefix names: the first row of DEVICE_TYPES whose
    pattern is found in it, OTHER_DEVICE when none is. Our own table: ua-parser's device
    table would cost 15 MB in every reader and names phone models, not types."""
    text = agent_prefix(agent)
    return next((name for name, pattern in DEVICE_TYPES if pattern.search(text)), OTHER_DEVICE)


def _capped(found: Any) -> str:
    """The family of a ua-parser result; "Other" for none, or one past MAX_FAMILY_BYTES."""
    family: str = found.family if found is not None else "Other"
    if len(family) * 4 > MAX_FAMILY_BYTES and len(family.encode()) > MAX_FAMILY_BYTES:
        return "Other"
    return family


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


class Classifier:
    """Per-distinct-value classification, configured once (and again on reload)."""

    def __init__(self, config: Config, fmt: CompiledFormat | None = None):
        self.config = config
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
        self.buckets = BoundedCache(self._buckets, 20_000)
        self._is_bot = _bot_matcher()

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
        return NO_PATH if target is None else normalise_target(target, self.keep_query)

    def _path_of_uri(self, raw: tuple[bytes, bytes]) -> str:
        uri, query = raw
        value = clf_value(uri)
        if not value:
            return NO_PATH
        target = value + unescape(query) if query else value
        return normalise_target(target, self.keep_query)

    def _object_of(self, path: str) -> str | None:
        if path == NO_PATH:
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

    def _family(self, text: str) -> str:
        """The family of an agent that is not a bot (Chrome, Firefox, ...)."""
        return agent_family(text)

    def _os(self, raw: bytes) -> str:
        value = clf_value(raw[: 4 * AGENT_PREFIX + 4])
        if not value:
            return "(none)"
        return self._os_family(agent_prefix(value.decode("utf-8", "backslashreplace")))

    def _os_family(self, text: str) -> str:
        return os_family(text)

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

    def now_buckets(self) -> Buckets:
        """Buckets of the present moment (for malformed lines and lines with no %t)."""
        now = datetime.now(self.zone) if self.zone else datetime.now().astimezone()
        return buckets_of(now)


def visitor_hash(client: bytes, agent: bytes, key: bytes) -> str:
    """Visitor id: address and agent are never stored in clear, and without the key
    (Config.visitor_key) nobody can find an address by hashing candidates: blake2b with
    a key is a MAC."""
    return hashlib.blake2b(client + b"\0" + agent, digest_size=8, key=key).hexdigest()


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
