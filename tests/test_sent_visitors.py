"""A batch leaves out the visitor hashes the last batch applied to the same HyperLogLog
(logcount.sinks.sent_visitors): Redis holds the same values, and everything is sent again
whenever it may not hold them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from logcount.config import Config
from logcount.count.delta import Delta
from logcount.sinks import sent_visitors
from logcount.sinks.batch import Batch
from logcount.sinks.live import RedisWriter
from logcount.sinks.sent_visitors import SentVisitors
from tests.conftest import RedisServer

MINUTE, HOUR, DAY = ("minute", "202612050901"), ("hour", "2026120509"), ("day", "20261205")


def hashes(start: int, stop: int) -> set[str]:
    return {f"{i:016x}" for i in range(start, stop)}


def delta_of(visitors: set[str]) -> Delta:
    """A batch's delta: `visitors` in the site's and section /a/'s minute, hour and day."""
    delta = Delta()
    for gran, label in (MINUTE, HOUR, DAY):
        delta.visitors[("t", gran, label)] = set(visitors)
        delta.sections[("t", "1", "/a/", gran, label)] = set(visitors)
    return delta


def held(server: RedisServer) -> dict[bytes, Any]:
    """Every key but the batch markers: its value and whether it has a ttl."""
    client = server.client()
    out: dict[bytes, Any] = {}
    for key in client.keys("*"):
        if b":batch:" in key:
            continue
        kind = client.type(key)
        value = client.smembers(key) if kind == b"set" else client.get(key)
        out[key] = (value, client.ttl(key) > 0)
    return out


class Recorder:
    """The payloads a writer sends (wraps its script object)."""

    def __init__(self, writer: RedisWriter):
        writer._client()
        self.script, self.payloads = writer.script, []
        writer.script = self

    def __call__(self, keys: list[str], args: list[Any], **kw: Any) -> Any:
        self.payloads.append(json.loads(bytes(args[0])))
        return self.script(keys=keys, args=args, **kw)

    def hashes_sent(self, n: int) -> int:
        """How many visitor hashes the n-th payload adds, a key at a time (a list can go
        to several keys)."""
        added = 0
        for op in self.payloads[n]["ops"]:
            if op[0] == "p":
                added += len(op[3]) * (1 + len(op[4] if len(op) > 4 else []) // 2)
            elif op[0] == "q":
                added += len(op[3][3]) * (1 + (len(op[3]) - 4) // 3)
        return added


def test_repeated_visitors_are_sent_once_and_redis_holds_the_same(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Three batches of one minute with 300 visitors each, 200 of them the batch before's:
    the second and third send only the 100 new ones (to the site and to the section),
    and Redis holds byte for byte what sending them all made, ttls too."""
    config = Config(site="t", redis=redis_server.url, data_dir=str(tmp_path))
    batches = [Batch(delta_of(hashes(100 * i, 100 * i + 300))) for i in range(3)]
    writer = RedisWriter(config)
    sent = Recorder(writer)
    for batch in batches:
        writer.apply(batch)
    assert [sent.hashes_sent(i) for i in range(3)] == [300 * 6, 100 * 6, 100 * 6]
    left_out = held(redis_server)
    redis_server.client().flushall()
    everything = RedisWriter(config)
    for batch in batches:
        everything.sent.forget()  # every hash sent
        everything.apply(batch)
    assert held(redis_server) == left_out


def test_everything_is_sent_again_after_a_failure_or_a_pause(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a reconnection (Redis may have restarted empty), a refused batch, MAX_AGE
    seconds without a batch, or a batch applied before (a spool's replay), a batch sends
    all its visitors again."""
    config = Config(site="t", redis=redis_server.url, data_dir=str(tmp_path))
    writer = RedisWriter(config)
    sent = Recorder(writer)
    same = hashes(0, 50)
    writer.apply(Batch(delta_of(same)))
    writer.apply(Batch(delta_of(same)))
    assert sent.hashes_sent(1) == 0
    redis_server.client().flushall()  # as a restart without persistence would
    writer.reset()
    sent = Recorder(writer)
    writer.apply(Batch(delta_of(same)))
    assert sent.hashes_sent(0) == 50 * 6
    assert redis_server.client().pfcount("lc:{t}:sv:1:day:20261205:/a/") == 50
    refused = Batch(delta_of(same))
    refused.delta.totals[("t", "minute", "x")] = {"hits": -1}  # type: ignore[assignment]
    assert writer.apply_all([refused])  # apply.lua refuses it: nothing is taken as held
    writer.apply(Batch(delta_of(same)))
    assert sent.hashes_sent(2) == 50 * 6
    clock = [1000.0]
    monkeypatch.setattr(sent_visitors.time, "monotonic", lambda: clock[0])
    writer.apply(Batch(delta_of(same)))
    clock[0] += sent_visitors.MAX_AGE - 1
    writer.apply(Batch(delta_of(same)))
    assert sent.hashes_sent(4) == 0
    clock[0] += sent_visitors.MAX_AGE + 1
    writer.apply(Batch(delta_of(same)))
    assert sent.hashes_sent(5) == 50 * 6
    again = Batch(delta_of(same))
    writer.apply(again)
    writer.apply(again)  # applied before (its marker): its buckets may have expired since
    writer.apply(Batch(delta_of(same)))
    assert [sent.hashes_sent(i) for i in (6, 7, 8)] == [0, 0, 50 * 6]


def test_only_the_last_batch_s_small_sets_are_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A key past PER_KEY hashes (dense in Redis: cheap) is always sent whole; a key the
    last batch did not touch is forgotten; so is a batch built but not applied; and a
    batch of more than TOTAL hashes to note has none remembered."""
    sent = SentVisitors()
    big = hashes(0, sent_visitors.PER_KEY + 1)
    sent.start()
    assert len(sent.new_hashes("big", big)) == len(big)
    assert set(sent.new_hashes("small", hashes(0, 10))) == hashes(0, 10)
    sent.commit()
    sent.start()
    assert len(sent.new_hashes("big", big)) == len(big)
    assert set(sent.new_hashes("small", hashes(5, 12))) == hashes(10, 12)
    sent.start()  # the batch before was not applied: "small" holds 0-9 only
    assert set(sent.new_hashes("small", hashes(5, 14))) == hashes(10, 14)
    sent.commit()
    sent.start()
    assert set(sent.new_hashes("small", hashes(0, 15))) == {f"{14:016x}"}
    sent.commit()
    sent.start()
    assert sent.new_hashes("other", hashes(0, 3))
    sent.commit()
    sent.start()
    assert sent.new_hashes("other", hashes(0, 3)) == []
    assert len(sent.new_hashes("small", hashes(0, 15))) == 15  # not in the last batch
    monkeypatch.setattr(sent_visitors, "TOTAL", 20)
    sent.start()
    sent.new_hashes("a", hashes(0, 15))
    sent.new_hashes("b", hashes(0, 15))
    sent.commit()
    sent.start()
    assert len(sent.new_hashes("a", hashes(0, 15))) == 15
