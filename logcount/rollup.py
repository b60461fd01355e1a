"""`logcount rollup`: re-read whole log files and store per-day counts durably.

The same parser (LineCounter), classifier and Aggregator as the live side count each
line on the day of its own %t; only the sink differs. Per file (host + path) the result
replaces that file's earlier contribution in one transaction (store.Store.replace_source).

Work is spread over processes: one unit per file, and a large uncompressed file is cut
at line boundaries into several units. Units are counted in forked counting processes
(see "running" below); the parent opens the store meanwhile, merges the parts of a file
and writes it, so the store has a single writer. Memory stays bounded: the raw counters
are classified into per-day aggregates every few hundred thousand distinct keys, those
keep twice the store's cap of members per day and dimension (the rest folded into
"(other)", see rollup_rows.Counts.bound), and a counter hands a file's counts over when it
moves on to another file. A file stores at most the cap of members per site, day and
dimension, plus "(other)".
"""

from __future__ import annotations

import gc
import os
import select
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from logcount.config import Config
from logcount.errors import LogcountError
from logcount.rollup_files import Input, Unit, resolve_inputs, source_name, split_units

if TYPE_CHECKING:  # imported in the parent only once the counters are forked
    from logcount.rollup_count import Counts

# What a counter sends: ("part", input, units counted, Counts) or ("error", input, message).
Message = tuple[Any, ...]
# The counting side, for callers of this module (imported on first use).
_COUNTING = ("Counts", "DayClassifier", "FileCounter", "count_unit", "day_format", "families_of")


def __getattr__(name: str) -> Any:
    if name in _COUNTING:
        from logcount import rollup_count

        return getattr(rollup_count, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class RollupIncomplete(LogcountError):
    """Some files were missing or could not be read (the others were stored)."""


# --- from counts to store rows ----------------------------------------------------------


# --- running ------------------------------------------------------------------------------
#
# The parent opens the store and writes it; counting happens in `jobs` forked processes
# (logcount/rollup_count.py). The parent forks the first counter before it imports any of
# the counting side; that counter imports and loads what counting needs (the format, the
# routes, the crawler patterns) and forks the others, which share it. Meanwhile the parent
# imports SQLAlchemy, opens the store and loads ua-parser: on two cores that work is done
# while the counters count, not before. The counters take the units one after the other
# from a queue (a busy core takes fewer), keep one FileCounter per file and hand the
# parent one part per file they read from (classified once, however many of its ranges
# they took).


_QUEUE_WRITE = max(4, select.PIPE_BUF // 4 * 4)  # whole indexes, written atomically


class _Counters:
    """The counting processes, and the parts they send (see above). Plain pipes, no
    multiprocessing: the parent forks before it has imported anything it does not need.
    The units' indexes wait in a pipe, four bytes each (the counters read them in turn);
    each counter writes its messages, pickled and length-prefixed, to a pipe of its own.
    Where there is no fork(), the parent counts itself, once the store is open."""

    def __init__(self, config: Config, units: list[Unit], jobs: int, progress: bool):
        self.config = config
        self.units = units
        self.progress = progress
        self.lines = 0  # lines read so far (when `progress`)
        self.readers: list[int] = []
        self.pid = 0
        if not units or not hasattr(os, "fork"):
            return
        n = min(jobs, len(units))
        pipes = [os.pipe() for _ in range(n)]
        queue_r, queue_w = os.pipe()
        rest = self._queue(queue_w)
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the first counter: loads, forks the others, counts
            code = 1
            try:
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent decides
                os.close(queue_w)
                for r, _w in pipes:
                    os.close(r)
                from logcount.rollup_count import _prepare, _worker_init

                _worker_init(parent, None)
                _prepare(config)
                code = self._first([w for _r, w in pipes], queue_r)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        self.pid = pid
        os.close(queue_r)
        for _r, w in pipes:
            os.close(w)
        self.readers = [r for r, _w in pipes]
        if rest:  # more units than the pipe holds: the rest as the counters take them
            import threading

            threading.Thread(target=self._feed_queue, args=(queue_w, rest), daemon=True).start()
        else:
            os.close(queue_w)

    def _queue(self, fd: int) -> bytes:
        """Write the units' indexes into the queue; what did not fit is returned. A write
        of at most PIPE_BUF bytes is whole or not at all: a counter never reads half an
        index."""
        records = b"".join(i.to_bytes(4, "little") for i in range(len(self.units)))
        os.set_blocking(fd, False)
        done = 0
        try:
            while done < len(records):
                done += os.write(fd, records[done : done + _QUEUE_WRITE])
        except BlockingIOError:
            pass
        os.set_blocking(fd, True)
        return records[done:]

    @staticmethod
    def _feed_queue(fd: int, rest: bytes) -> None:
        try:
            for at in range(0, len(rest), _QUEUE_WRITE):
                os.write(fd, rest[at : at + _QUEUE_WRITE])
        except OSError:  # the counters are gone
            pass
        finally:
            os.close(fd)

    def _first(self, writers: list[int], queue: int) -> int:
        from logcount.rollup_count import _worker_init

        me, children = os.getpid(), []
        for k in range(1, len(writers)):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    for i, other in enumerate(writers):
                        if i != k:
                            os.close(other)
                    _worker_init(me, None)
                    self._serve(writers[k], queue)
                    code = 0
                except BaseException:
                    import traceback

                    traceback.print_exc()
                finally:
                    os._exit(code)
            children.append(pid)
        for w in writers[1:]:
            os.close(w)

        def stop(_signum: int, _frame: object) -> None:  # see close()
            for pid in children:
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                except OSError:
                    pass
            os._exit(1)

        signal.signal(signal.SIGTERM, stop)
        self._serve(writers[0], queue)
        for pid in children:
            os.waitpid(pid, 0)
        return 0

    def _serve(self, fd: int, queue: int) -> None:
        """Count the units taken from the queue; send the messages to the parent."""
        import pickle

        from logcount.rollup_count import _WORKER, _count

        def send(message: Message) -> None:
            data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
            view = memoryview(len(data).to_bytes(8, "little") + data)
            while view:
                view = view[os.write(fd, view) :]

        def take() -> int:
            raw = os.read(queue, 4)
            return int.from_bytes(raw, "little") if len(raw) == 4 else len(self.units)

        if self.progress:
            _WORKER["progress"] = lambda n: send(("lines", None, n))
        for message in _count(self.config, self.units, take):
            send(message)
        os.close(fd)

    def results(self, idle: Callable[[], None]) -> Iterator[Message]:
        """The messages of every counter, as they come; `idle` is called while none does."""
        if not self.pid:
            from logcount.rollup_count import _WORKER, _count

            def count(n: int) -> None:
                self.lines += n

            _WORKER["progress"] = count
            it = iter(range(len(self.units)))
            yield from _count(self.config, self.units, lambda: next(it, len(self.units)))
            return
        import pickle
        import selectors

        pending = {fd: bytearray() for fd in self.readers}
        with selectors.DefaultSelector() as sel:
            for fd in self.readers:
                sel.register(fd, selectors.EVENT_READ)
            while pending:
                ready = sel.select(timeout=0.25)
                if not ready:
                    idle()
                for key, _events in ready:
                    fd = int(key.fd)
                    chunk = os.read(fd, 1 << 20)
                    if not chunk:  # that counter is done (or died: see rollup())
                        sel.unregister(fd)
                        del pending[fd]
                        continue
                    buf = pending[fd]
                    buf += chunk
                    while len(buf) >= 8:
                        size = int.from_bytes(buf[:8], "little")
                        if len(buf) < 8 + size:
                            break
                        with memoryview(buf) as view:
                            message: Message = pickle.loads(view[8 : 8 + size])
                        del buf[: 8 + size]
                        if message[0] == "lines":
                            self.lines += message[2]
                        else:
                            yield message

    def close(self, stop: bool) -> None:
        """Reap the first counter (the others are its children, which it reaps), once they
        are done; with `stop` (an error or Ctrl-C in the parent) stop it first: on SIGTERM
        it kills and reaps the others, then exits (SIGKILL if it does not within 5 s; the
        others then die with it, PR_SET_PDEATHSIG)."""
        for fd in self.readers:
            try:
                os.close(fd)
            except OSError:
                pass
        self.readers = []
        if not self.pid:
            return
        pid, self.pid = self.pid, 0
        try:
            if not stop:
                os.waitpid(pid, 0)
                return
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while os.waitpid(pid, os.WNOHANG)[0] == 0:
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.005)
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
    # The visitor key, read (or made) once before the fork: the counters inherit it, and a
    # key that cannot be read is one line here instead of counters dying one by one.
    config.visitor_key()
    counters = _Counters(config, units, jobs, show_progress)
    try:
        _store_all(config, inputs, units, counters, host, show_progress, warn, result)
    except BaseException:
        counters.close(stop=True)
        raise
    counters.close(stop=False)
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

    store = Store.from_config(config)  # store errors first, then the rest of the imports
    from logcount.classify import BoundedCache, agent_family
    from logcount.rollup_count import working_size
    from logcount.rollup_rows import facts_of, families_of

    cap, keep = config.store_cap(), working_size(config)

    begun = {}
    for inp in inputs:
        store.mark_started(host, source_name(inp.path))
        begun[inp] = time.time()
    family = BoundedCache(agent_family, 50_000)
    family("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Firefox/121.0")  # load ua-parser now
    expected = Counter(u.input for u in units)
    got: Counter[Input] = Counter()
    merged: dict[Input, Counts] = {}
    failed: set[Input] = set()
    with _Progress(show_progress, len(inputs)) as bar:
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
            if inp in merged:  # merged as the parts come: one merge left after the last
                merged[inp].merge(message[3])
                merged[inp].bound(keep, family)
            else:
                merged[inp] = message[3]
            got[inp] += message[2]
            if got[inp] < expected[inp]:
                continue
            counts = merged.pop(inp)
            try:
                stat = os.stat(inp.path)
            except OSError as exc:  # removed while it was read
                warn(f"error: cannot read {inp.path}: {exc.strerror}")
                result.failed.append(inp.path)
                failed.add(inp)
                continue
            families_of(counts.delta, family)
            facts = facts_of(inp, counts, host, config.site, begun[inp], stat, cap)
            store.replace_source(facts)
            result.files += 1
            result.lines += facts.lines
            result.malformed += facts.malformed
            bar.file_done()
    for inp in inputs:  # a counter died (killed, out of memory) before it sent them
        if got[inp] == expected[inp] or inp in failed:
            continue
        warn(f"error: cannot read {inp.path}: its counting process died")
        result.failed.append(inp.path)
    store.dispose()


class _Progress:
    """A rich progress bar (files, lines, lines/s) on a terminal; nothing otherwise.

    The lines column reads the workers' shared counter each time rich redraws (10 times a
    second, from rich's own thread), so it moves while one big file is being read."""

    def __init__(self, enabled: bool, files: int):
        self.enabled = enabled
        self.files = files
        self.counters: _Counters | None = None
        self.started = time.monotonic()
        self.progress: Any = None

    def text(self) -> str:
        n = self.counters.lines if self.counters is not None else 0
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
    try:
        return summary(rollup(config, specs, days, **options))
    finally:
        # The command ends with this: spare the process's exit its final garbage collection
        # over every object left (SQLAlchemy's, the caches), which only frees memory the
        # exit frees anyway: ~70 ms after a rollup of a million lines.
        gc.freeze()
