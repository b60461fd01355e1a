"""The Redis sink against a real Redis: the order of spooled and pending batches.

A tail's read position rides in the batch with the counts it produced, so batches must
reach Redis in the order they were made, whatever was spooled meanwhile."""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from pathlib import Path

from logcount.config import Config
from logcount.count.delta import Delta
from logcount.sinks.batch import Batch
from logcount.sinks.live import _SCRIPT, LiveSink, RedisWriter
from logcount.sinks.spool import HOST, Spool
from tests.conftest import RedisServer

POSITION = "lc:{test}:pos:probe"


def delta(members: int) -> Delta:
    """A delta of `members` path members in one minute bucket."""
    paths = Counter({f"/p/{i}": 1 for i in range(members)})
    return Delta(
        totals={("test", "minute", "202611200000"): Counter(hits=members)},
        members={("test", "path", "minute", "202611200000"): paths},
    )


def test_batches_spilled_during_a_replay_go_before_newer_pending_ones(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    config = Config(site="test", redis=redis_server.url, data_dir=str(tmp_path), pending_limit=5)
    sink: LiveSink

    class SubmittingWriter(RedisWriter):
        """The real writer; while it replays the spooled batch, the reader goes on: a
        large batch (spilled at once, over pending_limit), then a small one (kept)."""

        def apply(self, batch: Batch) -> None:
            super().apply(batch)
            if batch.extra.get(POSITION) == "1":
                sink.submit(delta(10), {POSITION: "2"})
                sink.submit(delta(1), {POSITION: "3"})

    sink = LiveSink(config, SubmittingWriter(config), tmp_path / "spool")
    sink.submit(delta(10), {POSITION: "1"})  # over pending_limit: spooled
    assert sink.spool.batches == 1
    assert sink.flush(force=True)
    client = redis_server.client()
    assert client.get(POSITION) == b"3"
    assert int(client.hget("lc:{test}:t:minute:202611200000", "hits") or 0) == 21
    assert not list((tmp_path / "spool").iterdir())


def test_batches_spilled_while_in_flight_are_not_sent_again(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """A spill while a batch is in flight copies it to the spool (kept if the send
    fails); once Redis took it, the copy is skipped, not decoded and applied again."""
    config = Config(site="test", redis=redis_server.url, data_dir=str(tmp_path), pending_limit=5)
    sink: LiveSink

    class SpillingWriter(RedisWriter):
        """The real writer; as it sends the first batch, the reader passes pending_limit."""

        spilled = False

        def apply_all(self, batches: list[Batch]) -> list[tuple[Batch, str]]:
            if not self.spilled:
                self.spilled = True
                sink.submit(delta(10), {POSITION: "2"})  # over pending_limit: spilled
            return super().apply_all(batches)

    sink = LiveSink(config, SpillingWriter(config), tmp_path / "spool")
    sink.submit(delta(3), {POSITION: "1"})
    assert sink.flush(force=True)  # sends "1"; "2" and the copy of "1" were spooled
    assert sink.spool.batches == 2
    client = redis_server.client()
    calls = client.info("commandstats")["cmdstat_evalsha"]["calls"]
    assert sink.flush(force=True)
    assert client.get(POSITION) == b"2"
    assert int(client.hget("lc:{test}:t:minute:202611200000", "hits") or 0) == 13
    assert client.info("commandstats")["cmdstat_evalsha"]["calls"] == calls + 1  # "2" alone
    assert not list((tmp_path / "spool").iterdir())


def test_close_sends_what_came_after_a_failed_send_once_redis_is_back(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """A batch left in flight by a failed send, then more lines: Redis back by the time
    the reader closes, both reach it, and nothing is left in the spool for the next reader
    (close() used to resend the batch in flight and spool what came after it)."""
    config = Config(site="test", redis=redis_server.url, data_dir=str(tmp_path))
    sink = LiveSink(config, spool_dir=tmp_path / "spool")
    redis_server.stop()
    sink.submit(delta(3), {POSITION: "1"})
    assert not sink.flush(force=True)  # refused: kept in flight
    sink.submit(delta(4), {POSITION: "2"})
    redis_server.start()
    assert sink.close()
    client = redis_server.client()
    assert client.get(POSITION) == b"2"
    assert int(client.hget("lc:{test}:t:minute:202611200000", "hits") or 0) == 7
    assert sink.spool.batches == 0
    assert not list((tmp_path / "spool").glob("*.jsonl"))


def test_spools_of_dead_processes_are_replayed_oldest_first(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Names hold process ids (here above any pid_max, so dead), which say nothing of age:
    the last append does. By name, the newer file would come first."""
    config = Config(site="test", redis=redis_server.url, data_dir=str(tmp_path))
    directory = tmp_path / "spool"
    for pid, position, age in ((9_999_999, "older", 20), (10_000_000, "newer", 10)):
        spool = Spool(directory, f"spool-{HOST}-{pid}.jsonl")
        spool.append(Batch(delta(1), {POSITION: position}).to_line())
        then = time.time() - age
        os.utime(spool.path, (then, then))
    sink = LiveSink(config, spool_dir=directory)
    assert sink.flush(force=True)
    assert redis_server.client().get(POSITION) == b"newer"


def test_a_new_bucket_of_many_members_holds_them_exactly(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """apply.lua starts a new sorted set of more than 128 members with a placeholder (so
    that Redis makes it a skiplist at once, see there), removed in the same call; a
    member that happens to be named like it is kept."""
    placeholder = re.search(r"local PLACEHOLDER = '([^']+)'", _SCRIPT)
    assert placeholder is not None
    config = Config(site="test", redis=redis_server.url, data_dir=str(tmp_path))
    writer = RedisWriter(config)
    client = redis_server.client()
    for minute, names in (
        ("202611200000", [f"/p/{i}" for i in range(300)]),
        ("202611200001", [f"/p/{i}" for i in range(299)] + [placeholder.group(1)]),
    ):
        mkey = ("test", "path", "minute", minute)
        hits = Counter({name: i + 1 for i, name in enumerate(names)})
        sizes = Counter({name: 1000 * (i + 1) for i, name in enumerate(names)})
        writer.apply(Batch(Delta(members={mkey: hits}, member_bytes={mkey: sizes})))
        for key, want in (
            (f"lc:{{test}}:z:path:minute:{minute}", hits),
            (f"lc:{{test}}:zb:path:minute:{minute}", sizes),
        ):
            held = {m.decode(): int(s) for m, s in client.zrange(key, 0, -1, withscores=True)}
            assert held == dict(want)
            assert client.object("encoding", key) == b"skiplist"
