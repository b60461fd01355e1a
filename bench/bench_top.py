"""Benchmark: `logcount top --window today` and `Counts.hits_today` on a busy day.

Starts a private redis-server, fills today's buckets (the day bucket every path is in,
and the hour buckets the sparkline reads) with 100,000 distinct paths, then times:

- `logcount top --window today` as a user runs it (a new process: interpreter start-up,
  imports, connect, queries, table), and the report alone inside one process;
- `Counts.hits_today(path)` called repeatedly by one process (a web application).

Targets: top < 200 ms, hits_today < 2 ms. Prints the figures.

    .venv/bin/python bench/bench_top.py [--paths 100000] [--runs 7]

With `--compare REF` (a git commit) and/or `--compare-env NAME=VALUE`, it times instead
`logcount top --format json` of two variants in one run, runs alternating (so a load that
comes and goes weighs on both alike), medians of `--runs` (21 by default here): this tree,
and REF's tree (extracted with `git archive`) or this tree with the extra environment.
It also counts each variant's import time (`python -X importtime`: the whole command and
the Redis client's modules, `redis` and `logcount.resp`) and, with `--instructions`, the
instructions of one run of each (valgrind: the same count on a busy machine).

    .venv/bin/python bench/bench_top.py --paths 10000 --compare main
"""

from __future__ import annotations

import argparse
import compileall
import io
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import PrivateRedis  # noqa: E402
from logcount import Counts  # noqa: E402
from logcount.sinks import keys  # noqa: E402

SITE = "bench"


def fill(client: redis.Redis, now: datetime, paths: int) -> None:
    """Zipf-like hits over `paths` distinct paths, in the day bucket and the hour buckets."""
    rng = random.Random(42)
    day = now.strftime("%Y%m%d")
    hours = [f"{day}{h:02d}" for h in range(now.hour + 1)]
    names = [f"/articles/{i}/{rng.getrandbits(32):08x}/" for i in range(paths)]
    hits = [max(1, int(100_000 / (i + 1))) for i in range(paths)]
    pipe = client.pipeline(transaction=False)
    for start in range(0, paths, 5000):
        chunk = range(start, min(start + 5000, paths))
        pipe.zadd(keys.members(SITE, "path", "day", day), {names[i]: hits[i] for i in chunk})
        pipe.zadd(
            keys.member_bytes(SITE, "path", "day", day), {names[i]: hits[i] * 5120 for i in chunk}
        )
        for n, hour in enumerate(hours):
            # the popular pages every hour, the long tail spread over the hours
            part = {
                names[i]: max(1, hits[i] // len(hours))
                for i in chunk
                if i < 1000 or i % len(hours) == n
            }
            pipe.zadd(keys.members(SITE, "path", "hour", hour), part)
        pipe.execute()
    total = sum(hits)
    client.hset(
        keys.totals(SITE, "day", day),
        mapping={
            "hits": total,
            "bytes": total * 5120,
            "bots": total // 10,
            "malformed": 3,
            "s2xx": total - total // 50,
            "s4xx": total // 60,
            "s5xx": total // 1000,
        },
    )
    client.pfadd(keys.visitors(SITE, "day", day), *[f"v{i}" for i in range(20_000)])


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_process(
    cmd: list[str], env: dict[str, str], runs: int, cwd: Path | None = None
) -> tuple[list[float], list[float]]:
    """Wall clock and CPU time (user + system) of each run of a new process."""
    wall, cpu = [], []
    for _ in range(runs):
        c0, t0 = child_cpu(), time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, check=True, cwd=cwd)
        wall.append(time.perf_counter() - t0)
        cpu.append(child_cpu() - c0)
    if "logcount.cli" in cmd:
        assert b"/articles/0/" in done.stdout, done.stdout[:500]
    return wall, cpu


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms"


def extract(ref: str, into: Path) -> Path:
    """REF's tree, as `git archive` gives it, with its bytecode compiled (as pip would)."""
    tar = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "logcount"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(into, filter="data")
    # The C scanner is built, not committed: this tree's build serves (`top` never scans).
    for built in (ROOT / "logcount").glob("_scan*.so"):
        (into / "logcount" / built.name).write_bytes(built.read_bytes())
    compileall.compile_dir(into / "logcount", quiet=1)
    return into


def import_times(cmd: list[str], env: dict[str, str], cwd: Path) -> dict[str, int]:
    """Microseconds of imports in one run (`-X importtime`): all of them, and the
    cumulative time of each Redis client's modules, where it was first imported."""
    err = subprocess.run(
        [cmd[0], "-X", "importtime", *cmd[1:]], env=env, capture_output=True, check=True, cwd=cwd
    ).stderr.decode()
    out = {"all": 0, "redis": 0, "logcount.resp": 0}
    for line in err.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:") :].split("|")
        module = name.strip()
        depth = (len(name) - len(name.lstrip())) // 2
        if depth == 0:
            out["all"] += int(cumulative)
        if module in ("redis", "logcount.resp") and not out[module]:
            out[module] = int(cumulative)
    return out


def instructions(cmd: list[str], env: dict[str, str], cwd: Path) -> int:
    """Instructions of one run, counted by valgrind (callgrind): the same on a busy
    machine as on a quiet one."""
    err = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
    ).stderr
    return int(re.findall(r"Collected : (\d+)", err)[-1])


def compare(args: argparse.Namespace, env: dict[str, str], tmp: Path) -> None:
    """`top --format json` of two variants, alternating, and their import times."""
    other_env = dict(env)
    other_env.update(item.split("=", 1) for item in args.compare_env)
    other_root = extract(args.compare, tmp / "ref") if args.compare else ROOT
    other_env["PYTHONPATH"] = str(other_root)
    compileall.compile_dir(ROOT / "logcount", quiet=1)
    label = (args.compare or "this tree") + "".join(f" {e}" for e in args.compare_env)
    variants = [("this tree", env), (label, other_env)]
    top = [sys.executable, "-m", "logcount.cli", "top", "--window", "today", "--format", "json"]
    wall: dict[str, list[float]] = {name: [] for name, _ in variants}
    cpu: dict[str, list[float]] = {name: [] for name, _ in variants}
    imports: dict[str, list[dict[str, int]]] = {name: [] for name, _ in variants}
    for _ in range(args.runs):
        for name, venv in variants:
            # In a neutral directory: `python -m` puts the current one first on sys.path.
            w, c = time_process(top + ["--site", SITE], venv, 1, cwd=tmp)
            wall[name] += w
            cpu[name] += c
        for name, venv in variants:
            imports[name].append(import_times(top + ["--site", SITE], venv, tmp))
    for name, venv in variants:
        where = subprocess.run(
            [sys.executable, "-c", "import logcount; print(logcount.__file__)"],
            env=venv,
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp,
        ).stdout.strip()
        print(f"{name}: logcount from {where}")
    for name, _ in variants:
        imp = {k: statistics.median(r[k] for r in imports[name]) / 1000 for k in imports[name][0]}
        print(
            f"{name}: top --format json median wall {ms(wall[name])} "
            f"(best {min(wall[name]) * 1000:.0f} ms), cpu {ms(cpu[name])}; imports "
            f"{imp['all']:.0f} ms, of which redis {imp['redis']:.0f} ms, "
            f"logcount.resp {imp['logcount.resp']:.0f} ms ({args.runs} runs each, alternating)"
        )
    if args.instructions:
        for name, venv in variants:
            count = instructions(top + ["--site", SITE], venv, tmp)
            print(f"{name}: top --format json, {count / 1e6:.0f} M instructions (valgrind)")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=100_000)
    parser.add_argument("--runs", type=int)
    parser.add_argument("--compare", metavar="REF", help="time REF's tree against this one")
    parser.add_argument(
        "--compare-env",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="environment of the second variant",
    )
    parser.add_argument(
        "--instructions", action="store_true", help="with --compare: count them (valgrind)"
    )
    args = parser.parse_args()
    comparing = bool(args.compare or args.compare_env)
    args.runs = args.runs or (21 if comparing else 7)
    with tempfile.TemporaryDirectory() as tmp:
        server = PrivateRedis()
        try:
            url = server.url
            config = Path(tmp, "logcount.toml")
            config.write_text(f'site = "{SITE}"\ntimezone = "UTC"\n')
            now = datetime.now(ZoneInfo("UTC"))
            t0 = time.perf_counter()
            fill(server.client, now, args.paths)
            print(
                f"filled today's buckets with {args.paths:,} distinct paths "
                f"in {time.perf_counter() - t0:.1f} s"
            )
            env = {k: v for k, v in os.environ.items() if not k.startswith("LOGCOUNT_")}
            env.update(
                LOGCOUNT_REDIS=url,
                LOGCOUNT_CONFIG=str(config),
                LOGCOUNT_DATA_DIR=str(Path(tmp, "data")),
                PYTHONPATH=str(ROOT),
            )
            if comparing:
                compare(args, env, Path(tmp))
                return
            top = [sys.executable, "-m", "logcount.cli", "top", "--window", "today", "--site", SITE]
            # An installed logcount has its bytecode (pip compiles it); a source checkout run
            # with PYTHONDONTWRITEBYTECODE=1 would compile every module on every start
            # (~50 ms), which is not what a user waits for.
            compileall.compile_dir(ROOT / "logcount", quiet=1)
            for what, code in (
                ("python -c pass", "pass"),
                ("python -c 'import redis'", "import redis"),
            ):
                wall, cpu = time_process([sys.executable, "-c", code], env, args.runs)
                print(f"baseline, {what}: median wall {ms(wall)}, cpu {ms(cpu)}")
            wall, cpu = time_process(top, env, args.runs)
            print(
                f"logcount top --window today (new process): median wall {ms(wall)} "
                f"(best {min(wall) * 1000:.0f} ms), cpu {ms(cpu)}, over {args.runs} runs "
                "(target < 200 ms)"
            )
            counts = Counts.from_config(str(config), redis=url)
            counts.report(window="today")
            inproc = []
            for _ in range(args.runs):
                t = time.perf_counter()
                counts.report(window="today", limit=20)
                inproc.append(time.perf_counter() - t)
            print(
                f"Counts.report(window='today') in one process: median "
                f"{statistics.median(inproc) * 1000:.1f} ms"
            )
            path = next(
                m.decode()
                for m in server.client.zrevrange(
                    keys.members(SITE, "path", "day", now.strftime("%Y%m%d")), 500, 500
                )
            )
            counts.hits_today(path)
            calls = []
            for _ in range(2000):
                t = time.perf_counter()
                counts.hits_today(path)
                calls.append(time.perf_counter() - t)
            calls.sort()
            print(
                f"Counts.hits_today(path): median {statistics.median(calls) * 1e3:.3f} ms, "
                f"p99 {calls[int(len(calls) * 0.99)] * 1e3:.3f} ms over {len(calls):,} calls "
                f"(target < 2 ms)"
            )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
