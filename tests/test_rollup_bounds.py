"""`logcount rollup` against hostile input and a hostile machine: lines whose numbers or
dates no store can hold, a store removed under a running rollup, and a day of more
distinct URLs than the store keeps (folded into "(other)", totals exact). Through the
real command, with both scanners."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_logcount
from tests.test_rollup import BROWSERS, CONFIG, rollup_held_at_a_fifo, store_of
from tests.test_rollup import store_env as store_env  # the fixture: SQLite and PostgreSQL

DAY = date(2026, 3, 27)


def line(path: str, size: str = "5", when: str = "27/Mar/2026:10:00:00 +0000") -> str:
    return f'10.0.0.1 - - [{when}] "GET {path} HTTP/1.1" 200 {size} "-" "{BROWSERS[0]}"\n'


def top(env: dict[str, str], by: str, *more: str) -> dict[str, Any]:
    args = ["top", "--window", DAY.isoformat(), "--by", by, "--format", "json", *more]
    done = run_logcount(args, env)
    assert done.returncode == 0, done.stderr.decode()
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.mark.parametrize("scanner", ["c", "pure"])
@pytest.mark.parametrize("zone", ["", "America/New_York"])
def test_numbers_and_dates_no_store_holds_make_their_line_malformed(
    lc_env: dict[str, str], tmp_path: Path, scanner: str, zone: str
) -> None:
    """A %b of 2^63 and more, one of 2^53 (past what stores and JSON hold exactly), a year
    0001, the last second of year 9999 at -2359 (past 9999 once converted to a configured
    zone): each line
    malformed, the rest of the file counted exactly, the exit as for any malformed line."""
    env = dict(lc_env, LOGCOUNT_PURE_PYTHON="1") if scanner == "pure" else lc_env
    (tmp_path / "logcount.toml").write_text(
        'site = "test"\n' + (f'timezone = "{zone}"\n' if zone else "")
    )
    log = tmp_path / "hostile.log"
    log.write_text(
        line("/a")
        + line("/huge", "99999999999999999999")
        + line("/big", str(1 << 53))
        + line("/old", when="27/Mar/0001:10:00:00 +0000")
        + line("/last", when="31/Dec/9999:23:59:59 -2359")
        + line("/order/12345678901234567890", "9007199254740991")  # long, yet a hit
        + line("/b", "7")
    )
    done = run_logcount(["rollup", "--logs", str(log)], env)
    assert done.returncode == 0, done.stderr.decode()
    # more than half of its first lines malformed: said once (count.detect), not an error
    warned = f"warning: {log}: 4 of the first 7 lines are malformed under log format combined"
    assert done.stderr.decode().startswith(warned)
    assert done.stderr.count(b"\n") == 1
    source = store_of(env).source_rows()[0]
    bad = 4  # years 1001-9998 only, zone or not: what live counting takes too (parse.py)
    assert (source["lines"], source["malformed"]) == (7, bad)
    report = top(env, "path")
    assert report["total"] == {
        "hits": 3,
        "bytes": 5 + 9007199254740991 + 7,
        "visitors": 1,
        "bots": 0,
        "malformed": bad,
        **{"s1xx": 0, "s2xx": 3, "s3xx": 0, "s4xx": 0, "s5xx": 0},
    }
    assert sorted((r["key"], r["hits"]) for r in report["rows"]) == [
        ("/a", 1),
        ("/b", 1),
        ("/order/12345678901234567890", 1),
    ]


def test_sums_past_bigint_are_saturated_not_a_crash(
    store_env: dict[str, str], tmp_path: Path
) -> None:
    """Each %b below 2^53, 1,100 of them past 2^63 in sum: stored as the largest BIGINT."""
    log = tmp_path / "sums.log"
    log.write_text(line("/a", str((1 << 53) - 1)) * 1100)
    done = run_logcount(["rollup", "--logs", str(log)], store_env)
    assert done.returncode == 0, done.stderr.decode()
    report = top(store_env, "path")
    assert report["total"]["hits"] == 1100
    assert report["total"]["bytes"] == (1 << 63) - 1
    assert [(r["key"], r["bytes"]) for r in report["rows"]] == [("/a", (1 << 63) - 1)]


def test_the_store_removed_during_a_rollup_is_an_error(
    lc_env: dict[str, str], tmp_path: Path
) -> None:
    """The SQLite file removed while the last file is read: the rollup must not write into
    the removed file and report success; one line, a non-zero exit."""
    (tmp_path / "logcount.toml").write_text(CONFIG)
    db = Path(lc_env["LOGCOUNT_DATA_DIR"]) / "logcount.sqlite3"
    with rollup_held_at_a_fifo(lc_env, tmp_path, 23) as (proc, _pipe, _expected, store):
        store.dispose()
        for name in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            name.unlink(missing_ok=True)
    _out, err = proc.communicate(timeout=60)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 69, err.decode()
    assert lines == [
        f"Error: the store sqlite:///{db} was removed or replaced while this command was "
        "writing it: nothing more written; run it again"
    ]


def busy_day(path: Path, distinct: str, n: int) -> None:
    """60 popular paths (/top/00 with 70 hits down to /top/59 with 11, one visitor each)
    and `n` paths seen once each, with a referrer host and a visitor of their own."""
    with open(path, "w") as f:
        for k in range(60):
            f.write(line(f"/top/{k:02d}").replace("10.0.0.1", f"10.1.0.{k}") * (70 - k))
        for i in range(n):
            f.write(
                line(f"/{distinct}/{i}")
                .replace("10.0.0.1", f"10.2.{i >> 8}.{i & 255}")
                .replace('"-"', f'"http://ref{i}.{distinct}.example/"')
            )


def test_a_day_of_more_urls_than_the_cap_keeps_the_most_hit_and_folds_the_rest(
    store_env: dict[str, str], tmp_path: Path
) -> None:
    """[rollup] max_members = 50: each source keeps its 50 most hit paths and referrers of
    the day, the rest is one "(other)" row; two hosts' files add up, a file rolled up
    again replaces its own rows, and every dimension adds up to the day's hits."""
    # A fixed visitor key: the sketch's estimate depends on the hashes (the bound below
    # is checked for this key, not left to a random one per run).
    (tmp_path / "logcount.toml").write_text(
        'site = "test"\n[rollup]\nmax_members = 50\n[privacy]\nsecret = "fixed-key-for-tests"\n'
    )
    web1, web2 = tmp_path / "web1.log", tmp_path / "web2.log"
    busy_day(web1, "u", 3000)
    busy_day(web2, "v", 2000)
    for log, host in ((web1, "web1"), (web2, "web2"), (web1, "web1")):
        done = run_logcount(["rollup", "--logs", str(log), "--host", host], store_env)
        assert (done.returncode, done.stderr) == (0, b""), done.stderr.decode()
    popular = sum(range(11, 71))  # hits of the 60 popular paths in one file
    hits = 2 * popular + 3000 + 2000
    report = top(store_env, "path", "--limit", "1000")
    assert report["total"]["hits"] == hits
    # web2's visitors are web1's first 2,000: 3,060 in all, counted by a sketch (~3 %)
    assert abs(report["total"]["visitors"] - 3060) < 0.05 * 3060
    rows = {r["key"]: r for r in report["rows"]}
    kept = {f"/top/{k:02d}": 2 * (70 - k) for k in range(50)}
    assert {k: r["hits"] for k, r in rows.items() if k != "(other)"} == kept
    assert all(rows[k]["visitors"] == 1 for k in kept)  # one visitor, seen by both hosts
    assert rows["(other)"]["hits"] == 2 * sum(range(11, 21)) + 3000 + 2000
    assert sum(r["hits"] for r in rows.values()) == hits
    referrers = top(store_env, "referrer", "--limit", "1000")
    assert referrers["total"]["hits"] == hits
    assert sum(r["hits"] for r in referrers["rows"]) == hits
    assert len(referrers["rows"]) <= 2 * 50 + 1  # each host's 50, one "(other)" row
    assert "(other)" in {r["key"] for r in referrers["rows"]}
    store = store_of(store_env)
    for table in ("logcount_day_paths", "logcount_day_members"):
        with store.engine.connect() as conn:
            per_source = conn.exec_driver_sql(
                f"SELECT source_id, count(*) FROM {table} GROUP BY source_id"
            ).all()
        assert len(per_source) == 2
        limit = 51 if table == "logcount_day_paths" else 3 * 51  # status, referrer, agent
        assert all(n <= limit for _source, n in per_source), per_source


def test_members_longer_than_a_column_never_stop_the_rollup(
    store_env: dict[str, str], tmp_path: Path
) -> None:
    """A referrer host of 3,000 characters (PostgreSQL's VARCHAR(1024) refused it and the
    run stopped): past a DNS name's 253 bytes the classifier counts it as "(invalid)";
    the two lines are one row and the rollup goes on. (The store also cuts any member
    to its column, a second line of defence this input no longer reaches.)"""
    host = "a" * 3000
    log = tmp_path / "long.log"
    log.write_text(
        line("/a").replace('"-"', f'"http://{host}1.example/"')
        + line("/a").replace('"-"', f'"http://{host}2.example/"')
    )
    done = run_logcount(["rollup", "--logs", str(log)], store_env)
    assert (done.returncode, done.stderr) == (0, b""), done.stderr.decode()
    rows = top(store_env, "referrer")["rows"]
    assert [(r["key"], r["hits"]) for r in rows] == [("(invalid)", 2)]
