"""The aggregator's per-key sums: for each key of a table, its count added to the member
of every dimension the key yields, per (site, minute).

The C twin (the module `_sum`, logcount/count/_sum*.c) does the same loop without the
interpreter; it is used when built and LOGCOUNT_PURE_PYTHON is not set (native(), which also
chooses the scanner).
tests/test_sums.py holds the two equal."""

from __future__ import annotations

import functools
import importlib
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

SUM_VERSION = 9  # the _sum.c this code calls

Key = tuple[bytes, ...]
Pairs = tuple[tuple[str, str], ...]  # (dimension, member) pairs a key's rest yields
Sums = dict[Any, dict[str, dict[str, int]]]  # (site, minute) -> dimension -> member -> n


def add_by_members_py(
    table: dict[Key, int],
    nctx: int,
    where: dict[Key, Any],
    members: dict[Key, Pairs],
    out: Sums,
    at_of: Callable[[Key], Any],
    pairs_of: Callable[[Key], Pairs],
    more: tuple[tuple[dict[Key, int], Sums], ...] = (),
) -> None:
    """out[where[key[:nctx]]][dim][member] += table[key], for each (dim, member) of
    members[key[nctx:]]. A context or rest seen for the first time is asked of at_of or
    pairs_of, and kept in where or members (a distinct one is described once). Each
    (other, its_out) of `more`, keyed as table (or a subset: a hit key's sizes and
    durations), is summed the same way into its_out in the same pass, on the same
    look-ups: a key missing from other adds nothing there."""
    for key, n in table.items():
        ctx = key[:nctx]
        at = where.get(ctx)
        if at is None:
            at = where[ctx] = at_of(ctx)
        rest = key[nctx:]
        pairs = members.get(rest)
        if pairs is None:
            pairs = members[rest] = pairs_of(rest)
        _add_pairs(out, at, pairs, n)
        for other, other_out in more:
            value = other.get(key)
            if value is not None:
                _add_pairs(other_out, at, pairs, value)


def _add_pairs(out: Sums, at: Any, pairs: Pairs, n: int) -> None:
    dims = out.get(at)
    if dims is None:
        dims = out[at] = {}
    for dim, member in pairs:
        per = dims.get(dim)
        if per is None:
            per = dims[dim] = {}
        per[member] = per.get(member, 0) + n


def add_counts_py(target: dict[Any, int], source: dict[Any, int]) -> None:
    """target[k] += n for each k, n of source (a missing k starts at 0): Counter.update."""
    if not target:
        target.update(source)
        return
    get = target.get
    for key, n in source.items():
        target[key] = get(key, 0) + n


_new_dict = dict.__new__
_fill = dict.update


def counter_copy(source: dict[Any, int]) -> Counter[Any]:
    """A new Counter of `source`'s items, as Counter(source) without its Python-level
    __init__, update and abstract isinstance check (2 us a call, 0.4 us this way): the
    aggregator makes one per bucket, dimension and batch, some 150,000 a diverse million."""
    out: Counter[Any] = _new_dict(Counter)
    _fill(out, source)
    return out


def _add_visitor(
    key: Key,
    who_at: tuple[int, ...],
    digests: dict[Key, str | None],
    digest_of: Callable[[Key], str | None],
    sets: tuple[set[str], ...],
) -> None:
    """The digest of a key's visitor (its items at who_at, asked of digest_of once and
    kept in digests) added to each of `sets`; None from digest_of (a bot not counted):
    nothing is added."""
    who = tuple([key[i] for i in who_at])
    digest = digests.get(who, "")
    if digest == "":
        digest = digests[who] = digest_of(who)
    if digest is None:
        return
    for found in sets:
        found.add(digest)


def add_to_sets_py(
    keys: Iterable[Key],
    nctx: int,
    page_at: tuple[int, ...],
    who_at: tuple[int, ...],
    targets: dict[tuple[Key, Key], tuple[set[str], ...] | None],
    digests: dict[Key, str | None],
    sets_of: Callable[[tuple[Key, Key]], tuple[set[str], ...] | None],
    digest_of: Callable[[Key], str | None],
) -> None:
    """Each visitor key's digest added to the sets of its place. The place of a key is
    (its context, its items at page_at: the request a visitor of a path asked for), its
    sets targets[place]; its visitor is its items at who_at, its digest digests[who]. What
    is not there yet is asked of sets_of or digest_of, and kept; None from sets_of (an
    ignored path) or from digest_of (a bot not counted): the key is not counted."""
    for key in keys:
        where = (key[:nctx], tuple([key[i] for i in page_at]))
        sets = targets.get(where, ())
        if sets == ():
            sets = targets[where] = sets_of(where)
        if sets is None:
            continue
        _add_visitor(key, who_at, digests, digest_of, sets)


_MISSING: Any = object()  # not looked up yet (None is an answer: not counted)


def add_to_place_sets_py(
    keys: Iterable[Key],
    nctx: int,
    page_at: tuple[int, ...],
    who_at: tuple[int, ...],
    places: dict[Key, Any],
    pages: dict[Key, Any],
    targets: dict[tuple[Any, Any], tuple[set[str], ...] | None],
    digests: dict[Key, str | None],
    place_of: Callable[[Key], Any],
    page_of: Callable[[Key], Any],
    sets_of: Callable[[tuple[Any, Any]], tuple[set[str], ...] | None],
    digest_of: Callable[[Key], str | None],
) -> None:
    """add_to_sets in two levels: a key's place is places[its context] and its page
    pages[its items at page_at], each asked once of place_of or page_of; its sets are
    targets[(place, page)], asked once of sets_of. Keys of many minutes whose places are
    one hour and day share their sets, found once. None from any of the four: the key is
    not counted."""
    levels = (nctx, page_at, places, pages, targets, place_of, page_of, sets_of)
    for key in keys:
        sets = _place_sets(key, *levels)
        if sets is not None:
            _add_visitor(key, who_at, digests, digest_of, sets)


def _place_sets(
    key: Key,
    nctx: int,
    page_at: tuple[int, ...],
    places: dict[Key, Any],
    pages: dict[Key, Any],
    targets: dict[tuple[Any, Any], Any],
    place_of: Callable[[Key], Any],
    page_of: Callable[[Key], Any],
    sets_of: Callable[[tuple[Any, Any]], Any],
) -> Any:
    """The sets of a key's (place, page) pair (see add_to_place_sets); None when place_of,
    page_of or sets_of said None."""
    ctx = key[:nctx]
    place = places.get(ctx, _MISSING)
    if place is _MISSING:
        place = places[ctx] = place_of(ctx)
    if place is None:
        return None
    page_key = tuple([key[i] for i in page_at])
    page = pages.get(page_key, _MISSING)
    if page is _MISSING:
        page = pages[page_key] = page_of(page_key)
    if page is None:
        return None
    sets = targets.get((place, page), _MISSING)
    if sets is _MISSING:
        sets = targets[place, page] = sets_of((place, page))
    return sets


def add_numbered_py(
    numbered: dict[Key, list[int]],
    nctx: int,
    page_at: tuple[int, ...],
    places: dict[Key, Any],
    pages: dict[Key, Any],
    targets: dict[tuple[Any, Any], tuple[set[str], ...] | None],
    hexes: dict[int, str],
    place_of: Callable[[Key], Any],
    page_of: Callable[[Key], Any],
    sets_of: Callable[[tuple[Any, Any]], tuple[set[str], ...] | None],
) -> None:
    """add_to_place_sets for visitors the scanner numbered (LineCounter.number_visitors:
    {place key: [visitor numbers]}): each number's text, f"{n:016x}" (which is
    classify.visitor_hash's), made once and kept in hexes, added to the sets of its key's
    (place, page) pair, found as add_to_place_sets finds them."""
    levels = (nctx, page_at, places, pages, targets, place_of, page_of, sets_of)
    for key, numbers in numbered.items():
        sets = _place_sets(key, *levels)
        if sets is None:
            continue
        for n in numbers:
            text = hexes.get(n)
            if text is None:
                text = hexes[n] = f"{n:016x}"
            for found in sets:
                found.add(text)


def native(name: str, version: int) -> Any:
    """logcount.count.<name>, an optional C extension, or None: not built, built from
    another <name>.c (said once on stderr: it would refuse this code's calls or hand back
    other tables), or LOGCOUNT_PURE_PYTHON set. The choice is made once, at start."""
    if os.environ.get("LOGCOUNT_PURE_PYTHON"):
        return None
    try:
        module = importlib.import_module(f"logcount.count.{name}")
    except ImportError:
        return None
    if getattr(module, "VERSION", None) != version:
        stale_build_warning(module.__file__ or name, name)
        return None
    return module


@functools.cache
def stale_build_warning(where: str, name: str) -> None:
    print(
        f"logcount: {where} was built from another {name}.c; counting without it "
        "(rebuild: pip install -e .)",
        file=sys.stderr,
    )


_sum = native("_sum", SUM_VERSION)
add_by_members: Callable[..., None] = getattr(_sum, "add_by_members", add_by_members_py)
add_counts: Callable[[dict[Any, int], dict[Any, int]], None] = getattr(
    _sum, "add_counts", add_counts_py
)
add_to_sets: Callable[..., None] = getattr(_sum, "add_to_sets", add_to_sets_py)
add_to_place_sets: Callable[..., None] = getattr(_sum, "add_to_place_sets", add_to_place_sets_py)
add_numbered: Callable[..., None] = getattr(_sum, "add_numbered", add_numbered_py)
_json_compact_c: Callable[..., bytes] | None = getattr(_sum, "json_compact", None)
_json_encode = json.JSONEncoder(separators=(",", ":")).encode


def json_compact_py(obj: Any, newline: bool = False) -> bytes:
    """json.dumps(obj, separators=(",", ":")) as bytes (ASCII: json escapes the rest),
    then a newline if asked."""
    return (_json_encode(obj) + ("\n" if newline else "")).encode("ascii")


def json_compact(obj: Any, newline: bool = False) -> bytes:
    """json_compact_py's bytes, written by the C twin when it can (apply.lua's operations,
    a spool line: str, int, lists and dicts of them), else by json."""
    if _json_compact_c is not None:
        try:
            return _json_compact_c(obj, newline)
        except TypeError:  # a type the C twin leaves to json (a float, a subclass)
            pass
    return json_compact_py(obj, newline)


def native_sum() -> Any:
    """The C twin of this module's functions (and of classify.visitor_numbers_py and
    sketch.add_registers_py), or None (see native)."""
    return _sum
