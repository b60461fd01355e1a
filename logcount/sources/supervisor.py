"""`logcount pipe`: a supervisor that forks a reader child and keeps one alive until EOF.

Apache respawns a piped logger that exits, at once and without back-off, so this process
must not exit except at EOF, and must never stop reading: if the child dies it forks
another that goes on reading the same stdin. Signal handlers only record the signal; the
main loop dispatches to the handle_* methods.
"""

from __future__ import annotations

import errno
import os
import pickle
import pwd
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from logcount.config import Config, visitor_keys
from logcount.errors import ConfigError, LogcountError
from logcount.sources.pipeline import StderrLog
from logcount.sources.reader import Reader

EX_OK = 0
EX_CONFIG = 78
RESPAWN_MIN = 0.05
RESPAWN_MAX = 5.0
STABLE_AFTER = 10.0  # a child that lived this long resets the back-off
KILL_MARGIN = 5.0  # seconds past the grace period before a child is killed
# Blocked until their handlers are in place: Apache SIGTERMs a logger that may still be
# starting (a restart soon after another), and dying then would lose the lines in the pipe.
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def resolve_user(user: str) -> pwd.struct_passwd:
    """The --user's passwd entry, checked before anything starts."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"--user {user}: no such user") from None
    if os.geteuid() != 0 and os.getuid() != entry.pw_uid:
        raise ConfigError(f"--user {user}: not permitted (logcount runs as uid {os.getuid()})")
    return entry


def drop_privileges(entry: pwd.struct_passwd) -> None:
    """Switch to the --user for good (the reader child: the supervisor stays root)."""
    if os.getuid() == os.geteuid() == entry.pw_uid:
        return
    os.initgroups(entry.pw_name, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ["HOME"] = entry.pw_dir


class ConfigChannel:
    """Configurations from the supervisor to its reader, on SIGHUP.

    The supervisor keeps the privileges it was started with, so it can read a config
    file only root may read (0600); the reader runs as --user and cannot. The supervisor
    reads it and sends it here, with the visitor keys it read (a root-only secret_file);
    the reader's loader takes the newest. One datagram each: whole, or not sent at all."""

    def __init__(self) -> None:
        self.parent, self.child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for end in (self.parent, self.child):
            end.setblocking(False)
        self.parent.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)

    def send(self, config: Config) -> str:
        """ "" when sent, else why not (the reader has not taken the ones before)."""
        try:
            self.parent.send(pickle.dumps((config, visitor_keys())))
        except OSError as exc:
            return exc.strerror or str(exc)
        return ""

    def receive(self) -> Config:
        """The newest configuration sent (the reader's loader: it runs on SIGHUP)."""
        latest = None
        while True:
            try:
                latest = self.child.recv(1 << 24)
            except BlockingIOError:
                break
        if latest is None:
            raise ConfigError("no configuration came from the supervisor")
        # Root's pickle, to a process with fewer rights: never the other way round.
        config, keys = pickle.loads(latest)
        visitor_keys().update(keys)
        return config

    def close(self) -> None:
        self.parent.close()
        self.child.close()


def warm_up(config: Config) -> None:
    """Load now what the reader would load lazily, while we may still read it as root.

    After `--user` drops root, an interpreter or library the user cannot read (a Python
    under /root, say) would make every reader crash at its first batch, for ever.
    """
    import redis
    import redis.utils

    from logcount.count.classify import Classifier
    from logcount.count.detect import AUTO, CANDIDATES
    from logcount.count.logformat import compile_format

    # Under auto the format is known from the first lines only: any preset loads the same.
    fmt = compile_format(CANDIDATES[0] if config.log_format == AUTO else config.log_format)
    classifier = Classifier(config, fmt)
    classifier.agent(b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
    classifier.referrer(b"https://example.org/")
    redis.Redis(host="localhost").close()  # builds a pool: no connection is made
    redis.utils.get_lib_version()  # package metadata, read at the first connect
    "localhost".encode("idna")  # the codec a connect by host name loads
    import logcount.safefs  # noqa: F401 - the reader makes the visitor key with it


def drain(fd: int, log: Callable[[str], None], grace: float) -> int:
    """Read and discard until EOF: the writer must never block on a logger that failed."""
    deadline: list[float] = []

    def on_term(signum: int, frame: Any) -> None:
        if not deadline:
            deadline.append(time.monotonic() + grace)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    while True:
        timeout = None
        if deadline:
            timeout = deadline[0] - time.monotonic()
            if timeout <= 0:
                return EX_OK
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
            if ready and not os.read(fd, 1 << 16):
                return EX_OK
        except InterruptedError:
            continue


class Supervisor:
    """Forks the reader, respawns it when it dies, drains when set-up fails."""

    def __init__(
        self,
        config_loader: Callable[[], Config],
        user: str | None = None,
        fd: int = 0,
        log: Callable[[str], None] | None = None,
    ):
        self.config_loader = config_loader
        self.user = user
        self.user_entry: pwd.struct_passwd | None = None
        self.channel: ConfigChannel | None = None
        self.fd = fd
        self.log = log or StderrLog()
        self.config: Config | None = None
        self.child: int | None = None
        self.child_started = 0.0
        self.respawn_delay = 0.0
        self.terminating_at: float | None = None
        self.signals: list[int] = []
        self.exit_code: int | None = None
        self.wakeup_r, self.wakeup_w = os.pipe()
        for fd_ in (self.wakeup_r, self.wakeup_w):
            os.set_blocking(fd_, False)

    # --- set-up -------------------------------------------------------------------

    def run(self) -> int:
        os.umask(0o077)  # spool, store, keys, the embedded Redis's files: the user's alone
        try:
            self.config = self.load()
            if self.user:
                self.user_entry = resolve_user(self.user)
                warm_up(self.config)
        except LogcountError as exc:
            return self.fatal(str(exc))
        self.install_signals()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked by `pipe` at start
        self.spawn_reader()
        return self.loop()

    def load(self) -> Config:
        """The configuration, read with the supervisor's privileges. The data directory is
        resolved here, so that the reader uses the one root's reports look in
        (/var/lib/logcount), not one under the --user's home. A root-only secret_file
        is read here too."""
        config = self.config_loader()
        config = replace(config, data_dir=str(config.resolved_data_dir()))
        if config.secret_file:
            config.visitor_key()
        return config

    def fatal(self, message: str) -> int:
        """A set-up error: said once, then stdin is drained so Apache never blocks."""
        self.log(f"fatal: {message}; not counting, draining input until EOF")
        grace = self.config.grace if self.config else 10.0
        return drain(self.fd, self.log, grace)

    def install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, self.record_signal)

    def record_signal(self, signum: int, frame: Any) -> None:
        self.signals.append(signum)
        try:
            os.write(self.wakeup_w, b".")
        except OSError:
            pass

    # --- main loop ------------------------------------------------------------------

    def loop(self) -> int:
        handlers: dict[int, Callable[[], None]] = {
            signal.SIGTERM: self.handle_term,
            signal.SIGINT: self.handle_term,
            signal.SIGHUP: self.handle_hup,
            signal.SIGCHLD: self.handle_chld,
        }
        while self.exit_code is None:
            self.sleep()
            while self.signals:
                handlers[self.signals.pop(0)]()
            self.handle_chld()  # a SIGCHLD may have come before the handler was set
            if self.child is None and self.exit_code is None:
                self.maybe_respawn()
            self.enforce_deadline()
        return self.exit_code

    def sleep(self) -> None:
        try:
            select.select([self.wakeup_r], [], [], 1.0)
            while os.read(self.wakeup_r, 64):
                pass
        except (InterruptedError, BlockingIOError):
            pass
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EINTR):
                raise

    def spawn_reader(self) -> None:
        assert self.config is not None
        config = self.config
        if self.channel is not None:
            self.channel.close()
        self.channel = channel = ConfigChannel()
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        pid = os.fork()
        if pid:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            channel.child.close()
            self.child = pid
            self.child_started = time.monotonic()
            return
        # In the child: default handling, and stop signals blocked (pending ones wait)
        # until the reader has installed its own handlers and unblocks them.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        os.close(self.wakeup_r)
        os.close(self.wakeup_w)
        channel.parent.close()
        code = 70
        try:
            if self.user_entry is not None:
                drop_privileges(self.user_entry)
            config.visitor_key()  # the data directory's, made as --user: once per process
            code = Reader(config, self.fd, self.log, channel.receive).run()
        except ConfigError as exc:
            self.log(f"fatal: {exc}")
            code = EX_CONFIG
        except BaseException as exc:  # noqa: BLE001 - the supervisor respawns us
            self.log(f"reader crashed: {exc!r}")
            code = 70
        finally:
            sys.stderr.flush()
            os._exit(code)

    def reap(self) -> list[tuple[int, int]]:
        """Collect every child that has exited: [(pid, wait status)]."""
        done = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            done.append((pid, status))
        return done

    # --- handlers -------------------------------------------------------------------

    def handle_chld(self) -> None:
        for pid, status in self.reap():
            if pid != self.child:
                continue
            self.child = None
            code = os.waitstatus_to_exitcode(status)
            if code == EX_OK:
                self.exit_code = EX_OK  # EOF: the only normal exit
            elif code == EX_CONFIG:
                self.exit_code = self.fatal("the reader could not start")
            elif self.terminating_at is not None:
                self.exit_code = EX_OK
            else:
                lived = time.monotonic() - self.child_started
                self.log(f"reader {pid} died ({_describe(code)}) after {lived:.1f}s; respawning")
                if lived > STABLE_AFTER:
                    self.respawn_delay = 0.0
                else:
                    self.respawn_delay = min(RESPAWN_MAX, max(RESPAWN_MIN, self.respawn_delay * 2))
                self.respawn_at = time.monotonic() + self.respawn_delay

    def maybe_respawn(self) -> None:
        if time.monotonic() >= getattr(self, "respawn_at", 0.0):
            self.spawn_reader()

    def handle_term(self) -> None:
        """Apache's restart or stop: the child drains to EOF or its grace deadline."""
        if self.terminating_at is None:
            self.terminating_at = time.monotonic()
        if self.child is not None:
            self.signal_child(signal.SIGTERM)
        else:
            self.exit_code = EX_OK

    def handle_hup(self) -> None:
        try:
            self.config = self.load()
        except LogcountError as exc:
            self.log(f"reload failed, keeping the previous configuration: {exc}")
            return
        if self.channel is not None and self.child is not None:
            why = self.channel.send(self.config)
            if why:
                self.log(f"reload not passed to the reader: {why}")
                return
        self.signal_child(signal.SIGHUP)

    def enforce_deadline(self) -> None:
        if self.terminating_at is None or self.child is None or self.config is None:
            return
        if time.monotonic() - self.terminating_at > self.config.grace + KILL_MARGIN:
            self.log("reader did not stop in time; killing it")
            self.signal_child(signal.SIGKILL)

    def signal_child(self, sig: int) -> None:
        if self.child is None:
            return
        try:
            os.kill(self.child, sig)
        except ProcessLookupError:
            pass


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit {code}"
