"""The C scanner's plan of a LogFormat (logcount/count/_scan.c): one element per directive
or literal, each ending at the first byte its class refuses, so that the scanner's single
pass left to right cuts a line as the fast regex does.
"""

from __future__ import annotations

import re

from apachelogs.directives import format2regex
from apachelogs.util import clf, integer, status_code

from logcount.count.format_atoms import DAY_LENGTH, QUOTED, word

# Directive regexes (apachelogs') that the C scanner matches itself, by kind.
NUMBER_KINDS = {
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


def millis_element(tokens: list[re.Match[str]], i: int) -> tuple[str, bytes] | None:
    """The scanner's element of a MILLIS duration: it must end at the first byte that is
    not part of it, as a number must (see plan_element)."""
    nxt = tokens[i + 1].group("literal") if i + 1 < len(tokens) else ""
    if nxt is None or nxt[:1].isdigit():
        return None
    return "millis", b""


def plan_element(tokens: list[re.Match[str]], i: int, body: bytes) -> tuple[str, bytes] | None:
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
    if body == word(nxt):
        return "word", (nxt or "").encode("iso-8859-1")[:1]
    kind = NUMBER_KINDS.get(format2regex(tokens[i].group(0))[1])
    if kind is None or (nxt is not None and (nxt[0].isdigit() or nxt[0] == "-")):
        return None
    return kind, b""


def scanner_plan(
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
