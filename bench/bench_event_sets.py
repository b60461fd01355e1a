"""Memory of the live event sets: 1,000,000 distinct visitors doing 10 events over a day.

Each visitor does every event once, at an hour of its own (the most a day can hold: every
event's day bitmap has every visitor). The sets go through the real sink path (a Delta's
`events`, batch.build_call, apply.lua's numbering and SETBIT) into a private redis-server,
in batches of --batch visitors as a reader would send them; then Redis' used_memory and
MEMORY USAGE of each kind of key are printed. `--sets` does the same with plain Redis sets
of the hashes (SADD, the structure bitmaps were chosen over) for comparison.

    .venv/bin/python bench/bench_event_sets.py [--visitors 1000000] [--events 10] [--sets]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PrivateRedis  # noqa: E402
from logcount.config import Config  # noqa: E402
from logcount.count.delta import Delta  # noqa: E402
from logcount.sinks import keys  # noqa: E402
from logcount.sinks.batch import Batch  # noqa: E402
from logcount.sinks.live import RedisWriter  # noqa: E402

SITE = "bench"
DAY = "20261205"


def visitors(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.getrandbits(64):016x}" for _ in range(n)]


def batches(hashes: list[str], events: int, size: int, seed: int = 2):  # type: ignore[no-untyped-def]
    """Deltas of `size` visitors each: every visitor in every event's day bucket and in
    the hour bucket of an hour drawn for it and the event."""
    rng = random.Random(seed)
    for i in range(0, len(hashes), size):
        delta = Delta()
        for h in hashes[i : i + size]:
            for e in range(events):
                hour = f"{DAY}{rng.randrange(24):02d}"
                delta.events.setdefault((SITE, f"event{e}", "day", DAY), set()).add(h)
                delta.events.setdefault((SITE, f"event{e}", "hour", hour), set()).add(h)
        yield delta


def usage(client, pattern: str) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(keys, bytes) of MEMORY USAGE over the keys matching `pattern`."""
    found = list(client.scan_iter(match=pattern, count=1000))
    return len(found), sum(int(client.memory_usage(k, samples=0) or 0) for k in found)


def run_bitmaps(redis: PrivateRedis, hashes: list[str], events: int, size: int) -> None:
    config = Config(redis=redis.url)
    writer = RedisWriter(config, redis.url)
    before = redis.used_memory()
    started = time.monotonic()
    for delta in batches(hashes, events, size):
        writer.apply(Batch(delta))
    took = time.monotonic() - started
    used = redis.used_memory() - before
    c = redis.client
    n_bits, bits = usage(c, keys.event_set(SITE, "*", "*", "*"))
    ids = int(c.memory_usage(keys.visitor_ids(SITE), samples=0) or 0)
    rev = int(c.memory_usage(keys.visitor_hashes(SITE), samples=0) or 0)
    per = 1_000_000 / len(hashes)
    print(f"bitmaps: {len(hashes):,} visitors x {events} events, applied in {took:.1f} s")
    print(
        f"  used_memory grew {used / 1e6:,.1f} MB ({used * per / 1e6:,.1f} MB per million visitors)"
    )
    print(
        f"  {n_bits} bitmaps {bits / 1e6:,.1f} MB; numbering {ids / 1e6:,.1f} MB"
        f" + reversed {rev / 1e6:,.1f} MB"
    )
    c.flushall()


def run_sets(redis: PrivateRedis, hashes: list[str], events: int, size: int) -> None:
    c = redis.client
    before = redis.used_memory()
    started = time.monotonic()
    for delta in batches(hashes, events, size):
        pipe = c.pipeline(transaction=False)
        for (site, event, gran, label), members in delta.events.items():
            pipe.sadd(f"{keys.event_set(site, event, gran, label)}:set", *members)
        pipe.execute()
    took = time.monotonic() - started
    used = redis.used_memory() - before
    per = 1_000_000 / len(hashes)
    print(f"sets of hashes: {len(hashes):,} visitors x {events} events, added in {took:.1f} s")
    print(
        f"  used_memory grew {used / 1e6:,.1f} MB ({used * per / 1e6:,.1f} MB per million visitors)"
    )
    c.flushall()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--visitors", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=10)
    ap.add_argument("--batch", type=int, default=2_000)
    ap.add_argument("--sets", action="store_true", help="also plain Redis sets, to compare")
    args = ap.parse_args()
    hashes = visitors(args.visitors)
    redis = PrivateRedis()
    try:
        print(f"redis-server pid {redis.proc.pid}, load average {os.getloadavg()[0]:.1f}")
        run_bitmaps(redis, hashes, args.events, args.batch)
        if args.sets:
            run_sets(redis, hashes, args.events, args.batch)
    finally:
        redis.stop()


if __name__ == "__main__":
    main()
