"""Visitor sets made two ways give the same hashes: from the visitors the scanner numbered
by place and from the visitor key tuples, with the C scanner and with its Python twin
(LOGCOUNT_PURE_PYTHON=1). A rollup's (count/visitors.py MemberVisitors: collect_numbered,
the rollup's way unless events need the keys, or collect); a live reader's, the site's
minute, hour and day sets and its sections' (Aggregator.number_visitors, the way of
pipe and tail unless events need the keys, or the keys' add_to_sets and collect)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from logcount.config import Config
from logcount.count.classify import visitor_hash
from logcount.sources.pipeline import Pipeline
from logcount.sources.rollup_count import day_counter
from tests.test_logformat import generated_lines

SECRET = "0123456789abcdef0123456789abcdef"
BOTS = [
    b'10.0.0.%d - - [17/May/2015:10:05:03 +0000] "GET /a%d.png HTTP/1.1" 200 5 "-" "%s"'
    % (i, i % 3, agent)
    for i in range(40)
    for agent in (b"Googlebot/2.1", b"Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0", b"")
]


def sets_of(lines: list[bytes], pure: bool, number: bool, monkeypatch, **config) -> dict:
    """The day, path and object visitor hashes of a FileCounter fed `lines` in batches."""
    if pure:
        monkeypatch.setenv("LOGCOUNT_PURE_PYTHON", "1")
    else:
        monkeypatch.delenv("LOGCOUNT_PURE_PYTHON", raising=False)
    counter = day_counter(Config(secret=SECRET, **config), date(2015, 5, 17))
    assert counter.counter.native != pure
    if not number:  # the key tuples, as before the scanner numbered them
        counter.counter.scanner.number_visitors(None, (), -1, -1, None)
    data = b"".join(line + b"\n" for line in lines)
    third = data.index(b"\n", len(data) // 3) + 1
    for block in (data[:third], data[third:]):
        counter.feed(block)
        counter.absorb()
    counts = counter.finish()
    out = {}
    for name in ("day_visitors", "path_visitors", "object_visitors"):
        for key, sketch in getattr(counts, name).items():
            assert sketch.hashes is not None
            out[(name, *key)] = list(sketch.hashes)
    return out


@pytest.mark.parametrize(
    "config",
    [{}, {"count_bots": True}, {"ignore_extensions": (".png",)}],
    ids=["default", "count_bots", "ignore"],
)
def test_numbered_in_the_scanner_or_from_keys_the_same_sets(config: dict, monkeypatch) -> None:
    lines = generated_lines("combined", 2000, seed=21) + BOTS
    expected = sets_of(lines, False, False, monkeypatch, **config)
    assert sum(map(len, expected.values())) > 1000
    assert any(k[0] == "path_visitors" and k[-1].endswith(".png") for k in expected) == (
        "ignore_extensions" not in config
    )
    for pure in (False, True):
        assert sets_of(lines, pure, True, monkeypatch, **config) == expected, pure
    assert sets_of(lines, True, False, monkeypatch, **config) == expected


# Live lines: visitors with and without an agent, bots, several minutes and hours, pages of
# several sections and depths, an ignored extension, a path that is no section (`*`).
AGENTS = (b"Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0", b"Googlebot/2.1", b"-", b"")
PAGES = (b"GET /blog/2015/a", b"GET /blog/2016/c", b"GET /shop/x?q=1", b"GET /", b"GET /a.png")
WHO = [  # (client, agent, minute, page): not every visitor asks every page each minute
    (b"10.0.%d.%d" % (i % 3, i), AGENTS[(i + j) % len(AGENTS)], when, page)
    for i in range(30)
    for k, when in enumerate((b"10:05:03", b"10:06:59", b"11:05:00"))
    for j, page in enumerate(PAGES)
    if (7 * i + j + k) % 5
]
LIVE = [
    b'%s - - [17/May/2015:%s +0000] "%s HTTP/1.1" 200 5 "-" "%s"' % (client, when, page, agent)
    for client, agent, when, page in WHO
] + [b'10.9.9.9 - - [17/May/2015:10:05:04 +0000] "OPTIONS * HTTP/1.1" 200 0 "-" "curl/8"']


def live_sets(lines: list[bytes], pure: bool, number: bool, monkeypatch, **config) -> dict:
    """The visitor sets of the deltas a live reader (a Pipeline's counter and aggregator)
    makes of `lines` in two batches: the site's by bucket, the sections' by key."""
    if pure:
        monkeypatch.setenv("LOGCOUNT_PURE_PYTHON", "1")
    else:
        monkeypatch.delenv("LOGCOUNT_PURE_PYTHON", raising=False)
    pipeline = Pipeline(Config(secret=SECRET, **config), "pipe", print)
    counter, aggregator = pipeline.counter, pipeline.aggregator
    assert counter.native != pure
    if not number:  # the key tuples, as before the scanner numbered them
        counter.scanner.number_visitors(None, (), -1, -1, None)
    data = b"".join(line + b"\n" for line in lines)
    third = data.index(b"\n", len(data) // 3) + 1
    out: dict[Any, set[str]] = {}
    for block in (data[:third], data[third:]):
        counter.feed(block)
        raw = counter.take()
        assert bool(raw.numbered) == number and bool(raw.visitors) != number
        delta = aggregator.classify(raw)
        for key, hashes in (*delta.visitors.items(), *delta.sections.items()):
            out.setdefault(key, set()).update(hashes)
    return out


@pytest.mark.parametrize(
    "config",
    [
        {"section_depth": 2},
        {"section_depth": 1, "count_bots": True, "ignore_extensions": (".png",)},
        {"section_depth": 0},
        {"section_depth": 2, "log_format": "common"},  # no agent: the client alone
    ],
    ids=["depth2", "count_bots", "depth0", "no_agent"],
)
def test_live_sets_numbered_in_the_scanner_or_from_keys_the_same(
    config: dict, monkeypatch, tmp_path: Path
) -> None:
    config = {"site": "test", "timezone": "UTC", "data_dir": str(tmp_path), **config}
    common = config.get("log_format") == "common"
    live = [line.rsplit(b' "', 2)[0] for line in LIVE] if common else LIVE
    lines = live + generated_lines("common" if common else "combined", 500, seed=5)
    expected = live_sets(lines, False, False, monkeypatch, **config)
    for pure in (False, True):
        assert live_sets(lines, pure, True, monkeypatch, **config) == expected, pure
    assert live_sets(lines, True, False, monkeypatch, **config) == expected
    # What the sets hold, from the live lines alone: a bot is a visitor with count_bots
    # only, a visitor without an agent is its client's hash alone.
    got = live_sets(live, False, True, monkeypatch, **config)
    key = Config(secret=SECRET).visitor_key()
    day = got[("test", "day", "20150517")]
    visitors = {(client, b"" if common else agent) for client, agent, *_ in WHO}
    humans = {(c, a) for c, a in visitors if a != AGENTS[1] or "count_bots" in config}
    assert humans != visitors or common or "count_bots" in config
    assert day - {visitor_hash(b"10.9.9.9", b"" if common else b"curl/8", key)} == {
        visitor_hash(client, agent, key) for client, agent in humans
    }
    assert {k[2] for k in got if k[:2] == ("test", "minute")} == {
        "201505171005",
        "201505171006",
        "201505171105",
    }
    depth = config["section_depth"]
    sections = {
        "1": {"/blog/", "/shop/", "/", "/a.png"},
        "2": {"/blog/2015/", "/blog/2016/", "/shop/x", "/", "/a.png"},
    }
    if "ignore_extensions" in config:
        sections = {d: names - {"/a.png"} for d, names in sections.items()}
    assert {(k[1], k[2]) for k in got if len(k) == 5} == {
        (d, name) for d, names in sections.items() if int(d) <= depth for name in names
    }
