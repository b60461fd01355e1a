"""Events and who did them: scripted visitor journeys written as log lines, counted live
through the real pipeline into a private redis-server, then asked with `logcount visitors`.
The expected numbers come from the reference code below (who did what when, as the test
wrote it), not from logcount's code."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from logcount.cli import cli
from logcount.config import load_config
from logcount.count.events import parse_events
from logcount.errors import ConfigError
from tests.conftest import RedisServer
from tests.test_cli_top import GOOGLEBOT, feed

CONFIG = """site = "test"
timezone = "UTC"

[[route]]
pattern = "/press/<int:id>/"
object = "press_release"

[[event]]
name = "login"
path = "/login"
method = "POST"
status = "2xx"

[[event]]
name = "song_played"
path = "/songs/*/play"

[[event]]
name = "signup"
path = "/accounts/signup/done/"
status = "2xx"

[[event]]
name = "paid"
regex = "^/pay/(card|paypal)/done$"

[[event]]
name = "read_press"
object = "press_release"
"""
EVENTS = ("login", "song_played", "signup", "paid", "read_press")
DAY2 = datetime.now(UTC).date() - timedelta(days=1)  # yesterday: the whole day has passed
DAY1 = DAY2 - timedelta(days=1)


@dataclass(frozen=True)
class Step:
    who: int  # the visitor: client 10.9.x.y, one agent each
    when: datetime
    path: str
    method: str = "GET"
    status: int = 200


def agent(who: int) -> str:
    return f"Mozilla/5.0 (X11; Linux x86_64; rv:{100 + who % 7}.0) Gecko/20100101 Firefox/120.0"


def client(who: int) -> str:
    return f"10.9.{who // 250}.{who % 250}"


def log_line(step: Step, bot: bool = False) -> str:
    stamp = step.when.strftime("%d/%b/%Y:%H:%M:%S +0000")
    ua = GOOGLEBOT if bot else agent(step.who)
    return (
        f'{client(step.who)} - - [{stamp}] "{step.method} {step.path} HTTP/1.1" '
        f'{step.status} 100 "-" "{ua}"\n'
    )


def events_of(step: Step) -> set[str]:
    """The reference matcher: what each configured event means, written out by hand."""
    out = set()
    if step.path == "/login" and step.method == "POST" and 200 <= step.status < 300:
        out.add("login")
    if step.path.startswith("/songs/") and step.path.endswith("/play"):
        out.add("song_played")
    if step.path == "/accounts/signup/done/" and 200 <= step.status < 300:
        out.add("signup")
    if step.path in ("/pay/card/done", "/pay/paypal/done"):
        out.add("paid")
    if step.path.startswith("/press/") and step.path[7:-1].isdigit():
        out.add("read_press")
    return out


PATHS = [
    ("/login", "POST", 200),
    ("/login", "POST", 403),  # a failed login is no login
    ("/login", "GET", 200),  # nor is the form
    ("/songs/17/play", "GET", 200),
    ("/songs/3/play", "GET", 206),
    ("/songs/3", "GET", 200),
    ("/accounts/signup/done/", "GET", 200),
    ("/accounts/signup/done/", "GET", 500),
    ("/pay/card/done", "GET", 200),
    ("/pay/paypal/done", "GET", 302),
    ("/pay/cash/done", "GET", 200),
    ("/press/42/", "GET", 200),
    ("/press/7/", "GET", 200),
    ("/about", "GET", 200),
]


def journeys(seed: int, visitors: int, start: datetime, hours: int) -> list[Step]:
    """Visitors wandering over `hours` hours from `start`: each does a few steps, at
    random times, some of them events."""
    rng = random.Random(seed)
    steps = []
    for who in range(visitors):
        for _ in range(rng.randint(1, 6)):
            path, method, status = rng.choice(PATHS)
            when = start + timedelta(seconds=rng.randrange(hours * 3600))
            steps.append(Step(who, when, path, method, status))
    return sorted(steps, key=lambda s: s.when)


def did(steps: list[Step], keep: Callable[[Step], bool] = lambda s: True) -> dict[str, set[int]]:
    """Event -> the visitors who did it, among the steps `keep` keeps."""
    out: dict[str, set[int]] = {e: set() for e in EVENTS}
    for step in steps:
        if keep(step):
            for event in events_of(step):
                out[event].add(step.who)
    return out


class Live:
    def __init__(self, tmp: Path, server: RedisServer):
        path = tmp / "logcount.toml"
        path.write_text(CONFIG)
        self.base = ["--config", str(path), "--redis", server.url, "--data-dir", str(tmp / "d")]
        self.config = load_config(str(path), redis=server.url, data_dir=str(tmp / "d"))

    def feed(self, steps: list[Step], bots: list[Step] = ()) -> None:  # type: ignore[assignment]
        feed(self.config, "".join(map(log_line, steps)) + "".join(log_line(b, True) for b in bots))

    def run(self, *args: str) -> Any:
        return CliRunner().invoke(cli, [*self.base, *args], catch_exceptions=False)

    def json(self, *args: str) -> Any:
        result = self.run(*args, "--format", "json")
        assert result.exit_code == 0, result.output
        return json.loads(result.output)


@pytest.fixture
def live(tmp_path: Path, redis_server: RedisServer) -> Live:
    return Live(tmp_path, redis_server)


def at(day: date, hour: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


EXPRESSIONS: list[tuple[str, Callable[[dict[str, set[int]]], set[int]]]] = [
    ("login & song_played", lambda d: d["login"] & d["song_played"]),
    ("signup - paid", lambda d: d["signup"] - d["paid"]),
    ("login | signup", lambda d: d["login"] | d["signup"]),
    (
        "(login | signup) & paid - read_press",
        lambda d: (d["login"] | d["signup"]) & (d["paid"] - d["read_press"]),
    ),
    ("read_press", lambda d: d["read_press"]),
]


@pytest.mark.parametrize(("expr", "reference"), EXPRESSIONS)
def test_visitors_per_hour_of_a_day(live: Live, expr: str, reference: Any) -> None:
    steps = journeys(1, 300, at(DAY2), 24)
    live.feed(steps, bots=[Step(5, at(DAY2, 3), "/songs/1/play")])
    report = live.json("visitors", expr, "--window", DAY2.isoformat(), "--per", "hour")
    hours = [at(DAY2, h) for h in range(24)]
    per = [
        {
            "start": h.isoformat(),
            "visitors": len(
                reference(did(steps, lambda s, h=h: h <= s.when < h + timedelta(hours=1)))
            ),
        }
        for h in hours
    ]
    assert report == {
        "expr": expr,
        "window": {
            "start": at(DAY2).isoformat(),
            "end": at(DAY2 + timedelta(days=1)).isoformat(),
            "source": "live",
        },
        "total": len(reference(did(steps))),
        "per": per,
    }
    assert report["total"] > 0


def test_visitors_across_midnight_per_day(live: Live) -> None:
    steps = journeys(2, 200, at(DAY1, 22), 4)  # 22:00 to 02:00
    live.feed(steps)
    span = f"{DAY1}..{DAY2}"
    report = live.json("visitors", "login & song_played", "--window", span, "--per", "day")
    both = lambda d: d["login"] & d["song_played"]  # noqa: E731
    assert report["per"] == [
        {
            "start": at(day).isoformat(),
            "visitors": len(both(did(steps, lambda s, day=day: s.when.date() == day))),
        }
        for day in (DAY1, DAY2)
    ]
    # the whole window: login on one day and a song on the other counts too
    assert report["total"] == len(both(did(steps)))
    assert report["total"] > max(p["visitors"] for p in report["per"])


def test_the_table_and_csv(live: Live) -> None:
    steps = [Step(1, at(DAY2, 9), "/login", "POST"), Step(1, at(DAY2, 9), "/songs/1/play")]
    steps.append(Step(2, at(DAY2, 10), "/login", "POST"))
    live.feed(steps)
    csv = live.run(
        "visitors", "login - song_played", "--window", DAY2.isoformat(), "--format", "csv"
    )
    assert csv.output == f"start,visitors\n{at(DAY2).isoformat()},1\n"
    table = live.run("visitors", "login", "--window", DAY2.isoformat(), "--per", "hour")
    assert table.exit_code == 0
    lines = table.output.splitlines()
    assert lines[1].startswith("visitors 2 ")
    assert f"{DAY2} 09:00         1" in lines


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("login & nothing", "unknown event 'nothing' (events: login, song_played"),
        ("login &", "ends where an event was expected"),
        ("(login", "a '(' is not closed"),
        ("login song_played", "unexpected 'song_played'"),
        ("login + x", "cannot read '+ x'"),
        ("", "empty expression"),
    ],
)
def test_bad_expressions_are_one_line(live: Live, expr: str, message: str) -> None:
    result = live.run("visitors", expr)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"name": "a b", "path": "/"}], "event #1: name must be a word"),
        ([{"name": "a", "path": "/"}, {"name": "a", "path": "/x"}], "another event has this name"),
        ([{"name": "a"}], "give a path, a regex or an object type"),
        ([{"name": "a", "path": "/", "regex": "x"}], "give path or regex, not both"),
        ([{"name": "a", "regex": "("}], "invalid regex"),
        ([{"name": "a", "path": "/", "status": "2x"}], "is not a status (200) or a class (2xx)"),
        ([{"name": "a", "path": "/", "colour": "red"}], "unknown setting 'colour'"),
        ([{"name": "a", "path": 3}], "path must be a non-empty string"),
    ],
)
def test_bad_events_are_refused(rows: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_events(tuple(rows))


def test_a_bad_event_in_the_config_is_one_line_at_start(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[event]]\nname = "x"\nstatus = "200"\n')
    result = CliRunner().invoke(cli, ["--config", str(path), "visitors", "x"])
    assert result.exit_code == 78
    assert "event #1 (x): give a path, a regex or an object type" in result.output
