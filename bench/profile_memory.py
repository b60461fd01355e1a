"""What holds the memory of `pipe` on a generated diverse day, in process.

    .venv/bin/python bench/profile_memory.py [--lines N] [--seed S] [--file LOG] [--trace]
        [--top N] [--every N] [--pending-limit N] [--set MODULE.NAME=VALUE ...]

Runs the pipe's reader, classifier and sender (as `logcount pipe` does, into a private
redis-server) on bench/diverse.py's day, and samples every few milliseconds the process's
resident size with what the pipeline holds then: the counter's pending lines, keys and
bytes, the sink's pending delta (entries, weight) and the batches in flight. Prints the
samples around the largest resident size, and the process's VmHWM. With --trace,
tracemalloc runs too (slower, and its own tables add to the resident size): a snapshot is
taken whenever the traced memory passes its previous peak by 4 MB, and the last one (the
peak) is printed by line and by the two frames that allocated. --file: another log (the
real lines: bench/out/combined-*.log); --every N: every Nth sample too; --pending-limit
and --set (a module's constant, e.g. logcount.sources.pipeline.FLUSH_AT=(10000,5000,8388608))
to see what a setting changes.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PrivateRedis, diverse_day  # noqa: E402
from logcount.config import Config  # noqa: E402


class Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def malloc_state() -> str:
    """glibc's view: its heap (in use, free) and what it mmapped (large blocks), in MB."""
    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return "(no mallinfo2)"
    fn.restype = Mallinfo2
    m = fn()
    mb = 1 / 2**20
    return (
        f"malloc heap {m.arena * mb:.1f} MB (in use {m.uordblks * mb:.1f}, free"
        f" {m.fordblks * mb:.1f}), mmapped {m.hblkhd * mb:.1f} MB in {m.hblks} blocks"
    )


def pymalloc_state() -> str:
    """pymalloc's summary (sys._debugmallocstats, written to the C stderr): its arenas,
    and the bytes in used blocks against those free in them."""
    with tempfile.TemporaryFile("w+") as out:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read()
    wanted = ("arenas allocated current", "bytes in allocated blocks", "bytes in available")
    wanted += ("bytes in unused pools", "Total")
    return "\n".join(
        "  " + " ".join(line.split())
        for line in text.splitlines()
        if line.startswith("#") and any(w in line for w in wanted)
    )


def status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Sampler:
    """Polls the resident size and the pipeline's holdings; keeps every sample."""

    def __init__(self, pipeline: Any, trace: bool, every: float = 0.005):
        self.pipeline = pipeline
        self.trace = trace
        self.every = every
        self.samples: list[tuple[float, int, tuple[int, ...]]] = []
        self.snapshot: tracemalloc.Snapshot | None = None
        self.snapshot_at = 0
        self.peak_state = ""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.start = time.monotonic()

    def holdings(self) -> tuple[int, ...]:
        p = self.pipeline
        sink = p.sink
        # read without locks: sizes only, a sample a little off is fine
        lines, keys, nbytes = p.counter.pending()
        return (
            lines,
            keys,
            nbytes >> 10,
            sink.pending.size(),
            sink.pending_bytes >> 10,
            len(sink.inflight),
            sink.inflight_bytes >> 10,
            sink.spool.batches,
        )

    def run(self) -> None:
        peak_traced = 0
        self.peak_rss = 0
        while not self.stop.wait(self.every):
            try:
                held = self.holdings()
            except RuntimeError:  # a dict changed size while read
                continue
            rss = status_kib("VmRSS")
            self.samples.append((time.monotonic() - self.start, rss, held))
            if not self.trace and rss > self.peak_rss + 2048:
                self.peak_rss = rss
                self.peak_state = (
                    f"at RSS {rss / 1024:.1f} MB, holdings {held}:\n  {malloc_state()}\n"
                    + pymalloc_state()
                )
            if self.trace:
                traced = tracemalloc.get_traced_memory()[0]
                if traced > peak_traced + (4 << 20):
                    peak_traced = traced
                    self.snapshot = tracemalloc.take_snapshot()
                    self.snapshot_at = rss


def caches(pipeline: Any) -> None:
    """The entries each cache of the classifier and aggregator holds now."""
    from logcount.count.classify import BoundedCache

    agg = pipeline.aggregator
    held = {n: len(c.data) for n, c in vars(agg.classifier).items() if isinstance(c, BoundedCache)}
    held["aggregator._described"] = len(agg._described)
    held["aggregator._site_minute"] = len(agg._site_minute)
    for table, *_, pairs in agg._tables:
        held[f"aggregator.{table}"] = len(pairs)
    print("cache entries at the end:", ", ".join(f"{n} {v:,}" for n, v in held.items()))


def knob(setting: str) -> None:
    """MODULE.NAME=VALUE: a module constant set for this run (VALUE a Python literal)."""
    import ast
    import importlib

    name, _, value = setting.partition("=")
    module, _, attr = name.rpartition(".")
    setattr(importlib.import_module(module), attr, ast.literal_eval(value))


def run(path: Path, config: Config, trace: bool) -> Sampler:
    from logcount.count.lines import LineSplitter
    from logcount.sources.pipeline import Pipeline, check_data_dir
    from logcount.sources.reader import Reader

    check_data_dir(config)
    with open(path, "rb") as fh:
        reader = Reader(config, fh.fileno())
        reader.pipeline = pipeline = Pipeline(config, "pipe", reader.log)
        sampler = Sampler(pipeline, trace)
        if trace:
            tracemalloc.start(2)
        sampler.thread.start()
        pipeline.start()
        reader.read(LineSplitter(), pipeline.count_piece)
        caches(pipeline)
        pipeline.close()
        sampler.stop.set()
        sampler.thread.join()
    return sampler


HEADER = (
    "   t s   RSS MB | counter lines  keys  KiB | sink pending entries  KiB"
    " | inflight n  KiB | spooled"
)


def show(sample: tuple[float, int, tuple[int, ...]]) -> str:
    t, rss, (lines, keys, kib, p_entries, p_kib, n_in, in_kib, spooled) = sample
    return (
        f"{t:7.2f} {rss / 1024:8.1f} | {lines:13,} {keys:5,} {kib:4,} |"
        f" {p_entries:20,} {p_kib:4,} | {n_in:10} {in_kib:4,} | {spooled:7}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--trace", action="store_true")
    ap.add_argument("--file", default="", help="a log to pipe instead of the diverse day")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--every", type=int, default=0, help="print every Nth sample too")
    ap.add_argument("--pending-limit", type=int, default=0, help="the config's, for this run")
    ap.add_argument("--set", action="append", default=[], help="MODULE.NAME=VALUE")
    args = ap.parse_args()
    for setting in args.set:
        knob(setting)
    path = Path(args.file) if args.file else diverse_day(args.lines, args.seed)
    redis = PrivateRedis()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            more = {"pending_limit": args.pending_limit} if args.pending_limit else {}
            config = Config(site="bench", data_dir=tmp, redis=redis.url, **more)
            sampler = run(path, config, args.trace)
    finally:
        redis.stop()
    print(f"{path}, load {os.getloadavg()[0]:.1f}")
    print(f"VmHWM {status_kib('VmHWM') / 1024:.1f} MB, {len(sampler.samples)} samples")
    samples = sampler.samples
    if samples:
        top = max(range(len(samples)), key=lambda i: samples[i][1])
        print(HEADER)
        for sample in samples[max(0, top - 8) : top + 3]:
            print(show(sample))
        if args.every:
            print("the whole run, every", args.every, "th sample:")
            for sample in samples[:: args.every]:
                print(show(sample))
        # the largest of each holding over the run
        for i, name in enumerate(
            ("counter lines", "keys", "KiB", "sink entries", "KiB", "inflight", "KiB", "spooled")
        ):
            print(f"max {name}: {max(s[2][i] for s in samples):,}")
    if sampler.peak_state:
        print("memory at the last sample 2 MB past the one before:\n" + sampler.peak_state)
    if sampler.snapshot is not None:
        print(f"\ntracemalloc at its peak (RSS then {sampler.snapshot_at / 1024:.1f} MB):")
        snap = sampler.snapshot.filter_traces((tracemalloc.Filter(False, tracemalloc.__file__),))
        total = sum(s.size for s in snap.statistics("filename"))
        print(f"traced {total / 2**20:.1f} MB")
        for stat in snap.statistics("lineno")[: args.top]:
            print(f"{stat.size / 2**20:7.2f} MB {stat.count:8,}  {stat.traceback[0]}")
        print("\nby the two frames:")
        for stat in snap.statistics("traceback")[: args.top]:
            frames = " <- ".join(str(f) for f in stat.traceback)
            print(f"{stat.size / 2**20:7.2f} MB {stat.count:8,}  {frames}")


if __name__ == "__main__":
    main()
