"""One host's `pipe` of many virtual hosts into a Redis Cluster, and the same into one Redis:
where the write path spends its time (cProfile per thread, as bench/profile_diverse.py), or
how long it takes (--time: the `logcount pipe` command, its wall and CPU seconds and the
redis-servers' CPU; --spy FILE: that command under py-spy, `pip install py-spy`).

    .venv/bin/python bench/profile_cluster.py [--lines N] [--sites N] [--target cluster|redis]
        [--time [--spy FILE]] [--code DIR]

The input is bench_cluster.py's first host (its skewed sites over the diverse day). The
cluster is bench_cluster.py's: 3 masters, no replicas unless --replicas. `--code DIR`
imports logcount from DIR (a copy of an older checkout, C extensions built): before and
after a change, measured alternately in one run of the machine.
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=50_000, help="lines of the host's input")
    ap.add_argument("--sites", type=int, default=2000)
    ap.add_argument("--target", choices=("cluster", "redis"), default="cluster")
    ap.add_argument("--replicas", type=int, default=0)
    ap.add_argument("--time", action="store_true", help="no profiler: seconds only")
    ap.add_argument("--spy", type=Path, help="with --time: py-spy's raw samples to this file")
    ap.add_argument("--code", type=Path, help="import logcount from this directory")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.code:
        sys.path.insert(0, str(args.code.resolve()))

    import redis

    import logcount
    from bench.bench_cluster import hosts_input
    from bench.common import PrivateRedis
    from logcount.config import Config
    from logcount.sinks.embedded import redis_server_binary
    from tests.redis_cluster import RedisClusterNodes

    files, per_site = hosts_input(args.lines * 2, args.sites, 1)
    with tempfile.TemporaryDirectory(prefix="profile-cluster-") as tmpdir:
        tmp = Path(tmpdir)
        if args.target == "cluster":
            server: object = RedisClusterNodes(
                redis_server_binary(), tmp / "cluster", 3, args.replicas
            )
            server.start()  # type: ignore[attr-defined]
            url = server.url()  # type: ignore[attr-defined]
            nodes = [server.node(p) for p in server.ports]  # type: ignore[attr-defined]
        else:
            server = PrivateRedis()
            url = server.url  # type: ignore[attr-defined]
            nodes = [redis.Redis.from_url(url)]
        try:
            config = Config(
                site="bench", data_dir=str(tmp / "data"), redis=url, log_format="vhost_combined"
            )
            before = redis_cpu(nodes)
            run(args, files[0], config, len(per_site), Path(logcount.__file__).parent)
            print(f"  redis-server CPU, every node: {redis_cpu(nodes) - before:.1f} s")
        finally:
            server.stop()  # type: ignore[attr-defined]


def redis_cpu(nodes: list[Any]) -> float:
    """CPU seconds (user + system) the Redis servers have used."""
    total = 0.0
    for node in nodes:
        info = node.info("cpu")
        total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return total


def run(args: argparse.Namespace, path: Path, config: Any, sites: int, code: Path) -> None:
    from bench.common import timed
    from bench.profile_diverse import profile_pipe_into

    load = os.getloadavg()[0]
    profiles = []
    if args.time:  # the command itself, as bench_cluster.py runs it (its CPU: every thread)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGCOUNT_")}
        settings = Path(config.data_dir).parent / "logcount.toml"
        settings.write_text('log_format = "vhost_combined"\n')
        env.update(
            LOGCOUNT_REDIS=config.redis,
            LOGCOUNT_DATA_DIR=config.data_dir,
            LOGCOUNT_CONFIG=str(settings),
        )
        # `code` first on the path: PYTHONPATH would come after the current directory,
        # a checkout whose logcount would win.
        start = f"import sys; sys.path.insert(0, {str(code.parent)!r}); import logcount.cli as c"
        cmd = [sys.executable, "-c", f"{start}; sys.argv[0] = 'logcount'; c.main()", "pipe"]
        if args.spy:  # sampled, native threads' waits left out: where the CPU goes
            spy = Path(sys.executable).parent / "py-spy"
            record = ["record", "--subprocesses", "-r", "250", "-f", "raw", "-o", str(args.spy)]
            cmd = [str(spy), *record, "--", *cmd]
        wall, cpu, _ = timed(cmd, env, path)
    else:
        wall, cpu = time.perf_counter(), time.process_time()
        profiles = profile_pipe_into(path, config)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"{args.target}: {args.lines:,} lines of {sites:,} sites, {code}: {wall:.1f} s wall, "
        f"{cpu:.1f} s CPU, {args.lines / wall:,.0f} lines/s (load {load:.1f})"
    )
    if profiles:
        out = io.StringIO()
        stats = pstats.Stats(profiles[0], stream=out)
        for more in profiles[1:]:
            stats.add(more)
        stats.strip_dirs()
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)
        print(out.getvalue())


if __name__ == "__main__":
    main()
