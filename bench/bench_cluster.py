"""Sizing, measured: a hosting company's day through a 3-master Redis Cluster from two
hosts, then rolled up into PostgreSQL.

    .venv/bin/python bench/bench_cluster.py [--lines N] [--sites N] [--masters N]

The input is bench/diverse.py's busy day (its visitors, pages, agents, referrers and
statuses), each line given to one of `--sites` virtual hosts with a hosting company's
skew: Zipf over the sites (the biggest takes ~13 % of the lines with 2,000 sites, half
the sites see fewer than 60 lines), and split between two hosts. Both hosts' `logcount
pipe` run at once against the cluster (default settings: flush every second, minute,
hour and day buckets, 10,000 members per bucket and dimension), then both hosts'
`logcount rollup` at once into a private PostgreSQL.

It prints what the README's sizing table is made of: the lines per second the cluster
absorbed from the two hosts, the Redis memory per site and day of each granularity's
buckets (MEMORY USAGE of every key), what that holds at the default TTLs, and the
PostgreSQL rows and bytes per site and day.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OUT, diverse_day, logcount_cmd  # noqa: E402
from bench.diverse import zipf  # noqa: E402

TTL_DAYS = {"minute": 3 / 24, "hour": 8, "day": 40}  # the defaults, in days
HOSTS = ("web1", "web2")


def hosts_input(lines: int, sites: int, seed: int) -> tuple[list[Path], Counter[str]]:
    """Two hosts' files of the diverse day, each line under a skewed virtual host."""
    source = diverse_day(lines, seed)
    rng = random.Random(seed)
    paths = [OUT / f"cluster-{lines}-{sites}-{host}.log" for host in HOSTS]
    per_site: Counter[str] = Counter()
    outs = [p.open("wb") for p in paths]
    try:
        with source.open("rb") as f:
            for i, line in enumerate(f):
                site = f"site{zipf(rng.random(), sites):05d}.example"
                per_site[site] += 1
                outs[i % 2].write(site.encode() + b":80 " + line)
    finally:
        for out in outs:
            out.close()
    return paths, per_site


def env_for(tmp: Path, host: str, redis_url: str, store: str) -> dict[str, str]:
    config = tmp / f"{host}.toml"
    config.write_text('log_format = "vhost_combined"\n[privacy]\nsecret = "bench secret, shared"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGCOUNT_")}
    env.update(
        LOGCOUNT_REDIS=redis_url,
        LOGCOUNT_STORE=store,
        LOGCOUNT_CONFIG=str(config),
        LOGCOUNT_DATA_DIR=str(tmp / host),
        LOGCOUNT_HOST=host,
    )
    return env


def together(commands: list[tuple[list[str], dict[str, str], Path | None]]) -> float:
    """Run the commands at once; wall seconds until the last is done (their CPU seconds,
    user + system, printed: on a busy machine the wall clock says little)."""
    start, cpu = time.perf_counter(), _children_cpu()
    procs = []
    for cmd, env, stdin in commands:
        handle = stdin.open("rb") if stdin is not None else subprocess.DEVNULL
        procs.append(subprocess.Popen(cmd, env=env, stdin=handle, stdout=subprocess.DEVNULL))
    for proc in procs:
        if proc.wait() != 0:
            raise SystemExit(f"{proc.args} failed")
    print(f"  ({_children_cpu() - cpu:.1f} s of CPU)")
    return time.perf_counter() - start


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def granularity(key: bytes) -> str:
    parts = key.split(b":")
    for gran in TTL_DAYS:
        if gran.encode() in parts:
            return gran
    return "batch markers" if b"batch" in parts else "other"


def memory_by_granularity(nodes: object) -> tuple[Counter[str], Counter[str], int]:
    """Bytes and keys of each granularity (MEMORY USAGE of every key), and used_memory."""
    sizes: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    used = 0
    for port in nodes.masters():  # type: ignore[attr-defined]
        node = nodes.node(port)  # type: ignore[attr-defined]
        used += int(node.info("memory")["used_memory"])
        batch: list[bytes] = []
        for key in node.scan_iter(count=5000):
            batch.append(key)
            if len(batch) == 2000:
                _measure(node, batch, sizes, counts)
                batch = []
        _measure(node, batch, sizes, counts)
    return sizes, counts, used


def _measure(node: object, names: list[bytes], sizes: Counter[str], counts: Counter[str]) -> None:
    pipe = node.pipeline(transaction=False)  # type: ignore[attr-defined]
    for name in names:
        pipe.memory_usage(name, samples=0)
    for name, size in zip(names, pipe.execute(), strict=True):
        sizes[granularity(name)] += int(size or 0)
        counts[granularity(name)] += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=400_000, help="lines of the day, both hosts")
    ap.add_argument("--sites", type=int, default=2000)
    ap.add_argument("--masters", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    from logcount.sinks.embedded import redis_server_binary
    from tests.conftest import PostgresCluster
    from tests.redis_cluster import RedisClusterNodes

    files, per_site = hosts_input(args.lines, args.sites, args.seed)
    active = len(per_site)
    print(
        f"{args.lines:,} lines over {active:,} of {args.sites:,} sites "
        f"(biggest {per_site.most_common(1)[0][1]:,} lines, "
        f"median {sorted(per_site.values())[active // 2]:,}), two hosts"
    )
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmpdir:
        tmp = Path(tmpdir)
        nodes = RedisClusterNodes(redis_server_binary(), tmp / "cluster", args.masters, 0)
        postgres = PostgresCluster()
        try:
            nodes.start()
            store = f"{postgres.url}/postgres"
            envs = [env_for(tmp, h, nodes.url(), store) for h in HOSTS]
            before = sum(
                int(nodes.node(p).info("stats")["total_commands_processed"])
                for p in nodes.masters()
            )
            wall = together(
                [(logcount_cmd() + ["pipe"], e, f) for e, f in zip(envs, files, strict=True)]
            )
            commands = (
                sum(
                    int(nodes.node(p).info("stats")["total_commands_processed"])
                    for p in nodes.masters()
                )
                - before
            )
            print(
                f"pipe, two hosts at once: {wall:.1f} s, {args.lines / wall:,.0f} lines/s, "
                f"{commands / wall:,.0f} Redis commands/s over {args.masters} masters"
            )
            report_redis(nodes, active)
            rollups = [
                (logcount_cmd() + ["rollup", "--quiet", "--logs", str(f)], e, None)
                for e, f in zip(envs, files, strict=True)
            ]
            wall = together(rollups)
            print(f"rollup, two hosts at once into PostgreSQL: {wall:.1f} s")
            report_store(store, active)
        finally:
            nodes.stop()
            postgres.stop()


def report_redis(nodes: object, sites: int) -> None:
    sizes, counts, used = memory_by_granularity(nodes)
    print(f"Redis used_memory, all masters: {used / 2**20:,.1f} MiB")
    held = 0.0
    for gran in (*TTL_DAYS, "batch markers", "other"):
        per_site = sizes[gran] / sites
        line = f"  {gran:<13} {counts[gran]:>9,} keys {sizes[gran] / 2**20:>9,.1f} MiB"
        line += f"  {per_site / 1024:>8,.1f} KiB per site-day"
        if gran in TTL_DAYS:
            kept = per_site * TTL_DAYS[gran]  # minute buckets: 3 h of a day at a time
            held += kept
            line += f", {kept / 1024:>8,.1f} KiB per site held at its TTL"
        print(line)
    print(f"  per site at the default TTLs (day buckets of 40 days, ...): {held / 2**20:.2f} MiB")


def report_store(store: str, sites: int) -> None:
    import sqlalchemy as sa

    from logcount.sinks.store_schema import FACT_TABLES

    engine = sa.create_engine(store)
    rows = size = 0
    with engine.connect() as conn:
        for table in FACT_TABLES:
            n = conn.execute(sa.text(f"SELECT count(*) FROM {table.name}")).scalar_one()
            b = conn.execute(sa.text(f"SELECT pg_total_relation_size('{table.name}')")).scalar()
            rows, size = rows + n, size + int(b or 0)
            print(f"  {table.name:<28} {n:>9,} rows {int(b or 0) / 2**20:>8,.1f} MiB")
        sets = conn.execute(
            sa.text("SELECT sum(length(visitor_set)) FROM logcount_day_visitor_sets")
        ).scalar()
    engine.dispose()
    print(
        f"PostgreSQL: {rows / sites:,.1f} rows and {size / sites / 1024:,.1f} KiB per site-day "
        f"(two hosts' sources); exact day visitor sets {int(sets or 0) / 2**20:,.2f} MiB"
    )


if __name__ == "__main__":
    main()
