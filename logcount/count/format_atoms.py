"""The regex atoms of a LogFormat's fields, shared by the fast regex, the C scanner's plan
and apachelogs' path: strings between quotes, words, timestamps, the counted numbers and
their bounds, and Apache's escaping undone.
"""

from __future__ import annotations

import re
from datetime import datetime

from apachelogs.directives import format2regex
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
STRING_TYPES = {f"({t.regex})": t for t in (esc_string, clf_string)}
WORD_TYPES = {f"({t.regex})" for t in (esc_string, clf_string, esc_word, clf_word, remote_user)}
SPACE_FREE_TYPES = {f"({t.regex})" for t in (esc_word, clf_word)}
# Directives that never match a raw `"` (strings, words, %q, numbers, statuses).
QUOTE_FREE = {
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
QUOTE_FREE.add(format2regex("%q")[1])


def word(stop: str | None) -> bytes:
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


# A duration in seconds with three decimals, below 2**53 us (nine digits of seconds):
# counted as the milliseconds its digits make without the point.
MILLIS = rb"(?:0|[1-9][0-9]{0,8})\.[0-9]{3}"


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
