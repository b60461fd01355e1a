"""`logcount pipe` as Apache runs it: a real process, real signals, a real Redis."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis

from logcount.sinks import keys
from tests.conftest import LOGCOUNT, logcount_env, run_logcount
from tests.loggen import ROUTES_TOML, day_at, generate
from tests.waiting import read_until, wait_for


def start_pipe(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        LOGCOUNT + ["pipe", *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def reader_child(proc: subprocess.Popen[bytes], timeout: float = 10) -> int:
    """The pid of the supervisor's reader child."""
    deadline = time.monotonic() + timeout
    path = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    while time.monotonic() < deadline:
        children = path.read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.02)
    raise AssertionError("no reader child")


def read_stderr_until(proc: subprocess.Popen[bytes], text: bytes, timeout: float = 30) -> bytes:
    """What the pipe has written to stderr, read (without blocking) until `text` is in it."""
    return read_until(proc.stderr, lambda seen: text in seen, f"{text!r} on stderr", timeout)


def top_json(env: dict[str, str], window: str, by: str = "path", limit: int = 10000) -> dict:
    result = run_logcount(
        ["top", "--window", window, "--by", by, "--limit", str(limit), "--format", "json"], env
    )
    assert result.returncode == 0, result.stderr.decode()
    return json.loads(result.stdout)


def rows(report: dict) -> dict[str, int]:
    return {r["key"]: r["hits"] for r in report["rows"]}


def write_config(env: dict[str, str], text: str) -> None:
    Path(env["LOGCOUNT_CONFIG"]).write_text('site = "test"\n' + text)


def day_hits(client: redis.Redis, label: str) -> int:
    return int(client.hget(keys.totals("test", "day", label), "hits") or 0)


def test_acceptance_60k_exact_counts(lc_env: dict[str, str]) -> None:
    """60,000 lines with routes, bots, IPv6, escaped quotes and malformed lines. The
    visitor key is fixed: Redis' HyperLogLog estimate depends on the hashes, and with a
    random key per run it fell outside 2 % about once in a hundred runs."""
    write_config(lc_env, '[privacy]\nsecret = "the acceptance test\'s fixed key"\n' + ROUTES_TOML)
    lines, exp = generate(60_000, day_at(2026, 3, 14), malformed_every=997)
    result = run_logcount(["pipe"], lc_env, input=b"\n".join(lines) + b"\n")
    assert result.returncode == 0, result.stderr.decode()

    by_path = top_json(lc_env, "2026-03-14", "path")
    assert rows(by_path) == dict(exp.paths)
    assert rows(top_json(lc_env, "2026-03-14", "object")) == dict(exp.objects)
    assert rows(top_json(lc_env, "2026-03-14", "status")) == dict(exp.statuses)
    total = by_path["total"]
    assert (total["hits"], total["bots"], total["bytes"]) == (exp.hits, exp.bots, exp.bytes)
    assert abs(total["visitors"] - len(exp.visitors)) <= 0.02 * len(exp.visitors)
    # Malformed lines have no time of their own: they count today, when they arrived.
    assert top_json(lc_env, "today")["total"]["malformed"] == exp.malformed
    assert exp.malformed == 60


def test_counts_land_in_the_bucket_of_the_lines_own_time(lc_env, redis_client) -> None:
    lines = [
        b'10.0.0.1 - - [01/Feb/2026:23:59:59 +0100] "GET /late HTTP/1.1" 200 10 "-" "x/1"',
        b'10.0.0.1 - - [02/Feb/2026:00:00:00 +0100] "GET /early HTTP/1.1" 200 10 "-" "x/1"',
    ]
    assert run_logcount(["pipe"], lc_env, input=b"\n".join(lines) + b"\n").returncode == 0
    z = keys.members("test", "path", "minute", "202602012359")
    assert redis_client.zscore(z, "/late") == 1
    assert redis_client.zscore(keys.members("test", "path", "day", "20260202"), "/early") == 1
    assert redis_client.ttl(z) > 3 * 3600 - 60


def test_kill_9_of_the_reader_loses_at_most_one_flush_interval(lc_env, redis_client) -> None:
    rate, seconds = 2000, 6  # lines per second written, for this long
    lines, _ = generate(rate * seconds, day_at(2026, 4, 1), ipv6_share=0)
    proc = start_pipe(lc_env)
    first = reader_child(proc)
    assert proc.stdin is not None
    for i in range(seconds * 10):
        proc.stdin.write(b"\n".join(lines[i * rate // 10 : (i + 1) * rate // 10]) + b"\n")
        proc.stdin.flush()
        if i == seconds * 5:
            os.kill(first, signal.SIGKILL)
        time.sleep(0.1)
    second = reader_child(proc)
    assert second != first
    proc.stdin.close()
    assert proc.wait(30) == 0
    counted = day_hits(redis_client, "20260401") + int(
        redis_client.hget(keys.totals("test", "day", "20260401"), "bots") or 0
    )
    # What the dead child had read but not flushed: one interval's lines (plus a read chunk).
    assert len(lines) - rate * 1.5 <= counted <= len(lines)
    assert b"died (signal SIGKILL)" in proc.stderr.read()


def test_sigterm_flushes_pending_counts_then_exits_0(lc_env, redis_client) -> None:
    write_config(lc_env, "[live]\nflush_interval = 60\ngrace = 1\n")
    lines, exp = generate(500, day_at(2026, 4, 2))
    proc = start_pipe(lc_env)
    reader_child(proc)
    assert proc.stdin is not None
    proc.stdin.write(b"\n".join(lines) + b"\n")
    proc.stdin.flush()
    # Time passes to show nothing is sent before the interval (no state to wait for: the
    # heartbeat that would say the lines are read comes with the 60 s flush).
    time.sleep(1)
    assert day_hits(redis_client, "20260402") == 0  # still pending: interval is 60 s
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0  # stdin still open: the grace deadline ends the drain
    assert day_hits(redis_client, "20260402") == exp.hits


def test_redis_down_at_start_then_up_counts_exactly_once(lc_env, redis_server) -> None:
    redis_server.stop()
    lines, exp = generate(3000, day_at(2026, 4, 3))
    proc = start_pipe(lc_env)
    assert proc.stdin is not None
    proc.stdin.write(b"\n".join(lines[:1500]) + b"\n")
    proc.stdin.flush()
    # Redis comes back once the reader has tried to send counts and been refused (it says
    # so): however far it got with the first half, the counts below are exact.
    said = read_stderr_until(proc, b"cannot reach Redis")
    redis_server.start()
    proc.stdin.write(b"\n".join(lines[1500:]) + b"\n")
    proc.stdin.close()
    assert proc.wait(60) == 0
    assert proc.stderr is not None
    said += proc.stderr.read()  # what it said is in the failure message, should one fail
    client = redis_server.client()
    assert rows(top_json(lc_env, "2026-04-03")) == dict(exp.paths), said
    minute = "202604031200"  # line 1500 of 3000 is stamped at noon
    assert client.zcard(keys.members("test", "path", "minute", minute)) > 0
    assert day_hits(client, "20260403") == exp.hits, said


def test_50mb_while_redis_is_down_never_blocks_the_writer(lc_env, redis_server, tmp_path) -> None:
    write_config(lc_env, "[live]\npending_limit = 20000\n")
    redis_server.stop()
    lines, exp = generate(200_000, day_at(2026, 4, 4), seed=7)
    data = b"\n".join(lines) + b"\n"
    copies = 50_000_000 // len(data) + 1
    proc = start_pipe(lc_env)
    assert proc.stdin is not None
    started = time.monotonic()
    for _ in range(copies):
        proc.stdin.write(data)
    proc.stdin.close()
    elapsed = time.monotonic() - started
    assert proc.wait(120) == 0
    assert elapsed < 60, f"writer took {elapsed:.1f}s"
    spool = list((tmp_path / "data" / "spool").glob("spool-*.jsonl"))
    assert spool, "pending deltas beyond the budget go to the spool"
    # Redis back: the next reader replays the spool left by the exited one.
    redis_server.start()
    assert run_logcount(["pipe"], lc_env, input=b"").returncode == 0
    assert day_hits(redis_server.client(), "20260404") == exp.hits * copies
    assert not list((tmp_path / "data" / "spool").glob("spool-*.jsonl"))


def test_flood_of_random_urls_is_capped_at_max_members(lc_env, redis_client) -> None:
    import random

    rng = random.Random(3)
    n = 200_000
    lines = [
        (
            f"10.1.{i % 250}.{i % 199 + 1} - - [05/Apr/2026:10:{i * 60 // n:02d}:00 +0000] "
            f'"GET /r/{rng.getrandbits(64):016x} HTTP/1.1" 200 7 "-" "x/1"'
        ).encode()
        for i in range(n)
    ]
    result = run_logcount(["pipe"], lc_env, input=b"\n".join(lines) + b"\n")
    assert result.returncode == 0
    for gran, label in (("day", "20260405"), ("hour", "2026040510"), ("minute", "202604051030")):
        z = keys.members("test", "path", gran, label)
        assert redis_client.zcard(z) <= 10_000 + 1
        assert redis_client.zscore(z, keys.OTHER) is not None or gran == "minute"
        total = int(redis_client.hget(keys.totals("test", gran, label), "hits"))
        assert sum(s for _, s in redis_client.zrange(z, 0, -1, withscores=True)) == total
    assert redis_client.zcard(keys.members("test", "path", "day", "20260405")) == 10_001
    assert day_hits(redis_client, "20260405") == n


def reloaded_pipe(
    env: dict[str, str],
    client: redis.Redis,
    configs: tuple[str, str],
    first: bytes,
    reloaded: bytes,
) -> tuple[subprocess.Popen[bytes], bytes]:
    """A pipe started with the first config (after `[live]`), fed `first` (lines of
    2026-04-06) until Redis holds them, then given the second config by SIGHUP; its
    stderr up to `reloaded`. Its stdin stays open for the lines after the reload."""
    live = "[live]\nflush_interval = 0.2\n"
    write_config(env, live + configs[0])
    proc = start_pipe(env)
    reader_child(proc)
    assert proc.stdin is not None
    proc.stdin.write(first)
    proc.stdin.flush()
    wait_for(
        lambda: day_hits(client, "20260406") == first.count(b"\n"),
        "the first lines counted",
        60,
        ignoring=(redis.RedisError, OSError),
    )
    write_config(env, live + configs[1])
    proc.send_signal(signal.SIGHUP)
    return proc, read_stderr_until(proc, reloaded)


def test_sighup_reloads_routes_without_losing_counts(lc_env, redis_client) -> None:
    line = b'10.0.0.1 - - [06/Apr/2026:10:00:00 +0000] "GET /products/7 HTTP/1.1" 200 5 "-" "x/1"\n'
    proc, said = reloaded_pipe(
        lc_env,
        redis_client,
        ("", '[[route]]\nregex = "^/products/(?P<id>[0-9]+)"\nobject = "product"\n'),
        line * 3,
        b"configuration reloaded (1 routes)",
    )
    assert proc.stdin is not None
    proc.stdin.write(line * 2)
    proc.stdin.close()
    assert proc.wait(30) == 0
    assert redis_client.zscore(keys.members("test", "object", "day", "20260406"), "product:7") == 2
    assert day_hits(redis_client, "20260406") == 5
    assert b"configuration reloaded (1 routes)" in said


def test_sighup_adds_events_and_sections_to_a_reader_started_without(
    lc_env: dict[str, str], redis_client: redis.Redis
) -> None:
    """A reload that adds events and live sections renews the counter, whose visitor keys
    then carry the request: they count from the reload on, without a restart."""

    def visit(client: str, path: str) -> bytes:
        stamp = "06/Apr/2026:10:00:00 +0000"
        return f'{client} - - [{stamp}] "GET {path} HTTP/1.1" 200 5 "-" "x/1"\n'.encode()

    proc, _ = reloaded_pipe(
        lc_env,
        redis_client,
        (
            "section_depth = 0\n",
            'section_depth = 1\n[[event]]\nname = "signup"\npath = "/signup"\n',
        ),
        visit("10.0.0.1", "/signup"),
        b"configuration reloaded (0 routes)",
    )
    assert proc.stdin is not None
    proc.stdin.write(visit("10.0.0.2", "/signup") + visit("10.0.0.3", "/signup"))
    proc.stdin.write(visit("10.0.0.3", "/docs/a") + visit("10.0.0.4", "/docs/b"))
    proc.stdin.close()
    assert proc.wait(30) == 0
    assert day_hits(redis_client, "20260406") == 5
    window = ["--window", "2026-04-06", "--format", "json"]
    signed = run_logcount(["visitors", "signup", *window], lc_env)
    assert signed.returncode == 0, signed.stderr
    assert json.loads(signed.stdout)["total"] == 2  # those after the reload
    sections = run_logcount(["top", "--by", "path", "--depth", "1", *window], lc_env)
    rows = {r["key"]: (r["hits"], r["visitors"]) for r in json.loads(sections.stdout)["rows"]}
    assert rows == {"/signup": (3, 2), "/docs/": (2, 2)}


def test_config_error_is_logged_once_and_input_drained(lc_env) -> None:
    write_config(lc_env, '[[route]]\npattern = "/x/<int:id>/"\n')  # no object
    proc = start_pipe(lc_env)
    assert proc.stdin is not None
    for _ in range(80):  # 8 MB: far more than a pipe holds, so a stalled reader would block us
        proc.stdin.write(b"x" * 99_999 + b"\n")
    proc.stdin.close()
    assert proc.wait(30) == 0
    err = proc.stderr.read().decode()
    assert err.count("fatal:") == 1
    assert "route #1: missing 'object'" in err
    assert "Traceback" not in err


def test_two_loggers_at_once_both_count(lc_env, redis_client) -> None:
    lines, exp = generate(20_000, day_at(2026, 4, 7))
    procs = [start_pipe(lc_env) for _ in range(2)]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"\n".join(lines) + b"\n")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(60) == 0
    assert day_hits(redis_client, "20260407") == 2 * exp.hits


def test_status_lists_running_readers(lc_env) -> None:
    write_config(lc_env, "[live]\nflush_interval = 0.2\n")
    proc = start_pipe(lc_env)
    child = reader_child(proc)
    assert proc.stdin is not None
    proc.stdin.write(
        b'10.0.0.1 - - [06/Apr/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "x"\nnot a line\n'
    )
    proc.stdin.flush()
    deadline = time.monotonic() + 10
    readers: list[dict] = []
    while time.monotonic() < deadline:
        out = run_logcount(["status", "--format", "json"], lc_env)
        readers = [r for r in json.loads(out.stdout) if r["pid"] == child]
        if readers and readers[0]["lines"] == 1:
            break
        time.sleep(0.3)
    proc.stdin.close()
    proc.wait(30)
    assert readers, "the reader's heartbeat is listed"
    r = readers[0]
    assert (r["mode"], r["lines"], r["malformed"], r["spooled"]) == ("pipe", 1, 1, 0)
    table = run_logcount(["status"], lc_env).stdout.decode()
    assert "no running readers" in table or "pipe" in table


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_user_drops_root_privileges(lc_env, redis_client) -> None:
    import tempfile

    data = Path(tempfile.mkdtemp(prefix="logcount-user-"))  # pytest's tmp is root-only
    os.chown(data, 65534, 65534)
    lc_env = {**lc_env, "LOGCOUNT_DATA_DIR": str(data)}
    proc = start_pipe(lc_env, "--user", "nobody")
    child = reader_child(proc)

    def uids() -> list[str]:
        status = Path(f"/proc/{child}/status").read_text().splitlines()
        return next(line for line in status if line.startswith("Uid:")).split()[1:]

    # The reader drops root right after its fork: wait for it rather than read too soon.
    deadline = time.monotonic() + 10
    while uids() != ["65534"] * 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert uids() == ["65534"] * 4
    assert proc.stdin is not None
    proc.stdin.write(b'10.0.0.1 - - [08/Apr/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "x"\n')
    proc.stdin.close()
    assert proc.wait(30) == 0
    assert day_hits(redis_client, "20260408") == 1, proc.stderr.read().decode()
    shutil.rmtree(data)


def test_embedded_redis_is_started_and_shared(tmp_path) -> None:
    env = logcount_env()
    env.update(
        {
            "LOGCOUNT_DATA_DIR": str(tmp_path / "d"),
            "LOGCOUNT_CONFIG": str(tmp_path / "c"),
            "PYTHONPATH": str(Path(__file__).parent.parent),
        }
    )
    (tmp_path / "c").write_text('site = "test"\n')
    lines, exp = generate(1000, day_at(2026, 4, 9))
    try:
        assert run_logcount(["pipe"], env, input=b"\n".join(lines) + b"\n").returncode == 0
        assert (tmp_path / "d" / "redis.sock").exists()
        assert top_json(env, "2026-04-09")["total"]["hits"] == exp.hits
    finally:
        run_logcount(["embedded", "stop"], env)
