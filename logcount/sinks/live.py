"""The Redis sink: applies Deltas to the live counters, never blocking the reader.

Each batch is applied by one Lua script (apply.lua) that also sets a batch marker, so a
batch retried after a lost reply, or replayed from the spool, counts exactly once. While
Redis is away, deltas merge in memory up to `pending_limit` entries or PENDING_MAX_BYTES;
beyond that they are appended to a per-process spool file (logcount.sinks.spool) and replayed
in order once Redis is back.

Sizes are bounded in bytes (Delta.weight, an estimate of the JSON sent): a batch is at
most BATCH_MAX_BYTES, so no Lua call nears Redis' request limit; what is pending is
split into such batches when it is sent or spooled. A pipe's parts of one send go as one
call each, in order, each let go once applied; a tail's go in one MULTI/EXEC, so that its
position (in the last part) lands with all its counts.
What cannot be kept (spool full or unwritable, a batch Redis rejects as invalid) is
counted in `dropped`/`rejected` and shown by `logcount status`.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import redis

from logcount.config import Config
from logcount.count.delta import Delta
from logcount.errors import LogcountError, RedisUnavailable
from logcount.sinks import cluster, keys
from logcount.sinks.batch import BATCH_MAX_BYTES, Batch, build_call
from logcount.sinks.connection import connect, is_cluster, unreachable, where_of
from logcount.sinks.connection import reason as _reason
from logcount.sinks.embedded import redis_url
from logcount.sinks.sent_visitors import SentVisitors
from logcount.sinks.spool import HOST, SPOOL_MAX_BYTES, Spool, SpoolFull

BACKOFF_START = 0.1
BACKOFF_CAP = 5.0
HEARTBEAT_TTL = 30
PENDING_MAX_BYTES = 32 << 20  # held in memory while Redis is away, then spooled
# A spill's batches, smaller than those sent: a batch's JSON is made whole before it is
# written (three copies of it at a time: the str, with its newline, encoded), and read
# back whole, with the objects it decodes to and its payload; at full speed on a diverse
# day a spill and the replay of the one before run at once, and were the pipe's peak:
# 256 KB batches peaked 6 MB lower than 1 MB ones, at the same CPU (more calls, each
# a fourth of the work).
SPILL_BATCH_BYTES = 256 << 10
# The most ids of batches known applied while their spooled copies wait: past it the set
# starts again, and a copy not skipped is only applied again (its marker makes it a no-op)
DONE_IDS_MAX = 100_000
# How long the classifier may wait for a healthy sender to take pending once it is past
# its budget, rather than spill it: the sender's call in flight must be younger than
# SENDER_WAIT (a stalled Redis holds the classifier, and through it the reader, no
# longer), and one wait lasts SENDER_WAIT_MAX at most (a Redis that answers, but slower
# than we read, is not waited for without end). On a diverse day at full speed a call
# took 18 ms (median), 0.25 s (p90) and up to 1.9 s with the machine loaded (~9).
SENDER_WAIT = 1.0
SENDER_WAIT_MAX = 3.0
# Errors that say Redis cannot take writes now (keep the batch and retry), as opposed
# to a batch it refuses (apply.lua's LCBAD, a script error): those are never retried.
TRANSIENT = (
    "OOM",
    "maxmemory",
    "READONLY",
    "read only replica",
    "BUSY",
    "LOADING",
    "MASTERDOWN",
    "MISCONF",
    "NOREPLICAS",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "NOPERM",
    "NOAUTH",
    "WRONGPASS",
)
REJECTED = ("LCBAD", "user_script", "Error running script", "WRONGTYPE")

_SCRIPT = resources.files("logcount.sinks").joinpath("apply.lua").read_text()


class BatchRejected(Exception):
    """Redis refused a batch as invalid: retrying it would fail the same way."""


def _redis_error(exc: Exception) -> Exception:
    """RedisUnavailable (keep and retry) or BatchRejected (quarantine) for a Redis error."""
    text = str(exc)
    busy = (redis.exceptions.ReadOnlyError, redis.exceptions.OutOfMemoryError)
    if (
        isinstance(exc, redis.ResponseError)
        and not isinstance(exc, busy)
        and (
            "LCBAD" in text
            or (not any(t in text for t in TRANSIENT) and any(r in text for r in REJECTED))
        )
    ):
        return BatchRejected(text.splitlines()[0][:300] if text else type(exc).__name__)
    return RedisUnavailable(f"Redis error: {_reason(exc)}")


class RedisWriter:
    """Applies batches to Redis; raises RedisUnavailable when it cannot."""

    def __init__(self, config: Config, url: str | None = None):
        self.config = config
        self.url = url
        self.client: Any = None
        self.script: Any = None
        self.cluster = False
        # The visitors the last batch applied, left out of the next (a cluster's calls,
        # per slot, send them all)
        self.sent = SentVisitors()

    def _client(self) -> Any:
        if self.client is None:
            url = self.url or redis_url(self.config)
            self.client = connect(url)
            self.cluster = is_cluster(self.client)
            self.script = self.client.register_script(_SCRIPT)
        return self.client

    def _unreachable(self, exc: BaseException) -> str:
        """Where and why, in our words (a cluster: the node that failed)."""
        return unreachable(exc, where_of(self.client, exc) if self.client else "Redis")

    def reset(self) -> None:
        # A cluster client finds the nodes again itself, after a failover too: a new one
        # would ask the node of the URL only, which may be the one that died.
        self.sent.forget()
        if self.client is None or self.cluster:
            return
        with contextlib.suppress(Exception):
            self.client.close()
        self.client = None

    def values(self, names: list[str]) -> list[str | None]:
        """The string values of `names` (what a batch's `extra` stored, such as a tail's
        positions); LogcountError when Redis cannot be reached."""
        client = self._client()
        try:
            return list(client.mget(names))
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            why = self._unreachable(exc)  # before reset() lets the client go
            self.reset()
            raise LogcountError(f"cannot read from Redis: {why}") from None

    def _call(self, batch: Batch) -> tuple[list[str], bytes]:
        sites = sorted(batch.delta.sites()) or [self.config.site]
        return build_call(
            batch.delta, self.config, sites[0], batch.batch_id, batch.extra, sent=self.sent
        )

    def apply(self, batch: Batch) -> None:
        """Apply one batch; BatchRejected when Redis refuses it as invalid."""
        rejected = self.apply_all([batch])
        if rejected:
            raise BatchRejected(rejected[0][1])

    def apply_all(self, batches: list[Batch]) -> list[tuple[Batch, str]]:
        """Apply `batches` in order, in one MULTI/EXEC: all or none (but a cluster's).
        Returns those Redis rejected as invalid, with why; the others are applied."""
        self._client()
        self.sent.start()
        try:
            rejected = self._apply_all(batches)
        except BaseException:
            self.sent.forget()  # whether Redis applied them is not known
            raise
        if rejected:  # what a refused batch would have added is not there
            self.sent.forget()
        else:
            self.sent.commit()
        return rejected

    def _apply_all(self, batches: list[Batch]) -> list[tuple[Batch, str]]:
        try:
            if self.cluster:
                return [(b, why) for b in batches if (why := self._apply_cluster(b))]
            # The payload as a memoryview: redis-py sends it as it is, where bytes go
            # through hiredis' pack_command into a copy of the whole command (a 4 MB
            # batch's payload twice in memory while it was sent).
            if len(batches) == 1:
                key_list, payload = self._call(batches[0])
                self._applied_before(self.script(keys=key_list, args=[memoryview(payload)]))
                return []
            pipe = self.client.pipeline(transaction=True)
            for batch in batches:
                key_list, payload = self._call(batch)
                self.script(keys=key_list, args=[memoryview(payload)], client=pipe)
            results = pipe.execute(raise_on_error=False)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            why = self._unreachable(exc)  # before reset() lets the client go
            self.reset()
            raise RedisUnavailable(f"cannot reach Redis: {why}") from None
        except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
            error = _redis_error(exc)
            if isinstance(error, BatchRejected) and len(batches) == 1:
                return [(batches[0], str(error))]
            raise RedisUnavailable(f"Redis error: {_reason(exc)}") from None
        rejected = []
        for batch, result in zip(batches, results, strict=True):
            self._applied_before(result)
            if isinstance(result, Exception):
                error = _redis_error(result)
                if not isinstance(error, BatchRejected):
                    raise error  # the others are marked: a retry applies this one alone
                rejected.append((batch, str(error)))
        return rejected

    def _applied_before(self, result: Any) -> None:
        """apply.lua's -1: the batch was applied before, maybe long ago (a spool's
        replay), and the buckets it names may have expired since: none is taken as
        holding its visitors."""
        if result == -1:
            self.sent.forget()

    def _apply_cluster(self, batch: Batch) -> str | None:
        # One call per site's slot, pipelined, positions last, then a replica's
        # acknowledgement from every master written to (logcount.sinks.cluster says why).
        why, markers = None, []
        calls = cluster.calls_of(batch.delta, batch.extra)
        for group in ([c for c in calls if not c[2]], [c for c in calls if c[2]]):
            built = [
                build_call(part, self.config, site, batch.batch_id, extra or None, False)
                for site, part, extra in group
            ]
            results = cluster.run_scripts(self.client, self.script, built) if built else []
            for (site, _, _), result in zip(group, results, strict=True):
                if isinstance(result, Exception):
                    error = _redis_error(result)
                    if not isinstance(error, BatchRejected):
                        raise error
                    why = str(error)
                    continue
                markers.append(keys.batch_marker(site, batch.batch_id))
        sites = sorted(batch.delta.sites())
        if sites:
            self.client.sadd(keys.SITES, *sites)
        for name, value in cluster.untagged(batch.extra).items():
            self.client.set(name, value)
        cluster.confirm_replicated(self.client, markers)
        return why

    def heartbeat(self, info: dict[str, Any]) -> None:
        client = self._client()
        try:
            client.set(keys.heartbeat(HOST, os.getpid()), json.dumps(info), ex=HEARTBEAT_TTL)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            why = self._unreachable(exc)  # before reset() lets the client go
            self.reset()
            raise RedisUnavailable(f"cannot reach Redis: {why}") from None
        except redis.ResponseError as exc:  # BUSY while a long batch runs: skip this beat
            raise RedisUnavailable(f"Redis error: {_reason(exc)}") from None


class LiveSink:
    """The Redis sink (a sinks.base.ResumableSink): pending deltas, the batches in flight,
    the spool, and retry with back-off."""

    def __init__(
        self,
        config: Config,
        writer: RedisWriter | None = None,
        spool_dir: Path | None = None,
        log: Callable[[str], None] | None = None,
        batch_max_bytes: int = BATCH_MAX_BYTES,
        pending_max_bytes: int = PENDING_MAX_BYTES,
        spool_max_bytes: int = SPOOL_MAX_BYTES,
    ):
        self.config = config
        self.writer = writer or RedisWriter(config)
        self.log = log if log is not None else (lambda msg: None)
        directory = spool_dir or config.resolved_data_dir() / "spool"
        self.spool = Spool(directory, max_bytes=spool_max_bytes, log=self.log)
        self.batch_max_bytes = batch_max_bytes
        self.pending_max_bytes = pending_max_bytes
        self.pending = Delta()
        self.pending_extra: dict[str, str] = {}
        self.pending_bytes = 0  # Delta.weight of pending, kept as it grows
        self.inflight: list[Batch] = []
        self.inflight_bytes = 0
        self.inflight_entries = 0  # Delta.size() of what is in flight, estimated as it goes
        # Ids of batches a spill copied to the spool while they were in flight, and that
        # Redis then took (or refused): their spooled copies are skipped, not sent again
        self.done_ids: set[str] = set()
        self.backoff = 0.0
        self.next_try = 0.0
        self.last_flush = 0.0
        self.last_error = ""
        self.drops = {"dropped_lines": 0, "dropped_batches": 0, "dropped_bytes": 0}
        self.drops.update(rejected_batches=0, rejected_lines=0, bad_spool_lines=0)
        self._drop_logged = False
        self._reasons_logged: set[str] = set()
        self._spool_checked = False
        # submit() runs in the classifier (or a reading thread) while flush() runs in the
        # sender.
        self.lock = threading.RLock()
        # Told by the sender when it takes pending, ends a call or fails: a classifier
        # waiting in submit() looks again (see _wait_for_sender)
        self.progress = threading.Condition(self.lock)
        self.call_ended = 0.0
        self.call_started = 0.0  # monotonic start of the sender's call in flight, 0 if none
        # The one thread that may wait in submit() (the classifier's): never the reading
        # thread, nor one that flushes at exit; and how it wakes the sender (see wait_in)
        self.waiting_thread: threading.Thread | None = None
        self.wake_sender: Callable[[], None] | None = None
        self.sender_wait = SENDER_WAIT
        self.sender_wait_max = SENDER_WAIT_MAX
        self.waits = {"sender_waits": 0, "sender_waits_cut": 0}

    @property
    def cluster(self) -> bool:
        """Whether the Redis written to is a cluster (known once connected)."""
        return self.writer.cluster

    def saved(self, names: list[str]) -> list[str | None]:
        """What earlier batches stored under `names` in their `extra` (positions)."""
        return self.writer.values(names)

    def heartbeat(self, info: dict[str, Any]) -> None:
        """The source's health, under its host and pid (`logcount status` reads it)."""
        self.writer.heartbeat(info)

    def wait_in(self, thread: threading.Thread, wake_sender: Callable[[], None] | None) -> None:
        """Let `thread` (the classifier) wait in submit() for a healthy sender rather than
        spill; `wake_sender` wakes the sender when it does (it may be asleep between
        flushes, and the classifier wakes it only once submit() returns). None: `thread`
        is the sender too (a last flush at exit), and sends what it submits right after:
        nothing to wait for, and no spill while the sender is healthy."""
        self.waiting_thread, self.wake_sender = thread, wake_sender

    def submit(self, delta: Delta, extra: dict[str, str] | None = None) -> None:
        """Take `delta`, and `extra` (a tail's positions) to be written with it: the
        caller lets `delta` go (its buckets become pending's, not copied)."""
        with self.lock:
            if delta:
                self.pending_bytes += self.pending.merge(delta, self.config.recent_size, adopt=True)
            if extra:
                self.pending_extra.update(extra)
            # A sender far behind (Redis slow, or away) makes what waits go to disk. At
            # most one budget at a time: a spill is written by the classifier, which the
            # reading thread may be waiting for (128 MB took half a second to write).
            # A healthy sender merely busy with the batches before is waited for instead
            # (a bounded time) as soon as they and pending together are past the budget:
            # at full speed a spill and its replay cost more CPU than the wait, and what
            # is held stays within one budget (see _wait_for_sender).
            behind = self._too_much(self.inflight_entries, self.inflight_bytes)
            if behind and not self._wait_for_sender() and self._too_much(0, 0):
                self._spill()

    def _wait_for_sender(self) -> bool:
        """Pending and the batches in flight past the budget: wait (the lock released)
        until the sender has sent enough of them, while it is healthy: no error, no
        back-off, and its call in flight (or, between calls, its last one's end) less than
        sender_wait ago; sender_wait_max at most in all. True when they are back within
        the budget; False when not (pending alone past it is then spilled). Under the lock.

        Only the classifier waits: it adds nothing to pending meanwhile, so what is held
        stays within the budget plus one delta. A stalled Redis holds it (and the reader,
        through catch_up) sender_wait at most, once: then the call in flight is older than
        that, and the next time past the budget spills at once."""
        if threading.current_thread() is not self.waiting_thread:
            return False
        if self.wake_sender is None:
            return not (self.last_error or self.backoff)
        self.waits["sender_waits"] += 1
        self.wake_sender()
        started = time.monotonic()
        while self._too_much(self.inflight_entries, self.inflight_bytes):
            now = time.monotonic()
            if self.call_started:
                deadline = self.call_started + self.sender_wait
            else:
                deadline = max(started, self.call_ended) + self.sender_wait
            deadline = min(deadline, started + self.sender_wait_max)
            if self.last_error or self.backoff or now >= deadline:
                self.waits["sender_waits_cut"] += 1
                return False
            self.progress.wait(deadline - now)
        return True

    @contextlib.contextmanager
    def _in_call(self) -> Iterator[None]:
        """Around each call of the sender to Redis: when it began is what a classifier
        waiting judges it by, and its end (or failure) wakes it to look again."""
        self.call_started = time.monotonic()
        try:
            yield
        finally:
            self.call_started = 0.0
            self.call_ended = time.monotonic()
            with self.lock:
                self.progress.notify_all()

    def _too_much(self, entries: int, nbytes: int) -> bool:
        """Is what waits in memory (pending, plus the given) past its budget?"""
        return (
            self.pending.size() + entries > self.config.pending_limit
            or self.pending_bytes + nbytes > self.pending_max_bytes
        )

    def _freeze(self) -> list[Batch]:
        """Pending as batches to send, of batch_max_bytes each at most; pending starts anew."""
        if not (self.pending or self.pending_extra):
            return []
        self.progress.notify_all()  # pending is taken: a classifier waiting may go on
        return list(Batch.each_part(*self._take_pending(), self.batch_max_bytes))

    def _take_pending(self) -> tuple[Delta, dict[str, str], int]:
        """Pending (its delta, extra and weight), taken; pending starts anew."""
        taken = self.pending, self.pending_extra, self.pending_bytes
        self.pending, self.pending_extra, self.pending_bytes = Delta(), {}, 0
        return taken

    def _spill(self) -> None:
        """Move what waits in memory to the spool, oldest first (positions must not go back).

        A spill that carries a tail's positions is written whole or not replayed: each of
        its lines but the last says more follow, and the last carries the newest positions.
        Its lines are appended one by one, and a kill -9 between two appends used to leave
        counts in the spool without the positions that cover them: the next tail replayed
        them and read their lines again from the positions before (counted twice). An
        adopting process now leaves such an unfinished spill out (see _replay_file)."""
        # A copy: the sender may be applying the list in flight meanwhile
        batches, self.inflight, self.inflight_bytes = self.inflight[:], [], 0
        self.inflight_entries = 0
        delta, extra, weight = self._take_pending()
        whole = bool(extra) or any(batch.extra for batch in batches)
        # Each line written once the next is made, so that the last is known as such
        held = None
        for batch in self._spilled(batches, delta, extra, weight):
            if held is not None:
                self._spill_one(held, more=whole)
            held = batch
            del batch
        if held is not None:
            self._spill_one(held)

    def _spilled(
        self, inflight: list[Batch], delta: Delta, extra: dict[str, str], weight: int
    ) -> Iterator[Batch]:
        """The batches of a spill, oldest first: those in flight, let go as they are
        taken, then pending's in parts, the positions in the last. Each part is made when
        the one before is taken, its buckets taken out of pending (`consume`): what is
        written is freed as the spill goes."""
        inflight.reverse()
        while inflight:
            yield inflight.pop()
        if delta or extra:
            limit = min(self.batch_max_bytes, SPILL_BATCH_BYTES)
            yield from Batch.each_part(delta, extra, weight, limit, consume=True)

    def _spill_one(self, batch: Batch, more: bool = False) -> None:
        line = batch.to_bytes(more)
        try:
            self.spool.append(line)
            self._drop_logged = False
        except SpoolFull as exc:
            self._drop(batch, len(line), str(exc), more)
        except OSError as exc:
            why = f"cannot write spool {self.spool.path}: {exc.strerror}"
            self._drop(batch, len(line), why, more)

    def _drop(self, batch: Batch, size: int, why: str, more: bool = False) -> None:
        """Count what the spool could not take. Its totals and a tail's positions (a few
        hundred bytes) are still kept, past the cap: totals stay exact, positions move on."""
        essential = batch.essential()
        line = essential.to_bytes(more) if essential is not None else b""
        try:
            if line:
                self.spool.append(line, reserve=True)
        except (SpoolFull, OSError):
            line = b""
        self.drops["dropped_batches"] += 1
        self.drops["dropped_lines"] += 0 if line else batch.delta.lines
        self.drops["dropped_bytes"] += size - len(line)
        if not self._drop_logged:  # once until the spool takes a batch again
            self._drop_logged = True
            self.log(f"{why}; counts dropped (counted in `logcount status`)")

    def _reject(self, batch: Batch, why: str) -> None:
        """A batch Redis refused as invalid: kept in a `.bad` file, never retried."""
        self.drops["rejected_batches"] += 1
        self.drops["rejected_lines"] += batch.delta.lines
        line = batch.to_line()
        try:
            kept = f"kept in {self.spool.reject(line)}"
        except (SpoolFull, OSError) as exc:
            kept = f"not kept ({exc})"
            self.drops["dropped_bytes"] += len(line)
        if why not in self._reasons_logged and len(self._reasons_logged) < 100:
            self._reasons_logged.add(why)
            self.log(f"Redis rejected a batch as invalid ({why}); {kept}, not retried")

    def flush(self, force: bool = False) -> bool:
        """Send what is due; True when nothing is left pending. Never raises."""
        now = time.monotonic()
        if not force and now < self.next_try:
            return False
        try:
            while self._send(self._sending()):
                with self.lock:
                    # A classifier waits for pending to be taken (past its budget): now,
                    # not after the next wake-up of the sender
                    if not self._too_much(0, 0):
                        break
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

    def _sending(self) -> list[Batch]:
        """The batches in flight, after the spool is replayed: what was pending, taken,
        when none were (maybe none)."""
        while True:
            self._replay_spool()
            with self.lock:
                # Spilled while we replayed: those batches are older than what is
                # pending, and go first (a tail's read position must never go back).
                if self.spool.batches:
                    continue
                if not self.inflight:
                    self.inflight_bytes = self.pending_bytes
                    self.inflight_entries = self.pending.size()
                    self.inflight = self._freeze()
                return self.inflight

    def _send(self, sending: list[Batch]) -> bool:
        """Apply the batches in flight, oldest first, one call each: a batch's payload is
        made when its turn comes and the batch goes once applied (three calls' payloads
        and deltas held until the last was applied were the pipe's peak on a diverse
        day). A batch counts once by its marker whatever the calls before it did; a
        failure raises, the batches not applied stay in flight. A spill meanwhile (the
        classifier past pending_limit) copied what was in flight to the spool, ahead of
        newer batches, so that it would not be lost had the send failed: the copy of the
        batch being applied is done already, the others are replayed from there.

        But a tail's parts go in one MULTI/EXEC, as before: its read position rides in
        the last part, and a kill -9 between parts applied one by one would leave counts
        in Redis whose lines the next tail reads again from the position before them.
        False when there was nothing to send."""
        if not sending:
            return False
        if len(sending) > 1 and any(batch.extra for batch in sending) and not self.cluster:
            self._send_together(sending)
            return True
        while True:
            with self.lock:
                if self.inflight is not sending or not sending:
                    return True
                batch = sending[0]
            with self._in_call():
                rejected = self.writer.apply_all([batch])
            with self.lock:
                if self.inflight is sending:
                    # What is left in flight, estimated: a batch's weight is not kept
                    self.inflight_bytes -= self.inflight_bytes // len(sending)
                    self.inflight_entries -= self.inflight_entries // len(sending)
                    del sending[0]
                else:
                    self._copies_done([batch])
            for refused, why in rejected:
                self._reject(refused, why)
            del batch, rejected

    def _send_together(self, sending: list[Batch]) -> None:
        """Apply the batches in flight in one call, all or none (a single Redis)."""
        with self._in_call():
            rejected = self.writer.apply_all(sending)
        with self.lock:
            if self.inflight is sending:
                self.inflight, self.inflight_bytes, self.inflight_entries = [], 0, 0
            else:
                self._copies_done(sending)
        for refused, why in rejected:
            self._reject(refused, why)

    def _copies_done(self, batches: list[Batch]) -> None:
        """`batches` were applied (or refused) after a spill copied them to the spool: their
        copies are skipped when it is replayed. Under the lock."""
        if len(self.done_ids) > DONE_IDS_MAX:
            self.done_ids.clear()
        self.done_ids.update(batch.batch_id for batch in batches)

    def _failed(self, error: str, now: float) -> None:
        if error != self.last_error:
            self.log(f"{error}; keeping counts (pending, then spool) and retrying")
        self.last_error = error
        self.backoff = min(BACKOFF_CAP, self.backoff * 2 if self.backoff else BACKOFF_START)
        self.next_try = now + self.backoff
        with self.lock:
            self.progress.notify_all()  # a classifier waiting spills now
            entries = sum(batch.delta.size() for batch in self.inflight)
            if self._too_much(entries, self.inflight_bytes):
                self._spill()

    def close(self) -> bool:
        """Last flush before exit; what cannot be sent goes to the spool. True if all sent.

        A flush sends the batches in flight, if any, and nothing else: after a failed send
        the pending ones come with the next flush, so flush until nothing is left (each
        one sends something, and no thread submits any more) or one fails."""
        while self.flush(force=True):
            if not (self.pending or self.pending_extra or self.inflight):
                return True
        with self.lock:
            if self.pending or self.pending_extra or self.inflight:
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
            self._replay_file(path, self.spool.adopted(path))
        self._spool_checked = True

    def _replay_file(self, path: Path, adopted: bool = False) -> None:
        """Apply a spool file's batches in order, then remove it; RedisUnavailable leaves
        it for the next try. Lines that are not batches are skipped, and the file is
        then kept as `.bad` (logged once): one bad line must not hold up the others.

        An `adopted` file (its process died) may end in a spill its process did not
        finish: those lines are left out (see _spill), and said so."""
        bad, first, number = 0, "", 0
        whole = self._whole_lines(path) if adopted else None
        try:
            # Not enumerate(): it keeps its last item until the next, and the line would
            # live on beside its batch and the batch's payload while Redis applies it.
            for line in self.spool.read(path):
                number += 1
                if whole is not None and number > whole:
                    break
                if line is not None and self._done(line):
                    continue
                try:
                    if line is None:
                        raise ValueError("too long")
                    # The line goes once decoded, the decoded objects as the batch is
                    # made (line, objects and batch at once were a replay's peak)
                    data = Batch.decode(line)
                    del line
                    batch = Batch.from_data(data)
                    del data
                except ValueError as exc:  # bad JSON, bad UTF-8, not a batch
                    bad, first = bad + 1, first or f"line {number}: {str(exc)[:200]}"
                    continue
                try:
                    with self._in_call():
                        self.writer.apply(batch)
                except BatchRejected as exc:
                    self._reject(batch, str(exc))
                del batch  # not held while the next line is read and decoded
        except FileNotFoundError:
            return  # removed by hand meanwhile
        except OSError as exc:
            bad, first = bad + 1, f"cannot read it: {exc.strerror}"
        try:
            if not bad:
                path.unlink()
                return
            kept = self.spool.quarantine(path)
        except OSError as exc:
            self.log(f"cannot remove replayed spool file {path}: {exc.strerror}")
            return
        self.drops["bad_spool_lines"] += bad
        self.log(
            f"spool file {path.name}: {bad} unreadable line(s) ({first}); "
            f"moved to {kept.name}, the other lines replayed"
        )

    def _whole_lines(self, path: Path) -> int | None:
        """How many of a file's lines come before the unfinished spill it ends in (None
        when it ends in none); logged when there is one. A read pass of its own: a spill is
        up to pending_max_bytes, its lines are not held to be applied later."""
        whole = number = 0
        try:
            for line in self.spool.read(path):
                number += 1
                if line is None or not Batch.more_follows(line):
                    whole = number
        except OSError:
            return None  # the replay's own read says why
        if whole == number:
            return None
        self.log(
            f"spool file {path.name} ends in a spill its process did not finish "
            f"({number - whole} batch(es)): not replayed; a tail reads their lines again "
            "from its saved positions"
        )
        return whole

    def _done(self, line: bytes) -> bool:
        """Is this spool line a copy of a batch Redis took while it was in flight? Its id
        is read from the line's start (Batch.to_line writes it first), not decoding it."""
        if not self.done_ids:
            return False
        found = Batch.id_of_line(line)
        if found is None or found not in self.done_ids:
            return False
        self.done_ids.discard(found)
        return True

    def spooled(self) -> int:
        return self.spool.batches

    def status(self) -> dict[str, Any]:
        """Heartbeat fields: what waits, and what could not be kept."""
        # The sender asks while the classifier merges into `pending`: read unlocked, its
        # dicts changed size under the count (seen with 2,000 sites' pending buckets).
        with self.lock:
            pending = self.pending.size()
        return {
            "spooled": self.spool.batches,
            "spool_bytes": self.spool.used(),
            "pending": pending,
            "pending_bytes": self.pending_bytes,
            **self.waits,
            **self.drops,
        }
