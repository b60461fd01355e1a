"""Who did each event, durably: per source, site, day and event, the set of visitors as a
roaring bitmap (pyroaring) of the site's visitor numbers.

A visitor hash gets a number once, for good (`logcount_visitor_numbers`), from the site's
counter row (`logcount_visitor_next`), which the writing transaction locks: rollups of
several hosts into one PostgreSQL number one after the other, and a number is never
given twice. Dense numbers make the bitmaps small (a million-visitor site: about 2 bytes a
visitor of a day's event, where its 8-byte hashes would take 8) and their unions,
intersections and differences exact and fast, over sources and days alike. Rows are
replaced with their source like every other row (store.Store.replace_source); numbers
stay, so a re-run gives the same bitmaps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

import sqlalchemy as sa
from pyroaring import BitMap
from sqlalchemy.engine import Connection

from logcount.sinks.store import Store
from logcount.sinks.store_schema import day_events, metadata

CHUNK = 500  # hashes per IN (...) look-up

# The site's visitor numbering: a visitor hash gets the next number once, for good.
visitor_numbers = sa.Table(
    "logcount_visitor_numbers",
    metadata,
    sa.Column("site", sa.String(255), nullable=False),
    sa.Column("visitor", sa.String(16), nullable=False),
    sa.Column("number", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("site", "visitor"),
    sa.UniqueConstraint("site", "number", name="logcount_visitor_numbers_site_number"),
)
# The next number of each site, a row locked while numbers are given (several hosts'
# rollups into one PostgreSQL number one after the other).
visitor_next = sa.Table(
    "logcount_visitor_next",
    metadata,
    sa.Column("site", sa.String(255), primary_key=True),
    sa.Column("next", sa.BigInteger, nullable=False),
)


def insert_event_sets(conn: Connection, source_id: int, rows: list[dict[str, Any]]) -> None:
    """Number the rows' visitors (new ones get the site's next numbers), then insert one
    bitmap per (site, day, event)."""
    by_site: dict[str, set[str]] = {}
    for row in rows:
        by_site.setdefault(row["site"], set()).update(row["hashes"])
    numbers = {site: number_visitors(conn, site, hashes) for site, hashes in by_site.items()}
    out = []
    for row in rows:
        of = numbers[row["site"]]
        bitmap = BitMap(of[h] for h in row["hashes"])
        out.append(
            {
                "source_id": source_id,
                "site": row["site"],
                "day": row["day"],
                "event": row["event"],
                "visitors": len(bitmap),
                "visitor_set": bitmap.serialize(),
            }
        )
    for i in range(0, len(out), 1000):
        conn.execute(day_events.insert(), out[i : i + 1000])


def number_visitors(conn: Connection, site: str, hashes: Iterable[str]) -> dict[str, int]:
    """Each hash's number, giving the site's next numbers to those that have none."""
    wanted = sorted(set(hashes))
    found = _numbers_of(conn, site, wanted)
    new = [h for h in wanted if h not in found]
    if not new:
        return found
    n = visitor_next
    start = conn.execute(sa.select(n.c.next).where(n.c.site == site).with_for_update()).scalar()
    if start is None:
        try:
            with conn.begin_nested():
                conn.execute(n.insert().values(site=site, next=0))
        except sa.exc.IntegrityError:
            pass  # another rollup made the site's row first
        start = conn.execute(
            sa.select(n.c.next).where(n.c.site == site).with_for_update()
        ).scalar_one()
    # Another rollup may have numbered some of them before the lock was ours.
    found.update(_numbers_of(conn, site, new))
    new = [h for h in new if h not in found]
    given = {h: int(start) + i for i, h in enumerate(new)}
    for i in range(0, len(new), 5000):
        conn.execute(
            visitor_numbers.insert(),
            [{"site": site, "visitor": h, "number": given[h]} for h in new[i : i + 5000]],
        )
    conn.execute(n.update().where(n.c.site == site).values(next=int(start) + len(new)))
    found.update(given)
    return found


def _numbers_of(conn: Connection, site: str, hashes: Sequence[str]) -> dict[str, int]:
    v = visitor_numbers
    out: dict[str, int] = {}
    for i in range(0, len(hashes), CHUNK):
        query = sa.select(v.c.visitor, v.c.number).where(
            v.c.site == site, v.c.visitor.in_(hashes[i : i + CHUNK])
        )
        out.update((h, int(num)) for h, num in conn.execute(query))
    return out


def event_bitmaps(
    store: Store, site: str, days: Sequence[date], events: Sequence[str]
) -> dict[tuple[str, date], BitMap]:
    """(event, day) -> its visitors' numbers, the union over every source of the day."""
    t = day_events
    query = sa.select(t.c.event, t.c.day, t.c.visitor_set).where(
        t.c.site == site, t.c.day.in_(list(days)), t.c.event.in_(list(events))
    )
    out: dict[tuple[str, date], BitMap] = {}
    for event, day, data in store._read(query):
        bitmap = BitMap.deserialize(bytes(data))
        key = (event, day)
        if key in out:
            out[key] |= bitmap
        else:
            out[key] = bitmap
    return out


def hashes_of(store: Store, site: str, numbers: BitMap) -> set[str]:
    """The visitor hashes of numbers (to meet the live side's, which number their own)."""
    v = visitor_numbers
    wanted = list(numbers)
    out: set[str] = set()
    for i in range(0, len(wanted), CHUNK):
        query = sa.select(v.c.visitor).where(
            v.c.site == site, v.c.number.in_(wanted[i : i + CHUNK])
        )
        out.update(h for (h,) in store._read(query))
    return out


def event_days(store: Store, site: str, days: Sequence[date]) -> set[date]:
    """The days with event sets in the store (rolled up with events configured)."""
    t = day_events
    query = sa.select(t.c.day).distinct().where(t.c.site == site, t.c.day.in_(list(days)))
    return {d for (d,) in store._read(query)}
