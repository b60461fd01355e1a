"""Turn an Apache LogFormat into a fast bytes regex that captures only what is counted.

apachelogs compiles the format (it knows every directive and validates it) and is the
reference: on every line it accepts, the fields extracted here equal its values. The hot
path never builds a `LogEntry`: one bytes regex match per line, fields taken as raw bytes,
decoding and unescaping left to the classifier, which caches them per distinct value.

The fast regex accepts only lines apachelogs accepts, and splits them the same way
(tests/test_logformat.py checks it line by line). A line it rejects is tried once more with
apachelogs' regex, rewritten to run in linear time (_slow_regex), so an odd but valid
line (an X-Forwarded-For list in %h) is not counted as malformed, unless it is long and
full of spaces outside quoted fields (see SLOW_MAX_SPACES).

On top of apachelogs, a counted number (bytes, duration) must be below 2**53 and not
negative, and a date in years MIN_YEAR-MAX_YEAR: else the line is malformed, on every
path (fast regex, C scanner, slow regex), before any value reaches Redis or SQL.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import apachelogs
from apachelogs.directives import DIRECTIVE_RGX, format2regex
from apachelogs.errors import InvalidDirectiveError, UnknownDirectiveError
from apachelogs.timeutil import assemble_datetime
from apachelogs.util import (
    clf,
    clf_string,
    clf_word,
    esc_string,
    esc_word,
    integer,
    remote_user,
    status_code,
    uinteger,
)

from logcount.count import nginx_format
from logcount.errors import ConfigError

NICKNAMES = {
    "common": apachelogs.COMMON,
    "vhost_common": apachelogs.VHOST_COMMON,
    "combined": apachelogs.COMBINED,
    "combined_debian": apachelogs.COMBINED_DEBIAN,
    "common_debian": apachelogs.COMMON_DEBIAN,
    "vhost_combined": apachelogs.VHOST_COMBINED,
    **{name: nginx_format.to_apache(fmt) for name, fmt in nginx_format.PRESETS.items()},
}

# Fields that identify what a line counts towards (the aggregation key), in this order.
KEY_FIELDS = (
    "tmin",
    "ttz",
    "site",
    "request",
    "method",
    "uri",
    "query",
    "status",
    "referrer",
    "agent",
)
# A format must have one of these: the others (client, agent, ...) say nothing of a hit.
COUNTABLE = {"tmin", "request", "method", "uri", "status"}
# Fields that are summed or sampled, not part of the key.
# `ident`: the directive events name their visitors by (%u, a cookie, a header), captured
# only when asked for (compile_format's `ident`, see count/events.py)
VALUE_FIELDS = ("client", "bytes", "duration", "ident")

# What Apache writes unescaped in a string field (printable ASCII but `"` and `\\`);
# everything else is written as a `\\` escape. The same classes as apachelogs, so that the
# fast regex accepts a subset of what apachelogs accepts (never garbage it would reject).
_PRINTABLE = bytes(range(0x20, 0x7F)).replace(b'"', b"").replace(b"\\", b"")
# A string between quotes: unrolled, and possessive, since it can only end at the first
# unescaped quote (a torn line is then refused at once, not given back byte by byte).
QUOTED = rb"[ !#-\[\]-~]*+(?:\\.[ !#-\[\]-~]*+)*+"
_MONTH = rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
# Years a line may carry (apachelogs takes 1 to 9999): four digits in every time zone,
# and a shift to any zone stays inside what a datetime holds. A line dated outside (year
# 0001, 9999 with a zone configured) is malformed, not an error later in its batch.
MIN_YEAR, MAX_YEAR = 1001, 9998
_YEAR = rb"(?:1(?!000)[0-9]{3}|[2-8][0-9]{3}|9(?!999)[0-9]{3})"
# Only dates that exist (apachelogs rejects the others when it builds the datetime).
_DAY_MONTH_YEAR = (
    rb"(?:(?:(?:0[1-9]|1[0-9]|2[0-8])/"
    + _MONTH
    + rb"|(?:29|30)/(?:Jan|Ma[ry]|Apr|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    + rb"|31/(?:Jan|Ma[ry]|Jul|Aug|Oct|Dec))/"
    + _YEAR
    + rb"|29/Feb/(?="
    + _YEAR
    + rb")(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])"
    + rb"|(?:[02468][048]|[13579][26])00))"
)
TIMESTAMP = (
    rb"\[(?P<tmin>" + _DAY_MONTH_YEAR + rb":(?:[01][0-9]|2[0-3]):[0-5][0-9])"
    rb":[0-5][0-9] (?P<ttz>[-+](?:[01][0-9]|2[0-3])[0-5][0-9])\]"
)
# The same, capturing the day alone (dd/Mon/YYYY) where a rollup counts by the day: one
# distinct key per day instead of per minute makes classifying cheap.
DAY_LENGTH = len(b"DD/Mon/YYYY")
TIMESTAMP_DAY = (
    rb"\[(?P<tmin>" + _DAY_MONTH_YEAR + rb"):(?:[01][0-9]|2[0-3]):[0-5][0-9]"
    rb":[0-5][0-9] (?P<ttz>[-+](?:[01][0-9]|2[0-3])[0-5][0-9])\]"
)
# apachelogs' own regexes for its string field types, to recognise them in a format.
_STRING_TYPES = {f"({t.regex})": t for t in (esc_string, clf_string)}
_WORD_TYPES = {f"({t.regex})" for t in (esc_string, clf_string, esc_word, clf_word, remote_user)}
_SPACE_FREE_TYPES = {f"({t.regex})" for t in (esc_word, clf_word)}
# Directives that never match a raw `"` (strings, words, %q, numbers, statuses).
_QUOTE_FREE = {
    f"({t.regex})"
    for t in (
        esc_string,
        clf_string,
        esc_word,
        clf_word,
        integer,
        clf(integer),
        uinteger,
        clf(status_code),
    )
}
_QUOTE_FREE.add(format2regex("%q")[1])


def _word(stop: str | None) -> bytes:
    """A field without spaces, up to the literal `stop` (unrolled, like QUOTED)."""
    allowed = _PRINTABLE.replace(b" ", b"")
    if stop is not None:
        allowed = allowed.replace(stop.encode("iso-8859-1"), b"")
    ranges: list[list[int]] = []
    for c in allowed:
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    cls = b"[" + b"".join(b"\\x%02x-\\x%02x" % (lo, hi) for lo, hi in ranges) + b"]"
    return cls + rb"*(?:\\." + cls + rb"*)*"


# Fields that are summed into Redis and SQL: a non-negative integer whose value (in
# microseconds for a duration) is below 2**53, so that it and the sums of a few lines stay
# exact in a double (Lua's numbers) and below 1e17 (Lua's `%.17g`). apachelogs takes any
# integer (negative, 100 digits): such a line is malformed here, and only that line.
COUNT_LIMIT = 2**53
COUNTED = ("bytes", "duration")


def below(limit: int) -> bytes:
    """A regex of the decimal integers 0 <= v < limit, written without sign or leading
    zero (as apachelogs' integer): shorter numbers, then digit by digit against limit-1."""
    top = str(limit - 1)
    alts = ["0"]
    if len(top) > 1:
        alts.append(f"[1-9][0-9]{{0,{len(top) - 2}}}")
    for i, digit in enumerate(top):
        low = 1 if i == 0 else 0
        if int(digit) > low:
            rest = len(top) - i - 1  # digits after this one: any
            tail = f"[0-9]{{{rest}}}" if rest else ""
            alts.append(f"{top[:i]}[{low}-{int(digit) - 1}]{tail}")
    if top != "0":
        alts.append(top)
    return ("(?:" + "|".join(alts) + ")").encode()


def in_range(raw: bytes, limit: int) -> bool:
    """A counted field as apachelogs read it: "-", or an integer below limit."""
    return raw == b"-" or (raw.isdigit() and int(raw) < limit)


# apachelogs' regex (the slow path) tries every split of its lazy unquoted fields (%h, %u
# may hold spaces, but no quote): the work grows with the spaces times the length of the
# text outside quotes. A line the fast regex rejects with more than this outside quotes
# is malformed without trying it, so that a crafted line (a torn fragment of a long
# request full of spaces) cannot stall a reader for seconds. The lines that need the slow
# path (an X-Forwarded-For list in %h, a %u of "") are far below both limits.
SLOW_MAX_SPACES = 32
SLOW_MAX_OUTSIDE = 2048  # characters outside quoted fields
# An escape, read left to right as the regexes read it: in `\\"` a backslash is escaped,
# the quote is real. Escapes are masked before the line is split at its quotes.
_AN_ESCAPE = re.compile(r"\\.")

# Which directive feeds which field; earlier entries win when a format has several.
# (directive letter, parameter (lower case) or None, redirect modifier or None) -> field
_FIELD_SOURCES: list[tuple[str, tuple[str, str | None, str | None], float]] = [
    ("site", ("v", None, None), 1),
    ("client", ("h", None, None), 1),
    ("client", ("a", None, None), 1),
    ("client", ("a", "c", None), 1),
    ("request", ("r", None, None), 1),
    ("method", ("m", None, None), 1),
    ("uri", ("U", None, None), 1),
    ("query", ("q", None, None), 1),
    ("status", ("s", None, ">"), 1),
    ("status", ("s", None, None), 1),
    ("status", ("s", None, "<"), 1),
    ("bytes", ("b", None, None), 1),
    ("bytes", ("B", None, None), 1),
    ("bytes", ("O", None, None), 1),
    ("referrer", ("i", "referer", None), 1),
    ("agent", ("i", "user-agent", None), 1),
    ("duration", ("D", None, None), 1),
    ("duration", ("T", "us", None), 1),
    ("duration", ("T", "ms", None), 1000),
    ("duration", ("T", None, None), 1_000_000),
    ("duration", ("T", "s", None), 1_000_000),
    # nginx's $request_time: seconds with three decimals, read as milliseconds (MILLIS)
    ("duration", ("n", "nginx.request_time", None), 1000),
    # the offset of nginx's $time_iso8601 (+01:00), after its strftime %{...}t
    ("isotz", ("n", "nginx.iso8601_offset", None), 1),
]
# A duration in seconds with three decimals, below 2**53 us (nine digits of seconds):
# counted as the milliseconds its digits make without the point.
MILLIS = rb"(?:0|[1-9][0-9]{0,8})\.[0-9]{3}"
_MILLIS_SOURCE = ("n", "nginx.request_time", None)
_MILLIS_VALUE = re.compile(MILLIS)


def resolve_nickname(log_format: str) -> str:
    """A nickname's format; a format copied from an Apache `LogFormat "..."` line keeps
    its `\\"` escapes, which Apache's config parser would have removed: remove them."""
    found = NICKNAMES.get(log_format.strip().lower())
    if found is not None:
        return found
    if nginx_format.is_nginx(log_format):
        return nginx_format.to_apache(log_format)
    return log_format.replace('\\"', '"')


@dataclass(frozen=True)
class CompiledFormat:
    """A LogFormat compiled for counting.

    `fast` matches a line (bytes, no newline); `key_names` and `value_names` are the
    named groups to take from a match, in order. `slow_match` is the fallback.
    """

    log_format: str
    fast: re.Pattern[bytes]
    chunk: re.Pattern[bytes]  # the same, anchored per line (re.M), for findall over a chunk
    group_index: dict[str, int]  # field -> index in a findall tuple
    key_names: tuple[str, ...]
    value_names: tuple[str, ...]
    duration_scale: float
    _slow: re.Pattern[str]
    _slow_groups: tuple[tuple[tuple[Any, str], Any], ...]  # ((name, directive), converter)
    _slow_field_index: dict[str, int]
    _slow_time_groups: tuple[int, ...]
    _slow_checks: tuple[int, ...]  # groups whose conversion may fail (times)
    # field -> exclusive upper bound of its value, for the counted fields (bytes, duration)
    limits: dict[str, int] = dataclasses.field(default_factory=dict)
    # The same format for the C scanner (logcount/count/_scan.c), or None when it has an element
    # the scanner does not know: (kind, field slot, second slot, stop byte, literal).
    plan: tuple[tuple[int, int, int, int, bytes], ...] | None = None
    millis: bool = False  # the duration is nginx's $request_time (MILLIS)

    def index(self, name: str) -> int:
        """Position of a field in the key tuple, -1 when the format lacks it."""
        return self.key_names.index(name) if name in self.key_names else -1

    def slow_match(self, line: bytes) -> tuple[tuple[bytes, ...], tuple[bytes, ...]] | None:
        """Match with apachelogs' own regex; return (key, values) like the fast path.

        None when apachelogs would reject the line: no match, or a time field it cannot
        turn into a datetime (31 Feb, hour 25, a year 0).
        """
        text = line.decode("iso-8859-1").rstrip("\r\n")
        outside = _AN_ESCAPE.sub("__", text).split('"')[::2]
        if (
            sum(map(len, outside)) > SLOW_MAX_OUTSIDE
            or sum(part.count(" ") for part in outside) > SLOW_MAX_SPACES
        ):
            return None  # see SLOW_MAX_SPACES
        m = self._slow.fullmatch(text)
        if m is None:
            return None
        groups = m.groups()
        fields: dict[str, bytes] = {}
        for name, idx in self._slow_field_index.items():
            raw = groups[idx]
            fields[name] = raw.encode("iso-8859-1") if raw is not None else b"-"
        if not all(self._counted(f, fields[f], n) for f, n in self.limits.items() if f in fields):
            return None
        try:
            for idx in self._slow_checks:
                self._slow_groups[idx][1](groups[idx])
            if self._slow_time_groups:
                fields["tmin"], fields["ttz"] = _time_from_groups(self, groups)
            if "isotz" in fields:  # nginx's $time_iso8601: the offset written apart
                fields["ttz"] = _iso_offset(fields["isotz"])
        except (ValueError, KeyError, OverflowError):
            return None
        key = tuple(fields.get(n, b"") for n in self.key_names)
        values = tuple(fields.get(n, b"") for n in self.value_names)
        return key, values

    def _counted(self, field: str, raw: bytes, limit: int) -> bool:
        """A counted field as the fast regex reads it (see COUNT_LIMIT, MILLIS)."""
        if field == "duration" and self.millis:
            return _MILLIS_VALUE.fullmatch(raw) is not None
        return in_range(raw, limit)

    def match(self, line: bytes) -> tuple[tuple[bytes, ...], tuple[bytes, ...]] | None:
        """Key and value fields of one line, or None when it does not parse."""
        m = self.fast.fullmatch(line)
        if m is None:
            return self.slow_match(line)
        found = m.groupdict()
        return (tuple(found[n] for n in self.key_names), tuple(found[n] for n in self.value_names))


def _time_from_groups(fmt: CompiledFormat, groups: tuple[str | None, ...]) -> tuple[bytes, bytes]:
    """Turn apachelogs' time groups (plain %t or strftime %{...}t) into (minute, offset)."""
    fields: dict[str, object] = {}
    for idx in fmt._slow_time_groups:
        (name, directive), conv = fmt._slow_groups[idx]
        value = conv(groups[idx]) if groups[idx] is not None else None
        if isinstance(name, tuple) and name[-1] == "timestamp":
            if isinstance(value, datetime):
                return time_key(value)
        elif isinstance(name, tuple):
            fields[name[-1]] = value
    when = assemble_datetime(fields)
    if when is None:
        return b"", b""
    return time_key(when)


_ISO_OFFSET = re.compile(rb"([-+](?:[01][0-9]|2[0-3])):([0-5][0-9])")


def _iso_offset(raw: bytes) -> bytes:
    """`+01:00` (ISO 8601, as nginx writes it) as %t writes it: `+0100`; ValueError else."""
    m = _ISO_OFFSET.fullmatch(raw)
    if m is None:
        raise ValueError(f"bad offset {raw!r}")
    return m.group(1) + m.group(2)


def time_key(when: datetime) -> tuple[bytes, bytes]:
    """The (minute, offset) key bytes the fast path captures from a %t field; ValueError
    for a year out of range (MIN_YEAR)."""
    if not MIN_YEAR <= when.year <= MAX_YEAR:
        raise ValueError(f"year {when.year} out of range")
    minute = when.strftime("%d/%b/%Y:%H:%M").encode()
    off = when.utcoffset()
    if off is None:
        return minute, b""
    total = int(off.total_seconds() // 60)
    sign = "-" if total < 0 else "+"
    total = abs(total)
    return minute, f"{sign}{total // 60:02d}{total % 60:02d}".encode()


@lru_cache(maxsize=64)
def compile_format(
    log_format: str,
    day_only: bool = False,
    ident: tuple[str, str | None, str | None] | None = None,
) -> CompiledFormat:
    """Compile a LogFormat string or nickname; a bad one raises ConfigError. With
    `day_only`, %t's minute group holds the day alone (TIMESTAMP_DAY): the same lines
    match, and the rows carry "dd/Mon/YYYY" (the slow path's rows keep the minute). With
    `ident` (a directive's signature: ("u", None, None), ("C", "sessionid", None)), that
    directive is captured as the field `ident`; ConfigError if the format has none."""
    fmt = resolve_nickname(log_format)
    try:
        group_defs, slow_rgx = format2regex(fmt)
    except (InvalidDirectiveError, UnknownDirectiveError) as exc:
        raise ConfigError(f"log format {log_format!r}: {exc}") from None
    if not group_defs:
        raise ConfigError(_no_directive(log_format))
    millis = False
    tokens = list(DIRECTIVE_RGX.finditer(fmt))
    chosen = _choose_sources(tokens)
    if ident is not None:
        _choose_ident(tokens, chosen, ident, log_format)
    parts: list[bytes] = []
    taken: set[str] = set()
    strftime_time = False
    after_lazy = False
    atomic = _atomic_quotes(tokens)
    duration_scale = 1.0
    for i, source in chosen.items():
        if source == "duration":
            duration_scale = _duration_scale(tokens[i])
    limits = {
        "bytes": COUNT_LIMIT,
        "duration": -(-COUNT_LIMIT // int(duration_scale)),  # in microseconds
    }
    plan: list[tuple[str, str | None, bytes]] | None = []
    for i, tok in enumerate(tokens):
        literal = tok.group("literal")
        if literal is not None:
            quote = re.escape(literal.encode("iso-8859-1"))
            kind = atomic.get(i)
            parts.append(b"(?>" + quote if kind == "open" else quote + b")" if kind else quote)
            if plan is not None:
                plan.append(("lit", None, literal.encode("iso-8859-1")))
            continue
        field = chosen.get(i)
        if field == "time":
            if tok.group("param") is None:
                parts.append(TIMESTAMP_DAY if day_only else TIMESTAMP)
                taken.update(("tmin", "ttz"))
                if plan is not None:
                    plan.append(("time", "tmin", b"day" if day_only else b""))
                continue
            strftime_time = True
        body, lazy = _directive_regex(tokens, i, after_lazy)
        after_lazy = after_lazy or lazy
        element = _plan_element(tokens, i, body)
        number = _NUMBER_KINDS.get(format2regex(tok.group(0))[1])
        if field == "duration" and _signature(tok) == _MILLIS_SOURCE:
            body, millis = MILLIS, True
            if element is not None:
                element = _millis_element(tokens, i)
        elif field in COUNTED and number in ("int", "int_dash"):
            body = below(limits[field]) + (b"|-" if number == "int_dash" else b"")
            if element is not None:
                top = str(limits[field] - 1).encode()
                element = ("count" if number == "int" else "count_dash", top)
        if plan is not None and element is not None:
            plan.append((element[0], field if field != "time" else None, element[1]))
        else:
            plan = None
        if field is not None and field != "time":
            parts.append(b"(?P<" + field.encode() + b">" + body + b")")
            taken.add(field)
        else:
            parts.append(b"(?:" + body + b")")
    pattern = b"".join(parts)
    if strftime_time:
        # A strftime %{...}t cannot be cut cheaply into minute and offset: such formats
        # always take apachelogs' path (correct, slower). The regexes never match but
        # keep the named groups, so that rows of the slow path have the usual layout.
        pattern = rb"(?!)" + pattern + rb"(?P<tmin>)(?P<ttz>)"
        taken.update(("tmin", "ttz"))
    if not taken & COUNTABLE:  # a line would be a hit of nothing, at its arrival
        raise ConfigError(
            f"log format {log_format!r}: nothing to count: no time, request, path or "
            "status (%t %r %U %>s; nginx [$time_local] $request $request_uri $status)"
        )
    fast = re.compile(pattern)
    # The trailing empty group keeps findall() returning tuples even for one field. No
    # class of the pattern matches a newline, so a match never spans two lines.
    chunk = re.compile(b"^" + pattern + b"$()", re.M)
    group_index = {name: num - 1 for name, num in chunk.groupindex.items()}
    key_names = tuple(f for f in KEY_FIELDS if f in taken)
    value_names = tuple(f for f in VALUE_FIELDS if f in taken)
    slow_index, slow_time = _slow_layout(group_defs, chosen, tokens)
    if strftime_time:
        plan = None
    return CompiledFormat(
        log_format=fmt,
        fast=fast,
        chunk=chunk,
        group_index=group_index,
        key_names=key_names,
        value_names=value_names,
        duration_scale=duration_scale,
        _slow=re.compile(_slow_regex(tokens, slow_rgx)),
        _slow_groups=tuple(((g[0], g[1]), g[2]) for g in group_defs),
        _slow_field_index=slow_index,
        _slow_time_groups=slow_time,
        _slow_checks=tuple(
            i
            for i, g in enumerate(group_defs)
            if isinstance(g[0], tuple) and g[0][0].endswith("time_fields")
        ),
        limits={f: n for f, n in limits.items() if f in taken},
        millis=millis,
        plan=_scanner_plan(plan, group_index) if plan is not None else None,
    )


# Directive regexes (apachelogs') that the C scanner matches itself, by kind.
_NUMBER_KINDS = {
    f"({integer.regex})": "int",
    f"({clf(integer).regex})": "int_dash",
    f"({clf(status_code).regex})": "status",
}
SCAN_KINDS = {
    "lit": 0,
    "quoted": 1,
    "word": 2,
    "int": 3,
    "int_dash": 4,
    "status": 5,
    "time": 6,
    "count": 7,  # a counted number: its literal is the largest value allowed
    "count_dash": 8,
    "millis": 9,  # MILLIS: seconds with three decimals
}


def _millis_element(tokens: list[re.Match[str]], i: int) -> tuple[str, bytes] | None:
    """The scanner's element of a MILLIS duration: it must end at the first byte that is
    not part of it, as a number must (see _plan_element)."""
    nxt = tokens[i + 1].group("literal") if i + 1 < len(tokens) else ""
    if nxt is None or nxt[:1].isdigit():
        return None
    return "millis", b""


def _no_directive(log_format: str) -> str:
    """The error of a format without a directive: most likely a mistyped nickname."""
    from difflib import get_close_matches

    known = [*NICKNAMES, "auto"]
    close = get_close_matches(log_format.strip().lower(), known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return (
        f"log format {log_format!r} is not a nickname ({', '.join(known)}) "
        f"nor a format with directives (%h, $remote_addr, ...){hint}"
    )


def _plan_element(tokens: list[re.Match[str]], i: int, body: bytes) -> tuple[str, bytes] | None:
    """What the C scanner does for the directive at tokens[i], whose fast regex is `body`:
    (kind, stop byte); None when it has no element that splits a line the same way.

    Each element must end at the first byte its class refuses, so that the scanner's
    single left-to-right pass finds the regex's one split: a word or a number has to be
    followed by a literal (or end the line), and a number not by a digit.
    """
    last = i + 1 == len(tokens)
    nxt = None if last else tokens[i + 1].group("literal")
    if not last and nxt is None:
        return None
    if body == QUOTED:
        return "quoted", b""
    if tokens[i].group("directive") == "t" and tokens[i].group("param") is None:
        return "time", b""  # a second %t, checked only
    if body == _word(nxt):
        return "word", (nxt or "").encode("iso-8859-1")[:1]
    kind = _NUMBER_KINDS.get(format2regex(tokens[i].group(0))[1])
    if kind is None or (nxt is not None and (nxt[0].isdigit() or nxt[0] == "-")):
        return None
    return kind, b""


def _scanner_plan(
    plan: list[tuple[str, str | None, bytes]], group_index: dict[str, int]
) -> tuple[tuple[int, int, int, int, bytes], ...]:
    out: list[tuple[int, int, int, int, bytes]] = []
    for kind, field, arg in plan:
        if kind == "lit" and out and out[-1][0] == SCAN_KINDS["lit"]:  # `" "` is one literal
            out[-1] = (*out[-1][:4], out[-1][4] + arg)
            continue
        slot = group_index[field] if field is not None and field in group_index else -1
        second = -1
        if kind == "time" and field is not None:
            slot, second = group_index["tmin"], group_index["ttz"]
        stop = arg[0] if kind == "word" and arg else -1
        if kind == "time" and arg == b"day":  # the scanner keeps the day of the minute
            stop = DAY_LENGTH
        keep = kind in ("lit", "count", "count_dash")  # the literal, or the largest number
        out.append((SCAN_KINDS[kind], slot, second, stop, arg if keep else b""))
    return tuple(out)


def _directive_regex(tokens: list[re.Match[str]], i: int, after_lazy: bool) -> tuple[bytes, bool]:
    """The fast regex of one directive, and whether it is a lazy string that may hold spaces.

    apachelogs' own regex, or a faster one that splits a line the same way: QUOTED for a
    string between quotes (a quote always ends it), a space-free word for a word (a word
    with a space falls back to apachelogs). A string that may hold spaces is cut short only
    when no lazy string before it could take the rest (`%U%q %H`: apachelogs gives %U the
    shortest value, so %H must keep its spaces).
    """
    tok = tokens[i]
    prev = tokens[i - 1].group("literal") if i > 0 else None
    last = i + 1 == len(tokens)
    nxt = None if last else tokens[i + 1].group("literal")
    _, own = format2regex(tok.group(0))
    if tok.group("directive") == "t" and tok.group("param") is None:
        return re.sub(rb"\(\?P<\w+>", b"(?:", TIMESTAMP), False  # a second %t: checked only
    if own in _STRING_TYPES and prev == '"' and nxt == '"':
        return QUOTED, False
    spaces = own not in _SPACE_FREE_TYPES
    if own in _WORD_TYPES and (last or nxt is not None) and not (spaces and after_lazy):
        return _word(nxt), False
    # Strip apachelogs' capturing groups: only our named groups capture.
    return re.sub(r"(?<!\\)\((?!\?)", "(?:", own).encode("iso-8859-1"), own in _WORD_TYPES


# apachelogs matches %t with `\[[^]]+\]` and checks it afterwards; this is the same set
# of strings once checked, but found without scanning the line for a "]" at every split
# that its lazy %h and %u try (cubic on a long line full of spaces and "[").
_APACHE_T = r"\[[^]]+\]"
_APACHE_T_EXACT = r"\[\d\d/\w\w\w/\d{4,}:\d\d:\d\d:\d\d\s*[-+]\d\d\d\d\]"
# apachelogs reads `\x80` in a string either as one escape or as the escape `\x` and two
# plain characters: 2**n readings of n escapes, all tried before a line is rejected (hours
# for thirty). Without the first alternative there is one reading of any string, and the
# same strings are accepted: in each of its string, word, %q and cookie atoms, the plain
# class beside this alternative holds every hex digit.
_APACHE_ESCAPE = r"|\\x[0-9A-Fa-f]{2}|\\.)"
# A string between quotes ends at the first unescaped quote, whatever the regex: matched
# as QUOTED (possessive), it is read once, at C speed, and never tried again.
_QUOTED_STR = "(" + QUOTED.decode("ascii") + ")"


def _slow_regex(tokens: list[re.Match[str]], slow_rgx: str) -> str:
    """apachelogs' regex for the whole format, rewritten to accept the same lines and cut
    them the same way in linear time: plain %t matched exactly, strings between quotes
    read possessively, one reading of an escape elsewhere, and quoted groups of several
    directives made atomic (see _atomic_quotes). Only its lazy unquoted fields (%h, %u)
    still try several splits, which slow_match bounds (SLOW_MAX_SPACES)."""
    parts, same = [], []
    atomic = _atomic_quotes(tokens)
    for i, tok in enumerate(tokens):
        literal = tok.group("literal")
        if literal is not None:
            quote = re.escape(literal)
            same.append(quote)
            kind = atomic.get(i)
            parts.append("(?>" + quote if kind == "open" else quote + ")" if kind else quote)
            continue
        _, own = format2regex(tok.group(0))
        same.append(own)
        prev = tokens[i - 1].group("literal") if i > 0 else None
        nxt = tokens[i + 1].group("literal") if i + 1 < len(tokens) else None
        if own in _STRING_TYPES and prev == '"' and nxt == '"':
            own = _QUOTED_STR
        elif tok.group("directive") == "t" and tok.group("param") is None:
            own = own.replace(_APACHE_T, _APACHE_T_EXACT)
        parts.append(own.replace(_APACHE_ESCAPE, r"|\\.)"))
    # The pieces are apachelogs' own: their concatenation is its regex of the whole.
    assert "".join(same) == slow_rgx
    return "".join(parts)


def _atomic_quotes(tokens: list[re.Match[str]]) -> dict[int, str]:
    """Quote literals around several directives none of which can hold a raw quote
    (`"%m %U%q %H"`): token index -> "open" / "close".

    The closing quote of such a field is then the first unescaped quote after the opening
    one, whatever the split inside, and what follows cannot depend on that split: an
    atomic group gives the same matches, but a line that fails after the field fails at
    once, instead of trying every split of %U and %H (quadratic in their spaces).
    """
    out: dict[int, str] = {}
    quotes = [i for i, t in enumerate(tokens) if t.group("literal") == '"']
    for start, end in zip(quotes[::2], quotes[1::2], strict=False):
        inside = [t for t in tokens[start + 1 : end] if t.group("literal") is None]
        if len(inside) > 1 and all(format2regex(t.group(0))[1] in _QUOTE_FREE for t in inside):
            out[start], out[end] = "open", "close"
    return out


def _signature(tok: re.Match[str]) -> tuple[str, str | None, str | None]:
    mods = (tok.group("modifiers1") or "") + (tok.group("modifiers2") or "")
    redirect = ">" if ">" in mods else "<" if "<" in mods else None
    param = tok.group("param")
    return tok.group("directive"), param.lower() if param is not None else None, redirect


def _choose_sources(tokens: list[re.Match[str]]) -> dict[int, str]:
    """Token index -> field it feeds (the first matching source of each field wins)."""
    chosen: dict[int, str] = {}
    sigs = {i: _signature(t) for i, t in enumerate(tokens) if t.group("literal") is None}
    for i, (directive, _param, _) in sigs.items():
        if directive == "t" and "time" not in chosen.values():
            chosen[i] = "time"
            break
    for field, source, _ in _FIELD_SOURCES:
        if field in chosen.values():
            continue
        for i, sig in sigs.items():
            if i in chosen:
                continue
            # %s without a redirect modifier logs the original status, as %<s does.
            if sig == source:
                chosen[i] = field
                break
    return chosen


def _choose_ident(
    tokens: list[re.Match[str]],
    chosen: dict[int, str],
    ident: tuple[str, str | None, str | None],
    log_format: str,
) -> None:
    for i, tok in enumerate(tokens):
        if tok.group("literal") is None and i not in chosen and _signature(tok)[:2] == ident[:2]:
            chosen[i] = "ident"
            return
    name = f"%{{{ident[1]}}}{ident[0]}" if ident[1] else f"%{ident[0]}"
    raise ConfigError(f"event_identity {name}: the log format {log_format!r} has no {name}")


def _duration_scale(tok: re.Match[str]) -> float:
    sig = _signature(tok)
    for field, source, scale in _FIELD_SOURCES:
        if field == "duration" and source[:2] == sig[:2]:
            return scale
    return 1.0


def _slow_layout(
    group_defs: list[tuple[object, str, object]],
    chosen: dict[int, str],
    tokens: list[re.Match[str]],
) -> tuple[dict[str, int], tuple[int, ...]]:
    """Map our fields onto apachelogs' capturing groups (matched by directive text)."""
    by_text: dict[str, str] = {tokens[i].group(0): f for i, f in chosen.items()}
    index: dict[str, int] = {}
    time_groups: list[int] = []
    time_token = next((tokens[i].group(0) for i, f in chosen.items() if f == "time"), None)
    for gi, (_name, directive, _conv) in enumerate(group_defs):
        if time_token is not None and _same_time_directive(directive, time_token):
            time_groups.append(gi)
            continue
        field = by_text.get(directive)
        if field is not None and field not in index:
            index[field] = gi
    return index, tuple(time_groups)


def _same_time_directive(directive: str, time_token: str) -> bool:
    if directive == time_token:
        return True
    # apachelogs splits %{%Y-%m-%d}t into %{%Y}t, %{%m}t, %{%d}t.
    return time_token.endswith("t") and directive.endswith("t") and "{" in time_token


_ESCAPE = re.compile(rb"\\(x[0-9A-Fa-f]{2}|.)", re.DOTALL)
_SIMPLE_ESCAPES = {b"t": b"\t", b"n": b"\n", b"r": b"\r", b"b": b"\b", b"v": b"\v", b"f": b"\f"}


def _unescape_one(m: re.Match[bytes]) -> bytes:
    esc = m.group(1)
    if esc[:1] == b"x" and len(esc) == 3:
        return bytes([int(esc[1:], 16)])
    return _SIMPLE_ESCAPES.get(esc, esc)


def unescape(raw: bytes) -> bytes:
    """Undo Apache's log escaping (\\" \\\\ \\xhh \\n ...) giving the bytes received."""
    if b"\\" not in raw:
        return raw
    return _ESCAPE.sub(_unescape_one, raw)


def clf_value(raw: bytes) -> bytes | None:
    """`-` is Apache's 'no value'."""
    return None if raw == b"-" else unescape(raw)
