"""`logcount top` and `logcount hits` through click's CliRunner, exact output.

Known lines go through the real pipeline (pipeline.Pipeline: parse, classify, aggregate, the
Lua batch) into a private redis-server; two of the past days are also rolled up into a real
SQLite store with the real rollup, so windows can be live, store or both.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from logcount.cli import cli
from logcount.config import load_config
from logcount.dimensions import DIMENSION_NAMES
from logcount.sources.pipeline import Pipeline
from logcount.sources.rollup import rollup
from tests.conftest import RedisServer

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/119.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
CONFIG = """site = "test"
timezone = "UTC"
[[route]]
pattern = "/press/<int:id>/"
object = "press_release"
"""


def line(
    when: datetime,
    path: str,
    status: int = 200,
    size: int | str = 1000,
    referrer: str = "-",
    agent: str = FIREFOX,
    client: str = "10.0.0.1",
    method: str = "GET",
) -> str:
    stamp = when.strftime("%d/%b/%Y:%H:%M:%S +0000")
    request = f"{method} {path} HTTP/1.1"
    return f'{client} - - [{stamp}] "{request}" {status} {size} "{referrer}" "{agent}"\n'


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, 30, tzinfo=UTC)


def past_lines(today: date) -> dict[date, list[str]]:
    d15, d16, d17 = (today - timedelta(days=n) for n in (3, 2, 1))
    news = "http://news.example.org/story"
    return {
        d15: [
            line(at(d15, 10), "/press/42/"),
            line(at(d15, 10), "/press/42/", client="10.0.0.2"),
            line(at(d15, 11), "/about", size=500),
        ],
        d16: [
            line(at(d16, 11), "/press/42/", referrer=news),
            line(at(d16, 11), "/missing", status=404, size=100),
            line(at(d16, 12), "/missing", status=404, size=100, client="10.0.0.3"),
            line(at(d16, 12), "/press/7/", size=2000),
        ],
        d17: [
            line(at(d17, 9), "/press/42/", referrer=news, agent=CHROME),
            line(at(d17, 9), "/press/42/", referrer=news, agent=CHROME, client="10.0.0.4"),
            line(at(d17, 9), "/about", size=500),
            line(at(d17, 10), "/about", size=500),
            line(at(d17, 10), "/about", size=500, client="10.0.0.5"),
            line(at(d17, 11), "/boom", status=500, size="-"),
            line(at(d17, 11), "/", agent=GOOGLEBOT, client="66.249.66.1"),
            line(at(d17, 11), "/robots.txt", agent=GOOGLEBOT, client="66.249.66.1"),
        ],
    }


def today_lines(today: date) -> list[str]:
    return [
        *(line(at(today, 0), "/press/42/", client=f"10.1.0.{i}") for i in range(4)),
        line(at(today, 0), "/about", size=500),
    ]


def feed(config: Any, text: str) -> None:
    """Through the real pipeline, as `logcount pipe` does, flushed to Redis."""
    messages: list[str] = []
    pipeline = Pipeline(config, "pipe", messages.append)
    pipeline.start()
    pipeline.feed(text.encode())
    assert pipeline.close(), messages


class Loaded:
    def __init__(self, tmp: Path, server: RedisServer):
        self.server = server
        self.config_path = tmp / "logcount.toml"
        self.config_path.write_text(CONFIG)
        self.data_dir = tmp / "data"
        self.store_url = f"sqlite:///{tmp / 'store.sqlite3'}"
        self.config = load_config(
            str(self.config_path),
            redis=server.url,
            data_dir=str(self.data_dir),
            store=self.store_url,
        )
        # The days of the known lines, from the day they are written: a run that crosses
        # midnight UTC writes (and expects) the next day's.
        self.today = datetime.now(UTC).date()
        self.rolled_days = (self.today - timedelta(days=3), self.today - timedelta(days=2))
        self.live_only = self.today - timedelta(days=1)  # counted live only
        self.span = f"{self.rolled_days[0]}..{self.live_only}"
        self.lines = past_lines(self.today)

    def args(self, *more: str) -> list[str]:
        return [
            "--config",
            str(self.config_path),
            "--redis",
            self.server.url,
            "--data-dir",
            str(self.data_dir),
            "--store",
            self.store_url,
            *more,
        ]

    def run(self, *more: str) -> Any:
        result = CliRunner().invoke(cli, self.args(*more), catch_exceptions=False)
        return result

    def roll_up(self, tmp: Path) -> None:

        log = tmp / "rolled.log"
        log.write_text("".join(ln for d in self.rolled_days for ln in self.lines[d]))
        rollup(self.config, [str(log)], [], jobs=1, warn=lambda m: None)


@pytest.fixture
def loaded(tmp_path: Path, redis_server: RedisServer) -> Loaded:
    data = Loaded(tmp_path, redis_server)
    everything = "".join(ln for day in sorted(data.lines) for ln in data.lines[day])
    feed(data.config, everything + "".join(today_lines(data.today)) + "this is not a log line\n")
    return data


@pytest.fixture
def rolled(loaded: Loaded, tmp_path: Path) -> Loaded:
    loaded.roll_up(tmp_path)
    return loaded


# --- JSON --------------------------------------------------------------------------------


def test_top_json_of_a_live_day(loaded: Loaded) -> None:
    result = loaded.run("top", "--window", "yesterday", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "window": {
            "start": f"{loaded.live_only}T00:00:00+00:00",
            "end": f"{loaded.today}T00:00:00+00:00",
            "source": "live",
        },
        "site": "test",
        "by": "path",
        "total": {
            "hits": 6,
            "bytes": 3500,
            "visitors": 4,
            "bots": 2,
            "malformed": 0,
            **{"s1xx": 0, "s2xx": 5, "s3xx": 0, "s4xx": 0, "s5xx": 1},
        },
        "rows": [
            {"key": "/about", "hits": 3, "bytes": 1500, "visitors": None},
            {"key": "/press/42/", "hits": 2, "bytes": 2000, "visitors": None},
            {"key": "/boom", "hits": 1, "bytes": 0, "visitors": None},
        ],
    }


EXPECTED_BY = {
    "path": [["/press/42/", 5], ["/about", 4], ["/missing", 2], ["/boom", 1], ["/press/7/", 1]],
    "object": [["press_release:42", 5], ["press_release:7", 1]],
    "status": [["200", 10], ["404", 2], ["500", 1]],
    "referrer": [["(direct)", 10], ["news.example.org", 3]],
    "agent": [["Firefox", 11], ["Chrome", 2]],
    "method": [["GET", 13]],
    "bot": [["Googlebot", 2]],
    "os": [["Linux", 11], ["Windows", 2]],
    "device": [["desktop", 13]],
}


@pytest.mark.parametrize("by", sorted(EXPECTED_BY))
def test_every_dimension_over_rolled_days_plus_a_live_day(rolled: Loaded, by: str) -> None:
    result = rolled.run("top", "-w", rolled.span, "--by", by, "-f", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["window"]["source"] == "both"
    assert report["total"]["hits"] == 13
    assert report["total"]["bots"] == 2
    assert [[r["key"], r["hits"]] for r in report["rows"]] == EXPECTED_BY[by]


TODAY_PLUS = {
    "path": [["/press/42/", 9], ["/about", 5]],
    "object": [["press_release:42", 9], ["press_release:7", 1]],
    "status": [["200", 15], ["404", 2]],
    "referrer": [["(direct)", 15], ["news.example.org", 3]],
    "agent": [["Firefox", 16], ["Chrome", 2]],
}


@pytest.mark.parametrize("by", sorted(TODAY_PLUS))
def test_a_window_of_rolled_days_plus_today(rolled: Loaded, by: str) -> None:
    report = json.loads(rolled.run("top", "-w", "4d", "--by", by, "-n", "2", "-f", "json").output)
    assert report["window"]["source"] == "both"
    assert report["window"]["start"] == f"{rolled.rolled_days[0]}T00:00:00+00:00"
    assert report["total"]["hits"] == 18
    assert report["total"]["malformed"] == 1
    assert [[r["key"], r["hits"]] for r in report["rows"]] == TODAY_PLUS[by]


def test_store_only_and_live_only_windows_say_so(rolled: Loaded) -> None:
    store = json.loads(
        rolled.run(
            "top", "-w", f"{rolled.rolled_days[0]}..{rolled.rolled_days[1]}", "-f", "json"
        ).output
    )
    assert store["window"]["source"] == "store"
    assert store["total"] == {
        "hits": 7,
        "bytes": 5700,
        "visitors": 3,
        "bots": 0,
        "malformed": 0,
        **{"s1xx": 0, "s2xx": 5, "s3xx": 0, "s4xx": 2, "s5xx": 0},
    }
    # the visitor who read /press/42/ on both days counts once: a union, as the total's
    assert store["rows"][0] == {"key": "/press/42/", "hits": 3, "bytes": 3000, "visitors": 2}
    live = json.loads(rolled.run("top", "-w", "5m", "-f", "json").output)
    assert live["window"]["source"] == "live"


def test_today_counts_malformed_and_today_rows(loaded: Loaded) -> None:
    report = json.loads(loaded.run("top", "-w", "today", "-f", "json", "--by", "object").output)
    assert report["total"]["hits"] == 5
    assert report["total"]["malformed"] == 1
    assert report["rows"] == [
        {"key": "press_release:42", "hits": 4, "bytes": 4000, "visitors": None}
    ]


# --- table and CSV -----------------------------------------------------------------------

TABLE = """\
{span}: {start} 00:00 .. {today} 00:00 (live)  site test  by path
hits 13  visitors 6  bytes 9.0 KiB  bots 2  malformed 0
errors 4xx 15.4%  5xx 7.7%  rate 0/min

#  path        hits  share  visitors    bytes  trend
1  /press/42/     5  38.5%         -  4.9 KiB  █▅█
2  /about         4  30.8%         -  2.0 KiB  ▃▁█
3  /missing       2  15.4%         -    200 B  ▁█▁
4  /boom          1   7.7%         -      0 B  ▁▁█
5  /press/7/      1   7.7%         -  2.0 KiB  ▁█▁
"""


def test_top_table_plain_text_exact(loaded: Loaded) -> None:
    result = loaded.run("top", "-w", loaded.span)
    assert result.exit_code == 0
    days = {"span": loaded.span, "start": loaded.rolled_days[0], "today": loaded.today}
    assert result.output == TABLE.format(**days)
    assert "\x1b" not in result.output


def test_top_csv_exact(loaded: Loaded) -> None:
    result = loaded.run("top", "-w", loaded.span, "-f", "csv", "-n", "3")
    assert result.output == (
        "rank,key,hits,share,visitors,bytes\n"
        "1,/press/42/,5,0.3846,,5000\n"
        "2,/about,4,0.3077,,2000\n"
        "3,/missing,2,0.1538,,200\n"
    )


def test_table_fits_a_narrow_width() -> None:
    from logcount.read.render import top_table

    report = {
        "window": {
            "start": "2020-05-17T00:00:00+00:00",
            "end": "2020-05-18T00:00:00+00:00",
            "source": "live",
        },
        "site": "test",
        "by": "path",
        "spec": "2020-05-17",
        "rate": 0,
        "status": {},
        "total": {"hits": 1234567, "bytes": 0, "visitors": 0, "bots": 0, "malformed": 0},
        "rows": [
            {
                "key": "/" + "x" * 200,
                "hits": 1234567,
                "bytes": 0,
                "visitors": None,
                "trend": [1, 2, 3],
            }
        ],
    }
    text = top_table(report, 60)
    assert all(len(ln) <= 60 for ln in text.splitlines())
    assert "1,234,567" in text and "…" in text


def test_by_method_live_and_from_the_store(loaded: Loaded, tmp_path: Path) -> None:
    day = date(2020, 7, 1)
    methods = ["GET", "GET", "POST", "HEAD", "GET", "POST", "PROPFIND", "get", "BREW"]
    text = "".join(line(at(day, 9, i), f"/m/{i}", method=m) for i, m in enumerate(methods))
    text += f'10.0.0.2 - - [{at(day, 10).strftime("%d/%b/%Y:%H:%M:%S +0000")}] "-" 408 0 "-" "-"\n'
    expected = [["(other)", 4], ["GET", 3], ["POST", 2], ["HEAD", 1]]
    feed(loaded.config, text)
    live = json.loads(loaded.run("top", "-w", "2020-07-01", "--by", "method", "-f", "json").output)
    assert (live["window"]["source"], live["total"]["hits"]) == ("live", 10)
    assert [[r["key"], r["hits"]] for r in live["rows"]] == expected
    log = tmp_path / "methods.log"
    log.write_text(text)
    rollup(loaded.config, [str(log)], [], jobs=1, warn=lambda m: None)
    stored = loaded.run("top", "-w", "2020-07-01", "--by", "method", "-f", "json").output
    assert json.loads(stored)["window"]["source"] == "store"
    assert [[r["key"], r["hits"]] for r in json.loads(stored)["rows"]] == expected


# --- escaping ----------------------------------------------------------------------------


def test_control_characters_never_reach_the_terminal(loaded: Loaded) -> None:
    day = date(2020, 6, 1)
    feed(
        loaded.config,
        "".join(
            [
                line(at(day, 10), "/%1b[2J"),  # as a browser sends it
                line(at(day, 10), "/\\x1b[2Jclear"),  # as Apache logs a raw ESC byte
                line(
                    at(day, 10),
                    "/r",
                    referrer="http://\\x1b]0;owned\\x07evil.example/",
                    agent="Evil\\x1b[31mAgent",
                ),
            ]
        ),
    )
    outputs = []
    for by in ("path", "referrer", "agent"):
        result = loaded.run("top", "-w", "2020-06-01", "--by", by)
        assert result.exit_code == 0
        outputs.append(result.output)
    recent = loaded.run("top", "--recent", "-n", "3")
    outputs.append(recent.output)
    text = "".join(outputs)
    assert "\x1b" not in text and "\x07" not in text
    # a path's control bytes are counted as their escapes (logcount.count.paths): the
    # raw ESC and the escaped one the browser sent are two keys, each shown as counted
    assert "/%1B[2Jclear" in outputs[0]
    assert "/%1B[2J " in outputs[0]
    data = json.loads(loaded.run("top", "-w", "2020-06-01", "-f", "json").output)
    assert {"/%1B[2Jclear", "/%1B[2J"} <= {r["key"] for r in data["rows"]}


# --- recent and hits ---------------------------------------------------------------------


def test_recent_json_newest_first(loaded: Loaded) -> None:
    result = loaded.run("top", "--recent", "-n", "3", "-f", "json")
    assert result.exit_code == 0
    today = loaded.today.isoformat()
    assert json.loads(result.output) == {
        "site": "test",
        "recent": [
            {
                "time": f"{today}T00:00",
                "path": "/about",
                "status": "200",
                "bytes": 500,
                "agent": "Firefox",
                "bot": False,
            },
            *[
                {
                    "time": f"{today}T00:00",
                    "path": "/press/42/",
                    "status": "200",
                    "bytes": 1000,
                    "agent": "Firefox",
                    "bot": False,
                }
            ]
            * 2,
        ],
    }


def test_recent_csv_and_table(loaded: Loaded) -> None:
    csv_out = loaded.run("top", "--recent", "-n", "2", "-f", "csv").output
    assert csv_out == (
        "time,path,status,bytes,agent,bot\n"
        f"{loaded.today}T00:00,/about,200,500,Firefox,false\n"
        f"{loaded.today}T00:00,/press/42/,200,1000,Firefox,false\n"
    )
    table = loaded.run("top", "--recent", "-n", "2").output
    assert table == (
        "site test  last 2 requests, newest first\n\n"
        "time              status  bytes  path        agent\n"
        f"{loaded.today} 00:00     200    500  /about      Firefox\n"
        f"{loaded.today} 00:00     200  1,000  /press/42/  Firefox\n"
    )


def expected_history(rolled: Loaded, days: int) -> list[dict[str, Any]]:
    known = {
        rolled.rolled_days[0]: 2,
        rolled.rolled_days[1]: 1,
        rolled.live_only: 2,
        rolled.today: 4,
    }
    out = []
    for n in range(days - 1, -1, -1):
        d = rolled.today - timedelta(days=n)
        source = "store" if d in rolled.rolled_days else "live"
        out.append({"date": d.isoformat(), "hits": known.get(d, 0), "source": source})
    return out


def test_hits_json_store_then_live(rolled: Loaded) -> None:
    days = 5
    result = rolled.run("hits", "/press/42/", "--days", str(days), "-f", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "site": "test",
        "path": "/press/42/",
        "today": 4,
        "total": 9,
        "days": expected_history(rolled, days),
    }


def test_hits_object_csv_and_table(rolled: Loaded) -> None:
    csv_out = rolled.run("hits", "--object", "press_release:42", "--days", "2", "-f", "csv")
    yesterday = rolled.today - timedelta(days=1)
    assert csv_out.output == (f"date,hits,source\n{yesterday},2,live\n{rolled.today},4,live\n")
    table = rolled.run("hits", "--object", "press_release:42", "--days", "2")
    assert table.output == (
        "site test  object press_release:42\n"
        "today 4  last 2 days 6  ▅█\n\n"
        "date        hits  source\n"
        f"{yesterday}     2  live\n"
        f"{rolled.today}     4  live\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["top", "-w", "fortnight"], "Error: unknown window 'fortnight'"),
        (["top", "--since", "yesterday-ish"], "Error: 'yesterday-ish' is not a date-time"),
        (
            ["top", "--since", "2020-05-17", "--until", "2020-05-16"],
            "Error: --until must be later than --since",
        ),
        (["hits"], "Error: give a PATH, --object TYPE:ID or --prefix PATH (one of them)"),
        (["top", "--watch", "-f", "json"], "Error: --watch redraws a table"),
        (["top", "--watch", "0"], "Error: Invalid value for '--watch'"),
        (["hits", "--object", "42"], "Error: Invalid value for --object: '42' is not TYPE:ID"),
    ],
)
def test_bad_input_is_one_line(loaded: Loaded, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, loaded.args(*args))
    assert result.exit_code == 2
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(message), result.output
    assert "Traceback" not in result.output


def test_redis_down_is_one_line(loaded: Loaded) -> None:
    loaded.server.stop()
    result = CliRunner().invoke(cli, loaded.args("top", "-w", "today"))
    assert result.exit_code == 69
    assert re.fullmatch(r"Error: cannot reach Redis: .*\n", result.output), result.output


def test_since_until_reads_whole_hour_buckets(loaded: Loaded) -> None:
    result = loaded.run(
        "top",
        "--since",
        f"{loaded.live_only}T09:15",
        "--until",
        f"{loaded.live_only}T10:45",
        "-f",
        "json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["window"] == {
        "start": f"{loaded.live_only}T09:00:00+00:00",
        "end": f"{loaded.live_only}T11:00:00+00:00",
        "source": "live",
    }
    assert report["total"]["hits"] == 5
    assert [[r["key"], r["hits"]] for r in report["rows"]] == [["/about", 3], ["/press/42/", 2]]


def test_real_log_both_sources_equal_live_only(
    tmp_path: Path, redis_server: RedisServer, real_data: Path
) -> None:
    """10,000 real lines counted live; two of their four days also rolled up. A window over
    the four days read from store + Redis equals the same window read from Redis alone."""
    from logcount.read.api import Counts

    text = (real_data / "elastic_apache_logs.log").read_bytes()
    config_path = tmp_path / "logcount.toml"
    # client addresses stored too: every dimension of a stored day as it was live
    privacy = "[privacy]\ncount_clients = true\nstore_clients = true\n"
    config_path.write_text('site = "test"\ntimezone = "UTC"\n' + privacy)
    store_url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    config = load_config(
        str(config_path), redis=redis_server.url, store=store_url, data_dir=str(tmp_path / "data")
    )
    feed(config, text.decode("utf-8", "surrogateescape"))
    rolled_part = tmp_path / "two-days.log"
    rolled_part.write_bytes(
        b"".join(
            ln
            for ln in text.splitlines(keepends=True)
            if b"/May/2015:" in ln and ln.split(b"[", 1)[1][:2] in (b"17", b"18")
        )
    )
    rollup(config, [str(rolled_part)], [], jobs=1, warn=lambda m: None)
    both = Counts(config=config)
    live = Counts(config=config.with_overrides(store=f"sqlite:///{tmp_path / 'none.sqlite3'}"))
    window = "2015-05-17..2015-05-20"
    for by in DIMENSION_NAMES:
        mixed = both.report(window=window, by=by, limit=25)
        alone = live.report(window=window, by=by, limit=25)
        assert (mixed["window"]["source"], alone["window"]["source"]) == ("both", "live")
        for name in ("hits", "bytes", "bots"):
            assert mixed["total"][name] == alone["total"][name], (by, name)
        assert [(r["key"], r["hits"], r["bytes"]) for r in mixed["rows"]] == [
            (r["key"], r["hits"], r["bytes"]) for r in alone["rows"]
        ], by
        # Sparklines too: every dimension is kept per day in the store.
        assert [r["trend"] for r in mixed["rows"]] == [r["trend"] for r in alone["rows"]], by


@pytest.mark.parametrize("store_clients", [False, True])
def test_by_client_live_and_in_the_store_only_when_asked(
    loaded: Loaded, tmp_path: Path, store_clients: bool
) -> None:
    day = date(2020, 9, 1)
    clients = ["10.9.0.1"] * 4 + ["10.9.0.2"] * 2 + ["2001:db8::7"] + ["10.9.0.3"]
    text = "".join(line(at(day, 9, i), f"/c/{i}", client=c) for i, c in enumerate(clients))
    text += line(at(day, 9, 30), "/", agent=GOOGLEBOT, client="66.249.66.1")  # a bot: no hit
    expected = [["10.9.0.1", 4], ["10.9.0.2", 2], ["10.9.0.3", 1], ["2001:db8::7", 1]]
    privacy = f"[privacy]\ncount_clients = true\nstore_clients = {str(store_clients).lower()}\n"
    loaded.config_path.write_text(CONFIG + privacy)
    config = replace(loaded.config, count_clients=True, store_clients=store_clients)
    feed(config, text)
    args = ["top", "-w", "2020-09-01", "--by", "client", "-f", "json"]
    live = json.loads(loaded.run(*args).output)
    assert live["window"]["source"] == "live"
    assert [[r["key"], r["hits"]] for r in live["rows"]] == expected
    log = tmp_path / "clients.log"
    log.write_text(text)
    rollup(config, [str(log)], [], jobs=1, warn=lambda m: None)
    stored = json.loads(loaded.run(*args).output)
    assert (stored["window"]["source"], stored["total"]["hits"]) == ("store", 8)
    assert [[r["key"], r["hits"]] for r in stored["rows"]] == (expected if store_clients else [])


# --- drill-down: the paths of one status ---------------------------------------------------


def test_paths_of_a_status_and_a_class_live_and_from_the_store(
    loaded: Loaded, tmp_path: Path
) -> None:
    day = date(2020, 8, 3)
    spec = [("/gone", 404, 3), ("/old", 410, 2), ("/gone", 410, 1), ("/ok", 200, 5)]
    spec += [("/boom", 500, 2), ("/busy", 503, 1), ("/gone", 200, 1)]
    text = "".join(
        line(at(day, 9, i % 60), path, status=code, size=10)
        for i, (path, code, n) in enumerate(spec * 1)
        for _ in range(n)
    )
    expected = {
        "404": [["/gone", 3, 30]],
        "4xx": [["/gone", 4, 40], ["/old", 2, 20]],
        "5XX": [["/boom", 2, 20], ["/busy", 1, 10]],
        "503": [["/busy", 1, 10]],
        "418": [],
    }

    def drill(status: str) -> tuple[str, list[list[Any]]]:
        args = ["top", "-w", "2020-08-03", "--by", "path", "--status", status, "-f", "json"]
        result = loaded.run(*args)
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert report["status_filter"] == status.lower()
        assert report["total"]["hits"] == 15  # the window's totals, all statuses
        rows = [[r["key"], r["hits"], r["bytes"]] for r in report["rows"]]
        return report["window"]["source"], rows

    feed(loaded.config, text)
    for status, rows in expected.items():
        assert drill(status) == ("live", rows), status
    log = tmp_path / "statuses.log"
    log.write_text(text)
    rollup(loaded.config, [str(log)], [], jobs=1, warn=lambda m: None)
    for status, rows in expected.items():
        assert drill(status) == ("store", rows), status
    table = loaded.run("top", "-w", "2020-08-03", "--status", "4xx").output
    assert "by path (status 4xx)" in table.splitlines()[0]


def test_clients_not_counted_is_one_line(loaded: Loaded) -> None:
    result = loaded.run("top", "--by", "client")
    assert (result.exit_code, result.output) == (
        2,
        "Error: client addresses are not counted: set [privacy] count_clients = true "
        "(live; store_clients = true for the store)\n",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--status", "40"], "Error: --status '40': give a status (404) or a class (4xx)\n"),
        (["--status", "6xx"], "Error: --status '6xx': give a status (404) or a class (4xx)\n"),
        (
            ["--status", "2xx"],
            "Error: --status '2xx': paths are kept per status for 4xx and 5xx only\n",
        ),
        (
            ["--by", "agent", "--status", "404"],
            "Error: --status lists the paths of a status: use it with --by path\n",
        ),
    ],
)
def test_a_bad_status_is_one_line(loaded: Loaded, args: list[str], message: str) -> None:
    result = loaded.run("top", *args)
    assert (result.exit_code, result.output) == (2, message)
