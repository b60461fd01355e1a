"""Hostile corpora through the real `logcount pipe`, `tail` and `rollup`.

    .venv/bin/python bench/bench_hostile.py [--only NAME ...] [--million N]

Every byte of an access log is written by the public. For each corpus this prints, per
command: wall time, the longest a writer was blocked on one write of at most 64 KiB (the
pipe's promise: Apache never waits on us), peak RSS of the reader, Redis's peak memory,
and whether the totals are exact (hits + bots + ignored + malformed == lines written).
For `rollup`: time, peak RSS, store rows and file size. At the end the terminal check:
`top` and `top --recent` in table, csv and json form, on a pseudo-terminal, must not let
any of the corpus's escape sequences through.

Corpora: escape storms (`\\x80` repeated, torn mid-escape), 1 MB and 50 MB lines, 8 KB
distinct agents and referrers, raw and escaped terminal sequences, SQL-looking paths, out
of range numbers and dates, and (`--million`) a million distinct URLs in a day.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import random
import select
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OUT, PrivateRedis, logcount_cmd, logcount_env  # noqa: E402

DAY = "17/May/2015"
PIECE = 64 * 1024
STALL = 30.0  # a tail making no progress this long is reported as it stands


def line(
    path: bytes = b"/",
    status: bytes = b"200",
    size: bytes = b"512",
    ref: bytes = b"-",
    agent: bytes = b"Mozilla/5.0",
    when: bytes = DAY.encode() + b":10:00:00 +0000",
    ip: bytes = b"10.0.0.1",
    method: bytes = b"GET",
) -> bytes:
    return (
        ip
        + b" - - ["
        + when
        + b'] "'
        + method
        + b" "
        + path
        + b' HTTP/1.1" '
        + status
        + b" "
        + size
        + b' "'
        + ref
        + b'" "'
        + agent
        + b'"\n'
    )


def escape_storm(n: int) -> Iterator[bytes]:
    for i in range(n):
        k = 10 + i % 190
        storm = b"\\x80" * k
        yield line(path=b"/" + storm, agent=storm, ref=storm)
        if i % 10 == 0:
            yield line(agent=storm)[: 40 + k * 2]  # torn in the middle of the escapes
            yield b"\n"


def long_lines(n: int) -> Iterator[bytes]:
    for i in range(n):
        yield line(path=f"/ok/{i % 50}".encode())
        if i % (n // 4) == 0:
            yield line(agent=b"A" * (1 << 20))
    yield line(path=b"/" + b"x" * (50 << 20))
    yield b"B" * (50 << 20) + b"\n"


def big_fields(n: int) -> Iterator[bytes]:
    for i in range(n):
        pad = f"{i:08d}".encode() * 1024
        yield line(ref=b"http://" + pad + b".example/", agent=b"Mozilla/5.0 " + pad)


def terminal(n: int) -> Iterator[bytes]:
    seqs = [
        b"\x1b]0;pwned\x07",
        b"\x1b]52;c;cHduZWQ=\x07",
        b"\x1b[2J",
        b"\\x1b[2J",
        b"\\x1b]0;pwned\\x07",
        "\u202e".encode(),
        "\u2066".encode(),
        b"\xc2\x9b31m",
    ]
    for i in range(n):
        s = seqs[i % len(seqs)]
        yield line(path=b"/t/" + s, agent=b"evil " + s, ref=b"http://x/" + s)


def sql_like(n: int) -> Iterator[bytes]:
    paths = [
        b"/'; DROP TABLE logcount_day_paths;--",
        b"/%27%20OR%201=1--",
        b'/"\\"); --',
        b"/a'||(SELECT 1)||'",
        b"/=cmd|'/C calc'!A0",
        b"/@SUM(1+1)",
    ]
    for i in range(n):
        yield line(path=paths[i % len(paths)], agent=b'=HYPERLINK("http://x")')


def numbers(n: int) -> Iterator[bytes]:
    bad = [
        {"size": b"99999999999999999999"},
        {"size": b"9223372036854775808"},
        {"size": b"-1"},
        {"size": b"1e308"},
        {"when": b"01/Jan/0001:00:00:00 +0000"},
        {"when": b"31/Dec/9999:23:59:59 -2359"},
        {"when": b"31/Dec/9999:23:59:59 +1400"},
        {"status": b"99999"},
    ]
    for i in range(n):
        yield line(path=f"/good/{i % 7}".encode())
        yield line(**bad[i % len(bad)])  # type: ignore[arg-type]


def million_urls(n: int) -> Iterator[bytes]:
    rnd = random.Random(7)
    for i in range(n):
        sec = i * 86400 // n
        when = f"{DAY}:{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d} +0000".encode()
        yield line(
            path=f"/u/{i}/{rnd.getrandbits(32):08x}".encode(),
            ref=f"http://r{i}.example/{i}".encode(),
            ip=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}".encode(),
            when=when,
        )


CORPORA: dict[str, Callable[[int], Iterator[bytes]]] = {
    "escape_storm": escape_storm,
    "long_lines": long_lines,
    "big_fields": big_fields,
    "terminal": terminal,
    "sql_like": sql_like,
    "numbers": numbers,
    "million_urls": million_urls,
}


def build(name: str, n: int) -> tuple[Path, int]:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"hostile-{name}-{n}.log"
    lines = 0
    with open(path, "wb") as out:
        for chunk in CORPORA[name](n):
            out.write(chunk)
            lines += chunk.count(b"\n")
    return path, lines


# Commands run under this small launcher, which reports their peak RSS: the bench's own
# process is large after a 50 MB line, and a child forked from it counts its parent's
# pages in ru_maxrss until it execs.
LAUNCH = """
import os, signal, sys
out, cmd = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    os.execvp(cmd[0], cmd)
signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGTERM))
_, status, usage = os.wait4(pid, 0)
with open(out, "w") as fh:
    fh.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def launched(cmd: list[str], rss_file: Path) -> list[str]:
    return [sys.executable, "-c", LAUNCH, str(rss_file), *cmd]


def peak_rss(rss_file: Path) -> int:
    """Peak RSS (KiB) the launcher wrote (0 if it wrote nothing)."""
    try:
        return int(rss_file.read_text() or 0)
    except (OSError, ValueError):
        return 0


def redis_total(redis: PrivateRedis) -> int:
    counted = 0
    for key in redis.client.scan_iter("lc:*:t:day:*"):
        fields = redis.client.hgetall(key)
        counted += sum(int(fields.get(f, 0)) for f in (b"hits", b"bots", b"ignored", b"malformed"))
    return counted


def pieces(path: Path) -> Iterator[bytes]:
    """The file as Apache's writes would come: whole lines, at most 64 KiB a write."""
    with open(path, "rb") as fh:
        for raw in fh:
            for at in range(0, len(raw), PIECE):
                yield raw[at : at + PIECE]


def unread(fd: int) -> int:
    """Bytes waiting in a pipe (FIONREAD works on either end on Linux)."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def run_pipe(path: Path, env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, the longest single write, and peak RSS (KiB) of `logcount pipe`."""
    rss_file = Path(env["LOGCOUNT_DATA_DIR"]) / "pipe.rss"
    cmd = launched([*logcount_cmd(), "pipe"], rss_file)
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, env=env)
    assert proc.stdin is not None
    fd = proc.stdin.fileno()
    start = time.perf_counter()
    # Apache starts its logger once, at start-up: time the writes from the moment the
    # reader drains its pipe, not the interpreter's start.
    os.write(fd, line(path=b"/start"))
    while unread(fd) and time.perf_counter() - start < STALL:
        time.sleep(0.01)
    worst = 0.0
    for piece in pieces(path):
        view = memoryview(piece)
        while view:
            t0 = time.perf_counter()
            done = os.write(fd, view)
            worst = max(worst, time.perf_counter() - t0)
            view = view[done:]
    proc.stdin.close()
    proc.wait()
    return time.perf_counter() - start, worst, peak_rss(rss_file)


def run_tail(path: Path, env: dict[str, str], redis: PrivateRedis, lines: int) -> tuple[float, int]:
    """Wall seconds until every line is counted, and peak RSS (KiB) of `logcount tail`."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "access.log"
        target.touch()
        rss_file = Path(tmp) / "tail.rss"
        cmd = launched([*logcount_cmd(), "tail", "--from-start", str(target)], rss_file)
        proc = subprocess.Popen(cmd, env=env)
        start = time.perf_counter()
        with open(target, "ab") as out:
            for piece in pieces(path):
                out.write(piece)
        seen, last_change = 0, time.perf_counter()
        while seen < lines and time.perf_counter() - last_change < STALL:
            time.sleep(0.2)
            now_seen = redis_total(redis)
            if now_seen != seen:
                seen, last_change = now_seen, time.perf_counter()
        took = last_change - start
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        rss = peak_rss(rss_file)
    return took, rss


def run_rollup(path: Path, env: dict[str, str], store: Path) -> tuple[float, int, int, int]:
    """Wall seconds, peak RSS (KiB), store rows and store bytes of `logcount rollup FILE`."""
    env = dict(env, LOGCOUNT_STORE=f"sqlite:///{store}")
    start = time.perf_counter()
    rss_file = store.with_suffix(".rss")
    cmd = launched([*logcount_cmd(), "rollup", "--quiet", "--logs", str(path)], rss_file)
    subprocess.run(cmd, env=env, check=False)
    took = time.perf_counter() - start
    rss = peak_rss(rss_file)
    rows = 0
    with sqlite3.connect(store) as db:
        for (table,) in db.execute("select name from sqlite_master where type='table'"):
            rows += db.execute(f'select count(*) from "{table}"').fetchone()[0]
    return took, rss, rows, store.stat().st_size


def on_terminal(cmd: list[str], env: dict[str, str]) -> bytes:
    """What `cmd` writes to a pseudo-terminal."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(cmd[0], cmd, env)
    out = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    return out


LEAKS = (
    b"\x1b]0;pwned",
    b"\x1b]52;",
    b"\x1b[2J",
    "\u202e".encode(),
    "\u2066".encode(),
    b"\xc2\x9b",
)


def terminal_check(env: dict[str, str]) -> list[str]:
    found = []
    for extra in ([], ["--recent"]):
        for fmt in ("table", "csv", "json"):
            cmd = [*logcount_cmd(), "top", "--window", "2015-05-17", "--format", fmt, *extra]
            out = on_terminal(cmd, env)
            for leak in LEAKS:
                if leak in out:
                    found.append(f"top {' '.join(extra)} --format {fmt}: {leak!r}")
    return found


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", default=list(CORPORA))
    ap.add_argument("--lines", type=int, default=20_000)
    ap.add_argument("--million", type=int, default=1_000_000)
    ap.add_argument("--skip-tail", action="store_true")
    args = ap.parse_args()
    failures = []
    for name in args.only:
        n = args.million if name == "million_urls" else args.lines
        path, lines = build(name, n)
        size = path.stat().st_size / 1e6
        print(f"\n{name}: {lines:,} lines, {size:,.0f} MB")
        for mode in ("pipe", "tail", "rollup"):
            if mode == "tail" and args.skip_tail:
                continue
            redis = PrivateRedis()
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    config = Path(tmp) / "logcount.toml"
                    config.write_text('site = "bench"\n')
                    env = logcount_env(redis.url, Path(tmp), config)
                    if mode == "pipe":
                        took, worst, rss = run_pipe(path, env)
                    elif mode == "tail":
                        took, rss = run_tail(path, env, redis, lines)
                        worst = 0.0
                    else:
                        took, rss, rows, nbytes = run_rollup(path, env, Path(tmp) / "s.sqlite3")
                        print(
                            f"  rollup {took:7.1f} s  peak RSS {rss / 1024:6.0f} MB  "
                            f"store {rows:,} rows, {nbytes / 1e6:.1f} MB"
                        )
                        if name == "terminal":
                            store = f"sqlite:///{Path(tmp) / 's.sqlite3'}"
                            failures += terminal_check(dict(env, LOGCOUNT_STORE=store))
                        continue
                    counted = redis_total(redis) - (mode == "pipe")  # the start line
                    peak = int(redis.client.info("memory")["used_memory_peak"])
                    exact = "exact" if counted == lines else f"COUNTED {counted:,}"
                    print(
                        f"  {mode:6} {took:7.1f} s  longest write {worst:6.3f} s  "
                        f"peak RSS {rss / 1024:6.0f} MB  Redis peak {peak / 1e6:6.1f} MB  "
                        f"{exact}"
                    )
                    if counted != lines or worst > 1.0:
                        failures.append(f"{name} {mode}: counted {counted}, write {worst:.2f}s")
            finally:
                redis.stop()
    print("\n" + ("\n".join(f"FAIL {f}" for f in failures) if failures else "all corpora: OK"))
    print(json.dumps({"failures": failures}))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
