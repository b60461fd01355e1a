"""bench/diverse.py: the generated day the benches count is as diverse as promised, the same
for the same seed, valid Apache lines that logcount counts exactly, in constant memory."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import apachelogs

from bench.diverse import BOTS, Day, Spec, diverse_lines
from tests.conftest import ROOT, logcount_env, run_logcount

LINE = re.compile(rb'^(\S+) - - \[([^\]]+)\] "([^"]*)" (\d{3}) (\d+|-) "([^"]*)" "([^"]*)"$')
CRAWLERS = {agent.encode() for _, agent in BOTS}


def generated(n: int, seed: int = 1) -> bytes:
    return b"".join(Day(Spec(lines=n, seed=seed)).chunks())


def test_the_same_seed_gives_the_same_day_and_another_seed_another() -> None:
    first = generated(5_000)
    assert generated(5_000) == first
    assert first.count(b"\n") == 5_000
    other = generated(5_000, seed=2)
    assert other != first
    # not just shuffled: the members themselves differ with the seed
    clients = {line.split(b" ", 1)[0] for line in first.splitlines()}
    assert len(clients & {line.split(b" ", 1)[0] for line in other.splitlines()}) < 50


def test_every_line_is_a_combined_line_of_the_day_in_order() -> None:
    parser = apachelogs.LogParser(apachelogs.COMBINED)
    times = [parser.parse(line).request_time for line in generated(20_000).decode().splitlines()]
    assert times == sorted(times)
    assert {t.date().isoformat() for t in times} == {"2015-05-17"}
    # the whole day is covered, afternoons busier than nights
    assert times[0].hour == 0 and times[-1].hour == 23
    by_hour = Counter(t.hour for t in times)
    assert by_hour[16] > 3 * by_hour[4]


def test_a_day_of_200000_lines_has_a_busy_days_cardinality() -> None:
    """The figures the issue gives for a real day: ~65,000 client addresses and ~4,000
    request lines in 200,000 lines; agents, referrers, bots, 404s and 5xx as the README
    says."""
    fields = [LINE.match(line) for line in generated(200_000).splitlines()]
    assert all(fields)
    distinct = [len({m[i] for m in fields if m}) for i in (1, 3, 6, 7)]
    clients, requests, referrers, agents = distinct
    assert 60_000 <= clients <= 70_000
    assert 4_000 <= requests <= 5_000
    assert 7_000 <= referrers <= 11_000
    assert 1_500 <= agents <= 2_500
    statuses = Counter(m[4][:1] for m in fields if m)
    assert 0.045 <= statuses[b"4"] / 200_000 <= 0.07
    assert 0.01 <= statuses[b"5"] / 200_000 <= 0.02
    crawlers = Counter(m[7] for m in fields if m and m[7] in CRAWLERS)
    assert len(crawlers) == len(BOTS)
    assert 0.11 <= crawlers.total() / 200_000 <= 0.13


def test_logcount_counts_every_generated_line(tmp_path: Path) -> None:
    log = diverse_lines(Spec(lines=20_000, seed=3), tmp_path)
    lines = [LINE.match(line) for line in log.read_bytes().splitlines()]
    crawler = [
        m is not None and (m[7] in CRAWLERS or m[7].startswith(b"python-requests")) for m in lines
    ]
    env = logcount_env()
    env.update({"LOGCOUNT_DATA_DIR": str(tmp_path), "LOGCOUNT_CONFIG": str(tmp_path / "c.toml")})
    (tmp_path / "c.toml").write_text('site = "gen"\n')
    done = run_logcount(["rollup", "--quiet", "--logs", str(log)], env)
    assert done.returncode == 0, done.stderr.decode()
    with sqlite3.connect(tmp_path / "logcount.sqlite3") as db:
        row = db.execute(
            "SELECT day, hits, bots, malformed, s4xx, s5xx FROM logcount_day_totals"
        ).fetchall()
    # status classes count the hits, not the bots
    statuses = Counter(m[4][:1] for m, bot in zip(lines, crawler, strict=True) if m and not bot)
    assert row == [
        (
            "2015-05-17",
            crawler.count(False),
            crawler.count(True),
            0,
            statuses[b"4"],
            statuses[b"5"],
        )
    ]


def peak_rss_kib(lines: int) -> int:
    """Peak RSS of the generator's command writing `lines` lines to /dev/null."""
    cmd = [sys.executable, str(ROOT / "bench" / "diverse.py"), "--lines", str(lines)]
    with open(os.devnull, "wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink)
        _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return usage.ru_maxrss


def test_memory_does_not_grow_with_the_lines() -> None:
    small, large = peak_rss_kib(50_000), peak_rss_kib(600_000)
    assert large - small < 4 * 1024, (small, large)


def test_the_day_file_is_written_once(tmp_path: Path) -> None:
    spec = Spec(lines=1_000, seed=4)
    path = diverse_lines(spec, tmp_path)
    written = path.stat().st_mtime_ns
    assert diverse_lines(spec, tmp_path) == path
    assert path.stat().st_mtime_ns == written
    assert diverse_lines(Spec(lines=1_000, seed=5), tmp_path) != path
