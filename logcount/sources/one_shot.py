"""`logcount report FILE...`: files counted once, in memory, into one report; no Redis and
no store.

The source is the rollup's: its counting processes (rollup.Counters) count each file, or
each range of a large one, with the same LineCounter, classifier and Aggregator, and hand
over UnitCounts (day buckets, visitor sketches). The sink is this process's memory
(MemorySink): the parts are merged as they come and kept to twice `max_members` members
per day and dimension while merging (UnitCounts.bound, as a rollup does), `max_members`
in the end; the rest is folded into `(other)`, so a flood of distinct URLs costs bounded
memory and the totals stay exact. Standard input (`-`) is counted by this process, while the
counting processes count the files. The report is the JSON the command prints (see
build_report); logcount/read/file_report.py draws it as a table or CSV.
"""

from __future__ import annotations

import heapq
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from logcount import timing
from logcount.config import Config
from logcount.count.classify import MONTHS
from logcount.count.detect import AUTO, SAMPLE_BYTES, detect_format
from logcount.count.logformat import compile_format
from logcount.count.sketch import UNION_EXACT_LIMIT, PackedSketch, VisitorSketch
from logcount.dimensions import DIMENSION_NAMES, DIMENSIONS
from logcount.errors import LogcountError
from logcount.sinks.base import Sink
from logcount.sinks.keys import OTHER
from logcount.sources.rollup_files import Input, open_log, split_units

if TYPE_CHECKING:  # the counting side is imported once the counting processes are forked
    from logcount.sources.rollup_rows import UnitCounts

STDIN = "-"
WARM_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
TOTAL_FIELDS = ("hits", "bytes", "visitors", "bots", "malformed")  # as top's total
STATUS_FIELDS = ("s1xx", "s2xx", "s3xx", "s4xx", "s5xx")
# The drill-downs of the report: (its name in "top", which statuses of status_path)
DRILLS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("path@404", lambda status: status == "404"),
    ("path@5xx", lambda status: status[:1] == "5"),
)


class ReportError(LogcountError):
    """A file of the report cannot be read (exit 1, like a rollup's)."""


@dataclass
class Counted:
    """What the files held, merged: the rollup's UnitCounts, and the files' names."""

    counts: Any  # rollup_rows.UnitCounts
    files: list[str] = field(default_factory=list)
    time_format: Any = None  # the log format with its minutes (of the first and last times)


def check_files(names: Iterable[str]) -> list[str]:
    """The names, each a readable regular file (or `-`, once); one line otherwise."""
    out: list[str] = []
    for name in names:
        if name == STDIN:
            if STDIN in out:
                raise ReportError("'-' (standard input) given twice")
        elif not os.path.exists(name):
            raise ReportError(f"cannot read {name}: no such file")
        elif os.path.isdir(name):
            raise ReportError(f"cannot read {name}: a directory")
        elif not os.access(name, os.R_OK):
            raise ReportError(f"cannot read {name}: permission denied")
        out.append(name)
    if not out:
        raise ReportError("no files to report on")
    return out


def count_files(
    config: Config, names: list[str], jobs: int | None = None, show_progress: bool = False
) -> Counted:
    """Count every file (and `-`, standard input) into one UnitCounts, bounded."""
    from logcount.count.line_counter import tune_gc
    from logcount.sources.rollup import Counters

    tune_gc()
    jobs = max(1, jobs or os.cpu_count() or 1)
    inputs = [Input(name, None) for name in names if name != STDIN]
    units = [u for inp in inputs for u in split_units(inp, jobs)]
    config = _with_visitor_key(config)
    head = b""  # what auto read of standard input, counted first
    if config.log_format == AUTO:
        config, head = _told_format(config, names)
    counters = Counters(config, units, jobs, show_progress)
    try:
        time_format = compile_format(config.log_format)  # while the counters count
        merged = _merge(config, names, counters, show_progress, units, head)
    except BaseException:
        counters.close(stop=True)
        raise
    counters.close(stop=False)
    return Counted(merged, list(names), time_format)


def _with_visitor_key(config: Config) -> Config:
    """The config with its visitor key read (or made) once, before the counting processes
    fork: the data directory's, as a rollup's, so that the visitor sketches are the same;
    where there is none to be had (no data directory: a report needs none), a key of this
    run, as no visitor hash leaves the process (the counts past 1,024 visitors, estimated,
    may then differ from a rollup's by the estimate's error)."""
    try:
        config.visitor_key()
        return config
    except LogcountError:
        import secrets

        fresh = config.with_overrides(secret=secrets.token_hex(32))
        fresh.visitor_key()
        return fresh


def _told_format(config: Config, names: list[str]) -> tuple[Config, bytes]:
    """Under auto, the format of the first input's first lines, for all of them (one
    report, one format: a file whose lines it does not read says so, as in a rollup);
    and the head read of standard input when that was the first."""
    from dataclasses import replace

    first = names[0]
    if first == STDIN:
        head = sys.stdin.buffer.read(SAMPLE_BYTES)
        found = detect_format(head, "standard input")
    else:
        from logcount.sources.rollup_count import READ_ERRORS

        head = b""
        try:
            with open_log(first) as f:
                found = detect_format(f.read(SAMPLE_BYTES), first)
        except READ_ERRORS as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ReportError(f"cannot read {first}: {why}") from None
    return replace(config, log_format=found), head


class _Replayed:
    """A binary stream that gives `head` first, then what is left of `rest`."""

    def __init__(self, head: bytes, rest: Any):
        self.head = memoryview(head)
        self.rest = rest

    def readinto(self, buffer: Any) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        return int(self.rest.readinto(buffer) or 0)


def _merge(
    config: Config, names: list[str], counters: Any, show: bool, units: list[Any], head: bytes
) -> Any:
    """The parts merged as the counting processes hand them over (and standard input's,
    counted here), bounded while merging and at the end."""
    from logcount.sources.rollup import ProgressBar
    from logcount.sources.rollup_count import day_counter
    from logcount.sources.rollup_parts import read_part

    memory = MemorySink(config)
    sink: Sink[UnitCounts, Input | None] = memory  # only the protocol is called (mypy)
    if STDIN in names:  # this process counts it while the counting processes count files
        counter = day_counter(config, date.today())
        counter.read_stream(_Replayed(head, sys.stdin.buffer))
        sink.submit(counter.finish(), None)
    expected = Counter(u.input for u in units)  # a file is done once all its units are in
    got: Counter[Input] = Counter()
    with ProgressBar(show, len(expected), "report") as bar:
        bar.counters = counters
        for message in counters.results(bar.refresh):
            if message[0] == "error":
                raise ReportError(f"cannot read {message[2]}")
            if isinstance(message[3], str):  # a counting process's, in a file (rollup_parts)
                read_part(message[3], memory.counts)  # merged a slice at a time
                memory.counts.bound(memory.keep, memory.family)
            else:
                sink.submit(message[3], message[1])
            got[message[1]] += message[2]
            if got[message[1]] == expected[message[1]]:
                bar.file_done()
    for inp, n in expected.items():  # a counting process died (killed, out of memory)
        if got[inp] < n:
            raise ReportError(f"cannot read {inp.path}: its counting process died")
    sink.close()
    return memory.counts


class MemorySink:
    """The sink of `report`: this process's memory. The parts are merged as they come and
    kept to twice `max_members` per site, day and dimension (UnitCounts.bound, as a rollup
    does), `max_members` once closed, with every agent named."""

    def __init__(self, config: Config):
        from logcount.count.agents import agent_family
        from logcount.count.classify import BoundedCache
        from logcount.sources.rollup_count import working_size
        from logcount.sources.rollup_rows import UnitCounts

        self.counts = UnitCounts()
        self.keep, self.max_members = working_size(config), config.max_members
        self.family = BoundedCache(agent_family, 50_000)
        self.family(WARM_AGENT)  # ua-parser loaded now, while the counting processes count

    def submit(self, counts: UnitCounts, origin: Input | None) -> None:
        """Merge the counts of a file or a part of one (`origin`; None: standard input)."""
        self.counts.merge(counts)
        self.counts.bound(self.keep, self.family)

    def flush(self, force: bool = False) -> bool:
        return True  # merged as submitted

    def close(self) -> bool:
        from logcount.sources.rollup_rows import families_of

        families_of(self.counts.delta, self.family)
        self.counts.bound(self.max_members)
        return True


# --- the report ------------------------------------------------------------------------


def report_files(
    config: Config,
    names: list[str],
    limit: int = 10,
    site: str | None = None,
    jobs: int | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """`logcount report`: the files counted, then the report built (see build_report)."""
    counted = count_files(config, check_files(names), jobs, show_progress)
    return build_report(config, counted, limit, site)


def build_report(config: Config, counted: Counted, limit: int, site: str | None) -> dict[str, Any]:
    """The report's JSON: files, total (top's keys), days, top rows of every dimension and
    the drill-downs; plus lines, first and last time, and the sites seen."""
    c, d = counted.counts, counted.counts.delta

    def chosen(s: str) -> bool:
        return site is None or s == site

    totals: Counter[str] = Counter()
    per_day: dict[str, Counter[str]] = {}
    per_site: Counter[str] = Counter()
    for (s, _gran, label), counts in d.totals.items():
        per_site[s] += counts.get("hits", 0)
        if chosen(s):
            totals.update(counts)
            per_day.setdefault(label, Counter()).update(counts)
    if chosen(config.site):  # a line that does not parse is the configured site's
        totals["malformed"] += c.malformed
    day_sets: dict[str, VisitorSketch] = {}
    everyone = VisitorSketch(UNION_EXACT_LIMIT)  # exact while each day's set is
    for (s, label), sketch in c.day_visitors.items():
        if chosen(s):
            day_sets.setdefault(label, VisitorSketch(UNION_EXACT_LIMIT)).merge(sketch)
            everyone.merge(sketch)
    totals["visitors"] = everyone.count()
    hist = timing.histogram_of(totals)
    total = {name: totals.get(name, 0) for name in (*TOTAL_FIELDS, *STATUS_FIELDS)}
    first, last = _time_span(config, counted.time_format, c.edges)
    return {
        "files": counted.files,
        "lines": c.lines + c.malformed,
        "first": first,
        "last": last,
        "sites": [{"site": s, "hits": n} for s, n in sorted(per_site.items(), key=_by_count)],
        "total": total | timing.quantiles(hist),
        "days": [
            {
                "day": f"{label[:4]}-{label[4:6]}-{label[6:]}",
                "hits": per_day[label].get("hits", 0),
                "visitors": day_sets[label].count() if label in day_sets else 0,
            }
            for label in sorted(per_day)
        ],
        "top": _top(c, chosen, limit, bool(hist)),
    }


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


def _top(c: Any, chosen: Callable[[str], bool], limit: int, timed: bool) -> dict[str, Any]:
    """Rows of every dimension and drill-down, summed over the days (and sites) chosen."""
    d = c.delta
    sums: dict[str, dict[str, list[int]]] = {}  # dim -> member -> [hits, bytes, time_us]
    for key, members in d.members.items():
        s, dim, _gran, _label = key
        if not chosen(s):
            continue
        sizes, times = d.member_bytes.get(key, {}), d.member_durations.get(key, {})
        into = sums.setdefault(dim, {})
        for member, hits in members.items():
            row = into.get(member)
            if row is None:
                row = into[member] = [0, 0, 0]
            row[0] += hits
            row[1] += sizes.get(member, 0)
            row[2] += times.get(member, 0)
    visitors = {"path": _member_visitors(c.path_visitors, chosen)}
    visitors["object"] = _member_visitors(c.object_visitors, chosen)
    out: dict[str, Any] = {}
    for dim in DIMENSION_NAMES:
        out[dim] = _rows(
            sums.get(dim, {}), visitors.get(dim), limit, timed and DIMENSIONS[dim].timed
        )
    for name, wanted in DRILLS:
        paths: dict[str, list[int]] = {}
        for member, row in sums.get("status_path", {}).items():
            status, _, path = member.partition(" ")
            if wanted(status):
                found = paths.setdefault(path, [0, 0, 0])
                for i in range(3):
                    found[i] += row[i]
        out[name] = _rows(paths, None, limit, timed)
    return out


def _member_visitors(
    sketches: dict[Any, PackedSketch], chosen: Callable[[str], bool]
) -> dict[str, list[PackedSketch]]:
    """Each member's visitor sketches, one a day (counted for the rows shown only)."""
    out: dict[str, list[PackedSketch]] = {}
    for (s, _label, member), sketch in sketches.items():
        if chosen(s):
            out.setdefault(member, []).append(sketch)
    return out


def _rows(
    sums: dict[str, list[int]],
    visitors: dict[str, list[PackedSketch]] | None,
    limit: int,
    timed: bool,
) -> list[dict[str, Any]]:
    """The first `limit` rows by hits (ties by key), as top's JSON rows; (other) is a row
    like any other. A row's visitors: the union of its days' sketches (a visitor on two
    days counts once), as `top` reads a window of stored days."""
    counted = [item for item in sums.items() if item[1][0] or item[0] != OTHER]
    ranked = heapq.nsmallest(limit, counted, key=lambda item: (-item[1][0], item[0]))
    rows = []
    for member, (hits, size, time_us) in ranked:
        row: dict[str, Any] = {
            "key": member,
            "hits": hits,
            "bytes": size,
            "visitors": None if visitors is None else _union_count(visitors.get(member, [])),
        }
        if timed:
            row["time_avg_ms"] = timing.average_ms(time_us, hits)
        rows.append(row)
    return rows


def _union_count(sketches: list[PackedSketch]) -> int:
    union = VisitorSketch(UNION_EXACT_LIMIT)  # exact while every day's set is
    for sketch in sketches:
        union.merge(sketch)
    return union.count()


def _time_span(config: Config, fmt: Any, edges: list[bytes]) -> tuple[str | None, str | None]:
    """The earliest and latest time (to the minute) among the first and last lines (8 KiB)
    of each file or range read: a log is written in time order, give or take the seconds a
    request takes."""
    if fmt is None or "tmin" not in fmt.group_index:
        return None, None
    zone = None
    if config.timezone:
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(config.timezone)
    lines = (line for block in edges for line in block.split(b"\n"))
    times = [t for t in (_time_of(fmt, line, zone) for line in lines) if t is not None]
    if not times:
        return None, None
    return (
        min(times).isoformat(timespec="minutes"),
        max(times).isoformat(timespec="minutes"),
    )


def _time_of(fmt: Any, line: bytes, zone: Any) -> datetime | None:
    m = fmt.fast.fullmatch(line.rstrip(b"\r"))
    if m is None:
        return None
    tmin, ttz = m.group("tmin"), m.group("ttz") if "ttz" in fmt.group_index else b""
    try:
        day, month, rest = tmin.split(b"/")
        year, hour, minute = rest.split(b":")
        sign = -1 if ttz[:1] == b"-" else 1
        offset = timedelta(hours=int(ttz[1:3]), minutes=int(ttz[3:5])) if ttz else timedelta()
        when = datetime(
            int(year),
            MONTHS[month],
            int(day),
            int(hour),
            int(minute),
            tzinfo=timezone(sign * offset),
        )
        return when.astimezone(zone) if zone is not None else when
    except (ValueError, KeyError, OverflowError):
        return None
