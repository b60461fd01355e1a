"""Sections of the store's paths (read/sections.py): a group of paths' visitors as a
union, and a prefix's hits per day."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date

import sqlalchemy as sa

from logcount.sinks.store import Store
from logcount.sinks.store_schema import day_paths


def grouped_path_visitors(
    store: Store, site: str, days: Sequence[date], group: Callable[[str], str | None]
) -> dict[str, int]:
    """Visitors of groups of paths (a section: `group` names a path's, None leaves the
    path out): the union of the sketches of the group's paths over every source and
    every day of the window, as a path row's visitors are (never a sum)."""
    from logcount.count.sketch import UNION_EXACT_LIMIT, VisitorSketch

    t = day_paths
    merged: dict[str, VisitorSketch] = {}
    query = sa.select(t.c.path, t.c.day, t.c.visitor_set).where(
        t.c.site == site, t.c.day.in_(list(days)), t.c.visitor_set.is_not(None)
    )
    for path, _day, data in store._read(query):
        name = group(path)
        if name is None:
            continue
        # the union stays exact while every path's set is (each at most EXACT_LIMIT
        # a source file): only an HLL among them makes it one
        union = merged.setdefault(name, VisitorSketch(UNION_EXACT_LIMIT))
        union.merge(VisitorSketch.from_bytes(bytes(data)))
    return {name: sketch.count() for name, sketch in merged.items()}


def daily_prefix_hits(
    store: Store, site: str, prefix: str, days: Sequence[date]
) -> dict[date, int]:
    """Hits per day of every path that starts with `prefix` (a section)."""
    t = day_paths
    pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    query = (
        sa.select(t.c.day, sa.func.sum(t.c.hits))
        .where(
            t.c.site == site,
            t.c.day.in_(list(days)),
            t.c.path.like(pattern, escape="\\"),
        )
        .group_by(t.c.day)
    )
    return {d: int(h) for d, h in store._read(query)}
