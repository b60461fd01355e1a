"""The reading thread's limit: past HARD_LIMIT pending lines it stops reading until they are
taken, by the flusher when it is classifying (so the wait is one batch, not two), else by
the reading thread itself. Either way nothing is lost or counted twice."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import redis

from logcount import keys
from logcount.config import load_config
from logcount.reader import HARD_KEYS, HARD_LIMIT, Pipeline
from tests.conftest import RedisServer

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


def until(condition: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_past_its_limit_the_reader_classifies_when_the_flusher_is_idle(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    messages: list[str] = []
    pipe = pipeline(tmp_path, redis_server, messages)  # no flusher thread started
    for first in range(0, 3 * HARD_LIMIT, 1000):
        pipe.feed(lines(first, 1000))
        held_lines, keys, _bytes = pipe.counter.pending()
        assert held_lines < HARD_LIMIT and keys < HARD_KEYS  # two keys a line: a hit, a visitor
    assert pipe.lines == 3 * HARD_LIMIT  # classified by the reading thread itself
    assert pipe.close(), messages
    assert hits(redis_server.client()) == 3 * HARD_LIMIT


def test_past_its_limit_the_reader_waits_for_a_classifying_flusher_to_take(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    messages: list[str] = []
    pipe = pipeline(tmp_path, redis_server, messages)
    pipe.absorbing.acquire()  # the flusher is classifying a batch
    reading = threading.Thread(target=pipe.feed, args=(lines(0, HARD_LIMIT),), daemon=True)
    reading.start()
    until(pipe.reader_waiting.is_set, "the reader to wait at its limit")
    assert reading.is_alive()
    assert pipe.counter.pending_lines() == HARD_LIMIT
    assert pipe.lines == 0  # it did not classify them itself
    # The flusher, done with its batch, sees the reader waiting and takes again.
    started = threading.Thread(target=pipe._absorb_taken, daemon=True)
    started.start()
    started.join(30)
    reading.join(30)
    assert not reading.is_alive()
    pipe.absorbing.release()
    assert pipe.counter.pending_lines() == 0
    assert pipe.lines == HARD_LIMIT
    assert pipe.close(), messages
    assert hits(redis_server.client()) == HARD_LIMIT


def test_the_flusher_takes_again_while_the_reader_waits(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    messages: list[str] = []
    pipe = pipeline(tmp_path, redis_server, messages)
    pipe.feed(lines(0, 100))
    classify = pipe.aggregator.classify
    batches: list[int] = []

    def one_batch_then_the_reader_waits(raw):
        batches.append(raw.lines)
        if len(batches) == 1:  # meanwhile the reader filled up and waits
            pipe.counter.feed(lines(100, 50))
            pipe.reader_waiting.set()
        return classify(raw)

    pipe.aggregator.classify = one_batch_then_the_reader_waits  # type: ignore[method-assign]
    pipe.absorb()
    assert batches == [100, 50]
    assert not pipe.reader_waiting.is_set()
    assert pipe.close(), messages
    assert hits(redis_server.client()) == 150
