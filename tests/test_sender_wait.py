"""Past its budget of pending deltas the classifier waits for a healthy sender (a bounded
time, sinks.live.SENDER_WAIT) instead of spilling; a stalled or failing Redis still gets
a spill at once, and the writer is never held longer than that bound (plus a margin)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from logcount.sinks.live import SENDER_WAIT
from tests.conftest import RedisServer
from tests.loggen import day_at, generate
from tests.test_pipe import day_hits, start_pipe, write_config
from tests.waiting import wait_for

# What may hold a write on a busy machine beside the wait: the reader waiting for the
# classifier (HARD_AT) with both cores shared. A wait until the sender's read timeout
# (5 s, sinks.connection.READ_TIMEOUT) would exceed it.
MARGIN = 2.0
CHUNK = 2000  # lines a write


def chunks(lines: list[bytes]) -> list[bytes]:
    return [b"\n".join(lines[i : i + CHUNK]) + b"\n" for i in range(0, len(lines), CHUNK)]


class SpoolWatch:
    """Notes any spool file in `directory` while it runs (a spill is replayed within a
    second once Redis is up, so the directory is looked at every 5 ms)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.seen: list[str] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.done.wait(0.005):
            if self.directory.is_dir():
                self.seen += [p.name for p in self.directory.glob("spool-*.jsonl")]

    def stop(self) -> list[str]:
        self.done.set()
        self.thread.join()
        return self.seen


def test_a_healthy_redis_at_full_speed_is_waited_for_not_spilled(
    lc_env: dict[str, str], redis_server: RedisServer, tmp_path: Path
) -> None:
    # A budget of 20,000 entries: a batch of 10,000 of these lines holds more, so the
    # classifier is past it at once and, before the wait, spilled nearly every batch
    # while the sender was busy with the one before.
    write_config(lc_env, "[live]\npending_limit = 20000\n")
    lines, exp = generate(300_000, day_at(2026, 4, 10), seed=5)
    watch = SpoolWatch(tmp_path / "data" / "spool")
    proc = start_pipe(lc_env)
    assert proc.stdin is not None and proc.stderr is not None
    for chunk in chunks(lines):
        proc.stdin.write(chunk)
    proc.stdin.close()
    assert proc.wait(120) == 0
    said = proc.stderr.read().decode()
    assert watch.stop() == [], said
    assert day_hits(redis_server.client(), "20260410") == exp.hits, said


def test_a_stalled_redis_holds_the_writer_no_longer_than_the_bound_and_spills(
    lc_env: dict[str, str], redis_server: RedisServer, tmp_path: Path
) -> None:
    write_config(lc_env, "[live]\npending_limit = 20000\nflush_interval = 0.2\n")
    lines, exp = generate(200_000, day_at(2026, 4, 11), seed=9)
    parts = chunks(lines)
    proc = start_pipe(lc_env)
    assert proc.stdin is not None and proc.stderr is not None
    client = redis_server.client()
    for chunk in parts[:5]:
        proc.stdin.write(chunk)
    proc.stdin.flush()
    wait_for(lambda: day_hits(client, "20260411") > 0, "Redis to take the first lines")
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)  # Redis stalled: up, but answers nothing
    longest = 0.0
    try:
        for chunk in parts[5:]:
            started = time.monotonic()
            proc.stdin.write(chunk)
            proc.stdin.flush()
            longest = max(longest, time.monotonic() - started)
        spool = tmp_path / "data" / "spool"
        wait_for(lambda: list(spool.glob("spool-*.jsonl")), "a spill while Redis is stalled")
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    proc.stdin.close()
    assert proc.wait(120) == 0
    said = proc.stderr.read().decode()
    assert longest < SENDER_WAIT + MARGIN, f"a write was held {longest:.2f} s; {said}"
    assert day_hits(client, "20260411") == exp.hits, said
