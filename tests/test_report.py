"""Windows, sparklines and escaping: the pure parts of the reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from logcount.render import safe_text, sparkline
from logcount.report import (
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
