"""`top` against a read-only replica: the reports a dashboard reads from a replica are the
master's, to the row (a window of several buckets used to fail on the scratch key that
ranks its rows: READONLY).

A real redis-server master, a real replica of it (REPLICAOF), the real pipeline into the
master and the real rollup into a SQLite store; `top` reads the one, then the other.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RedisServer
from tests.test_times import Site, line
from tests.waiting import wait_for


@pytest.fixture
def replica(tmp_path: Path, redis_server: RedisServer) -> Any:
    (tmp_path / "replica").mkdir()
    server = RedisServer(tmp_path / "replica")
    server.start()
    server.client().replicaof("127.0.0.1", redis_server.port)
    yield server
    server.stop()


def in_sync(master: RedisServer, replica: RedisServer) -> bool:
    info = replica.client().info("replication")
    offset = master.client().info("replication")["master_repl_offset"]
    return info.get("master_link_status") == "up" and info.get("slave_repl_offset") == offset


def until_now(output: str) -> dict[str, Any]:
    """A report's JSON without the end of a window that ends now (`24h`): the master's
    and the replica's are asked a moment apart, and may be a second apart."""
    report: dict[str, Any] = json.loads(output)
    end = datetime.fromisoformat(report["window"]["end"])
    if abs(end - datetime.now(UTC)) < timedelta(seconds=30):
        report["window"] = {k: v for k, v in report["window"].items() if k != "end"}
    return report


def test_top_on_a_replica_gives_the_masters_rows(
    tmp_path: Path, redis_server: RedisServer, replica: RedisServer
) -> None:
    now = datetime.now(UTC).replace(second=3, microsecond=0)
    yesterday = now.date() - timedelta(days=1)
    noon = datetime(yesterday.year, yesterday.month, yesterday.day, 12, tzinfo=UTC)
    # today, over three hours (three thirds of today before 3:00, so that they stay today's):
    # /a 3 hits, /b and /c 2 each (a tie at --limit 2), /d 1
    live = [("/a", 0, 900), ("/a", 1, 100), ("/a", 2, 100), ("/b", 1, 5000), ("/b", 2, 10)]
    live += [("/c", 0, 20), ("/c", 2, 30), ("/d", 1, 70_000)]
    step = min(timedelta(hours=1), (now - now.replace(hour=0, minute=0, second=0)) / 3)
    master = Site(tmp_path, redis_server)
    master.feed("".join(line(now - step * h, p, us) for p, h, us in live))
    stored = [("/d", 3_000_000), ("/d", 1), ("/e", 5), ("/a", 7)]
    master.roll_up(
        "".join(line(noon + timedelta(minutes=i), p, us) for i, (p, us) in enumerate(stored))
    )
    wait_for(lambda: in_sync(redis_server, replica), "the replica to catch up", 30)
    on_replica = Site(tmp_path, replica)
    windows = ["24h", "today", "15m", f"{yesterday}..{now.date()}"]
    for window in windows:
        for sort in ("hits", "bytes", "time"):
            for limit in ("2", "10"):
                args = ["--window", window, "-f", "json", "--sort", sort, "--limit", limit]
                want = master.top(*args)
                got = on_replica.top(*args)
                assert got.exit_code == 0, (window, sort, got.output)
                assert until_now(got.output) == until_now(want.output), (window, sort, limit)
    # the counts themselves, as a user reads them: ties at the cut as Redis breaks them
    rows = json.loads(on_replica.top("--window", "24h", "-f", "json", "--limit", "2").output)
    assert [(r["key"], r["hits"]) for r in rows["rows"]] == [("/a", 3), ("/c", 2)]
    both = ["--window", f"{yesterday}..{now.date()}", "-f", "json", "--sort", "time"]
    report = json.loads(on_replica.top(*both).output)
    assert report["window"]["source"] == "both"
    assert [(r["key"], r["hits"]) for r in report["rows"]][:2] == [("/d", 3), ("/b", 2)]
