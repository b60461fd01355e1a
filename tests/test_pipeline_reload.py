"""A reload (SIGHUP) that changes how the scanner numbers the visitors (live sections on
or off) while lines are counted and not yet taken: those lines are classified as they were
counted, the reader goes on, and nothing is lost or counted twice. Sections on or off
renew the counter (its visitor keys change); another depth keeps it, and its numbering."""

from __future__ import annotations

from pathlib import Path

import pytest

from logcount.config import Config, load_config
from logcount.sinks import keys
from logcount.sources.pipeline import Pipeline
from tests.conftest import RedisServer

DAY = "20260408"


SECRET = "reload test's own fixed secret, 32b"


def lines(first: int, n: int) -> bytes:
    when = "[08/Apr/2026:10:00:00 +0000]"
    return b"".join(
        f'10.0.0.{i % 50} - - {when} "GET /s{i % 3}/a/p{i} HTTP/1.1" 200 5 "-" "x"\n'.encode()
        for i in range(first, first + n)
    )


@pytest.mark.parametrize("depths", [(0, 1), (1, 0), (1, 2)])
def test_a_reload_of_the_section_depth_with_lines_pending(
    tmp_path: Path, redis_server: RedisServer, depths: tuple[int, int]
) -> None:
    path = tmp_path / "logcount.toml"

    def config(depth: int) -> Config:
        # A fixed secret: the 50 visitors' hashes, hence their HyperLogLog registers, are
        # the same every run (a random one made two of them share a register in ~1 run of
        # 14: 50 hashes into 16,384 registers; PFCOUNT said 49)
        path.write_text(
            f'site = "test"\n[privacy]\nsecret = "{SECRET}"\n[live]\nsection_depth = {depth}\n'
        )
        return load_config(str(path), redis=redis_server.url, data_dir=str(tmp_path / "d"))

    messages: list[str] = []
    pipe = Pipeline(config(depths[0]), "pipe", messages.append, loader=lambda: config(depths[1]))
    pipe.feed(lines(0, 300))  # counted by the reading thread, not taken (no threads started)
    assert pipe.counter.pending()[0] == 300
    pipe.reload_requested = True
    pipe._classify_once()  # the classifier's turn: the reload, then what is pending
    pipe.feed(lines(300, 300))
    assert pipe.close(), messages
    assert messages == ["configuration reloaded (0 routes)"]
    client = redis_server.client()
    assert client.hget(keys.totals("test", "day", DAY), "hits") == b"600"
    assert client.pfcount(keys.visitors("test", "day", DAY)) == 50
    if depths[1]:  # the sections' visitors: every client was at /s0/a/... (its lines kept)
        section = {1: "/s0/", 2: "/s0/a/"}[depths[1]]
        kept = keys.section_visitors("test", str(depths[1]), "day", DAY, section)
        assert client.pfcount(kept) == 50
