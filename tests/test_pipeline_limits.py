"""The reading thread's limit: past HARD_LIMIT pending lines (or HARD_KEYS keys) it stops
reading until they are taken by the classifier thread, which never waits on Redis: the wait
is one batch at most. Without a classifier thread the reading thread classifies itself.
Either way nothing is lost or counted twice."""

from __future__ import annotations

import threading
from pathlib import Path

import redis

from logcount.config import load_config
from logcount.sinks import keys
from logcount.sources.pipeline import HARD_KEYS, HARD_LIMIT, Pipeline
from tests.conftest import RedisServer
from tests.waiting import wait_for

DAY = "20260408"


def lines(first: int, n: int) -> bytes:
    when = "[08/Apr/2026:10:00:00 +0000]"
    return b"".join(
        f'10.0.{i >> 8 & 255}.{i & 255} - - {when} "GET /p/{i} HTTP/1.1" 200 5 "-" "x"\n'.encode()
        for i in range(first, first + n)
    )


def pipeline(tmp_path: Path, server: RedisServer, messages: list[str]) -> Pipeline:
    (tmp_path / "logcount.toml").write_text('site = "test"\n')
    config = load_config(
        str(tmp_path / "logcount.toml"), redis=server.url, data_dir=str(tmp_path / "d")
    )
    return Pipeline(config, "pipe", messages.append)


def hits(client: redis.Redis) -> int:
    return int(client.hget(keys.totals("test", "day", DAY), "hits") or 0)


def test_past_its_limit_without_a_classifier_thread_the_reader_classifies(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    messages: list[str] = []
    pipe = pipeline(tmp_path, redis_server, messages)  # no threads started
    for first in range(0, 3 * HARD_LIMIT, 1000):
        pipe.feed(lines(first, 1000))
        held_lines, keys, _bytes = pipe.counter.pending()
        assert held_lines < HARD_LIMIT and keys < HARD_KEYS  # a line: a hit, a visitor
    assert pipe.lines > 2 * HARD_LIMIT  # classified by the reading thread itself, as it read
    assert pipe.close(), messages
    assert pipe.lines == 3 * HARD_LIMIT
    assert hits(redis_server.client()) == 3 * HARD_LIMIT


def test_past_its_limit_the_reader_waits_for_the_classifier_to_take(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    messages: list[str] = []
    pipe = pipeline(tmp_path, redis_server, messages)
    classify = pipe.aggregator.classify
    gate = threading.Event()
    classified_by: list[tuple[str, int]] = []

    def held_at_the_gate(raw):  # type: ignore[no-untyped-def]
        classified_by.append((threading.current_thread().name, raw.lines))
        gate.wait(30)  # the classifier busy with a batch until the test lets it go
        return classify(raw)

    pipe.aggregator.classify = held_at_the_gate  # type: ignore[method-assign]
    pipe.start()
    pipe.feed(lines(0, 100))
    pipe.wake.set()
    wait_for(lambda: classified_by, "the classifier to take the first 100 lines", interval=0.005)
    reading = threading.Thread(
        target=pipe.feed, args=(lines(100, HARD_LIMIT),), name="reading", daemon=True
    )
    reading.start()
    wait_for(
        lambda: pipe.counter.pending_lines() == HARD_LIMIT,
        "the reader to count its lines",
        interval=0.005,
    )
    assert reading.is_alive()  # past its limit, held until the classifier is free again
    gate.set()
    reading.join(30)
    assert not reading.is_alive()
    assert pipe.close(), messages
    assert {name for name, _ in classified_by} == {"classifier"}  # never the reading thread
    assert sum(n for _, n in classified_by) == HARD_LIMIT + 100
    assert hits(redis_server.client()) == HARD_LIMIT + 100
