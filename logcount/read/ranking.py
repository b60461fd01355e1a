"""The rows of a window: its members ranked by hits, bytes or time over its buckets.

Redis ranks them: ZUNIONSTORE of the window's buckets (and the store's leading rows) into a
short-lived scratch key in the site's slot, then ZREVRANGE. A read-only replica refuses
that write (READONLY): there the same ranking is made in Python from the buckets' sorted
sets, read whole (a window of a day's hour buckets reads each of them once), so that a
dashboard or `top` pointed at a replica answers the same.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import redis

from logcount.dimensions import SORT_NAMES
from logcount.sinks import keys

# `--sort`: the row field rows are ranked by, and the sorted sets of one bucket that hold
# it per member (a row's time is the sum of its durations: where the server's time goes).
SORTS: dict[str, tuple[str, Callable[[str, str, str, str], str]]] = {
    "hits": ("hits", keys.members),
    "bytes": ("bytes", keys.member_bytes),
    "time": ("time_us", keys.member_durations),
}
assert tuple(SORTS) == SORT_NAMES

# (row field, the sorted sets of the window's buckets that hold it), the ranked one first
Fields = list[tuple[str, list[str]]]


def text_of(value: Any) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def ranked_rows(
    client: Any,
    site: str,
    gran: str,
    labels: tuple[str, ...],
    by: str,
    limit: int,
    extra: list[dict[str, Any]] | None = None,
    sort: str = "hits",
) -> list[dict[str, Any]]:
    """Top members of the buckets by `sort` (plus `extra` rows, e.g. from the store),
    ranked in Redis; each row's hits, bytes and time_us (its durations' sum) beside."""
    fields = [(f, [key_of(site, by, gran, lbl) for lbl in labels]) for f, key_of in SORTS.values()]
    first = SORTS[sort][0]
    fields.sort(key=lambda item: item[0] != first)  # the ranked field first
    if len(labels) == 1 and not extra:
        ranked, others = _ranked_in_one(client, fields, limit)
    else:
        try:
            ranked, others = _ranked_in_redis(client, site, fields, limit, extra or [])
        except redis.exceptions.ReadOnlyError:
            ranked, others = _ranked_here(client, fields, limit, extra or [])
    rows = []
    for i, (member, score) in enumerate(ranked):
        value = {first: int(score)}
        for (name, _), scores in zip(fields[1:], others, strict=True):
            value[name] = int(scores[i] or 0)
        row = {"key": text_of(member), "hits": value["hits"], "bytes": value["bytes"]}
        rows.append({**row, "visitors": None, "time_us": value["time_us"]})
    # Redis breaks ties in reverse byte order; people (and the store) expect A before B.
    return sorted(rows, key=lambda r: (-r[first], r["key"]))


Ranked = tuple[list[tuple[Any, float]], list[list[Any]]]


def _ranked_in_one(client: Any, fields: Fields, limit: int) -> Ranked:
    """One bucket: its sorted set is the ranking."""
    ranked = client.zrevrange(fields[0][1][0], 0, limit - 1, withscores=True)
    members = [m for m, _ in ranked]
    if not members:
        return [], []
    pipe = client.pipeline(transaction=False)
    for _, names in fields[1:]:
        pipe.zmscore(names[0], members)
    return ranked, pipe.execute()


def _ranked_in_redis(
    client: Any, site: str, fields: Fields, limit: int, extra: list[dict[str, Any]]
) -> Ranked:
    """Several buckets (or the store's rows too): summed by ZUNIONSTORE in scratch keys."""
    scratch = [keys.scratch(site, uuid.uuid4().hex) for _ in range(2 * len(fields))]
    pipe = client.pipeline(transaction=False)
    sources = []  # per field: its buckets, and the store's rows in a scratch key
    for i, (name, names) in enumerate(fields):
        stored = {r["key"]: r.get(name) or 0 for r in extra}
        stored = {k: n for k, n in stored.items() if n}
        if stored:
            pipe.zadd(scratch[len(fields) + i], stored)
        sources.append([*names, scratch[len(fields) + i]] if stored else names)
    pipe.zunionstore(scratch[0], sources[0])
    pipe.expire(scratch[0], 30)
    pipe.zrevrange(scratch[0], 0, limit - 1, withscores=True)
    ranked = pipe.execute()[-1]
    members = [m for m, _ in ranked]
    pipe = client.pipeline(transaction=False)
    if members:
        for i in range(1, len(fields)):
            pipe.zunionstore(scratch[i], sources[i])
            pipe.zmscore(scratch[i], members)
    pipe.delete(*scratch)
    others = pipe.execute()[1:-1:2] if members else []
    return ranked, others


def _ranked_here(client: Any, fields: Fields, limit: int, extra: list[dict[str, Any]]) -> Ranked:
    """The same ranking without a write: the ranked field's sets read whole and summed
    here (members as the bytes Redis holds, cut at `limit` as ZREVRANGE cuts: ties by
    member, highest first), the other fields read for the chosen members only."""
    name, names = fields[0]
    pipe = client.pipeline(transaction=False)
    for key in names:
        pipe.zrange(key, 0, -1, withscores=True)
    summed: Counter[bytes] = Counter()
    for reply in pipe.execute():
        for member, score in reply:
            summed[member] += int(score)
    for row in extra:  # as the store's rows join in Redis: those with a value
        if row.get(name):
            summed[str(row["key"]).encode()] += int(row[name])
    ranked = sorted(((n, m) for m, n in summed.items()), reverse=True)[:limit]
    members = [m for _, m in ranked]
    others: list[list[int]] = []
    for other, other_names in fields[1:] if members else ():
        pipe = client.pipeline(transaction=False)
        for key in other_names:
            pipe.zmscore(key, members)
        replies = pipe.execute()
        stored = {str(r["key"]).encode(): int(r.get(other) or 0) for r in extra}
        others.append(
            [sum(int(r[i] or 0) for r in replies) + stored.get(m, 0) for i, m in enumerate(members)]
        )
    return [(m, float(n)) for n, m in ranked], others


def member_series(
    client: Any, site: str, by: str, gran: str, labels: tuple[str, ...], members: list[str]
) -> dict[str, list[int]]:
    """Hits of each member in each bucket: ZMSCORE per bucket, all in one pipeline."""
    if not members or not labels:
        return {m: [0] * len(labels) for m in members}
    pipe = client.pipeline(transaction=False)
    for label in labels:
        pipe.zmscore(keys.members(site, by, gran, label), members)
    replies = pipe.execute()
    return {m: [int(reply[i] or 0) for reply in replies] for i, m in enumerate(members)}
