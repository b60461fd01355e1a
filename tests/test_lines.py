"""One line policy for pipe, tail and rollup (logcount/count/lines.py), through real processes.

A line longer than MAX_LINE is counted once as malformed and its bytes skipped, not held:
a 50 MB line leaves each process well under 100 MB. A last line without a newline is a
line at the end of `pipe`'s input and of a rollup's file; `tail` waits for its newline.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from logcount.count.lines import LineSplitter, Piece
from logcount.sinks import keys
from logcount.sinks.live import HOST
from logcount.sources.follow import Position
from tests.conftest import LOGCOUNT, run_logcount
from tests.waiting import wait_for

DAY = "20260408"
HUGE = 50 << 20
PEAK_LIMIT_KB = 100 << 10
# Runs a command and writes the peak resident size (KB) of it and of every process under
# it that was waited for; SIGTERM is passed on to the command.
MEASURED = """
import resource, signal, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
code = proc.wait()
with open(sys.argv[1], "w") as f:
    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""


def line(i: int) -> bytes:
    when = "[08/Apr/2026:10:00:00 +0000]"
    return f'10.0.0.{i % 200} - - {when} "GET /p/{i} HTTP/1.1" 200 5 "-" "x"'.encode()


def good(first: int, n: int) -> bytes:
    return b"".join(line(i) + b"\n" for i in range(first, first + n))


def measured(args: list[str], peak: Path) -> list[str]:
    return [sys.executable, "-c", MEASURED, str(peak), *LOGCOUNT, *args]


def peak_kb(peak: Path) -> int:
    return int(peak.read_text())


def totals(client: redis.Redis, label: str) -> dict[str, int]:
    data = client.hgetall(keys.totals("test", "day", label))
    return {k.decode(): int(v) for k, v in data.items()}


def paths(env: dict[str, str], window: str) -> dict[str, int]:
    done = run_logcount(
        ["top", "--window", window, "--by", "path", "--limit", "1000", "--format", "json"], env
    )
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    return {r["key"]: r["hits"] for r in report["rows"]} | {"": report["total"]["malformed"]}


def expected(*ranges: range, malformed: int) -> dict[str, int]:
    return {f"/p/{i}": 1 for r in ranges for i in r} | {"": malformed}


# -- the splitter alone -------------------------------------------------------------------


def split(data: bytes, max_line: int, block: int) -> list[tuple[str, bytes, int]]:
    """What the splitter gives for `data` read `block` bytes at a time, then finished."""
    splitter, out, pos = LineSplitter(max_line, block), [], 0

    def take(pieces: list[Piece]) -> None:
        for piece in pieces:
            if piece.long is not None:
                out.append(("long", piece.long, piece.size))
            else:
                out.append(("lines", bytes(piece.lines or b""), piece.size))

    while pos < len(data):
        space = splitter.space()
        n = min(len(space), len(data) - pos)
        space[:n] = data[pos : pos + n]
        pos += n
        take(splitter.filled(n))
    take(splitter.finish())
    return out


def test_splitter_sizes_long_lines_and_the_last_line() -> None:
    data = b"ab\n" + b"x" * 25 + b"\ncd\n" + b"y" * 9 + b"\nef"
    assert split(data, max_line=8, block=4) == [
        ("lines", b"ab\n", 3),
        ("long", b"x" * 9, 26),  # the sample: what was held when it went over
        ("lines", b"cd\n", 3),
        ("long", b"y" * 9, 10),
        ("lines", b"ef\n", 2),  # the input's bytes: the newline is added
    ]
    assert split(b"ab\n" + b"z" * 30, max_line=8, block=8) == [
        ("lines", b"ab\n", 3),
        ("long", b"z" * 13, 30),  # an over-long last line stays malformed, counted once
    ]


# -- pipe ----------------------------------------------------------------------------------


@pytest.mark.parametrize("last", ["line", "huge line"])
def test_pipe_a_50mb_line_is_one_malformed_line_and_memory_stays_low(
    last: str, lc_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> None:
    """The last line has no newline: a line like any other at EOF (an over-long one is
    malformed, once)."""
    end = line(10) if last == "line" else b"z" * HUGE
    data = good(0, 5) + b"x" * HUGE + b"\n" + good(5, 5) + end
    peak = tmp_path / "peak"
    done = subprocess.run(measured(["pipe"], peak), env=lc_env, input=data, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    want = expected(range(11), malformed=1) if last == "line" else expected(range(10), malformed=2)
    assert paths(lc_env, "2026-04-08") | {"": 0} == want | {"": 0}
    assert paths(lc_env, "today")[""] == want[""]
    assert peak_kb(peak) < PEAK_LIMIT_KB


# -- tail ----------------------------------------------------------------------------------


def test_tail_skips_50mb_and_70mb_lines_once_each_and_moves_past_them(
    lc_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Each over-long line is written in pieces while the tail follows; a line over 64 MiB
    used to stop the tail for good. The committed position ends after the last line."""
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    peak = tmp_path / "peak"
    proc = subprocess.Popen(
        measured(["tail", "--from-start", str(log)], peak), env=lc_env, stdout=subprocess.DEVNULL
    )
    try:
        with open(log, "ab", buffering=0) as fh:
            fh.write(good(0, 1))
            wait_for(lambda: totals(redis_client, DAY).get("hits") == 1, "the tail to start", 60)
            fh.write(good(1, 4))
            for size in (HUGE, 70 << 20):
                for _ in range(size >> 20):
                    fh.write(b"x" * (1 << 20))
                fh.write(b"\n" + good(5, 5) if size == HUGE else b"\n" + good(10, 5))
        wait_for(lambda: totals(redis_client, DAY).get("hits") == 15, "15 hits", 60)
        key = keys.position("test", HOST, str(log))

        def at_end() -> bool:
            saved = Position.from_json(redis_client.get(key))
            return saved is not None and saved.offset == log.stat().st_size

        wait_for(at_end, "the position after the last line", 60)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0
    assert paths(lc_env, "2026-04-08") | {"": 0} == expected(range(15), malformed=0)
    assert paths(lc_env, "today")[""] == 2
    assert peak_kb(peak) < PEAK_LIMIT_KB


# -- rollup --------------------------------------------------------------------------------


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_rollup_a_50mb_line_is_one_malformed_line_and_the_last_line_counts(
    jobs: str, lc_env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    with open(log, "wb") as fh:
        fh.write(good(0, 5))
        fh.write(b"x" * HUGE + b"\n")
        fh.write(good(5, 5) + line(10))  # the last line without its newline
    peak = tmp_path / "peak"
    args = ["rollup", "--logs", str(log), "--jobs", jobs]
    done = subprocess.run(measured(args, peak), env=lc_env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert paths(lc_env, "2026-04-08") == expected(range(11), malformed=1)
    assert peak_kb(peak) < PEAK_LIMIT_KB
