"""`Counts`, the API a web application calls, against the same data as the CLI tests."""

from __future__ import annotations

import json
from datetime import timedelta

import redis

from logcount import Counts
from logcount.config import load_config
from tests import test_cli_top as known
from tests.test_cli_top import Loaded

# The same known data as the CLI tests (fixtures shared by assignment).
loaded = known.loaded
rolled = known.rolled


def counts_of(data: Loaded) -> Counts:
    return Counts.from_config(
        str(data.config_path),
        redis=data.server.url,
        store=data.store_url,
        data_dir=str(data.data_dir),
    )


def test_hits_today_of_a_path_and_an_object(loaded: Loaded) -> None:
    counts = counts_of(loaded)
    assert counts.hits_today("/press/42/") == 4
    assert counts.hits_today("/press/42/?utm_source=x") == 4  # normalised like the readers
    assert counts.hits_today("/press/%34%32/") == 4  # unreserved %-encodings decoded
    assert counts.hits_today(object=("press_release", 42)) == 4
    assert counts.hits_today(object="press_release:42") == 4
    assert counts.hits_today("press/42/") == 4
    assert counts.hits_today("https://www.example.org/press/42/#top") == 4
    assert counts.hits_today("/never/seen/") == 0


def test_hits_today_is_one_redis_round_trip(loaded: Loaded) -> None:
    counts = counts_of(loaded)
    counts.hits_today("/about")  # connect first (cluster detection is a one-off)
    admin = redis.Redis(port=loaded.server.port)
    admin.config_resetstat()
    assert counts.hits_today("/about") == 1
    stats = admin.info("commandstats")
    calls = {name: v["calls"] for name, v in stats.items() if name != "cmdstat_config"}
    assert calls == {"cmdstat_zscore": 1}


def test_history_store_then_live_zero_filled(rolled: Loaded) -> None:
    counts = counts_of(rolled)
    expected = [
        (rolled.today - timedelta(days=4), 0),
        (rolled.rolled_days[0], 2),
        (rolled.rolled_days[1], 1),
        (rolled.live_only, 2),
        (rolled.today, 4),
    ]
    assert counts.history(path="/press/42/", days=5) == expected
    assert counts.history(object=("press_release", 42), days=5) == expected
    assert counts.history(object=("press_release", 7), days=3) == [
        (rolled.rolled_days[1], 1),
        (rolled.live_only, 0),
        (rolled.today, 0),
    ]


def test_history_equals_the_hits_command(rolled: Loaded) -> None:
    cli = json.loads(rolled.run("hits", "/press/42/", "--days", "5", "-f", "json").output)
    api = counts_of(rolled).history(path="/press/42/", days=5)
    assert [(d.isoformat(), n) for d, n in api] == [(d["date"], d["hits"]) for d in cli["days"]]


def test_top_rows_equal_the_json_rows(rolled: Loaded) -> None:
    counts = counts_of(rolled)
    for by in ("path", "object", "status"):
        cli = json.loads(
            rolled.run("top", "-w", rolled.span, "--by", by, "-n", "3", "-f", "json").output
        )
        rows = counts.top(window=rolled.span, by=by, limit=3)
        assert [{k: r[k] for k in ("key", "hits", "bytes", "visitors")} for r in rows] == cli[
            "rows"
        ]


def test_constructor_with_urls(loaded: Loaded) -> None:
    config = load_config(str(loaded.config_path))
    counts = Counts(redis_url=loaded.server.url, store_url=loaded.store_url, config=config)
    assert counts.hits_today("/about") == 1
    assert counts.top(window="yesterday", by="path", limit=1)[0]["key"] == "/about"


def test_recent(loaded: Loaded) -> None:
    items = counts_of(loaded).recent(1)
    assert items == [
        {
            "time": f"{loaded.today}T00:00",
            "path": "/about",
            "status": "200",
            "bytes": 500,
            "agent": "Firefox",
            "bot": False,
        }
    ]
