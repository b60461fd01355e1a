"""Following one log path through rotation: the read position and the Follower.

Rotation, as a follower meets it:
- the path now names another file (rename-and-create, delete-and-recreate, a cronolog
  `--symlink` or `--hardlink` re-pointed): the old file, still open, is read to its end
  and left once it has been quiet for QUIET seconds; then the new file is read from 0.
  While the path is missing (the moment a link is re-pointed) we stay on the old file;
- the file shrank below the offset, or its first bytes changed (copytruncate): the copy
  (a file beside it whose first bytes match ours) is read from our offset to its end,
  then the truncated file from 0;
- after a restart, a saved file that is no longer at the path is looked for by device and
  inode at its saved target and beside the path (logrotate's access.log.1), finished, and
  then the path is read from 0. A rotated file already compressed cannot be finished: the
  rest of it is reported lost (logrotate's `delaycompress` avoids that).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from logcount.reader import MAX_LINE, READ_SIZE, Pipeline

HEAD_SIZE = 1024  # bytes hashed to tell a file from another one that reused its inode
QUIET = 0.3  # seconds a replaced file must stay unchanged before we leave it
CHECK_EVERY = 1.0  # while reading flat out, look for truncation at least this often
COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".z", ".zip")


@dataclass
class Position:
    """What is committed to Redis for one followed path."""

    dev: int
    ino: int
    offset: int
    head: str  # blake2b of the first head_len bytes of the file
    head_len: int
    target: str
    mtime: float = 0.0  # of the file when committed: later files beside it came after it

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes | None) -> Position | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(
                int(data["dev"]),
                int(data["ino"]),
                int(data["offset"]),
                str(data["head"]),
                int(data["head_len"]),
                str(data["target"]),
                float(data.get("mtime", 0.0)),
            )
        except (ValueError, KeyError, TypeError):
            return None


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def open_file(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def line_start_before(fd: int, size: int) -> int:
    """The offset just past the last newline before `size` (where `--from-end` starts)."""
    start = max(0, size - READ_SIZE)
    data = os.pread(fd, size - start, start)
    end = data.rfind(b"\n")
    if end >= 0:
        return start + end + 1
    return size if start > 0 else 0


class Follower:
    """One followed path: the open file, its identity and the read offset."""

    def __init__(self, path: str, pipeline: Pipeline, log: Callable[[str], None]):
        self.path = os.path.abspath(path)
        self.pipeline = pipeline
        self.log = log
        self.fd: int | None = None
        self.dev = 0
        self.ino = 0
        self.offset = 0
        # The file's first HEAD_SIZE bytes (fewer while it is smaller), whether read yet or
        # not: a log file only grows, so they change only when it is truncated or replaced.
        self.head = b""
        self.target = self.path
        self.draining_copy = False  # reading a copytruncate copy; identity kept as is
        self.rotated_at: float | None = None
        self.next_fd: int | None = None  # the file now at the path, opened early
        self.next_target = ""
        self.queue: list[tuple[int, str]] = []  # files rotated while stopped, to read first
        self.last_data = 0.0
        self.last_check = 0.0
        self.size = 0
        self.dirty = False

    # -- the committed position (read by the flusher under pipeline.lock) --------------

    def position(self) -> Position:
        mtime = 0.0
        if self.fd is not None:
            with contextlib.suppress(OSError):
                mtime = os.fstat(self.fd).st_mtime
        return Position(
            self.dev, self.ino, self.offset, digest(self.head), len(self.head), self.target, mtime
        )

    def take_position(self) -> str | None:
        if not self.dirty or not self.ino:
            return None
        self.dirty = False
        if len(self.head) < HEAD_SIZE and self.fd is not None:
            # A new file may be nearly empty when we switch to it: hash what it holds now,
            # so a copytruncate while we are stopped is still told apart after a restart.
            with contextlib.suppress(OSError):
                more = os.pread(self.fd, HEAD_SIZE, 0)
                if more.startswith(self.head):
                    self.head = more
        return self.position().to_json()

    def status(self) -> dict[str, Any]:
        target = self.target if self.fd is not None else "(waiting for the file)"
        return {
            "path": self.path,
            "target": target,
            "offset": self.offset,
            "lag_bytes": max(0, self.size - self.offset) + self.next_size(),
        }

    def next_size(self) -> int:
        try:
            return os.fstat(self.next_fd).st_size if self.next_fd is not None else 0
        except OSError:
            return 0

    # -- start ---------------------------------------------------------------------------

    def start(self, saved: Position | None, from_start: bool) -> None:
        if saved is not None:
            self.resume(saved)
            return
        fd = open_file(self.path)
        if fd is None:
            self.log(f"{self.path} does not exist yet; waiting for it")
            return
        size = os.fstat(fd).st_size
        offset = 0 if from_start else line_start_before(fd, size)
        self._adopt(fd, os.path.realpath(self.path), offset)

    def resume(self, saved: Position) -> None:
        """Go on where the last run committed, wherever rotation has moved that file."""
        st = _stat(self.path)
        if st is not None and (st.st_dev, st.st_ino) == (saved.dev, saved.ino):
            fd = open_file(self.path)
            if fd is not None and _head_matches(fd, saved) and os.fstat(fd).st_size >= saved.offset:
                self._adopt(fd, os.path.realpath(self.path), saved.offset, dirty=False)
                return
            if fd is not None:
                os.close(fd)
            if self._drain_copy_of(saved):  # truncated while we were away
                self._queue_successors(saved)
                return
            self.log(f"{self.path} was truncated or replaced; reading it from the start")
        else:
            found = self._find(saved, same_inode=True)
            if found is not None:
                fd, where = found
                self.log(f"{self.path} rotated while stopped; finishing {where} first")
                self._adopt(fd, where, saved.offset, dirty=False)
                self._queue_successors(saved)
                return
            if self._drain_copy_of(saved):  # a copytruncate copy, the path since re-pointed
                self._queue_successors(saved)
                return
            if saved.offset:
                self.log(
                    f"{self.path}: {saved.target} (read up to byte {saved.offset}) is "
                    "gone or compressed; the rest of it is not counted"
                )
            self._queue_successors(saved)
            if self.queue:
                fd, where = self.queue.pop(0)
                self._adopt(fd, where, 0)
                return
        fd = open_file(self.path)
        if fd is None:
            self.log(f"{self.path} does not exist yet; waiting for it")
            return
        self._adopt(fd, os.path.realpath(self.path), 0)

    def _adopt(self, fd: int, target: str, offset: int, dirty: bool = True) -> None:
        st = os.fstat(fd)
        with self.pipeline.lock:
            if self.fd is not None and self.fd != fd:
                os.close(self.fd)
            self.fd = fd
            self.dev, self.ino = st.st_dev, st.st_ino
            self.offset = offset
            self.head = os.pread(fd, HEAD_SIZE, 0)
            self.target = target
            self.size = st.st_size
            self.draining_copy = False
            self.rotated_at = None
            self.dirty = self.dirty or dirty

    def _find(self, saved: Position, same_inode: bool) -> tuple[int, str] | None:
        """The saved file, elsewhere: by inode (renamed), or by content (a copy)."""
        for where in _candidates(self.path, saved.target):
            st = _stat(where)
            if st is None or not os.path.isfile(where):
                continue
            if same_inode != ((st.st_dev, st.st_ino) == (saved.dev, saved.ino)):
                continue
            if st.st_size < saved.offset:
                continue
            fd = open_file(where)
            if fd is None:
                continue
            if _head_matches(fd, saved):
                return fd, where
            os.close(fd)
        return None

    def _queue_successors(self, saved: Position) -> None:
        """Files rotated while we were stopped, after the one we were reading, oldest first:
        beside it, named like it, written after it, other than what the path names now."""
        after = saved.mtime
        exclude = set()
        if self.fd is not None:
            st = os.fstat(self.fd)
            after = max(after, st.st_mtime)
            exclude.add((st.st_dev, st.st_ino))
        current = _stat(self.path)
        if current is not None:
            exclude.add((current.st_dev, current.st_ino))
        names = {os.path.basename(self.path), os.path.basename(saved.target)}
        found = []
        for where in _candidates(self.path, saved.target):
            cand = _stat(where)
            if (
                cand is None
                or not os.path.isfile(where)
                or cand.st_mtime <= after
                or (cand.st_dev, cand.st_ino) in exclude
                or not _named_like(where, names)
            ):
                continue
            exclude.add((cand.st_dev, cand.st_ino))
            found.append((cand.st_mtime, where))
        for _, where in sorted(found):
            fd = open_file(where)
            if fd is not None:
                self.queue.append((fd, where))
        if self.queue:
            listed = ", ".join(where for _, where in self.queue)
            self.log(f"{self.path}: also reading what was rotated while stopped: {listed}")

    def _drain_copy_of(self, saved: Position) -> bool:
        """After copytruncate: read the copy from our offset to its end, then the path."""
        if not saved.offset:
            return False
        found = self._find(saved, same_inode=False)
        if found is None:
            return False
        fd, where = found
        self.log(f"{self.path} was truncated; finishing its copy {where} first")
        with self.pipeline.lock:
            if self.fd is not None and self.fd != fd:
                os.close(self.fd)
            self.fd = fd
            self.dev, self.ino = saved.dev, saved.ino
            self.offset = saved.offset
            self.head = os.pread(fd, saved.head_len, 0)
            self.target = where
            self.size = os.fstat(fd).st_size
            self.draining_copy = True
            self.rotated_at = None
        return True

    # -- following -----------------------------------------------------------------------

    def step(self, now: float) -> bool:
        """Read what is new, handle rotation; True when something was done."""
        if self.fd is None:
            return self._open_path()
        got = self._read()
        if got:
            self.last_data = now
            if now - self.last_check < CHECK_EVERY:
                return True
        self.last_check = now
        if self.draining_copy:
            if not got:
                self._switch("its copy is read")
            return True
        if self._check_truncation():
            return True
        self._look_for_next(now)
        if got or self.rotated_at is None:
            return got
        ready = self.queue or self.next_fd is not None
        if not ready or now - max(self.rotated_at, self.last_data) < QUIET:
            return False  # the old file may still be written; or the path is missing
        self._switch(f"{self.target} is read to its end")
        return True

    def _read(self) -> bool:
        assert self.fd is not None
        data = os.pread(self.fd, READ_SIZE, self.offset)
        if not data:
            return False
        end = data.rfind(b"\n")
        if end < 0:
            if len(data) < READ_SIZE:
                return False  # a partial last line: held until its newline is written
            return self._skip_long_line()
        chunk = data[: end + 1] if end + 1 < len(data) else data
        self.pipeline.feed(chunk, lambda: self._advance(chunk))
        return True

    def _advance(self, chunk: bytes) -> None:
        # Runs under pipeline.lock, together with counting `chunk`.
        self.offset += len(chunk)
        self.dirty = True

    def _skip_long_line(self) -> bool:
        """A line longer than MAX_LINE is garbage: count it malformed once it ends."""
        assert self.fd is not None
        scan = self.offset + READ_SIZE
        while True:
            data = os.pread(self.fd, READ_SIZE, scan)
            if not data:
                return False  # not ended yet
            end = data.find(b"\n")
            if end >= 0:
                first = os.pread(self.fd, 4096, self.offset)
                stop = scan + end + 1
                with self.pipeline.lock:
                    self.pipeline.counter.count_malformed(first)
                    self.offset = stop
                    self.dirty = True
                return True
            scan += len(data)
            if scan - self.offset > 64 * MAX_LINE:
                return False

    def _check_truncation(self) -> bool:
        """copytruncate: the file shrank below our offset, or its first bytes changed."""
        assert self.fd is not None
        if self.draining_copy:
            return False
        size = os.fstat(self.fd).st_size
        self.size = size
        if size >= self.offset and os.pread(self.fd, len(self.head), 0) == self.head:
            return False
        saved = self.position()
        if self._drain_copy_of(saved):
            return True
        if self.offset:
            self.log(f"{self.path} was truncated; reading it from the start")
        with self.pipeline.lock:
            self.offset = 0
            self.head = os.pread(self.fd, HEAD_SIZE, 0)
            self.dirty = True
        return True

    def _look_for_next(self, now: float) -> None:
        """Does the path name another file now? Open it at once (a second rotation may
        follow soon), but keep reading ours to its end first."""
        st = _stat(self.path)
        if st is not None and (st.st_dev, st.st_ino) == (self.dev, self.ino):
            self.rotated_at = None
            self._close_next()
            return
        if self.rotated_at is None:
            self.rotated_at = now
        if st is None or self.next_fd is not None:
            return  # missing (a link being re-pointed): stay on the old file
        self.next_fd = open_file(self.path)
        self.next_target = os.path.realpath(self.path)

    def _close_next(self) -> None:
        if self.next_fd is not None:
            os.close(self.next_fd)
            self.next_fd = None

    def _switch(self, why: str) -> None:
        """Leave the current file (a torn last line counts as malformed) for the next."""
        assert self.fd is not None
        rest = os.pread(self.fd, 4096, self.offset)
        fd: int | None
        if self.queue:
            fd, target = self.queue.pop(0)
        else:
            fd, target = self.next_fd, self.next_target
            self.next_fd = None
            if fd is None:
                fd, target = open_file(self.path), os.path.realpath(self.path)
        with self.pipeline.lock:
            if rest:
                self.pipeline.counter.count_malformed(rest)
            os.close(self.fd)
            self.fd = None
            if fd is None:
                # Gone again: remember where the old file ended, look for the path later.
                self.offset += len(rest)
                self.dirty = True
                return
        self.log(f"{self.path}: {why}; following the new file")
        self._adopt(fd, target, 0)

    def _open_path(self) -> bool:
        fd = open_file(self.path)
        if fd is None:
            return False
        self.log(f"{self.path} appeared; reading it from the start")
        self._adopt(fd, os.path.realpath(self.path), 0)
        return True

    def watch_dirs(self) -> set[str]:
        dirs = {os.path.dirname(self.path), os.path.dirname(os.path.realpath(self.path))}
        if self.fd is not None:
            dirs.add(os.path.dirname(self.target))
        return {d for d in dirs if os.path.isdir(d)}

    def close(self) -> None:
        self._close_next()
        for fd, _ in self.queue:
            os.close(fd)
        self.queue = []
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _head_matches(fd: int, saved: Position) -> bool:
    data = os.pread(fd, saved.head_len, 0)
    return len(data) == saved.head_len and digest(data) == saved.head


def _stem(name: str) -> str:
    """access.log for access.log.1, access.log-20261122 and access.log.2"""
    return re.sub(r"(?:[.\-_]\d+)+$", "", name)


def _named_like(where: str, names: set[str]) -> bool:
    """Rotations of the same log: access.log.1, access.log-20261122 beside access.log;
    cronolog's 20261122.log beside 20261121.log (the same name but for its digits)."""
    base = os.path.basename(where)
    return any(
        _stem(base) == _stem(name) or re.sub(r"\d", "0", base) == re.sub(r"\d", "0", name)
        for name in names
    )


def _candidates(path: str, target: str) -> Iterable[str]:
    """Where a rotated file may be: its saved target, then files beside the path."""
    seen = {path}
    if target not in seen:
        seen.add(target)
        yield target
    for directory in dict.fromkeys((os.path.dirname(path), os.path.dirname(target))):
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            where = os.path.join(directory, name)
            if where in seen or name.lower().endswith(COMPRESSED):
                continue
            seen.add(where)
            yield where
