"""A rollup's visitor sets (count/visitors.py MemberVisitors) made two ways give the same
hashes: from the visitors the scanner numbered by place (collect_numbered, the rollup's
way unless events need the keys) and from the visitor key tuples (collect), with the C
scanner and with its Python twin (LOGCOUNT_PURE_PYTHON=1)."""

from __future__ import annotations

from datetime import date

import pytest

from logcount.config import Config
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
