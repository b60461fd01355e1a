"""`logcount rollup` end to end: real files (plain, .gz, .bz2, .xz), real processes and
signals, a real SQLite file and a real PostgreSQL; expected counts computed here from the
generated input, independently of logcount's code."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from logcount.sinks.store import Store
from tests.conftest import LOGCOUNT, ROOT, run_logcount

TEMPLATE = "%Y/%m/%d/access.log"
DAYS = [date(2026, 3, 27), date(2026, 3, 28), date(2026, 3, 29)]
BROWSERS = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
]
BOTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
]
CONFIG = """site = "test"
[normalize]
ignore_extensions = [".css"]

[[route]]
pattern = "/press/<slug:slug>/<int:id>/"
object  = "press_release"

[[route]]
regex   = '^/products/(?P<id>[0-9]+)(/|$)'
object  = "product"
"""


def requested(rng: random.Random) -> tuple[str, str, str | None]:
    """(target as requested, path as counted, object)"""
    kind = rng.random()
    if kind < 0.35:
        n = rng.randint(1, 12)
        return f"/press/item-{n}/{n}/", f"/press/item-{n}/{n}/", f"press_release:{n}"
    if kind < 0.6:
        n = rng.randint(1, 8)
        return f"/products/{n}?utm=x{n}", f"/products/{n}", f"product:{n}"
    if kind < 0.7:
        return "/docs/./a/../b", "/docs/b", None  # dot segments resolved
    if kind < 0.8:
        return "/%7Euser/", "/~user/", None  # unreserved percent-encoding decoded
    if kind < 0.9:
        return "/static/site.css", "/static/site.css", None  # ignored extension
    return "/", "/", None


@dataclass
class DayExpect:
    hits: int = 0
    bots: int = 0
    malformed: int = 0
    bytes: int = 0
    visitors: set[tuple[str, str]] = field(default_factory=set)
    classes: Counter[str] = field(default_factory=Counter)  # s2xx, ... of the hits
    paths: Counter[str] = field(default_factory=Counter)
    path_bytes: Counter[str] = field(default_factory=Counter)
    objects: Counter[str] = field(default_factory=Counter)
    object_bytes: Counter[str] = field(default_factory=Counter)
    # per-path/object visitors of the day, over every file
    path_visitors: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    object_visitors: dict[str, set[tuple[str, str]]] = field(default_factory=dict)


@dataclass
class Line:
    when: datetime
    ip: str
    agent: str
    target: str
    path: str
    obj: str | None
    status: int
    size: int | None

    def text(self) -> str:
        stamp = self.when.strftime("%d/%b/%Y:%H:%M:%S +0000")
        size = "-" if self.size is None else str(self.size)
        return (
            f'{self.ip} - - [{stamp}] "GET {self.target} HTTP/1.1" {self.status} {size} '
            f'"http://ref.example/{self.ip[-1]}" "{self.agent}"\n'
        )


def gen_lines(rng: random.Random, day: date, n: int) -> list[Line]:
    out = []
    start = datetime(day.year, day.month, day.day)
    for _ in range(n):
        when = start + timedelta(seconds=rng.randint(0, 86399 - 120))
        bot = rng.random() < 0.15
        agent = rng.choice(BOTS if bot else BROWSERS)
        target, path, obj = requested(rng)
        status = rng.choice([200, 200, 200, 304, 404, 500])
        size = None if status == 304 else rng.randint(100, 9000)
        out.append(
            Line(when, f"10.0.0.{rng.randint(1, 25)}", agent, target, path, obj, status, size)
        )
    return sorted(out, key=lambda x: x.when)


def write_tree(
    root: Path, seed: int, per_day: int = 400, days: list[date] = DAYS
) -> dict[date, DayExpect]:
    """One cronolog tree; stragglers stamped 23:59:5x before midnight open the next day's
    file; two malformed lines per file. Returns the expected counts per day."""
    rng = random.Random(seed)
    files: dict[date, list[str]] = {}
    stamped: dict[date, list[Line]] = {}
    for i, day in enumerate(days):
        lines = gen_lines(rng, day, per_day)
        body = [ln.text() for ln in lines]
        if i > 0:  # requests that ended after midnight but began before: next day's file
            prev = days[i - 1]
            late = [
                Line(
                    datetime(prev.year, prev.month, prev.day, 23, 59, 50 + k),
                    f"10.0.0.{k + 1}",
                    BROWSERS[0],
                    "/press/item-1/1/",
                    "/press/item-1/1/",
                    "press_release:1",
                    200,
                    1000 + k,
                )
                for k in range(3)
            ]
            body = [ln.text() for ln in late] + body
            stamped[day] = late + lines
        else:
            stamped[day] = lines
        body.insert(len(body) // 2, "this is not a log line\n")
        body.append('10.0.0.1 - - [27/Mar/2026:10:00:00 +0000] "GET / HTTP/1.1" 200\n')  # torn
        files[day] = body
        path = root / day.strftime(TEMPLATE)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(body))
    return expect(stamped)


def expect(files: dict[date, list[Line]]) -> dict[date, DayExpect]:
    out: dict[date, DayExpect] = {}
    for file_day, lines in files.items():
        out.setdefault(file_day, DayExpect()).malformed += 2
        for ln in lines:
            e = out.setdefault(ln.when.date(), DayExpect())
            if ln.agent in BOTS:
                e.bots += 1
                continue
            if ln.path.endswith(".css"):
                continue
            visitor = (ln.ip, ln.agent)
            e.visitors.add(visitor)  # visitors of counted hits
            e.hits += 1
            e.bytes += ln.size or 0
            e.classes[f"s{str(ln.status)[0]}xx"] += 1
            e.paths[ln.path] += 1
            e.path_bytes[ln.path] += ln.size or 0
            e.path_visitors.setdefault(ln.path, set()).add(visitor)
            if ln.obj:
                e.objects[ln.obj] += 1
                e.object_bytes[ln.obj] += ln.size or 0
                e.object_visitors.setdefault(ln.obj, set()).add(visitor)
    return out


def merge_expect(*parts: dict[date, DayExpect]) -> dict[date, DayExpect]:
    out: dict[date, DayExpect] = {}
    for part in parts:
        for d, e in part.items():
            m = out.setdefault(d, DayExpect())
            m.hits += e.hits
            m.bots += e.bots
            m.malformed += e.malformed
            m.bytes += e.bytes
            m.visitors |= e.visitors
            for name in ("classes", "paths", "path_bytes", "objects", "object_bytes"):
                getattr(m, name).update(getattr(e, name))
            for name in ("path_visitors", "object_visitors"):
                for key, seen in getattr(e, name).items():
                    getattr(m, name).setdefault(key, set()).update(seen)
    return out


def expected_rows(e: DayExpect, by: str) -> list[dict[str, Any]]:
    hits, size, vis = (
        (e.paths, e.path_bytes, e.path_visitors)
        if by == "path"
        else (e.objects, e.object_bytes, e.object_visitors)
    )
    return sorted(
        ({"key": k, "hits": n, "bytes": size[k], "visitors": len(vis[k])} for k, n in hits.items()),
        key=lambda r: r["key"],
    )


@pytest.fixture(params=["sqlite", "postgres"])
def store_env(
    request: pytest.FixtureRequest, lc_env: dict[str, str], tmp_path: Path
) -> dict[str, str]:
    """lc_env with the routes config and a store: the default SQLite file, or PostgreSQL."""
    (tmp_path / "logcount.toml").write_text(CONFIG)
    env = dict(lc_env)
    if request.param == "postgres":
        env["LOGCOUNT_STORE"] = request.getfixturevalue("postgres_url")
    return env


def store_of(env: dict[str, str]) -> Store:
    url = env.get("LOGCOUNT_STORE") or f"sqlite:///{env['LOGCOUNT_DATA_DIR']}/logcount.sqlite3"
    return Store(url)


def rollup(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return run_logcount(["rollup", *args], env)


def top_json(env: dict[str, str], day: date, by: str) -> dict[str, Any]:
    done = run_logcount(
        ["top", "--window", day.isoformat(), "--by", by, "--limit", "10000", "--format", "json"],
        env,
    )
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def check_day(env: dict[str, str], day: date, e: DayExpect) -> None:
    for by in ("path", "object"):
        report = top_json(env, day, by)
        assert report["window"]["source"] == "store"
        assert report["total"] == {
            "hits": e.hits,
            "bytes": e.bytes,
            "visitors": len(e.visitors),
            "bots": e.bots,
            "malformed": e.malformed,
            **{f"s{c}xx": e.classes[f"s{c}xx"] for c in "12345"},
        }
        rows = sorted(
            ({k: r[k] for k in ("key", "hits", "bytes", "visitors")} for r in report["rows"]),
            key=lambda r: r["key"],
        )
        assert rows == expected_rows(e, by)


def test_acceptance_three_days_twice(store_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "logs"
    expected = write_tree(root, seed=4)
    args = [
        "--logs",
        str(root / TEMPLATE),
        "--since",
        DAYS[0].isoformat(),
        "--until",
        DAYS[-1].isoformat(),
    ]
    for _ in range(2):
        done = rollup(store_env, *args)
        assert done.returncode == 0, done.stderr.decode()
        assert done.stdout == b"" and done.stderr == b""  # off a terminal: nothing but errors
    for day in DAYS:
        check_day(store_env, day, expected[day])


def test_straggler_counts_on_its_own_day(store_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "logs"
    expected = write_tree(root, seed=5, per_day=50)
    done = rollup(store_env, "--logs", str(root / TEMPLATE), "--date", DAYS[1].isoformat())
    assert done.returncode == 0, done.stderr.decode()
    store = store_of(store_env)
    # Only day 2's file was read: its three stragglers are day 1's, and only they; day 1
    # does not count as rolled up (reports keep reading it live) until its own file is.
    assert store.rolled_days("test", DAYS) == {DAYS[1]}
    assert store.day_totals("test", [DAYS[0]])["hits"] == 3
    assert store.daily_hits("test", "path", "/press/item-1/1/", [DAYS[0]]) == {DAYS[0]: 3}
    assert (
        rollup(store_env, "--logs", str(root / TEMPLATE), "--date", DAYS[0].isoformat()).returncode
        == 0
    )
    assert store.rolled_days("test", DAYS) == {DAYS[0], DAYS[1]}
    assert store.day_totals("test", [DAYS[0]])["hits"] == expected[DAYS[0]].hits
    day2 = store.day_totals("test", [DAYS[1]])
    # day 2's own lines, without its stragglers that sit in day 3's file (not read)
    assert (day2["hits"], day2["bots"], day2["malformed"]) == (
        expected[DAYS[1]].hits - 3,
        expected[DAYS[1]].bots,
        2,
    )


def test_two_hosts_add_up(store_env: dict[str, str], tmp_path: Path) -> None:
    a = write_tree(tmp_path / "a", seed=6, per_day=80, days=DAYS[:1])
    b = write_tree(tmp_path / "b", seed=7, per_day=80, days=DAYS[:1])
    for host in ("a", "b"):
        done = rollup(
            store_env,
            "--host",
            f"web-{host}",
            "--logs",
            str(tmp_path / host / TEMPLATE),
            "--date",
            DAYS[0].isoformat(),
        )
        assert done.returncode == 0, done.stderr.decode()
    done = rollup(
        store_env,
        "--host",
        "web-a",
        "--logs",
        str(tmp_path / "a" / TEMPLATE),
        "--date",
        DAYS[0].isoformat(),
    )  # again: replaces, does not add
    assert done.returncode == 0
    check_day(store_env, DAYS[0], merge_expect(a, b)[DAYS[0]])
    hosts = sorted(r["host"] for r in store_of(store_env).source_rows())
    assert hosts == ["web-a", "web-b"]


def test_compressed_inputs_and_globs(store_env: dict[str, str], tmp_path: Path) -> None:
    expected = write_tree(tmp_path / "plain", seed=8, per_day=120)
    packed = tmp_path / "packed"
    packed.mkdir()
    for day, opener in zip(DAYS, (gzip.open, bz2.open, lzma.open), strict=True):
        ext = {gzip.open: "gz", bz2.open: "bz2", lzma.open: "xz"}[opener]
        data = (tmp_path / "plain" / day.strftime(TEMPLATE)).read_bytes()
        with opener(packed / f"access-{day:%Y%m%d}.log.{ext}", "wb") as f:  # type: ignore[operator]
            f.write(data)
    # Explicit files: read whole, no date needed. A malformed line of an explicit file
    # counts on the day most of its lines belong to (here the file's own day).
    done = rollup(store_env, "--logs", str(packed / "*.log.*"))
    assert done.returncode == 0, done.stderr.decode()
    for day in DAYS:
        check_day(store_env, day, expected[day])


def test_a_log_compressed_after_its_rollup_replaces_itself(
    lc_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "logcount.toml").write_text(CONFIG)
    root = tmp_path / "logs"
    expected = write_tree(root, seed=15, per_day=80, days=DAYS[:1])
    args = ["--logs", str(root / TEMPLATE), "--date", DAYS[0].isoformat()]
    assert rollup(lc_env, *args).returncode == 0
    plain = root / DAYS[0].strftime(TEMPLATE)
    with gzip.open(f"{plain}.gz", "wb") as f:  # what logrotate's compress does
        f.write(plain.read_bytes())
    plain.unlink()
    done = rollup(lc_env, *args)  # the template finds access.log.gz now
    assert done.returncode == 0, done.stderr.decode()
    store = store_of(lc_env)
    assert store.day_totals("test", [DAYS[0]])["hits"] == expected[DAYS[0]].hits
    assert [r["path"] for r in store.source_rows()] == [str(plain)]


def test_missing_file_is_an_error_unless_allowed(store_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "logs"
    write_tree(root, seed=9, per_day=20, days=DAYS[:1])
    args = [
        "--logs",
        str(root / TEMPLATE),
        "--since",
        DAYS[0].isoformat(),
        "--until",
        DAYS[1].isoformat(),
    ]
    done = rollup(store_env, *args)
    assert done.returncode == 1
    err = done.stderr.decode()
    assert f"error: no log file for {DAYS[1]}: {root / DAYS[1].strftime(TEMPLATE)}" in err
    assert err.strip().splitlines()[-1] == (
        "Error: rollup incomplete: 1 file(s) stored, 1 missing, 0 unreadable"
    )
    assert "Traceback" not in err
    # the file that exists was stored all the same
    assert store_of(store_env).rolled_days("test", DAYS) == {DAYS[0]}
    done = rollup(store_env, *args, "--allow-missing")
    assert done.returncode == 0 and done.stderr == b""


def test_bad_options_one_line(store_env: dict[str, str]) -> None:
    done = rollup(store_env, "--date", "2026-01-02", "--since", "2026-01-01")
    assert done.returncode == 78
    assert done.stderr.decode() == "Error: give --date, or --since/--until, not both\n"
    done = rollup(store_env, "--date", "2026-01-02")
    assert done.returncode == 78
    assert done.stderr.decode().startswith("Error: no logs to read: give --logs")


def test_django_urlconf_objects(lc_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "logcount.toml").write_text(
        'site = "test"\ndjango_settings = "djangoproject.settings"\n'
    )
    env = dict(lc_env, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}")
    log = tmp_path / "access.log"
    targets = [
        "/articles/2024/hello-17/",
        "/articles/2024/hello-17/",
        "/shop/items/9/",
        "/legacy/33.html",
        "/about/",
        "/nowhere/",
    ]
    log.write_text(
        "".join(
            f'10.1.1.{i} - - [27/Mar/2026:12:00:0{i} +0000] "GET {t} HTTP/1.1" 200 10 "-" '
            f'"{BROWSERS[0]}"\n'
            for i, t in enumerate(targets)
        )
    )
    done = rollup(env, "--logs", str(log))
    assert done.returncode == 0, done.stderr.decode()
    rows = Store(f"sqlite:///{env['LOGCOUNT_DATA_DIR']}/logcount.sqlite3").top_rows(
        "test", [DAYS[0]], "object", 10
    )
    assert rows == [
        {"key": "article:17", "hits": 2, "bytes": 20, "visitors": 2},
        {"key": "legacy_page:33", "hits": 1, "bytes": 10, "visitors": 1},
        {"key": "product:9", "hits": 1, "bytes": 10, "visitors": 1},
    ]


def test_agrees_with_live_counts(lc_env: dict[str, str], tmp_path: Path, real_data: Path) -> None:
    """The real Apache log through `logcount pipe` (live) and through rollup (store)."""
    log = real_data / "elastic_apache_logs.log"
    live = run_logcount(["pipe"], lc_env, input=log.read_bytes())
    assert live.returncode == 0, live.stderr.decode()
    day = "2015-05-18"
    # agent: families named by the parent; device: types named by the counters
    dims = ("path", "status", "agent", "referrer", "device")
    before = {by: top_json(lc_env, date.fromisoformat(day), by) for by in dims}
    assert before["path"]["window"]["source"] == "live"
    assert len(before["agent"]["rows"]) > 10
    done = rollup(lc_env, "--logs", str(log))
    assert done.returncode == 0, done.stderr.decode()
    for by in dims:
        after = top_json(lc_env, date.fromisoformat(day), by)
        assert after["window"]["source"] == "store"
        for name in ("hits", "bytes", "bots"):
            assert after["total"][name] == before[by]["total"][name]
        assert [(r["key"], r["hits"], r["bytes"]) for r in after["rows"]] == [
            (r["key"], r["hits"], r["bytes"]) for r in before[by]["rows"]
        ]


# --- a crash in the middle --------------------------------------------------------------


def snapshot(store: Store) -> tuple[Any, ...]:
    return (
        store.day_totals("test", DAYS),
        store.top_rows("test", DAYS, "path", 1000),
        store.top_rows("test", DAYS, "status", 100),
    )


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def counters_gone(text: str, timeout: float = 10) -> bool:
    """Whether every process mentioning `text` is gone within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while processes_mentioning(text):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def feed_fifo(
    path: Path, sample: bytes, times: int, hold: threading.Event | None = None
) -> threading.Thread:
    """Write `sample` `times` times into the named pipe `path` (once a reader opens it);
    with `hold`, write half of it and keep the pipe open until `hold` is set."""

    def run() -> None:
        try:
            with open(path, "wb") as f:
                for i in range(times):
                    if hold is not None and i == times // 2:
                        hold.wait(120)
                        return
                    f.write(sample)
        except BrokenPipeError:  # the reader was killed
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_sigkill_mid_rollup_then_rerun(store_env: dict[str, str], tmp_path: Path) -> None:
    lc_env = store_env
    logs = tmp_path / "crashlogs"
    write_tree(logs, seed=12, per_day=300)
    # The last file is a named pipe the test writes: the killed run is stopped half way
    # through it, however fast the rollup is (a plain file could be read to its end
    # between the test's look at the store and its kill).
    pipe = logs / "zz-pipe.log"
    os.mkfifo(pipe)
    sample = b"".join(ln.text().encode() for ln in gen_lines(random.Random(11), DAYS[1], 2000))
    specs = [
        "--logs",
        str(logs / TEMPLATE),
        "--logs",
        str(pipe),
        "--since",
        DAYS[0].isoformat(),
        "--until",
        DAYS[-1].isoformat(),
        "--jobs",
        "2",
    ]
    feed_fifo(pipe, sample, 200)
    done = rollup(lc_env, *specs)
    assert done.returncode == 0, done.stderr.decode()
    store = store_of(lc_env)
    reference = snapshot(store)
    assert reference[0]["hits"] > 300_000

    hold = threading.Event()
    writer = feed_fifo(pipe, sample, 200, hold)
    proc = subprocess.Popen(
        [*LOGCOUNT, "rollup", *specs], env=lc_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # kill while the pipe is being read
            rows = {r["path"]: r for r in store.source_rows()}
            small_done = all(r["finished"] for p, r in rows.items() if p != str(pipe))
            if small_done and rows[str(pipe)]["finished"] is None:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the rollup never reached the pipe")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        hold.set()
        writer.join(10)
    assert proc.returncode == -signal.SIGKILL
    assert counters_gone(str(logs))  # the counters died with their parent
    assert {r["path"]: r["finished"] for r in store.source_rows()}[str(pipe)] is None
    assert snapshot(store) == reference  # the killed run changed nothing it had not finished

    feed_fifo(pipe, sample, 200)
    done = rollup(lc_env, *specs)
    assert done.returncode == 0, done.stderr.decode()
    assert snapshot(store) == reference
    assert all(r["finished"] for r in store.source_rows())


@contextmanager
def rollup_held_at_a_fifo(
    store_env: dict[str, str], tmp_path: Path, seed: int, **popen: Any
) -> Iterator[tuple[subprocess.Popen[bytes], Path, dict[date, Any], Store]]:
    """A rollup of three days' files and, last, a named pipe written half way and held
    open: yields (process, pipe, expected counts, store) once every other file is stored
    and the pipe is being read; lets the pipe's writer go on the way out."""
    logs = tmp_path / "logs"
    expected = write_tree(logs, seed=seed, per_day=200)
    pipe = logs / "zz-pipe.log"
    os.mkfifo(pipe)
    sample = b"".join(ln.text().encode() for ln in gen_lines(random.Random(seed), DAYS[1], 500))
    hold = threading.Event()
    writer = feed_fifo(pipe, sample, 100, hold)
    args = ["--logs", str(logs / TEMPLATE), "--logs", str(pipe)]
    args += ["--since", DAYS[0].isoformat(), "--until", DAYS[-1].isoformat(), "--jobs", "2"]
    proc = subprocess.Popen(
        [*LOGCOUNT, "rollup", *args],
        env=store_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **popen,
    )
    store = store_of(store_env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the days are stored, the pipe is being read
            rows = {r["path"]: r for r in store.source_rows()}
            if len(rows) == 4 and all(r["finished"] for p, r in rows.items() if p != str(pipe)):
                break
            time.sleep(0.02)
        else:
            pytest.fail("the rollup never reached the pipe")
        yield proc, pipe, expected, store
    finally:
        hold.set()
        writer.join(10)


def test_a_killed_counter_fails_its_file_not_the_run(
    store_env: dict[str, str], tmp_path: Path
) -> None:
    """Counting processes that die (the OOM killer) cost the files they had begun: they
    are errors and the exit code says so; the others are stored, nothing hangs."""
    with rollup_held_at_a_fifo(store_env, tmp_path, 17) as (proc, pipe, expected, store):
        counters = [pid for pid in processes_mentioning(str(pipe.parent)) if pid != proc.pid]
        assert counters
        for pid in counters:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:  # the pool stopped it when the first one died
                pass
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err.decode()
    assert err.decode().splitlines() == [
        f"error: cannot read {pipe}: its counting process died",
        "Error: rollup incomplete: 3 file(s) stored, 0 missing, 1 unreadable",
    ]
    assert {r["path"]: r["finished"] for r in store.source_rows()}[str(pipe)] is None
    for day in DAYS:
        assert store.day_totals("test", [day])["hits"] == expected[day].hits


def test_sigterm_ends_the_run_and_its_counters(store_env: dict[str, str], tmp_path: Path) -> None:
    """SIGTERM to the rollup alone (not its group): it ends at once, as by default, the
    file being read is not stored, and the counters exit with it."""
    with rollup_held_at_a_fifo(store_env, tmp_path, 23) as (proc, pipe, expected, store):
        assert [pid for pid in processes_mentioning(str(pipe.parent)) if pid != proc.pid]
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        assert (proc.returncode, err) == (-signal.SIGTERM, b"")
        assert counters_gone(str(pipe.parent))
    assert {r["path"]: r["finished"] for r in store.source_rows()}[str(pipe)] is None
    for day in DAYS:
        assert store.day_totals("test", [day])["hits"] == expected[day].hits


def readers_of(path: Path, among: list[int]) -> list[int]:
    """The processes (of `among`) that have `path` open."""
    found = []
    for pid in among:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == str(path):
                    found.append(pid)
                    break
            except OSError:
                pass
    return found


def test_a_dead_counter_costs_the_files_begun_not_the_others(
    lc_env: dict[str, str], tmp_path: Path
) -> None:
    """Two counters each reading a named pipe, three days' files waiting: one counter is
    killed. The pool breaks and stops the other; the two pipes fail, the three files no
    counter had begun are counted by a new pool and stored."""
    (tmp_path / "logcount.toml").write_text(CONFIG)
    logs = tmp_path / "logs"
    expected = write_tree(logs, seed=25, per_day=100)
    pipes, writers, hold = [logs / "a.log", logs / "b.log"], [], threading.Event()
    sample = b"".join(ln.text().encode() for ln in gen_lines(random.Random(25), DAYS[1], 100))
    for pipe in pipes:
        os.mkfifo(pipe)
        writers.append(feed_fifo(pipe, sample, 10, hold))
    args = ["--logs", str(pipes[0]), "--logs", str(pipes[1]), "--logs", str(logs / TEMPLATE)]
    args += ["--since", DAYS[0].isoformat(), "--until", DAYS[-1].isoformat(), "--jobs", "2"]
    proc = subprocess.Popen(
        [*LOGCOUNT, "rollup", *args], env=lc_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # each counter reads its pipe
            counters = [pid for pid in processes_mentioning(str(logs)) if pid != proc.pid]
            readers = [readers_of(pipe, counters) for pipe in pipes]
            if all(readers):
                break
            time.sleep(0.02)
        else:
            pytest.fail("the counters never opened the pipes")
        os.kill(readers[0][0], signal.SIGKILL)
        _out, err = proc.communicate(timeout=60)
    finally:
        hold.set()
        for writer in writers:
            writer.join(10)
    assert (proc.returncode, err.decode().splitlines()) == (
        1,
        [
            f"error: cannot read {pipes[0]}: its counting process died",
            f"error: cannot read {pipes[1]}: its counting process died",
            "Error: rollup incomplete: 3 file(s) stored, 0 missing, 2 unreadable",
        ],
    )
    store = store_of(lc_env)
    for day in DAYS:
        assert store.day_totals("test", [day])["hits"] == expected[day].hits


def group_members(pgid: int) -> list[str]:
    """Processes of a process group, zombies too: "pid state" of each."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:  # state ppid pgrp ...
                found.append(f"{entry.name} {fields[0]}")
    return found


def test_ctrl_c_stops_every_process_and_keeps_what_was_stored(
    store_env: dict[str, str], tmp_path: Path
) -> None:
    """Ctrl-C (SIGINT to the terminal's process group) in the middle: the files already
    stored stay, the one being read is not, and no counter is left behind, not even as a
    zombie (the first counter kills and reaps the others before it exits)."""
    session = {"start_new_session": True}
    with rollup_held_at_a_fifo(store_env, tmp_path, 19, **session) as (proc, pipe, expected, store):
        assert len(group_members(proc.pid)) == 3  # the parent and two counters
        os.killpg(proc.pid, signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    assert (proc.returncode, err.decode()) == (1, "\nAborted!\n")  # click's, no traceback
    assert group_members(proc.pid) == []
    assert {r["path"]: r["finished"] for r in store.source_rows()}[str(pipe)] is None
    for day in DAYS:
        assert store.day_totals("test", [day])["hits"] == expected[day].hits


def test_unreadable_file_fails_the_run_but_not_the_others(
    lc_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "logcount.toml").write_text(CONFIG)
    logs = tmp_path / "logs"
    expected = write_tree(logs, seed=13, per_day=60, days=DAYS[:1])
    (logs / "broken.log.gz").write_bytes(b"\x1f\x8b\x08\x00 this is no gzip stream")
    done = rollup(
        lc_env,
        "--logs",
        str(logs / TEMPLATE),
        "--date",
        DAYS[0].isoformat(),
        "--logs",
        str(logs / "broken.log.gz"),
    )
    assert done.returncode == 1
    lines = done.stderr.decode().strip().splitlines()
    assert lines[0].startswith(f"error: cannot read {logs / 'broken.log.gz'}: ")
    assert lines[-1] == "Error: rollup incomplete: 1 file(s) stored, 0 missing, 1 unreadable"
    assert store_of(lc_env).day_totals("test", [DAYS[0]])["hits"] == expected[DAYS[0]].hits


def run_on_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run logcount with stdout and stderr on a pseudo-terminal; (exit code, output)."""
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [*LOGCOUNT, *args], env=env, stdout=follower, stderr=follower, stdin=subprocess.DEVNULL
    )
    os.close(follower)
    out = b""
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        out += data
    os.close(leader)
    return proc.wait(30), out.decode("utf-8", "replace")


def test_progress_on_a_terminal_and_quiet(lc_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "logcount.toml").write_text(CONFIG)
    write_tree(tmp_path / "logs", seed=14, per_day=100)
    args = [
        "rollup",
        "--logs",
        str(tmp_path / "logs" / TEMPLATE),
        "--since",
        DAYS[0].isoformat(),
        "--until",
        DAYS[-1].isoformat(),
    ]
    code, out = run_on_terminal(args, lc_env)
    assert code == 0, out
    assert "3/3" in out and "lines/s" in out  # the bar: files done, lines and rate
    assert "3 file(s), 312 lines (6 malformed)" in out  # 3 x 100, 6 stragglers, 6 bad
    code, out = run_on_terminal([*args, "--quiet"], lc_env)
    assert (code, out) == (0, "")


def test_ranges_of_a_split_file_count_every_line_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tomllib

    from logcount.config import config_from_dict
    from logcount.sources import rollup as lr

    config = config_from_dict(tomllib.loads(CONFIG))
    log = tmp_path / "big.log"
    rng = random.Random(16)
    log.write_text("".join(ln.text() for ln in gen_lines(rng, DAYS[0], 12_000)))
    whole = lr.count_unit(config, lr.Unit(lr.Input(str(log), None), 0, None))[1]
    from logcount.sources import rollup_files

    monkeypatch.setattr(rollup_files, "SPLIT_MIN", 1 << 20)  # small sizes, for a small file
    monkeypatch.setattr(rollup_files, "RANGE", 300 << 10)
    monkeypatch.setattr(rollup_files, "TAIL", 100 << 10)
    units = lr.split_units(lr.Input(str(log), None), 2)
    assert len(units) >= 4 and units[0].start == 0 and units[-1].end is None
    # the file's last units are small, so that the counters end together
    tail = [u for u in units if u.tail]
    assert len(tail) == 2 * rollup_files.TAIL_UNITS and units[-len(tail) :] == tail
    assert all((u.end or log.stat().st_size) - u.start < 101 << 10 for u in tail)
    assert all(a.end == b.start for a, b in zip(units, units[1:], strict=False))
    parts = [lr.count_unit(config, u)[1] for u in units]
    assert whole is not None and all(p is not None for p in parts)
    merged = parts[0]
    for p in parts[1:]:
        merged.merge(p)  # type: ignore[union-attr]
    assert merged is not None and merged.lines == whole.lines == 12_000
    assert merged.delta.totals == whole.delta.totals
    assert merged.delta.members == whole.delta.members
    assert merged.path_visitors.keys() == whole.path_visitors.keys()
    for key, sketch in whole.path_visitors.items():
        assert merged.path_visitors[key].to_bytes() == sketch.to_bytes()
    assert merged.day_visitors.keys() == whole.day_visitors.keys()


def test_every_unit_is_counted_once_however_many(tmp_path: Path) -> None:
    """The counters take the units in turn from the pool: 2,000 of them, every one is
    counted once and its part comes back, and the progress adds up their lines."""
    import tomllib

    from logcount.config import config_from_dict
    from logcount.sources import rollup as lr
    from logcount.sources.rollup_parts import read_part

    config = config_from_dict(tomllib.loads(CONFIG))
    log = tmp_path / "one.log"
    log.write_text("".join(ln.text() for ln in gen_lines(random.Random(18), DAYS[0], 3000)))
    size = log.stat().st_size
    inp = lr.Input(str(log), None)
    # the file's lines in four ranges, hidden among 1,996 empty ones
    cuts = [0, *(log.read_bytes().index(b"\n", size * k // 4) + 1 for k in (1, 2, 3)), size]
    units = [lr.Unit(inp, cuts[0], cuts[0])] * 1_996 + [
        lr.Unit(inp, a, b) for a, b in zip(cuts, cuts[1:], strict=False)
    ]
    counters = lr.Counters(config, units, 2, True)
    try:
        messages = list(counters.results(lambda: None))
        parts = [m for m in messages if m[0] == "part"]
        counts = [read_part(m[3], None) for m in parts]  # handed over in files
    finally:
        counters.close(stop=False)
    assert not os.path.exists(counters.spill)  # their directory removed
    assert [m for m in messages if m[0] != "part"] == []
    assert sum(m[2] for m in parts) == 2_000  # every unit counted once
    assert sum(c.lines + c.malformed for c in counts) == 3000
    assert counters.lines == 3000  # the progress the counters reported


def test_a_killed_rollups_directory_goes_at_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The directory of a rollup killed before it removed it (SIGKILL) is removed by the
    next rollup once its process is gone; a live one's stays."""
    import subprocess
    import tempfile

    from logcount.sources import rollup as lr

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    child = subprocess.Popen(["true"])
    child.wait()  # gone and reaped: its pid names no process
    dead = tmp_path / f"{lr.SPILL_PREFIX}{child.pid}-x"
    live = tmp_path / f"{lr.SPILL_PREFIX}{os.getpid()}-y"
    for d in (dead, live):
        d.mkdir()
        (d / "part-1").write_bytes(b"left")
    fresh = lr.spill_directory()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, Path(fresh).name])


def test_configured_time_zone_moves_lines_across_midnight(
    lc_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "logcount.toml").write_text('site = "test"\ntimezone = "America/New_York"\n')
    log = tmp_path / "access.log"
    stamps = [
        "27/Mar/2026:02:00:00 +0000",  # 26 March, 22:00 in New York (EDT)
        "27/Mar/2026:12:00:00 +0000",
        "27/Mar/2026:09:30:00 +0530",
    ]  # 27 March
    log.write_text(
        "".join(f'10.0.0.1 - - [{s}] "GET /a HTTP/1.1" 200 5 "-" "{BROWSERS[0]}"\n' for s in stamps)
    )
    done = rollup(lc_env, "--logs", str(log))
    assert done.returncode == 0, done.stderr.decode()
    store = store_of(lc_env)
    assert store.daily_hits("test", "path", "/a", [date(2026, 3, 26), date(2026, 3, 27)]) == {
        date(2026, 3, 26): 1,
        date(2026, 3, 27): 2,
    }


def test_a_format_without_time_counts_on_the_files_day(
    lc_env: dict[str, str], tmp_path: Path
) -> None:
    """%t missing from the LogFormat: the template's day, else the file's modification day."""
    (tmp_path / "logcount.toml").write_text('site = "test"\nlog_format = \'%h "%r" %>s %b\'\n')
    explicit = tmp_path / "notime.log"
    explicit.write_text('10.0.0.1 "GET /x HTTP/1.1" 200 5\n' * 2)
    os.utime(explicit, (0, datetime(2026, 2, 3, 12).timestamp()))
    dated = tmp_path / "t" / DAYS[0].strftime(TEMPLATE)
    dated.parent.mkdir(parents=True)
    dated.write_text('10.0.0.1 "GET /x HTTP/1.1" 200 5\n')
    assert rollup(lc_env, "--logs", str(explicit)).returncode == 0
    done = rollup(lc_env, "--logs", str(tmp_path / "t" / TEMPLATE), "--date", str(DAYS[0]))
    assert done.returncode == 0, done.stderr.decode()
    assert store_of(lc_env).daily_hits("test", "path", "/x", [date(2026, 2, 3), DAYS[0]]) == {
        date(2026, 2, 3): 2,
        DAYS[0]: 1,
    }


def test_the_rollup_imports_nothing_of_the_read_side(
    lc_env: dict[str, str], tmp_path: Path
) -> None:
    """A whole `rollup` (its default day too) and its counting side import none of the
    reading side's modules: reports, the API, their output and `top --watch` may change
    without touching the nightly job."""
    log = tmp_path / "access.log"
    log.write_text("".join(ln.text() for ln in gen_lines(random.Random(24), DAYS[0], 50)))
    code = (
        "import atexit, sys\n"
        "from logcount.sources import rollup_count  # the counters' imports, in the parent\n"
        "atexit.register(lambda: print(*sorted(m for m in sys.modules if 'logcount' in m)))\n"
        "from logcount.cli import cli\n"
        "cli(['rollup', '--quiet', '--logs', sys.argv[1]])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(log)],
        env=lc_env,
        capture_output=True,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, b"")
    imported = set(done.stdout.decode().split())
    assert {
        "logcount.sources.rollup",
        "logcount.sources.rollup_count",
        "logcount.sinks.store",
    } <= imported
    read_side = {m for m in imported if m.startswith("logcount.read")}
    assert imported & read_side == set()
