"""Where `pipe` and `rollup` spend their time on a generated diverse day: cProfile, in process.

    .venv/bin/python bench/profile_diverse.py pipe|rollup [--lines N] [--top N] [--seed S]
                                              [--section-depth N]

pipe: the reader's loop (read, split, scan), its classifier thread (classify, aggregate) and
its sender thread (write to a private redis-server) each under their own profiler, merged;
cProfile sees only the thread that enabled it. rollup: counting and storing a file into a
fresh SQLite store, in this process (the command forks its counters, which a profiler in the
parent would not see). Times are each thread's CPU time, not wall time. Prints the functions
by their own time, then by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PrivateRedis, diverse_day  # noqa: E402
from logcount.config import Config  # noqa: E402


def cpu_profile() -> cProfile.Profile:
    """A profiler on the thread's CPU clock: a thread waiting for a lock or for Redis
    costs nothing there, as it costs nothing to the machine."""
    return cProfile.Profile(time.thread_time)


def profile_pipe(path: Path, data_dir: str, section_depth: int = 1) -> list[cProfile.Profile]:
    redis = PrivateRedis()
    try:
        config = Config(
            site="bench", data_dir=data_dir, redis=redis.url, section_depth=section_depth
        )
        return profile_pipe_into(path, config)
    finally:
        redis.stop()


def profile_pipe_into(path: Path, config: Config) -> list[cProfile.Profile]:
    """The reader's, classifier's and sender's profiles of `path` piped into config.redis."""
    from logcount.count.lines import LineSplitter
    from logcount.sources.pipeline import Pipeline, check_data_dir
    from logcount.sources.reader import Reader

    check_data_dir(config)
    reader_prof, classifier_prof, sender_prof = cpu_profile(), cpu_profile(), cpu_profile()
    with open(path, "rb") as fh:
        reader = Reader(config, fh.fileno())
        reader.pipeline = pipeline = Pipeline(config, "pipe", reader.log)
        # each of the pipeline's threads under its own profiler
        for name, prof, loop in (
            ("classifier", classifier_prof, pipeline._classify_loop),
            ("sender", sender_prof, pipeline._send_loop),
        ):
            thread = threading.Thread(target=prof.runcall, args=(loop,), name=name, daemon=True)
            setattr(pipeline, "thread" if name == "classifier" else "sender", thread)
        pipeline.start()
        reader_prof.runcall(reader.read, LineSplitter(), pipeline.count_piece)
        sender_prof.runcall(pipeline.close)  # the last batch
    return [reader_prof, classifier_prof, sender_prof]


def profile_rollup(path: Path, data_dir: str) -> list[cProfile.Profile]:
    import socket

    from logcount.sources.rollup import Counters, RollupResult, _store_all
    from logcount.sources.rollup_files import resolve_inputs, split_units

    config = Config(site="bench", data_dir=data_dir)
    inputs, _ = resolve_inputs([str(path)], [])
    units = [u for inp in inputs for u in split_units(inp, 1)]
    config.visitor_key()
    prof = cpu_profile()
    # Built without units it forks no counter; given them afterwards, it counts them
    # itself when the store asks for its results (the path taken where there is no fork).
    counters = Counters(config, [], 1, False)
    counters.units = units
    result = RollupResult(missing=[])
    prof.runcall(
        _store_all, config, inputs, units, counters, socket.gethostname(), False, print, result
    )
    if result.failed or result.files != 1:
        raise SystemExit(f"rollup failed: {result}")
    return [prof]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=("pipe", "rollup"))
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--section-depth", type=int, default=1, help="pipe: [live] section_depth")
    args = ap.parse_args()
    path = diverse_day(args.lines, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        if args.command == "pipe":
            profiles = profile_pipe(path, tmp, args.section_depth)
        else:
            profiles = profile_rollup(path, tmp)
    out = io.StringIO()
    stats = pstats.Stats(profiles[0], stream=out)
    for more in profiles[1:]:
        stats.add(more)
    stats.strip_dirs()
    print(f"{args.command}: {args.lines:,} diverse lines ({path}), load {os.getloadavg()[0]:.1f}")
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)
    print(out.getvalue())


if __name__ == "__main__":
    main()
