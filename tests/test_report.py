"""Windows, sparklines and escaping: the pure parts of the reports."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from logcount.read.render import safe_text, sparkline
from logcount.read.report import (
    WindowError,
    parse_datetime,
    parse_window,
    spark_buckets,
    window_between,
)

NOW = datetime(2026, 11, 22, 14, 37, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("spec", "gran", "first", "last", "count"),
    [
        ("5m", "minute", "202611221433", "202611221437", 5),
        ("15m", "minute", "202611221423", "202611221437", 15),
        ("1h", "minute", "202611221338", "202611221437", 60),
        ("6h", "hour", "2026112209", "2026112214", 6),
        ("24h", "hour", "2026112115", "2026112214", 24),
        ("today", "day", "20261122", "20261122", 1),
        ("yesterday", "day", "20261121", "20261121", 1),
        ("7d", "day", "20261116", "20261122", 7),
        ("30d", "day", "20261024", "20261122", 30),
        ("2026-11-01", "day", "20261101", "20261101", 1),
        ("2026-10-30..2026-11-02", "day", "20261030", "20261102", 4),
    ],
)
def test_windows(spec: str, gran: str, first: str, last: str, count: int) -> None:
    w = parse_window(spec, NOW)
    assert (w.gran, w.labels[0], w.labels[-1], len(w.labels)) == (gran, first, last, count)


def test_window_ends() -> None:
    assert parse_window("today", NOW).end == NOW
    assert parse_window("yesterday", NOW).end == datetime(2026, 11, 22, tzinfo=UTC)


@pytest.mark.parametrize("spec", ["0m", "fortnight", "2026-11-05..2026-11-01", "2026-02-30"])
def test_bad_windows(spec: str) -> None:
    with pytest.raises(WindowError):
        parse_window(spec, NOW)


def test_since_until_picks_the_finest_live_buckets() -> None:
    w = window_between(NOW - timedelta(minutes=90), None, NOW)
    assert (w.gran, w.labels[0], w.labels[-1]) == ("minute", "202611221307", "202611221437")
    assert w.end == NOW
    w = window_between(
        datetime(2026, 11, 20, 8, 15, tzinfo=UTC), datetime(2026, 11, 20, 10, 0, tzinfo=UTC), NOW
    )
    assert (w.gran, w.labels) == ("hour", ("2026112008", "2026112009"))
    w = window_between(datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 9, 3, tzinfo=UTC), NOW)
    assert (w.gran, w.labels) == ("day", ("20260901", "20260902"))
    with pytest.raises(WindowError, match="--until must be later"):
        window_between(NOW, NOW - timedelta(hours=1), NOW)


def test_parse_datetime_in_the_configured_zone() -> None:
    paris = ZoneInfo("Europe/Paris")
    assert parse_datetime("2026-11-22 10:00", paris) == datetime(2026, 11, 22, 10, tzinfo=paris)
    assert parse_datetime("2026-11-22T10:00+00:00", paris).hour == 11
    with pytest.raises(WindowError, match="is not a date-time"):
        parse_datetime("10 o'clock", paris)


def test_a_single_day_sparkline_is_drawn_by_hours() -> None:
    gran, labels = spark_buckets(parse_window("today", NOW), NOW)
    assert (gran, labels[0], labels[-1], len(labels)) == ("hour", "2026112200", "2026112214", 15)
    gran, labels = spark_buckets(parse_window("7d", NOW), NOW)
    assert (gran, len(labels)) == ("day", 7)


def test_sparkline() -> None:
    assert sparkline([0, 1, 2, 4]) == "▁▃▅█"
    assert sparkline([0, 0]) == "▁▁"
    assert sparkline([]) == ""
    assert sparkline([1] * 48 + [5] * 12, 6) == "▂▂▂▂▄█"


def test_safe_text_escapes_every_control_character() -> None:
    assert safe_text("/\x1b[2J") == "/\\x1b[2J"
    assert safe_text("a\x07b\x9bc\x7f\r\n") == "a\\x07b\\x9bc\\x7f\\x0d\\x0a"
    assert safe_text("caf\u00e9 \u2028") == "caf\u00e9 \\u2028"
    assert safe_text("/a\u202egnp.exe") == "/a\\u202egnp.exe"  # a right-to-left override


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("9999-12-31", "reaches past the dates a calendar holds"),
        ("9999-12-30..9999-12-31", "reaches past the dates a calendar holds"),
        ("3661d", "is longer than 3,660 days"),
        ("2016-01-01..2026-01-31", "spans more than 3,660 days"),
        ("193h", "reaches back past the hour buckets (192 h"),
        ("11521m", "reaches back past the hour buckets"),
        ("9" * 40 + "h", "reaches back past the hour buckets"),
        ("9" * 5000 + "d", "is longer than 3,660 days"),
    ],
)
def test_windows_past_the_calendar_or_the_buckets_are_refused(spec: str, message: str) -> None:
    with pytest.raises(WindowError, match=re.escape(message)):
        parse_window(spec, NOW)
    assert len(parse_window("192h", NOW).labels) == 192  # the longest the hour TTL allows
    assert len(parse_window("3660d", NOW).labels) == 3660
    # A longer hour TTL (the configuration's) allows a longer window.
    assert len(parse_window("193h", NOW, hour_ttl=193 * 3600).labels) == 193


def test_since_until_name_a_bounded_number_of_buckets() -> None:
    with pytest.raises(WindowError, match="the window holds 739,"):
        window_between(datetime(1, 1, 1, tzinfo=UTC), None, NOW)
    with pytest.raises(WindowError, match="reaches past the dates a calendar holds"):
        window_between(NOW, datetime.max.replace(tzinfo=UTC), NOW)
    w = window_between(datetime(9999, 12, 30, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC), NOW)
    assert (w.gran, w.labels[-1], len(w.labels)) == ("hour", "9999123023", 24)


def test_hits_days_bounded() -> None:
    from datetime import date

    from logcount.read.report import build_hits

    with pytest.raises(WindowError, match="--days must be from 1 to 3,660"):
        build_hits(None, None, "s", "path", "/a", 99_999_999, date(2026, 11, 22))
