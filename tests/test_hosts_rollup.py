"""Several web servers' nightly rollups into one PostgreSQL: started at the same moment
into a fresh database they neither block nor corrupt each other, run twice they give the
same numbers, and the reports add the hosts up, with visitors as a union (one visitor
seen by two hosts, or on two days of a window, counts once)."""

from __future__ import annotations

import json
import random
import subprocess
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.conftest import LOGCOUNT, run_logcount

DAYS = [date(2026, 3, 10), date(2026, 3, 11)]
SITES = ["big.example", "mid.example", "small.example"]
AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
CONFIG = (
    'log_format = "vhost_combined"\n'
    '[privacy]\nsecret = "one secret for every host of the cluster"\n'
)
# Visitors (by number) each host sees on each day: web1 and web2 share a third of theirs,
# and the second day repeats some of the first's. Past 1,024 a day: exact all the same.
VISITORS = {
    ("web1", DAYS[0]): range(0, 2000),
    ("web2", DAYS[0]): range(1400, 3000),
    ("web1", DAYS[1]): range(2500, 3600),
    ("web2", DAYS[1]): range(3000, 4200),
}


def address(visitor: int) -> str:
    return f"10.{visitor // 65536}.{visitor // 256 % 256}.{visitor % 256}"


def write_logs(root: Path) -> dict[tuple[str, date], Counter[str]]:
    """Each host's cronolog-style files; (site, day) -> path -> hits expected."""
    want: dict[tuple[str, date], Counter[str]] = {}
    for (host, day), visitors in VISITORS.items():
        rng = random.Random(f"{host}{day}")
        path = root / host / day.strftime("%Y/%m/%d") / "access.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for i, visitor in enumerate(visitors):
            for _ in range(1 + visitor % 3):
                site = SITES[0] if i % 10 < 7 else SITES[1 + i % 2]
                page = f"/page/{rng.randrange(20)}"
                when = day.strftime("%d/%b/%Y") + f":{i % 24:02d}:{i % 60:02d}:00 +0000"
                lines.append(
                    f"{site}:80 {address(visitor)} - - [{when}] "
                    f'"GET {page} HTTP/1.1" 200 {100 + i % 50} "-" "{AGENT}"'
                )
                want.setdefault((site, day), Counter())[page] += 1
        path.write_text("\n".join(lines) + "\n")
    return want


def visitors_of(site: str, days: list[date]) -> int:
    """Distinct visitors of `site` over `days`, every host together."""
    seen = set()
    for (_host, day), visitors in VISITORS.items():
        if day in days:
            for i, visitor in enumerate(visitors):
                if (SITES[0] if i % 10 < 7 else SITES[1 + i % 2]) == site:
                    seen.add(visitor)
    return len(seen)


def host_env(lc_env: dict[str, str], tmp_path: Path, store: str, host: str) -> dict[str, str]:
    (tmp_path / "hosts.toml").write_text(CONFIG)
    return dict(
        lc_env,
        LOGCOUNT_STORE=store,
        LOGCOUNT_HOST=host,
        LOGCOUNT_CONFIG=str(tmp_path / "hosts.toml"),
        LOGCOUNT_DATA_DIR=str(tmp_path / host / "data"),
    )


def rollups_together(envs: list[dict[str, str]], root: Path) -> None:
    """Every host's rollup of both days, started at once; each must succeed."""
    procs = [
        subprocess.Popen(
            LOGCOUNT
            + [
                "rollup",
                "--quiet",
                "--logs",
                str(root / env["LOGCOUNT_HOST"] / "%Y/%m/%d/access.log"),
                "--since",
                DAYS[0].isoformat(),
                "--until",
                DAYS[-1].isoformat(),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for env in envs
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        assert out == b""


def top(env: dict[str, str], site: str, window: str) -> dict[str, Any]:
    done = run_logcount(
        ["top", "--site", site, "--window", window, "--limit", "100", "--format", "json"], env
    )
    assert done.returncode == 0, done.stderr.decode()
    return dict(json.loads(done.stdout))


def test_two_hosts_roll_up_the_same_days_at_once_into_postgresql(
    lc_env: dict[str, str], tmp_path: Path, postgres_url: str
) -> None:
    """Acceptance: both hosts' rollups of the same days, started together into one (fresh)
    PostgreSQL, twice: the summed counts exactly, each host's own source rows, visitors
    exact across hosts and a two-day window's visitors their union, not a sum."""
    root = tmp_path / "logs"
    want = write_logs(root)
    envs = [host_env(lc_env, tmp_path, postgres_url, h) for h in ("web1", "web2")]
    for _run in range(2):
        rollups_together(envs, root)
        for site in SITES:
            for day in DAYS:
                report = top(envs[0], site, day.isoformat())
                assert report["window"]["source"] == "store"
                assert Counter({r["key"]: r["hits"] for r in report["rows"]}) == want[site, day]
                assert report["total"]["hits"] == sum(want[site, day].values())
                assert report["total"]["visitors"] == visitors_of(site, [day])
            window = top(envs[1], site, f"{DAYS[0]}..{DAYS[1]}")
            both = want[site, DAYS[0]] + want[site, DAYS[1]]
            assert Counter({r["key"]: r["hits"] for r in window["rows"]}) == both
            assert window["total"]["visitors"] == visitors_of(site, DAYS)
            assert window["total"]["visitors"] < sum(visitors_of(site, [d]) for d in DAYS)
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        sources = conn.execute(sa.text("SELECT host, path, finished FROM logcount_sources"))
        rows = sorted((host, Path(path).parts[-5]) for host, path, done in sources if done)
    engine.dispose()
    assert rows == [("web1", "web1")] * 2 + [("web2", "web2")] * 2


def test_many_hosts_opening_a_fresh_postgresql_store_at_once(postgres_url: str) -> None:
    """The first rollup of every host after an install, at the same moment: each creates
    the schema if it is missing, and none fails because another created it first."""
    import threading

    from logcount.sinks.store import Store

    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def open_store() -> None:
        start.wait()
        try:
            Store(postgres_url).dispose()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert Store(postgres_url).schema_version() == 1
