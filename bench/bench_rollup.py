"""`logcount rollup` of 1,000,000 combined lines beside GoAccess, on the same file, in one run.

    .venv/bin/python bench/bench_rollup.py [--lines N] [--jobs N]

The input is the real elastic_apache_logs.log repeated to N lines with timestamps re-spread
over three days (bench/common.million_lines). logcount rolls it up into a fresh SQLite store
with every core (the file is cut at line boundaries, one range per process); GoAccess
(Debian's package, installed with apt-get when missing) parses the same file into a JSON
report. A quarter-size file is rolled up too, to show that peak RSS does not grow with the
number of lines. Targets (issue 4): >= 300,000 lines/s, >= 10x GoAccess.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OUT, logcount_cmd, million_lines, timed  # noqa: E402


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


def rollup(path: Path, jobs: int | None) -> tuple[float, int, int]:
    """Seconds, peak RSS (KiB) of the largest process, lines stored."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "logcount.toml"
        config.write_text('site = "bench"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGCOUNT_")}
        env.update({"LOGCOUNT_DATA_DIR": tmp, "LOGCOUNT_CONFIG": str(config)})
        cmd = [*logcount_cmd(), "rollup", "--quiet", "--logs", str(path)]
        if jobs:
            cmd += ["--jobs", str(jobs)]
        seconds, rss = timed(cmd, env=env)
        with sqlite3.connect(Path(tmp) / "logcount.sqlite3") as db:
            lines = db.execute("SELECT sum(lines) FROM logcount_sources").fetchone()[0]
    return seconds, rss, int(lines)


def goaccess(exe: str, path: Path) -> tuple[float, int]:
    out = OUT / "goaccess-out.json"
    return timed(
        [exe, str(path), "--log-format=COMBINED", "--no-progress", "-o", str(out)],
        stdin=Path(os.devnull),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--jobs", type=int, default=None, help="rollup processes (default: cores)")
    args = ap.parse_args()
    n = args.lines
    path = million_lines(n, days=3)
    small = million_lines(n // 4, days=3)
    print(
        f"input: {path} ({n:,} lines, {path.stat().st_size / 1e6:.0f} MB, 3 days); "
        f"{os.cpu_count()} cores"
    )
    exe = ensure_goaccess()
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    print(f"goaccess: {exe} ({version.splitlines()[0] if version else '?'})")

    go_s, go_rss = goaccess(exe, path)
    lc_s, lc_rss, stored = rollup(path, args.jobs)
    small_s, small_rss, small_stored = rollup(small, args.jobs)
    if stored != n or small_stored != n // 4:
        raise SystemExit(
            f"rollup stored {stored:,} / {small_stored:,} lines, expected {n:,} / {n // 4:,}"
        )

    def row(name: str, lines: int, s: float, rss: int) -> str:
        return f"{name:<34} {lines:>10,} {s:>8.2f} {lines / s:>12,.0f} {rss / 1024:>10.0f}"

    print(f"{'':<34} {'lines':>10} {'seconds':>8} {'lines/s':>12} {'peak MB':>10}")
    print(row("goaccess --log-format=COMBINED", n, go_s, go_rss))
    print(row("logcount rollup", n, lc_s, lc_rss))
    print(row("logcount rollup (1/4 of the lines)", n // 4, small_s, small_rss))
    print(
        f"logcount rollup vs goaccess: {go_s / lc_s:.1f}x faster "
        f"(targets: >= 300,000 lines/s, >= 10x)"
    )
    print("peak MB: the largest process of the tree (parent or one worker), from wait4")


if __name__ == "__main__":
    main()
