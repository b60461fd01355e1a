"""Who did what: `logcount visitors EXPR`, distinct visitors of a set expression of events
(`login & song_played`, `signup - paid`, `(a | b) & c`), per bucket or for a whole window.

Live, each event's bucket is a Redis bitmap over the site's visitor numbering (one bit
per visitor number, see apply.lua): the bitmaps are read whole (GET, one pipeline) and
combined here as Python integers, exactly; a window's total is the expression over each
event's union across the window's buckets. Operators, loosest first: `|` (union), `&`
(intersection), `-` (difference), as Python's sets bind them; parentheses group.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from logcount.dimensions import GRANULARITIES
from logcount.errors import LogcountError
from logcount.read.report import Window, bucket_labels, reading_redis
from logcount.sinks import keys

PER = ("hour", "day", "week")
_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[&|()-]))")


class ExpressionError(LogcountError):
    exit_code = 2  # a usage error, like click's


# --- expressions ------------------------------------------------------------------------


@dataclass(frozen=True)
class Expr:
    op: str  # "event", "&", "|", "-"
    name: str = ""
    left: Expr | None = None
    right: Expr | None = None

    def events(self) -> list[str]:
        if self.op == "event":
            return [self.name]
        assert self.left is not None and self.right is not None
        return [*self.left.events(), *(e for e in self.right.events())]

    def value(self, of: Callable[[str], Any]) -> Any:
        """The expression over sets (or integers as bitmaps) given by `of(event)`."""
        if self.op == "event":
            return of(self.name)
        assert self.left is not None and self.right is not None
        a, b = self.left.value(of), self.right.value(of)
        if self.op == "&":
            return a & b
        if self.op == "|":
            return a | b
        return a & ~b if isinstance(a, int) else a - b

    def __str__(self) -> str:
        if self.op == "event":
            return self.name
        return f"({self.left} {self.op} {self.right})"


_LEVELS = ("|", "&", "-")  # loosest first


def parse_expression(text: str, known: tuple[str, ...]) -> Expr:
    """`login & (song | video) - banned` over the configured event names."""
    tokens = _tokens(text)
    pos = 0

    def level(n: int) -> Expr:
        nonlocal pos
        if n == len(_LEVELS):
            return atom()
        left = level(n + 1)
        while pos < len(tokens) and tokens[pos] == ("op", _LEVELS[n]):
            pos += 1
            left = Expr(_LEVELS[n], left=left, right=level(n + 1))
        return left

    def atom() -> Expr:
        nonlocal pos
        if pos >= len(tokens):
            raise ExpressionError(f"expression {text!r} ends where an event was expected")
        kind, value = tokens[pos]
        pos += 1
        if kind == "name":
            if value not in known:
                names = ", ".join(known) or "none configured: see [[event]]"
                raise ExpressionError(f"unknown event {value!r} (events: {names})")
            return Expr("event", value)
        if value == "(":
            inner = level(0)
            if pos >= len(tokens) or tokens[pos] != ("op", ")"):
                raise ExpressionError(f"expression {text!r}: a '(' is not closed")
            pos += 1
            return inner
        raise ExpressionError(f"expression {text!r}: {value!r} where an event was expected")

    expr = level(0)
    if pos != len(tokens):
        raise ExpressionError(f"expression {text!r}: unexpected {tokens[pos][1]!r}")
    return expr


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    if len(text) > 1000:
        raise ExpressionError("expression longer than 1,000 characters")
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ExpressionError(f"expression {text!r}: cannot read {text[pos:].strip()[:20]!r}")
        kind = "name" if m.group("name") else "op"
        out.append((kind, m.group(kind)))
        pos = m.end()
    if not out:
        raise ExpressionError("empty expression: name events, e.g. 'login & song_played'")
    return out


# --- live bitmaps -------------------------------------------------------------------------


def bitmap(data: bytes | None, size: int) -> int:
    """A Redis bitmap (bit N: byte N // 8, most significant bit first) as an integer whose
    set bits are the same for every bitmap padded to `size` bytes."""
    return int.from_bytes((data or b"").ljust(size, b"\0"), "big")


def read_bitmaps(
    client: Any, site: str, events: list[str], gran: str, labels: tuple[str, ...]
) -> dict[tuple[str, str], int]:
    """Each (event, label)'s bitmap, as integers comparable with each other."""
    pairs = [(e, lbl) for e in events for lbl in labels]
    with reading_redis(client):
        pipe = client.pipeline(transaction=False)
        for event, label in pairs:
            pipe.get(keys.event_set(site, event, gran, label))
        replies = pipe.execute()
    size = max((len(r) for r in replies if r), default=0)
    return {pair: bitmap(r, size) for pair, r in zip(pairs, replies, strict=True)}


def count(value: Any) -> int:
    return value.bit_count() if isinstance(value, int) else len(value)


# --- the report -----------------------------------------------------------------------


def per_buckets(
    window: Window, per: str | None
) -> tuple[str, list[tuple[datetime, tuple[str, ...]]]]:
    """(granularity read, [(start, its labels), ...]): the window's hour or day buckets,
    grouped by `per` (a week: Monday to Sunday). Without `per`, one group: the window."""
    gran = "day" if window.gran == "day" and per != "hour" else "hour"
    start = window.start.replace(minute=0, second=0, microsecond=0)
    if gran == "day":
        start = start.replace(hour=0)
    end = window.end
    labels = bucket_labels(start, end if end > start else start + timedelta(seconds=1), gran)
    step = GRANULARITIES[gran].step
    starts = [start + i * step for i in range(len(labels))]
    if per is None:
        return gran, [(start, labels)]
    if per == "week":
        groups: dict[datetime, list[str]] = {}
        for when, label in zip(starts, labels, strict=True):
            monday = when - timedelta(days=when.weekday())
            groups.setdefault(monday, []).append(label)
        return gran, [(w, tuple(lbls)) for w, lbls in groups.items()]
    return gran, [(when, (label,)) for when, label in zip(starts, labels, strict=True)]


def build_visitors(
    client: Any,
    site: str,
    window: Window,
    expr: Expr,
    text: str,
    per: str | None,
) -> dict[str, Any]:
    """`{"expr", "window", "total", "per": [{"start", "visitors"}, ...]}`: the distinct
    visitors of `expr` over the whole window, and in each bucket of `per`."""
    events = sorted(set(expr.events()))
    gran, groups = per_buckets(window, per)
    labels = tuple(lbl for _, lbls in groups for lbl in lbls)
    maps = read_bitmaps(client, site, events, gran, labels)

    def union(lbls: tuple[str, ...]) -> Callable[[str], int]:
        def of(event: str) -> int:
            out = 0
            for lbl in lbls:
                out |= maps[event, lbl]
            return out

        return of

    rows = []
    if per is not None:
        for start, lbls in groups:
            rows.append(
                {
                    "start": start.isoformat(timespec="seconds"),
                    "visitors": count(expr.value(union(lbls))),
                }
            )
    return {
        "expr": text,
        "window": {
            "start": window.start.isoformat(timespec="seconds"),
            "end": window.end.isoformat(timespec="seconds"),
            "source": "live",
        },
        "site": site,
        "total": count(expr.value(union(labels))),
        "per": rows,
    }
