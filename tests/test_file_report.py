"""`logcount report FILE...`: a one-shot report of files, with no Redis and no store.

Known lines written here give exact counts; the real logs give the same numbers as
`rollup` + `top` over their days (a real Redis for `top`, a real SQLite store)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from logcount.dimensions import DIMENSION_NAMES
from tests.conftest import logcount_env, run_logcount

NO_REDIS = "redis://127.0.0.1:1/0"  # nothing listens there: the report must not need it
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def line(client: str, when: str, request: str, status: int, size: int, agent: str) -> str:
    return f'{client} - - [{when} +0000] "{request}" {status} {size} "-" "{agent}"\n'


# 9 lines: 6 hits of people over two days, 2 of a bot, 1 malformed
KNOWN = "".join(
    [
        line("10.0.0.1", "17/May/2015:10:05:01", "GET /a HTTP/1.1", 200, 100, CHROME),
        line("10.0.0.1", "17/May/2015:10:06:01", "GET /a HTTP/1.1", 200, 100, CHROME),
        line("10.0.0.2", "17/May/2015:11:00:00", "GET /missing HTTP/1.1", 404, 10, CHROME),
        line("10.0.0.3", "18/May/2015:09:00:00", "GET /a?x=1 HTTP/1.1", 200, 100, CHROME),
        line("10.0.0.3", "18/May/2015:09:01:00", "POST /form HTTP/1.1", 500, 20, CHROME),
        line("10.0.0.4", "18/May/2015:23:59:00", "USER anonymous", 400, 0, CHROME),
        line("66.249.66.1", "17/May/2015:12:00:00", "GET /a HTTP/1.1", 200, 100, GOOGLEBOT),
        line("66.249.66.1", "18/May/2015:12:00:00", "GET /b HTTP/1.1", 200, 100, GOOGLEBOT),
        "this is not a log line\n",
    ]
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = logcount_env()
    env.update(
        {
            "LOGCOUNT_REDIS": NO_REDIS,
            "LOGCOUNT_DATA_DIR": str(tmp_path / "data"),
            "LOGCOUNT_CONFIG": str(tmp_path / "logcount.toml"),
        }
    )
    (tmp_path / "logcount.toml").write_text('site = "test"\n')
    return env


def report(env: dict[str, str], *args: str, input: bytes | None = None) -> dict:
    done = run_logcount(["report", *args, "--format", "json"], env, input=input)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def test_known_lines_exact_json(tmp_path: Path, env: dict[str, str]) -> None:
    log = tmp_path / "access.log"
    log.write_text(KNOWN)
    got = report(env, str(log), "--limit", "2")
    assert got["files"] == [str(log)]
    assert got["lines"] == 9
    assert (got["first"], got["last"]) == ("2015-05-17T10:05+00:00", "2015-05-18T23:59+00:00")
    assert got["total"] == {
        "hits": 6,
        "bytes": 330,
        "visitors": 4,
        "bots": 2,
        "malformed": 1,
        "s1xx": 0,
        "s2xx": 3,
        "s3xx": 0,
        "s4xx": 2,
        "s5xx": 1,
    }
    assert got["days"] == [
        {"day": "2015-05-17", "hits": 3, "visitors": 2},
        {"day": "2015-05-18", "hits": 3, "visitors": 2},
    ]
    top = got["top"]
    assert set(top) == {*DIMENSION_NAMES, "path@404", "path@5xx"}
    assert top["path"] == [
        {"key": "/a", "hits": 3, "bytes": 300, "visitors": 2},
        {"key": "(not http)", "hits": 1, "bytes": 0, "visitors": 1},
    ]
    assert top["status"][0] == {"key": "200", "hits": 3, "bytes": 300, "visitors": None}
    assert top["bot"] == [{"key": "Googlebot", "hits": 2, "bytes": 0, "visitors": None}]
    assert top["path@404"] == [{"key": "/missing", "hits": 1, "bytes": 10, "visitors": None}]
    assert top["path@5xx"] == [{"key": "/form", "hits": 1, "bytes": 20, "visitors": None}]
    assert top["method"] == [
        {"key": "GET", "hits": 4, "bytes": 310, "visitors": None},
        {"key": "(other)", "hits": 1, "bytes": 0, "visitors": None},
    ]
    assert got["sites"] == [{"site": "test", "hits": 6}]


def test_stdin_compressed_and_several_files_add_up(tmp_path: Path, env: dict[str, str]) -> None:
    plain = tmp_path / "access.log"
    plain.write_text(KNOWN)
    packed = tmp_path / "access.log.1.gz"
    packed.write_bytes(gzip.compress(KNOWN.encode()))
    got = report(env, str(plain), str(packed), "-", input=KNOWN.encode())
    assert got["files"] == [str(plain), str(packed), "-"]
    assert got["lines"] == 27
    assert (got["total"]["hits"], got["total"]["bots"], got["total"]["malformed"]) == (18, 6, 3)
    assert got["total"]["visitors"] == 4  # the same visitors in each
    # distinct visitors per day over the files, added up over the days
    assert got["top"]["path"][0] == {"key": "/a", "hits": 9, "bytes": 900, "visitors": 2}


def test_members_bounded_by_max_members(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "logcount.toml").write_text('site = "test"\n[live]\nmax_members = 5\n')
    lines = [
        line("10.0.0.1", "17/May/2015:10:05:01", f"GET /p{i:02d} HTTP/1.1", 200, 1, CHROME)
        for i in range(40)
        for _ in range(1 + (i < 3))  # /p00../p02 twice
    ]
    log = tmp_path / "flood.log"
    log.write_text("".join(lines))
    got = report(env, str(log), "--limit", "100")
    rows = got["top"]["path"]
    assert got["total"]["hits"] == 43
    assert len(rows) == 6  # 5 members kept, then (other)
    assert [r["key"] for r in rows] == ["(other)", "/p00", "/p01", "/p02", "/p03", "/p04"]
    assert {r["key"]: r["hits"] for r in rows}["(other)"] == 43 - 6 - 2
    assert sum(r["hits"] for r in rows) == 43


def test_table_and_csv(tmp_path: Path, env: dict[str, str]) -> None:
    log = tmp_path / "access.log"
    log.write_text(KNOWN)
    done = run_logcount(["report", str(log), "--limit", "1"], env)
    assert done.returncode == 0, done.stderr.decode()
    text = done.stdout.decode()
    assert text.startswith(f"1 file(s): {log}\nlines 9  2015-05-17 10:05 .. 2015-05-18 23:59\n")
    assert "hits 6  visitors 4  bytes 330 B  bots 2  malformed 1\n" in text
    assert "bots apart" in text  # the legend says what hits and bots are
    assert "2015-05-17     3         2" in text
    assert "1  /a       3  50.0%         2  300 B\n" in text
    assert "1  Googlebot     2  100.0%         -    0 B\n" in text  # a share of the bots
    assert "paths not found (404)" in text and "/missing" in text
    done = run_logcount(["report", str(log), "--limit", "1", "--format", "csv"], env)
    rows = done.stdout.decode().splitlines()
    assert rows[:4] == [
        "section,rank,key,hits,share,visitors,bytes,avg_ms",
        "total,,,6,1.0000,4,330,",
        "day,1,2015-05-17,3,0.5000,2,,",
        "day,2,2015-05-18,3,0.5000,2,,",
    ]
    assert "path,1,/a,3,0.5000,2,300," in rows
    assert "path@5xx,1,/form,1,0.1667,,20," in rows


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/access.log"], "Error: cannot read /nonexistent/access.log: no such file"),
        (["/"], "Error: cannot read /: a directory"),
        (["-", "-"], "Error: '-' (standard input) given twice"),
    ],
)
def test_bad_files_are_one_line(env: dict[str, str], args: list[str], message: str) -> None:
    done = run_logcount(["report", *args], env, input=b"")
    assert done.returncode == 1
    assert done.stderr.decode() == message + "\n"
    assert done.stdout == b""


def test_a_broken_compressed_file_is_one_line(tmp_path: Path, env: dict[str, str]) -> None:
    bad = tmp_path / "access.log.gz"
    bad.write_bytes(gzip.compress(KNOWN.encode())[:40])
    done = run_logcount(["report", str(bad)], env)
    assert done.returncode == 1
    err = done.stderr.decode()
    assert err.startswith(f"Error: cannot read {bad}: ") and err.count("\n") == 1


def test_agrees_with_rollup_and_top_on_real_logs(
    tmp_path: Path, lc_env: dict[str, str], real_data: Path
) -> None:
    """The same files through `rollup` into a store, then `top` over their days."""
    (tmp_path / "logcount.toml").write_text('site = "test"\n[privacy]\nstore_clients = true\n')
    # Two servers' logs of the same days: the real log, and it again compressed
    real = (real_data / "elastic_apache_logs.log").read_bytes()
    (tmp_path / "web1.log").write_bytes(real)
    (tmp_path / "web2.log.gz").write_bytes(gzip.compress(real))
    files = [str(tmp_path / "web1.log"), str(tmp_path / "web2.log.gz")]
    got = report(lc_env, *files, "--limit", "10000")
    done = run_logcount(["rollup", "--quiet", *[a for f in files for a in ("--logs", f)]], lc_env)
    assert done.returncode == 0, done.stderr.decode()
    days = [d["day"] for d in got["days"]]
    window = f"{days[0]}..{days[-1]}"
    assert days == ["2015-05-17", "2015-05-18", "2015-05-19", "2015-05-20"]
    for by in (*DIMENSION_NAMES, "path@404", "path@5xx"):
        dim, _, status = by.partition("@")
        extra = ["--status", status] if status else []
        args = ["top", "--window", window, "--by", dim, *extra, "--limit", "10000"]
        done = run_logcount([*args, "--format", "json"], lc_env)
        assert done.returncode == 0, done.stderr.decode()
        top = json.loads(done.stdout)
        assert top["total"] == got["total"], by
        assert top["rows"] == got["top"][by], by
    assert got["lines"] == 20_000
    assert top["window"]["source"] == "store"


def test_sites_and_one_site(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "logcount.toml").write_text('site = "test"\nlog_format = "vhost_combined"\n')
    lines = [
        f"{site}:80 "
        + line("10.0.0.1", "17/May/2015:10:05:01", f"GET /{site} HTTP/1.1", 200, 5, CHROME)
        for site in ("a.example", "a.example", "b.example")
    ]
    log = tmp_path / "vhosts.log"
    log.write_text("".join(lines))
    got = report(env, str(log))
    assert got["sites"] == [{"site": "a.example", "hits": 2}, {"site": "b.example", "hits": 1}]
    assert got["total"]["hits"] == 3
    assert [r["key"] for r in got["top"]["path"]] == ["/a.example", "/b.example"]
    one = report(env, str(log), "--site", "b.example")
    assert one["total"]["hits"] == 1 and one["total"]["bytes"] == 5
    assert one["top"]["path"] == [{"key": "/b.example", "hits": 1, "bytes": 5, "visitors": 1}]
    assert one["days"] == [{"day": "2015-05-17", "hits": 1, "visitors": 1}]


def test_response_times(tmp_path: Path, env: dict[str, str]) -> None:
    fmt = '%h %l %u %t \\"%r\\" %>s %b %D'
    (tmp_path / "logcount.toml").write_text(f'site = "test"\nlog_format = "{fmt}"\n')
    log = tmp_path / "timed.log"
    log.write_text(
        '10.0.0.1 - - [17/May/2015:10:05:01 +0000] "GET /t HTTP/1.1" 200 5 1000\n'
        '10.0.0.1 - - [17/May/2015:10:05:02 +0000] "GET /t HTTP/1.1" 200 5 3000\n'
    )
    got = report(env, str(log))
    assert got["top"]["path"] == [
        {"key": "/t", "hits": 2, "bytes": 10, "visitors": 1, "time_avg_ms": 2.0}
    ]
    assert {"time_p50_ms", "time_p95_ms", "time_p99_ms"} <= set(got["total"])


def test_progress_bar_on_a_terminal_only(tmp_path: Path, env: dict[str, str]) -> None:
    from tests.test_rollup import run_on_terminal

    logs = []
    for name in ("a.log", "b.log"):
        logs.append(str(tmp_path / name))
        (tmp_path / name).write_text(KNOWN)
    code, out = run_on_terminal(["report", *logs, "--format", "json"], env)
    assert code == 0, out
    assert "report" in out and "2/2" in out and "lines/s" in out  # files done, lines, rate
    code, out = run_on_terminal(["report", *logs, "--format", "json", "--quiet"], env)
    assert code == 0 and "lines/s" not in out and '"lines": 18' in out


def test_no_data_directory_needed(tmp_path: Path, env: dict[str, str]) -> None:
    log = tmp_path / "access.log"
    log.write_text(KNOWN)
    (tmp_path / "file").write_text("")  # a data directory that cannot be made
    env = {**env, "LOGCOUNT_DATA_DIR": str(tmp_path / "file" / "data")}
    got = report(env, str(log))
    assert (got["total"]["hits"], got["total"]["visitors"]) == (6, 4)
    assert not (tmp_path / "file" / "data").exists()


def nginx_main(client: str, when: str, request: str, status: int, size: int) -> str:
    """A line of nginx's stock `main` format (combined, then X-Forwarded-For)."""
    return f'{client} - - [{when} +0000] "{request}" {status} {size} "-" "{CHROME}" "-"\n'


NGINX_LINES = "".join(
    nginx_main("10.0.0.9", f"17/May/2015:10:{m:02d}:00", f"GET /n{m % 3} HTTP/1.1", 200, 7)
    for m in range(30)
)


@pytest.mark.parametrize("stdin", [False, True])
def test_report_tells_the_format_of_its_input(
    tmp_path: Path, env: dict[str, str], stdin: bool
) -> None:
    """No --log-format: the report reads nginx's main format (malformed under combined)
    from a file and from standard input, whose first lines it read to tell it."""
    log = tmp_path / "nginx.log"
    log.write_text(NGINX_LINES)
    args, given = (["-"], NGINX_LINES.encode()) if stdin else ([str(log)], None)
    got = report(env, *args, input=given)
    assert got["total"]["hits"] == 30
    assert got["total"]["malformed"] == 0
    assert {r["key"]: r["hits"] for r in got["top"]["path"]} == {"/n0": 10, "/n1": 10, "/n2": 10}
    done = run_logcount(["--log-format", "combined", "report", str(log)], env)
    assert done.returncode == 0
    assert "30 of the first 30 lines are malformed" in done.stderr.decode()


def test_report_keeps_the_format_of_the_config_file(tmp_path: Path, env: dict[str, str]) -> None:
    """A format in the config file is the report's too: auto only when none is given."""
    (tmp_path / "logcount.toml").write_text('site = "test"\nlog_format = "common"\n')
    log = tmp_path / "access.log"
    log.write_text(KNOWN)  # combined lines, read as common: the agent is left over
    done = run_logcount(["report", str(log), "--format", "json"], env)
    got = json.loads(done.stdout)
    assert got["total"]["hits"] == 0
    assert got["total"]["malformed"] == 9
