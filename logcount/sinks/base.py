"""What a sink is: the small protocol between a source and where its counts are kept.

A source counts lines into the engine's counts and hands them to a sink with their
origin: what the sink keeps with them, in the same write, so that handing the same input
over again counts it once. Two sinks implement it, one per kind of source:

- live (`pipe`, `tail`): `sinks.live.LiveSink` takes a `Delta` at a time, with the read
  positions the counts reach (a tail's; none for a pipe). The positions are written in
  the same Lua call as the counts, under a batch id, so a batch retried or replayed from
  the spool counts once and a tail restarted from its saved positions reads each line
  once. It never raises: what Redis cannot take now waits in memory, then in the spool,
  and `flush` says whether everything was sent.
- whole files (`rollup`): `sinks.sql_sink.StoreSink` takes the counts of one whole file
  (`DayCounts`) with its identity (`SourceFile`: host and path). They replace what that
  file stored before, in one transaction, so a re-run leaves the same numbers. A store
  that cannot be written raises StoreError, and nothing of that file is written.

`report` keeps its counts in memory (sources.one_shot.MemorySink, the same protocol).
The sources take their sink typed as these protocols, so mypy checks that each sink
implements it and that the sources call nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol, TypeVar

from logcount.count.delta import Delta
from logcount.count.sketch import PackedSketch

Counts = TypeVar("Counts", contravariant=True)
Origin = TypeVar("Origin", contravariant=True)


class Sink(Protocol[Counts, Origin]):
    """Keeps what a source counted. Calls come from one thread at a time, but for a live
    sink's submit (the classifier) and flush (the sender), which it serialises itself."""

    def submit(self, counts: Counts, origin: Origin) -> None:
        """Take `counts`, and `origin` with them (see the module's text for each sink)."""

    def flush(self, force: bool = False) -> bool:
        """Keep what was submitted (`force`: even while backing off after an error); True
        when nothing waits any more."""

    def close(self) -> bool:
        """A last flush; True when everything submitted was kept where it belongs."""


Positions = dict[str, str]  # names (Redis keys) -> a source's read positions, as JSON


class ResumableSink(Sink[Delta, Positions | None], Protocol):
    """The live sink: deltas with the read positions they reach, which it gives back so a
    tail resumes where its counts end; and the pipeline's health beside them."""

    last_error: str  # why the last flush failed ("" once one succeeds)
    last_flush: float  # when one last succeeded (time.time()), 0 before

    @property
    def cluster(self) -> bool:
        """Whether positions are written with their own site's counts only (a Redis
        Cluster: one call per slot), not with every count of their batch."""

    def saved(self, names: list[str]) -> list[str | None]:
        """The positions stored under `names` (None where there are none); LogcountError
        when they cannot be read."""

    def status(self) -> dict[str, Any]:
        """What waits (pending, spooled) and what could not be kept (dropped, rejected)."""

    def heartbeat(self, info: dict[str, Any]) -> None:
        """Publish the source's health; RedisUnavailable when it cannot (skip a beat)."""


Sketches = dict[tuple[str, str, str], PackedSketch]  # (site, day label, member) -> visitors


class DayCounts(Protocol):
    """The counts of whole files, as the SQL sink reads them: a Delta in day buckets, the
    visitor sketches of each day and of each path and object of a day, and the lines read
    (sources.rollup_rows.UnitCounts is one)."""

    delta: Delta
    path_visitors: Sketches
    object_visitors: Sketches
    day_visitors: dict[tuple[str, str], PackedSketch]
    lines: int
    malformed: int

    def bound(self, keep: int) -> None:
        """At most `keep` members per site, day and dimension, the rest in `(other)`."""


@dataclass(frozen=True)
class SourceFile:
    """A file's identity in the store (host, path) and what the rows need of it."""

    host: str
    path: str  # as the store names it (sources.rollup_files.source_name)
    day: date | None  # the day its name gives (a template's), else None
    size: int
    mtime: float


def merge_into(table: dict[Any, PackedSketch], key: Any, sketch: PackedSketch) -> None:
    """Add `sketch` to the one `table` holds under `key` (or hold it there)."""
    found = table.get(key)
    if found is None:
        table[key] = sketch
    else:
        found.merge(sketch)
