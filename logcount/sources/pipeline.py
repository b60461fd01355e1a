"""The pipeline shared by the live sources (pipe's reader, tail): a LineCounter the
source feeds, an Aggregator, a sink (sinks.base.ResumableSink: the Redis one,
sinks.live.LiveSink), a classifier thread and a sender thread.

The reading thread never waits on Redis: it reads large chunks, splits complete lines and
counts them in memory (LineCounter). A classifier thread wakes every `flush_interval` (or
sooner when the batch is large), classifies what was counted and hands it to the
LiveSink; a sender thread has the LiveSink send it, retry, spool and replay.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from logcount.config import Config
from logcount.count.aggregate import Aggregator
from logcount.count.classify import Classifier
from logcount.count.delta import Delta
from logcount.count.detect import SAMPLE_LINES, FirstLines, first_lines
from logcount.count.events import format_ident, visitor_fields
from logcount.count.line_counter import LineCounter, tune_gc
from logcount.count.lines import Piece, one_malloc_arena, return_freed_buffers
from logcount.count.logformat import compile_format
from logcount.count.section_visitors import section_fields
from logcount.errors import ConfigError, LogcountError
from logcount.sinks.base import ResumableSink
from logcount.sinks.live import HOST, LiveSink

FLUSH_LINES = 10_000  # flush early past this many lines: bounds memory at full speed
HARD_LIMIT = 2 * FLUSH_LINES  # past this the reading thread waits for them to be taken
# The same in distinct keys (hit, visitor, referrer), which is what classifying costs
# (~8 us a key not seen before): a day of distinct URLs makes three keys a line, and a
# batch of 20,000 such lines kept the writer waiting half a second. 10,000 real lines
# hold some 8,300 keys, so real logs reach FLUSH_LINES first, as before.
FLUSH_KEYS = 10_000
HARD_KEYS = 2 * FLUSH_KEYS
# The same in bytes of the keys held: 10,000 lines of 16 KB (8 KB agents and referrers)
# held 160 MB of keys per table; real lines (~200 bytes) reach FLUSH_LINES first.
FLUSH_BYTES = 8 << 20
HARD_BYTES = 3 * FLUSH_BYTES
# (lines, keys, bytes), as LineCounter.pending() counts them
FLUSH_AT = (FLUSH_LINES, FLUSH_KEYS, FLUSH_BYTES)
HARD_AT = (HARD_LIMIT, HARD_KEYS, HARD_BYTES)


def past(pending: tuple[int, int, int], limits: tuple[int, int, int]) -> bool:
    return any(n >= limit for n, limit in zip(pending, limits, strict=True))


RECENT_EVERY = 0.5  # seconds between two updates of the recent-requests list


class StderrLog:
    """One line per message on stderr (Apache's ErrorLog), at most `burst` a minute."""

    def __init__(self, prefix: str = "logcount", burst: int = 10):
        self.prefix = prefix
        self.burst = burst
        self.window = 0.0
        self.sent = 0
        self.suppressed = 0

    def __call__(self, message: str) -> None:
        now = time.monotonic()
        if now - self.window > 60:
            if self.suppressed:
                self._write(f"({self.suppressed} messages suppressed)")
            self.window, self.sent, self.suppressed = now, 0, 0
        if self.sent >= self.burst:
            self.suppressed += 1
            return
        self.sent += 1
        self._write(message)

    def _write(self, message: str) -> None:
        try:
            sys.stderr.write(f"{self.prefix}[{os.getpid()}]: {message}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def check_data_dir(config: Config) -> None:
    """A data directory we cannot write is a set-up error, not something to retry."""
    path = config.resolved_data_dir()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Created, never opened if it exists: another user may have planted a link here.
        probe = path / f".probe-{os.getpid()}-{os.urandom(4).hex()}"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"data directory {path} is not writable: {exc.strerror}") from None


def _event_fields(config: Config) -> tuple[str, ...]:
    """The fields a counter's visitor keys carry for the events and sections of `config`."""
    return visitor_fields(config) + section_fields(config)


def _counter_shape(config: Config) -> tuple[Any, ...]:
    """What a counter is built from that a reload may change (see Pipeline._reload)."""
    return format_ident(config), _event_fields(config), config.count_clients


class Pipeline:
    """Counter + aggregator + sink, and two threads: the part shared by pipe and tail.

    The reading thread only reads and counts (the C scanner). The classifier thread takes
    what was counted and classifies it into a Delta for the sink; the sender thread sends
    the sink's batches to Redis (or the spool). So the reading thread, which must keep
    Apache's pipe drained, never waits on Redis and never classifies while the others run:
    past its limits it waits for the classifier to take its lines, one batch at most."""

    def __init__(
        self,
        config: Config,
        mode: str,
        log: Callable[[str], None],
        sink: ResumableSink | None = None,
        loader: Callable[[], Config] | None = None,
    ):
        return_freed_buffers()
        one_malloc_arena()
        self.config = config
        # How SIGHUP reloads: the command line's own loader keeps its global options.
        self.loader = loader
        self.mode = mode
        self.log = log
        self.counter = self._new_counter(config)
        self.counter_shape = _counter_shape(config)
        self.lock = threading.Lock()  # the counter (and a tail's position)
        self.aggregator = self._new_aggregator(
            config, self.counter, Classifier(config, self.counter.format)
        )
        self.sink: ResumableSink = sink or LiveSink(config, log=log)
        self.absorbing = threading.Lock()  # take + classify + submit, in reading order
        self.recent_sent = 0.0
        self.wake = threading.Event()  # the classifier: take what is pending now
        self.taken = threading.Event()  # the classifier took what was pending
        self.send = threading.Event()  # the sender: a new delta is in the sink
        self.stopping = threading.Event()
        # The sender stops after the classifier: a classifier waiting for it (past the
        # sink's budget) would otherwise wait its whole bound, then spill
        self.sender_stopping = threading.Event()
        # A plain flag: set from a signal handler, which must not take a lock that the
        # interrupted thread may hold.
        self.reload_requested = False
        self.thread = threading.Thread(target=self._classify_loop, name="classifier", daemon=True)
        self.sender = threading.Thread(target=self._send_loop, name="sender", daemon=True)
        self.lines = 0
        self.malformed = 0
        self.started = time.time()
        self.oldest_unflushed = 0.0
        self.rate = 0.0
        self.extra_status: Callable[[], dict[str, Any]] = dict
        # The first lines are judged as they come (count.detect.FirstLines): see _probe()
        self.probe: FirstLines | None = FirstLines(config.log_format, f"{mode} input")
        self.position_extra: Callable[[], dict[str, str]] | None = None

    def start(self) -> None:
        tune_gc()  # this process counts from now on
        if isinstance(self.sink, LiveSink):
            # The classifier may wait for a healthy sender past the sink's budget; the
            # reading thread never does (it waits for the classifier, HARD_AT, at most)
            self.sink.wait_in(self.thread, self.send.set)
        self.thread.start()
        self.sender.start()

    def feed(self, chunk: bytes, after: Callable[[], None] | None = None) -> None:
        """Count `chunk`; `after` runs under the same lock (tail: advance the read position)."""
        if self.probe is not None:
            self._probe(first_lines(chunk, SAMPLE_LINES - self.probe.seen))
        with self.lock:
            self.counter.feed(chunk)
            if after is not None:
                after()
            if not self.oldest_unflushed:
                self.oldest_unflushed = time.time()
            pending = self.counter.pending()
            if past(pending, FLUSH_AT):
                self.wake.set()
        if past(pending, HARD_AT):
            self.catch_up()

    def _over_hard_limit(self) -> bool:
        with self.lock:
            return past(self.counter.pending(), HARD_AT)

    def catch_up(self) -> None:
        """The classifier is behind: we read faster than we classify. Memory must stay
        bounded, so reading waits until what is pending has been taken: as soon as the
        classifier is done with the batch it holds (it never waits on Redis). Without a
        classifier thread (not started, or stopping) the lines are classified here."""
        while self._over_hard_limit():
            if not self.thread.is_alive() or self.stopping.is_set():
                self.absorb()
                return
            self.wake.set()
            self.taken.wait(0.05)
            self.taken.clear()

    def count_piece(self, piece: Piece, after: Callable[[], None] | None = None) -> None:
        """Count what the line splitter gave: whole lines, or an over-long line (malformed);
        `after` as in feed()."""
        if piece.lines is not None:
            self.feed(bytes(piece.lines), after)
            return
        if self.probe is not None:
            self._probe([piece.long or b""])
        with self.lock:
            self.counter.count_malformed(piece.long or b"")
            if after is not None:
                after()

    def _probe(self, lines: list[bytes]) -> None:
        """Judge the first SAMPLE_LINES lines; once they are in, say once on stderr when
        most are malformed."""
        assert self.probe is not None
        self.probe.add(lines)
        if self.probe.full:
            self._judge()

    def _judge(self) -> None:
        probe, self.probe = self.probe, None
        warning = probe.verdict() if probe is not None else None
        if warning:
            self.log(f"warning: {warning}")

    def _every(
        self, woken: threading.Event, name: str, work: Callable[[], None], stop: threading.Event
    ) -> None:
        """Run `work` every flush interval or when `woken`, until `stop`; a bug in it is
        logged, never the end of the thread."""
        while not stop.is_set():
            woken.wait(self.config.flush_interval)
            woken.clear()
            if stop.is_set():
                break
            try:
                work()
            except Exception as exc:  # noqa: BLE001 - the thread must outlive a bug
                self.log(f"internal error in the {name} ({exc!r}); counts kept, retrying")

    def _classify_loop(self) -> None:
        """Every flush interval, or when woken (the reader is past FLUSH_AT): classify,
        then wake the sender."""

        def classify() -> None:
            try:
                self._classify_once()
            finally:
                self.send.set()

        self._every(self.wake, "classifier", classify, self.stopping)

    def _send_loop(self) -> None:
        """Send what the classifier handed over; a heartbeat every second or interval."""
        last_beat = 0.0

        def send() -> None:
            nonlocal last_beat
            try:
                self.sink.flush()
            finally:
                now = time.monotonic()
                if now - last_beat >= max(1.0, self.config.flush_interval):
                    self.heartbeat()
                    last_beat = now

        self._every(self.send, "sender", send, self.sender_stopping)

    def _classify_once(self) -> None:
        if self.reload_requested:
            self.reload_requested = False
            self._reload()
        self.absorb()

    def flush_once(self) -> None:
        """Classify what is pending and send it, in the calling thread."""
        self._classify_once()
        self.sink.flush()

    def absorb(self) -> None:
        """Take what was counted (with its read position), classify it, hand it to the sink.

        One at a time, so that batches reach the sink in the order they were read (a
        position must never go back)."""
        with self.absorbing:
            self._absorb_taken()

    def _absorb_taken(self, renewed: LineCounter | None = None) -> None:
        """absorb()'s work, under the absorbing lock; with `renewed`, the counter that
        takes over from the one taken from, swapped under the same lock."""
        # Under load batches come many times a second: the recent list only needs
        # the latest requests now and then, not every batch's last 1,000.
        now = time.monotonic()
        with_recent = now - self.recent_sent >= RECENT_EVERY
        with self.lock:
            raw = self.counter.take(with_recent)
            if renewed is not None:
                self.counter = renewed
            position = self.position_extra() if self.position_extra else None
            self.oldest_unflushed = 0.0
        self.taken.set()
        if raw.recent:
            self.recent_sent = now
        if raw:
            before = self.lines
            self.lines += raw.lines
            self.malformed += raw.malformed
            elapsed = max(time.time() - raw.arrival, 1e-3)
            self.rate = (self.lines - before) / elapsed
            try:
                delta = self.aggregator.classify(raw)
            except Exception as exc:  # noqa: BLE001 - a bug must not stop the reader
                # The read position moves past these lines with this batch: count
                # them (as malformed) rather than lose them without a trace.
                self.log(
                    f"internal error classifying a batch ({exc!r}); its {raw.lines} "
                    "lines are counted as malformed"
                )
                delta = self.aggregator.unclassified(raw)
            # The batch's keys go before the sink merges, and maybe spills (the pipe's peak
            # on a diverse day): 20,000 keys' tuples and Counters, some 7 MB.
            del raw
            self.sink.submit(delta, position)
        elif position:
            self.sink.submit(Delta(), position)  # a position with no new counts

    def _new_counter(self, config: Config) -> LineCounter:
        """A counter for `config`: the running log format (a new one needs a restart),
        visitor keys with the fields its events and sections need."""
        fmt = compile_format(self.config.log_format, ident=format_ident(config))
        return LineCounter(
            fmt,
            config.recent_size,
            count_clients=config.count_clients,
            event_fields=_event_fields(config),
        )

    def _new_aggregator(
        self, config: Config, counter: LineCounter, classifier: Classifier
    ) -> Aggregator:
        """An aggregator for `config` over `counter`, whose scanner numbers the visitors
        (for the site's and the sections' sets) unless events need their key tuples."""
        aggregator = Aggregator(config, counter, classifier, section_depth=config.section_depth)
        with self.lock:  # take() reads the numbering
            aggregator.number_visitors()
        return aggregator

    def _reload(self) -> None:
        from logcount.count.checks import load_checked

        try:
            config = self.loader() if self.loader else load_checked(self.config.source or None)
            renew = _counter_shape(config) != self.counter_shape
            counter = self._new_counter(config) if renew else self.counter
            classifier = Classifier(config, counter.format)
        except LogcountError as exc:
            self.log(f"reload failed, keeping the previous configuration: {exc}")
            return
        if renew:
            # Events or sections that need other fields in the visitor keys: what the old
            # counter holds is classified as it was counted, and the reading thread counts
            # into the new one from the same instant (under the counter's lock).
            with self.absorbing:
                self._absorb_taken(counter)
                self.aggregator = self._new_aggregator(config, counter, classifier)
                self.counter_shape = _counter_shape(config)
        else:
            self.aggregator = self._new_aggregator(config, self.counter, classifier)
        self.log(f"configuration reloaded ({len(classifier.routes)} routes)")

    def heartbeat(self) -> None:
        info = {
            "host": HOST,
            "pid": os.getpid(),
            "mode": self.mode,
            "lines": self.lines,
            "malformed": self.malformed,
            "malformed_share": round(self.malformed / max(1, self.lines + self.malformed), 4),
            "log_format": self.config.log_format,
            "rate": round(self.rate, 1),
            "lag": round(time.time() - self.oldest_unflushed, 3) if self.oldest_unflushed else 0,
            "last_flush": self.sink.last_flush,
            **self.sink.status(),  # spooled, pending, dropped_* and rejected_* counts
            "error": self.sink.last_error,
            "started": self.started,
            "site": self.config.site,
            "stopped": self.stopping.is_set(),
            **self.extra_status(),
        }
        try:
            self.sink.heartbeat(info)
        except LogcountError:
            pass

    def close(self) -> bool:
        """Stop the threads and flush everything (to Redis, else to the spool)."""
        if self.probe is not None and self.probe.seen:  # fewer than SAMPLE_LINES came
            self._judge()
        self.stopping.set()
        self.wake.set()
        if self.thread.is_alive():
            self.thread.join()
        self.sender_stopping.set()
        self.send.set()
        if self.sender.is_alive():
            self.sender.join()
        if isinstance(self.sink, LiveSink):
            # This thread sends what it classifies next, at once: a healthy sender is no
            # reason to spill the last batch (its replay would follow within the second)
            self.sink.wait_in(threading.current_thread(), None)
        self.flush_once()
        done = self.sink.close()
        if done:
            self.heartbeat()
        return done
