"""Turn an Apache LogFormat into a fast bytes regex that captures only what is counted.

apachelogs compiles the format (it knows every directive and validates it) and is the
reference: on every line it accepts, the fields extracted here equal its values. The hot
path never builds a `LogEntry`: one bytes regex match per line, fields taken as raw bytes,
decoding and unescaping left to the classifier, which caches them per distinct value.

The fast regex accepts only lines apachelogs accepts, and splits them the same way
(tests/test_logformat.py checks it line by line). A line it rejects is tried once more with
apachelogs' regex, rewritten to run in linear time (slow_regex), so an odd but valid
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
from functools import lru_cache
from typing import Any

import apachelogs
from apachelogs.directives import DIRECTIVE_RGX, format2regex
from apachelogs.errors import InvalidDirectiveError, UnknownDirectiveError

from logcount.count import nginx_format
from logcount.count.format_atoms import (
    COUNT_LIMIT,
    COUNTED,
    MILLIS,
    QUOTED,
    SPACE_FREE_TYPES,
    STRING_TYPES,
    TIMESTAMP,
    TIMESTAMP_DAY,
    WORD_TYPES,
    below,
    in_range,
    word,
)
from logcount.count.scan_plan import NUMBER_KINDS, millis_element, plan_element, scanner_plan
from logcount.count.slow_format import (
    AN_ESCAPE,
    SLOW_MAX_OUTSIDE,
    SLOW_MAX_SPACES,
    atomic_quotes,
    iso_offset,
    slow_layout,
    slow_regex,
    time_from_groups,
)
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
        outside = AN_ESCAPE.sub("__", text).split('"')[::2]
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
                fields["tmin"], fields["ttz"] = time_from_groups(
                    self._slow_time_groups, self._slow_groups, groups
                )
            if "isotz" in fields:  # nginx's $time_iso8601: the offset written apart
                fields["ttz"] = iso_offset(fields["isotz"])
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
    atomic = atomic_quotes(tokens)
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
        element = plan_element(tokens, i, body)
        number = NUMBER_KINDS.get(format2regex(tok.group(0))[1])
        if field == "duration" and _signature(tok) == _MILLIS_SOURCE:
            body, millis = MILLIS, True
            if element is not None:
                element = millis_element(tokens, i)
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
    slow_index, slow_time = slow_layout(group_defs, chosen, tokens)
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
        _slow=re.compile(slow_regex(tokens, slow_rgx)),
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
        plan=scanner_plan(plan, group_index) if plan is not None else None,
    )


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
    if own in STRING_TYPES and prev == '"' and nxt == '"':
        return QUOTED, False
    spaces = own not in SPACE_FREE_TYPES
    if own in WORD_TYPES and (last or nxt is not None) and not (spaces and after_lazy):
        return word(nxt), False
    # Strip apachelogs' capturing groups: only our named groups capture.
    return re.sub(r"(?<!\\)\((?!\?)", "(?:", own).encode("iso-8859-1"), own in WORD_TYPES


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
