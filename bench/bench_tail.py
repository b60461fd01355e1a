"""`logcount tail --from-start` on 1,000,000 combined lines, beside `logcount pipe`, in one run.

    .venv/bin/python bench/bench_tail.py [--lines N] [--skip-pipe] [--data both|real|diverse]

Two inputs (--data, default both), each over one day: the real elastic_apache_logs.log
repeated to N lines with re-spread timestamps (bench/common.million_lines), and N lines
generated as diverse as a busy day (bench/diverse.py). Each command runs pinned to one
core (taskset -c 0) against its own private redis-server on the last core. `pipe` is
timed to its exit at EOF; `tail` never exits on its own, so it is timed until Redis holds
every line (totals polled every 50 ms), then stopped with SIGTERM. Prints lines/s for
both, their ratio and peak RSS. Target (issue 3): tail within 20% of pipe.

Both run with `flush_interval = 0.1`: a tail never reaches EOF, so its last partial batch
waits for the flusher's next tick (up to 1 s by default), where the pipe flushes at EOF at
once; with 1 s that wait alone moved the ratio between 0.77 and 1.08 from run to run.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    PrivateRedis,
    add_data_option,
    diverse_day,
    logcount_cmd,
    million_lines,
    private_logcount,
    reap,
    spawn,
    timed,
)
from logcount.sinks import keys  # noqa: E402

FIELDS = ("hits", "bots", "ignored", "malformed")
CONFIG = "[live]\nflush_interval = 0.1\n"


def counted(redis: PrivateRedis) -> int:
    """Every line the counters account for (hits, bots, ignored, malformed).

    The input spans one day, so one HMGET of the day's totals suffices: a SCAN over every
    key, 50 times a second, would load the machine we measure."""
    days = {
        "20150517",
        *(time.strftime("%Y%m%d", f(time.time())) for f in (time.gmtime, time.localtime)),
    }
    total = 0
    for day in days:  # malformed lines count on the day they arrive
        values = redis.client.hmget(keys.totals("bench", "day", day), FIELDS)
        total += sum(int(v or 0) for v in values)
    return total


def run_tail(path: Path, n: int) -> tuple[float, int, int, float]:
    """Seconds until all n lines are counted, peak RSS (KiB), lines counted, CPU seconds."""
    with private_logcount(more_config=CONFIG) as (redis, env):
        cmd = ["taskset", "-c", "0", *logcount_cmd(), "tail", "--from-start", str(path)]
        start = time.perf_counter()
        pid = spawn(cmd, env)
        seen, last_change, elapsed = 0, time.perf_counter(), 0.0
        while True:
            now_seen = counted(redis)
            now = time.perf_counter()
            if now_seen != seen:
                seen, last_change = now_seen, now
            if seen >= n or now - last_change > 30:
                elapsed = last_change - start
                break
            time.sleep(0.05)
        os.kill(pid, signal.SIGTERM)
        cpu, rss = reap(pid, cmd)
        return elapsed, rss, counted(redis), cpu


def run_pipe(path: Path) -> tuple[float, int, int, float]:
    with private_logcount(more_config=CONFIG) as (redis, env):
        seconds, cpu, rss = timed(["taskset", "-c", "0", *logcount_cmd(), "pipe"], env, path)
        return seconds, rss, counted(redis), cpu


def report(name: str, n: int, seconds: float, rss: int, lines: int, cpu: float) -> float:
    rate = n / seconds
    print(
        f"{name:<36}{rate:>10,.0f} lines/s   peak RSS {rss / 1024:.0f} MB   "
        f"counted {lines:,}   CPU {cpu:.1f} s"
    )
    return rate


def compare(path: Path, n: int, skip_pipe: bool) -> None:
    tail_rate = report("logcount tail --from-start (1 core)", n, *run_tail(path, n))
    if skip_pipe:
        return
    pipe_rate = report("logcount pipe (1 core)", n, *run_pipe(path))
    print(f"tail / pipe: {tail_rate / pipe_rate:.2f} (target: >= 0.80)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--skip-pipe", action="store_true", help="time tail only")
    add_data_option(ap)
    args = ap.parse_args()
    n = args.lines
    cpus = os.cpu_count() or 1
    os.sched_setaffinity(0, {cpus - 1})  # this poller stays off the measured core
    if args.data in ("both", "real"):
        path = million_lines(n)
        print(f"input: {path} ({n:,} real lines repeated, {path.stat().st_size / 1e6:.0f} MB)")
        compare(path, n, args.skip_pipe)
    if args.data in ("both", "diverse"):
        path = diverse_day(n, args.seed)
        print(
            f"input: {path} ({n:,} lines as diverse as a busy day, "
            f"{path.stat().st_size / 1e6:.0f} MB, seed {args.seed})"
        )
        compare(path, n, args.skip_pipe)


if __name__ == "__main__":
    main()
