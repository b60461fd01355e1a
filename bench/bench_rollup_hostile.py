"""`logcount rollup` of a day of 1,000,000 lines, each with its own URL, referrer and client.

    .venv/bin/python bench/bench_rollup_hostile.py [--lines N] [--jobs N] [--cap N]

The worst day for a store that keeps every member: as many distinct paths, referrer hosts
and visitors as lines. Reports the wall time, the peak RSS of the largest process of the
tree (getrusage(RUSAGE_CHILDREN), the rollup being this process's only child), the rows of
each store table and the size of the SQLite file. --cap sets [rollup] max_members.
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import OUT, logcount_cmd, timed  # noqa: E402

AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"


def hostile_lines(n: int) -> Path:
    """n lines of one day, each with a distinct path, referrer host and client address."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"hostile-{n}.log"
    if path.exists():
        return path
    with open(path.with_suffix(".tmp"), "w") as f:
        for i in range(n):
            client = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
            minute = f"{i * 1440 // n // 60:02d}:{i * 1440 // n % 60:02d}"
            f.write(
                f'{client} - - [27/Mar/2026:{minute}:00 +0000] "GET /item/{i:07d}?q={i} '
                f'HTTP/1.1" 200 {i % 5000} "http://ref{i}.example.com/p" "{AGENT}"\n'
            )
    path.with_suffix(".tmp").rename(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--jobs", type=int, default=None, help="rollup processes (default: cores)")
    ap.add_argument("--cap", type=int, default=None, help="[rollup] max_members")
    args = ap.parse_args()
    log = hostile_lines(args.lines)
    print(f"input: {log} ({args.lines:,} lines, {log.stat().st_size / 1e6:.0f} MB, one day)")
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "logcount.toml"
        config.write_text(
            'site = "bench"\n' + (f"[rollup]\nmax_members = {args.cap}\n" if args.cap else "")
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGCOUNT_")}
        env.update({"LOGCOUNT_DATA_DIR": tmp, "LOGCOUNT_CONFIG": str(config)})
        cmd = [*logcount_cmd(), "rollup", "--quiet", "--logs", str(log)]
        if args.jobs:
            cmd += ["--jobs", str(args.jobs)]
        seconds, cpu, _rss = timed(cmd, env=env)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        db = Path(tmp) / "logcount.sqlite3"
        with sqlite3.connect(db) as conn:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name LIKE 'logcount_day%' ORDER BY name"
                )
            ]
            rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
            lines = conn.execute("SELECT sum(lines) FROM logcount_sources").fetchone()[0]
            hits = conn.execute("SELECT sum(hits) FROM logcount_day_totals").fetchone()[0]
        size = sum(p.stat().st_size for p in Path(tmp).glob("logcount.sqlite3*"))
    print(f"rollup: {seconds:.1f} s wall, {cpu:.1f} s CPU, peak RSS {peak / 1024:.0f} MB")
    print(f"stored: {lines:,} lines, {hits:,} hits; SQLite {size / 1e6:.1f} MB")
    for table, n in rows.items():
        print(f"  {table:<32} {n:>10,} rows")


if __name__ == "__main__":
    main()
