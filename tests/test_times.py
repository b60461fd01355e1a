"""Response times (%D): averages per member, p50/p95/p99 per window, `--sort time`.

Lines with known durations go through the real pipeline into a private redis-server
(live), and the same lines through the real rollup into a SQLite store (stored): both must
give the same JSON, with the C scanner and with the pure-Python one. A percentile is the
upper edge of the histogram bin that holds the exact nearest-rank value (logcount.timing).
"""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from logcount import timing
from logcount.cli import cli
from logcount.config import load_config
from logcount.sinks.store import Store
from logcount.sources.pipeline import Pipeline
from logcount.sources.rollup import rollup
from tests.conftest import RedisServer, run_logcount

FORMAT = '%h %l %u %t \\"%r\\" %>s %b \\"%{Referer}i\\" \\"%{User-Agent}i\\" %D'
CONFIG = f'site = "test"\ntimezone = "UTC"\nlog_format = "{FORMAT}"\n'
AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def two_days_ago() -> date:
    """The day of the known lines, taken as they are written (a run may cross midnight)."""
    return datetime.now(UTC).date() - timedelta(days=2)


PATHS = ("/fast", "/slow", "/search", "/missing")


def line(when: datetime, path: str, us: int | str, status: int = 200, agent: str = AGENT) -> str:
    stamp = when.strftime("%d/%b/%Y:%H:%M:%S +0000")
    return f'10.0.0.1 - - [{stamp}] "GET {path} HTTP/1.1" {status} 100 "-" "{agent}" {us}\n'


def known_lines(day: date) -> tuple[str, dict[str, list[int]]]:
    """Lines of the day with durations spread over five decades; the durations of each
    path (the bot's are no hits, and have no times)."""
    rng = random.Random(7)
    scale = {"/fast": 300, "/slow": 400_000, "/search": 20_000, "/missing": 1_000}
    text, durations = [], {p: [] for p in PATHS}
    for i in range(400):
        path = PATHS[i % 7 % 4]
        us = int(scale[path] * rng.lognormvariate(0, 0.8))
        when = datetime(day.year, day.month, day.day, 9 + i % 5, i % 60, 1, tzinfo=UTC)
        text.append(line(when, path, us, 404 if path == "/missing" else 200))
        durations[path].append(us)
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    text.append(line(noon, "/fast", 99_000_000, agent=BOT))
    return "".join(text), durations


def nearest_rank(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, -(-int(q * 100) * len(ordered) // 100)) - 1]


def expected_times(durations: dict[str, list[int]]) -> tuple[dict[str, float], dict[str, float]]:
    """time_avg_ms per path, and the total's percentiles: the upper edge of the bin that
    holds the exact value."""
    avg = {p: round(sum(v) / len(v) / 1000, 3) for p, v in durations.items()}
    every = [us for v in durations.values() for us in v]
    pct = {
        name: round(timing.upper_edge(timing.bin_of(nearest_rank(every, q))) / 1000, 3)
        for name, q in timing.QUANTILES
    }
    return avg, pct


class Site:
    def __init__(self, tmp: Path, server: RedisServer, config: str = CONFIG):
        self.tmp = tmp
        self.config_path = tmp / "logcount.toml"
        self.config_path.write_text(config)
        self.store_url = f"sqlite:///{tmp / 'store.sqlite3'}"
        self.server = server
        self.config = load_config(
            str(self.config_path),
            redis=server.url,
            data_dir=str(tmp / "data"),
            store=self.store_url,
        )

    def feed(self, text: str) -> None:
        messages: list[str] = []
        pipeline = Pipeline(self.config, "pipe", messages.append)
        pipeline.start()
        pipeline.feed(text.encode())
        assert pipeline.close(), messages

    def roll_up(self, text: str) -> None:
        log = self.tmp / "access.log"
        log.write_text(text)
        rollup(self.config, [str(log)], [], jobs=1, warn=lambda m: None)

    def top(self, *more: str, store: bool = True) -> Any:
        args = ["--config", str(self.config_path), "--redis", self.server.url]
        args += ["--data-dir", str(self.tmp / "data")]
        if store:
            args += ["--store", self.store_url]
        result = CliRunner().invoke(cli, [*args, "top", *more], catch_exceptions=False)
        return result


@pytest.fixture(params=["c", "pure"])
def scanner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "pure":
        monkeypatch.setenv("LOGCOUNT_PURE_PYTHON", "1")
    else:
        monkeypatch.delenv("LOGCOUNT_PURE_PYTHON", raising=False)
    return str(request.param)


def test_times_live_and_from_the_store_are_exact(
    tmp_path: Path, redis_server: RedisServer, scanner: str
) -> None:
    day = two_days_ago()
    site = Site(tmp_path, redis_server)
    text, durations = known_lines(day)
    avg, pct = expected_times(durations)
    site.feed(text)
    window = ["--window", day.isoformat(), "--format", "json"]
    live = site.top(*window, "--limit", "3", store=False)
    assert live.exit_code == 0, live.output
    report = json.loads(live.output)
    assert report["window"]["source"] == "live"
    hits = {p: len(v) for p, v in durations.items()}
    ranked = sorted(PATHS, key=lambda p: (-hits[p], p))[:3]
    rows = [
        {"key": p, "hits": hits[p], "bytes": 100 * hits[p], "visitors": None, "time_avg_ms": avg[p]}
        for p in ranked
    ]
    assert report["rows"] == rows  # live buckets keep no visitors per path
    assert {k: report["total"][k] for k in pct} == pct
    assert report["total"]["hits"] == 400 and report["total"]["bots"] == 1

    site.roll_up(text)
    stored = site.top(*window, "--limit", "3")
    assert stored.exit_code == 0, stored.output
    from_store = json.loads(stored.output)
    assert from_store["window"]["source"] == "store"
    rows = [{**row, "visitors": 1} for row in rows]
    window_of = {**report["window"], "source": "store"}
    assert from_store == {**report, "window": window_of, "rows": rows}


def test_percentiles_are_within_one_bin_of_the_exact_value(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    day = two_days_ago()
    site = Site(tmp_path, redis_server)
    text, durations = known_lines(day)
    site.feed(text)
    total = json.loads(site.top("--window", day.isoformat(), "-f", "json").output)["total"]
    every = [us for v in durations.values() for us in v]
    for name, q in timing.QUANTILES:
        exact = nearest_rank(every, q)
        shown_us = total[name] * 1000
        assert exact < shown_us <= exact * 1.25 + 1, (name, exact, shown_us)


def test_sort_by_time_and_bytes_live_stored_and_both(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    day = two_days_ago()
    site = Site(tmp_path, redis_server)
    text, durations = known_lines(day)
    today = datetime.now(UTC).replace(minute=0, second=5)
    extra = line(today, "/fast", 5_000_000_000)  # today: /fast spends the most time
    site.feed(text + extra)
    spent = {p: sum(v) for p, v in durations.items()}
    by_time = sorted(PATHS, key=lambda p: -spent[p])
    window = ["--window", day.isoformat(), "-f", "json", "--sort", "time"]
    live = json.loads(site.top(*window).output)
    assert [r["key"] for r in live["rows"]] == by_time
    site.roll_up(text)
    stored = json.loads(site.top(*window).output)
    assert stored["window"]["source"] == "store"
    assert stored["rows"] == [{**row, "visitors": 1} for row in live["rows"]]
    both = ["--window", f"{day}..{today.date()}", "-f", "json", "--sort", "time"]
    mixed = json.loads(site.top(*both).output)
    assert mixed["window"]["source"] == "both"
    assert [r["key"] for r in mixed["rows"]][0] == "/fast"
    fast = next(r for r in mixed["rows"] if r["key"] == "/fast")
    fast_us = sum(durations["/fast"]) + 5_000_000_000
    assert fast["time_avg_ms"] == round(fast_us / (len(durations["/fast"]) + 1) / 1000, 3)
    by_hits = json.loads(site.top(*window[:-2]).output)["rows"]
    assert [r["key"] for r in by_hits] == sorted(PATHS, key=lambda p: (-len(durations[p]), p))


def test_a_format_without_durations_shows_no_times(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    site = Site(tmp_path, redis_server, 'site = "test"\ntimezone = "UTC"\n')
    when = datetime.now(UTC).replace(second=3)
    stamp = when.strftime("%d/%b/%Y:%H:%M:%S +0000")
    site.feed(f'10.0.0.1 - - [{stamp}] "GET /a HTTP/1.1" 200 5 "-" "{AGENT}"\n')
    report = json.loads(site.top("--window", "today", "-f", "json").output)
    assert report["rows"] == [{"key": "/a", "hits": 1, "bytes": 5, "visitors": None}]
    assert not any(k.startswith("time_") for k in report["total"])
    table = site.top("--window", "today").output
    assert "avg ms" not in table and "p95" not in table


def test_sort_time_without_durations_ranks_by_hits_and_says_so(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """A window of a format without %D has nothing to rank by time: the rows come by
    hits (they used to be none at all), and the JSON and the table say why."""
    site = Site(tmp_path, redis_server, 'site = "test"\ntimezone = "UTC"\n')
    when = datetime.now(UTC).replace(second=3)
    stamp = when.strftime("%d/%b/%Y:%H:%M:%S +0000")
    site.feed(
        "".join(
            f'10.0.0.1 - - [{stamp}] "GET /{p} HTTP/1.1" 200 5 "-" "{AGENT}"\n'
            for p in ("a", "b", "b", "c", "c", "c")
        )
    )
    for window in ("today", "15m"):
        result = site.top("--window", window, "-f", "json", "--sort", "time")
        report = json.loads(result.output)
        assert [(r["key"], r["hits"]) for r in report["rows"]] == [("/c", 3), ("/b", 2), ("/a", 1)]
        assert report["sort_note"] == "no response times in this window: ranked by hits"
    table = site.top("--window", "today", "--sort", "time").output
    words = " ".join(table.split())  # the header wraps at the terminal's width
    assert "by path (no response times in this window: ranked by hits) hits 6" in words
    assert "sort_note" not in json.loads(site.top("--window", "today", "-f", "json").output)


def test_table_shows_percentiles_and_average(tmp_path: Path, redis_server: RedisServer) -> None:
    site = Site(tmp_path, redis_server)
    when = datetime.now(UTC).replace(second=3)
    site.feed(line(when, "/a", 1500) + line(when, "/a", 2500))
    table = site.top("--window", "today").output
    # 1,500 us is in [1,280, 1,536), 2,500 us in [2,048, 2,560): the upper edges
    assert "  p50 1.54 ms  p95 2.56 ms  p99 2.56 ms\n" in table
    assert "#  path  hits   share  visitors  bytes  avg ms  trend\n" in table
    assert "1  /a       2  100.0%         -  200 B    2.00  " in table


def test_sort_time_of_a_dimension_without_times_is_one_line(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    site = Site(tmp_path, redis_server)
    result = site.top("--by", "agent", "--sort", "time")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: --sort time: agent keeps no response times (only path, object, status, method)"
    ]


def test_hostile_durations_never_break_the_reader(tmp_path: Path, lc_env: dict[str, str]) -> None:
    (tmp_path / "logcount.toml").write_text(CONFIG)
    when = datetime.now(UTC).replace(second=3)
    lines = [
        line(when, "/huge", 2**52),  # below 2^53: counted, capped at 2^36 us
        line(when, "/over", 2**53),  # past what a count may be: malformed
        line(when, "/neg", -5),
        line(when, "/nan", "abc"),
        line(when, "/long", "9" * 5000),
        line(when, "/ok", 1000),
    ]
    done = run_logcount(["pipe"], lc_env, input="".join(lines).encode())
    assert done.returncode == 0, done.stderr
    out = run_logcount(["top", "--window", "today", "-f", "json"], lc_env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["total"]["malformed"] == 4
    rows = {r["key"]: r for r in report["rows"]}
    assert set(rows) == {"/huge", "/ok"}
    assert rows["/huge"]["time_avg_ms"] == timing.CAP_US / 1000
    assert rows["/ok"]["time_avg_ms"] == 1.0
    assert report["total"]["time_p99_ms"] == timing.CAP_US / 1000
    assert report["total"]["time_p50_ms"] == 1.024  # 1000 us in [896, 1024)


def test_an_old_store_gains_the_time_columns(tmp_path: Path, redis_server: RedisServer) -> None:
    day = two_days_ago()
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    Store(url).dispose()
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # as a store written before response times
        for table in ("logcount_day_paths", "logcount_day_objects", "logcount_day_members"):
            conn.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN duration_us"))
        conn.execute(sa.text("DROP TABLE logcount_day_timings"))
    engine.dispose()
    site = Site(tmp_path, redis_server)
    text, durations = known_lines(day)
    site.roll_up(text)
    report = json.loads(site.top("--window", day.isoformat(), "-f", "json").output)
    avg, pct = expected_times(durations)
    assert {r["key"]: r["time_avg_ms"] for r in report["rows"]} == avg
    assert {k: report["total"][k] for k in pct} == pct


def test_a_folded_member_takes_its_times_to_other(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    site = Site(tmp_path, redis_server, CONFIG + "[live]\nmax_members = 2\n")
    when = datetime.now(UTC).replace(second=3)
    spent = {"/a": [1000] * 3, "/b": [2000] * 2, "/c": [30000]}
    site.feed("".join(line(when, p, us) for p, values in spent.items() for us in values))
    rows = json.loads(site.top("--window", "today", "-f", "json").output)["rows"]
    assert len(rows) == 3 and "(other)" in [r["key"] for r in rows]
    kept = [r for r in rows if r["key"] != "(other)"]
    for row in kept:
        assert row["time_avg_ms"] == sum(spent[row["key"]]) / len(spent[row["key"]]) / 1000
    other = next(r for r in rows if r["key"] == "(other)")
    folded = [us for p, v in spent.items() if p not in {r["key"] for r in kept} for us in v]
    assert other["hits"] == len(folded)
    assert other["time_avg_ms"] == round(sum(folded) / len(folded) / 1000, 3)
