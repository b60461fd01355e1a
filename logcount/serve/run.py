"""Running `logcount serve`: the listening socket, uvicorn, and with `--workers N` that
many server processes forked on the one socket (the kernel hands each connection to one
of them), so the answers can use every core.

The socket is bound before anything else, so a port in use is one line and exit 1. The
processes are forked before any Redis or SQL connection exists (Counts connects on first
use), so none is shared. SIGTERM and SIGINT stop them all and exit 0; a worker that dies
otherwise stops the others and the exit is 1, for systemd to restart the service.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any

from logcount.errors import ConfigError, LogcountError
from logcount.serve.app import create_app

STOPS = (signal.SIGINT, signal.SIGTERM)


def serve(
    counts: Any, bind: str, token: str | None, cors_origin: str | None, workers: int = 1
) -> int:
    """Run the server until SIGTERM or Ctrl-C; 0 when it stopped cleanly."""
    import uvicorn

    host, port = parse_bind(bind)
    sock = listen(host, port, bind)
    config = uvicorn.Config(
        create_app(counts, token, cors_origin),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
        server_header=False,
        proxy_headers=False,  # no client address is used: nothing to take from a proxy
    )
    if workers <= 1:
        _server_class()(config).run(sockets=[sock])
        return 0
    return _supervise([_fork(config, sock) for _ in range(workers)])


def listen(host: str, port: int, bind: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise LogcountError(f"cannot listen on {bind}: {exc.strerror}") from None
    sock.listen(2048)
    return sock


def _fork(config: Any, sock: socket.socket) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _server_class()(config).run(sockets=[sock])
            code = 0
        except BaseException as exc:  # a bug: one line on stderr, the parent stops the rest
            print(f"logcount serve: worker {os.getpid()} failed: {exc!r}", file=sys.stderr)
        finally:
            os._exit(code)
    return pid


def _supervise(children: list[int]) -> int:
    """Wait for the workers; a stop signal is passed on to them."""
    alive = set(children)
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    for s in STOPS:
        signal.signal(s, stop)
    failed = False
    while alive:
        pid, status = os.wait()
        alive.discard(pid)
        if os.waitstatus_to_exitcode(status) != 0 and not stopping:
            failed = True  # the others are stopped: systemd restarts the whole
            stop(signal.SIGTERM, None)
    return 1 if failed else 0


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, but SIGTERM and SIGINT end it with exit 0 (uvicorn raises the
        signal again once it has stopped, which a supervisor would read as a crash)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            before = {s: signal.signal(s, self.handle_exit) for s in STOPS}
            try:
                yield
            finally:
                for s, handler in before.items():
                    signal.signal(s, handler)

    return Server


def read_token(path: str) -> str:
    """The token a token file holds (surrounding white space is not part of it)."""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read(4097).strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ConfigError(f"--token-file {path}: {why}") from None
    if not 16 <= len(token) <= 4096 or any(c.isspace() or not c.isprintable() for c in token):
        raise ConfigError(
            f"--token-file {path}: the token must be 16 to 4096 printable characters without spaces"
        )
    return token


def parse_bind(bind: str) -> tuple[str, int]:
    """'127.0.0.1:8087', '[::1]:8087', ':8087' (loopback) -> (host, port)."""
    host, sep, port = bind.rpartition(":")
    if not (sep and port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise LogcountError(f"--bind {bind!r}: give HOST:PORT, e.g. 127.0.0.1:8087")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)
