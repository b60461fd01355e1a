"""A real Redis Cluster on loopback for the tests and the sizing bench: N masters with R
replicas each, from the redis-server binary logcount itself would use, on free ports
(each with its cluster bus port, port + 10000, free too). Nodes can be killed (SIGKILL)
and started again; slots can be migrated while clients write. With `tls` (a `ClusterTLS`)
every node listens with TLS only, its cluster bus and replication included, and wants a
client certificate; `users` are ACL users every node has from its start (a node started
again keeps them)."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from logcount.sinks.cluster import online_replicas
from tests.waiting import wait_for

# What a node says while it starts, fails over or is down: not yet, poll again.
NOT_YET = (redis.RedisError, OSError)
NODE_TIMEOUT_MS = 1500  # how long a silent master takes to be failed over


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is a valid, free port too."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


@dataclass(frozen=True)
class ClusterTLS:
    """A CA of the test's own, the certificate every node shows (for 127.0.0.1 and
    localhost, signed by the CA) and one for the clients (CN logcount)."""

    ca: Path
    node_cert: Path
    node_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def make(cls, openssl: str, directory: Path) -> ClusterTLS:
        directory.mkdir(parents=True, exist_ok=True)
        files = cls(
            *(directory / f"{n}.pem" for n in ("ca", "node", "node-key", "client")),
            directory / "client-key.pem",
        )
        ca_key = directory / "ca-key.pem"
        curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        _openssl(
            openssl,
            "req",
            "-x509",
            *curve,
            "-days",
            "2",
            "-subj",
            "/CN=logcount test CA",
            "-keyout",
            ca_key,
            "-out",
            files.ca,
        )
        signed = ["-CA", files.ca, "-CAkey", ca_key, "-days", "2"]
        _openssl(
            openssl,
            "req",
            "-x509",
            *curve,
            *signed,
            "-subj",
            "/CN=redis node",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            files.node_key,
            "-out",
            files.node_cert,
        )
        _openssl(
            openssl,
            "req",
            "-x509",
            *curve,
            *signed,
            "-subj",
            "/CN=logcount",
            "-keyout",
            files.client_key,
            "-out",
            files.client_cert,
        )
        return files

    def node_options(self) -> list[str]:
        return [
            "--tls-cert-file",
            str(self.node_cert),
            "--tls-key-file",
            str(self.node_key),
            "--tls-ca-cert-file",
            str(self.ca),
            "--tls-auth-clients",
            "yes",
            "--tls-cluster",
            "yes",
            "--tls-replication",
            "yes",
        ]

    def client_options(self) -> dict[str, Any]:
        """redis-py's keywords for a client of the nodes."""
        return {
            "ssl": True,
            "ssl_ca_certs": str(self.ca),
            "ssl_certfile": str(self.client_cert),
            "ssl_keyfile": str(self.client_key),
        }

    def query(self) -> str:
        """The same, as a rediss:// URL's query."""
        return (
            f"ssl_ca_certs={self.ca}&ssl_certfile={self.client_cert}&ssl_keyfile={self.client_key}"
        )

    def cli_options(self) -> list[str]:
        return [
            "--tls",
            "--cacert",
            str(self.ca),
            "--cert",
            str(self.client_cert),
            "--key",
            str(self.client_key),
        ]


def _openssl(openssl: str, *args: str | Path) -> None:
    subprocess.run([openssl, *map(str, args)], check=True, capture_output=True, timeout=60)


class RedisClusterNodes:
    """`masters` masters with `replicas` replicas each, in `workdir`; `password`: every
    node requires it of the default user (requirepass and masterauth); `users`: ACL
    rules, one user each (`counter on >PASSWORD ~* &* +@all`); `tls`: TLS only."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        masters: int = 3,
        replicas: int = 1,
        password: str = "",
        users: tuple[str, ...] = (),
        tls: ClusterTLS | None = None,
        node_timeout_ms: int = NODE_TIMEOUT_MS,
    ):
        self.binary = binary
        self.node_timeout_ms = node_timeout_ms
        self.users = users
        self.tls = tls
        self.cli = shutil.which("redis-cli", path=str(Path(binary).parent)) or shutil.which(
            "redis-cli"
        )
        self.workdir = workdir
        self.masters_wanted = masters
        self.replicas = replicas
        self.password = password
        self.ports = [cluster_port() for _ in range(masters * (1 + replicas))]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def url(self, port: int | None = None, auth: str = "") -> str:
        """A URL of node `port` (the first by default); `auth` (`user:password`) in place
        of the default user's password."""
        auth = auth or (f":{self.password}" if self.password else "")
        scheme, query = ("rediss", f"?{self.tls.query()}") if self.tls else ("redis", "")
        at = f"{auth}@" if auth else ""
        return f"{scheme}://{at}127.0.0.1:{port or self.ports[0]}/0{query}"

    def _options(self) -> dict[str, Any]:
        tls = self.tls.client_options() if self.tls else {}
        return {"password": self.password or None, **tls}

    def node(self, port: int, **options: Any) -> redis.Redis:
        return redis.Redis(port=port, **self._options(), **options)

    def client(self) -> redis.RedisCluster:
        alive = next(p for p in self.ports if p in self.procs)
        return redis.RedisCluster(host="127.0.0.1", port=alive, **self._options())

    def start_node(self, port: int) -> None:
        """Start the node of `port` (again, after a kill) and wait until it answers."""
        if not self._launch(port):
            raise AssertionError(f"node {port} exited at start: see {self.workdir / str(port)}")

    def _launch(self, port: int) -> bool:
        """Start the node of `port`: True once it answers, False if it exited first (its
        port or bus port was taken since cluster_port() found them free)."""
        directory = self.workdir / str(port)
        directory.mkdir(parents=True, exist_ok=True)
        auth = ["--requirepass", self.password, "--masterauth", self.password]
        users = [arg for rule in self.users for arg in ("--user", *rule.split())]
        listen = ["--port", "0", "--tls-port", str(port)] if self.tls else ["--port", str(port)]
        self.procs[port] = subprocess.Popen(
            [
                self.binary,
                *listen,
                *(self.tls.node_options() if self.tls else []),
                *users,
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(directory / "nodes.conf"),
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(directory),
                "--logfile",
                str(directory / "redis.log"),  # why a node did not join, when one does not
                *(auth if self.password else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        proc = self.procs[port]
        wait_for(
            lambda: proc.poll() is not None or self.node(port, socket_timeout=1).ping(),
            f"node {port} to answer",
            30,
            ignoring=NOT_YET,
        )
        if proc.poll() is None:
            return True
        del self.procs[port]
        return False

    def start(self) -> None:
        if self.cli is None:
            raise RuntimeError("no redis-cli")
        for i, port in enumerate(self.ports):
            # Free when chosen, maybe taken since by another test's socket: another port
            for _ in range(5):
                if self._launch(port):
                    break
                port = self.ports[i] = cluster_port()
            else:
                raise AssertionError(f"no node started, the last on port {port}")
        auth = ["-a", self.password, "--no-auth-warning"] if self.password else []
        subprocess.run(
            [
                self.cli,
                *auth,
                *(self.tls.cli_options() if self.tls else []),
                "--cluster",
                "create",
                *[f"127.0.0.1:{p}" for p in self.ports],
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Every live node says the cluster is ok and agrees on who serves each slot, and
        every master has its replicas attached."""

        def healthy() -> bool:
            views = []
            for port in self.procs:
                node = self.node(port, socket_timeout=1)
                if node.cluster("info").get("cluster_state") != "ok":
                    return False
                views.append(sorted((s[0], s[1], s[2][1]) for s in node.cluster("slots")))
            if any(view != views[0] for view in views):
                return False
            return len(self.masters()) == self.masters_wanted and all(
                online_replicas(self.node(p).info("replication")) >= self._replicas_of(p)
                for p in self.masters()
            )

        wait_for(healthy, "a healthy cluster", timeout, ignoring=NOT_YET)

    def _replicas_of(self, master: int) -> int:
        """Replicas of `master` that are alive (the others cannot be waited for)."""
        alive = 0
        for port in self.procs:
            info = self.node(port).info("replication")
            if info.get("role") == "slave" and info.get("master_port") == master:
                alive += 1
        return alive

    def masters(self) -> list[int]:
        """Ports of the live masters that serve slots."""
        out = []
        for port in self.procs:
            with contextlib.suppress(redis.RedisError):
                if self.node(port, socket_timeout=1).info("replication").get("role") == "master":
                    slots = self.node(port).cluster("slots")
                    if any(s[2][1] == port for s in slots):
                        out.append(port)
        return sorted(out)

    def kill(self, port: int) -> None:
        """SIGKILL one node: no goodbye to the others, as a crashed host."""
        proc = self.procs.pop(port)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def owner(self, slot: int, port: int | None = None) -> int:
        """The port of the master that serves `slot`, as node `port` sees it."""
        ask = port or next(iter(self.procs))
        for start, end, master, *_ in self.node(ask, socket_timeout=1).cluster("slots"):
            if start <= slot <= end:
                return int(master[1])
        raise RuntimeError(f"no node serves slot {slot}")

    def wait_failover(self, killed: int, slot: int, timeout: float = 60.0) -> int:
        """The port of the replica promoted in place of the killed master (that served
        `slot`), once every live node says the cluster is ok and names it."""

        def promoted() -> int | None:
            owners = set()
            for port in self.procs:
                node = self.node(port, socket_timeout=1)
                if node.cluster("info").get("cluster_state") != "ok":
                    return None
                owners.add(self.owner(slot, port))
            return owners.pop() if len(owners) == 1 and killed not in owners else None

        return int(
            wait_for(promoted, f"a replica of {killed} to be promoted", timeout, ignoring=NOT_YET)
        )

    def migrate_slot(self, slot: int, target: int) -> int:
        """Move `slot` with its keys to the master on `target` (the way redis-cli
        --cluster reshard does: IMPORTING, MIGRATING, MIGRATE in batches, NODE), while
        clients go on writing; the number of keys moved."""
        source = self.owner(slot, target)
        if source == target:
            return 0
        src, dst = self.node(source), self.node(target)
        src_id, dst_id = _text(src.cluster("myid")), _text(dst.cluster("myid"))
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        moved = 0
        auth = ["AUTH", self.password] if self.password else []
        while True:
            names = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 10)
            if not names:
                break
            src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, *auth, "KEYS", *names)
            moved += len(names)
        # The target first (it takes the slot), then the source, then every other master
        # (replicas learn it from them).
        for port in dict.fromkeys([target, source, *self.masters()]):
            self.node(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        return moved

    def stop(self) -> None:
        for port in list(self.procs):
            proc = self.procs.pop(port)
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
