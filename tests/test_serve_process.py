"""`logcount serve` as a process on a real socket, and schemathesis against its OpenAPI
document: the answers equal the commands', SIGTERM stops it, no request is a 5xx."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from logcount import Counts
from logcount.serve.app import create_app
from tests import test_cli_top as known
from tests.conftest import LOGCOUNT, free_port, logcount_env
from tests.test_cli_top import Loaded

loaded = known.loaded
rolled = known.rolled
TOKEN = "0123456789abcdef-token"


class Served:
    """`logcount serve` started as a process with the known data's settings."""

    def __init__(self, data: Loaded, *more: str):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [*LOGCOUNT, *data.args("serve", "--bind", f"127.0.0.1:{self.port}", *more)],
            env=logcount_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(self.base + path)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def wait_ready(self, token: str | None = None) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.communicate()
            try:
                self.get("/healthz", token)
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("serve did not answer within 60 s")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@contextmanager
def serving(loaded: Loaded) -> Iterator[Served]:
    """`logcount serve` over `loaded`, answering; killed afterwards if still running."""
    server = Served(loaded)
    try:
        server.wait_ready()
        yield server
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


@pytest.fixture
def served(rolled: Loaded) -> Iterator[Served]:
    with serving(rolled) as server:
        yield server


def test_a_real_socket_answers_as_the_commands(rolled: Loaded, served: Served) -> None:
    cli_top = json.loads(
        rolled.run("top", "-w", rolled.span, "--by", "object", "-f", "json").output
    )
    assert served.get(f"/api/top?window={rolled.span}&by=object") == (200, cli_top)
    cli_hits = json.loads(rolled.run("hits", "/press/42/", "--days", "5", "-f", "json").output)
    assert served.get("/api/hits?path=/press/42/&days=5") == (200, cli_hits)
    assert served.get("/api/top?limit=0") == (
        400,
        {"error": "limit must be from 1 to 10000", "parameter": "limit"},
    )
    assert served.get("/healthz") == (200, {"ok": True, "redis": "ok", "store": "ok"})
    assert served.stop() == 0


def test_a_token_file_guards_the_socket(rolled: Loaded, tmp_path: Path) -> None:
    token_file = tmp_path / "serve.token"
    token_file.write_text(TOKEN + "\n")
    server = Served(rolled, "--token-file", str(token_file))
    try:
        server.wait_ready()
        assert server.get("/api/sites")[0] == 401
        status, sites = server.get("/api/sites", TOKEN)
        assert (status, [r["site"] for r in sites["sites"]]) == (200, ["test"])
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("flags", "error", "code"),
    [
        (["--bind", "localhost"], "Error: --bind 'localhost': give HOST:PORT", 1),
        (["--token-file", "/nonexistent/token"], "Error: --token-file /nonexistent/token:", 78),
    ],
)
def test_bad_flags_are_one_line(rolled: Loaded, flags: list[str], error: str, code: int) -> None:
    result = subprocess.run(
        [*LOGCOUNT, *rolled.args("serve", *flags)],
        env=logcount_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == code
    assert result.stderr.startswith(error) and result.stderr.count("\n") == 1, result.stderr


def test_a_port_in_use_is_one_line(rolled: Loaded, served: Served) -> None:
    result = subprocess.run(
        [*LOGCOUNT, *rolled.args("serve", "--bind", f"127.0.0.1:{served.port}")],
        env=logcount_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert (
        result.stderr
        == f"Error: cannot listen on 127.0.0.1:{served.port}: Address already in use\n"
    )


# --- schemathesis: every operation, generated parameters, never a 5xx -----------------


def test_no_generated_request_is_a_server_error(rolled: Loaded) -> None:
    counts = Counts.from_config(
        str(rolled.config_path),
        redis=rolled.server.url,
        store=rolled.store_url,
        data_dir=str(rolled.data_dir),
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(counts))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 16
    for operation in operations:
        if operation.path == "/api/events":
            continue  # a stream that never ends: test_serve_api reads it

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            case.call_and_validate(checks=[not_a_server_error])

        check()


def test_the_change_feed_tells_of_new_lines(rolled: Loaded, served: Served) -> None:
    def events(stream: Any) -> Iterator[tuple[str, str]]:
        name = ""
        for raw in stream:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                yield name, line[6:]

    with urllib.request.urlopen(served.base + "/api/events", timeout=20) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        feed = events(stream)
        assert next(feed) == ("change", json.dumps({"hits": 18}))  # every hit counted so far
        known.feed(rolled.config, known.line(known.at(rolled.today, 4), "/fresh"))
        assert next(feed) == ("change", json.dumps({"hits": 19}))


def children_of(pid: int) -> set[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(p) for p in found}


def test_workers_share_the_socket_and_stop_together(rolled: Loaded) -> None:
    server = Served(rolled, "--workers", "2")
    try:
        server.wait_ready()
        workers = children_of(server.proc.pid)
        assert len(workers) == 2
        for _ in range(20):  # every answer the same, whichever worker gave it
            status, sites = server.get("/api/sites")
            assert (status, sites["sites"][0]["today"]) == (200, 5)
    finally:
        assert server.stop() == 0
    for pid in workers:  # stopped and reaped
        assert not Path(f"/proc/{pid}").exists()


def test_a_worker_that_dies_stops_the_service(rolled: Loaded) -> None:
    server = Served(rolled, "--workers", "2")
    try:
        server.wait_ready()
        first, second = sorted(children_of(server.proc.pid))
        os.kill(first, signal.SIGKILL)
        assert server.proc.wait(30) == 1  # for systemd to restart it whole
        assert not Path(f"/proc/{second}").exists()
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
