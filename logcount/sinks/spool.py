"""Spool files: batches that could not reach Redis, kept on disk until they can.

One append-only file per process (`spool-HOST-PID.jsonl`, one batch per line), in a
directory of mode 0700 whose total size is capped (`SPOOL_MAX_BYTES`): past the cap a
batch is refused (SpoolFull) and the sink counts it as dropped. Files are created 0600
and opened with O_NOFOLLOW: a symlink planted in the directory is never followed.

A file is replayed under a name of its own process (renamed first, so appends made
meanwhile go to a new file); files of dead processes of this host are adopted the same
way. Adopted names have a fixed length whatever the number of adoptions. A file that
holds a line that is not a batch is renamed `.bad` once its other lines are replayed:
`.bad` files are never read again, only kept for a person to look at.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

# The name a host's readers and rollups go by (status, positions, the store's sources):
# $LOGCOUNT_HOST where the machine's own name says nothing (containers, a test's "hosts").
HOST = os.environ.get("LOGCOUNT_HOST") or socket.gethostname()
SPOOL_MAX_BYTES = 256 << 20  # the whole directory, `.bad` files included
LINE_MAX = 64 << 20  # a longer line was not written by us: it is bad, and skipped

_CREATE = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


class SpoolFull(Exception):
    """The spool directory is at its size cap: the batch was not written."""


class Spool:
    """This process's spool file, and the adoption and replay of the others."""

    def __init__(
        self,
        directory: Path,
        name: str | None = None,
        max_bytes: int = SPOOL_MAX_BYTES,
        pid: int | None = None,
        log: Callable[[str], None] | None = None,
    ):
        self.directory = directory
        self.pid = pid if pid is not None else os.getpid()
        self.path = directory / (name or f"spool-{HOST}-{self.pid}.jsonl")
        self.max_bytes = max_bytes
        self.batches = 0
        self.log = log if log is not None else (lambda msg: None)

    def _make_dir(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(self.directory)
        if not stat.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, "not a directory", str(self.directory))
        if st.st_uid == os.geteuid() and st.st_mode & 0o077:
            os.chmod(self.directory, 0o700)  # made by an older version, or by hand

    def used(self) -> int:
        """Bytes in the directory's regular files (symlinks are not followed)."""
        total = 0
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    try:
                        if entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue  # replayed and removed meanwhile
        except FileNotFoundError:
            return 0
        return total

    def append(self, line: str | bytes, reserve: bool = False) -> None:
        """Append one batch line (durably); SpoolFull past the cap, OSError if unwritable.
        `reserve`: may use a reserve of an eighth past the cap (a dropped batch's totals)."""
        self.write(self.path, line.encode() if isinstance(line, str) else line, reserve)
        self.batches += 1

    def write(self, path: Path, data: bytes, reserve: bool = False) -> None:
        self._make_dir()
        # A listing per append: appends come at most once a flush, each of many lines.
        cap = self.max_bytes + (self.max_bytes // 8 if reserve else 0)
        if self.used() + len(data) > cap:
            raise SpoolFull(f"spool directory {self.directory} is full ({self.max_bytes:,} bytes)")
        fd = os.open(path, _CREATE, 0o600)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", str(path))
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError:
                # A torn line would join the next one into a bad line: take it back.
                os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)

    def reject(self, line: str) -> Path:
        """Keep a batch Redis refused as invalid in this process's `.bad` file."""
        path = self.directory / f"spool-{HOST}-{self.pid}-rejected.bad"
        self.write(path, line.encode())
        return path

    def quarantine(self, path: Path) -> Path:
        """Rename a spool file that holds bad lines to `.bad`: never replayed again."""
        bad = path.with_suffix(".bad")
        os.replace(path, bad)
        return bad

    def pending_files(self) -> list[Path]:
        """Files to replay, oldest first: spools left by dead processes of this host
        (adopted), then our own. Our own file is renamed first, so that batches appended
        while it is replayed go to a new file instead of being lost with it. Call it with
        appends excluded (LiveSink.lock); it does no network I/O."""
        try:
            if not stat.S_ISDIR(os.lstat(self.directory).st_mode):
                return []  # a symlink in its place is not followed
        except FileNotFoundError:
            return []
        prefix = f"spool-{HOST}-"
        mine = f"{prefix}{self.pid}-"
        for path in self._files(prefix, ".jsonl"):
            if path == self.path or path.name.startswith(mine):
                continue
            pid = path.name[len(prefix) :].split(".")[0].split("-")[0]
            if pid.isdigit() and _pid_alive(int(pid)):
                continue
            self._adopt(path, self.directory / f"{mine}adopted-{uuid.uuid4().hex}.jsonl")
        if _is_regular(self.path):
            os.replace(self.path, self.directory / f"{mine}replay-{time.time_ns()}.jsonl")
            self.batches = 0
        # Oldest first: a file's last append tells its age (the names hold process ids).
        adopted = sorted(self._files(f"{mine}adopted-", ".jsonl"), key=_mtime_and_name)
        return adopted + self._files(f"{mine}replay-", ".jsonl")

    def adopted(self, path: Path) -> bool:
        """Is `path` (of pending_files) a dead process's file, adopted by this one?"""
        return path.name.startswith(f"spool-{HOST}-{self.pid}-adopted-")

    def _adopt(self, path: Path, claimed: Path) -> None:
        try:
            os.rename(path, claimed)
        except FileNotFoundError:
            pass  # another process adopted it first
        except OSError as exc:
            self.log(f"cannot adopt spool file {path}: {exc.strerror}; left in place")

    def _files(self, prefix: str, suffix: str) -> list[Path]:
        """Regular files named prefix*suffix, by name (a planted symlink is left alone)."""
        try:
            with os.scandir(self.directory) as entries:
                names = [
                    e.name
                    for e in entries
                    if e.name.startswith(prefix)
                    and e.name.endswith(suffix)
                    and e.is_file(follow_symlinks=False)
                ]
        except FileNotFoundError:
            return []
        return [self.directory / name for name in sorted(names)]

    def read(self, path: Path) -> Iterator[bytes | None]:
        """The file's complete lines, None for one over LINE_MAX (skipped). A last line
        with no newline was torn by a crash while appending (never acknowledged): ignored."""
        fd = os.open(path, _READ)
        with open(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", str(path))
            # Each line handed over, not kept in a local: while the caller applies the
            # batch of a line, it holds the batch and its payload, not also the line.
            held: list[bytes | None] = []
            while _next_line(fh, held):
                yield held.pop()


def _next_line(fh: BinaryIO, held: list[bytes | None]) -> bool:
    """Appends to `held` the file's next complete line (None for one over LINE_MAX);
    False at the end. A last line without a newline is skipped."""
    while line := fh.readline(LINE_MAX + 1):
        if len(line) <= LINE_MAX:
            if line.endswith(b"\n"):
                held.append(line)
                return True
            continue
        while line and not line.endswith(b"\n"):  # skip the rest of it
            line = fh.readline(LINE_MAX)
        held.append(None)
        return True
    return False


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _mtime_and_name(path: Path) -> tuple[float, str]:
    try:
        return os.lstat(path).st_mtime, path.name
    except OSError:
        return 0.0, path.name


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True
