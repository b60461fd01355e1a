"""What the commands print is safe to print: no password of a URL, whatever its
characters; nothing a request carried that a terminal would act on (escape sequences,
bidi and other format characters), in tables, CSV and JSON alike; CSV cells a spreadsheet
would run as formulas quoted; redirected output holding the exact values; the server's
own words for a Redis error. Run as real processes (a real pty where a terminal is meant)
against real redis-servers."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import time
import unicodedata
from datetime import date
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner

from logcount.cli import cli
from logcount.read.render import safe_text
from tests.conftest import LOGCOUNT, ROOT, RedisServer, free_port, run_logcount
from tests.test_cli_top import Loaded, at, feed, line

PASSWORD = "Zq9{}s3cr3tpw"  # {}: the character the clients would cut it at


def assert_secret_free(text: str) -> None:
    assert "Zq9" not in text and "s3cr3t" not in text, text


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LOGCOUNT_", "XDG_"))}
    (tmp_path / "logcount.toml").write_text('site = "test"\n')
    clean.update(
        {
            "HOME": str(tmp_path),
            "LOGCOUNT_DATA_DIR": str(tmp_path / "data"),
            "LOGCOUNT_CONFIG": str(tmp_path / "logcount.toml"),
            "PYTHONPATH": str(ROOT),
        }
    )
    return clean


def run(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        LOGCOUNT + args, env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


# --- secrets ---------------------------------------------------------------------------

MISREAD = (
    "Error: redis 'redis://***': its user part would be cut at a '/', '?' or '#' "
    "(percent-encode them in a password: %2F, %3F, %23; an '@' as %40)\n"
)


@pytest.mark.parametrize("cut", ["#", "?", "/"])
def test_a_redis_password_the_clients_would_misread_is_refused_unprinted(
    env: dict[str, str], tmp_path: Path, cut: str
) -> None:
    password = PASSWORD.format(cut)
    url = f"redis://:{password}@127.0.0.1:{free_port()}/0"
    for command in (["config", "check"], ["top"], ["status"], ["hits", "/a"], ["tail", "/x"]):
        result = run(["--redis", url, *command], env)
        assert (result.returncode, result.stdout, result.stderr) == (78, "", MISREAD), command
    piped = run(["--redis", url, "pipe"], env, stdin="not a log line\n")
    assert piped.returncode == 0
    assert_secret_free(piped.stderr)
    assert "fatal: redis 'redis://***': its user part would be cut" in piped.stderr
    # Percent-encoded, the client (redis-py, in pipe and in top) reads the password, and
    # config check shows it masked.
    server = RedisServer(tmp_path, password=password)
    server.start()
    try:
        env["LOGCOUNT_REDIS"] = f"redis://:{quote(password, safe='')}@127.0.0.1:{server.port}/0"
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime())
        piped = run(["pipe"], env, stdin=f'1.2.3.4 - - [{stamp}] "GET /x HTTP/1.1" 200 5 "-" "-"\n')
        assert piped.returncode == 0 and piped.stderr == ""
        top = run(["top", "-w", "5m", "-f", "json"], env)
        assert json.loads(top.stdout)["total"]["hits"] == 1, top.stderr
        check = run(["config", "check"], env)
        assert json.loads(check.stdout)["redis"] == f"redis://:***@127.0.0.1:{server.port}/0"
        assert_secret_free(check.stdout + check.stderr)
    finally:
        server.stop()


def test_a_store_password_is_masked_as_sqlalchemy_reads_it(env: dict[str, str]) -> None:
    # SQLAlchemy's password runs to the first '@': '#', '?' and '/' are its own.
    result = run(
        ["--store", f"postgresql://u:{PASSWORD.format('#/?')}@h/db", "config", "check"], env
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["store"] == "postgresql://u:***@h/db"
    assert_secret_free(result.stdout + result.stderr)
    # A second '@' would put the password's end in the host: refused, unprinted.
    result = run(["--store", f"postgresql://u:{PASSWORD.format('@')}@h/db", "config", "check"], env)
    assert (result.returncode, result.stdout) == (78, "")
    assert result.stderr == (
        "Error: store 'postgresql://***': its host holds an '@' (percent-encode an '@' in a "
        "password as %40)\n"
    )
    # The query's password too; a SQLite path is shown as written.
    url = f"postgresql+psycopg://u@h/db?sslmode=require&password={PASSWORD.format('')}"
    result = run(["--store", url, "config", "check"], env)
    assert json.loads(result.stdout)["store"] == (
        "postgresql+psycopg://u@h/db?sslmode=require&password=***"
    )
    result = run(["--store", "sqlite:////var/lib/a@b.db", "config", "check"], env)
    assert json.loads(result.stdout)["store"] == "sqlite:////var/lib/a@b.db"


def test_a_store_error_never_shows_the_password(env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("")
    url = f"postgresql+psycopg://u:{PASSWORD.format('#')}@127.0.0.1:{free_port()}/db"
    result = run(["--store", url, "rollup", "--logs", str(log), "--date", "2020-01-01"], env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "postgresql+psycopg://u:***@127.0.0.1:" in result.stderr
    assert_secret_free(result.stdout + result.stderr)


# --- Redis errors in the server's words --------------------------------------------------


def _pipe_errors(env: dict[str, str]) -> str:
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime())
    lines = f'1.2.3.4 - - [{stamp}] "GET /x HTTP/1.1" 200 5 "-" "-"\n'.encode()
    result = run_logcount(["pipe"], env, input=lines, timeout=60)
    assert result.returncode == 0
    return result.stderr.decode()


def test_out_of_memory_is_shown_as_redis_says_it(
    lc_env: dict[str, str], redis_server: RedisServer
) -> None:
    redis_server.client().config_set("maxmemory", 1)  # every write is now refused
    errors = _pipe_errors(lc_env)
    assert re.search(
        r"^logcount\[\d+\]: Redis error: OOM command not allowed when used memory > "
        r"'maxmemory'\.; keeping counts",
        errors,
        re.M,
    ), errors
    assert "user_script" not in errors
    # A report ranks in a scratch key: refused the same way, in the same words.
    result = run_logcount(["top", "-w", "2h"], lc_env)
    assert (result.returncode, result.stdout) == (69, b"")
    assert result.stderr == (
        b"Error: cannot read from Redis: OOM command not allowed when used memory > 'maxmemory'.\n"
    )


def test_a_read_only_replica_is_shown_as_redis_says_it(
    lc_env: dict[str, str], redis_server: RedisServer, tmp_path: Path
) -> None:
    (tmp_path / "replica").mkdir()
    replica = RedisServer(tmp_path / "replica")
    replica.start()
    try:
        replica.client().replicaof("127.0.0.1", redis_server.port)
        lc_env["LOGCOUNT_REDIS"] = replica.url
        errors = _pipe_errors(lc_env)
    finally:
        replica.stop()
    assert re.search(
        r"^logcount\[\d+\]: Redis error: READONLY You can't write against a read only "
        r"replica\.; keeping counts",
        errors,
        re.M,
    ), errors
    assert "user_script" not in errors


# --- terminals, files and spreadsheets ---------------------------------------------------

# (as logged, the path counted): control bytes in a path are counted as their escapes
# (logcount.count.paths), C1 and format characters as they are
HOSTILE = {
    "title": ("/t\\x1b]0;owned\\x07x", "/t%1B]0;owned%07x"),
    "clipboard": ("/k\\x1b]52;c;cm0gLXJmIH4=\\x07", "/k%1B]52;c;cm0gLXJmIH4=%07"),
    "clear": ("/\\x1b[2Jclear", "/%1B[2Jclear"),
    "c1": ("/c\\xc2\\x9b31m", "/c\x9b31m"),
    # RLO, ALM (U+061C), word joiner (U+2060), a tag character (U+E0001)
    "format": (
        "/b\\xe2\\x80\\xaeevil\\xd8\\x9c\\xe2\\x81\\xa0\\xf3\\xa0\\x80\\x81z",
        "/b\u202eevil\u061c\u2060\U000e0001z",
    ),
}
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\u061c", "\u2060", "\U000e0001")
DAY = date(2020, 6, 1)


@pytest.fixture
def hostile(tmp_path: Path, redis_server: RedisServer) -> Loaded:
    data = Loaded(tmp_path, redis_server)
    referrers = ["http://=1+2/", "http://-1+1.example/", "http://+x/"]
    feed(
        data.config,
        "".join(line(at(DAY, 10), logged) for logged, _ in HOSTILE.values())
        + "".join(line(at(DAY, 11), "/r", referrer=r) for r in referrers),
    )
    return data


def on_a_terminal(args: list[str]) -> str:
    """Run logcount with its stdout on a real pty; what the terminal received."""
    import pty

    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGCOUNT_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen(
        LOGCOUNT + args, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE
    )
    os.close(slave)
    received = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the process closed its end
                break
            if not chunk:
                break
            received += chunk
    finally:
        os.close(master)
        assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
    return received.decode().replace("\r\n", "\n")  # the pty's own newline translation


def test_csv_and_json_on_a_terminal_are_escaped(hostile: Loaded) -> None:
    for fmt in ("csv", "json"):
        for extra in ([], ["--recent"]):
            text = on_a_terminal(hostile.args("top", "-w", "2020-06-01", "-f", fmt, *extra))
            assert not [c for c in RAW if c in text], (fmt, extra, text)
            if fmt == "json":  # the same values, as JSON escapes
                data = json.loads(text)
                keys = (
                    {r["path"] for r in data["recent"]}
                    if extra
                    else {r["key"] for r in data["rows"]}
                )
                assert {value for _, value in HOSTILE.values()} <= keys
    text = on_a_terminal(hostile.args("top", "-w", "2020-06-01", "-f", "csv"))
    assert "/c\\x9b31m" in text
    assert "/b\\u202eevil\\u061c\\u2060\\U000e0001z" in text
    # A table on a terminal has its own styles, and nothing of the requests'.
    table = on_a_terminal(hostile.args("top", "-w", "2020-06-01"))
    assert "\x1b]" not in table and not [c for c in RAW[1:] if c in table]
    assert "\x1b[2J" not in table and "/%1B[2Jclear" in table and "/c\\x9b31m" in table


def test_redirected_csv_and_json_hold_the_exact_values(hostile: Loaded) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGCOUNT_")}
    env["PYTHONPATH"] = str(ROOT)
    result = run_logcount(hostile.args("top", "-w", "2020-06-01", "-f", "csv"), env)
    text = result.stdout.decode()
    for _, value in HOSTILE.values():
        assert f"{value}," in text  # nothing stripped (click would strip "\x1b[2J")
    result = run_logcount(hostile.args("top", "-w", "2020-06-01", "-f", "json"), env)
    keys = {r["key"] for r in json.loads(result.stdout)["rows"]}
    assert {value for _, value in HOSTILE.values()} <= keys


def test_csv_cells_a_spreadsheet_would_run_are_quoted(hostile: Loaded) -> None:
    result = hostile.run("top", "-w", "2020-06-01", "-f", "csv", "--by", "referrer")
    assert result.output.splitlines()[1:] == [
        "1,(direct),5,0.6250,,0",
        "2,'+x,1,0.1250,,0",
        "3,'-1+1.example,1,0.1250,,0",
        "4,'=1+2,1,0.1250,,0",
    ]


def test_tables_escape_every_format_character(hostile: Loaded) -> None:
    result = hostile.run("top", "-w", "2020-06-01")
    assert not [c for c in RAW if c in result.output]
    assert "/b\\u202eevil\\u061c\\u2060\\U000e0001z" in result.output


def test_every_control_and_format_character_is_escaped() -> None:
    """The escaped set is listed by hand; it must hold every Cc, Cf, Zl, Zp and Cs code
    point of the running Python's Unicode tables, and the whole tag block."""
    missed = [
        f"U+{cp:04X}"
        for cp in range(0x110000)
        if (unicodedata.category(chr(cp)) in ("Cc", "Cf", "Zl", "Zp", "Cs"))
        or 0xE0000 <= cp <= 0xE007F
        if safe_text(chr(cp)) == chr(cp)
    ]
    assert missed == []
    assert safe_text("café ok") == "café ok"


def test_cli_runner_output_is_not_stripped(hostile: Loaded) -> None:
    """In-process (no terminal): CSV keeps the values; click strips nothing."""
    result = CliRunner().invoke(cli, hostile.args("top", "-w", "2020-06-01", "-f", "csv"))
    assert "/%1B[2Jclear," in result.output and "/c\x9b31m," in result.output


@pytest.mark.parametrize(
    ("url", "misread"),
    [
        ("redis://:a#b@h:6379/0", True),
        ("redis://:a?b@h:6379/0", True),
        ("redis://:a/b@h:6379/0", True),
        ("redis://:a@b#c@h:6379/0", True),  # host "b", password "a"
        ("redis://:a@b/c@h/0", True),
        ("unix://:a/b@/run/redis.sock", True),
        ("redis://:a%23b%3Fc%2Fd%40e@h:6379/0", False),
        ("redis://:a@b@h:6379/0", False),  # the last '@' ends the user part, for all
        ("unix:///home/a@b/.local/share/logcount/redis.sock", False),  # a data dir
        ("unix://:pw@/home/a@b/redis.sock", False),
        ("redis://h:6379/0?password=a@b", False),
    ],
)
def test_which_urls_the_clients_would_misread(url: str, misread: bool) -> None:
    import redis.connection

    from logcount.config import mask_url, redis_url_problem
    from logcount.sinks.connection import _where, url_problem

    assert bool(redis_url_problem(url)) == misread
    assert url_problem(url) == redis_url_problem(url)
    if misread:
        assert mask_url(url) == url.partition("://")[0] + "://***"
    else:  # what the messages name is where redis-py connects
        parsed = redis.connection.parse_url(url)
        where = parsed.get("path") or f"{parsed['host']}:{parsed.get('port', 6379)}"
        assert _where(url) == where


def test_status_escapes_what_heartbeats_carry(
    lc_env: dict[str, str], redis_server: RedisServer
) -> None:
    """Any host writing to a shared Redis writes heartbeats: their host, file paths and
    error texts reach `status` escaped, in its table and its JSON."""
    beat = {
        "host": "web\x1b]0;pwned\x07",
        "pid": 4242,
        "mode": "tail",
        "lines": 1,
        "rate": 0.0,
        "malformed": 0,
        "lag": 0,
        "last_flush": time.time(),
        "error": "Redis error: \x1b[2J\u202e",
        "files": [{"path": "/var/log/\x1b[2Ja.log", "offset": 0}],
    }
    redis_server.client().set("lc:reader:web:4242", json.dumps(beat), ex=60)
    table = run_logcount(["status"], lc_env)
    assert table.returncode == 0, table.stderr
    out = table.stdout.decode()
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert "\nweb\\x1b]0;pwned" in out  # the host column is 16 characters
    assert "/var/log/\\x1b[2Ja.log" in out
    assert "Redis error: \\x1b[2J\\u202e" in out
    # Redirected JSON holds the exact values.
    exact = run_logcount(["status", "--format", "json"], lc_env)
    assert json.loads(exact.stdout)[0]["host"] == beat["host"]


def test_status_skips_what_is_not_a_heartbeat(
    lc_env: dict[str, str], redis_server: RedisServer
) -> None:
    """A heartbeat key holding something else (garbage, a list, fields of the wrong type)
    does not hide the real readers behind a traceback."""
    client = redis_server.client()
    client.set("lc:reader:x:1", b"\x00not json", ex=60)
    client.set("lc:reader:x:2", "[1, 2]", ex=60)
    client.set("lc:reader:x:3", json.dumps({"host": ["x"], "pid": "1", "lines": "many"}), ex=60)
    done = run_logcount(["status", "--format", "json"], lc_env)
    assert (done.returncode, done.stderr) == (0, b"")
    beats = json.loads(done.stdout)
    assert [(b["host"], b["pid"], b["lines"]) for b in beats] == [("?", 0, 0)]
    table = run_logcount(["status"], lc_env)
    assert (table.returncode, table.stderr) == (0, b"")
