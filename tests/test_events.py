"""Events and who did them: scripted visitor journeys written as log lines, counted live
through the real pipeline into a private redis-server, then asked with `logcount visitors`.
The expected numbers come from the reference code below (who did what when, as the test
wrote it), not from logcount's code."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from logcount.cli import cli
from logcount.config import load_config
from logcount.count.events import parse_events
from logcount.errors import ConfigError
from logcount.sources.rollup import rollup
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


@pytest.fixture(autouse=True)
def days_of_this_test() -> None:
    """DAY1 and DAY2 from the day each test writes its lines, not the day the module was
    imported: a run that crosses midnight UTC would ask for the wrong days."""
    global DAY1, DAY2
    DAY2 = datetime.now(UTC).date() - timedelta(days=1)
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


def sessions(seed: int, visitors: int, start: datetime, hours: int) -> list[Step]:
    """Visitors each in a session of steps minutes or hours apart: some go on within the
    hour, some come back later (a funnel's steps follow or do not)."""
    rng = random.Random(seed)
    steps = []
    for who in range(visitors):
        when = start + timedelta(seconds=rng.randrange(hours * 3600))
        for _ in range(rng.randint(1, 8)):
            path, method, status = rng.choice(PATHS)
            steps.append(Step(who, when, path, method, status))
            when += timedelta(minutes=rng.choice([1, 5, 20, 50, 70, 200]))
    return sorted(
        (s for s in steps if s.when < start + timedelta(hours=hours)), key=lambda s: s.when
    )


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


# --- durable: the rollup's sets in the store ---------------------------------------------


class Stored(Live):
    def __init__(self, tmp: Path, server: RedisServer):
        super().__init__(tmp, server)
        self.tmp = tmp
        self.store = f"sqlite:///{tmp / 'store.sqlite3'}"
        self.base += ["--store", self.store]
        self.config = replace(self.config, store=self.store)

    def roll_up(self, name: str, steps: list[Step], host: str = "web1") -> None:
        log = self.tmp / name
        log.write_text("".join(map(log_line, steps)))
        rollup(self.config, [str(log)], [], host=host, jobs=1, warn=lambda m: None)


@pytest.fixture
def stored(tmp_path: Path, redis_server: RedisServer) -> Stored:
    return Stored(tmp_path, redis_server)


@pytest.mark.parametrize(("expr", "reference"), EXPRESSIONS)
def test_visitors_from_the_store_across_hosts_and_reruns(
    stored: Stored, expr: str, reference: Any
) -> None:
    steps = journeys(3, 300, at(DAY1, 20), 8)  # 20:00 to 04:00 the next day
    half = len(steps) // 2
    # two hosts' files, each with lines of both days; one of them rolled up twice
    stored.roll_up("web1.log", steps[::2], host="web1")
    stored.roll_up("web2.log", steps[1::2], host="web2")
    stored.roll_up("web2.log", steps[1::2], host="web2")
    assert half > 100
    span = f"{DAY1}..{DAY2}"
    report = stored.json("visitors", expr, "--window", span, "--per", "day")
    assert report["window"]["source"] == "store"
    assert report["per"] == [
        {
            "start": at(day).isoformat(),
            "visitors": len(reference(did(steps, lambda s, day=day: s.when.date() == day))),
        }
        for day in (DAY1, DAY2)
    ]
    assert report["total"] == len(reference(did(steps)))


def test_a_window_from_the_store_and_live(stored: Stored) -> None:
    old = journeys(4, 150, at(DAY1, 8), 12)
    new = journeys(5, 150, at(DAY2 + timedelta(days=1), 0), 1)  # today, first hour
    stored.roll_up("day1.log", old)
    stored.feed(new)  # live only: today is never read from the store
    span = f"{DAY1}..{DAY2 + timedelta(days=1)}"
    report = stored.json("visitors", "login | read_press", "--window", span, "--per", "day")
    either = lambda d: d["login"] | d["read_press"]  # noqa: E731
    assert report["window"]["source"] == "both"
    assert [p["visitors"] for p in report["per"]] == [
        len(either(did(old))),
        0,
        len(either(did(new))),
    ]
    # visitor 7 of the old day is visitor 7 of today (same address and agent): the union
    # is of visitor hashes, not of the store's and Redis' numbers, which differ
    assert report["total"] == len(either(did(old)) | either(did(new)))
    assert either(did(old)) & either(did(new))


def test_visitors_from_a_postgresql_store(
    tmp_path: Path, redis_server: RedisServer, postgres_url: str
) -> None:
    pg = Stored(tmp_path, redis_server)
    pg.base[pg.base.index("--store") + 1] = postgres_url
    pg.config = replace(pg.config, store=postgres_url)
    steps = journeys(6, 200, at(DAY1, 6), 12)
    pg.roll_up("a.log", steps[::2], host="a")
    pg.roll_up("b.log", steps[1::2], host="b")
    report = pg.json("visitors", "signup - paid", "--window", DAY1.isoformat())
    assert report["window"]["source"] == "store"
    assert report["total"] == len(did(steps)["signup"] - did(steps)["paid"])


# --- funnels and retention ---------------------------------------------------------------


def funnel_reference(
    steps: list[Step], events: list[str], bucket: Callable[[Step], int], reach: int
) -> list[int]:
    """Per visitor: the buckets where they reached each step (the first: where they did
    the first event; the next: where they did the next event, at most `reach` buckets
    after a bucket where they reached the step before); how many reached each step."""
    out = [0] * len(events)
    for who in {s.who for s in steps}:
        done = [{bucket(s) for s in steps if s.who == who and e in events_of(s)} for e in events]
        reached = done[0]
        for i in range(len(events)):
            if i:
                reached = {u for u in done[i] if any(t <= u <= t + reach for t in reached)}
            if not reached:
                break
            out[i] += 1
    return out


def test_a_funnel_within_an_hour(live: Live) -> None:
    steps = sessions(7, 600, at(DAY2), 24)
    live.feed(steps)
    events = ["login", "song_played", "paid"]
    report = live.json("funnel", *events, "--window", DAY2.isoformat(), "--within", "1h")
    expected = funnel_reference(steps, events, lambda s: s.when.hour, 1)
    assert report == {
        "window": {
            "start": at(DAY2).isoformat(),
            "end": at(DAY2 + timedelta(days=1)).isoformat(),
            "source": "live",
        },
        "steps": [{"event": e, "visitors": n} for e, n in zip(events, expected, strict=True)],
    }
    assert expected[0] > expected[1] > expected[2] > 0
    table = live.run("funnel", *events, "--window", DAY2.isoformat(), "--within", "1h")
    assert "each step within 1h of the one before" in " ".join(table.output.split())
    row = next(ln.split() for ln in table.output.splitlines() if ln.startswith("2 "))
    assert row == [
        "2",
        "song_played",
        str(expected[1]),
        f"{expected[1] / expected[0] * 100:.1f}%",
        str(expected[0] - expected[1]),
    ]


def test_a_funnel_from_the_store_by_days(stored: Stored) -> None:
    steps = sessions(8, 300, at(DAY1), 48)
    stored.roll_up("both.log", steps)
    events = ["signup", "paid"]
    span = f"{DAY1}..{DAY2}"
    report = stored.json("funnel", *events, "--window", span, "--within", "7d")
    assert report["window"]["source"] == "store"
    expected = funnel_reference(steps, events, lambda s: (s.when.date() - DAY1).days, 7)
    assert [s["visitors"] for s in report["steps"]] == expected


def retention_reference(steps: list[Step], event: str, days: list[date]) -> list[dict[str, Any]]:
    did_on = [{s.who for s in steps if s.when.date() == d and event in events_of(s)} for d in days]
    out, seen = [], set()
    for i, day in enumerate(days):
        fresh = did_on[i] - seen
        seen |= did_on[i]
        out.append(
            {
                "start": day.isoformat(),
                "size": len(fresh),
                "back": [len(fresh & later) for later in did_on[i + 1 :]],
            }
        )
    return out


@pytest.mark.parametrize("rolled", [False, True])
def test_retention_by_day_live_and_stored(stored: Stored, rolled: bool) -> None:
    today = DAY2 + timedelta(days=1)
    steps = journeys(9, 300, at(DAY1), 72)  # three days: DAY1, DAY2, today
    past = [s for s in steps if s.when.date() < today]
    if rolled:
        stored.roll_up("past.log", past)
        stored.feed([s for s in steps if s.when.date() == today])
    else:
        stored.feed(steps)
    report = stored.json("retention", "--event", "read_press", "--cohort", "day", "--periods", "3")
    assert report == {"cohorts": retention_reference(steps, "read_press", [DAY1, DAY2, today])}
    assert report["cohorts"][0]["back"][0] > 0


def test_the_retention_table_is_shaded_on_a_terminal_only(live: Live) -> None:
    from logcount.read.render import retention_table

    report = {
        "site": "test",
        "events": ["login"],
        "cohort": "week",
        "cohorts": [
            {"start": "2026-11-30", "size": 4, "back": [1]},
            {"start": "2026-12-07", "size": 2, "back": []},
        ],
    }
    plain = retention_table(report, 80, terminal=False)
    assert "\x1b" not in plain
    assert plain.splitlines()[2:5] == [
        "cohort      size     +1",
        "2026-11-30     4  25.0%",
        "2026-12-07     2",
    ]
    shaded = retention_table(report, 80, terminal=True)
    assert "\x1b[" in shaded and "25.0%" in shaded


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["funnel", "login", "nope"], "unknown event 'nope'"),
        (["funnel", "login", "--within", "soon"], "--within: 'soon' is not a duration"),
        (["retention", "--event", "nope"], "unknown event 'nope'"),
        (["retention", "--periods", "0"], "Invalid value for '--periods'"),
    ],
)
def test_bad_funnels_and_cohorts_are_one_line(live: Live, args: list[str], message: str) -> None:
    result = live.run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1


# --- identities: the authenticated user, a cookie ------------------------------------------

USER_CONFIG = """site = "test"
timezone = "UTC"
event_identity = "%u"

[[event]]
name = "login"
path = "/login"

[[event]]
name = "paid"
path = "/pay/*"
"""
COOKIE_FORMAT = '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %{sessionid}C'


def user_line(user: str, address: str, path: str, hour: int, cookie: str | None = None) -> str:
    stamp = at(DAY2, hour).strftime("%d/%b/%Y:%H:%M:%S +0000")
    line = f'{address} - {user} [{stamp}] "GET {path} HTTP/1.1" 200 10 "-" "{agent(1)}"'
    return line + (f" {cookie}" if cookie is not None else "") + "\n"


@pytest.mark.parametrize("rolled", [False, True])
def test_events_by_the_authenticated_user(
    tmp_path: Path, redis_server: RedisServer, rolled: bool
) -> None:
    config = tmp_path / "u.toml"
    config.write_text(USER_CONFIG)
    store = f"sqlite:///{tmp_path / 's.sqlite3'}"
    base = ["--config", str(config), "--redis", redis_server.url, "--store", store]
    base += ["--data-dir", str(tmp_path / "d")]
    loaded = load_config(
        str(config), redis=redis_server.url, store=store, data_dir=str(tmp_path / "d")
    )
    lines = [
        user_line("alice", "10.0.0.1", "/login", 8),
        user_line("alice", "10.0.0.2", "/pay/card", 9),  # another address: still alice
        user_line("bob", "10.0.0.1", "/login", 8),  # alice's address: another user
        user_line("-", "10.0.0.3", "/pay/card", 9),  # nobody known: not counted
        user_line("carol", "10.0.0.4", "/pay/card", 10),
    ]
    if rolled:
        log = tmp_path / "day.log"
        log.write_text("".join(lines))
        rollup(loaded, [str(log)], [], jobs=1, warn=lambda m: None)
    else:
        feed(loaded, "".join(lines))

    def ask(expr: str) -> int:
        result = CliRunner().invoke(
            cli, [*base, "visitors", expr, "--window", DAY2.isoformat(), "--format", "json"]
        )
        assert result.exit_code == 0, result.output
        return int(json.loads(result.output)["total"])

    assert (ask("login"), ask("paid"), ask("login & paid"), ask("paid - login")) == (2, 2, 1, 1)


def test_events_by_a_cookie_and_a_format_without_it(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        f"log_format = '{COOKIE_FORMAT}'\n" + USER_CONFIG.replace("%u", "%{sessionid}C")
    )
    loaded = load_config(str(config), redis=redis_server.url, data_dir=str(tmp_path / "d"))
    feed(
        loaded,
        user_line("-", "10.0.0.1", "/login", 8, "s1")
        + user_line("-", "10.0.0.2", "/pay/x", 9, "s1")
        + user_line("-", "10.0.0.1", "/pay/x", 9, "s2"),
    )
    base = ["--config", str(config), "--redis", redis_server.url, "--data-dir", str(tmp_path / "d")]
    result = CliRunner().invoke(
        cli, [*base, "visitors", "login & paid", "--window", DAY2.isoformat(), "--format", "json"]
    )
    assert json.loads(result.output)["total"] == 1
    config.write_text(USER_CONFIG.replace("%u", "%{sessionid}C"))  # combined: no cookie
    result = CliRunner().invoke(cli, [*base, "visitors", "login"])
    assert result.exit_code == 78
    assert (
        "event_identity %{sessionid}C: the log format 'combined' has no %{sessionid}C"
        in result.output
    )


def test_two_sites_in_one_batch_number_their_visitors_apart(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    from logcount.count.classify import visitor_hash
    from logcount.sinks import keys

    config = tmp_path / "v.toml"
    config.write_text('log_format = "vhost_combined"\n' + CONFIG.replace('site = "test"\n', ""))
    loaded = load_config(str(config), redis=redis_server.url, data_dir=str(tmp_path / "d"))
    stamp = at(DAY2, 9).strftime("%d/%b/%Y:%H:%M:%S +0000")

    def vhost_line(site: str, who: int) -> str:
        return (
            f'{site}:80 {client(who)} - - [{stamp}] "POST /login HTTP/1.1" 200 10 "-" '
            f'"{agent(who)}"\n'
        )

    visits = {"a.example": [1, 2, 3], "b.example": [3, 4, 2, 5]}
    feed(loaded, "".join(vhost_line(site, w) for site, ws in visits.items() for w in ws))
    r = redis_server.client()
    key = loaded.visitor_key()
    for site, ws in visits.items():
        numbers = {
            int(
                r.hget(
                    keys.visitor_ids(site), visitor_hash(client(w).encode(), agent(w).encode(), key)
                )
            )
            for w in ws
        }
        assert numbers == set(range(len(ws)))  # each site numbers its own from 0
        bits = r.get(keys.event_set(site, "login", "day", DAY2.strftime("%Y%m%d")))
        on = {i for i in range(len(bits) * 8) if bits[i // 8] >> (7 - i % 8) & 1}
        assert on == numbers
        reversed_ = r.get(keys.visitor_hashes(site))
        for w in ws:
            h = visitor_hash(client(w).encode(), agent(w).encode(), key)
            n = int(r.hget(keys.visitor_ids(site), h))
            assert reversed_[16 * n : 16 * n + 16].decode() == h


def test_a_flood_of_visitors_stops_at_the_numbering_s_limit(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    path = tmp_path / "cap.toml"
    path.write_text(
        CONFIG.replace('timezone = "UTC"\n', 'timezone = "UTC"\n[live]\nmax_event_visitors = 3\n')
    )
    live = Live.__new__(Live)
    live.base = [
        "--config",
        str(path),
        "--redis",
        redis_server.url,
        "--data-dir",
        str(tmp_path / "d"),
    ]
    live.config = load_config(str(path), redis=redis_server.url, data_dir=str(tmp_path / "d"))
    live.feed([Step(w, at(DAY2, 9), "/login", "POST") for w in range(5)])
    live.feed([Step(w, at(DAY2, 10), "/songs/1/play") for w in (0, 1, 4)])
    from logcount.count.classify import visitor_hash

    key = live.config.visitor_key()
    by_hash = sorted(
        range(5), key=lambda w: visitor_hash(client(w).encode(), agent(w).encode(), key)
    )
    numbered = set(by_hash[:3])  # one batch: its hashes are numbered in order
    window = ["--window", DAY2.isoformat()]
    assert live.json("visitors", "login", *window)["total"] == 3
    # the numbered ones go on counting; the others count nowhere, now or later
    assert live.json("visitors", "song_played", *window)["total"] == len({0, 1, 4} & numbered)
    assert redis_server.client().hget("lc:{test}:vid", "#next") == b"3"


def test_the_buckets_of_a_24h_window_grouped_by_day_and_week() -> None:
    from logcount.read.journeys import per_buckets
    from logcount.read.report import parse_window

    window = parse_window("24h", datetime(2026, 12, 6, 5, 30, tzinfo=UTC))  # a Sunday

    def shape(per: str | None) -> list[tuple[str, int]]:
        gran, groups = per_buckets(window, per)
        assert gran == "hour"
        return [(start.isoformat()[:16], len(labels)) for start, labels in groups]

    assert shape("hour")[0] == ("2026-12-05T06:00", 1) and len(shape("hour")) == 24
    # a group starts at its first bucket, never before the window: the window's day and
    # week start at 06:00 on Saturday, not at midnight nor on the Monday before
    assert shape("day") == [("2026-12-05T06:00", 18), ("2026-12-06T00:00", 6)]
    assert shape("week") == [("2026-12-05T06:00", 24)]
    seven = parse_window("7d", datetime(2026, 12, 9, 12, tzinfo=UTC))  # Thursday to Wednesday
    gran, groups = per_buckets(seven, "week")
    assert gran == "day"
    assert [(s.date().isoformat(), len(labels)) for s, labels in groups] == [
        ("2026-12-03", 4),  # Thursday to Sunday
        ("2026-12-07", 3),  # Monday to Wednesday
    ]
    assert shape(None) == [("2026-12-05T06:00", 24)]


def test_a_day_with_only_stragglers_in_the_store_is_read_live(stored: Stored) -> None:
    day1 = journeys(10, 100, at(DAY1, 12), 12)
    day2 = journeys(11, 100, at(DAY2), 12)
    stored.feed(day1 + day2)
    # DAY2's own file (a cronolog template) starts with a few lines of DAY1
    folder = stored.tmp / DAY2.strftime("%Y/%m/%d")
    folder.mkdir(parents=True)
    (folder / "access.log").write_text("".join(map(log_line, day1[-5:] + day2)))
    template = str(stored.tmp / "%Y/%m/%d/access.log")
    rollup(stored.config, [template], [DAY2], jobs=1, warn=lambda m: None)
    first = stored.json("visitors", "login | read_press", "--window", DAY1.isoformat())
    assert first["window"]["source"] == "live"
    assert first["total"] == len(did(day1)["login"] | did(day1)["read_press"])
    second = stored.json("visitors", "login | read_press", "--window", DAY2.isoformat())
    assert second["window"]["source"] == "store"
    assert second["total"] == len(did(day2)["login"] | did(day2)["read_press"])


def test_event_sets_survive_the_spool_and_a_split() -> None:
    from logcount.count.delta import Delta

    hashes = {f"{i:016x}" for i in range(3000)}
    delta = Delta(events={("test", "login", "day", "20261205"): set(hashes)})
    delta.events[("other", "paid", "hour", "2026120509")] = {"00000000000000aa"}
    again = Delta.from_json(delta.to_json())
    assert again.events == delta.events
    parts = list(delta.parts(20_000))
    assert len(parts) > 1
    merged = Delta()
    for part in parts:
        merged.merge(part)
    assert merged.events == delta.events
    assert set(delta.split_by_site()) == {"test", "other"}
    assert Delta.from_json(Delta().to_json().replace(',"e":[]', "")).events == {}  # an old spool


@pytest.mark.parametrize(
    ("glob", "path", "expected"),
    [
        ("/login", "/login", True),
        ("/login", "/login/", False),
        ("/songs/*/play", "/songs/17/play", True),
        ("/songs/*/play", "/songs/play", False),
        ("/songs/*/play", "/songs//play", True),
        ("*", "/anything", True),
        ("/a*b*c", "/abc", True),
        ("/a*b*c", "/acb", False),
        ("/ab*ba", "/aba", False),  # the two ends may not overlap
        ("/ab*ba", "/abba", True),
    ],
)
def test_a_path_glob(glob: str, path: str, expected: bool) -> None:
    (rule,) = parse_events(({"name": "e", "path": glob},))
    assert rule.matches(path, "GET", "200", None) is expected


def test_a_glob_takes_linear_time_on_a_hostile_path() -> None:
    import time

    (rule,) = parse_events(({"name": "e", "path": "/a*b*c*d*e*f"},))
    path = "/a" + "b" * 400 + "c" * 100  # no d: a backtracking regex tries O(n^4) splits
    started = time.process_time()
    for _ in range(100):
        assert not rule.matches(path, "GET", "200", None)
    assert time.process_time() - started < 1.0
