"""`logcount pipe` end to end against `cat` and a plain apachelogs loop, in the same run.

    .venv/bin/python bench/bench_pipe.py [--lines N]

logcount runs pinned to one core (taskset -c 0), the private redis-server on the other.
Prints lines/s for each, the ratio to apachelogs, and peak RSS of the pipe's processes.
Targets (issue 2): >= 250,000 lines/s end to end, >= 5x apachelogs, peak RSS < 80 MB.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import logcount_cmd, million_lines, private_logcount, timed  # noqa: E402


def apachelogs_loop(path: Path) -> tuple[float, int]:
    import apachelogs

    parser = apachelogs.LogParser(apachelogs.COMBINED)
    start = time.perf_counter()
    n = 0
    with open(path, encoding="iso-8859-1") as fh:
        for line in fh:
            try:
                parser.parse(line)
            except apachelogs.InvalidEntryError:
                pass
            n += 1
    return time.perf_counter() - start, n


def run_pipe(path: Path) -> tuple[float, int, int]:
    """Seconds and peak RSS (KiB) of `logcount pipe < path`, and the lines it counted."""
    with private_logcount() as (redis, env):
        seconds, _, rss = timed(["taskset", "-c", "0", *logcount_cmd(), "pipe"], env, path)
        counted = 0
        for key in redis.client.scan_iter("lc:*:t:day:*"):
            fields = redis.client.hgetall(key)
            counted += sum(int(fields.get(f, 0)) for f in (b"hits", b"bots", b"ignored"))
    return seconds, rss, counted


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    args = ap.parse_args()
    n = args.lines
    day = million_lines(n)
    hour = million_lines(n, hours=1)
    live = million_lines(n, seconds=max(1, n // 250_000))
    print(
        f"input: {n:,} combined lines ({day.stat().st_size / 1e6:.0f} MB) from the real "
        "elastic_apache_logs.log, their times spread over one day, over one hour, and over "
        "the seconds a site serving 250,000 requests/s takes to write them"
    )
    cat_s, _, _ = timed(["taskset", "-c", "0", "cat", str(day)])
    al_s, al_n = apachelogs_loop(day)
    al_rate = al_n / al_s
    print(f"cat                                {n / cat_s:>12,.0f} lines/s")
    print(f"apachelogs parse() loop            {al_rate:>12,.0f} lines/s")
    spreads = (("1 day", day), ("1 hour", hour), (f"{max(1, n // 250_000)} s", live))
    for label, path in spreads:
        seconds, rss, counted = run_pipe(path)
        rate = n / seconds
        print(
            f"logcount pipe, 1 core, {label:<7}    {rate:>12,.0f} lines/s   "
            f"{rate / al_rate:4.1f}x apachelogs   peak RSS {rss / 1024:.0f} MB"
        )
        if counted != n - n // 10_000:  # the source has 1 malformed line in 10,000
            print(f"WARNING: counted {counted:,} lines, expected {n - n // 10_000:,}")


if __name__ == "__main__":
    main()
