"""`logcount pipe` end to end against `cat` and a plain apachelogs loop, in the same run.

    .venv/bin/python bench/bench_pipe.py [--lines N] [--data both|real|diverse] [--seed S]
                                         [--before TREE] [--runs N] [--durations] [--events]
                                         [--sections]

Two inputs (--data, default both): the real lines repeated, their times spread over a day,
an hour and the seconds a site at 250,000 requests/s writes them; and a day generated as
diverse as a real one (bench/diverse.py), where caches miss as they do in production.
logcount runs pinned to one core (taskset -c 0), the private redis-server on the other.
Prints lines/s for each, the ratio to apachelogs, peak RSS of the pipe's processes, the
CPU time of the pipe and of redis-server, and whether the sink spilled to its spool.
--durations: the real lines with a %D each, over an hour (response times: histograms and
member sums; the --before tree must read %D too, as any logcount does).
--events: the diverse day without events and with 10 (one per section of the site, and
its POSTs: count/events.py), alternating runs, medians compared: what events cost.
--sections: the real lines over an hour and the diverse day, without live section
visitors, with depth 1 (the default) and with depths 1-2, alternating: what they cost in
the pipe and in Redis.
Targets (issue 2): >= 250,000 lines/s end to end, >= 5x apachelogs, peak RSS < 80 MB.
With --before TREE (a source tree of logcount, built: `setup.py build_ext --inplace`),
each input is piped --runs times through this tree and that one, alternating, and the
medians are compared (load from elsewhere falls on both alike).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    DURATION_FORMAT,
    add_data_option,
    diverse_day,
    logcount_cmd,
    million_lines,
    private_logcount,
    timed,
)


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


class Run(NamedTuple):
    seconds: float
    rss: int  # KiB, the largest process of the pipe's tree
    counted: int  # lines the day buckets hold
    held: int  # bytes Redis holds then (used_memory)
    cpu: float  # the pipe's user + system seconds
    redis_cpu: float  # redis-server's: what applying the batches cost it
    spilled: bool  # whether a spool file appeared: Redis fell behind by pending_limit


def watch_spool(directory: Path, seen: list[str], done: threading.Event) -> None:
    """Note any spool file in `directory` until `done` (a spill is replayed within seconds,
    so the directory is looked at every 20 ms)."""
    while not done.wait(0.02):
        with contextlib.suppress(FileNotFoundError):
            seen.extend(n for n in os.listdir(directory) if n.endswith(".jsonl"))


def run_pipe(path: Path, tree: str = "", config: str = "") -> Run:
    """`logcount pipe < path` against a private redis-server; with `tree`, the logcount
    package of that source tree; `config`: more of its config."""
    with private_logcount(more_config=config) as (redis, env):
        if tree:  # found before the installed package: PYTHONPATH precedes site-packages
            env["PYTHONPATH"] = tree
        spilled: list[str] = []
        done = threading.Event()
        spool = Path(env["LOGCOUNT_DATA_DIR"]) / "spool"
        watcher = threading.Thread(target=watch_spool, args=(spool, spilled, done))
        watcher.start()
        try:
            seconds, cpu, rss = timed(["taskset", "-c", "0", *logcount_cmd(), "pipe"], env, path)
        finally:
            done.set()
            watcher.join()
        counted = 0
        for key in redis.client.scan_iter("lc:*:t:day:*"):
            fields = redis.client.hgetall(key)
            counted += sum(int(fields.get(f, 0)) for f in (b"hits", b"bots", b"ignored"))
        held = int(redis.client.info("memory")["used_memory"])
        info = redis.client.info("cpu")
        redis_cpu = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return Run(seconds, rss, counted, held, cpu, redis_cpu, bool(spilled))


def compare(
    n: int,
    baseline: Path,
    spreads: list[tuple[str, Path, int]],
    before: str,
    runs: int,
    config: str = "",
) -> None:
    """cat and the apachelogs loop on `baseline`, then the pipe on each (label, file,
    lines it should count): medians of `runs`, alternating with the `before` tree."""
    cat_s, _, _ = timed(["taskset", "-c", "0", "cat", str(baseline)])
    al_s, al_n = apachelogs_loop(baseline)
    al_rate = al_n / al_s
    print(f"cat                                {n / cat_s:>12,.0f} lines/s")
    print(f"apachelogs parse() loop            {al_rate:>12,.0f} lines/s")
    for label, path, expected in spreads:
        mine: list[Run] = []
        theirs: list[Run] = []
        for _ in range(runs):
            for tree, out in (("", mine), (before, theirs)) if before else (("", mine),):
                run = run_pipe(path, tree, config)
                out.append(run)
                if run.counted != expected:
                    print(f"WARNING: counted {run.counted:,} lines, expected {expected:,}")
        for name, results in (("", mine), (" (--before)", theirs)):
            if not results:
                continue
            rate = n / statistics.median(r.seconds for r in results)
            rss = statistics.median(r.rss for r in results)
            cpu = statistics.median(r.cpu for r in results)
            redis_cpu = statistics.median(r.redis_cpu for r in results)
            spills = sum(r.spilled for r in results)
            print(
                f"logcount pipe, 1 core, {label + name:<18} {rate:>12,.0f} lines/s   "
                f"{rate / al_rate:4.1f}x apachelogs   peak RSS {rss / 1024:.0f} MB"
                f"   CPU {cpu:.2f} s, Redis' {redis_cpu:.2f} s   spilled in {spills} of"
                f" {len(results)} runs"
            )
            if len(results) > 1:
                each = ", ".join(
                    f"{r.rss / 1024:.0f} MB {r.cpu:.2f}+{r.redis_cpu:.2f} s"
                    f"{' spilled' if r.spilled else ''}"
                    for r in results
                )
                print(f"  each run: {each}")
        if theirs:
            mine_s = statistics.median(r.seconds for r in mine)
            theirs_s = statistics.median(r.seconds for r in theirs)
            changes = []
            for what, field in (("CPU", "cpu"), ("Redis' CPU", "redis_cpu")):
                ours = statistics.median(getattr(r, field) for r in mine)
                old = statistics.median(getattr(r, field) for r in theirs)
                changes.append(f"{what} {ours / old - 1:+.1%}")
            changes.append(f"lines/s {theirs_s / mine_s - 1:+.1%}")
            print(f"  this tree vs --before: {', '.join(changes)}")


EVENTS_CONFIG = (
    "".join(
        f'[[event]]\nname = "{name}"\npath = "/{name}/*"\n'
        for name in (
            "news",
            "products",
            "press",
            "blog",
            "docs",
            "support",
            "events",
            "jobs",
            "about",
        )
    )
    + '[[event]]\nname = "posted"\npath = "*"\nmethod = "POST"\n'
)


def compare_configs(n: int, path: Path, runs: int, configs: dict[str, str]) -> None:
    """The pipe on `path` with each config of `configs` (label -> config text), alternating;
    medians of `runs`, and what Redis holds after each."""
    results: dict[str, list[tuple[float, int, int]]] = {label: [] for label in configs}
    for _ in range(runs):
        for label, config in configs.items():
            run = run_pipe(path, "", config)
            results[label].append((run.seconds, run.rss, run.held))
    for label, got in results.items():
        rate = n / statistics.median(s for s, _, _ in got)
        rss = statistics.median(r for _, r, _ in got)
        held = statistics.median(h for _, _, h in got)
        print(
            f"logcount pipe, 1 core, {label:<22} {rate:>12,.0f} lines/s"
            f"   peak RSS {rss / 1024:.0f} MB   Redis used_memory {held / 1e6:.1f} MB"
        )


SECTIONS_CONFIGS = {
    "no live sections": "[live]\nsection_depth = 0\n",
    "sections, depth 1": "[live]\nsection_depth = 1\n",
    "sections, depth 1-2": "[live]\nsection_depth = 2\n",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    add_data_option(ap)
    ap.add_argument("--before", default="", help="a source tree to compare with")
    ap.add_argument("--runs", type=int, default=1, help="runs of each, medians compared")
    ap.add_argument("--durations", action="store_true", help="real lines with a %%D each")
    ap.add_argument("--events", action="store_true", help="the diverse day with 10 events")
    ap.add_argument("--sections", action="store_true", help="live section visitors or none")
    args = ap.parse_args()
    n = args.lines
    if args.events:
        print(f"input: {n:,} diverse lines over one day (seed {args.seed})")
        configs = {"without events": "", "with 10 events": EVENTS_CONFIG}
        compare_configs(n, diverse_day(n, args.seed), args.runs, configs)
        return
    if args.sections:
        for label, path in (
            ("real lines over one hour", million_lines(n, hours=1)),
            ("diverse day", diverse_day(n, args.seed)),
        ):
            if args.data in ("both", label.split()[0]):
                print(f"input: {n:,} {label}")
                compare_configs(n, path, args.runs, SECTIONS_CONFIGS)
        return
    if args.durations:
        timed_lines = million_lines(n, hours=1, durations=True)
        print(f"input: {n:,} real lines, each with a %D, over one hour")
        spreads = [("1 h, %D", timed_lines, n - n // 10_000)]
        config = f'log_format = "{DURATION_FORMAT}"\n'
        compare(n, million_lines(n), spreads, args.before, args.runs, config)
        return
    if args.data in ("both", "real"):
        day = million_lines(n)
        print(
            f"input: {n:,} combined lines ({day.stat().st_size / 1e6:.0f} MB) from the real "
            "elastic_apache_logs.log, their times spread over one day, over one hour, and "
            "over the seconds a site serving 250,000 requests/s takes to write them"
        )
        live = max(1, n // 250_000)
        expected = n - n // 10_000  # the source has 1 malformed line in 10,000
        spreads = [
            ("1 day", day, expected),
            ("1 hour", million_lines(n, hours=1), expected),
            (f"{live} s", million_lines(n, seconds=live), expected),
        ]
        compare(n, day, spreads, args.before, args.runs)
    if args.data in ("both", "diverse"):
        diverse = diverse_day(n, args.seed)
        print(
            f"input: {n:,} combined lines ({diverse.stat().st_size / 1e6:.0f} MB) generated "
            f"as diverse as a busy day (bench/diverse.py, seed {args.seed}), over one day"
        )
        compare(n, diverse, [("1 day", diverse, n)], args.before, args.runs)


if __name__ == "__main__":
    main()
