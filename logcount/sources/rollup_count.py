"""The counting side of `logcount rollup` (see logcount/sources/rollup.py): what the forked
counting processes run (apachelogs, the parser, the classifier, the aggregator), apart
from the parent's side. The parent imports this module before it forks them; each loads
what a config needs (day_format, store_classifier) while the parent opens the store.
"""

from __future__ import annotations

import lzma
import os
import signal
import stat
import sys
import zlib
from array import array
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from typing import Any

from logcount.config import Config
from logcount.count.agents import agent_family
from logcount.count.aggregate import Aggregator
from logcount.count.classify import Buckets, Classifier
from logcount.count.detect import (
    AUTO,
    SAMPLE_BYTES,
    SAMPLE_LINES,
    FirstLines,
    detect_format,
    first_lines,
)
from logcount.count.events import format_ident, visitor_fields
from logcount.count.line_counter import LineCounter, RawCounts, tune_gc
from logcount.count.lines import LineSplitter, Piece
from logcount.count.logformat import CompiledFormat, compile_format
from logcount.count.visitors import MemberVisitors
from logcount.errors import ConfigError
from logcount.sources.rollup_files import Input, Unit, open_log
from logcount.sources.rollup_parts import DaySpill, write_part
from logcount.sources.rollup_rows import UnitCounts, families_of

__all__ = ["UnitCounts", "families_of"]  # where callers found them before

# Bytes of lines given to the regex path at once: a piece holding a line that does not
# parse is matched twice, so pieces are kept small enough for such lines to spoil few.
PIECE = 256 << 10
# Distinct raw keys held before they are classified. Most of a diverse day's keys are
# visitors numbered by place (a number each, their client and agent once per batch), and
# each batch takes, classifies and lets go of the day's hit, referrer and agent keys
# again: 300,000 keys a batch instead of 100,000 took a counter of half the diverse day
# from 7 batches to 2 and -9 % of its instructions (callgrind, 8.19 -> 7.47 G), at a peak
# RSS of 102-104 MB instead of 93 for the whole 1M-line day (the largest process), 120
# instead of 96 for 5M (with the scanner's smaller tables since: 95 and 105 MB). As what
# a counter holds grows, its batches shrink (KEY_PEAK), down to CLASSIFY_AT_LEAST keys.
# (Measured before visitors were numbered: 300,000 made a counter's peak 288 MB, 100,000
# 153 MB, at the same CPU time.)
CLASSIFY_EVERY = 300_000
CLASSIFY_AT_LEAST = 25_000
CLASSIFY_BYTES = 64 << 20  # ...or bytes of keys (long agents and referrers: few keys, big)
# A batch's peak per key (the scanner's tables, then the tuples take() makes of them while
# they are still held: ~35 MB for 100,000 keys of the diverse day). What a counter holds
# between batches and has grown since its first (visitor sketches, the day's rows, the
# caches, each bounded but filled by the distinct keys seen) counts against the batch,
# so that 5M lines of a diverse day peak no higher than 1M: their batches hold fewer
# keys (down to a quarter: on the real lines, whose caches are full after one batch,
# they stay whole). ENTRY: bytes of a row or cache entry (measured on the diverse day:
# +14 MB of RSS for +71,000 of them).
KEY_PEAK = 350
ENTRY = 200
# A day's visitor hashes a counting process holds (1 MiB): beyond, they go to a file
# (rollup_parts.DaySpill), so that a day of many visitors does not grow its memory.
SPILL_HASHES = 1 << 17
EDGE = 8192  # bytes of a unit's first and last lines kept (UnitCounts.edges)
# Numbers a line may carry (%b, %D, ...) are below 2^53: the scanner and the regexes make
# a line with a larger one malformed (logcount.count.logformat); stored sums saturate (rollup).


# --- counting --------------------------------------------------------------------------


def day_format(config: Config) -> CompiledFormat:
    """The configured format, its %t captured as the day alone (fewer distinct keys, one
    per day instead of one per minute, make classifying cheap); with a configured time
    zone the minute is needed to convert (zones with half hours), so it is kept."""
    return compile_format(
        config.log_format, day_only=not config.timezone, ident=format_ident(config)
    )


def store_classifier(config: Config, fmt: CompiledFormat) -> Classifier:
    """The classifier configured for the store (see Classifier: days, unnamed agents)."""
    return Classifier(config, fmt, store_days=True, raw_agents=True)


# --- counting files --------------------------------------------------------------------


class FileCounter:
    """Counts one unit: feeds blocks of whole lines, classifies every CLASSIFY_EVERY keys."""

    def __init__(self, config: Config, classifier: Classifier, fmt: CompiledFormat):
        self.config = config
        self.classifier = classifier
        # Client addresses reach the store only when the configuration asks for them.
        mine: dict[str, Any] = {"classifier": classifier, "count_clients": config.store_clients}
        mine["event_fields"] = visitor_fields(config)
        try:  # the counter decides bots and ignored paths with our classifier
            self.counter = LineCounter(fmt, recent_size=1, path_visitors=True, **mine)
        except TypeError:  # a LineCounter that leaves that to the Aggregator
            self.counter = LineCounter(fmt, recent_size=1, path_visitors=True)
        self.aggregator = Aggregator(config, self.counter, classifier)
        self.aggregator.grans = ("day",)
        self.visitors = MemberVisitors(self.aggregator)
        # The scanner numbers the visitors by place (no key tuple each) unless events need
        # the visitor keys themselves (count/events.py).
        if not self.aggregator.events:
            self.visitors.number_in_scanner()
        self.counts = UnitCounts()
        self.spill: DaySpill | None = None  # where its day sets go, in a counting process
        self.every = CLASSIFY_EVERY  # keys of a batch: fewer as what is held grows
        self._held: int | None = None  # bytes held after the first batch (see KEY_PEAK)
        self._family: Callable[[str], str] | None = None
        self._first: bytes | None = None  # the first line read by read_stream, and the last
        self._last = b""
        # The file's first lines, judged by the counter of its first unit as they are read
        # (count.detect.FirstLines), said once when SAMPLE_LINES are in or the unit ends.
        self.probe: FirstLines | None = None

    def family(self, agent: str) -> str:
        """An agent's family, for the rare day of more distinct agents than are kept
        (ua-parser is loaded in a counter then only)."""
        if self._family is None:
            from logcount.count.classify import BoundedCache

            self._family = BoundedCache(agent_family, 50_000)
        return self._family(agent)

    def feed(self, block: bytes | memoryview) -> None:
        """Count a block of whole lines (each ending with a newline)."""
        if self.counter.native:  # lines it refuses come back one by one
            self.counter.feed(block)  # type: ignore[arg-type]
        else:
            data = bytes(block)
            pos, size = 0, len(data)
            while pos < size:  # pieces: a line the regex refuses spoils only its piece
                end = data.rfind(b"\n", pos, pos + PIECE) + 1
                if end <= pos:
                    end = data.find(b"\n", pos + PIECE) + 1 or size
                self.counter.feed(data[pos:end])
                pos = end
        counter = self.counter
        if counter.pending_keys() > self.every or counter.pending_bytes() > CLASSIFY_BYTES:
            self.absorb()

    def _drop_bad_times(self, raw: RawCounts) -> None:
        """Lines whose time is no storable day (see Classifier._store_buckets) become
        malformed: every raw table is keyed by the line's context, so they leave each."""
        layout = self.counter.ctx_layout
        if "tmin" not in layout:
            return
        n, ti = len(layout), layout.index("tmin")
        zi = layout.index("ttz") if "ttz" in layout else -1
        ctxs = {k[:n] for k in raw.hits} | {k[:n] for k in raw.bots} | {k[:n] for k in raw.ignored}
        buckets = self.classifier.buckets
        bad = {c for c in ctxs if buckets((c[ti], c[zi] if zi >= 0 else b"")) is None}
        if not bad:
            return
        # A line is a hit, ignored, or a bot not counted as a hit (see LineCounter).
        lines_in = [raw.hits, raw.ignored] + ([] if self.aggregator.count_bots else [raw.bots])
        lines = 0
        tables: tuple[Any, ...] = (
            raw.hits,
            raw.ignored,
            raw.bots,
            raw.agents,
            raw.referrers,
            raw.clients,
        )
        for table in (*tables, raw.durations, raw.sizes, raw.timings):
            for key in [k for k in table if k[:n] in bad]:
                value = table.pop(key)
                if any(table is t for t in lines_in):
                    lines += value
        raw.visitors = {k for k in raw.visitors if k[:n] not in bad}
        raw.numbered = {k: v for k, v in raw.numbered.items() if k[:n] not in bad}
        raw.lines -= lines
        raw.malformed += lines

    def absorb(self) -> None:
        raw = self.counter.take()
        self._drop_bad_times(raw)
        self.counts.lines += raw.lines
        self.counts.malformed += raw.malformed
        visitors, raw.visitors = raw.visitors, set()
        numbered, raw.numbered = raw.numbered, {}
        raw.malformed = 0  # counted per file, on the file's day (see facts_of)
        raw.samples.clear()
        raw.recent.clear()
        self.counts.delta.merge(self.aggregator.classify(raw))
        del raw  # its tables, let go before the visitor sets of the batch are made
        if visitors:  # none when the scanner numbered them
            fresh: tuple[dict[Any, set[int]], ...] = ({}, {}, {})  # day, path, object
            self.visitors.collect(visitors, fresh)
            self.counts.add_visitors(*fresh)
        runs: tuple[dict[Any, array[int]], ...] = ({}, {}, {})
        self.visitors.collect_numbered(numbered, runs)
        del numbered
        self.counts.add_visitors(*runs)
        if self.spill is not None:
            self.spill.relieve(self.counts.day_visitors, SPILL_HASHES)
        if self.aggregator.events:  # who did each event, per day (count/events.py)
            self.aggregator.events.collect(visitors, self.counts.delta.events)
        # Memory stays flat however many distinct URLs a day has: a working table of
        # twice the store's cap per day and dimension (the store keeps the cap).
        self.counts.bound(working_size(self.config), self.family)
        entries = self.counts.delta.size() + self.aggregator.cached()
        held = self.counts.sketch_bytes() + ENTRY * entries
        if self._held is None:
            self._held = held
        grown = max(0, held - self._held) // KEY_PEAK
        self.every = max(CLASSIFY_AT_LEAST, CLASSIFY_EVERY - grown)

    def read(self, unit: Unit, progress: Callable[[int], None] = lambda n: None) -> UnitCounts:
        """Count the unit's lines (finish() classifies them; a counter may read several
        units of one file first)."""
        with open_log(unit.input.path) as f:
            if unit.start:
                f.seek(unit.start)
            left = None if unit.end is None else unit.end - unit.start
            self.read_stream(f, left, progress)
        if self.probe is not None:
            self._judge()
        return self.counts

    def read_stream(
        self, f: Any, left: int | None = None, progress: Callable[[int], None] = lambda n: None
    ) -> None:
        """Count the lines of an open binary stream (`left` bytes of it, or to its end).
        It is read into the line splitter's one buffer; the C scanner reads the lines where
        they lie (no copy), the regex path gets pieces of bytes. A last line without a
        newline is a line (see logcount.count.lines)."""
        lines = LineSplitter()
        self._first, self._last = None, b""
        while left is None or left > 0:
            n = f.readinto(lines.space(left))
            if not n:
                break
            if left is not None:
                left -= n
            self._count(lines.filled(n), progress)
        self._count(lines.finish(), progress)
        if self._first is not None:
            self.counts.edges += [self._first, self._last]

    def _probe(self, pieces: list[Piece]) -> None:
        probe = self.probe
        assert probe is not None
        for piece in pieces:
            if piece.lines is None:
                probe.add([piece.long or b""])  # an over-long line
            else:
                probe.add(first_lines(bytes(piece.lines), SAMPLE_LINES - probe.seen))
            if probe.full:
                self._judge()
                return

    def _judge(self) -> None:
        probe, self.probe = self.probe, None
        warning = probe.verdict() if probe is not None else None
        if warning:
            print(f"warning: {warning}", file=sys.stderr, flush=True)

    def _count(self, pieces: list[Piece], progress: Callable[[int], None]) -> None:
        if self.probe is not None:
            self._probe(pieces)
        for piece in pieces:
            before = self._seen()
            if piece.lines is not None:
                self._edges(piece.lines)
                self.feed(piece.lines)
            else:
                self.counter.count_malformed(piece.long or b"")
            progress(self._seen() - before)

    def _edges(self, lines: bytes | memoryview) -> None:
        """The first EDGE bytes read and the last EDGE bytes so far, whole lines only."""
        data = memoryview(lines)
        if self._first is None:
            self._first = bytes(data[:EDGE]).rpartition(b"\n")[0]
        self._last = bytes(data[-EDGE:]).partition(b"\n")[2] if len(data) > EDGE else bytes(data)

    def finish(self) -> UnitCounts:
        """Everything counted (the units read so far), classified."""
        self.absorb()
        return self.counts

    def take(self) -> UnitCounts:
        """Everything counted since the last take, classified; the counter goes on with
        the next unit of the same file."""
        counts = self.finish()
        self.counts = UnitCounts()
        return counts

    def _seen(self) -> int:
        """Lines counted or found malformed so far."""
        done = self.counts.lines + self.counts.malformed
        return done + self.counter.pending_lines() + self.counter.raw.malformed


def working_size(config: Config) -> int:
    """Members per site, day and dimension a counter (and the parent, merging) keeps while
    counting: twice the store's cap, so that the members kept in the end are rarely ones
    that were folded on the way."""
    return 2 * config.store_cap()


_WORKER: dict[str, Any] = {}
READ_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError)
# What a counter sends: ("part", input, units counted, UnitCounts or the file holding it,
# see rollup_parts) or ("error", input, message).
Message = tuple[Any, ...]


def _prepare(config: Config) -> tuple[Classifier, CompiledFormat]:
    state = _WORKER.get("state")
    if state is None or state[0] != config:
        fmt = day_format(config)
        classifier = store_classifier(config, fmt)
        # The crawler patterns compile on first use: compile them here, at set-up (while
        # the parent opens the store), not in the middle of the first unit.
        classifier.agent(b"Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Firefox/121.0")
        state = _WORKER["state"] = (config, classifier, fmt)
    return state[1], state[2]


def file_config(config: Config, inp: Input) -> Config:
    """`config` with the file's own format under auto, told from its first lines (read
    apart, once per file and counter: a regular file only, as a pipe's lines would be
    taken from its reader). ConfigError when auto finds none, OSError or a read error
    when the file cannot be read."""
    if config.log_format != AUTO:
        return config
    found = _WORKER.setdefault("formats", {})
    if inp.path not in found:
        if not stat.S_ISREG(os.stat(inp.path).st_mode):
            raise ConfigError(f"--log-format auto: {inp.path} is not a regular file")
        with open_log(inp.path) as f:
            found[inp.path] = detect_format(f.read(SAMPLE_BYTES), inp.path)
    return replace(config, log_format=found[inp.path])


def _file_counter(config: Config, inp: Input, first: bool = True) -> FileCounter:
    """A counter for one file (`first`: it begins with the file's first unit); lines
    without a readable time count on the file's day (the template's, else its
    modification day). OSError when the file is gone."""
    config = file_config(config, inp)
    day = inp.day or date.fromtimestamp(os.path.getmtime(inp.path))
    counter = day_counter(config, day)
    if first:  # its first lines are judged (see FileCounter.probe)
        counter.probe = FirstLines(config.log_format, inp.path)
    return counter


def day_counter(config: Config, day: date) -> FileCounter:
    """A counter whose lines without a readable time count on `day`."""
    classifier, fmt = _prepare(config)
    classifier.fallback = Buckets(
        day.strftime("%Y%m%d0000"), day.strftime("%Y%m%d00"), day.strftime("%Y%m%d")
    )
    return FileCounter(config, classifier, fmt)


def _progress(n: int) -> None:
    report = _WORKER.get("progress")
    if report is not None:
        report(n)


def count_unit(config: Config, unit: Unit) -> tuple[Unit, UnitCounts | None, str]:
    """Count one unit alone; an unreadable file is reported, never raised."""
    try:
        counter = _file_counter(config, unit.input, unit.start == 0)
    except OSError as exc:
        return unit, None, f"{unit.input.path}: {exc.strerror}"
    except (ConfigError, *READ_ERRORS) as exc:
        return unit, None, f"{unit.input.path}: {exc}"
    try:
        counter.read(unit, _progress)
        return unit, counter.finish(), ""
    except READ_ERRORS as exc:
        return unit, None, f"{unit.input.path}: {exc}"


def load_units(config: Config, units: list[Unit], progress: Callable[[int], None] | None) -> None:
    """What count_at() reads: the units (a counting process inherits them from the fork,
    so that a task is one small index), and where lines read are reported."""
    _WORKER["units"] = (config, units)
    _WORKER["progress"] = progress
    if config.log_format != AUTO:  # under auto each file has its own (file_config)
        _prepare(config)


def count_at(i: int) -> list[Message]:
    """Count the i-th unit into the counts this counter holds for its file; returns the
    messages due: ("part", input, units, UnitCounts), and ("error", input, message) for an
    unreadable file (never an exception: the other units go on). A counter that takes
    several units of a file in a row classifies and hands over their counts once (each
    part classified costs as much as the file's whole when the lines repeat), and once
    more for the file's small last units (Unit.tail): the parent merges the big part
    while the counters count those, and only their small parts after the last line."""
    config, units = _WORKER["units"]
    unit = units[i]
    begun = _WORKER.get("begun")
    if begun is not None:
        begun[i] = 1
    out = []
    held = _WORKER.get("held")  # [input, FileCounter, units counted, tail units?]
    if held is not None and held[0] != unit.input:
        out += hand_over()
        held = None
    if held is not None and unit.tail and not held[3]:  # the counter goes on, caches warm
        out += _part(held[0], held[2], held[1].take(), held[1].spill)
        held[2:] = [0, True]
    if held is None:
        try:
            counter = _file_counter(config, unit.input, unit.start == 0)
            held = [unit.input, counter, 0, unit.tail]
        except OSError as exc:
            return [*out, ("error", unit.input, f"{unit.input.path}: {exc.strerror}")]
        except (ConfigError, *READ_ERRORS) as exc:
            return [*out, ("error", unit.input, f"{unit.input.path}: {exc}")]
        if _WORKER.get("spill") is not None:
            held[1].spill = DaySpill(_WORKER["spill"])
        _WORKER["held"] = held
    try:
        if unit.tail and held[1].counter.pending_keys():
            held[1].absorb()  # what it holds classified now: finish() has this unit's only
        held[1].read(unit, _progress)
        held[2] += 1
    except READ_ERRORS as exc:
        _WORKER["held"] = None
        return [*out, ("error", unit.input, f"{unit.input.path}: {exc}")]
    # Held while a later unit of the file waits to be taken (this counter may take it);
    # handed over now otherwise, so that a file is stored as soon as its last unit is in.
    after = i + 1
    while after < len(units) and units[after].input == unit.input:
        if begun is None or not begun[after]:
            return out
        after += 1
    return out + hand_over()


def hand_over(last: bool = False) -> list[Message]:
    """The part this counter holds, if any. At the end the parent gives each counter one
    `last` task of this: a barrier holds each until the others have theirs too, so that no
    counter takes two while another takes none."""
    if last:
        _WORKER["everyone"].wait()
    held, _WORKER["held"] = _WORKER.get("held"), None
    if held is None:
        return []
    counts, days = held[1].finish(), held[1].spill
    held[1] = None  # its tables, let go as the part is written
    return _part(held[0], held[2], counts, days)


def _part(inp: Input, units: int, counts: UnitCounts, days: DaySpill | None) -> list[Message]:
    """The message of a part: in a counting process, its counts go through a file."""
    spill = _WORKER.get("spill")
    if spill is None:
        return [("part", inp, units, counts)]
    try:
        return [("part", inp, units, write_part(counts, spill, days))]
    except OSError as exc:  # a full disk: the file fails, the others go on
        return [("error", inp, f"{inp.path}: handing its counts over: {exc}")]


def start_counter(
    config: Config, units: list[Unit], lines: Any, begun: Any, everyone: Any, spill: str
) -> None:
    """A counting process's set-up (the pool's initializer). The parent forks it with
    SIGINT blocked: Ctrl-C is the parent's to handle, and ignoring it from here on leaves
    no moment where it would interrupt the counter with a traceback. `lines` (shared
    memory, or None without a progress bar) adds up the lines read by every counter;
    `begun` (shared memory, a byte per unit) tells the parent which units a counter began,
    should the pool break; `everyone` is the barrier of hand_over(); `spill` the parent's
    directory for the parts handed over (see rollup_parts)."""
    _WORKER["begun"], _WORKER["everyone"], _WORKER["spill"] = begun, everyone, spill
    tune_gc()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _die_with_parent()
    progress = None
    if lines is not None:
        total = lines.get_obj()

        def progress(n: int) -> None:
            with lines.get_lock():
                total.value += n

    load_units(config, units, progress)


def _die_with_parent() -> None:
    """Exit as soon as the parent is gone, even killed with SIGKILL: a counter's work is
    worth nothing without it. The parent's sentinel (a pipe multiprocessing gives every
    child) reads end of file once no process holds its other end; a counter forked later
    holds the ends of those forked before it, so when the parent dies the last counter
    exits first and the others follow, each released by the one after it."""
    import multiprocessing
    import threading

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
