"""Properties of the line path, over inputs hypothesis makes up.

1. Whatever bytes reach a reader, `LineCounter.feed` and the aggregator's classify never
   raise, every line is counted once (a hit, a bot, an ignored line or malformed), and the
   time taken stays within a fixed bound per byte: with and without the C scanner, in a
   format the scanner knows and in one only the regexes read.
2. A valid line, built from parts as Apache writes them (escapes, X-Forwarded-For lists,
   IPv6, spaces in requests, empty and "-" fields), gives the fields
   `apachelogs.LogParser(fmt).parse()` gives, through every path: the per-line matcher,
   the chunk regex and the C scanner.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from apachelogs.directives import DIRECTIVE_RGX
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from logcount.count.format_atoms import COUNT_LIMIT
from logcount.count.line_counter import LineCounter
from logcount.count.logformat import compile_format, resolve_nickname
from tests.test_hostile_lines import counter_for
from tests.test_logformat import (
    CUSTOM_DURATION,
    STRFTIME,
    URI_QUERY,
    _parser,
    chunk_fields,
    matched_fields,
    ours,
    reference,
)

SETTINGS = settings(
    max_examples=100,
    deadline=None,  # time is checked by the test itself, against its own bound
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# --- 1. any bytes ------------------------------------------------------------------------

# Pieces that steer the regexes into their corners: escapes (whole, torn), quotes, spaces
# outside quotes, brackets, dates, numbers at the limits, raw high and control bytes.
TRICKY = [
    b"\\x80",
    b"\\x8",
    b"\\",
    b'\\"',
    b'"',
    b'""',
    b" ",
    b"-",
    b"[",
    b"]",
    b"\r",
    b"\n",
    b"\x00",
    b"\xff",
    b"[17/May/2015:10:05:03 +0000]",
    b"[31/Dec/9999:23:59:59 -2359]",
    b"[01/Jan/0001:00:00:00 +0000]",
    b" 200 ",
    b" 99999999999999999999 ",
    b"9007199254740992",
    b"GET / HTTP/1.1",
    b"10.0.0.2, 10.0.0.1",
]
GOOD = b'1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET /a HTTP/1.1" 200 5 "http://r/" "Mozilla/5.0"'


@st.composite
def hostile_chunks(draw: st.DrawFn) -> bytes:
    """Lines made of a good line cut and spliced with tricky pieces, or of raw bytes."""
    lines = []
    for _ in range(draw(st.integers(1, 8))):
        if draw(st.booleans()):
            lines.append(draw(st.binary(max_size=300)))
            continue
        parts = [GOOD[: draw(st.integers(0, len(GOOD)))]]
        for _ in range(draw(st.integers(0, 12))):
            piece = draw(st.sampled_from(TRICKY))
            parts.append(piece * draw(st.integers(1, 40)))
        parts.append(GOOD[draw(st.integers(0, len(GOOD))) :])
        lines.append(b"".join(parts))
    return b"\n".join(lines) + b"\n"


@pytest.mark.parametrize("pure", [False, True], ids=["C", "pure"])
@pytest.mark.parametrize("fmt", ["combined", STRFTIME, URI_QUERY])
@SETTINGS
@given(data=hostile_chunks(), zone=st.sampled_from(["", "Pacific/Kiritimati", "Etc/GMT+12"]))
def test_any_bytes_never_raise_and_take_bounded_time(
    fmt: str, pure: bool, monkeypatch: pytest.MonkeyPatch, data: bytes, zone: str
) -> None:
    counter, aggregator = counter_for(fmt, monkeypatch, pure, timezone=zone)
    counter.feed(GOOD + b"\n")  # not timed: the first line loads the classifiers
    aggregator.classify(counter.take())
    started = time.monotonic()
    counter.feed(data)
    raw = counter.take()
    delta = aggregator.classify(raw)
    elapsed = time.monotonic() - started
    lines = [ln for ln in data.split(b"\n") if ln]
    assert delta.lines + delta.malformed == len(lines)
    counted = sum(
        n.get("hits", 0) + n.get("bots", 0) for k, n in delta.totals.items() if k[1] == "day"
    )
    assert counted == delta.lines
    # Generous (the machine may be loaded): a regex that backtracks takes hours.
    assert elapsed < 2 + 50e-6 * len(data), f"{elapsed:.2f}s for {len(data)} bytes"


# --- 2. valid lines equal apachelogs' reading ------------------------------------------

_PLAIN = st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\')
# What Apache writes for a byte of a string: itself, or an escape.
_ESCAPED = st.one_of(
    _PLAIN,
    st.sampled_from(['\\"', "\\\\", "\\t", "\\n"]),
    st.integers(0x80, 0xFF).map(lambda b: f"\\x{b:02x}"),
    st.integers(0x00, 0x1F).map(lambda b: f"\\x{b:02x}"),
)


def _string(min_size: int = 0, max_size: int = 40, spaces: bool = True) -> st.SearchStrategy[str]:
    atoms = _ESCAPED if spaces else _ESCAPED.filter(lambda a: a != " ")
    return st.lists(atoms, min_size=min_size, max_size=max_size).map("".join)


MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    when = draw(st.datetimes(min_value=_dt(1001), max_value=_dt(9998, last=True)))
    minutes = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    sign = "-" if minutes < 0 else "+"
    off = f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    return (
        f"{when.day:02d}/{MONTHS[when.month - 1]}/{when.year:04d}:"
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} {off}"
    )


def _dt(year: int, last: bool = False) -> datetime:
    return datetime(year, 12, 31, 23, 59, 59) if last else datetime(year, 1, 1)


_CLIENT = st.one_of(
    st.ip_addresses().map(str),
    st.lists(st.ip_addresses(v=4).map(str), min_size=2, max_size=4).map(", ".join),
    st.from_regex(r"[a-z0-9.-]{1,30}", fullmatch=True),
)
_NUMBER = st.integers(0, COUNT_LIMIT - 1).map(str)
_TARGET = st.one_of(_string(max_size=60, spaces=False), st.just("/"))


@st.composite
def values(draw: st.DrawFn) -> dict[str, str]:
    method = draw(st.sampled_from(["GET", "POST", "HEAD", "PROPFIND"]))
    target = "/" + draw(_TARGET)
    query = draw(st.one_of(st.just(""), _string(max_size=20, spaces=False).map("?{}".format)))
    request = draw(
        st.one_of(
            st.just(f"{method} {target}{query} HTTP/1.1"),
            st.sampled_from(["-", ""]),
            _string(max_size=60),
        )
    )
    return {
        "%h": draw(_CLIENT),
        "%l": "-",
        "%u": draw(st.one_of(st.sampled_from(["-", '""']), _string(1, 12, spaces=False))),
        "%t": "[" + draw(timestamps()) + "]",
        "%{%d/%b/%Y:%H:%M:%S %z}t": draw(timestamps()),
        "%r": request,
        "%>s": draw(st.one_of(st.integers(100, 599).map(str), st.just("-"))),
        "%b": draw(st.one_of(_NUMBER, st.just("-"))),
        "%B": draw(_NUMBER),
        "%{Referer}i": draw(st.one_of(st.just("-"), _string(max_size=60))),
        "%{User-Agent}i": draw(st.one_of(st.just("-"), _string(max_size=80))),
        "%D": draw(_NUMBER),
        "%{ms}T": draw(st.integers(0, COUNT_LIMIT // 1000 - 1).map(str)),
        "%v": draw(st.from_regex(r"[a-z0-9.-]{1,20}", fullmatch=True)),
        "%m": method,
        "%U": target,
        "%q": query,
        "%H": "HTTP/1.1",
    }


def _render(fmt: str, vals: dict[str, str]) -> bytes:
    out = [
        t.group("literal") or vals[t.group(0)]
        for t in DIRECTIVE_RGX.finditer(resolve_nickname(fmt))
    ]
    return "".join(out).encode("iso-8859-1")


@pytest.mark.parametrize("fmt", ["combined", "common", CUSTOM_DURATION, STRFTIME, URI_QUERY])
@SETTINGS
@given(vals=values())
def test_valid_lines_give_apachelogs_fields(fmt: str, vals: dict[str, str]) -> None:
    line = _render(fmt, vals)
    expected = reference(fmt, line)
    assume(expected is not None)  # e.g. a %u whose text ends the way %t starts
    cf = compile_format(fmt)
    got = matched_fields(cf, line)
    assert got is not None and ours(cf, got) == expected
    in_chunk = chunk_fields(cf, line)
    if in_chunk is not None:
        assert ours(cf, in_chunk) == expected
    counter = LineCounter(cf)
    if counter.native:
        row = counter.scanner.match(line)
        if row is not None:
            assert ours(cf, {name: row[i] for name, i in cf.group_index.items()}) == expected
    # The slow path's regex (rewritten for linear time) on its own: apachelogs' groups.
    text = line.decode("iso-8859-1")
    mine, theirs = cf._slow.fullmatch(text), _parser(resolve_nickname(fmt))._rgx.fullmatch(text)
    assert mine is not None and theirs is not None and mine.groups() == theirs.groups()


# --- 3. the fuzz target ------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_fuzz_target_passes_its_seed_corpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make test` fuzzes for a minute from these seeds: each must pass the target's own
    checks first (no exception, C and pure paths equal, within its time limit)."""
    monkeypatch.delenv("LOGCOUNT_PURE_PYTHON", raising=False)
    from tests.fuzz import fuzz_lines

    lines = fuzz_lines.seed_lines()
    assert len(lines) >= len(fuzz_lines.HOSTILE)
    for i in range(0, len(lines), 3):
        fuzz_lines.check_input(b"\n".join(lines[i : i + 3]))
