"""The one way logcount connects to Redis: redis-py, for everything that talks to it.

The writers (`pipe`, `tail`), the reports (`top`, `hits`, `status`, `--watch`), the
`Counts` API of web applications, a Redis Cluster and the embedded server all connect
with `connect()`. redis-py's import is most of what a `logcount top` adds to the
interpreter's start-up (bench/bench_top.py --compare: 107 ms against 46 ms for the
hand-written client it replaced, on a quiet machine), well inside the 200 ms a report
may take: a maintained client, its pool, retries, TLS and cluster support are worth it.

Every failure is one line for a user, in our words and without the password:
`RedisUnavailable("cannot reach Redis: connecting to 127.0.0.1:6379: Connection refused")`.
This module imports nothing of logcount's but the config's URL checks and the errors, so
every other part may import it (the embedded server's start included).
"""

from __future__ import annotations

import os
import re
import ssl
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis

from logcount.config import mask_url, redis_url_problem
from logcount.errors import RedisUnavailable

CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 5.0


def connect(
    url: str, timeout: float = READ_TIMEOUT, connect_timeout: float = CONNECT_TIMEOUT
) -> redis.Redis | redis.RedisCluster:
    """A client for a single Redis or, when the server is a cluster node, for the cluster
    (DESIGN: logcount detects cluster mode itself). `timeout` bounds each reply and
    `connect_timeout` each connection; `socket_timeout` and `socket_connect_timeout` in
    the URL's query win over both."""
    problem = url_problem(url)
    if problem:
        raise RedisUnavailable(f"bad Redis URL: {problem}")
    unreadable = _tls_files_problem(url)
    if unreadable:
        raise RedisUnavailable(f"cannot reach Redis: {unreadable}")
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=connect_timeout, **_driver_info()
        )
        info = client.info("cluster")
    except redis.AuthenticationError:  # wrong credentials, or none for a server that wants some
        raise RedisUnavailable("Redis refused the credentials") from None
    except redis.ResponseError as exc:  # BUSY (a long script), LOADING, a database out of range
        raise RedisUnavailable(f"Redis error: {reason(exc)}") from None
    except (redis.RedisError, OSError) as exc:
        raise RedisUnavailable(f"cannot reach Redis: {unreachable(exc, _where(url))}") from None
    except (TypeError, ValueError) as exc:
        problem = _option_problem(exc)
        if not problem:
            raise  # not the URL's fault: a bug, shown whole
        raise RedisUnavailable(f"bad Redis URL: {problem}") from None
    if info.get("cluster_enabled"):
        client.close()
        return cluster_client(url, timeout, connect_timeout)
    return client


def cluster_client(
    url: str, timeout: float = READ_TIMEOUT, connect_timeout: float = CONNECT_TIMEOUT
) -> redis.RedisCluster:
    """redis-py's cluster client from the URL of any node (it discovers the others and
    connects to them with the URL's credentials and TLS options)."""
    try:
        return redis.RedisCluster.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=connect_timeout, **_driver_info()
        )
    except redis.AuthenticationError:
        raise RedisUnavailable("Redis refused the credentials") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise RedisUnavailable(f"cannot reach Redis: {unreachable(exc, _where(url))}") from None
    except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
        raise RedisUnavailable(f"Redis error: {reason(exc)}") from None


def is_cluster(client: Any) -> bool:
    return isinstance(client, redis.RedisCluster)


def url_problem(url: str) -> str:
    """Why the URL cannot be used, in words that never quote its password; "" when it can.
    What redis-py would misread or silently ignore (a database that is not a number: it
    would use database 0) is refused here; the options are left to redis-py, which
    refuses those it does not know (see `_option_problem`)."""
    problem = redis_url_problem(url)
    if problem:
        return problem
    parts = urlsplit(url)
    if parts.scheme.lower() == "unix":
        return "" if parts.path else "unix:// needs the socket's path (unix:///run/redis.sock)"
    db = unquote(parts.path).strip("/")
    if db and not db.isdigit():
        return f"database {db!r} is not a number"
    return ""


_TLS_FILES = ("ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile")


def _tls_files_problem(url: str) -> str:
    """A certificate or key named in a rediss:// URL that cannot be read, named: redis-py
    would report it as if the server's address were missing ("connecting to h:6379: No
    such file or directory")."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "rediss":
        return ""
    for name, value in parse_qsl(parts.query):
        if name not in _TLS_FILES:
            continue
        try:
            os.stat(value)
        except OSError as exc:
            return f"TLS files ({name}): {_os_reason(exc)}"
        if not os.access(value, os.R_OK):
            return f"TLS files ({name}): Permission denied"
    return ""


_UNKNOWN_OPTION = re.compile(r"unexpected keyword argument '(\w+)'")


def _option_problem(exc: Exception) -> str:
    """What redis-py found wrong with a URL's query, or "" when the error is not about
    it. redis-py hands the options to its connection class as keywords: one it does not
    know fails there, when the first connection is made, as a TypeError; a value it
    cannot read is a ValueError of its own words ("Invalid value for 'db' in connection
    URL.")."""
    if isinstance(exc, TypeError):
        unknown = _UNKNOWN_OPTION.search(str(exc))
        return f"unknown option {unknown.group(1)!r}" if unknown else ""
    return reason(exc)


def _where(url: str) -> str:
    """The socket, or host:port, of a URL that passed `url_problem`: never a credential."""
    parts = urlsplit(url)
    if parts.scheme.lower() == "unix":
        return unquote(parts.path)
    return f"{unquote(parts.hostname or '') or 'localhost'}:{parts.port or 6379}"


# redis-py names the node a connection failed on ("Error 111 connecting to h:7001.",
# "Error while reading from h:7001 : ..."): with a cluster, not the node it asks first.
_NODE_IN_TEXT = re.compile(r"\b(?:to|from) (\S+:\d+)\b")


def where_of(client: Any, exc: BaseException | None = None) -> str:
    """The socket or host:port a client talks to; a cluster: the node `exc` names (the
    one that failed), else the node it asks first."""
    if isinstance(client, redis.RedisCluster):
        named = _NODE_IN_TEXT.search(str(exc)) if exc is not None else None
        if named:
            return named.group(1)
        node = client.get_default_node()
        return f"{node.host}:{node.port}" if node is not None else "the cluster"
    kwargs = client.connection_pool.connection_kwargs
    return str(
        kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    )


def unreachable(exc: BaseException, where: str) -> str:
    """One line on why a server could not be reached or read: redis-py's message names
    the error number and ends with a full stop ("Error 111 connecting to h:6379.
    Connection refused."); this says what happened where ("connecting to h:6379:
    Connection refused")."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, redis.TimeoutError | TimeoutError):
        # redis-py: "Timeout connecting to server", "Timeout reading from h:6379".
        if "connecting" in str(exc):
            return f"connecting to {where}: timed out"
        return f"no reply from {where} in time"
    if isinstance(exc, redis.exceptions.InvalidResponse):  # an HTTP port, a TLS port...
        return f"{where} does not speak RESP: {reason(exc)}"
    if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
        return f"connecting to {where}: {_os_reason(cause)}"
    if isinstance(exc, OSError):
        return f"connecting to {where}: {_os_reason(exc)}"
    return reason(exc)


# A server that wants a client certificate (Redis's tls-auth-clients) and got none, or one
# not signed by a CA it trusts, says so after the client's side of a TLS 1.3 handshake is
# done: as an alert when the client reads it in time, else the connection is just gone
# (EOF). Both mean the same to a user, who would otherwise read OpenSSL's words.
_CLIENT_CERT_REFUSED = (
    "the server closed the TLS connection: does it want a client certificate "
    "(ssl_certfile, ssl_keyfile) signed by a CA it trusts?"
)
_TLS_ALERTS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": _CLIENT_CERT_REFUSED,
    "TLSV1_ALERT_UNKNOWN_CA": _CLIENT_CERT_REFUSED,
    "SSLV3_ALERT_BAD_CERTIFICATE": _CLIENT_CERT_REFUSED,
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": _CLIENT_CERT_REFUSED,
}


def _os_reason(exc: OSError) -> str:
    verify = getattr(exc, "verify_message", None)  # ssl.SSLCertVerificationError
    if verify:
        return f"TLS certificate not accepted: {verify}"
    if isinstance(exc, ssl.SSLEOFError):
        return _CLIENT_CERT_REFUSED
    alert = _TLS_ALERTS.get(str(getattr(exc, "reason", "")))
    if alert:
        return alert
    if exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


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
# redis-py's words around an error in a pipeline, which quote the command and its keys.
# A key may hold a newline: the whole text is searched, before its first line is taken.
_IN_PIPELINE = re.compile(r"^Command # \d+ \(.*\) of pipeline caused error: ", re.S)
_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+")


def reason(exc: BaseException) -> str:
    """One line for a user: the server's own message (`OOM command not allowed when used
    memory > 'maxmemory'`, `READONLY You can't write against a read only replica`) rather
    than where in our script it happened, any URL in it masked."""
    text = _IN_PIPELINE.sub("", str(exc)).strip()
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


def _driver_info() -> dict[str, Any]:
    """The version CLIENT SETINFO reports, given rather than looked up: by default redis-py
    asks importlib.metadata, which searches every sys.path entry (~4 ms of a first connect).
    Older redis-py (no DriverInfo) keeps its default."""
    info = getattr(redis, "DriverInfo", None)
    version = getattr(redis, "__version__", None)
    if info is None or not isinstance(version, str):
        return {}
    return {"driver_info": info(lib_version=version)}
