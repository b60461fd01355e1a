"""`logcount rollup`: re-read whole log files and store per-day counts durably.

The same parser (LineCounter), classifier and Aggregator as the live side count each
line on the day of its own %t; only the sink differs. Per file (host + path) the result
replaces that file's earlier contribution in one transaction (store.Store.replace_source).

Work is spread over processes: one unit per file, and a large uncompressed file is cut
at line boundaries into several units. Units are counted in forked counting processes
(see "running" below); the parent opens the store meanwhile, merges the parts of a file
and writes it, so the store has a single writer. Memory stays bounded: the raw counters
are classified into per-day aggregates every few hundred thousand distinct keys, and a
counter hands a file's counts over when it moves on to another file.
"""

from __future__ import annotations

import ctypes
import dataclasses
import lzma
import multiprocessing as mp
import os
import re
import signal
import socket
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from logcount.aggregate import Aggregator, Delta, LineCounter
from logcount.classify import BoundedCache, Buckets, Classifier, agent_family, visitor_hash
from logcount.config import Config
from logcount.errors import LogcountError
from logcount.parse import SCAN_KINDS, CompiledFormat, compile_format
from logcount.rollup_files import (
    Input,
    Unit,
    open_log,
    resolve_inputs,
    source_name,
    split_units,
)
from logcount.sketch import VisitorSketch

if TYPE_CHECKING:  # the store (SQLAlchemy) is imported while the counters count
    from logcount.store import SourceFacts

BLOCK = 8 << 20  # bytes read at once
# Bytes of lines given to the counter at once: a piece holding a line that does not parse
# is matched twice, so pieces are kept small enough for such lines to spoil few of them.
PIECE = 256 << 10
CLASSIFY_EVERY = 300_000  # distinct raw keys held before they are classified


class RollupIncomplete(LogcountError):
    """Some files were missing or could not be read (the others were stored)."""


@dataclass
class Counts:
    """What a unit (or a merged file) counted, before it becomes store rows."""

    delta: Delta = field(default_factory=Delta)
    path_visitors: dict[tuple[str, str, str], set[str]] = field(default_factory=dict)
    object_visitors: dict[tuple[str, str, str], set[str]] = field(default_factory=dict)
    lines: int = 0
    malformed: int = 0

    def merge(self, other: Counts) -> None:
        self.delta.merge(other.delta)
        for mine, theirs in (
            (self.path_visitors, other.path_visitors),
            (self.object_visitors, other.object_visitors),
        ):
            for key, hashes in theirs.items():
                mine.setdefault(key, set()).update(hashes)
        self.lines += other.lines
        self.malformed += other.malformed


# --- counting --------------------------------------------------------------------------


# An agent member as the counting processes leave it: its text, marked; the parent turns it
# into the agent's family (families_of), so that ua-parser is loaded and asked once per
# distinct agent in the parent, while the counters count, not before they fork.
RAW_AGENT = "\x00"


class DayClassifier(Classifier):
    """The live Classifier, also reading day-only timestamps; undated lines get the file's
    day; agents left unnamed (RAW_AGENT + text) for the parent to name."""

    fallback: Buckets | None = None

    def _buckets(self, raw: tuple[bytes, bytes]) -> Buckets | None:
        tmin, ttz = raw
        if len(tmin) == 11:  # dd/Mon/YYYY: the day-only capture (see day_format)
            tmin += b":00:00"
        return super()._buckets((tmin, ttz))

    def now_buckets(self) -> Buckets:
        return self.fallback or super().now_buckets()

    def _family(self, text: str) -> str:
        return RAW_AGENT + text


def families_of(delta: Delta, family: Callable[[str], str] = agent_family) -> None:
    """Name the agent members a DayClassifier left unnamed (in place); agents of one family
    add up."""
    for table in (delta.members, delta.member_bytes):
        for key, members in table.items():
            if key[1] != "agent" or not any(m.startswith(RAW_AGENT) for m in members):
                continue
            named: Counter[str] = Counter()
            for member, n in members.items():
                named[family(member[1:]) if member.startswith(RAW_AGENT) else member] += n
            table[key] = named


def day_format(config: Config) -> CompiledFormat:
    """The configured format, capturing only the day of %t when the written day is the day.

    Fewer distinct keys (one per day instead of one per minute) make classification cheap.
    The %t group `(?P<tmin>BODY)` becomes `(?=(?P<tmin>[^:]*))(?:BODY)`: the same lines
    match, and the group keeps its number. With a configured time zone the minute is
    needed to convert (zones with half hours), so the format is left as it is.
    """
    fmt = compile_format(config.log_format)
    if config.timezone:
        return fmt
    chunk, fast = _day_only(fmt.chunk.pattern), _day_only(fmt.fast.pattern)
    if chunk is None or fast is None:
        return fmt
    plan = fmt.plan
    if plan is not None:  # the C scanner: capture DD/Mon/YYYY of %t, as the regexes now do
        day = len(b"DD/Mon/YYYY")
        plan = tuple(
            (kind, slot, second, day if kind == SCAN_KINDS["time"] else stop, lit)
            for kind, slot, second, stop, lit in plan
        )
    return dataclasses.replace(
        fmt,
        chunk=re.compile(chunk, fmt.chunk.flags),
        fast=re.compile(fast, fmt.fast.flags),
        plan=plan,
    )


def _day_only(pattern: bytes) -> bytes | None:
    opening = b"(?P<tmin>"
    start = pattern.find(opening)
    if start < 0:
        return None
    body_at = start + len(opening)
    end, colon = _scan_group(pattern, body_at)
    if end is None:
        return None
    body = pattern[body_at:end]
    if colon is not None:  # DAY:HH:MM -> capture DAY, match the rest
        cut = colon - body_at
        return pattern[:body_at] + body[:cut] + b")(?:" + body[cut:] + b")" + pattern[end + 1 :]
    return pattern[:start] + rb"(?=(?P<tmin>[^:]*))(?:" + body + b")" + pattern[end + 1 :]


def _scan_group(pattern: bytes, pos: int) -> tuple[int | None, int | None]:
    """Index of the `)` closing the group whose body starts at `pos`, and of the body's
    first `:` outside any group or class."""
    depth, colon = 0, None
    while pos < len(pattern):
        c = pattern[pos : pos + 1]
        if c == b"\\":
            pos += 2
            continue
        if c == b"[":  # a class: skip to its `]` (a `]` first in the class is literal)
            pos += 1
            if pattern[pos : pos + 1] == b"^":
                pos += 1
            if pattern[pos : pos + 1] == b"]":
                pos += 1
            while pos < len(pattern) and pattern[pos : pos + 1] != b"]":
                pos += 2 if pattern[pos : pos + 1] == b"\\" else 1
        elif c == b"(":
            depth += 1
        elif c == b")":
            if depth == 0:
                return pos, colon
            depth -= 1
        elif c == b":" and depth == 0 and colon is None:
            colon = pos
        pos += 1
    return None, None


class FileCounter:
    """Counts one unit: feeds blocks of whole lines, classifies every CLASSIFY_EVERY keys."""

    def __init__(self, config: Config, classifier: DayClassifier, fmt: CompiledFormat):
        self.config = config
        self.classifier = classifier
        mine: dict[str, Any] = {"classifier": classifier}
        try:  # the counter decides bots and ignored paths with our classifier
            self.counter = LineCounter(fmt, recent_size=1, path_visitors=True, **mine)
        except TypeError:  # a LineCounter that leaves that to the Aggregator
            self.counter = LineCounter(fmt, recent_size=1, path_visitors=True)
        self.aggregator = Aggregator(config, self.counter, classifier)
        self.aggregator.grans = ("day",)
        self.counts = Counts()

    def feed(self, block: bytes | memoryview) -> None:
        """Count a block of whole lines (each ending with a newline)."""
        if self.counter.scanner is not None:  # lines it refuses come back one by one
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
        if self.counter.pending_keys() > CLASSIFY_EVERY:
            self.absorb()

    def absorb(self) -> None:
        raw = self.counter.take()
        self.counts.lines += raw.lines
        self.counts.malformed += raw.malformed
        visitors, raw.visitors = raw.visitors, set()
        raw.malformed = 0  # counted per file, on the file's day (see facts_of)
        raw.samples.clear()
        raw.recent.clear()
        self.counts.delta.merge(self.aggregator.classify(raw))
        self._visitors(visitors)

    def _visitors(self, visitors: set[tuple[bytes, ...]]) -> None:
        """Day, path and object visitors, with the live side's rule for bots.

        A key per distinct (day, visitor, request): each agent, day, request and visitor is
        decided once per batch, not once per key."""
        cl, agg = self.classifier, self.aggregator
        layout = self.counter.vis_layout
        nctx = len(self.counter.ctx_layout)
        ci = layout.index("client") if "client" in layout else -1
        ai = layout.index("agent") if "agent" in layout else -1
        page_at = [i for i, f in enumerate(layout) if f in ("request", "method", "uri", "query")]
        day_v, path_v, obj_v = (
            self.counts.delta.visitors,
            self.counts.path_visitors,
            self.counts.object_visitors,
        )
        skip: dict[bytes, bool] = {}  # agent -> a bot not counted
        places: dict[tuple[bytes, ...], tuple[str, str]] = {}  # context -> (site, day)
        pages: dict[tuple[bytes, ...], tuple[str, str | None] | None] = {}  # None: ignored
        digests: dict[tuple[bytes, bytes], str] = {}
        for key in visitors:
            agent = key[ai] if ai >= 0 else b""
            bot = skip.get(agent)
            if bot is None:
                bot = skip[agent] = cl.agent(agent or b"-")[0] and not agg.count_bots
            if bot:
                continue
            page_key = tuple([key[i] for i in page_at])
            if page_key in pages:
                page = pages[page_key]
            else:
                path = agg._path(dict(zip(layout, key, strict=True)))
                # visitors are those of counted hits, as on the live side
                page = pages[page_key] = None if cl.ignored(path) else (path, cl.object_of(path))
            if page is None:
                continue
            ctx = key[:nctx]
            place = places.get(ctx)
            if place is None:
                site, buckets = agg._ctx(layout, key)
                place = places[ctx] = (site, buckets.day)
            who = (key[ci] if ci >= 0 else b"", agent)
            digest = digests.get(who)
            if digest is None:
                digest = digests[who] = visitor_hash(*who)
            site, day = place
            path, obj = page
            day_v.setdefault((site, "day", day), set()).add(digest)
            path_v.setdefault((site, day, path), set()).add(digest)
            if obj is not None:
                obj_v.setdefault((site, day, obj), set()).add(digest)

    def read(self, unit: Unit, progress: Callable[[int], None] = lambda n: None) -> Counts:
        """Count the unit's lines (finish() classifies them; a counter may read several
        units of one file first). The file is read into one reused buffer; the C scanner
        reads the lines where they lie (no copy), the regex path gets pieces of bytes."""
        with open_log(unit.input.path) as f:
            if unit.start:
                f.seek(unit.start)
            left = None if unit.end is None else unit.end - unit.start
            buf = bytearray(BLOCK)
            held = 0  # bytes of a line not yet complete, at the start of buf
            while left is None or left > 0:
                if held == len(buf):  # one line longer than the buffer
                    buf = buf + bytes(len(buf))
                want = len(buf) - held if left is None else min(len(buf) - held, left)
                with memoryview(buf) as view:
                    n = f.readinto(view[held : held + want])
                    if not n:
                        break
                    if left is not None:
                        left -= n
                    filled = held + n
                    cut = buf.rfind(b"\n", held, filled) + 1
                    if cut == 0:
                        held = filled
                        continue
                    before = self._seen()
                    self.feed(view[:cut])
                    progress(self._seen() - before)
                    held = filled - cut
                    view[:held] = view[cut:filled]  # the unfinished line to the front
            if held:  # a last line without its newline (a file still being written, torn)
                self.feed(bytes(buf[:held]) + b"\n")
                progress(1)
        return self.counts

    def finish(self) -> Counts:
        """Everything counted (the units read so far), classified."""
        self.absorb()
        return self.counts

    def _seen(self) -> int:
        """Lines counted or found malformed so far."""
        done = self.counts.lines + self.counts.malformed
        return done + self.counter.pending_lines() + self.counter.raw.malformed


# --- from counts to store rows ----------------------------------------------------------


def _day(label: str) -> date:
    return date(int(label[:4]), int(label[4:6]), int(label[6:8]))


def _text(value: str) -> str:
    return value.replace("\x00", "\\x00")  # PostgreSQL text cannot hold NUL


def malformed_day(inp: Input, counts: Counts, mtime: float) -> date:
    """A line that does not parse has no time: the file's own day when the template gives
    it, else the day most of the file's lines belong to, else the file's modification day."""
    if inp.day is not None:
        return inp.day
    per_day: Counter[str] = Counter()
    for (_site, _gran, label), c in counts.delta.totals.items():
        per_day[label] += c["hits"] + c["bots"] + c["ignored"]
    if per_day:
        return _day(max(sorted(per_day), key=per_day.__getitem__))
    return datetime.fromtimestamp(mtime).date()


def facts_of(
    inp: Input, counts: Counts, host: str, site: str, started: float, stat: os.stat_result
) -> SourceFacts:
    from logcount.store import MEMBER_DIMS, TOTAL_COLUMNS, SourceFacts

    d = counts.delta
    facts = SourceFacts(
        host=host,
        path=source_name(inp.path),
        size=stat.st_size,
        mtime=stat.st_mtime,
        lines=counts.lines + counts.malformed,
        malformed=counts.malformed,
        started=started,
    )
    totals = {(s, label): Counter(c) for (s, _g, label), c in d.totals.items()}
    if counts.malformed:
        key = (site, malformed_day(inp, counts, stat.st_mtime).strftime("%Y%m%d"))
        totals.setdefault(key, Counter())["malformed"] += counts.malformed
    for (s, label), c in totals.items():
        day = _day(label)
        facts.totals.append(
            {
                "site": s,
                "day": day,
                "own_day": inp.day in (None, day),
                **{name: int(c.get(name, 0)) for name in TOTAL_COLUMNS},
            }
        )
    for (s, dim, _g, label), c in d.members.items():
        day = _day(label)
        sizes = d.member_bytes.get((s, dim, _g, label), Counter())
        for member, hits in c.items():
            row = {"site": s, "day": day, "hits": hits, "bytes": int(sizes.get(member, 0))}
            if dim in ("path", "object"):
                found = counts.path_visitors if dim == "path" else counts.object_visitors
                seen = found.get((s, label, member), set())
                row.update(
                    {
                        dim: _text(member),
                        "visitors": len(seen),
                        "visitor_set": VisitorSketch.of(seen).to_bytes(),
                    }
                )
                (facts.paths if dim == "path" else facts.objects).append(row)
            elif dim in MEMBER_DIMS:
                facts.members.append({**row, "dim": dim, "member": _text(member)})
    for (s, _g, label), hashes in d.visitors.items():
        day = _day(label)
        facts.visitors.extend({"site": s, "day": day, "visitor": h} for h in hashes)
    return facts


# --- running ------------------------------------------------------------------------------
#
# The parent opens the store and writes it; counting happens in `jobs` forked processes.
# The first counting process loads what counting needs (the format, the routes, the crawler
# patterns) and forks the others, which share it. Meanwhile the parent imports SQLAlchemy,
# opens the store and loads ua-parser: on two cores that work is done while the counters
# count, not before. The counters take the units one after the other from a shared index
# (a busy core takes fewer), keep one FileCounter per file and hand the parent one part
# per file they read from (classified once, however many of its ranges they took).

_WORKER: dict[str, Any] = {}
READ_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError)
# What a counter sends: ("part", input, units counted, Counts) or ("error", input, message).
Message = tuple[Any, ...]


def _prepare(config: Config) -> tuple[DayClassifier, CompiledFormat]:
    state = _WORKER.get("state")
    if state is None or state[0] != config:
        fmt = day_format(config)
        classifier = DayClassifier(config, fmt)
        # The crawler patterns compile on first use: compile them here, before the other
        # counters fork, so that they share them instead of each compiling its own.
        classifier.agent(b"Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Firefox/121.0")
        state = _WORKER["state"] = (config, classifier, fmt)
    return state[1], state[2]


def _file_counter(config: Config, inp: Input) -> FileCounter:
    """A counter for one file; lines without a readable time count on the file's day (the
    template's, else its modification day). OSError when the file is gone."""
    classifier, fmt = _prepare(config)
    day = inp.day or date.fromtimestamp(os.path.getmtime(inp.path))
    classifier.fallback = Buckets(
        day.strftime("%Y%m%d0000"), day.strftime("%Y%m%d00"), day.strftime("%Y%m%d")
    )
    return FileCounter(config, classifier, fmt)


def _progress(n: int) -> None:
    shared = _WORKER.get("lines")
    if shared is not None:
        with shared.get_lock():
            shared.value += n


def count_unit(config: Config, unit: Unit) -> tuple[Unit, Counts | None, str]:
    """Count one unit alone; an unreadable file is reported, never raised."""
    try:
        counter = _file_counter(config, unit.input)
    except OSError as exc:
        return unit, None, f"{unit.input.path}: {exc.strerror}"
    try:
        counter.read(unit, _progress)
        return unit, counter.finish(), ""
    except READ_ERRORS as exc:
        return unit, None, f"{unit.input.path}: {exc}"


def _count(config: Config, units: list[Unit], take: Callable[[], int]) -> Iterator[Message]:
    """Count the units whose indexes `take` hands out (ascending, len(units) when none is
    left): one part per file, sent when the next unit belongs to another file; an
    unreadable file is an error message, never an exception (the others go on)."""
    current: Input | None = None
    counter: FileCounter | None = None
    taken, failed = 0, False
    while True:
        i = take()
        unit = units[i] if i < len(units) else None
        if unit is None or unit.input != current:
            if counter is not None:
                yield "part", current, taken, counter.finish()
            if unit is None:
                return
            current, counter, taken, failed = unit.input, None, 0, False
        if failed:
            continue
        taken += 1
        try:
            if counter is None:
                counter = _file_counter(config, unit.input)
        except OSError as exc:
            failed = True
            yield "error", current, f"{unit.input.path}: {exc.strerror}"
            continue
        try:
            counter.read(unit, _progress)
        except READ_ERRORS as exc:
            failed, counter = True, None
            yield "error", current, f"{unit.input.path}: {exc}"


def _worker_init(lines: Any, parent: int) -> None:
    _WORKER["lines"] = lines
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; Ctrl-C reaches it
    try:  # die with the parent, even if it is killed with SIGKILL
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)


class _Counters:
    """The counting processes, and the parts they send (see above). Where there is no
    fork(), the parent counts itself, once the store is open."""

    def __init__(self, config: Config, units: list[Unit], jobs: int):
        self.config = config
        self.units = units
        self.lines: Any = mp.Value("q", 0)
        self.readers: list[Any] = []
        self.pid = 0
        if not units or not hasattr(os, "fork"):
            return
        n = min(jobs, len(units))
        pipes = [mp.Pipe(duplex=False) for _ in range(n)]
        self.readers = [r for r, _w in pipes]
        writers = [w for _r, w in pipes]
        index = mp.Value("q", 0)
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the first counter: loads, forks the others, counts
            code = 1
            try:
                for r in self.readers:
                    r.close()
                _worker_init(self.lines, parent)
                _prepare(config)
                code = self._first(writers, index)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        self.pid = pid
        for w in writers:
            w.close()

    def _first(self, writers: list[Any], index: Any) -> int:
        me, children = os.getpid(), []
        for k in range(1, len(writers)):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    for other in writers[:k] + writers[k + 1 :]:
                        other.close()
                    _worker_init(self.lines, me)
                    self._serve(writers[k], index)
                    code = 0
                except BaseException:
                    import traceback

                    traceback.print_exc()
                finally:
                    os._exit(code)
            children.append(pid)
        for w in writers[1:]:
            w.close()
        self._serve(writers[0], index)
        writers[0].close()
        for pid in children:
            os.waitpid(pid, 0)
        return 0

    def _serve(self, conn: Any, index: Any) -> None:
        def take() -> int:
            with index.get_lock():
                i = int(index.value)
                index.value = i + 1
            return i

        for message in _count(self.config, self.units, take):
            conn.send(message)

    def results(self, idle: Callable[[], None]) -> Iterator[Message]:
        """The messages of every counter, as they come; `idle` is called while none does."""
        if not self.pid:
            _WORKER["lines"] = self.lines
            it = iter(range(len(self.units)))
            yield from _count(self.config, self.units, lambda: next(it, len(self.units)))
            return
        from multiprocessing.connection import Connection, wait

        open_ = list(self.readers)
        while open_:
            ready = wait(open_, timeout=0.25)
            if not ready:
                idle()
            for conn in ready:
                assert isinstance(conn, Connection)
                try:
                    message: Message = conn.recv()
                except EOFError:  # that counter is done (or died: see rollup())
                    open_.remove(conn)
                    conn.close()
                    continue
                yield message

    def close(self) -> None:
        """Reap the first counter (the others are its children); kill it if still running
        (an error in the parent): the others die with it (PR_SET_PDEATHSIG)."""
        if not self.pid:
            return
        for conn in self.readers:
            conn.close()
        pid, self.pid = self.pid, 0
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
            if done == 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        except ChildProcessError:
            pass


@dataclass
class RollupResult:
    files: int = 0
    lines: int = 0
    malformed: int = 0
    seconds: float = 0.0
    missing: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.failed


def default_day(config: Config) -> date:
    from logcount.report import zone_of

    return datetime.now(zone_of(config)).date() - timedelta(days=1)


def days_between(since: date, until: date) -> list[date]:
    return [since + timedelta(days=i) for i in range((until - since).days + 1)]


def rollup(
    config: Config,
    specs: list[str],
    days: list[date],
    *,
    allow_missing: bool = False,
    host: str | None = None,
    jobs: int | None = None,
    show_progress: bool = False,
    warn: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
) -> RollupResult:
    """Roll up every input; raise RollupIncomplete at the end if any file was not read."""
    started = time.monotonic()
    inputs, missing = resolve_inputs(specs, days)
    result = RollupResult(missing=missing)
    for message in missing:
        if not allow_missing or show_progress:
            warn(("warning: " if allow_missing else "error: ") + message)
    host = host or socket.gethostname()
    jobs = max(1, jobs or os.cpu_count() or 1)
    units = [u for inp in inputs for u in split_units(inp, jobs)]
    counters = _Counters(config, units, jobs)
    try:
        _store_all(config, inputs, units, counters, host, show_progress, warn, result)
    finally:
        counters.close()
    result.seconds = time.monotonic() - started
    if not allow_missing and result.missing or result.failed:
        n_missing = 0 if allow_missing else len(result.missing)
        raise RollupIncomplete(
            f"rollup incomplete: {result.files} file(s) stored, {n_missing} missing, "
            f"{len(result.failed)} unreadable"
        )
    return result


def _store_all(
    config: Config,
    inputs: list[Input],
    units: list[Unit],
    counters: _Counters,
    host: str,
    show_progress: bool,
    warn: Callable[[str], None],
    result: RollupResult,
) -> None:
    """The parent's side: open the store while the counters count, write each file (one
    transaction) once the parts of all its units are in."""
    from logcount.store import Store

    store = Store.from_config(config)
    begun = {}
    for inp in inputs:
        store.mark_started(host, source_name(inp.path))
        begun[inp] = time.time()
    family = BoundedCache(agent_family, 50_000)
    family("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Firefox/121.0")  # load ua-parser now
    expected = Counter(u.input for u in units)
    got: Counter[Input] = Counter()
    parts: dict[Input, list[Counts]] = {inp: [] for inp in inputs}
    failed: set[Input] = set()
    with _Progress(show_progress, len(inputs)) as bar:
        bar.lines = counters.lines
        for message in counters.results(bar.refresh):
            inp = message[1]
            if inp in failed:
                continue
            if message[0] == "error":
                warn(f"error: cannot read {message[2]}")
                result.failed.append(message[2])
                failed.add(inp)
                parts.pop(inp, None)
                continue
            parts[inp].append(message[3])
            got[inp] += message[2]
            if got[inp] < expected[inp]:
                continue
            counts = _merged(parts.pop(inp))
            try:
                stat = os.stat(inp.path)
            except OSError as exc:  # removed while it was read
                warn(f"error: cannot read {inp.path}: {exc.strerror}")
                result.failed.append(inp.path)
                failed.add(inp)
                continue
            families_of(counts.delta, family)
            facts = facts_of(inp, counts, host, config.site, begun[inp], stat)
            store.replace_source(facts)
            result.files += 1
            result.lines += facts.lines
            result.malformed += facts.malformed
            bar.file_done()
    for inp in parts:  # a counter died (killed, out of memory) before it sent them
        warn(f"error: cannot read {inp.path}: its counting process died")
        result.failed.append(inp.path)
    store.dispose()


def _merged(parts: list[Counts]) -> Counts:
    total = parts[0]
    for part in parts[1:]:
        total.merge(part)
    return total


class _Progress:
    """A rich progress bar (files, lines, lines/s) on a terminal; nothing otherwise.

    The lines column reads the workers' shared counter each time rich redraws (10 times a
    second, from rich's own thread), so it moves while one big file is being read."""

    def __init__(self, enabled: bool, files: int):
        self.enabled = enabled
        self.files = files
        self.lines: Any = None
        self.started = time.monotonic()
        self.progress: Any = None

    def text(self) -> str:
        n = self.lines.value if self.lines is not None else 0
        rate = n / max(time.monotonic() - self.started, 1e-6)
        return f"{n:,} lines  {rate:,.0f} lines/s"

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                ProgressColumn,
                TextColumn,
            )
            from rich.text import Text

            bar = self

            class LinesColumn(ProgressColumn):
                def render(self, task: Any) -> Text:
                    return Text(bar.text())

            self.progress = Progress(
                TextColumn("rollup"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("files "),
                LinesColumn(),
                transient=False,
            )
            self.progress.__enter__()
            self.task = self.progress.add_task("rollup", total=self.files)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def refresh(self) -> None:
        if self.progress is not None:
            self.progress.refresh()

    def file_done(self) -> None:
        if self.progress is not None:
            self.progress.advance(self.task)


def summary(result: RollupResult) -> str:
    rate = result.lines / result.seconds if result.seconds else 0.0
    return (
        f"{result.files} file(s), {result.lines:,} lines ({result.malformed:,} malformed) "
        f"in {result.seconds:.1f} s, {rate:,.0f} lines/s"
    )


def run_command(
    config: Config,
    specs: list[str],
    day: datetime | None,
    since: datetime | None,
    until: datetime | None,
    **options: Any,
) -> str:
    """`logcount rollup`: pick the inputs and days from options and config; a summary line."""
    from logcount.errors import ConfigError

    if day is not None and (since is not None or until is not None):
        raise ConfigError("give --date, or --since/--until, not both")
    if until is not None and since is None:
        raise ConfigError("--until needs --since")
    specs = specs or ([config.logs] if config.logs else [])
    if not specs:
        raise ConfigError(
            "no logs to read: give --logs TEMPLATE|FILE|GLOB or set `logs` "
            "in the config (e.g. /var/log/apache2/%Y/%m/%d/access.log)"
        )
    yesterday = default_day(config)
    if since is not None:
        last = until.date() if until is not None else yesterday
        if last < since.date():
            raise ConfigError(f"--until {last} is before --since {since.date()}")
        days = days_between(since.date(), last)
    else:
        days = [day.date() if day is not None else yesterday]
    return summary(rollup(config, specs, days, **options))
