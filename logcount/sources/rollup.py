"""`logcount rollup`: re-read whole log files and store per-day counts durably.

The same parser (LineCounter), classifier and Aggregator as the live side count each
line on the day of its own %t; only the sink differs. Per file (host + path) the result
replaces that file's earlier contribution in one transaction: the SQL sink
(sinks/sql_sink.StoreSink, see sinks/base.py for what a sink is).

Work is spread over processes: one unit per file, and a large uncompressed file is cut
at line boundaries into several units. Units are counted in forked counting processes
(see "running" below); the parent opens the store meanwhile, merges the parts of a file
and writes it, so the store has a single writer. Memory stays bounded: the raw counters
are classified into per-day aggregates every few hundred thousand distinct keys, those
keep twice the store's cap of members per day and dimension (the rest folded into
"(other)", see rollup_rows.UnitCounts.bound), and a counter hands a unit's counts over as
soon as it has read it. A file stores at most the cap of members per site, day and
dimension, plus "(other)".
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from logcount.config import Config
from logcount.errors import LogcountError
from logcount.sinks.base import DayCounts, Sink, SourceFile
from logcount.sinks.spool import HOST
from logcount.sources.rollup_files import Input, Unit, resolve_inputs, source_name, split_units

if TYPE_CHECKING:  # imported in the parent only once the counters are forked
    from logcount.sources.rollup_count import UnitCounts

# What a counter sends: ("part", input, units counted, UnitCounts) or ("error", input, message).
Message = tuple[Any, ...]
# The counting side, for callers of this module (imported on first use).
_COUNTING = (
    "UnitCounts",
    "store_classifier",
    "FileCounter",
    "count_unit",
    "day_format",
    "families_of",
)


def __getattr__(name: str) -> Any:
    if name in _COUNTING:
        from logcount.sources import rollup_count

        return getattr(rollup_count, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class RollupIncomplete(LogcountError):
    """Some files were missing or could not be read (the others were stored)."""


# --- from counts to store rows ----------------------------------------------------------


# --- running ------------------------------------------------------------------------------
#
# The parent opens the store and writes it; counting happens in a pool of `jobs` forked
# processes (concurrent.futures, logcount/sources/rollup_count.py), one task per unit, taken in
# turn (a busy core takes fewer). The parent imports the counting side's modules, then
# starts the pool before it imports SQLAlchemy or anything else it alone needs: the
# counters are forked from a small process (a copy of a big parent would be paid for in
# every counter's memory); each loads what counting needs for the config (the format, the
# routes, the crawler patterns) while the parent imports SQLAlchemy, opens the store and
# loads ua-parser: on two cores that work is done while the counters count, not before.
# A unit's part comes back as soon as it is counted.


def _start_counter(shared: tuple[Any, ...]) -> None:
    """The pool's initializer."""
    from logcount.sources.rollup_count import start_counter

    start_counter(*shared)


def _count_at(i: int) -> list[Message]:
    """A pool task: a unit's index (the counters inherit the units from the fork)."""
    from logcount.sources.rollup_count import count_at

    return count_at(i)


def _hand_over() -> list[Message]:
    """A pool's last tasks, one per counter: the parts they still hold."""
    from logcount.sources.rollup_count import hand_over

    return hand_over(last=True)


SPILL_PREFIX = "logcount-rollup-"


def spill_directory() -> str:
    """Where the counters write the parts they hand over (rollup_parts): the parent's,
    private (0700), named after it and removed by Counters.close() whatever is left in it.
    Those of this user's rollups that were killed first (SIGKILL, SIGTERM: no close) are
    removed here, once their process is gone."""
    base = tempfile.gettempdir()
    for name in os.listdir(base):
        pid = name.removeprefix(SPILL_PREFIX).partition("-")[0]
        path = os.path.join(base, name)
        if not name.startswith(SPILL_PREFIX) or not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            if os.lstat(path).st_uid == os.getuid():
                shutil.rmtree(path, ignore_errors=True)
        except OSError:  # removed meanwhile
            pass
    return tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}{os.getpid()}-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


class Counters:
    """The counting processes, and the parts they return (see above). Where there is no
    fork(), the parent counts itself, once the store is open."""

    def __init__(self, config: Config, units: list[Unit], jobs: int, progress: bool):
        self.config = config
        self.units = units
        self.jobs = min(jobs, len(units))
        self._counted = 0  # lines read by the parent itself (when `progress`)
        self._shared: Any = None  # lines read by the counters (when `progress`)
        self._begun: Any = None  # per unit: 1 once a counter has begun it
        self.pool: Any = None
        self.futures: dict[Any, int] = {}  # future -> its unit's index
        self.progress = progress
        if not units or not hasattr(os, "fork"):
            return
        import multiprocessing
        import queue

        self.context = multiprocessing.get_context("fork")
        if progress:
            self._shared = self.context.Value("q", 0)
        self._begun = self.context.RawArray("b", len(units))
        self.done: queue.SimpleQueue[Any] = queue.SimpleQueue()  # futures, as they finish
        self.spill = spill_directory()
        # The counting side's modules, imported once here rather than by each counter (a
        # core's 40 ms each; the parent imports them later anyway): what they load for a
        # config (the format, the crawler patterns) is each counter's own, made in parallel.
        import logcount.sources.rollup_count  # noqa: F401

        self._start(range(len(units)))

    def _start(self, indexes: Iterable[int]) -> None:
        """A pool counting these units. It forks its counters at the first task, with
        Ctrl-C blocked: a counter ignores it from its first instruction (start_counter),
        the parent receives it once they are forked."""
        from concurrent.futures import ProcessPoolExecutor

        # Shared with the counters by the fork: the units, the lines read, which units
        # were begun, and the barrier of the last tasks (see rollup_count.hand_over).
        everyone = self.context.Barrier(self.jobs)
        shared = (self.config, self.units, self._shared, self._begun, everyone, self.spill)
        self.pool = ProcessPoolExecutor(
            self.jobs, mp_context=self.context, initializer=_start_counter, initargs=(shared,)
        )
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            tasks: list[tuple[Callable[..., list[Message]], int]] = [
                (_count_at, i) for i in indexes
            ]
            self._given = len(tasks)  # units given to this pool
            tasks += [(_hand_over, -1)] * self.jobs  # -1: no unit
            for task, i in tasks:
                future = self.pool.submit(task, *([i] if i >= 0 else []))
                self.futures[future] = i
                future.add_done_callback(self.done.put)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    @property
    def lines(self) -> int:
        """Lines read so far (when `progress`): read without the lock, which a counter
        killed in the middle of an update would hold forever."""
        shared = 0 if self._shared is None else int(self._shared.get_obj().value)
        return self._counted + shared

    def results(self, idle: Callable[[], None]) -> Iterator[Message]:
        """The units' messages, as they come; `idle` is called while none does.

        A counter that dies (killed, out of memory) breaks the pool, which stops the
        others: the units they had begun send nothing (their files fail, see _store_all),
        those not begun are counted by a new pool (forked from the parent as it is now:
        a rare case, not worth keeping a small process around for)."""
        if self.pool is None:
            yield from self._count_here()
            return
        import queue
        from concurrent.futures.process import BrokenProcessPool

        again: list[int] = []
        while self.futures:
            try:
                future = self.done.get(timeout=0.25)
            except queue.Empty:
                idle()
                continue
            i = self.futures.pop(future)
            error = None if future.cancelled() else future.exception()
            if isinstance(error, BrokenProcessPool):
                if i >= 0 and not self._begun[i]:
                    again.append(i)
                # Again only if the broken pool had begun some unit: one whose counters
                # die before they begin any (a fault at set-up) would break every pool.
                if not self.futures and 0 < len(again) < self._given:
                    self.pool.shutdown(wait=True)
                    self._start(again)
                    again = []
            elif error is not None and i >= 0:  # a fault of the counting code: the file fails
                inp = self.units[i].input
                yield "error", inp, f"{inp.path}: counting failed ({type(error).__name__}: {error})"
            elif error is None and not future.cancelled():
                # Given one at a time and let go of here: the parent merges a part and
                # lets it go (a day's visitor hashes: up to 8 MiB) before the next comes.
                messages, future = future.result(), None
                if not self.futures:  # the last: the counters exit while the parent writes
                    self.pool.shutdown(wait=False)
                while messages:
                    yield messages.pop(0)

    def _count_here(self) -> Iterator[Message]:
        from logcount.sources.rollup_count import count_at, hand_over, load_units

        def count(n: int) -> None:
            self._counted += n

        load_units(self.config, self.units, count if self.progress else None)
        for i in range(len(self.units)):
            yield from count_at(i)
        yield from hand_over()

    def close(self, stop: bool) -> None:
        """Wait for the counters to exit once they are done; with `stop` (an error or
        Ctrl-C in the parent) kill them first. Either way none is left when this returns,
        not even as a zombie."""
        pool, self.pool = self.pool, None
        if pool is None:
            return
        if stop:
            import multiprocessing

            workers = multiprocessing.active_children()  # the pool's: the parent has no other
            for worker in workers:
                worker.kill()
            for worker in workers:
                worker.join()
        pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.spill, ignore_errors=True)


@dataclass
class RollupResult:
    files: int = 0
    lines: int = 0
    malformed: int = 0
    seconds: float = 0.0
    missing: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    malformed_files: list[str] = field(default_factory=list)  # not one line read

    @property
    def ok(self) -> bool:
        return not self.missing and not self.failed and not self.malformed_files


def default_day(config: Config) -> date:
    from logcount.zones import zone_of

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
    from logcount.count.line_counter import tune_gc  # what the counters import anyway
    from logcount.count.lines import return_freed_buffers

    started = time.monotonic()
    tune_gc()  # the parent merges what the counters hand over (and counts, without them)
    return_freed_buffers(1 << 20)  # here and in the counters, which inherit it with the fork
    inputs, missing = resolve_inputs(specs, days)
    result = RollupResult(missing=missing)
    for message in missing:
        if not allow_missing or show_progress:
            warn(("warning: " if allow_missing else "error: ") + message)
    host = host or HOST
    jobs = max(1, jobs or os.cpu_count() or 1)
    units = [u for inp in inputs for u in split_units(inp, jobs)]
    # The visitor key, read (or made) once before the fork: the counters inherit it, and a
    # key that cannot be read is one line here instead of counters dying one by one.
    config.visitor_key()
    counters = Counters(config, units, jobs, show_progress)
    try:
        _store_all(config, inputs, units, counters, host, show_progress, warn, result)
    except BaseException:
        counters.close(stop=True)
        raise
    counters.close(stop=False)
    result.seconds = time.monotonic() - started
    if not allow_missing and result.missing or result.failed or result.malformed_files:
        n_missing = 0 if allow_missing else len(result.missing)
        bad = len(result.malformed_files)
        raise RollupIncomplete(
            f"rollup incomplete: {result.files} file(s) stored, {n_missing} missing, "
            f"{len(result.failed)} unreadable" + (f", {bad} entirely malformed" if bad else "")
        )
    return result


def _store_all(
    config: Config,
    inputs: list[Input],
    units: list[Unit],
    counters: Counters,
    host: str,
    show_progress: bool,
    warn: Callable[[str], None],
    result: RollupResult,
) -> None:
    """The parent's side: open the store while the counters count, write each file (one
    transaction) once the parts of all its units are in."""
    from logcount.sinks.sql_sink import StoreSink

    # Store errors first, then the rest of the imports.
    names = [source_name(inp.path) for inp in inputs]
    sink: Sink[DayCounts, SourceFile] = StoreSink.open(config, host, names)
    from logcount.count.agents import agent_family, os_family
    from logcount.count.classify import BoundedCache
    from logcount.sources.rollup_count import working_size
    from logcount.sources.rollup_parts import read_part
    from logcount.sources.rollup_rows import families_of

    keep = working_size(config)
    family = BoundedCache(agent_family, 50_000)
    system = BoundedCache(os_family, 50_000)
    family("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Firefox/121.0")  # load ua-parser now
    expected = Counter(u.input for u in units)
    got: Counter[Input] = Counter()
    merged: dict[Input, UnitCounts] = {}
    failed: set[Input] = set()
    with ProgressBar(show_progress, len(inputs)) as bar:
        bar.counters = counters
        for message in counters.results(bar.refresh):
            inp = message[1]
            if inp in failed:
                continue
            if message[0] == "error":
                warn(f"error: cannot read {message[2]}")
                result.failed.append(message[2])
                failed.add(inp)
                merged.pop(inp, None)
                continue
            part, held = message[3], merged.get(inp)
            message = message[:3]  # the part merged, let go before the file's rows are made
            if isinstance(part, str):  # a counter's, in a file: merged a slice at a time
                merged[inp] = read_part(part, held)
            elif held is not None:  # merged as the parts come: one merge left after the last
                held.merge(part)
            else:
                merged[inp] = part
            del part
            if held is not None:
                held.bound(keep, family)
            got[inp] += message[2]
            if got[inp] < expected[inp]:
                # Its agents named now, while the other counters count (into the caches:
                # the last part's are mostly known then), not after the last part: a
                # diverse day's 2,000 agents and systems cost ua-parser ~0.05 s.
                families_of(merged[inp].delta, family, system)
                continue
            counts = merged.pop(inp)
            try:
                stat = os.stat(inp.path)
            except OSError as exc:  # removed while it was read
                warn(f"error: cannot read {inp.path}: {exc.strerror}")
                result.failed.append(inp.path)
                failed.add(inp)
                continue
            families_of(counts.delta, family, system)
            lines, malformed = counts.lines + counts.malformed, counts.malformed
            origin = SourceFile(host, source_name(inp.path), inp.day, stat.st_size, stat.st_mtime)
            sink.submit(counts, origin)
            result.files += 1
            result.lines += lines
            result.malformed += malformed
            if malformed and malformed == lines:
                warn(
                    f"error: {inp.path}: all its {malformed:,} lines are malformed "
                    f"under log format {config.log_format} (is --log-format right?)"
                )
                result.malformed_files.append(inp.path)
            bar.file_done()
    for inp in inputs:  # a counter died (killed, out of memory) before it sent them
        if got[inp] == expected[inp] or inp in failed:
            continue
        warn(f"error: cannot read {inp.path}: its counting process died")
        result.failed.append(inp.path)
    sink.close()


class ProgressBar:
    """A rich progress bar (files, lines, lines/s) on a terminal; nothing otherwise.

    The lines column reads the workers' shared counter each time rich redraws (10 times a
    second, from rich's own thread), so it moves while one big file is being read."""

    def __init__(self, enabled: bool, files: int, title: str = "rollup"):
        self.enabled = enabled
        self.title = title
        self.files = files
        self.counters: Counters | None = None
        self.started = time.monotonic()
        self.progress: Any = None

    def text(self) -> str:
        n = self.counters.lines if self.counters is not None else 0
        rate = n / max(time.monotonic() - self.started, 1e-6)
        return f"{n:,} lines  {rate:,.0f} lines/s"

    def __enter__(self) -> ProgressBar:
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
                TextColumn(self.title),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("files "),
                LinesColumn(),
                transient=False,
            )
            self.progress.__enter__()
            self.task = self.progress.add_task(self.title, total=self.files)
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
    try:
        return summary(rollup(config, specs, days, **options))
    finally:
        # The command ends with this: spare the process's exit its final garbage collection
        # over every object left (SQLAlchemy's, the caches), which only frees memory the
        # exit frees anyway: ~70 ms after a rollup of a million lines.
        gc.freeze()
