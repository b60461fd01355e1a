"""`logcount rollup` of 1,000,000 combined lines beside GoAccess, on the same file, in one run.

    .venv/bin/python bench/bench_rollup.py [--lines N] [--jobs N] [--repeat N]
                                           [--data both|real|diverse] [--seed S] [--before TREE]

Two inputs (--data, default both): the real elastic_apache_logs.log repeated to N lines with
timestamps re-spread over three days (bench/common.million_lines), and N lines generated as
diverse as a busy day (bench/diverse.py, one day), where the per-visitor and per-key costs
show. logcount rolls it up into a fresh SQLite store
with every core (the file is cut at line boundaries, one range per process); GoAccess
(Debian's package, installed with apt-get when missing) parses the same file into a JSON
report. A quarter-size file is rolled up too, to show that peak RSS does not grow with the
number of lines. Targets (issue 4): >= 300,000 lines/s, >= 10x GoAccess.

The machine may be shared: the three runs are repeated in turn (--repeat, default 3), so
that load from elsewhere falls on both tools alike, and the medians are compared; every
run is printed, with its CPU time (user + system of the whole process tree, from wait4)
and the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    OUT,
    add_data_option,
    diverse_day,
    logcount_cmd,
    million_lines,
    timed,
)


def ensure_goaccess() -> str:
    found = shutil.which("goaccess")
    if found:
        return found
    print("goaccess missing: installing Debian's package (apt-get install goaccess)")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-q", "goaccess"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    found = shutil.which("goaccess")
    if not found:
        raise SystemExit("goaccess could not be installed")
    return found


def rollup(path: Path, jobs: int | None, tree: str = "") -> tuple[float, float, int, int]:
    """Seconds, CPU seconds, peak RSS (KiB) of the largest process, lines stored; with
    `tree`, the logcount package of that source tree (see --before)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "logcount.toml"
        config.write_text('site = "bench"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGCOUNT_")}
        env.update({"LOGCOUNT_DATA_DIR": tmp, "LOGCOUNT_CONFIG": str(config)})
        if tree:  # found before the installed package: PYTHONPATH precedes site-packages
            env["PYTHONPATH"] = tree
        cmd = [*logcount_cmd(), "rollup", "--quiet", "--logs", str(path)]
        if jobs:
            cmd += ["--jobs", str(jobs)]
        seconds, cpu, rss = timed(cmd, env=env)
        with sqlite3.connect(Path(tmp) / "logcount.sqlite3") as db:
            lines = db.execute("SELECT sum(lines) FROM logcount_sources").fetchone()[0]
    return seconds, cpu, rss, int(lines)


def goaccess(exe: str, path: Path) -> tuple[float, float, int]:
    out = OUT / "goaccess-out.json"
    return timed([exe, str(path), "--log-format=COMBINED", "--no-progress", "-o", str(out)])


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


Run = tuple[float, float, int]


def measure(exe: str, path: Path, small: Path, n: int, args: argparse.Namespace) -> None:
    """GoAccess, the rollup of `path` (n lines) and of `small` (n // 4), in turn."""
    print(f"load average before: {load()}")
    runs: dict[str, list[Run]] = {"go": [], "lc": [], "small": [], "before": []}
    for _ in range(args.repeat):
        runs["go"].append(goaccess(exe, path))
        if args.before:
            before_s, before_cpu, before_rss, stored = rollup(path, args.jobs, args.before)
            if stored != n:
                raise SystemExit(f"rollup (--before) stored {stored:,} lines, expected {n:,}")
            runs["before"].append((before_s, before_cpu, before_rss))
        lc_s, lc_cpu, lc_rss, stored = rollup(path, args.jobs)
        small_s, small_cpu, small_rss, small_stored = rollup(small, args.jobs)
        if stored != n or small_stored != n // 4:
            raise SystemExit(
                f"rollup stored {stored:,} / {small_stored:,} lines, expected {n:,} / {n // 4:,}"
            )
        runs["lc"].append((lc_s, lc_cpu, lc_rss))
        runs["small"].append((small_s, small_cpu, small_rss))
    print(f"load average after: {load()}")
    print_runs(runs, n)


def print_runs(runs: dict[str, list[Run]], n: int) -> None:
    def median(values: list[float]) -> float:
        return statistics.median(values)

    print(
        f"{'':<34} {'lines':>10} {'seconds':>8} {'lines/s':>12} {'CPU s':>7} {'peak MB':>8}"
        "   (median of the runs; each run)"
    )
    rows = [
        ("goaccess --log-format=COMBINED", "go", n),
        ("logcount rollup", "lc", n),
        ("logcount rollup (1/4 of the lines)", "small", n // 4),
    ]
    if runs["before"]:
        rows.insert(1, ("logcount rollup, --before tree", "before", n))
    for name, key, lines in rows:
        s = median([r[0] for r in runs[key]])
        cpu = median([r[1] for r in runs[key]])
        rss = max(r[2] for r in runs[key])
        each = ", ".join(f"{r[0]:.2f}" for r in runs[key])
        print(
            f"{name:<34} {lines:>10,} {s:>8.2f} {lines / s:>12,.0f} {cpu:>7.2f} "
            f"{rss / 1024:>8.0f}   ({each} s)"
        )
    go_s = median([r[0] for r in runs["go"]])
    lc_s = median([r[0] for r in runs["lc"]])
    pairs = ", ".join(f"{g[0] / c[0]:.1f}x" for g, c in zip(runs["go"], runs["lc"], strict=True))
    print(
        f"logcount rollup vs goaccess: {go_s / lc_s:.1f}x faster (medians; run by run: {pairs}) "
        f"(targets: >= 300,000 lines/s, >= 10x)"
    )
    if runs["before"]:
        before_s = median([r[0] for r in runs["before"]])
        before_rss = median([r[2] for r in runs["before"]])
        lc_rss = median([r[2] for r in runs["lc"]])
        print(
            f"this tree vs --before: lines/s {before_s / lc_s - 1:+.1%}, "
            f"peak RSS {lc_rss / before_rss - 1:+.1%} (medians)"
        )
    go_cpu = median([r[1] for r in runs["go"]])
    lc_cpu = median([r[1] for r in runs["lc"]])
    print(f"CPU time: goaccess {go_cpu:.2f} s, logcount {lc_cpu:.2f} s ({go_cpu / lc_cpu:.1f}x)")
    print("peak MB: the largest process of the tree (parent or one worker), from wait4")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--jobs", type=int, default=None, help="rollup processes (default: cores)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each (medians compared)")
    ap.add_argument(
        "--before",
        metavar="TREE",
        default="",
        help="also roll up with the logcount package of this source tree (an earlier commit: "
        "`git archive` and its built _scan), in turn with this one, and compare",
    )
    add_data_option(ap)
    args = ap.parse_args()
    n = args.lines
    exe = ensure_goaccess()
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    print(
        f"goaccess: {exe} ({version.splitlines()[0] if version else '?'}); {os.cpu_count()} cores"
    )
    if args.data in ("both", "real"):
        path = million_lines(n, days=3)
        print(
            f"input: {path} ({n:,} real lines repeated, {path.stat().st_size / 1e6:.0f} MB, 3 days)"
        )
        measure(exe, path, million_lines(n // 4, days=3), n, args)
    if args.data in ("both", "diverse"):
        path = diverse_day(n, args.seed)
        print(
            f"input: {path} ({n:,} lines as diverse as a busy day, "
            f"{path.stat().st_size / 1e6:.0f} MB, 1 day, seed {args.seed})"
        )
        measure(exe, path, diverse_day(n // 4, args.seed), n, args)


if __name__ == "__main__":
    main()
