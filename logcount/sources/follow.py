"""Following one log path through rotation: the read position and the Follower.

Rotation, as a follower meets it:
- the path now names another file (rename-and-create, delete-and-recreate, a cronolog
  `--symlink` or `--hardlink` re-pointed): that file is opened at once, but the old one,
  still open, is read to its end and left once it has been quiet for QUIET seconds; then
  the new file is read from 0. While the path is missing (the moment a link is
  re-pointed) we stay on the old file;
- the file shrank below the offset, or its first bytes changed (copytruncate): the copy
  (a file beside it whose first bytes are the ones we knew) is read from our offset to its
  end, then the truncated file from 0. Every chunk is checked after it is read, so bytes
  read from a file truncated and rewritten meanwhile are never counted;
- a file opened ahead of reading it (the next one, or one rotated while we were stopped)
  keeps the first bytes it showed: if it is copytruncated before we get to it, its copy
  is found the same way and read first;
- after a restart, a saved file that is no longer at the path is looked for by device and
  inode at its saved target and beside the path (logrotate's access.log.1), finished, and
  then the path is read from 0. A rotated file already compressed cannot be finished: the
  rest of it is reported lost (logrotate's `delaycompress` avoids that).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from logcount.count.lines import READ_SIZE, LineSplitter
from logcount.sources.pipeline import Pipeline

HEAD_SIZE = 1024  # bytes hashed to tell a file from another one that reused its inode
QUIET = 0.3  # seconds a replaced file must stay unchanged before we leave it
CHECK_EVERY = 1.0  # while reading flat out, look at what the path names at least this often
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
    copy: str = ""  # reading this copytruncate copy of the file, at `offset`

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
                str(data.get("copy", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass
class Opened:
    """A file opened before we read it, with the first bytes it has shown so far: if they
    change before we get to it, it was truncated and its copy holds what we have not read."""

    fd: int
    target: str
    head: bytes = b""

    def look(self) -> None:
        if len(self.head) < HEAD_SIZE:
            with contextlib.suppress(OSError):
                self.head = head_now(self.fd, self.head) or self.head


def opened(fd: int, target: str) -> Opened:
    found = Opened(fd, target)
    found.look()
    return found


def head_now(fd: int, known: bytes) -> bytes | None:
    """The file's first bytes now, if they still begin with the ones we knew (a log file
    only grows); None when they do not: it was truncated."""
    now = os.pread(fd, HEAD_SIZE, 0)
    return now if now.startswith(known) else None


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
        # The file's first bytes as far as we know them (HEAD_SIZE at most, fewer while it
        # is smaller): a log file only grows, so they change only when it is truncated.
        self.head = b""
        self.target = self.path
        # Reading a copytruncate copy (its path): fd reads the copy, while the identity,
        # head and target stay the truncated file's, which is queued next, from 0.
        self.copy = ""
        self.rotated_at: float | None = None
        self.next: Opened | None = None  # the file the path names now, opened early
        self.queue: list[Opened] = []  # files to read before the path's current one
        self.last_data = 0.0
        self.last_look = 0.0
        self.size = 0
        self.dirty = False
        # The line being read past `offset` (held, or skipped when over-long): whatever
        # moves `offset` otherwise (another file, a truncation) resets it.
        self.lines = LineSplitter()

    # -- the committed position (read by the classifier under pipeline.lock) --------------

    def position(self) -> Position:
        mtime = 0.0
        if self.fd is not None:
            with contextlib.suppress(OSError):
                mtime = os.fstat(self.fd).st_mtime
        return Position(
            self.dev,
            self.ino,
            self.offset,
            digest(self.head),
            len(self.head),
            self.target,
            mtime,
            self.copy,
        )

    def take_position(self) -> str | None:
        if not self.dirty or not self.ino:
            return None
        self.dirty = False
        return self.position().to_json()

    def status(self) -> dict[str, Any]:
        target = (self.copy or self.target) if self.fd is not None else "(waiting for the file)"
        ahead = [*self.queue, *([self.next] if self.next else [])]
        return {
            "path": self.path,
            "target": target,
            "offset": self.offset,
            "lag_bytes": max(0, self.size - self.offset) + sum(_size(o.fd) for o in ahead),
        }

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
        self._adopt(opened(fd, os.path.realpath(self.path)), offset)

    def resume(self, saved: Position) -> None:
        """Go on where the last run committed, wherever rotation has moved that file."""
        if saved.copy and self._resume_copy(saved):
            self._queue_successors(saved)
            return
        found = self._find_saved(saved)
        if found is not None:
            fd, where = found
            if _head_matches(fd, saved) and os.fstat(fd).st_size >= saved.offset:
                if where != self.path and os.path.realpath(self.path) != where:
                    self.log(f"{self.path} rotated while stopped; finishing {where} first")
                self._adopt(Opened(fd, where), saved.offset, dirty=False)
                self._queue_successors(saved)
                return
            # Truncated while we were away: its copy holds the rest, then it is read from 0.
            copy = self._find_copy(saved)
            if copy is not None:
                self._drain_copy(copy, Opened(fd, where), saved)
                self._queue_successors(saved)
                return
            self.log(f"{self.path} was truncated or replaced; reading it from the start")
            os.close(fd)
        elif saved.offset:
            self.log(
                f"{self.path}: {saved.target} (read up to byte {saved.offset}) is "
                "gone or compressed; the rest of it is not counted"
            )
        self._queue_successors(saved)
        if self.queue:
            self._adopt(self.queue.pop(0), 0)
        elif not self._open_path():
            self.log(f"{self.path} does not exist yet; waiting for it")

    def _resume_copy(self, saved: Position) -> bool:
        """We were reading a copytruncate copy: finish it, then the truncated file."""
        fd = open_file(saved.copy)
        if fd is None:
            return False
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == (saved.dev, saved.ino) or st.st_size < saved.offset:
            os.close(fd)
            return False
        if not _head_matches(fd, saved):
            os.close(fd)
            return False
        found = self._find_saved(saved)
        truncated = Opened(*found) if found is not None else None
        self._drain_copy((fd, saved.copy), truncated, saved)
        return True

    def _find_saved(self, saved: Position) -> tuple[int, str] | None:
        """The saved file (by device and inode) at the path, its target, or beside them."""
        for where in (self.path, *_candidates(self.path, saved.target)):
            st = _stat(where)
            if st is None or (st.st_dev, st.st_ino) != (saved.dev, saved.ino):
                continue
            fd = open_file(where)
            if fd is None:
                continue
            return fd, os.path.realpath(where) if where == self.path else where
        return None

    def _find_copy(self, known: Position) -> tuple[int, str] | None:
        """A copytruncate copy of the file `known` describes: another file beside it (or
        beside the path) that starts with the bytes we knew and holds its offset."""
        if not known.head_len:
            return None  # we never saw a byte of it: nothing to recognise a copy by
        identity, offset = (known.dev, known.ino), known.offset
        for where in _candidates(self.path, known.target):
            st = _stat(where)
            if st is None or (st.st_dev, st.st_ino) == identity or st.st_size < offset:
                continue
            if not os.path.isfile(where):
                continue
            fd = open_file(where)
            if fd is None:
                continue
            if _head_matches(fd, known):
                return fd, where
            os.close(fd)
        return None

    def _queue_successors(self, saved: Position) -> None:
        """Files rotated while we were stopped, after the one we were reading, oldest first:
        beside it, named like it, written after it, other than what the path names now."""
        after = saved.mtime
        exclude = {(saved.dev, saved.ino)}
        if self.fd is not None:
            st = os.fstat(self.fd)
            after = max(after, st.st_mtime)
            exclude.add((st.st_dev, st.st_ino))
        for file in self.queue:
            st = os.fstat(file.fd)
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
        added = []
        for _, where in sorted(found):
            fd = open_file(where)
            if fd is not None:
                added.append(opened(fd, where))
        if added:
            self.queue.extend(added)
            listed = ", ".join(o.target for o in added)
            self.log(f"{self.path}: also reading what was rotated while stopped: {listed}")

    # -- switching files -------------------------------------------------------------------

    def _adopt(self, file: Opened, offset: int, dirty: bool = True) -> None:
        """Read `file` from `offset` on. Its first bytes are the ones it showed when opened
        if they have changed since (truncated before we got to it: the first check finds
        its copy)."""
        st = os.fstat(file.fd)
        head = head_now(file.fd, file.head) or file.head
        with self.pipeline.lock:
            if self.fd is not None and self.fd != file.fd:
                os.close(self.fd)
            self.fd = file.fd
            self.dev, self.ino = st.st_dev, st.st_ino
            self.offset = offset
            self.lines.reset()
            self.head = head
            self.target = file.target
            self.copy = ""
            self.size = st.st_size
            self.rotated_at = None
            self.dirty = self.dirty or dirty

    def _drain_copy(
        self, copy: tuple[int, str], truncated: Opened | None, saved: Position | None = None
    ) -> None:
        """Read the copy from our offset (the truncated file's identity kept meanwhile),
        then the truncated file from 0."""
        fd, where = copy
        self.log(f"{self.path} was truncated; finishing its copy {where} first")
        if truncated is not None:
            truncated.look()
            self.queue.insert(0, truncated)
        with self.pipeline.lock:
            if saved is not None:  # resuming: take the saved identity
                self.dev, self.ino, self.offset = saved.dev, saved.ino, saved.offset
                self.head = os.pread(fd, saved.head_len, 0)
                self.target = saved.target
            elif self.fd is not None and (truncated is None or truncated.fd != self.fd):
                os.close(self.fd)
            self.fd = fd
            self.copy = where
            self.lines.reset()
            self.size = os.fstat(fd).st_size
            self.rotated_at = None

    def _switch(self, why: str) -> None:
        """Leave the current file (a torn last line counts as malformed) for the next."""
        assert self.fd is not None
        rest = os.pread(self.fd, 4096, self.offset)
        file: Opened | None = None
        if self.queue:
            file = self.queue.pop(0)
        elif self.next is not None:
            file, self.next = self.next, None
        else:
            fd = open_file(self.path)
            if fd is not None:
                file = opened(fd, os.path.realpath(self.path))
        with self.pipeline.lock:
            self.lines.reset()
            if rest:  # a torn last line, or an over-long one cut by the rotation
                self.pipeline.counter.count_malformed(rest)
            if file is None:
                # Gone again: remember where the old file ended, look for the path later.
                os.close(self.fd)
                self.fd = None
                self.offset += len(rest)
                self.dirty = True
                return
        self.log(f"{self.path}: {why}; now reading {file.target}")
        self._adopt(file, 0)

    # -- following -----------------------------------------------------------------------

    def step(self, now: float) -> bool:
        """Read what is new, handle rotation; True when something was done."""
        if self.fd is None:
            if not self._open_path():
                return False
            self.log(f"{self.path} appeared; reading it from the start")
            return True
        got = self._read()
        if got:
            self.last_data = now
            if now - self.last_look < CHECK_EVERY:
                return True
        self.last_look = now
        if self.copy:
            if not got:
                self._switch("its copy is read")
            return True
        self._look_for_next(now)
        if got or self.rotated_at is None:
            return got
        ready = self.queue or self.next is not None
        if not ready or now - max(self.rotated_at, self.last_data) < QUIET:
            return False  # the old file may still be written; or the path is missing
        self._switch(f"{self.target} is read to its end")
        return True

    def _read(self) -> bool:
        """Read on past the line being held; count the whole lines that completes (an
        over-long one as malformed), moving the offset past each under the same lock. A
        last line without its newline waits for it: it may still be being written."""
        assert self.fd is not None
        lines = self.lines
        n = os.preadv(self.fd, [lines.space()], self.offset + lines.pending)
        # Checked after reading: if the file was truncated (and written again) before the
        # read, these bytes are not the ones after our offset and must not be counted.
        if not self.copy and not self._intact():
            self._truncated()
            return True
        if not n:
            return False
        for piece in lines.filled(n):
            self.pipeline.count_piece(piece, functools.partial(self._advance, piece.size))
        return True

    def _intact(self) -> bool:
        """Not truncated: as long as our offset, starting with the bytes we knew."""
        assert self.fd is not None
        self.size = os.fstat(self.fd).st_size
        if self.size < self.offset + self.lines.pending:
            return False
        now = head_now(self.fd, self.head)
        if now is None:
            return False
        if len(now) > len(self.head):
            with self.pipeline.lock:
                self.head = now
        return True

    def _advance(self, size: int) -> None:
        # Runs under pipeline.lock, together with counting the bytes it moves past.
        self.offset += size
        self.dirty = True

    def _truncated(self) -> None:
        """copytruncate: read the copy from our offset, then this file from 0."""
        assert self.fd is not None
        copy = self._find_copy(self.position())
        if copy is not None:
            self._drain_copy(copy, Opened(self.fd, self.target))
            return
        if self.offset:
            self.log(f"{self.path} was truncated; reading it from the start")
        with self.pipeline.lock:
            self.offset = 0
            self.lines.reset()
            self.head = os.pread(self.fd, HEAD_SIZE, 0)
            self.dirty = True

    def _look_for_next(self, now: float) -> None:
        """Does the path name another file now? Open it at once (a second rotation may
        follow soon), but keep reading ours to its end first."""
        for file in (*self.queue, *([self.next] if self.next else [])):
            file.look()
        st = _stat(self.path)
        if st is not None and (st.st_dev, st.st_ino) == (self.dev, self.ino):
            self.rotated_at = None
            self._close_next()
            return
        if self.rotated_at is None:
            self.rotated_at = now
        if st is None or self.next is not None:
            return  # missing (a link being re-pointed): stay on the old file
        fd = open_file(self.path)
        if fd is not None:
            self.next = opened(fd, os.path.realpath(self.path))

    def _close_next(self) -> None:
        if self.next is not None:
            os.close(self.next.fd)
            self.next = None

    def _open_path(self) -> bool:
        fd = open_file(self.path)
        if fd is None:
            return False
        self._adopt(opened(fd, os.path.realpath(self.path)), 0)
        return True

    def watch_dirs(self) -> set[str]:
        dirs = {os.path.dirname(self.path), os.path.dirname(os.path.realpath(self.path))}
        if self.fd is not None:
            dirs.add(os.path.dirname(self.target))
        return {d for d in dirs if os.path.isdir(d)}

    def close(self) -> None:
        self._close_next()
        for file in self.queue:
            os.close(file.fd)
        self.queue = []
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _size(fd: int) -> int:
    try:
        return os.fstat(fd).st_size
    except OSError:
        return 0


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
