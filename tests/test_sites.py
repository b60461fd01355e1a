"""`logcount sites`, and `top` on a vhost log read without `--site`: a real Redis (the
lines piped through `logcount pipe`), a real SQLite store (a past day rolled up)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from tests.conftest import run_logcount

CONFIG = 'site = "test"\nlog_format = "vhost_combined"\ntimezone = "UTC"\n'
AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"


def vhost_line(site: str, when: datetime, path: str) -> str:
    stamp = when.strftime("%d/%b/%Y:%H:%M:%S +0000")
    return f'{site}:80 10.0.0.1 - - [{stamp}] "GET {path} HTTP/1.1" 200 10 "-" "{AGENT}"\n'


def load(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "logcount.toml").write_text(CONFIG)
    now = datetime.now(UTC)
    live = [vhost_line("a.example", now, f"/a{i}") for i in range(3)]
    live.append(vhost_line("b.example", now, "/b"))
    done = run_logcount(["pipe"], env, input="".join(live).encode())
    assert done.returncode == 0, done.stderr.decode()
    old = tmp_path / "old.log"
    old.write_text(
        "".join(
            vhost_line(site, datetime(2026, 11, d, 12, tzinfo=UTC), "/")
            for site, d in (("a.example", 20), ("c.example", 20), ("c.example", 21))
        )
    )
    done = run_logcount(["rollup", "--quiet", "--logs", str(old)], env)
    assert done.returncode == 0, done.stderr.decode()


def test_sites_lists_live_and_stored_sites(tmp_path: Path, lc_env: dict[str, str]) -> None:
    load(tmp_path, lc_env)
    done = run_logcount(["sites", "--format", "json"], lc_env)
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout) == {
        "sites": [
            {
                "site": "a.example",
                "today": 3,
                "live": True,
                "stored_days": 1,
                "first_day": "2026-11-20",
                "last_day": "2026-11-20",
            },
            {
                "site": "b.example",
                "today": 1,
                "live": True,
                "stored_days": 0,
                "first_day": None,
                "last_day": None,
            },
            {
                "site": "c.example",
                "today": 0,
                "live": False,
                "stored_days": 2,
                "first_day": "2026-11-20",
                "last_day": "2026-11-21",
            },
        ]
    }
    table = run_logcount(["sites"], lc_env).stdout.decode()
    assert "a.example      3  yes             1  2026-11-20 .. 2026-11-20\n" in table
    assert "c.example      0  no              2  2026-11-20 .. 2026-11-21\n" in table
    csv = run_logcount(["sites", "--format", "csv"], lc_env).stdout.decode().splitlines()
    assert csv[:2] == [
        "site,today,live,stored_days,first_day,last_day",
        "a.example,3,True,1,2026-11-20,2026-11-20",
    ]


def test_top_without_site_names_the_sites_with_hits(tmp_path: Path, lc_env: dict[str, str]) -> None:
    load(tmp_path, lc_env)
    done = run_logcount(["top"], lc_env)
    assert done.returncode == 0, done.stderr.decode()
    assert (
        "(no hits for site test in this window; sites with hits: a.example (3 hits), "
        "b.example (1 hits); choose one with --site)"
    ) in done.stdout.decode().replace("\n", " ")
    done = run_logcount(["top", "--window", "2026-11-20..2026-11-21", "--format", "json"], lc_env)
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["rows"] == []
    assert done.stderr.decode() == (
        "(no hits for site test in this window; sites with hits: c.example (2 hits), "
        "a.example (1 hits); choose one with --site)\n"
    )
    # with --site, or for a site with hits, nothing more is said
    done = run_logcount(["top", "--site", "zzz", "--format", "json"], lc_env)
    assert done.stderr == b"" and json.loads(done.stdout)["rows"] == []
    done = run_logcount(["top", "--site", "a.example"], lc_env)
    assert "sites with hits" not in done.stdout.decode() and "/a0" in done.stdout.decode()
