"""Files in a directory another user may write: the data directory, which the web server's
user owns so that `logcount pipe --user www-data` can write it.

A root process there (a report, `embedded stop`, the nightly rollup) must not be steered
by what that user planted: a symbolic link `redis.log -> /etc/shadow`, a lock file that
is really a FIFO, a `redis.rdb` made to be loaded. So, as root in a directory that
belongs to someone else, logcount *acts as its owner* while it touches it: the effective
user and groups are switched (the saved uid stays 0, so root comes back afterwards) and
every open, link and connect there is checked as the owner, who could do it anyway. The
embedded Redis is started as the owner outright. Files we create are 0600 and
directories 0700; lock and key files are opened without following a link and only when
they are regular files.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from logcount.errors import ConfigError

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # O_NONBLOCK: a planted FIFO


@dataclass(frozen=True)
class Owner:
    """The user a root process acts as in a directory that user owns."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str


def owner_of_uid(uid: int, gid: int) -> Owner:
    """The user `uid` with its own groups (a uid without a passwd entry: `gid` alone)."""
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return Owner(uid, gid, (gid,), str(uid))
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return Owner(uid, entry.pw_gid, groups, entry.pw_name)


def foreign_owner(directory: Path) -> Owner | None:
    """Who a root process must act as in `directory`: its owner when that is another
    user (for a directory not made yet, the owner of its nearest existing parent); None
    when we are not root or the directory is root's own. A root-owned directory that
    others may write is refused: there is nobody to act as."""
    if os.geteuid() != 0:
        return None
    path = Path(os.path.abspath(directory))
    while True:
        try:
            st = os.stat(path)
            break
        except FileNotFoundError:
            if path.parent == path:
                return None
            path = path.parent
        except OSError:
            return None
    if st.st_uid != 0:
        return owner_of_uid(st.st_uid, st.st_gid)
    if st.st_mode & 0o022 and path == Path(os.path.abspath(directory)):
        raise ConfigError(
            f"data directory {path} is root's but writable by other users "
            f"(mode {stat.S_IMODE(st.st_mode):o}): make it 0700, or give it to the user "
            "that writes it (pipe --user)"
        )
    return None


@contextlib.contextmanager
def acting_as(owner: Owner | None) -> Iterator[None]:
    """Inside the block, file accesses are checked as `owner` (nothing changes for None).

    The effective ids are process-wide: keep the block to file-system calls."""
    if owner is None:
        yield
        return
    groups, egid = os.getgroups(), os.getegid()
    os.setgroups(list(owner.groups))
    os.setegid(owner.gid)
    os.seteuid(owner.uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(egid)
        os.setgroups(groups)


def open_dir(path: Path) -> int:
    """A descriptor of `path` (made 0700 if missing) to open files relative to."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def open_regular(dir_fd: int, name: str, flags: int, where: Path) -> int:
    """Open `name` in the directory without following a link (created 0600 when `flags`
    has O_CREAT, never truncated); anything but a regular file is refused."""
    try:
        fd = os.open(name, flags | _NOFOLLOW, PRIVATE_FILE, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"{where / name} is a symbolic link: not following it") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(f"{where / name} is not a regular file: not using it")
    return fd


def open_lock(directory: Path, name: str) -> tuple[int, int]:
    """(directory fd, lock fd): the lock file made 0600 if missing, never truncated."""
    dir_fd = open_dir(directory)
    try:
        return dir_fd, open_regular(dir_fd, name, os.O_RDWR | os.O_CREAT, directory)
    except BaseException:
        os.close(dir_fd)
        raise


def open_append(directory: Path, name: str) -> int:
    """A file to append to in the data directory (a spool file): made 0600 if missing, a
    link refused, opened as the directory's owner when root. The caller closes it."""
    with acting_as(foreign_owner(directory)):
        dir_fd = open_dir(directory)
        try:
            return open_regular(dir_fd, name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, directory)
        finally:
            os.close(dir_fd)


def create_private(path: Path) -> None:
    """Create `path` empty and 0600 unless something by that name exists already (a
    link is neither followed nor replaced): a file's mode is set when it is made."""
    dir_fd = open_dir(path.parent)
    try:
        fd = os.open(
            path.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, PRIVATE_FILE, dir_fd=dir_fd
        )
        os.close(fd)
    except FileExistsError:
        pass
    finally:
        os.close(dir_fd)


def read_or_create_key(directory: Path, name: str, size: int = 32) -> bytes:
    """The random key kept in `directory/name`, made (0600, `size` random bytes) if missing.

    Made under a temporary name and linked into place, so that a process starting at the
    same moment never reads it half written: the first link wins, the others read it."""
    with acting_as(foreign_owner(directory)):
        dir_fd = open_dir(directory)
        try:
            for _ in range(2):
                try:
                    return _read_key(dir_fd, name, size, directory)
                except FileNotFoundError:
                    _create_key(dir_fd, name, size)
            return _read_key(dir_fd, name, size, directory)
        finally:
            os.close(dir_fd)


def _read_key(dir_fd: int, name: str, size: int, where: Path) -> bytes:
    fd = open_regular(dir_fd, name, os.O_RDONLY, where)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise ConfigError(f"{where / name} belongs to uid {st.st_uid}: not using it")
        data = os.read(fd, size + 1)
    finally:
        os.close(fd)
    if len(data) != size:
        raise ConfigError(f"{where / name} is not a key of {size} bytes: remove it")
    return data


def _create_key(dir_fd: int, name: str, size: int) -> None:
    temp = f".{name}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp, dir_fd=dir_fd)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
    fd = os.open(temp, flags, PRIVATE_FILE, dir_fd=dir_fd)
    try:
        os.write(fd, os.urandom(size))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError:
        pass  # another process made it first: we read theirs
    finally:
        os.unlink(temp, dir_fd=dir_fd)
