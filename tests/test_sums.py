"""The aggregator's per-key sums: the C twin (logcount/count/_sum*.c) adds exactly as the
Python definition (logcount/count/sums.py), over tables hypothesis makes up."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logcount.count.sums import add_by_members_py

try:
    from logcount.count import _sum
except ImportError:
    _sum = None

if _sum is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("logcount.count._sum was not built: CI must test the C sums")
    pytest.skip("logcount.count._sum is not built (no C compiler?)", allow_module_level=True)

CTX = st.tuples(st.sampled_from([b"201505171005", b"201505171006"]), st.just(b"+0000"))
REST = st.tuples(st.sampled_from([b"GET / HTTP/1.1", b"GET /a HTTP/1.1", b"POST /"]))
PAIRS = st.lists(
    st.tuples(st.sampled_from(["path", "status", ""]), st.sampled_from(["/", "/a", "200"])),
    max_size=4,
).map(tuple)
COUNT = st.one_of(st.integers(1, 1000), st.just(2**70))  # sizes past 2^63 are Python ints


def learners(asked: list) -> tuple:
    """at_of and pairs_of that say what a context or rest is, and note that they were asked."""

    def at_of(ctx: tuple) -> tuple:
        asked.append(ctx)
        return ("site", ctx[0].decode())

    def pairs_of(rest: tuple) -> tuple:
        asked.append(rest)
        return (("path", rest[0].decode()), ("", "hits"))

    return at_of, pairs_of


@settings(max_examples=300, deadline=None)
@given(
    table=st.dictionaries(st.builds(lambda c, r: c + r, CTX, REST), COUNT, max_size=30),
    where=st.dictionaries(CTX, st.sampled_from([("a", "1005"), ("b", "1006")]), max_size=2),
    members=st.dictionaries(REST, PAIRS, max_size=3),
    before=st.dictionaries(
        st.sampled_from([("a", "1005"), ("b", "1006")]),
        st.dictionaries(st.sampled_from(["path", ""]), st.dictionaries(st.just("/"), COUNT)),
    ),
)
def test_the_c_sums_equal_the_python_ones(table, where, members, before) -> None:
    results = []
    for add in (add_by_members_py, _sum.add_by_members):
        state = copy.deepcopy((where, members, before))
        asked: list = []
        add(table, 2, *state, *learners(asked))
        results.append((state, asked))
    assert results[1] == results[0]


def test_each_key_is_added_to_its_members_and_what_is_new_asked_once() -> None:
    table = {(b"m1", b"/a"): 3, (b"m1", b"/b"): 2, (b"m2", b"/a"): 1}
    where = {(b"m1",): ("site", "m1")}
    members = {(b"/a",): (("path", "/a"), ("status", "200"))}
    out = {("site", "m1"): {"path": {"/a": 10}}}
    for add in (add_by_members_py, _sum.add_by_members):
        state = copy.deepcopy((where, members, out))
        asked: list = []
        add(table, 1, *state, *learners(asked))
        assert asked == [(b"/b",), (b"m2",)]
        assert state[2] == {
            ("site", "m1"): {"path": {"/a": 13, "/b": 2}, "status": {"200": 3}, "": {"hits": 2}},
            ("site", "m2"): {"path": {"/a": 1}, "status": {"200": 1}},
        }


def test_more_tables_are_summed_on_the_main_tables_look_ups() -> None:
    # a hit key's sizes and durations: keyed as the hits, a key missing where it is 0
    table = {(b"m1", b"/a"): 3, (b"m1", b"/b"): 2, (b"m2", b"/a"): 1}
    sizes = {(b"m1", b"/a"): 300, (b"m2", b"/a"): 7}
    times = {(b"m1", b"/b"): 40}
    members = {(b"/a",): (("", "s2xx"), ("path", "/a")), (b"/b",): (("", "s4xx"), ("path", "/b"))}
    for add in (add_by_members_py, _sum.add_by_members):
        out: dict = {}
        out_sizes: dict = {("site", "m1"): {"path": {"/a": 1}}}
        out_times: dict = {}
        asked: list = []
        more = ((sizes, out_sizes), (times, out_times))
        add(table, 1, {}, copy.deepcopy(members), out, *learners(asked), more)
        assert asked == [(b"m1",), (b"m2",)]  # each context once, whatever the tables
        assert out_sizes == {
            ("site", "m1"): {"": {"s2xx": 300}, "path": {"/a": 301}},
            ("site", "m2"): {"": {"s2xx": 7}, "path": {"/a": 7}},
        }
        assert out_times == {("site", "m1"): {"": {"s4xx": 40}, "path": {"/b": 40}}}
        assert out[("site", "m1")] == {"": {"s2xx": 3, "s4xx": 2}, "path": {"/a": 3, "/b": 2}}


@settings(max_examples=200, deadline=None)
@given(
    table=st.dictionaries(st.builds(lambda c, r: c + r, CTX, REST), COUNT, max_size=30),
    members=st.dictionaries(REST, PAIRS, max_size=3),
    keep=st.lists(st.booleans(), min_size=30, max_size=30),
)
def test_the_c_more_tables_equal_the_python_ones(table, members, keep) -> None:
    other = {k: n * 7 for (k, n), kept in zip(table.items(), keep, strict=False) if kept}
    results = []
    for add in (add_by_members_py, _sum.add_by_members):
        state = copy.deepcopy((members, {}, {}))
        asked: list = []
        add(table, 2, {}, state[0], state[1], *learners(asked), ((other, state[2]),))
        results.append((state, asked))
    assert results[1] == results[0]


def test_the_c_sums_refuse_more_that_is_not_table_and_out() -> None:
    for more in (((1, {}),), (({},),), ([{}, {}],)):
        with pytest.raises(TypeError, match="more must hold"):
            _sum.add_by_members({(b"m",): 1}, 1, {(b"m",): "at"}, {(): ()}, {}, repr, repr, more)


@pytest.mark.parametrize(
    ("table", "members", "error"),
    [
        ({b"not a tuple": 1}, {}, "keys must be tuples"),
        ({(b"m",): 1}, {(): "not pairs"}, "members must be a tuple"),
        ({(b"m",): 1}, {(): (("path",),)}, "a member must be a (dimension, member) tuple"),
    ],
)
def test_the_c_sums_refuse_what_they_cannot_add(table, members, error) -> None:
    with pytest.raises(TypeError, match=error.replace("(", r"\(").replace(")", r"\)")):
        _sum.add_by_members(table, 1, {(b"m",): "at"}, members, {}, repr, repr)


def test_an_error_of_a_learner_is_raised() -> None:
    def broken(ctx: tuple) -> tuple:
        raise ValueError("no such minute")

    with pytest.raises(ValueError, match="no such minute"):
        _sum.add_by_members({(b"m", b"/"): 1}, 1, {}, {}, {}, broken, repr)


@settings(max_examples=200, deadline=None)
@given(
    target=st.dictionaries(st.sampled_from(["/", "/a", "200"]), COUNT),
    source=st.dictionaries(st.sampled_from(["/", "/a", "/b"]), COUNT),
)
def test_the_c_add_counts_equals_counter_update(target, source) -> None:
    from collections import Counter

    from logcount.count.sums import add_counts_py

    expected = Counter(target)
    expected.update(source)
    for add in (add_counts_py, _sum.add_counts):
        got = dict(target)
        add(got, source)
        assert got == dict(expected)


@settings(max_examples=200, deadline=None)
@given(
    keys=st.sets(
        st.tuples(
            st.sampled_from([b"d1", b"d2"]),
            st.sampled_from([b"1.2.3.4", b"5.6.7.8"]),
            st.sampled_from([b"Firefox", b"Googlebot"]),
            st.sampled_from([b"GET /", b"GET /skip", b"GET /a"]),
        ),
        max_size=20,
    )
)
def test_the_c_visitor_sets_equal_the_python_ones(keys) -> None:
    from logcount.count.sums import add_to_sets_py

    results = []
    for add in (add_to_sets_py, _sum.add_to_sets):
        tables: dict = {}
        asked: list = []

        def sets_of(where: tuple, tables: dict = tables, asked: list = asked) -> tuple | None:
            asked.append(where)
            if where[1] == (b"GET /skip",):  # an ignored path
                return None
            return (
                tables.setdefault(("day", where[0]), set()),
                tables.setdefault(("page", where), set()),
            )

        def digest_of(who: tuple, asked: list = asked) -> str | None:
            asked.append(who)
            return None if who[1] == b"Googlebot" else b"|".join(who).decode()

        add(keys, 1, (3,), (1, 2), {}, {}, sets_of, digest_of)
        results.append((tables, sorted(map(repr, asked))))
    assert results[1] == results[0]
    counted = {k for k in keys if k[3] != b"GET /skip" and k[2] != b"Googlebot"}
    assert sum(len(s) for w, s in results[0][0].items() if w[0] == "page") == len(counted)


def test_the_c_visitor_sets_ask_once_per_value_whatever_the_objects() -> None:
    """The C loop looks a key's place and visitor up by the identity of its items first
    (take() shares one bytes object per value): keys of equal values made as separate
    objects, from a generator that lets each go, ask sets_of and digest_of once per
    distinct value, as the Python twin does, and fill the same sets."""
    from logcount.count.sums import add_to_sets_py

    def fresh_keys():  # a new tuple of new bytes each time, dropped once used
        for i in range(3000):
            yield tuple(
                bytes(x) for x in (b"d1", b"1.2.3.%d" % (i % 7), b"Firefox", b"GET /%d" % (i % 5))
            )

    results = []
    for add in (add_to_sets_py, _sum.add_to_sets):
        tables: dict = {}
        asked: list = []

        def sets_of(where: tuple, tables: dict = tables, asked: list = asked) -> tuple:
            asked.append(where)
            return (tables.setdefault(where, set()),)

        def digest_of(who: tuple, asked: list = asked) -> str:
            asked.append(who)
            return b"|".join(who).decode()

        targets: dict = {}
        digests: dict = {}
        add(fresh_keys(), 1, (3,), (1, 2), targets, digests, sets_of, digest_of)
        results.append((tables, asked, targets.keys(), digests))
    assert results[1] == results[0]
    assert len(results[0][1]) == 5 + 7  # five places, seven visitors


def page_and_sets_learners(asked: list, tables: dict) -> tuple[Callable, Callable]:
    """The place-sets tests' page and sets learners, each noting what it was asked: a
    page's section is its first path segment (None for /skip); a place and section's sets
    are its hour's and its section's (None for the section "none")."""

    def page_of(page: tuple) -> tuple | None:
        asked.append(("page", page))
        return None if page == (b"GET /skip",) else (page[0].split(b"/")[1].decode(),)

    def sets_of(where: tuple) -> tuple | None:
        asked.append(("sets", where))
        (site, hour), (section,) = where
        if section == "none":
            return None
        return (tables.setdefault((hour, section), set()), tables.setdefault(section, set()))

    return page_of, sets_of


@settings(max_examples=200, deadline=None)
@given(
    keys=st.sets(
        st.tuples(
            st.sampled_from([b"201505171005", b"201505171006", b"201505171105", b"-"]),
            st.sampled_from([b"1.2.3.4", b"5.6.7.8"]),
            st.sampled_from([b"Firefox", b"Googlebot"]),
            st.sampled_from([b"GET /", b"GET /skip", b"GET /a/b", b"GET /known", b"GET /none"]),
        ),
        max_size=30,
    ),
    as_generator=st.booleans(),
)
def test_the_c_place_sets_equal_the_python_ones(keys, as_generator) -> None:
    """add_to_place_sets: a key's context placed once, its page once (a page already in
    `pages` is not asked again), their pair's sets once; None from any learner drops the
    key. The C twin asks the same questions, fills the same sets and the same caches."""
    from logcount.count.sums import add_to_place_sets_py

    results = []
    for add in (add_to_place_sets_py, _sum.add_to_place_sets):
        tables: dict = {}
        asked: list = []
        made: dict = {}

        def place_of(ctx: tuple, asked: list = asked, made: dict = made) -> tuple | None:
            asked.append(("place", ctx))
            if ctx == (b"-",):
                return None  # not counted
            place = ("site", ctx[0][:10].decode())  # the hour: two minutes, one place
            return made.setdefault(place, place)

        page_of, sets_of = page_and_sets_learners(asked, tables)

        def digest_of(who: tuple, asked: list = asked) -> str | None:
            asked.append(("who", who))
            return None if who[1] == b"Googlebot" else b"|".join(who).decode()

        pages: dict = {(b"GET /known",): ("known",)}
        places: dict = {}
        targets: dict = {}
        digests: dict = {}
        # A list of the keys, or new objects of equal values dropped as they go: the C
        # loop's identity caches must answer as the dicts do either way.
        items = (tuple(bytes(x) for x in k) for k in sorted(keys)) if as_generator else sorted(keys)
        add(
            items, 1, (3,), (1, 2), places, pages, targets, digests,
            place_of, page_of, sets_of, digest_of,
        )  # fmt: skip
        results.append((tables, sorted(map(repr, asked)), places, pages, targets, digests))
    assert results[1] == results[0]
    asked = results[0][1]
    assert len(asked) == len(set(asked))  # each question once
    assert repr(("page", (b"GET /known",))) not in asked  # kept from an earlier batch
    counted = [
        (k[0][:10], k[3].split(b"/")[1], k[1])
        for k in keys
        if k[0] != b"-" and k[2] != b"Googlebot" and k[3] not in (b"GET /skip", b"GET /none")
    ]
    in_hours = len(set(counted))
    in_sections = len({(section, who) for _, section, who in counted})
    assert sum(map(len, results[0][0].values())) == in_hours + in_sections


@pytest.mark.parametrize("failing", range(4))
def test_an_error_of_a_place_sets_learner_is_raised(failing: int) -> None:
    """place_of, page_of, sets_of or digest_of raising: the error reaches the caller, from
    either twin."""
    from logcount.count.sums import add_to_place_sets_py

    def boom(_: object) -> None:
        raise KeyError("boom")

    learners: list = [lambda ctx: ("site",), lambda page: ("/",), lambda w: (set(),), repr]
    learners[failing] = boom
    for add in (add_to_place_sets_py, _sum.add_to_place_sets):
        with pytest.raises(KeyError, match="boom"):
            add([(b"m", b"c", b"a", b"GET /")], 1, (3,), (1, 2), {}, {}, {}, {}, *learners)


@settings(max_examples=200, deadline=None)
@given(
    numbered=st.dictionaries(
        st.tuples(
            st.sampled_from([b"201505171005", b"201505171006", b"201505171105", b"-"]),
            st.sampled_from([b"GET /", b"GET /skip", b"GET /a/b", b"GET /known", b"GET /none"]),
        ),
        # around the ends of 64 bits: 0 and 2**64 - 1 are 16 hex digits as well
        st.lists(st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 15, 2**64 - 1]))),
        max_size=30,
    ),
)
def test_the_c_numbered_sets_equal_the_python_ones(numbered: dict) -> None:
    """add_numbered: the places of visitors the scanner numbered found as add_to_place_sets
    finds them (each context, page and pair asked once; None drops the place), each number
    added as f"{n:016x}" (made once, kept in hexes). The C twin fills the same sets and
    caches, and asks the same questions."""
    from logcount.count.sums import add_numbered_py

    results = []
    for add in (add_numbered_py, _sum.add_numbered):
        tables: dict = {}
        asked: list = []

        def place_of(ctx: tuple, asked: list = asked) -> tuple | None:
            asked.append(("place", ctx))
            return None if ctx == (b"-",) else ("site", ctx[0][:10].decode())

        page_of, sets_of = page_and_sets_learners(asked, tables)

        pages: dict = {(b"GET /known",): ("known",)}
        places: dict = {}
        targets: dict = {}
        hexes: dict = {15: "kept"}  # known already: not made again
        add(copy.deepcopy(numbered), 1, (1,), places, pages, targets, hexes,
            place_of, page_of, sets_of)  # fmt: skip
        results.append((tables, sorted(map(repr, asked)), places, pages, targets, hexes))
    assert results[1] == results[0]
    tables, asked, *_, hexes = results[0]
    assert len(asked) == len(set(asked))  # each question once
    assert repr(("page", (b"GET /known",))) not in asked
    counted = {
        (key[0][:10], key[1].split(b"/")[1], n)
        for key, numbers in numbered.items()
        for n in numbers
        if key[0] != b"-" and key[1] not in (b"GET /skip", b"GET /none")
    }
    in_hours = {(hour, section, n) for hour, section, n in counted}
    in_sections = {(section, n) for _, section, n in counted}
    assert sum(map(len, tables.values())) == len(in_hours) + len(in_sections)
    texts = {t for found in tables.values() for t in found}
    assert texts == {hexes[n] if n == 15 else f"{n:016x}" for *_, n in counted}
    assert all(t == f"{n:016x}" and len(t) == 16 for n, t in hexes.items() if n != 15)


@pytest.mark.parametrize("failing", range(3))
def test_an_error_of_a_numbered_sets_learner_is_raised(failing: int) -> None:
    from logcount.count.sums import add_numbered_py

    def boom(_: object) -> None:
        raise KeyError("boom")

    learners: list = [lambda ctx: ("site",), lambda page: ("/",), lambda w: (set(),)]
    learners[failing] = boom
    for add in (add_numbered_py, _sum.add_numbered):
        with pytest.raises(KeyError, match="boom"):
            add({(b"m", b"GET /"): [1]}, 1, (1,), {}, {}, {}, {}, *learners)


def test_the_c_numbered_sets_refuse_what_is_no_number() -> None:
    learners = (lambda ctx: ("site",), lambda page: ("/",), lambda w: (set(),))
    for numbers, error in (([-1], OverflowError), ([2**64], OverflowError), ((1,), TypeError)):
        with pytest.raises(error):
            _sum.add_numbered({(b"m", b"GET /"): numbers}, 1, (1,), {}, {}, {}, {}, *learners)


def test_counter_copy_is_a_new_counter_of_the_same_items() -> None:
    from collections import Counter

    from logcount.count.sums import counter_copy

    source = Counter({"/a": 3, "/b": 0})
    copied = counter_copy(source)
    assert type(copied) is Counter
    assert copied == source and list(copied.items()) == [("/a", 3), ("/b", 0)]
    copied["/a"] += 1
    assert source["/a"] == 3 and copied.most_common(1) == [("/a", 4)]


@settings(max_examples=300, deadline=None)
@given(
    key=st.binary(min_size=1, max_size=64),
    client=st.binary(max_size=300),
    # around the 128-byte blocks of blake2b: an agent ending a block, or one byte past it
    agent=st.one_of(st.binary(max_size=600), st.integers(120, 260).map(lambda n: b"a" * n)),
    fields=st.sampled_from([(0, 1), (-1, 1), (0, -1), (1, 0)]),
)
def test_the_c_visitor_numbers_equal_hashlibs(
    key: bytes, client: bytes, agent: bytes, fields: tuple[int, int]
) -> None:
    """_sum.VisitorNumbers is classify.visitor_number (hashlib's keyed blake2b) on every
    length of key, client and agent, with either field missing from the visitor."""
    from logcount.count.visitors import visitor_numbers_py

    ci, ai = fields
    who = (client, agent)
    assert _sum.VisitorNumbers(key, ci, ai, {}, None)(who) == visitor_numbers_py(
        key, ci, ai, {}, None
    )(who)


def test_the_c_visitor_numbers_skip_bots_as_the_python_ones() -> None:
    """A bot not counted is None, its agent asked once and kept in `skipped` (b"" as such,
    what skip_of makes of it is its own business)."""
    from logcount.count.visitors import visitor_numbers_py

    whos = [(b"1.2.3.4", b"Googlebot"), (b"5.6.7.8", b"Googlebot"), (b"1.2.3.4", b"Firefox")]
    whos.append((b"9.9.9.9", b""))
    for make in (visitor_numbers_py, _sum.VisitorNumbers):
        asked: list[bytes] = []
        skipped: dict[bytes, bool] = {}

        def skip_of(agent: bytes, asked: list[bytes] = asked) -> object:
            asked.append(agent)
            return 1 if b"bot" in agent else 0

        number = make(b"k" * 32, 0, 1, skipped, skip_of)
        got = [number(who) for who in whos]
        assert got[:2] == [None, None] and isinstance(got[2], int) and isinstance(got[3], int)
        assert asked == [b"Googlebot", b"Firefox", b""]
        assert skipped == {b"Googlebot": True, b"Firefox": False, b"": False}
    with pytest.raises(ValueError):
        _sum.VisitorNumbers(b"", 0, 1, {}, None)
    with pytest.raises(TypeError):
        _sum.VisitorNumbers(b"k", 0, 1, {}, None)(("1.2.3.4", b"agent"))


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.integers(0, 2**64 - 1), max_size=3000))
def test_the_c_registers_and_sorted_hashes_equal_the_python_ones(values: list[int]) -> None:
    from logcount.count.sketch import REGISTERS, add_registers_py, sorted_hashes_py

    mine, theirs = bytearray(REGISTERS), bytearray(REGISTERS)
    _sum.add_registers(mine, values + [0, 2**64 - 1, 1 << 54])
    add_registers_py(theirs, values + [0, 2**64 - 1, 1 << 54])
    assert mine == theirs
    assert _sum.sorted_hashes(values) == sorted_hashes_py(values)
    assert _sum.sorted_hashes(set(values)) == sorted_hashes_py(values)


@settings(max_examples=300, deadline=None)
@given(
    registers=st.lists(st.integers(0, 255), min_size=1024, max_size=1024),
    small=st.booleans(),
)
def test_the_estimate_is_the_formula_of_its_registers(registers: list[int], small: bool) -> None:
    """estimate() looks each register's power of two up: the same floats, summed in the same
    order, so the same count as the formula (the stored visitors must not move)."""
    from logcount.count.sketch import REGISTERS, estimate

    regs = bytearray(r % 24 if small else r for r in registers)  # small: real-sized values
    assert len(regs) == REGISTERS
    m = REGISTERS
    value = 0.7213 / (1 + 1.079 / m) * m * m / sum(2.0**-r for r in regs)
    if value <= 2.5 * m and regs.count(0):
        value = m * math.log(m / regs.count(0))
    assert estimate(regs) == round(value)


@pytest.mark.parametrize("n", [0, 1, 2, 23, 24, 25, 100, 1000, 70_000])
def test_the_c_sorted_hashes_on_every_shape(n: int) -> None:
    """The C sort of sorted_hashes (its own quicksort) on the shapes that break simple ones:
    sorted, reversed, one value, two values, organ pipe, random with and without repeats,
    and values at both ends of the range; each equal to the Python twin's."""
    import random

    from logcount.count.sketch import sorted_hashes_py

    rng = random.Random(n)
    top = 2**64 - 1
    shapes = [
        [rng.randrange(top + 1) for _ in range(n)],
        [rng.randrange(max(1, n // 10)) for _ in range(n)],
        list(range(n)),
        list(range(n, 0, -1)),
        [7] * n,
        [top if i % 2 else 0 for i in range(n)],
        list(range(n // 2)) + list(range(n // 2, 0, -1)),
        [top - i for i in range(n)],
    ]
    for values in shapes:
        assert _sum.sorted_hashes(values) == sorted_hashes_py(values)


# What apply.lua's operations hold (str of every plane, lone surrogates, ints past 64 bits,
# nested lists, tuples and dicts), as the C twin must write it.
JSON_SCALARS = st.one_of(
    st.text(),
    st.integers(-(2**80), 2**80),
    st.sampled_from([None, True, False, 0, -1, 2**63, -(2**63) - 1]),
    st.sampled_from(["\ud800", "a\udfffb", '\x00\x1f\x7f"\\/', "\U0001f600é\u2028"]),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=5).map(tuple),
        st.dictionaries(st.text(max_size=8), inner, max_size=5),
    ),
    max_leaves=40,
)


@given(JSON_VALUES)
@settings(max_examples=400)
def test_the_c_json_equals_jsons_bytes(value) -> None:
    import json

    expected = json.dumps(value, separators=(",", ":")).encode("ascii")
    assert _sum.json_compact(value) == expected
    assert _sum.json_compact(value, True) == expected + b"\n"


@pytest.mark.parametrize("value", [1.5, [1, 2.0], {1: "a"}, {"a": {("t",): 1}}, [set()]])
def test_the_c_json_leaves_other_types_to_json(value) -> None:
    """A float, a key not a str, an unknown type: TypeError from the C twin, and
    sums.json_compact then writes what json writes (or raises as json does)."""
    import json

    from logcount.count.sums import json_compact

    with pytest.raises(TypeError):
        _sum.json_compact(value)
    try:
        expected = json.dumps(value, separators=(",", ":")).encode("ascii")
    except TypeError:
        with pytest.raises(TypeError):
            json_compact(value)
        return
    assert json_compact(value) == expected


def test_the_c_json_writes_a_counter_as_json_does_and_leaves_other_dicts_to_it() -> None:
    """A Counter's items() is dict's: written in its order; a subclass with its own
    items() could write other pairs, and goes to json."""
    import json
    from collections import Counter, OrderedDict

    counts = Counter({"b": 2, "a": 1})
    counts["c"] += 3
    assert _sum.json_compact([counts]) == json.dumps([counts], separators=(",", ":")).encode()

    class Upside(dict):
        def items(self):
            return reversed(list(super().items()))

    from logcount.count.sums import json_compact

    for own_items in (Upside(a=1, b=2), OrderedDict(b=1, a=2)):
        with pytest.raises(TypeError):
            _sum.json_compact(own_items)
        assert json_compact(own_items) == json.dumps(own_items, separators=(",", ":")).encode()


def test_the_c_json_leaves_deep_nests_to_json() -> None:
    from logcount.count.sums import json_compact

    deep: list = [1]
    for _ in range(40):
        deep = [deep]
    with pytest.raises(TypeError):
        _sum.json_compact(deep)
    assert json_compact(deep) == b"[" * 41 + b"1" + b"]" * 41
