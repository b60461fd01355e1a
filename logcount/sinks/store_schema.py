"""The durable store's schema: its tables (SQLAlchemy Core), their columns, and the rows one
source file contributes (SourceFacts). Every fact table is keyed by the source file, the
site and the day first (see logcount.sinks.store for why), then by what it counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from logcount.dimensions import DIMENSIONS

SCHEMA_VERSION = 1
SCHEMA_LOCK = int.from_bytes(b"logcount", "big") >> 1  # PostgreSQL advisory lock: a bigint
TOTAL_COLUMNS = (
    "hits",
    "bots",
    "malformed",
    "ignored",
    "bytes",
    "s1xx",
    "s2xx",
    "s3xx",
    "s4xx",
    "s5xx",
)
# Dimensions with visitors per member have a table of their own (below); the others share
# day_members, told apart by `dim`.
MEMBER_DIMS = tuple(name for name, dim in DIMENSIONS.items() if not dim.visitors)
KEY_LENGTH = 1024  # paths are cut at 512 bytes; members (agents, referrers) are short

metadata = sa.MetaData()

meta = sa.Table(
    "logcount_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)

sources = sa.Table(
    "logcount_sources",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("path", sa.String(4096), nullable=False),
    sa.Column("size", sa.BigInteger),
    sa.Column("mtime", sa.Float),
    sa.Column("lines", sa.BigInteger),
    sa.Column("malformed", sa.BigInteger),
    sa.Column("started", sa.Float),  # unix time; finished NULL = a run in progress or crashed
    sa.Column("finished", sa.Float),
    sa.UniqueConstraint("host", "path", name="logcount_sources_host_path"),
)


def _fact(name: str, key_columns: list[sa.Column[Any]], value_columns: Iterable[str]) -> sa.Table:
    cols: list[sa.Column[Any]] = [
        sa.Column("source_id", sa.Integer, sa.ForeignKey(sources.c.id), nullable=False),
        sa.Column("site", sa.String(255), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        *key_columns,
        *(sa.Column(v, sa.BigInteger, nullable=False, default=0) for v in value_columns),
    ]
    pk = ["source_id", "site", "day", *(c.name for c in key_columns)]
    table = sa.Table(name, metadata, *cols, sa.PrimaryKeyConstraint(*pk))
    # Reads filter by site and day; replacing a source filters by source_id (the PK prefix).
    sa.Index(f"{name}_site_day", table.c.site, table.c.day)
    return table


day_totals = _fact("logcount_day_totals", [], TOTAL_COLUMNS)
# True where the day is the source file's own (the day the template gave it; every day of
# an explicit file), False for the few lines of the previous day at the top of a cronolog
# file: a day counts as rolled up once a file of its own is.
day_totals.append_column(sa.Column("own_day", sa.Boolean, nullable=False, default=True))
# duration_us: the sum of the members' durations (formats with %D, %T), 0 without
day_paths = _fact(
    "logcount_day_paths",
    [sa.Column("path", sa.String(KEY_LENGTH))],
    ("hits", "bytes", "visitors", "duration_us"),
)
day_objects = _fact(
    "logcount_day_objects",
    [sa.Column("object", sa.String(KEY_LENGTH))],
    ("hits", "bytes", "visitors", "duration_us"),
)
# The row's visitor hashes (logcount.count.sketch): unions over sources and days stay exact.
for _table in (day_paths, day_objects):
    _table.append_column(sa.Column("visitor_set", sa.LargeBinary, nullable=True))
day_members = _fact(
    "logcount_day_members",
    [sa.Column("dim", sa.String(16)), sa.Column("member", sa.String(KEY_LENGTH))],
    ("hits", "bytes", "duration_us"),
)
# Columns added after stores were first written: _ensure_schema adds them to an old store.
ADDED_COLUMNS = {table: ("duration_us",) for table in (day_paths, day_objects, day_members)}
# The day's response-time histogram (logcount.timing): lines per duration bin.
day_timings = _fact("logcount_day_timings", [sa.Column("bin", sa.Integer)], ("hits",))
day_visitors = _fact("logcount_day_visitors", [sa.Column("visitor", sa.String(32))], ())
# One sketch of the day's visitors per source, site and day (replaces day_visitors' rows).
day_visitor_sets = _fact("logcount_day_visitor_sets", [], ())
day_visitor_sets.append_column(sa.Column("visitor_set", sa.LargeBinary, nullable=False))
# Who did each event on a day, per source: a roaring bitmap of the site's visitor numbers
# (logcount/sinks/event_store.py), unions over sources exact.
day_events = _fact("logcount_day_events", [sa.Column("event", sa.String(64))], ("visitors",))
day_events.append_column(sa.Column("visitor_set", sa.LargeBinary, nullable=False))
VISITOR_TABLES = {"path": day_paths, "object": day_objects}
assert set(VISITOR_TABLES) == {n for n, d in DIMENSIONS.items() if d.visitors}
FACT_TABLES = (
    day_totals,
    day_paths,
    day_objects,
    day_members,
    day_visitors,
    day_visitor_sets,
    day_timings,
    day_events,
)


@dataclass
class SourceFacts:
    """Everything one source file contributes, ready to insert (rows without source_id)."""

    host: str
    path: str
    size: int
    mtime: float
    lines: int
    malformed: int
    started: float
    totals: list[dict[str, Any]] = field(default_factory=list)
    paths: list[dict[str, Any]] = field(default_factory=list)
    objects: list[dict[str, Any]] = field(default_factory=list)
    members: list[dict[str, Any]] = field(default_factory=list)
    visitors: list[dict[str, Any]] = field(default_factory=list)
    visitor_sets: list[dict[str, Any]] = field(default_factory=list)
    timings: list[dict[str, Any]] = field(default_factory=list)
    # {"site", "day", "event", "hashes": set of visitor hashes}: numbered when written
    events: list[dict[str, Any]] = field(default_factory=list)

    def days(self) -> set[date]:
        return {row["day"] for row in self.totals}


def add_columns(conn: Connection) -> None:
    """Columns of ADDED_COLUMNS that an older store lacks, added (0 in its rows). Two
    processes may open an old store at once: one adds, the other finds it added."""
    inspector = sa.inspect(conn)
    for table, names in ADDED_COLUMNS.items():
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for name in names:
            if name in have:
                continue
            try:
                with conn.begin_nested():
                    conn.execute(
                        sa.text(
                            f"ALTER TABLE {table.name} ADD COLUMN {name} BIGINT NOT NULL DEFAULT 0"
                        )
                    )
            except sa.exc.DBAPIError:
                have = {c["name"] for c in sa.inspect(conn).get_columns(table.name)}
                if name not in have:
                    raise
