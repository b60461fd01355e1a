"""The durable store on a real SQLite file and a real PostgreSQL: schema, replacement per
source file, sums over sources, and the read API the reports use."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from logcount.errors import StoreError
from logcount.sinks.store import Store
from logcount.sinks.store_schema import SCHEMA_VERSION, SourceFacts, meta

D1, D2, D3 = date(2026, 1, 5), date(2026, 1, 6), date(2026, 1, 7)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store(f"sqlite:///{tmp_path / 'sub' / 'logcount.sqlite3'}")
    return Store(request.getfixturevalue("postgres_url"))


def facts(
    host: str,
    path: str,
    day: date,
    hits: int,
    visitors: list[str],
    paths: dict[str, int],
    site: str = "s",
) -> SourceFacts:
    f = SourceFacts(
        host=host,
        path=path,
        size=100,
        mtime=time.time(),
        lines=hits + 1,
        malformed=1,
        started=time.time(),
    )
    f.totals.append(
        {
            "site": site,
            "day": day,
            "hits": hits,
            "bots": 2,
            "malformed": 1,
            "ignored": 0,
            "bytes": hits * 10,
            "s1xx": 0,
            "s2xx": hits,
            "s3xx": 0,
            "s4xx": 0,
            "s5xx": 0,
        }
    )
    for p, n in paths.items():
        f.paths.append(
            {"site": site, "day": day, "path": p, "hits": n, "bytes": n * 10, "visitors": 1}
        )
        f.objects.append(
            {
                "site": site,
                "day": day,
                "object": f"page:{p.strip('/')}",
                "hits": n,
                "bytes": n * 10,
                "visitors": 1,
            }
        )
    f.members.append(
        {
            "site": site,
            "day": day,
            "dim": "status",
            "member": "200",
            "hits": hits,
            "bytes": hits * 10,
        }
    )
    f.visitors.extend({"site": site, "day": day, "visitor": v} for v in visitors)
    return f


def test_schema_created_once_with_version(store: Store) -> None:
    assert store.schema_version() == SCHEMA_VERSION
    again = Store(store.url)  # a second process opening the same store
    assert again.schema_version() == SCHEMA_VERSION
    with store.engine.begin() as conn:
        conn.execute(sa.update(meta).where(meta.c.key == "schema_version").values(value="99"))
    with pytest.raises(StoreError, match="has schema version 99; this logcount uses 1"):
        Store(store.url)


def test_replace_is_idempotent_and_sources_add_up(store: Store) -> None:
    store.replace_source(facts("web1", "/l/a", D1, 5, ["v1", "v2"], {"/a/": 3, "/b/": 2}))
    store.replace_source(facts("web1", "/l/a", D1, 5, ["v1", "v2"], {"/a/": 3, "/b/": 2}))
    assert store.day_totals("s", [D1])["hits"] == 5
    # the same day from another host adds up; a visitor seen by both counts once in totals
    store.replace_source(facts("web2", "/l/a", D1, 4, ["v2", "v3"], {"/a/": 4}))
    totals = store.day_totals("s", [D1])
    assert totals == {
        "hits": 9,
        "bots": 4,
        "malformed": 2,
        "bytes": 90,
        "s1xx": 0,
        "s2xx": 9,
        "s3xx": 0,
        "s4xx": 0,
        "s5xx": 0,
        "visitors": 3,
    }
    assert store.top_rows("s", [D1], "path", 10) == [
        {"key": "/a/", "hits": 7, "bytes": 70, "visitors": 2},
        {"key": "/b/", "hits": 2, "bytes": 20, "visitors": 1},
    ]
    assert store.top_rows("s", [D1], "status", 10) == [
        {"key": "200", "hits": 9, "bytes": 90, "visitors": None}
    ]
    # a re-run of web1's file with different content replaces only its own part
    store.replace_source(facts("web1", "/l/a", D1, 1, ["v9"], {"/c/": 1}))
    assert store.day_totals("s", [D1])["hits"] == 5
    assert [r["key"] for r in store.top_rows("s", [D1], "path", 10)] == ["/a/", "/c/"]
    assert [(r["host"], r["lines"], r["malformed"]) for r in store.source_rows()] == [
        ("web1", 2, 1),
        ("web2", 5, 1),
    ]


def test_read_api_over_days(store: Store) -> None:
    store.replace_source(facts("h", "/l/1", D1, 3, ["v1"], {"/a/": 3}))
    store.replace_source(facts("h", "/l/2", D2, 6, ["v1", "v2"], {"/a/": 1, "/b/": 5}))
    store.replace_source(facts("h", "/l/x", D2, 6, ["v7"], {"/x/": 6}, site="other"))
    assert store.rolled_days("s", [D1, D2, D3]) == {D1, D2}
    assert store.rolled_days("nobody", [D1, D2]) == set()
    straggler = facts("h", "/l/3", D3, 1, ["v1"], {"/a/": 1})
    straggler.totals[0]["own_day"] = False  # D3's lines at the top of D4's file
    store.replace_source(straggler)
    assert store.rolled_days("s", [D1, D2, D3]) == {D1, D2}
    assert store.daily_hits("s", "path", "/a/", [D3]) == {D3: 1}
    assert store.day_totals("s", [D1, D2])["visitors"] == 2  # distinct over the window
    assert store.day_totals("s", [D3])["hits"] == 1  # counted, though not "rolled up"
    assert store.daily_hits("s", "path", "/a/", [D1, D2, D3]) == {D1: 3, D2: 1, D3: 1}
    assert store.daily_hits("s", "object", "page:b", [D1, D2]) == {D2: 5}
    rows = store.top_rows("s", [D1, D2], "path", 1)
    assert rows == [{"key": "/b/", "hits": 5, "bytes": 50, "visitors": 1}]
    ties = store.top_rows("s", [D1, D2], "object", 5)
    assert [(r["key"], r["hits"]) for r in ties] == [("page:b", 5), ("page:a", 4)]
    # every dimension's daily hits are kept (a status row per source and day in `facts`)
    assert store.daily_hits("s", "status", "200", [D1, D2, D3]) == {D1: 3, D2: 6, D3: 1}
    with pytest.raises(StoreError):
        store.daily_hits("s", "colour", "red", [D1])


def test_unreachable_postgres_is_one_line_without_password() -> None:
    with pytest.raises(StoreError) as info:
        Store("postgresql+psycopg://u:s3cret@127.0.0.1:1/db?connect_timeout=2")
    text = str(info.value)
    assert "s3cret" not in text and "\n" not in text
    assert text.startswith("store postgresql+psycopg://u:***@127.0.0.1:1/db")


def hashes(*names: str) -> list[str]:
    import hashlib

    return [hashlib.blake2b(n.encode(), digest_size=8).hexdigest() for n in names]


def test_visitor_sketch_exact_then_hyperloglog() -> None:
    from logcount.count.sketch import EXACT_LIMIT, VisitorSketch

    small = VisitorSketch.of(hashes(*(f"v{i}" for i in range(600))))
    small.merge(VisitorSketch.of(hashes(*(f"v{i}" for i in range(400, 1000)))))
    assert small.count() == 1000 and small.hashes is not None  # still exact
    again = VisitorSketch.from_bytes(small.to_bytes())
    assert again.count() == 1000 and again.hashes == small.hashes
    big = VisitorSketch.of(hashes(*(f"w{i}" for i in range(20_000))))
    assert big.hashes is None and abs(big.count() - 20_000) < 20_000 * 0.06
    assert len(big.to_bytes()) == 1 + 1024 and len(small.to_bytes()) == 1 + 8 * 1000
    big.merge(VisitorSketch.of(hashes(*(f"w{i}" for i in range(5_000)))))  # already in it
    assert abs(big.count() - 20_000) < 20_000 * 0.06
    small.merge(big)  # exact into HLL
    assert small.hashes is None and abs(small.count() - 21_000) < 21_000 * 0.06
    assert EXACT_LIMIT == 1024


def test_union_into_merges_in_place_or_leaves_the_hashes_as_they_were(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rollup's union of sorted hashes, made in place a slice of the range at a time:
    slices with new hashes, slices without (moved up whole, or left where they are), and a
    union past the limit (False, the held hashes untouched); the C twin alike, when built."""
    import random
    from array import array

    from logcount.count import sketch
    from logcount.count.sums import native_sum

    unions = [sketch.union_into_py] + ([native_sum().union_into] if native_sum() else [])

    monkeypatch.setattr(sketch, "REGION", 16)  # many slices of a few hashes each
    rng = random.Random(11)
    for _ in range(300):
        held = {rng.getrandbits(64) for _ in range(rng.randrange(0, 200))}
        # new hashes at the bottom of the range only, spread, or none but those held
        fresh = rng.choice(
            [
                {rng.getrandbits(58) for _ in range(rng.randrange(1, 20))},
                {rng.getrandbits(64) for _ in range(rng.randrange(1, 200))},
                set(rng.sample(sorted(held), len(held) // 3)),
            ]
        )
        union = sorted(held | fresh)
        for limit in (len(union), len(union) - 1):
            for union_into in unions:
                packed = array("Q", sorted(held))
                merged = union_into(packed, array("Q", sorted(fresh)), limit)
                expected = union if limit >= len(union) else sorted(held)
                assert merged == (limit >= len(union)) and packed.tolist() == expected


@pytest.mark.parametrize(
    ("limit", "sizes"),
    [
        (1024, (0, 0)),  # nothing: b"S" alone
        (1024, (600, 300)),  # exact, with hashes on both sides
        (1024, (1000, 200)),  # over the limit only once merged
        (5000, (3000, 9000)),  # one side over it from the start
        (200_000, (150_000, 40_000)),  # union_into in several slices of the range
    ],
)
def test_packed_sketch_stores_what_a_visitor_sketch_stores(
    limit: int, sizes: tuple[int, int]
) -> None:
    """The rollup's PackedSketch (sorted 8-byte hashes) gives the bytes and the count a
    VisitorSketch of the same hashes gives, added in batches or merged, and merges into
    one (the store's and report's unions)."""
    import random

    from logcount.count.sketch import PackedSketch, VisitorSketch

    rng = random.Random(sum(sizes))
    first = {rng.getrandbits(64) for _ in range(sizes[0])}
    shared = rng.sample(sorted(first), min(len(first), 100))  # seen on both sides
    second = set(shared) | {rng.getrandbits(64) for _ in range(sizes[1])}
    expected = VisitorSketch(limit)
    expected.add_all(first | second)
    batches = PackedSketch(limit)
    for part in (first, second, shared):
        batches.add_all(part)
    left, right = PackedSketch(limit), PackedSketch(limit)
    left.add_all(first)
    right.add_all(second)
    left.merge(right)
    for sketch in (batches, left):
        assert sketch.to_bytes() == expected.to_bytes()
        assert sketch.count() == expected.count()
        assert (sketch.hashes is None) == (len(first | second) > limit)
    union = VisitorSketch(4 * limit)
    union.merge(left)
    assert union.count() == expected.count()


@pytest.mark.parametrize(
    ("limit", "sizes"),
    [
        (1024, (0, 0)),  # empty day sets: stored all the same
        (5000, (3000, 1500)),  # exact, several slices each
        (5000, (3000, 3000)),  # over the limit once some slices of the second are in
        (1024, (3000, 200)),  # registers on one side from the start
    ],
)
def test_a_part_handed_over_in_slices_merges_as_a_whole_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int, sizes: tuple[int, int]
) -> None:
    """A counter's part written in slices (rollup_parts) and merged by the parent a slice
    at a time holds what UnitCounts.merge makes of the two parts whole: the same rows,
    the same day set's bytes, the same paths' sketches."""
    import random
    from collections import Counter

    from logcount.count.sketch import EXACT_LIMIT, PackedSketch
    from logcount.sources import rollup_parts
    from logcount.sources.rollup_rows import UnitCounts

    monkeypatch.setattr(rollup_parts, "SLICE_HASHES", 256)
    monkeypatch.setattr(rollup_parts, "SLICE_KEYS", 3)
    rng = random.Random(sum(sizes))

    def part(n: int, shared: list[int]) -> UnitCounts:
        counts = UnitCounts(lines=n, malformed=1, edges=[b"first", b"last"])
        day = counts.day_visitors[("s", "20150517")] = PackedSketch(limit)
        day.add_all([*shared, *(rng.getrandbits(64) for _ in range(n))])
        for i in range(10):
            path = counts.path_visitors[("s", "20150517", f"/p{i}")] = PackedSketch(EXACT_LIMIT)
            path.add_all([*shared[:i], *(rng.getrandbits(64) for _ in range(i * 150))])
        counts.delta.members[("s", "path", "day", "20150517")] = Counter({"/p1": n})
        return counts

    shared = [rng.getrandbits(64) for _ in range(100)]
    parts = [part(sizes[0], shared), part(sizes[1], shared)]
    copies = [
        rollup_parts.read_part(rollup_parts.write_part(p, str(tmp_path)), None) for p in parts
    ]
    merged = rollup_parts.read_part(rollup_parts.write_part(parts[1], str(tmp_path)), copies[0])
    whole = parts[0]
    whole.merge(copies[1])
    assert not list(tmp_path.iterdir())  # each file removed once read
    assert (merged.lines, merged.malformed, merged.edges) == (
        whole.lines,
        whole.malformed,
        whole.edges,
    )
    assert merged.delta.members == whole.delta.members
    for mine, theirs in (
        (merged.day_visitors, whole.day_visitors),
        (merged.path_visitors, whole.path_visitors),
    ):
        assert {k: s.to_bytes() for k, s in mine.items()} == {
            k: s.to_bytes() for k, s in theirs.items()
        }


def test_row_visitors_are_a_union_over_sources_and_days(store: Store) -> None:
    from logcount.count.sketch import VisitorSketch

    def source(path: str, day: date, names: tuple[str, ...]) -> SourceFacts:
        f = facts("h", path, day, len(names), list(hashes(*names)), {})
        row = {
            "site": "s",
            "day": day,
            "hits": len(names),
            "bytes": 0,
            "visitors": len(names),
            "visitor_set": VisitorSketch.of(hashes(*names)).to_bytes(),
        }
        f.paths.append({**row, "path": "/a/"})
        f.objects.append({**row, "object": "page:a"})
        return f

    store.replace_source(source("/l/d1", D1, ("v1", "v2")))
    store.replace_source(source("/l/d2", D1, ("v2", "v3")))  # e.g. stragglers in D2's file
    store.replace_source(source("/l/d2b", D2, ("v1",)))
    for by in ("path", "object"):
        assert store.top_rows("s", [D1], by, 5)[0]["visitors"] == 3
        # a union over the window's days too: v1 on D1 and on D2 counts once
        assert store.top_rows("s", [D1, D2], by, 5)[0]["visitors"] == 3
        assert store.top_rows("s", [D2], by, 5)[0]["visitors"] == 1
    assert store.day_totals("s", [D1, D2])["visitors"] == 3  # as the window's total


@pytest.mark.parametrize(
    ("limit", "batches"),
    [
        (5000, (700, 700, 700)),  # exact: moved to the file twice, merged once more
        (5000, (3000, 3000, 10)),  # over the limit as the second batch is moved
        (2000, (900, 900, 300)),  # over it only once the last held hashes join the file
        (5000, (10, 10, 10)),  # never moved
    ],
)
def test_a_day_set_kept_in_a_file_is_handed_over_as_held_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int, batches: tuple[int, ...]
) -> None:
    """A counter's day set moved to a file as it grows (rollup_parts.DaySpill) reaches the
    parent as the same set, exact or registers, as one held in memory throughout; its
    files are gone once handed over."""
    import random

    from logcount.count.sketch import PackedSketch
    from logcount.sources import rollup_parts
    from logcount.sources.rollup_rows import UnitCounts

    monkeypatch.setattr(rollup_parts, "SLICE_HASHES", 128)
    rng = random.Random(limit + sum(batches))
    key = ("s", "20150517")
    held = PackedSketch(limit)
    spilled = UnitCounts()
    spilled.day_visitors[key] = PackedSketch(limit)
    spill = rollup_parts.DaySpill(str(tmp_path))
    seen: list[int] = []
    for n in batches:
        batch = [*rng.sample(seen, min(len(seen), 50)), *(rng.getrandbits(64) for _ in range(n))]
        seen += batch
        held.add_all(batch)
        spilled.day_visitors[key].add_all(batch)
        spill.relieve(spilled.day_visitors, 500)
    path = rollup_parts.write_part(spilled, str(tmp_path), spill)
    assert [p.name for p in tmp_path.iterdir()] == [Path(path).name]
    got = rollup_parts.read_part(path, None).day_visitors[key]
    assert got.to_bytes() == held.to_bytes()
    assert (got.hashes is None) == (len(set(seen)) > limit)
