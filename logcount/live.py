"""The Redis sink: applies Deltas to the live counters, never blocking the reader.

Each batch is applied by one Lua script (apply.lua) that also sets a batch marker, so a
batch retried after a lost reply, or replayed from the spool, counts exactly once. While
Redis is away, deltas merge in memory up to `pending_limit` entries; beyond that they are
appended to a per-process spool file and replayed in order once Redis is back.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from itertools import repeat
from pathlib import Path
from typing import Any

import redis

from logcount import keys
from logcount.config import Config
from logcount.connection import connect, is_cluster, redis_url
from logcount.connection import reason as _reason
from logcount.delta import Delta
from logcount.errors import LogcountError, RedisUnavailable

MARKER_TTL = 7 * 86400
BACKOFF_START = 0.1
BACKOFF_CAP = 5.0
HEARTBEAT_TTL = 30
HOST = socket.gethostname()


_SCRIPT = resources.files("logcount").joinpath("apply.lua").read_text()


def build_call(
    delta: Delta,
    config: Config,
    marker_site: str | None,
    batch_id: str | None,
    extra: dict[str, str] | None = None,
    list_sites: bool = True,
) -> tuple[list[str], str]:
    """KEYS and the JSON payload of one apply.lua call for `delta`."""
    key_list: list[str] = []
    index: dict[str, int] = {}

    def k(name: str) -> int:
        if name not in index:
            key_list.append(name)
            index[name] = len(key_list)
        return index[name]

    ttl = config.ttl
    ops: list[list[Any]] = []
    marker = 0
    if marker_site is not None and batch_id is not None:
        marker = k(keys.batch_marker(marker_site, batch_id))
    for (site, gran, label), counts in delta.totals.items():
        fields = {f: int(n) for f, n in counts.items() if n}
        if fields:
            ops.append(["h", k(keys.totals(site, gran, label)), ttl[gran], fields])
    for mkey, counts in delta.members.items():
        site, dim, gran, label = mkey
        # Members once, hits and bytes in lists beside them: path members are most of
        # the payload, and would be written twice as the keys of two objects.
        names = list(counts)
        data: list[Any] = [config.max_members, names, list(counts.values())]
        nbytes = delta.member_bytes.get(mkey)
        if nbytes:
            bkey = k(keys.member_bytes(site, dim, gran, label))
            data += [bkey, list(map(nbytes.get, names, repeat(0)))]
        ops.append(["z", k(keys.members(site, dim, gran, label)), ttl[gran], data])
    for (site, gran, label), hashes in delta.visitors.items():
        ops.append(["p", k(keys.visitors(site, gran, label)), ttl[gran], sorted(hashes)])
    longest = max(ttl.values())
    for site, items in delta.recent.items():
        ops.append(
            ["l", k(keys.recent(site)), longest, [config.recent_size, items[-config.recent_size :]]]
        )
    for site, items in delta.samples.items():
        ops.append(["l", k(keys.malformed_sample(site)), longest, [20, items[-20:]]])
    sites = sorted(delta.sites())
    if sites and list_sites:
        ops.append(["a", k(keys.SITES), 0, sites])
    for name, value in (extra or {}).items():
        ops.append(["s", k(name), 0, value])
    payload = json.dumps({"m": marker, "mt": MARKER_TTL, "ops": ops}, separators=(",", ":"))
    return key_list, payload


@dataclass
class Batch:
    """A frozen delta with the id that makes its application idempotent."""

    delta: Delta
    extra: dict[str, str] = field(default_factory=dict)
    batch_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_line(self) -> str:
        return json.dumps({"id": self.batch_id, "x": self.extra, "d": self.delta.to_json()}) + "\n"

    @classmethod
    def from_line(cls, line: str) -> Batch:
        data = json.loads(line)
        return cls(Delta.from_json(data["d"]), data.get("x", {}), data["id"])


class RedisWriter:
    """Applies batches to Redis; raises RedisUnavailable when it cannot."""

    def __init__(self, config: Config, url: str | None = None):
        self.config = config
        self.url = url
        self.client: Any = None
        self.script: Any = None
        self.cluster = False

    def _client(self) -> Any:
        if self.client is None:
            url = self.url or redis_url(self.config)
            self.client = connect(url)
            self.cluster = is_cluster(self.client)
            self.script = self.client.register_script(_SCRIPT)
        return self.client

    def reset(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
        self.client = None

    def apply(self, batch: Batch) -> None:
        self._client()
        delta, extra = batch.delta, batch.extra
        try:
            if not self.cluster:
                sites = sorted(delta.sites()) or [self.config.site]
                key_list, payload = build_call(delta, self.config, sites[0], batch.batch_id, extra)
                self.script(keys=key_list, args=[payload])
                return
            # A cluster runs a script on one slot: one call per site, each with its own
            # marker; the set of sites and a tail's position go in calls of their own
            # (so a position is committed at least once, not exactly once, with its counts).
            for site, part in sorted(delta.split_by_site().items()):
                key_list, payload = build_call(
                    part, self.config, site, batch.batch_id, list_sites=False
                )
                self.script(keys=key_list, args=[payload])
            sites = sorted(delta.sites())
            if sites:
                self.client.sadd(keys.SITES, *sites)
            for name, value in extra.items():
                self.client.set(name, value)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            self.reset()
            raise RedisUnavailable(f"cannot reach Redis: {_reason(exc)}") from None
        except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
            raise RedisUnavailable(f"Redis error: {_reason(exc)}") from None

    def heartbeat(self, info: dict[str, Any]) -> None:
        client = self._client()
        try:
            client.set(keys.heartbeat(HOST, os.getpid()), json.dumps(info), ex=HEARTBEAT_TTL)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            self.reset()
            raise RedisUnavailable(f"cannot reach Redis: {_reason(exc)}") from None
        except redis.ResponseError as exc:  # BUSY while a long batch runs: skip this beat
            raise RedisUnavailable(f"Redis error: {_reason(exc)}") from None


class Spool:
    """Append-only per-process file of batches that could not be sent."""

    def __init__(self, directory: Path, name: str | None = None):
        self.directory = directory
        self.path = directory / (name or f"spool-{HOST}-{os.getpid()}.jsonl")
        self.batches = 0

    def append(self, batch: Batch) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(batch.to_line())
            fh.flush()
            os.fsync(fh.fileno())
        self.batches += 1

    def pending_files(self) -> list[Path]:
        """Files to replay, oldest first: spools left by dead processes of this host
        (adopted), then our own. Our own file is renamed first, so that batches appended
        while it is replayed go to a new file instead of being lost with it. Call it with
        appends excluded (LiveSink.lock); it does no network I/O."""
        if not self.directory.is_dir():
            return []
        prefix = f"spool-{HOST}-"
        mine = f"{prefix}{os.getpid()}-"
        for path in sorted(self.directory.glob(f"{prefix}*.jsonl")):
            if path == self.path or path.name.startswith(mine):
                continue
            pid = path.name[len(prefix) :].split(".")[0].split("-")[0]
            if pid.isdigit() and _pid_alive(int(pid)):
                continue
            claimed = self.directory / f"{mine}adopted-{path.name[len(prefix) :]}"
            try:
                os.replace(path, claimed)
            except OSError:
                continue  # another process adopted it first
        if self.path.exists():
            os.replace(self.path, self.directory / f"{mine}replay-{time.time_ns()}.jsonl")
            self.batches = 0
        # Oldest first: a file's last append tells its age (the names hold process ids).
        adopted = sorted(self.directory.glob(f"{mine}adopted-*"), key=_mtime_and_name)
        return adopted + sorted(self.directory.glob(f"{mine}replay-*"))


def _mtime_and_name(path: Path) -> tuple[float, str]:
    try:
        return path.stat().st_mtime, path.name
    except OSError:
        return 0.0, path.name


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LiveSink:
    """Pending deltas, the batch in flight, the spool, and retry with back-off."""

    def __init__(
        self,
        config: Config,
        writer: RedisWriter | None = None,
        spool_dir: Path | None = None,
        log: Callable[[str], None] | None = None,
    ):
        self.config = config
        self.writer = writer or RedisWriter(config)
        self.spool = Spool(spool_dir or config.resolved_data_dir() / "spool")
        self.pending = Delta()
        self.pending_extra: dict[str, str] = {}
        self.inflight: Batch | None = None
        self.backoff = 0.0
        self.next_try = 0.0
        self.last_flush = 0.0
        self.last_error = ""
        self.log = log or (lambda msg: None)
        self._spool_checked = False
        # submit() may run in the reading thread while flush() runs in the flusher.
        self.lock = threading.RLock()

    def submit(self, delta: Delta, extra: dict[str, str] | None = None) -> None:
        with self.lock:
            if delta:
                self.pending.merge(delta)
            if extra:
                self.pending_extra.update(extra)
            if self.pending.size() > self.config.pending_limit:
                self._spill()

    def _spill(self) -> None:
        """Move what waits in memory to the spool, oldest first (positions must not go back)."""
        batch = Batch(self.pending, self.pending_extra)
        try:
            if self.inflight is not None:
                self.spool.append(self.inflight)
                self.inflight = None
            if batch.delta or batch.extra:
                self.spool.append(batch)
        except OSError as exc:
            self.log(f"cannot write spool {self.spool.path}: {exc.strerror}; counts dropped")
        self.pending, self.pending_extra = Delta(), {}

    def flush(self, force: bool = False) -> bool:
        """Send what is due; True when nothing is left pending. Never raises."""
        now = time.monotonic()
        if not force and now < self.next_try:
            return False
        try:
            while True:
                self._replay_spool()
                with self.lock:
                    # Spilled while we replayed: those batches are older than what is
                    # pending, and go first (a tail's read position must never go back).
                    if self.spool.batches:
                        continue
                    if self.inflight is None and (self.pending or self.pending_extra):
                        self.inflight = Batch(self.pending, self.pending_extra)
                        self.pending, self.pending_extra = Delta(), {}
                    break
            if self.inflight is not None:
                self.writer.apply(self.inflight)
                self.inflight = None
        except LogcountError as exc:  # Redis away, or the embedded one cannot start
            self._failed(str(exc), now)
            return False
        if self.last_error:
            self.log("Redis is back; counts resumed")
        self.last_error = ""
        self.backoff = 0.0
        self.next_try = 0.0
        self.last_flush = time.time()
        return True

    def _failed(self, error: str, now: float) -> None:
        if error != self.last_error:
            self.log(f"{error}; keeping counts (pending, then spool) and retrying")
        self.last_error = error
        self.backoff = min(BACKOFF_CAP, self.backoff * 2 if self.backoff else BACKOFF_START)
        self.next_try = now + self.backoff
        with self.lock:
            waiting = self.pending.size() + (self.inflight.delta.size() if self.inflight else 0)
            if waiting > self.config.pending_limit:
                self._spill()

    def close(self) -> bool:
        """Last flush before exit; what cannot be sent goes to the spool. True if all sent."""
        if self.flush(force=True) and not (self.pending or self.pending_extra):
            return True
        with self.lock:
            if self.pending or self.pending_extra or self.inflight is not None:
                self._spill()
        return False

    def _replay_spool(self) -> None:
        if self.spool.batches == 0 and self._spool_checked:
            return
        # Until every file is replayed: one left by a failed replay is retried next time.
        self._spool_checked = False
        with self.lock:
            files = self.spool.pending_files()
        for path in files:
            with open(path) as fh:
                for line in fh:
                    if not line.endswith("\n"):
                        break  # torn by a crash while appending: it was never acknowledged
                    self.writer.apply(Batch.from_line(line))
            path.unlink()
        self._spool_checked = True

    def spooled(self) -> int:
        return self.spool.batches
