"""Log formats: nginx presets and `$variable` formats read field by field as apachelogs
reads the equivalent Apache format (written out by hand here), `$request_time` counted by
both scanners, `--log-format auto`, and the loud failures of a wrong format (a mistyped
nickname, a format with nothing to count, a log that is mostly malformed under it)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis

from logcount.count.detect import detect_format, first_lines, malformed_warning
from logcount.count.format_atoms import time_key
from logcount.count.line_counter import LineCounter
from logcount.count.logformat import compile_format
from logcount.count.nginx_format import to_apache, unquote
from logcount.errors import ConfigError
from tests.conftest import LOGCOUNT, run_logcount
from tests.test_cli_errors import assert_one_line_error
from tests.test_logformat import _parser, gen_values, matched_fields, ours, reference, render

# nginx formats and the Apache LogFormat that reads the same fields, written by hand. A
# variable with no Apache twin ($request_time, $upstream_response_time) is a note there:
# apachelogs reads it as a string, checked apart.
MAIN = "nginx"
MAIN_APACHE = '%h - %u %t "%r" %>s %B "%{Referer}i" "%{User-Agent}i" "%{X-Forwarded-For}i"'
COMBINED_APACHE = '%h - %u %t "%r" %>s %B "%{Referer}i" "%{User-Agent}i"'
TIMED = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent" $request_time "$upstream_response_time" $host'
)
TIMED_APACHE = '%h - %u %t "%r" %>s %B "%{Referer}i" "%{User-Agent}i" %{rt}n "%{urt}n" %v'
SPLIT = '${host} $remote_addr [$time_local] "$request_method $request_uri" $status $bytes_sent'
SPLIT_APACHE = '%v %h %t "%m %U%q" %>s %O'
NGINX_FORMATS = [
    (MAIN, MAIN_APACHE),
    ("nginx_combined", COMBINED_APACHE),
    (TIMED, TIMED_APACHE),
    (SPLIT, SPLIT_APACHE),
]
DAY = "2026-03-14"
TIME = "14/Mar/2026:10:{minute:02d}:{second:02d} +0000"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"


def nginx_values(rng: random.Random) -> dict[str, str]:
    """Values of the Apache-equivalent directives, as nginx writes its variables."""
    values = gen_values(rng)
    values["%h"] = rng.choice(["192.0.2.7", "2001:db8::1", "10.0.0.2, 10.0.0.1, 127.0.0.1"])
    values["%{X-Forwarded-For}i"] = rng.choice(["-", "203.0.113.9", "203.0.113.9, 10.0.0.1"])
    seconds = rng.choice([0, 0, 1, 12, 123456789])
    values["%{rt}n"] = f"{seconds}.{rng.randint(0, 999):03d}"
    values["%{urt}n"] = rng.choice(["-", "0.004", "0.001, 0.002", "0.001 : 0.502"])
    return values


def lines_for(apache: str, n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        line = render(apache, nginx_values(rng))
        out.append(line)
        if rng.random() < 0.2:  # a broken one
            out.append(line[: rng.randrange(1, len(line))])
    return out


def millis(raw: str) -> int:
    seconds, _, fraction = raw.partition(".")
    return (int(seconds) * 1000 + int(fraction)) * 1000


@pytest.mark.parametrize(("nginx", "apache"), NGINX_FORMATS)
def test_nginx_format_reads_the_fields_apachelogs_reads(
    nginx: str, apache: str, real_data: Path
) -> None:
    cf = compile_format(nginx)
    lines = lines_for(apache, 500, seed=len(nginx))
    if nginx in (MAIN, "nginx_combined"):
        lines += (real_data / "beats_nginx_test.log").read_bytes().splitlines()
    accepted = 0
    for line in lines:
        expected = reference(apache, line)
        got = matched_fields(cf, line)
        if expected is not None and "%{rt}n" in apache:
            # apachelogs reads the note as any string; logcount as seconds.milliseconds
            note = _parser(apache).parse(line.decode("iso-8859-1")).directives["%{rt}n"]
            expected["duration"] = millis(note.decode())
        if expected is None:
            assert got is None, line
            continue
        accepted += 1
        assert got is not None, line
        mine = ours(cf, {k: v for k, v in got.items() if k != "duration"})
        if "duration" in got:
            mine["duration"] = int(got["duration"].replace(b".", b"")) * int(cf.duration_scale)
        assert mine == expected, line
    assert accepted >= 450  # gen_values writes a few impossible dates


def test_nginx_presets_and_conf_syntax() -> None:
    assert to_apache("nginx") == "nginx"  # a name is not a format: presets are nicknames
    assert compile_format("nginx").log_format == MAIN_APACHE
    assert compile_format("NGINX_combined").log_format == COMBINED_APACHE
    conf = (
        "log_format  main  '$remote_addr - $remote_user [$time_local] \"$request\" '\n"
        "                  '$status $body_bytes_sent \"$http_referer\" '\n"
        '                  \'"$http_user_agent" "$http_x_forwarded_for"\';'
    )
    assert compile_format(conf).log_format == MAIN_APACHE
    assert unquote('\'a\' "b\\"c"') == 'ab"c'
    assert unquote('$remote_addr \\"$request\\"') == '$remote_addr "$request"'
    assert to_apache(SPLIT) == SPLIT_APACHE
    assert to_apache("$msec 100% $http_x_real_ip $sent_http_x") == (
        "%{msec}n 100%% %{x-real-ip}i %{sent_http_x}n"
    )
    # A literal "$" in an Apache format stays Apache's.
    assert compile_format('%h %t "%r" %>s $5').log_format == '%h %t "%r" %>s $5'


def test_request_time_is_counted_by_both_scanners(monkeypatch: pytest.MonkeyPatch) -> None:
    fmt = compile_format(TIMED)
    assert fmt.plan is not None and fmt.millis  # the C scanner takes the format
    times = ["0.000", "0.125", "1.500", "12.001"]
    text = b"".join(
        f'192.0.2.{i % 3} - - [{TIME.format(minute=1, second=i)}] "GET /t/{i % 2} HTTP/1.1" '
        f'200 {i} "-" "{BROWSER}" {times[i % 4]} "-" www.example.com\n'.encode()
        for i in range(40)
    )
    # two decimals, a leading zero, a sign: not nginx's $request_time
    bad = b"".join(
        f'192.0.2.1 - - [{TIME.format(minute=2, second=0)}] "GET / HTTP/1.1" 200 1 "-" "a" '
        f'{t} "-" h\n'.encode()
        for t in ("0.12", "01.000", "-1.000", "1234567890.000", "1.0000")
    )
    expected = {
        b"GET /t/0 HTTP/1.1": 10 * (0 + 1_500_000),
        b"GET /t/1 HTTP/1.1": 10 * (125_000 + 12_001_000),
    }
    natives = []
    for pure in ("", "1"):
        monkeypatch.setenv("LOGCOUNT_PURE_PYTHON", pure)
        counter = LineCounter(fmt)
        natives.append(counter.native)
        counter.feed(text + bad)
        raw = counter.take()
        at = counter.key_layout.index("request")
        per_request: dict[bytes, int] = {}
        for key, us in raw.durations.items():
            per_request[key[at]] = per_request.get(key[at], 0) + us
        assert (raw.lines, raw.malformed) == (40, 5)
        assert per_request == expected
    assert natives[1] is False


@pytest.mark.parametrize(("nginx", "apache"), NGINX_FORMATS[:3])
def test_the_c_scanner_cuts_and_counts_nginx_lines_like_the_regex(
    nginx: str, apache: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The C scanner's plan of an nginx format ($request_time: its MILLIS element) cuts
    every line, mutated ones too, where the regex does, and counts the same."""
    from tests.test_scan import FIELDS, counted, mutations, regex_row, scanner_for

    monkeypatch.delenv("LOGCOUNT_PURE_PYTHON", raising=False)  # C against the regex
    cf, scanner = scanner_for(nginx)
    rng = random.Random(5)
    lines = lines_for(apache, 400, seed=9)
    lines += [m for line in lines for m in mutations(rng, line, 6)]
    accepted = 0
    for line in lines:
        expected = regex_row(cf, line)
        assert scanner.match(line) == expected, line  # type: ignore[attr-defined]
        accepted += expected is not None
    assert accepted > 400
    fast = counted(nginx, lines, False, monkeypatch)
    slow = counted(nginx, lines, True, monkeypatch)
    for name in (*FIELDS, "durations"):
        assert getattr(fast, name) == getattr(slow, name), name
    assert bool(fast.durations) == (nginx == TIMED)


def test_time_iso8601_keeps_its_offset() -> None:
    fmt = compile_format('$remote_addr [$time_iso8601] "$request" $status $body_bytes_sent')
    rng = random.Random(7)
    for _ in range(300):
        when = datetime(
            rng.randint(1999, 2030),
            rng.randint(1, 12),
            rng.randint(1, 28),
            rng.randint(0, 23),
            rng.randint(0, 59),
            rng.randint(0, 59),
            tzinfo=timezone(timedelta(minutes=rng.choice([-1, 1]) * rng.randint(0, 14 * 60))),
        )
        line = f'192.0.2.1 [{when.isoformat()}] "GET /i HTTP/1.1" 200 7'.encode()
        found = matched_fields(fmt, line)
        assert found is not None, line
        minute, offset = time_key(when)
        assert (found["tmin"], found["ttz"], found["bytes"]) == (minute, offset, b"7"), line
    for bad in ("2026-03-14T10:00:00+0100", "2026-03-14T10:00:00+24:00", "2026-02-30T10:00:00Z"):
        assert fmt.match(f'192.0.2.1 [{bad}] "GET / HTTP/1.1" 200 7'.encode()) is None, bad


# --- auto ------------------------------------------------------------------------------


def test_auto_picks_the_preset_of_real_logs(real_data: Path) -> None:
    def detect(name: str) -> str:
        return detect_format((real_data / name).read_bytes(), name)

    assert detect("elastic_apache_logs.log") == "combined"
    assert detect("beats_apache_darwin-2.4.23.log") == "common"
    # X-Forwarded-For lists before nginx's " - ": read whole, not cut by %l %u
    assert detect("beats_nginx_test.log") == "nginx_combined"
    main = b"\n".join(lines_for(MAIN_APACHE, 50, seed=3)) + b"\n"
    assert detect_format(main) == "nginx"


def test_auto_refuses_what_no_preset_reads(real_data: Path) -> None:
    mixed = (real_data / "beats_apache_test.log").read_bytes()
    with pytest.raises(ConfigError) as err:
        detect_format(mixed, "mixed.log")
    message = str(err.value)
    assert message.startswith("--log-format auto: no preset reads more than half of the first")
    assert "mixed.log" in message and "tried combined, vhost_combined, common" in message
    with pytest.raises(ConfigError, match="no line in empty.log"):
        detect_format(b"\n\n", "empty.log")


def test_auto_refuses_two_presets_reading_the_lines_differently() -> None:
    other = '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{X-Other}i"'
    line = f'192.0.2.1 - - [{TIME.format(minute=0, second=0)}] "GET / HTTP/1.1" 200 5 "-" "a"'
    with pytest.raises(ConfigError, match="ambiguous: combined and .* both read 1 of"):
        detect_format(line.encode() + b"\n", candidates=("combined", other))


def test_first_lines_and_the_malformed_warning() -> None:
    assert first_lines(b"a\r\n\nb\nc") == [b"a", b"b"]  # "c" may be cut
    assert first_lines(b"only") == [b"only"]
    good = f'192.0.2.1 - - [{TIME.format(minute=0, second=0)}] "GET / HTTP/1.1" 200 5'.encode()
    assert malformed_warning("common", [good, b"junk"], "x") is None  # half is not more
    warning = malformed_warning("combined", [good, b"junk\x1b[2J"], "f.log")
    assert warning == (
        "f.log: 2 of the first 2 lines are malformed under log format combined (%h %l %u %t "
        '"%r" %>s %b "%{Referer}i" "%{User-Agent}i"); e.g. '
        "'192.0.2.1 - - [14/Mar/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 200 5'; "
        "is --log-format right? (logcount malformed shows the samples kept)"
    )
    assert "junk\\x1b[2J" in (malformed_warning("common", [b"junk\x1b[2J"], "f") or "")


# --- configuration errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("log_format", "message"),
    [
        ("combinedd", "log format 'combinedd' is not a nickname (common, "),
        ("nginx_main", "log format 'nginx_main' is not a nickname"),
        ("%h %l", "log format '%h %l': nothing to count: no time, request, path or status"),
        ("$remote_addr $http_user_agent", "log format '$remote_addr $http_user_agent': nothing"),
    ],
)
@pytest.mark.parametrize("command", [["config", "check"], ["top"], ["rollup", "--logs", "x"]])
def test_a_format_that_counts_nothing_is_a_config_error(
    log_format: str, message: str, command: list[str], lc_env: dict[str, str]
) -> None:
    done = subprocess.run(
        [*LOGCOUNT, "--log-format", log_format, *command],
        env=lc_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    error = assert_one_line_error(done, 78, message)
    if log_format == "combinedd":
        assert error.endswith("did you mean 'combined'?\n")


def test_pipe_with_a_bad_format_drains_and_says_so_once(lc_env: dict[str, str]) -> None:
    lines = b"".join(b"x %d\n" % i for i in range(5000))
    done = run_logcount(["--log-format", "combinedd", "pipe"], lc_env, input=lines)
    assert done.returncode == 0
    err = done.stderr.decode()
    assert err.count("log format 'combinedd' is not a nickname") == 1, err
    assert "draining input until EOF" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:pw@localhost/db", "store 'mysql://u:***@localhost/db': its driver (MySQLdb)"),
        ("nosuchdb://localhost/db", "store 'nosuchdb://localhost/db': SQLAlchemy knows no such"),
    ],
)
@pytest.mark.parametrize("command", [["config", "check"], ["top", "--window", "2020-01-01"]])
def test_a_store_without_its_driver_is_one_line(
    url: str, message: str, command: list[str], lc_env: dict[str, str]
) -> None:
    done = subprocess.run(
        [*LOGCOUNT, "--store", url, *command],
        env=lc_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_one_line_error(done, 78, message)


# --- readers and rollups on real processes ----------------------------------------------


def nginx_log(n: int, timed: bool) -> tuple[bytes, dict[str, Any]]:
    """n lines of nginx's main (or TIMED) format on DAY and what they count: hits, bytes
    and the average time per path."""
    out, hits, sizes, times = [], {}, {}, {}
    for i in range(n):
        path = f"/n/{i % 7}"
        size = 100 + i
        when = TIME.format(minute=i // 60 % 60, second=i % 60)
        client = "10.0.0.2, 10.0.0.1" if i % 5 == 0 else f"192.0.2.{i % 50}"
        head = f'{client} - - [{when}] "GET {path}?i={i} HTTP/1.1" 200 {size} "-" "{BROWSER}"'
        if timed:
            ms = (i % 9) * 125
            line = f'{head} {ms // 1000}.{ms % 1000:03d} "0.001, 0.002" www.example.com'
            times[path] = times.get(path, 0) + ms
        else:
            line = f'{head} "{"-" if i % 2 else "203.0.113.9"}"'
        out.append(line.encode() + b"\n")
        hits[path] = hits.get(path, 0) + 1
        sizes[path] = sizes.get(path, 0) + size
    avg = {p: times[p] / hits[p] for p in times}
    return b"".join(out), {"hits": hits, "bytes": sizes, "avg_ms": avg}


def top_rows(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = run_logcount(["top", "--window", DAY, "--format", "json", *args], env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def wait_hits(env: dict[str, str], site: str, total: int, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    report: dict[str, Any] = {}
    while time.monotonic() < deadline:
        report = top_rows(env, "--site", site)
        if report["total"]["hits"] >= total:
            return report
        time.sleep(0.3)
    return report


@pytest.mark.parametrize(
    ("log_format", "timed", "site"),
    [("nginx", False, "test"), ("auto", False, "test"), (TIMED, True, "www.example.com")],
)
def test_nginx_logs_through_tail_count_exactly(
    log_format: str, timed: bool, site: str, lc_env: dict[str, str], tmp_path: Path
) -> None:
    data, expected = nginx_log(600, timed)
    log = tmp_path / "access.log"
    log.write_bytes(data)
    stderr = open(tmp_path / "tail.stderr", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [*LOGCOUNT, "--log-format", log_format, "tail", "--from-start", str(log)],
        env=lc_env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    try:
        report = wait_hits(lc_env, site, 600)
    finally:
        proc.terminate()
        code = proc.wait(60)
        stderr.close()
    assert code == 0, (tmp_path / "tail.stderr").read_text()
    assert report["total"]["hits"] == 600 and report["total"]["malformed"] == 0
    rows = {r["key"]: r for r in report["rows"]}
    assert {k: r["hits"] for k, r in rows.items()} == expected["hits"]
    assert {k: r["bytes"] for k, r in rows.items()} == expected["bytes"]
    if timed:
        assert {k: r["time_avg_ms"] for k, r in rows.items()} == pytest.approx(expected["avg_ms"])
    else:
        assert all("time_avg_ms" not in r for r in rows.values())


def test_pipe_auto_tells_the_format_from_its_first_lines(lc_env: dict[str, str]) -> None:
    data, expected = nginx_log(25, False)
    done = run_logcount(["--log-format", "auto", "pipe"], lc_env, input=data)
    assert done.returncode == 0, done.stderr
    assert b"--log-format auto: nginx" in done.stderr
    report = top_rows(lc_env)
    assert {r["key"]: r["hits"] for r in report["rows"]} == expected["hits"]
    # fewer lines than it waits for: told from those at EOF
    few = run_logcount(["--log-format", "auto", "pipe"], lc_env, input=data.splitlines(True)[0])
    assert few.returncode == 0 and b"--log-format auto: nginx" in few.stderr
    assert top_rows(lc_env)["total"]["hits"] == 26


def test_auto_that_finds_no_format_is_one_error(lc_env: dict[str, str], tmp_path: Path) -> None:
    junk = b"".join(b"junk %d\n" % i for i in range(3000))
    piped = run_logcount(["--log-format", "auto", "pipe"], lc_env, input=junk)
    assert piped.returncode == 0  # drained: Apache must not respawn it
    err = piped.stderr.decode()
    assert err.count("auto: no preset reads more than half of the first 200 lines of stdin") == 1
    assert "first line: 'junk 0'" in err and "draining input until EOF" in err
    log = tmp_path / "junk.log"
    log.write_bytes(junk)
    done = subprocess.run(
        [*LOGCOUNT, "--log-format", "auto", "tail", str(log)],
        env=lc_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_one_line_error(done, 78, "--log-format auto: no preset reads more than half of")
    assert f"the first 200 lines of {log} (tried combined," in done.stderr


def common_log(n: int) -> bytes:
    return b"".join(
        f"192.0.2.{i % 9} - - [{TIME.format(minute=i // 60 % 60, second=i % 60)}] "
        f'"GET /c/{i % 3} HTTP/1.1" 200 {i}\n'.encode()
        for i in range(n)
    )


def test_common_log_under_combined_is_loud_in_pipe_status_and_malformed(
    lc_env: dict[str, str], redis_client: redis.Redis
) -> None:
    done = run_logcount(["pipe"], lc_env, input=common_log(1500))
    assert done.returncode == 0
    err = done.stderr.decode()
    assert err.count("malformed under log format combined") == 1, err
    assert "warning: pipe input: 1,000 of the first 1,000 lines are malformed" in err
    assert "e.g. '192.0.2.0 - - [14/Mar/2026:10:00:00 +0000] \"GET /c/0 HTTP/1.1\" 200 0'" in err
    status = run_logcount(["status", "--format", "json"], lc_env)
    (reader,) = json.loads(status.stdout)
    assert (reader["lines"], reader["malformed"], reader["malformed_share"]) == (0, 1500, 1.0)
    assert reader["log_format"] == "combined"
    table = run_logcount(["status"], lc_env).stdout.decode()
    assert "1,500 (100.0%)" in table
    shown = run_logcount(["malformed"], lc_env)
    assert shown.returncode == 0
    kept = shown.stdout.decode().splitlines()
    assert len(kept) == 20
    assert kept[0] == '192.0.2.5 - - [14/Mar/2026:10:24:59 +0000] "GET /c/2 HTTP/1.1" 200 1499'
    as_json = json.loads(run_logcount(["malformed", "--format", "json"], lc_env).stdout)
    assert as_json == {"site": "test", "lines": kept}
    other = run_logcount(["malformed", "--site", "other"], lc_env)
    assert other.stdout == b"no malformed lines kept for site other\n"


def test_rollup_of_a_common_log_under_combined_fails_loudly(
    lc_env: dict[str, str], tmp_path: Path, real_data: Path
) -> None:
    common = tmp_path / "common.log"
    common.write_bytes(common_log(1200))
    env = {**lc_env, "LOGCOUNT_STORE": f"sqlite:///{tmp_path / 'store.db'}"}
    real = str(real_data / "elastic_apache_logs.log")
    done = run_logcount(["rollup", "--logs", str(common), "--logs", real], env)
    err = done.stderr.decode()
    assert done.returncode == 1, err
    assert err.count("warning:") == 1
    assert f"warning: {common}: 1,000 of the first 1,000 lines are malformed" in err
    assert f"error: {common}: all its 1,200 lines are malformed under log format combined" in err
    assert err.endswith(
        "Error: rollup incomplete: 2 file(s) stored, 0 missing, 0 unreadable, "
        "1 entirely malformed\n"
    )
    # auto: each file its own format, both read
    again = run_logcount(
        ["--log-format", "auto", "rollup", "--logs", str(common), "--logs", real], env
    )
    assert again.returncode == 0, again.stderr
    assert again.stderr == b""
    report = json.loads(
        run_logcount(["top", "--window", DAY, "--format", "json", "--by", "path"], env).stdout
    )
    assert report["total"]["hits"] == 1200


def test_auto_in_rollup_names_a_file_no_preset_reads(
    lc_env: dict[str, str], tmp_path: Path
) -> None:
    junk = tmp_path / "junk.log"
    junk.write_bytes(b"not a log line\n" * 10)
    env = {**lc_env, "LOGCOUNT_STORE": f"sqlite:///{tmp_path / 'store.db'}"}
    done = run_logcount(["--log-format", "auto", "rollup", "--logs", str(junk)], env)
    err = done.stderr.decode()
    assert done.returncode == 1
    assert f"error: cannot read {junk}: --log-format auto: no preset reads more than half" in err
    assert os.path.exists(tmp_path / "store.db")
