"""apachelogs' path: its regex of a whole LogFormat, rewritten to run in linear time, for
the lines the fast regex and the C scanner refuse (an X-Forwarded-For list in %h, a %u of
""), and the way its groups are read back as the fast path's fields.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from apachelogs.directives import format2regex
from apachelogs.timeutil import assemble_datetime

from logcount.count.format_atoms import QUOTE_FREE, QUOTED, STRING_TYPES, time_key

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
AN_ESCAPE = re.compile(r"\\.")


def time_from_groups(
    time_groups: tuple[int, ...],
    slow_groups: tuple[tuple[tuple[Any, str], Any], ...],
    groups: tuple[str | None, ...],
) -> tuple[bytes, bytes]:
    """Turn apachelogs' time groups (plain %t or strftime %{...}t; their indexes in
    `groups`, their (name, directive) and converter in `slow_groups`) into (minute,
    offset)."""
    fields: dict[str, object] = {}
    for idx in time_groups:
        (name, directive), conv = slow_groups[idx]
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


def iso_offset(raw: bytes) -> bytes:
    """`+01:00` (ISO 8601, as nginx writes it) as %t writes it: `+0100`; ValueError else."""
    m = _ISO_OFFSET.fullmatch(raw)
    if m is None:
        raise ValueError(f"bad offset {raw!r}")
    return m.group(1) + m.group(2)


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


def slow_regex(tokens: list[re.Match[str]], slow_rgx: str) -> str:
    """apachelogs' regex for the whole format, rewritten to accept the same lines and cut
    them the same way in linear time: plain %t matched exactly, strings between quotes
    read possessively, one reading of an escape elsewhere, and quoted groups of several
    directives made atomic (see atomic_quotes). Only its lazy unquoted fields (%h, %u)
    still try several splits, which slow_match bounds (SLOW_MAX_SPACES)."""
    parts, same = [], []
    atomic = atomic_quotes(tokens)
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
        if own in STRING_TYPES and prev == '"' and nxt == '"':
            own = _QUOTED_STR
        elif tok.group("directive") == "t" and tok.group("param") is None:
            own = own.replace(_APACHE_T, _APACHE_T_EXACT)
        parts.append(own.replace(_APACHE_ESCAPE, r"|\\.)"))
    # The pieces are apachelogs' own: their concatenation is its regex of the whole.
    assert "".join(same) == slow_rgx
    return "".join(parts)


def atomic_quotes(tokens: list[re.Match[str]]) -> dict[int, str]:
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
        if len(inside) > 1 and all(format2regex(t.group(0))[1] in QUOTE_FREE for t in inside):
            out[start], out[end] = "open", "close"
    return out


def slow_layout(
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
