"""`logcount tail`: follow growing log files through rotation, each line counted once.

Every followed path has a read position: the identity of the file being read (device,
inode, and a hash of its first bytes, so that a reused inode is not mistaken for the same
file), the offset of the first byte not yet counted, and the file's real path (the
target, when the followed path is a cronolog symlink). The offset only ever points just
past a newline: a partial last line is simply read again later.

Exactly once: a chunk is counted and the in-memory offset advanced under the pipeline's
lock, and the classifier takes the counts and the positions under that same lock, so the
Lua call that applies a batch also stores the positions that produced it
(Pipeline.position_extra). A `kill -9` at any moment leaves Redis with counts and
positions that agree. At start, batches spooled while Redis was away (they carry newer
positions) are replayed before the positions are read; while Redis is unreachable at
start we wait: a tail blocks no writer, and reading from a stale position would count
twice. A Redis Cluster applies one call per site, so there it is at least once.

The rotation cases are handled by logcount.sources.follow.Follower.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis

from logcount.config import Config
from logcount.count.logformat import compile_format
from logcount.errors import ConfigError, LogcountError
from logcount.sinks import keys
from logcount.sinks.live import BACKOFF_CAP, BACKOFF_START, HOST
from logcount.sources.follow import QUIET, Follower, Position
from logcount.sources.pipeline import Pipeline, StderrLog, check_data_dir

POLL_INTERVAL = 0.25  # --poll: how often files are looked at
IDLE_WAIT = 1.0  # with inotify: a safety-net look even without events


class Tailer:
    """Follows paths into one Pipeline until SIGTERM/SIGINT; SIGHUP reloads."""

    def __init__(
        self,
        config: Config,
        paths: Iterable[str],
        from_start: bool = False,
        poll: bool = False,
        log: Callable[[str], None] | None = None,
    ):
        self.config = config
        self.paths = list(dict.fromkeys(os.path.abspath(p) for p in paths))
        self.from_start = from_start
        self.poll = poll
        self.log = log or StderrLog("logcount tail")
        # Set by the signal handler, read by the loops: a handler must not touch a lock the
        # interrupted thread may hold (Event.set() inside an Event.wait() deadlocks).
        self.stop_requested = False
        self.changed = threading.Event()
        self.followers: list[Follower] = []
        self.pipeline: Pipeline
        self.observer: Any = None
        self.handler: Any = None
        self.watched: set[str] = set()

    def install_signals(self) -> None:
        def on_term(signum: int, frame: Any) -> None:
            self.stop_requested = True

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, self._on_hup)

    def _on_hup(self, signum: int, frame: Any) -> None:
        if hasattr(self, "pipeline"):  # not before the format is known (auto)
            self.pipeline.reload_requested = True

    def detect_format(self) -> Config | None:
        """Under `--log-format auto`, the config with the format read from the first lines
        of the first followed file that has any (waiting until one has); None when
        stopped while waiting."""
        from dataclasses import replace

        from logcount.count.detect import AUTO, detect_format

        if self.config.log_format != AUTO:
            return self.config
        said = False
        while not self.stop_requested:
            for path in self.paths:
                head = _head(path)
                if b"\n" in head:
                    return replace(self.config, log_format=detect_format(head, path))
            if not said:
                self.log("--log-format auto: waiting for a first line to tell the format")
                said = True
            self.pause(POLL_INTERVAL)
        return None

    def run(self) -> int:
        for path in self.paths:
            if os.path.isdir(path):
                raise ConfigError(f"{path} is a directory, not a log file")
        check_data_dir(self.config)
        # Read before any thread starts: as root in another user's data directory the key
        # is read as that user, which must not overlap the main thread opening a log.
        self.config.visitor_key()
        self.install_signals()
        config = self.detect_format()
        if config is None:
            return 0  # stopped before any line: nothing read
        self.config = config
        self._one_site: bool | None = None  # known once a heartbeat asks (delivery)
        self.pipeline = Pipeline(self.config, "tail", self.log)
        saved = self.wait_for_positions()
        if saved is None:
            return 0  # stopped while waiting for Redis: nothing read, nothing to flush
        if self.pipeline.sink.cluster:
            self.log(
                "Redis Cluster: counts are at least once (positions ride in a separate "
                "call per site)"
            )
        self.followers = [Follower(p, self.pipeline, self.log) for p in self.paths]
        for follower in self.followers:
            follower.start(saved.get(follower.path), self.from_start)
        self.pipeline.position_extra = self.take_positions
        self.pipeline.extra_status = self.status
        self.pipeline.start()
        try:
            if not self.poll:
                self.start_observer()
            self.follow()
        finally:
            self.stop_observer()
            self.pipeline.close()
            for follower in self.followers:
                follower.close()
        return 0

    def position_key(self, path: str) -> str:
        return keys.position(self.config.site, HOST, path)

    def wait_for_positions(self) -> dict[str, Position] | None:
        """Replay the spool, then read the saved positions; wait while Redis is away."""
        delay = BACKOFF_START
        waiting = False
        while not self.stop_requested:
            try:
                if self.pipeline.sink.flush(force=True):
                    return self.read_positions()
                error = self.pipeline.sink.last_error
            except (LogcountError, redis.RedisError, OSError) as exc:
                error = str(exc)
            if not waiting:
                self.log(f"{error}; waiting for Redis before reading saved positions")
                waiting = True
            self.pause(delay)
            delay = min(BACKOFF_CAP, delay * 2)
        return None

    def pause(self, seconds: float) -> None:
        """Sleep, but not past a stop signal."""
        deadline = time.monotonic() + seconds
        while not self.stop_requested and time.monotonic() < deadline:
            time.sleep(min(0.1, deadline - time.monotonic()))

    def read_positions(self) -> dict[str, Position]:
        names = [self.position_key(p) for p in self.paths]
        values = self.pipeline.sink.saved(names)
        out = {}
        for path, value in zip(self.paths, values, strict=True):
            pos = Position.from_json(value)
            if pos is not None:
                out[path] = pos
        return out

    def take_positions(self) -> dict[str, str]:
        # Called by the classifier under pipeline.lock, with the counts these offsets produced.
        out = {}
        for follower in self.followers:
            record = follower.take_position()
            if record is not None:
                out[self.position_key(follower.path)] = record
        return out

    def status(self) -> dict[str, Any]:
        return {"files": [f.status() for f in self.followers], "delivery": self.delivery()}

    def delivery(self) -> str:
        """A cluster commits a position with the counts of its site (the configured one)
        only: exactly once when every line is of that site (no %v in the format)."""
        if not self.pipeline.sink.cluster:
            return "exactly-once"
        if self._one_site is None:
            self._one_site = compile_format(self.config.log_format).index("site") < 0
        return "exactly-once" if self._one_site else "at-least-once (Redis Cluster, %v)"

    def follow(self) -> None:
        last_watch = 0.0
        while not self.stop_requested:
            self.changed.clear()
            now = time.monotonic()
            progressed = False
            for follower in self.followers:
                progressed = follower.step(now) or progressed
            if self.observer is not None and now - last_watch >= 1.0:
                self.watch_new_dirs()
                last_watch = now
            if progressed:
                continue
            rotating = any(f.rotated_at is not None for f in self.followers)
            wait = POLL_INTERVAL if self.poll or self.observer is None else IDLE_WAIT
            self.changed.wait(min(wait, QUIET / 2) if rotating else wait)

    def start_observer(self) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        changed = self.changed

        class Wake(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                changed.set()

        self.handler = Wake()
        try:
            self.observer = Observer()
            self.observer.start()
        except Exception as exc:  # noqa: BLE001 - no inotify here: polling still works
            self.log(f"file events unavailable ({exc}); polling instead")
            self.observer = None
            return
        self.watch_new_dirs()

    def watch_new_dirs(self) -> None:
        wanted = set().union(*(f.watch_dirs() for f in self.followers))
        for directory in sorted(wanted - self.watched):
            try:
                self.observer.schedule(self.handler, directory, recursive=False)
            except Exception as exc:  # noqa: BLE001 - e.g. the inotify watch limit
                self.log(f"cannot watch {directory} ({exc}); polling instead")
                self.stop_observer()
                return
            self.watched.add(directory)

    def stop_observer(self) -> None:
        if self.observer is not None:
            with contextlib.suppress(Exception):
                self.observer.stop()
                self.observer.join(5)
            self.observer = None


def _head(path: str) -> bytes:
    """The first bytes of a log file (b"" when it cannot be read yet)."""
    from logcount.count.detect import SAMPLE_BYTES

    try:
        # a pipe would block the open, and its first lines are the reader's to count
        if not stat.S_ISREG(os.stat(path).st_mode):
            return b""
        with open(path, "rb") as f:
            return f.read(SAMPLE_BYTES)
    except OSError:
        return b""
