"""Benchmark: `logcount serve` under a steady request rate on loopback.

Starts a private redis-server (pinned to the last core), pipes the real
elastic_apache_logs.log (10,000 lines, re-stamped over the last hour of today) through
`logcount pipe`, starts `logcount serve` (not pinned), then sends requests
at a fixed rate for a while and reports the latencies:

- `GET /api/hits?path=...` (`logcount hits`: 30 days) at 1,000 requests/s, target p99 < 20 ms;
- `GET /api/top?window=today` (`logcount top --format json`) at 200/s, target p99 < 100 ms.

The load is open-loop (a request is due at its time whether or not the ones before it
have been answered; its latency counts from when it was due, so a stall is not hidden),
sent over 32 keep-alive connections by one asyncio process (pinned beside Redis).

    .venv/bin/python bench/bench_serve.py [--seconds 30] [--hits-rate 1000] [--top-rate 200]
        [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import REAL, free_port, logcount_cmd, private_logcount, timed  # noqa: E402

CONNECTIONS = 32
_STAMP = re.compile(rb"\[[^\]]+\]")


def today_log(path: Path) -> None:
    """The real lines, stamped over the hour before now."""
    lines = [ln for ln in REAL.read_bytes().split(b"\n") if ln]
    now = datetime.now().astimezone()
    start = now - timedelta(hours=1)
    with open(path, "wb") as out:
        for i, line in enumerate(lines):
            when = start + timedelta(seconds=i * 3600 / len(lines))
            stamp = when.strftime("[%d/%b/%Y:%H:%M:%S %z]").encode()
            out.write(_STAMP.sub(stamp, line, count=1) + b"\n")


async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    await reader.readexactly(length)
    return status


async def load(port: int, path: str, rate: float, seconds: float) -> dict[str, float]:
    """Send GET `path` `rate` times a second for `seconds`; latencies from each request's
    due time."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    total = int(rate * seconds)
    start = time.perf_counter() + 0.2
    due = iter(range(total))
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in due:
            at = start + i / rate
            wait = at - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            status = await one(reader, writer, request)
            latencies.append(time.perf_counter() - at)
            errors += status != 200
        writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    elapsed = time.perf_counter() - began
    latencies.sort()

    def q(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "requests": len(latencies),
        "rate": len(latencies) / elapsed,
        "errors": errors,
        "p50": q(0.50),
        "p90": q(0.90),
        "p99": q(0.99),
        "max": latencies[-1] * 1000,
        "mean": statistics.fmean(latencies) * 1000,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (the workers) so far."""
    pids = [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    total = 0
    for p in pids:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def wait_ready(port: int) -> None:
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("serve did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--hits-rate", type=float, default=1000)
    ap.add_argument("--top-rate", type=float, default=200)
    ap.add_argument("--days", type=int, default=30, help="/api/hits' days (as `hits --days`)")
    ap.add_argument("--workers", type=int, default=1, help="serve --workers")
    args = ap.parse_args()
    cpus = os.cpu_count() or 1
    os.sched_setaffinity(0, {cpus - 1})  # this load generator beside Redis
    with private_logcount() as (_, env):
        log = Path(env["LOGCOUNT_DATA_DIR"]) / "today.log"
        today_log(log)
        timed([*logcount_cmd(), "pipe"], env, log)
        port = free_port()
        serve = subprocess.Popen(
            [
                *logcount_cmd(),
                "serve",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(args.workers),
            ],
            env=env,
        )
        try:
            wait_ready(port)
            path = f"/api/hits?path=/presentations/logstash-monitorama-2013/&days={args.days}"
            cases = [
                (f"/api/hits (days={args.days})", path, args.hits_rate, 20.0),
                ("/api/top?window=today", "/api/top?window=today", args.top_rate, 100.0),
            ]
            print(f"load average before: {Path('/proc/loadavg').read_text().split()[0]}")
            print(
                f"{'endpoint':<24} {'rate':>9} {'sent':>7} {'errors':>6} "
                f"{'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} {'CPU/req':>8}"
                "  target p99"
            )
            for name, url, rate, target in cases:
                asyncio.run(load(port, url, rate, 2))  # warm up: connections, caches
                before = cpu_seconds(serve.pid)
                r = asyncio.run(load(port, url, rate, args.seconds))
                per = (cpu_seconds(serve.pid) - before) / r["requests"] * 1e6
                ok = "met" if r["p99"] < target and not r["errors"] else "MISSED"
                print(
                    f"{name:<24} {r['rate']:>7,.0f}/s {r['requests']:>7,.0f} {r['errors']:>6.0f} "
                    f"{r['p50']:>7.2f} {r['p90']:>7.2f} {r['p99']:>7.2f} {r['max']:>7.1f}"
                    f" {per:>6.0f} us  < {target:.0f} ms: {ok}"
                )
        finally:
            serve.terminate()
            serve.wait(30)


if __name__ == "__main__":
    main()
