"""A small synchronous Redis client for the read-only reports of the command line.

`logcount top`, `hits` and `status` are short processes: one connection, a handful of
round trips, exit. Importing redis-py costs more than everything else such a process
does (its commands, parsers, asyncio and observability modules: about half of a `top`'s
instructions), so these commands speak RESP themselves over one plain socket, with
hiredis (already installed with `redis[hiredis]`) parsing the replies in C. The writers
(`pipe`, `tail`, `rollup`) and the `Counts` API of long-running web applications keep
redis-py and its pool (logcount/connection.py).

What it does: `redis://`, `rediss://` (TLS; `ssl` is imported only then) and `unix://`
URLs with username, password and database (in the URL or its query, as redis-py reads
them), connect and read timeouts, pipelining (N commands in one write, N replies read),
and the few commands the reports send, with replies shaped as redis-py shapes them
(RESP2: scores as floats, HGETALL as a dict), so report code runs unchanged on either.
A server in cluster mode is left to redis-py's RedisCluster (`connect`). One thread at a
time: the command line has one.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import hiredis

from logcount.config import mask_url, redis_url_problem
from logcount.errors import RedisUnavailable

CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 5.0

# Options a redis-py URL may carry that only tune redis-py's pool, retries or protocol:
# the same URL serves the writers (redis-py), so a report accepts them and has no use for
# them (one connection, RESP2, no retries beyond one reconnect).
_POOL_OPTIONS = frozenset(
    {
        "socket_keepalive",
        "socket_read_size",
        "retry_on_timeout",
        "retry_on_error",
        "max_connections",
        "health_check_interval",
        "timeout",
        "protocol",
        "legacy_responses",
        "client_name",
    }
)
_TLS_OPTIONS = frozenset(
    {
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_password",
        "ssl_check_hostname",
    }
)


class RedisError(Exception):
    """Anything that went wrong talking to Redis."""


class ConnectionFailed(RedisError):
    """No connection could be made, or the one there was broke."""


class TimedOut(ConnectionFailed):
    """Connecting or waiting for a reply took longer than the timeout."""


class AuthRefused(ConnectionFailed):
    """The server refused the credentials, or wants some and got none."""


class ReplyError(RedisError):
    """The server answered a command with an error."""

    def __init__(self, reply: str):
        # "ERR" is the generic code and says nothing; other codes (WRONGTYPE, LOADING,
        # NOAUTH...) stay in the message.
        super().__init__(reply[4:] if reply.startswith("ERR ") else reply)
        self.code = reply.split(" ", 1)[0]


class BadURL(RedisError, ValueError):
    """The URL cannot be used; its message never repeats the password."""


class _ProtocolError(ConnectionFailed):
    """The bytes from the server are not RESP: the stream cannot be trusted any more."""


def _true(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


@dataclass(frozen=True)
class Address:
    """Where and how to connect, parsed from a URL."""

    host: str = "localhost"
    port: int = 6379
    path: str = ""  # a unix socket, instead of host and port
    tls: bool = False
    username: str = ""
    password: str = field(default="", repr=False)
    db: int = 0
    connect_timeout: float = CONNECT_TIMEOUT
    read_timeout: float = READ_TIMEOUT
    tls_options: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def where(self) -> str:
        """For messages: the socket or host:port, never the credentials."""
        return self.path or f"{self.host}:{self.port}"

    @classmethod
    def from_url(
        cls,
        url: str,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> Address:
        scheme = url.partition("://")[0].lower() if "://" in url else ""
        # First, and in words of our own: urlsplit's own errors quote the "port", which
        # is the start of a password when an unencoded '#', '?' or '/' cut it short.
        problem = redis_url_problem(url)
        if problem:
            raise BadURL(problem)
        parts = urlsplit(url)
        port = parts.port
        user, password, host = parts.username, parts.password, parts.hostname
        options: dict[str, Any] = {
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "username": unquote(user or ""),
            "password": unquote(password or ""),
        }
        db = ""
        if scheme == "unix":
            if not parts.path:
                raise BadURL("unix:// needs the socket's path (unix:///run/redis.sock)")
            options["path"] = unquote(parts.path)
        else:
            options["host"] = unquote(host or "") or "localhost"
            options["port"] = port or 6379
            options["tls"] = scheme == "rediss"
            db = unquote(parts.path).strip("/")
        tls: dict[str, str] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name == "db":
                db = value
            elif name in ("username", "password"):
                # As redis-py: the ones before the host win over the query's.
                options[name] = options[name] or value
            elif name in ("socket_timeout", "socket_connect_timeout"):
                try:
                    seconds = float(value)
                except ValueError:
                    raise BadURL(f"{name}={value!r} is not a number of seconds") from None
                options["read_timeout" if name == "socket_timeout" else "connect_timeout"] = seconds
            elif name in _TLS_OPTIONS and scheme == "rediss":
                tls[name] = value
            elif name not in _POOL_OPTIONS:
                # Refused rather than ignored: an option we do not know may be one that
                # matters (a TLS check), and redis-py refuses unknown ones too.
                raise BadURL(f"unknown option {name!r}")
        if db:
            if not db.isdigit():
                raise BadURL(f"database {db!r} is not a number")
            options["db"] = int(db)
        return cls(tls_options=tls, **options)


def _pack(args: tuple[Any, ...]) -> bytes:
    return bytes(hiredis.pack_command(args))


_INCOMPLETE = object()  # what the reader returns while a reply has not fully arrived


class Connection:
    """One socket to one server: send packed commands, read whole replies."""

    def __init__(self, address: Address):
        self.address = address
        self.sock = self._open()
        self.reader = hiredis.Reader(
            protocolError=_ProtocolError, replyError=ReplyError, notEnoughData=_INCOMPLETE
        )

    def _open(self) -> socket.socket:
        a = self.address
        # The TLS context first: a missing certificate file is not a network error.
        tls = _tls_context(a) if a.tls else None
        try:
            if a.path:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(a.connect_timeout)
                    sock.connect(a.path)
                except BaseException:
                    sock.close()
                    raise
            else:
                # An ASCII host goes as bytes (getaddrinfo takes either): a str would be
                # encoded with the idna codec, whose import is 1.5% of a `logcount top`.
                host = a.host.encode() if a.host.isascii() else a.host
                sock = socket.create_connection(
                    (host, a.port),  # type: ignore[arg-type]
                    a.connect_timeout,
                )
                # Commands are small and each waits for its reply: no Nagle delay.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if tls is not None:
                    try:  # the handshake runs under the connect timeout
                        sock = tls.wrap_socket(sock, server_hostname=a.host)
                    except BaseException:
                        sock.close()
                        raise
            sock.settimeout(a.read_timeout)
            return sock
        except TimeoutError:
            raise TimedOut(f"connecting to {a.where}: timed out") from None
        except OSError as exc:
            raise ConnectionFailed(f"connecting to {a.where}: {_os_reason(exc)}") from None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def roundtrip(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send every command in one write, then read one reply per command. Error replies
        are returned (as ReplyError), not raised: the caller decides."""
        try:
            self.sock.sendall(b"".join(_pack(c) for c in commands))
            replies: list[Any] = []
            while len(replies) < len(commands):
                reply = self.reader.gets()
                if reply is _INCOMPLETE:
                    data = self.sock.recv(65536)
                    if not data:
                        raise ConnectionFailed(f"{self.address.where} closed the connection")
                    self.reader.feed(data)
                else:
                    replies.append(reply)
            return replies
        except TimeoutError:
            raise TimedOut(f"no reply from {self.address.where} in time") from None
        except OSError as exc:
            raise ConnectionFailed(f"talking to {self.address.where}: {_os_reason(exc)}") from None
        except _ProtocolError as exc:  # an HTTP proxy, a TLS port read as plain text...
            raise ConnectionFailed(f"{self.address.where} does not speak RESP: {exc}") from None


# Error classes redis-py made of a reply's code, which it strips from the message.
_REPLY_CODES = {
    "OutOfMemoryError": "OOM",
    "ReadOnlyError": "READONLY",
    "NoPermissionError": "NOPERM",
    "NoScriptError": "NOSCRIPT",
}
# A failed redis.call() inside a script, as Redis 6 words it ("Error running script (call
# to f_...): @user_script:8: @user_script: 8: -OOM command not allowed ...") and Redis 7
# ("OOM command not allowed .... script: f..., on @user_script:8.").
_SCRIPT_ERROR_6 = re.compile(r"^Error running script .*?: -(\S.*)$")
_SCRIPT_WHERE_7 = re.compile(r"\s*script: \w+, on @user_script:\d+\.?$")
_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+")


def reason(exc: BaseException) -> str:
    """One line for a user: the server's own message (`OOM command not allowed when used
    memory > 'maxmemory'`, `READONLY You can't write against a read only replica`) rather
    than where in our script it happened, any URL in it masked."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    inside = _SCRIPT_ERROR_6.match(line)
    if inside:
        line = inside.group(1)
    line = _SCRIPT_WHERE_7.sub("", line)
    for cls in type(exc).__mro__:
        code = _REPLY_CODES.get(cls.__name__)
        if code and not line.startswith(code + " "):
            line = f"{code} {line}"
            break
    return _URL_IN_TEXT.sub(lambda m: mask_url(m.group()), line)


def _os_reason(exc: OSError) -> str:
    verify = getattr(exc, "verify_message", None)  # ssl.SSLCertVerificationError
    if verify:
        return f"TLS certificate not accepted: {verify}"
    if exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _tls_context(a: Address) -> Any:
    import ssl  # rediss:// only: importing ssl is 8% of a plain `logcount top`

    opts = a.tls_options
    reqs = opts.get("ssl_cert_reqs", "required").lower()
    modes = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
    if reqs not in modes:
        raise BadURL(f"ssl_cert_reqs={reqs!r} is not none, optional or required")
    try:
        check_hostname = _true(opts.get("ssl_check_hostname", "true"))
    except ValueError:
        raise BadURL("ssl_check_hostname is not true or false") from None
    try:
        context = ssl.create_default_context(
            cafile=opts.get("ssl_ca_certs"), capath=opts.get("ssl_ca_path")
        )
        # As redis-py: the server's certificate is checked, and its name, unless told not
        # to (a name check needs a verified certificate).
        context.check_hostname = check_hostname and reqs != "none"
        context.verify_mode = modes[reqs]
        if opts.get("ssl_certfile"):
            context.load_cert_chain(
                opts["ssl_certfile"], opts.get("ssl_keyfile"), opts.get("ssl_password")
            )
    except (OSError, ValueError) as exc:  # a missing or unreadable file, a wrong key password
        reason = _os_reason(exc) if isinstance(exc, OSError) else str(exc)
        files = ", ".join(n for n in sorted(opts) if n.endswith(("_certs", "_path", "file")))
        raise ConnectionFailed(f"TLS files ({files or 'system CA'}): {reason}") from None
    return context


def _floats(reply: Any) -> Any:
    return [None if v is None else float(v) for v in reply]


def _pairs(reply: list[Any]) -> list[tuple[Any, float]]:
    return [(reply[i], float(reply[i + 1])) for i in range(0, len(reply), 2)]


def _mapping(reply: list[Any]) -> dict[Any, Any]:
    return dict(zip(reply[::2], reply[1::2], strict=True))


def _info(reply: bytes) -> dict[str, str]:
    out = {}
    for line in reply.decode("utf-8", "replace").splitlines():
        name, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            out[name] = value
    return out


Convert = Callable[[Any], Any] | None


class Commands:
    """The commands the reports send, with replies shaped as redis-py shapes them.
    A Client runs each at once; a Pipeline queues them for `execute()`."""

    def _command(self, args: tuple[Any, ...], convert: Convert = None) -> Any:
        raise NotImplementedError

    def execute_command(self, *args: Any) -> Any:
        return self._command(args)

    def ping(self) -> Any:
        return self._command(("PING",), lambda r: r == b"PONG")

    def info(self, section: str = "default") -> Any:
        return self._command(("INFO", section), _info)

    def get(self, name: str) -> Any:
        return self._command(("GET", name))

    def hget(self, name: str, key: str) -> Any:
        return self._command(("HGET", name, key))

    def hgetall(self, name: str) -> Any:
        return self._command(("HGETALL", name), _mapping)

    def lrange(self, name: str, start: int, end: int) -> Any:
        return self._command(("LRANGE", name, start, end))

    def zscore(self, name: str, member: str | bytes) -> Any:
        return self._command(("ZSCORE", name, member), lambda r: None if r is None else float(r))

    def zmscore(self, name: str, members: list[Any]) -> Any:
        return self._command(("ZMSCORE", name, *members), _floats)

    def zrevrange(self, name: str, start: int, end: int, withscores: bool = False) -> Any:
        if withscores:
            return self._command(("ZREVRANGE", name, start, end, "WITHSCORES"), _pairs)
        return self._command(("ZREVRANGE", name, start, end))

    def zadd(self, name: str, mapping: dict[Any, float]) -> Any:
        pairs = [x for member, score in mapping.items() for x in (score, member)]
        return self._command(("ZADD", name, *pairs))

    def zunionstore(self, dest: str, names: list[str]) -> Any:
        return self._command(("ZUNIONSTORE", dest, len(names), *names))

    def pfcount(self, *names: str) -> Any:
        return self._command(("PFCOUNT", *names))

    def expire(self, name: str, seconds: int) -> Any:
        return self._command(("EXPIRE", name, seconds), bool)

    def delete(self, *names: str) -> Any:
        return self._command(("DEL", *names))


class Client(Commands):
    """One lazily opened connection; AUTH and SELECT travel with the first command."""

    def __init__(self, address: Address):
        self.address = address
        self._conn: Connection | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> Client:
        return cls(Address.from_url(url, connect_timeout, read_timeout))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def pipeline(self, transaction: bool = False) -> Pipeline:
        if transaction:  # the reports only read; MULTI/EXEC is not implemented
            raise NotImplementedError("transactions are not supported")
        return Pipeline(self)

    def scan_iter(self, match: str | None = None, count: int | None = None) -> Iterator[Any]:
        cursor: Any = b"0"
        extra = (*(("MATCH", match) if match else ()), *(("COUNT", count) if count else ()))
        while True:
            cursor, names = self._command(("SCAN", cursor, *extra))
            yield from names
            if cursor == b"0":
                return

    def _command(self, args: tuple[Any, ...], convert: Convert = None) -> Any:
        return self.run([(args, convert)])[0]

    def run(self, queued: list[tuple[tuple[Any, ...], Convert]]) -> list[Any]:
        """Run commands in one round trip; raise the first error reply, after reading all."""
        commands = [args for args, _ in queued]
        reused = self._conn is not None
        try:
            replies = self._roundtrip(commands)
        except TimedOut:
            raise
        except ConnectionFailed:
            if not reused:
                raise
            # A connection that sat idle (between two `--watch` redraws) may have been
            # closed by the server (its `timeout`, a restart): one new connection, one more
            # try. The reports only read (and write scratch keys), so repeating is harmless.
            replies = self._roundtrip(commands)
        for reply in replies:
            if isinstance(reply, ReplyError):
                if reply.code == "NOAUTH":  # a password is required and the URL has none
                    raise AuthRefused("Redis refused the credentials")
                raise reply
        return [
            reply if convert is None else convert(reply)
            for reply, (_, convert) in zip(replies, queued, strict=True)
        ]

    def _roundtrip(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        handshake = []
        if self._conn is None:
            self._conn = Connection(self.address)
            handshake = self._handshake()
        try:
            replies = self._conn.roundtrip(handshake + commands)
        except ConnectionFailed:
            self.close()  # the stream's state is unknown: never read it again
            raise
        if handshake:
            self._check_handshake(handshake, replies[: len(handshake)])
        return replies[len(handshake) :]

    def _handshake(self) -> list[tuple[Any, ...]]:
        """AUTH and SELECT, sent in the same write as the first commands: no extra round
        trip. Should AUTH fail, the commands behind it fail too, and the AUTH error is
        the one reported."""
        a = self.address
        out: list[tuple[Any, ...]] = []
        # "default" is the user a bare password logs in as; sent as a bare password, it
        # works with a Redis older than 6 (no ACL users) too.
        if a.username and a.username != "default":
            out.append(("AUTH", a.username, a.password))
        elif a.password:
            out.append(("AUTH", a.password))
        if a.db:
            out.append(("SELECT", a.db))
        return out

    def _check_handshake(self, sent: list[tuple[Any, ...]], replies: list[Any]) -> None:
        for command, reply in zip(sent, replies, strict=True):
            if not isinstance(reply, ReplyError):
                continue
            text = str(reply)
            if command[0] == "AUTH" and (
                "without any password configured" in text or "no password is set" in text
            ):
                # A password for a server that has none: redis-py (the writers) carries on
                # in that case, so the same URL works for the reports too.
                continue
            self.close()
            if command[0] == "AUTH":
                raise AuthRefused("Redis refused the credentials")
            raise reply


class Pipeline(Commands):
    """Commands queued, then sent in one write and answered in one read (`execute`)."""

    def __init__(self, client: Client):
        self.client = client
        self.queued: list[tuple[tuple[Any, ...], Convert]] = []

    def _command(self, args: tuple[Any, ...], convert: Convert = None) -> Pipeline:
        self.queued.append((args, convert))
        return self

    def execute(self) -> list[Any]:
        queued, self.queued = self.queued, []
        return self.client.run(queued) if queued else []


def connect(url: str, timeout: float = READ_TIMEOUT) -> Any:
    """A client for the reports: this module's Client for a single Redis, redis-py's
    RedisCluster for a cluster node (DESIGN: logcount detects cluster mode itself).
    Connecting, authenticating, selecting the database and asking whether the server is
    in cluster mode take one round trip. Failures are RedisUnavailable, one line, without
    the password."""
    try:
        client = Client.from_url(url, read_timeout=timeout)
        info = client.info("cluster")
    except AuthRefused as exc:
        raise RedisUnavailable(str(exc)) from None
    except ConnectionFailed as exc:
        raise RedisUnavailable(f"cannot reach Redis: {exc}") from None
    except ReplyError as exc:  # BUSY (a long script), LOADING, a database out of range
        raise RedisUnavailable(f"Redis error: {reason(exc)}") from None
    except BadURL as exc:
        raise RedisUnavailable(f"bad Redis URL: {exc}") from None
    if info.get("cluster_enabled") == "1":
        client.close()
        from logcount.connection import cluster_client  # imports redis-py: a cluster only

        return cluster_client(url, timeout)
    return client
