"""`logcount report` beside `logcount rollup` on the same 1,000,000 lines, in one run.

    .venv/bin/python bench/bench_report.py [--lines N] [--repeat N] [--data both|real|diverse]

The inputs are bench_rollup's (bench/common.py): the real elastic_apache_logs.log repeated
to N lines over three days, and N generated lines as diverse as a busy day. Each run times
`logcount report FILE --format json` (nothing written but its JSON, to /dev/null) and
`logcount rollup --quiet --logs FILE` into a fresh SQLite store, both with every core;
the runs alternate (--repeat, default 5), so that load from elsewhere falls on both alike,
and the medians are compared. Target (issue 12): report at least as fast as rollup.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import add_data_option, diverse_day, logcount_cmd, million_lines, timed  # noqa: E402


def run(command: str, path: Path) -> tuple[float, float, int]:
    """Seconds, CPU seconds (the process tree), peak RSS (KiB) of one command."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "logcount.toml"
        config.write_text('site = "bench"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGCOUNT_")}
        env.update({"LOGCOUNT_DATA_DIR": tmp, "LOGCOUNT_CONFIG": str(config)})
        if command == "report":
            args = ["report", str(path), "--format", "json", "--quiet"]
        else:
            args = ["rollup", "--quiet", "--logs", str(path)]
        return timed([*logcount_cmd(), *args], env=env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    add_data_option(ap)
    args = ap.parse_args()
    inputs = []
    if args.data in ("both", "real"):
        inputs.append(("real lines repeated", million_lines(args.lines, days=3)))
    if args.data in ("both", "diverse"):
        inputs.append(("diverse day", diverse_day(args.lines, args.seed)))
    for name, path in inputs:
        print(
            f"== {name}: {path} ({path.stat().st_size / 1e6:.0f} MB), load {os.getloadavg()[0]:.1f}"
        )
        runs: dict[str, list[tuple[float, float, int]]] = {"report": [], "rollup": []}
        for i in range(args.repeat):
            for command in ("report", "rollup") if i % 2 == 0 else ("rollup", "report"):
                seconds, cpu, rss = run(command, path)
                runs[command].append((seconds, cpu, rss))
                print(f"  {command:7} {seconds:6.2f} s  CPU {cpu:6.2f} s  RSS {rss / 1024:5.0f} MB")
        medians = {c: statistics.median(r[0] for r in v) for c, v in runs.items()}
        for command, values in runs.items():
            cpu = statistics.median(r[1] for r in values)
            rss = max(r[2] for r in values) / 1024
            rate = args.lines / medians[command]
            print(
                f"  median {command:7} {medians[command]:.2f} s  {rate:,.0f} lines/s  "
                f"CPU {cpu:.2f} s  peak RSS {rss:.0f} MB"
            )
        print(
            f"  report / rollup: {medians['report'] / medians['rollup']:.2f} of the time "
            f"(target <= 1.00); load {os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    main()
