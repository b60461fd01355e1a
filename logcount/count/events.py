"""Events: named matches on counted lines (`[[event]]` in the config), and the sets of the
visitors who did each one, per bucket.

An event matches a hit (never a bot's line unless `count_bots`, never an ignored
extension) by its normalised path (`path`: exact, `*` matching any run of characters;
or `regex`, searched), or by the type of the object its path shows (`object`), and
optionally its method and its status or class:

    [[event]]
    name = "signup"
    path = "/accounts/signup/done/"
    status = "2xx"

Who did it is the visitor hash (address and agent, keyed: Config.visitor_key), never an
identity in clear. The engine hands over its visitor keys with the request and status
(LineCounter's extra visitor fields, see `visitor_fields`); `EventSets` turns them into
one set of hashes per (site, event, granularity, label), which the sinks keep exactly:
Redis bitmaps over a dense numbering (sinks/live.py, apply.lua), the store roaring
bitmaps (sinks/store.py).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from logcount.count.classify import method_of, visitor_hash
from logcount.count.sums import add_to_sets
from logcount.dimensions import SET_GRANS
from logcount.errors import ConfigError

NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_STATUS = re.compile(r"\A[1-5](?:[0-9][0-9]|xx)\Z")
_METHOD = re.compile(r"\A[A-Z]{1,16}\Z")
KEYS = ("name", "path", "regex", "object", "method", "status")
# Who did an event: the visitor hash (address and agent), or a field of the line, hashed
# with the same key: the authenticated user (%u), a cookie (%{name}C), a header (%{name}i).
_IDENTITY = re.compile(r"\A%(?:u|\{([A-Za-z0-9_.-]{1,64})\}([Ci]))\Z")
# What a visitor key must carry beside its visitor for the events: the request and status.
EVENT_FIELDS = ("request", "method", "uri", "query", "status")
PAGE_FIELDS = ("request", "method", "uri", "query")
# Live, events are kept per hour and day (their TTLs); the store keeps days.
LIVE_GRANS = SET_GRANS


@dataclass(frozen=True)
class EventRule:
    name: str
    path: re.Pattern[str] | tuple[str, ...] | None = None  # `regex`, or `path` cut at its *s
    object: str | None = None
    method: str | None = None
    status: str | None = None  # "200" or "2xx"

    def matches(self, path: str, method: str | None, status: str, obj: str | None) -> bool:
        if isinstance(self.path, tuple):
            if not glob_match(self.path, path):
                return False
        elif self.path is not None and not self.path.search(path):
            return False
        if self.object is not None and (obj is None or obj.partition(":")[0] != self.object):
            return False
        if self.method is not None and method != self.method:
            return False
        if self.status is not None:
            if self.status.endswith("xx"):
                return status[:1] == self.status[0]
            return status == self.status
        return True


def parse_events(rows: tuple[dict[str, Any], ...]) -> tuple[EventRule, ...]:
    """The config's `[[event]]` tables, checked: ConfigError names the first bad one."""
    out: list[EventRule] = []
    for i, row in enumerate(rows, 1):
        where = f"event #{i}"
        name = row.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise ConfigError(f"{where}: name must be a word of letters, digits and _ (<= 64)")
        where = f"event #{i} ({name})"
        if any(r.name == name for r in out):
            raise ConfigError(f"{where}: another event has this name")
        for key, value in row.items():
            if key not in KEYS:
                raise ConfigError(f"{where}: unknown setting {key!r} (use {', '.join(KEYS)})")
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where}: {key} must be a non-empty string")
        if "path" in row and "regex" in row:
            raise ConfigError(f"{where}: give path or regex, not both")
        if not any(k in row for k in ("path", "regex", "object")):
            raise ConfigError(f"{where}: give a path, a regex or an object type to match")
        out.append(
            EventRule(
                name,
                _path_pattern(row, where),
                row.get("object"),
                _checked(row, "method", _METHOD, where, upper=True),
                _checked(row, "status", _STATUS, where),
            )
        )
    return tuple(out)


def _path_pattern(row: dict[str, Any], where: str) -> re.Pattern[str] | tuple[str, ...] | None:
    if "regex" in row:
        try:
            return re.compile(row["regex"])
        except re.error as exc:
            raise ConfigError(f"{where}: invalid regex: {exc}") from None
    if "path" in row:
        return tuple(row["path"].split("*"))
    return None


def glob_match(parts: tuple[str, ...], text: str) -> bool:
    """`text` matches the glob cut at its `*`s (each matching any run of characters):
    it starts with the first part, ends with the last, and holds the others in order
    between them. Each part is found leftmost once, so a path costs time linear in its
    length whatever the glob (a regex of several `.*` would backtrack on a path an
    attacker wrote: every log byte is the client's)."""
    if len(parts) == 1:
        return text == parts[0]
    first, *middle, last = parts
    if len(text) < len(first) + len(last) or not text.startswith(first):
        return False
    if not text.endswith(last):
        return False
    pos, end = len(first), len(text) - len(last)
    for part in middle:
        found = text.find(part, pos, end)
        if found < 0:
            return False
        pos = found + len(part)
    return True


def _checked(
    row: dict[str, Any], key: str, pattern: re.Pattern[str], where: str, upper: bool = False
) -> str | None:
    value = row.get(key)
    if value is None:
        return None
    value = value.upper() if upper else value.lower()
    if not pattern.match(value):
        hint = "a method like POST" if key == "method" else "a status (200) or a class (2xx)"
        raise ConfigError(f"{where}: {key} {row[key]!r} is not {hint}")
    return value


def identity_source(identity: str) -> tuple[str, str | None, None] | None:
    """The directive an identity reads (logformat's signature), None for the visitor hash."""
    if identity == "visitor":
        return None
    m = _IDENTITY.match(identity)
    if m is None:
        raise ConfigError(
            f"event_identity {identity!r}: use visitor, %u, %{{NAME}}C (a cookie) or "
            "%{NAME}i (a header)"
        )
    if m.group(2) is None:
        return ("u", None, None)
    return (m.group(2), m.group(1).lower(), None)


def check_identity(identity: str) -> str:
    identity_source(identity)
    return identity


def format_ident(config: Any) -> tuple[str, str | None, None] | None:
    """What compile_format must capture as `ident` for `config`'s events (None: nothing)."""
    return identity_source(config.event_identity) if config.events else None


def visitor_fields(config: Any) -> tuple[str, ...]:
    """The fields a LineCounter's visitor keys must carry for the events of `config`."""
    if not config.events:
        return ()
    return EVENT_FIELDS + (("ident",) if format_ident(config) else ())


EventKey = tuple[str, str, str, str]  # site, event, granularity, label


def identity_hash(ident: bytes, key: bytes) -> str:
    """A user name, cookie or header value as the visitor hash is made (keyed blake2b, 8
    bytes): never kept in clear, and apart from every address-and-agent hash."""
    return hashlib.blake2b(b"ident\0" + ident, digest_size=8, key=key).hexdigest()


class EventSets:
    """Turns a LineCounter's visitor keys (with the event fields) into the sets of visitor
    hashes of each (site, event, granularity, label), with the aggregator's classifier:
    each distinct (context, request, status) is matched once, each visitor hashed once."""

    def __init__(self, aggregator: Any, grans: tuple[str, ...] = LIVE_GRANS):
        self.aggregator = aggregator
        self.grans = grans
        self.rules = parse_events(aggregator.config.events)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def collect(self, visitors: set[tuple[bytes, ...]], out: dict[EventKey, set[str]]) -> None:
        agg, cl = self.aggregator, self.aggregator.classifier
        layout, ctx_layout = agg.counter.vis_layout, agg.counter.ctx_layout
        page_fields = tuple(f for f in layout if f in PAGE_FIELDS or f == "status")
        by_ident = "ident" in layout  # a user, cookie or header names who (agents: bots)
        wanted = ("ident", "agent") if by_ident else ("client", "agent")
        who_fields = tuple(f for f in layout if f in wanted)
        places: dict[tuple[bytes, ...], tuple[str, Any]] = {}
        pages: dict[Any, tuple[str, ...]] = {}
        hkey, rules = cl.config.visitor_key(), self.rules
        grans = tuple(g for g in self.grans if g in agg.grans)  # a rollup counts days

        def names_of(page_key: tuple[bytes, ...]) -> tuple[str, ...]:
            fields = dict(zip(page_fields, page_key, strict=True))
            path = agg.path_of(fields)
            if cl.ignored(path):
                return ()
            status = fields.get("status", b"-").decode("ascii", "replace")
            method, obj = method_of(fields), cl.object_of(path)
            return tuple(r.name for r in rules if r.matches(path, method, status, obj))

        def sets_of(where: tuple[Any, Any]) -> tuple[set[str], ...] | None:
            ctx, page_key = where
            names = pages.get(page_key)
            if names is None:
                names = pages[page_key] = names_of(page_key)
            if not names:
                return None
            place = places.get(ctx)
            if place is None:
                place = places[ctx] = agg.context_of(ctx_layout, ctx)
            site, buckets = place
            return tuple(
                out.setdefault((site, name, gran, getattr(buckets, gran)), set())
                for name in names
                for gran in grans
            )

        ci = who_fields.index("client") if "client" in who_fields else -1
        ai = who_fields.index("agent") if "agent" in who_fields else -1
        ii = who_fields.index("ident") if by_ident else -1
        agent_of, count_bots = cl.agent, agg.count_bots

        def digest_of(who: tuple[bytes, ...]) -> str | None:
            client, agent = who[ci] if ci >= 0 else b"", who[ai] if ai >= 0 else b""
            if not count_bots and agent_of(agent or b"-")[0]:
                return None
            if ii >= 0:  # a user, cookie or header: "-" or nothing is nobody known
                ident = who[ii]
                return None if ident in (b"", b"-") else identity_hash(ident, hkey)
            return visitor_hash(client, agent, hkey)

        page_at = tuple(layout.index(f) for f in page_fields)
        who_at = tuple(layout.index(f) for f in who_fields)
        add_to_sets(visitors, len(ctx_layout), page_at, who_at, {}, {}, sets_of, digest_of)
