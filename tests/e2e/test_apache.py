"""logcount under a real Apache httpd: contrib/apache/logcount.conf, end to end.

Every request a client got an answer for must be counted exactly once, through graceful
and hard restarts and Redis outages; a killed reader may lose at most the lines of one
flush interval; a broken configuration must never stop Apache from serving. Requests go
to numbered paths (/flow/N), so a missing or doubled count names the request.
"""

from __future__ import annotations

import os
import pwd
import signal
import statistics
import time
from datetime import date

import pytest

from tests.e2e.conftest import (
    BOT_AGENT,
    BROWSER_AGENT,
    Load,
    Site,
    get,
    process_table,
    run_as,
    uid_of,
    wait_for,
)

pytestmark = pytest.mark.e2e

FLUSH = 1.0  # [live] flush_interval of the generated logcount.toml


def publish(site: Site, *paths: str) -> None:
    """Files under the DocumentRoot: a path ending in / gets an index.html."""
    for path in paths:
        target = site.apache.htdocs / path.lstrip("/")
        if path.endswith("/"):
            target = target / "index.html"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"<p>{path}</p>\n")


def settle(site: Site, load: Load, timeout: float = 20) -> dict[str, int]:
    """The counts of /flow/ once they stop changing (every logger flushed): complete and
    unchanged for two flush intervals, or incomplete and unchanged for four."""
    last: dict[str, int] = {}
    stable_since = time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = site.path_hits(load.prefix)
        if now != last:
            last, stable_since = now, time.monotonic()
        else:
            quiet = time.monotonic() - stable_since
            if quiet > 4 * FLUSH + 0.5 or (quiet > 2 * FLUSH + 0.5 and set(now) >= load.answered):
                break
        time.sleep(0.3)
    return last


def spans(paths: set[str]) -> str:
    """'/flow/3', '/flow/4', '/flow/9' -> '3-4 9': which requests, compactly."""
    numbers = sorted(int(p.rsplit("/", 1)[1]) for p in paths)
    out: list[list[int]] = []
    for n in numbers:
        if out and n == out[-1][1] + 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return " ".join(f"{a}-{b}" if a != b else str(a) for a, b in out[:20])


def assert_each_answered_once(counts: dict[str, int], load: Load, site: Site) -> None:
    doubled = {p: n for p, n in counts.items() if n != 1}
    assert not doubled, f"counted more than once: {sorted(doubled.items())[:10]}"
    unknown = set(counts) - load.answered - load.failed
    assert not unknown, f"counted but never requested: {spans(unknown)}"
    missing = load.answered - set(counts)
    logged = [line for line in site.apache.errors().splitlines() if "logcount[" in line]
    assert not missing, (
        f"{len(missing)} answered requests not counted: {spans(missing)}; "
        f"failed: {spans(load.failed)}; ErrorLog: {logged}"
    )


def only_current_loggers(site: Site) -> bool:
    """One supervisor (Apache's current generation) and its reader(s), nothing else."""
    sups = site.supervisors()
    return len(sups) == 1 and set(site.loggers()) == set(sups) | set(site.readers())


def test_requests_show_up_exactly_within_two_seconds(site: Site) -> None:
    publish(site, "/press/1/", "/press/2/", "/about.html")
    plan = (
        [("/press/1/", None)] * 3
        + [("/press/2/", None)] * 2
        + [("/about.html", None)] * 4
        + [("/missing", None)] * 2
        + [("/press/9/", None)]
        + [("/press/1/", BOT_AGENT)] * 3
        + [("/about.html", BOT_AGENT)]
    )
    statuses = [
        get(site.port, path, agent) if agent else get(site.port, path) for path, agent in plan
    ]
    assert statuses.count(200) == 13 and statuses.count(404) == 3
    sent = time.monotonic()

    expected = {"/press/1/": 3, "/press/2/": 2, "/about.html": 4, "/missing": 2, "/press/9/": 1}
    seen = site.wait_counts(expected, "/", timeout=2.0)
    elapsed = time.monotonic() - sent
    assert seen == expected, f"after {elapsed:.1f}s"
    assert elapsed <= 2.5  # 2 s, plus the start-up of one `logcount top` process

    report = site.top()
    assert report["site"] == "e2e"
    assert report["window"]["source"] == "live"
    total = report["total"]
    assert (total["hits"], total["bots"], total["malformed"]) == (12, 4, 0)
    assert total["visitors"] == 1  # one client address, one browser agent
    objects = {r["key"]: r["hits"] for r in site.top(by="object")["rows"]}
    assert objects == {"press_release:1": 3, "press_release:2": 2, "press_release:9": 1}
    statuses_seen = {r["key"]: r["hits"] for r in site.top(by="status")["rows"]}
    assert statuses_seen == {"200": 9, "404": 3}
    # Started as root by Apache: the reader (which reads what the public wrote) runs as
    # --user; its supervisor keeps root only to re-read a root-only config on SIGHUP.
    user_uid = pwd.getpwnam(run_as()[0]).pw_uid
    loggers = site.loggers()
    table = process_table()
    readers = [p for p in loggers if table.get(p, (0, ""))[0] in loggers]
    supervisors = [p for p in loggers if p not in readers]
    assert readers and {uid_of(p) for p in readers} == {user_uid}
    assert supervisors and {uid_of(p) for p in supervisors} == {0}


def test_graceful_and_hard_restart_lose_nothing(site: Site) -> None:
    with Load(site.port, threads=4, pause=0.005, limit=8000) as load:
        wait_for(lambda: load.count() > 200, 10)
        first = set(site.supervisors())
        site.apache.graceful()
        assert wait_for(lambda: set(site.supervisors()) - first, 10), "no new logger"
        wait_for(lambda: load.count() > 800, 10)
        # Soon after the first: the new logger may still be starting when it gets SIGTERM.
        site.apache.graceful()
        wait_for(lambda: load.count() > 1400, 10)
        site.apache.restart()
        wait_for(lambda: load.count() > 2000, 10)
    assert len(load.answered) >= 1900
    # Only the hard restart may cut requests (those in flight, and idle keep-alive
    # connections the client reuses a moment too late).
    assert len(load.failed) < 50, f"{len(load.failed)} requests failed"

    counts = settle(site, load)
    assert_each_answered_once(counts, load, site)
    errors = site.apache.errors()
    assert errors.count("SIGUSR1 received") == 2, errors
    assert "SIGHUP received" in errors, errors
    # The old generations' loggers drained their pipes and exited.
    assert wait_for(lambda: only_current_loggers(site), 15), (
        f"loggers {site.loggers()}, current supervisor {site.supervisors()}"
    )
    assert wait_for(lambda: len(site.cronologs()) == 1, 15), site.cronologs()
    assert "Traceback" not in errors

    # The durable record too: cronolog survived the restarts' signals and wrote every line.
    site.apache.stop()
    logged = [p for p in site.logged_paths() if p.startswith(load.prefix)]
    assert len(logged) == len(set(logged))
    assert_each_answered_once(dict.fromkeys(logged, 1), load, site)
    assert "Broken pipe" not in site.apache.errors()


def test_killed_reader_costs_at_most_one_flush_interval(site: Site) -> None:
    kills: list[float] = []
    victims: list[int] = []
    with Load(site.port, threads=4, pause=0.01, limit=9000) as load:
        for _ in range(3):
            readers = wait_for(site.readers, 10)
            assert len(readers) == 1, f"readers: {readers}"
            time.sleep(2.5 * FLUSH)  # it has flushed before: it can lose its last interval only
            os.kill(readers[0], signal.SIGKILL)
            kills.append(time.monotonic())
            victims.append(readers[0])
            wait_for(lambda v=readers[0]: site.readers() and site.readers() != [v], 10)
        load.more(300)
    assert not load.failed
    # Apache never waited on us: no request took long, even around the kills.
    assert load.slowest() < 1.0, f"slowest request {load.slowest():.2f}s"

    counts = settle(site, load)
    doubled = {p: n for p, n in counts.items() if n != 1}
    assert not doubled
    missing = load.answered - set(counts)
    finished = {o.path: o.finished for o in load.outcomes}
    # A lost line was answered within one flush interval before a kill (plus the time
    # Apache's write takes to reach the reader, and the respawn).
    print(f"{len(missing)} of {len(load.answered)} requests lost to {len(kills)} SIGKILLs")
    late = {p for p in missing if not any(-FLUSH - 0.5 <= finished[p] - k <= 0.5 for k in kills)}
    assert not late, f"{len(missing)} lost, {len(late)} outside a flush interval: {spans(late)}"
    errors = site.apache.errors()
    for pid in victims:
        assert f"reader {pid} died (signal SIGKILL)" in errors, errors


def test_redis_outage_does_not_slow_apache_and_loses_nothing(site: Site) -> None:
    redis = site.redis
    with Load(site.port, threads=4, pause=0.01, limit=8000) as load:
        wait_for(lambda: load.count() > 400, 10)
        before = [o.seconds for o in load.outcomes]
        # Saved on the way down (dump.rdb), so the restarted Redis still has the counts
        # of before the outage.
        redis.client().shutdown(save=True)
        redis.stop()
        down = time.monotonic()
        time.sleep(10)
        during = [o.seconds for o in load.outcomes if o.finished > down]
        redis.start()
        load.more(300)
    assert not load.failed
    assert len(during) > 200
    p95_before = statistics.quantiles(before, n=20)[-1]
    p95_during = statistics.quantiles(during, n=20)[-1]
    assert max(during) < 1.0, f"slowest request while Redis was down: {max(during):.2f}s"
    assert p95_during < p95_before + 0.05, (p95_before, p95_during)

    counts = settle(site, load, timeout=30)
    assert_each_answered_once(counts, load, site)
    errors = site.apache.errors()
    assert "cannot reach Redis" in errors and "Redis is back" in errors, errors
    beat = wait_for(lambda: [r for r in site.status() if r["mode"] == "pipe"], 5)
    assert beat and beat[0]["spooled"] == 0 and not beat[0]["error"], beat


def test_invalid_route_keeps_apache_serving(site_factory) -> None:  # type: ignore[no-untyped-def]
    site = site_factory('[[route]]\nregex = "^/broken/(?P<id>[0-9]+$"\nobject = "broken"\n')
    site.apache.start()
    publish(site, "/ok.html")
    started = time.monotonic()
    statuses = [get(site.port, "/ok.html") for _ in range(300)]
    assert statuses == [200] * 300
    assert time.monotonic() - started < 15  # nothing waited on the pipe
    loggers = site.supervisors()
    time.sleep(3)  # a respawn storm would show as new loggers and repeated messages
    assert site.supervisors() == loggers and len(loggers) == 1

    lines = [line for line in site.apache.errors().splitlines() if "logcount[" in line]
    assert len(lines) == 1, lines
    assert "route #1 (broken): invalid regex" in lines[0]
    assert "not counting, draining input until EOF" in lines[0]
    assert site.redis.client().dbsize() == 0  # counted nothing, wrote nothing
    # The same configuration, checked by hand, says what is wrong in one line.
    check = site.logcount("config", "check")
    assert check.returncode == 78
    message = lines[0].split("fatal: ", 1)[1].split("; not counting")[0]
    assert check.stderr.strip() == f"Error: {message}"


def test_rollup_of_the_cronolog_file_equals_the_live_counts(site: Site) -> None:
    publish(site, "/press/1/", "/press/2/", "/about.html")
    paths = ["/press/1/", "/press/2/", "/about.html", "/missing", "/press/3/?utm=x", "/about.html"]
    for i in range(300):
        get(site.port, paths[i % len(paths)], BOT_AGENT if i % 10 == 0 else BROWSER_AGENT)
    assert wait_for(lambda: site.top()["total"]["hits"] + site.top()["total"]["bots"] == 300, 5)
    live = site.top()
    live_objects = site.top(by="object")
    site.apache.stop()  # cronolog writes what it reads at once: the day's file is complete

    today = date.today()
    files = [f.relative_to(site.logs).as_posix() for f in site.cronolog_files()]
    assert files == [f"{today:%Y/%m/%d}/access.log"]
    result = site.logcount(
        "rollup",
        "--date",
        today.isoformat(),
        "--quiet",
        "--logs",
        str(site.logs / "%Y/%m/%d/access.log"),
    )
    assert result.returncode == 0, result.stderr

    from logcount.config import load_config
    from logcount.sinks.store import Store

    # The config's own data directory (the test process has a private one in its env).
    store = Store.from_config(load_config(str(site.config), data_dir=str(site.data)))
    assert {r["key"]: r["hits"] for r in store.top_rows("e2e", [today], "path", 1000)} == {
        r["key"]: r["hits"] for r in live["rows"]
    }
    assert {r["key"]: r["hits"] for r in store.top_rows("e2e", [today], "object", 1000)} == {
        r["key"]: r["hits"] for r in live_objects["rows"]
    }
    totals = store.day_totals("e2e", [today])
    for name in ("hits", "bots", "malformed", "bytes", "visitors"):
        assert totals[name] == live["total"][name], name
