"""Interactive commands fail with one line on stderr ("Error: ..."), a non-zero exit code
and never a traceback: bad flags and values, an unreachable Redis, an unreadable config
file, an invalid route, a bad --window. Run as real processes, as a user runs them."""

from __future__ import annotations

import ctypes
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from logcount.cli import cli
from tests.conftest import LOGCOUNT, ROOT, RedisServer, free_port, need

SECRET = "Zq9-s3cr3t-pw"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No LOGCOUNT_* from the caller, a private HOME and data dir, an empty config."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LOGCOUNT_", "XDG_"))}
    config = tmp_path / "logcount.toml"
    config.write_text('site = "test"\n')
    clean.update(
        {
            "HOME": str(tmp_path),
            "LOGCOUNT_DATA_DIR": str(tmp_path / "data"),
            "LOGCOUNT_CONFIG": str(config),
            "PYTHONPATH": str(ROOT),
        }
    )
    return clean


def run(
    args: list[str], env: dict[str, str], preexec: object = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        LOGCOUNT + args,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=preexec,
    )  # type: ignore[arg-type]


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, starts: str) -> str:
    assert "Traceback" not in result.stderr + result.stdout
    assert result.returncode == code, (result.returncode, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith("Error: " + starts), result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
    return result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus", "top"], "No such option '--bogus'. (see 'logcount --help')"),
        (["top", "--bogus"], "No such option '--bogus'. (see 'logcount top --help')"),
        (["top", "--by", "colour"], "Invalid value for '--by' / '-b': 'colour' is not one of"),
        (["top", "--limit", "0"], "Invalid value for '--limit' / '-n': 0 is not in the range"),
        (["frobnicate"], "No such command 'frobnicate'. (see 'logcount --help')"),
        (["config", "check", "--json"], "No such option '--json'. (see 'logcount config check"),
        (["config", "frob"], "No such command 'frob'. (see 'logcount config --help')"),
        (["--redis"], "Option '--redis' requires an argument. (see 'logcount --help')"),
    ],
)
def test_bad_flag(env: dict[str, str], args: list[str], message: str) -> None:
    assert_one_line_error(run(args, env), 2, message)


@pytest.mark.parametrize(
    "command",
    [["top"], ["status"], ["top", "--window", "1h", "--by", "status", "--format", "json"]],
)
def test_unreachable_redis(env: dict[str, str], command: list[str]) -> None:
    port = free_port()  # nothing listens there
    url = f"redis://:{SECRET}@127.0.0.1:{port}/0"
    message = assert_one_line_error(
        run(["--redis", url, *command], env), 69, "cannot reach Redis: "
    )
    assert SECRET not in message
    # Through the environment variable, the same.
    env["LOGCOUNT_REDIS"] = url
    assert_one_line_error(run(command, env), 69, "cannot reach Redis: ")


@pytest.mark.parametrize("command", [["top"], ["status"], ["hits", "/a"]])
def test_refused_credentials(env: dict[str, str], tmp_path: Path, command: list[str]) -> None:
    server = RedisServer(tmp_path, password=SECRET)
    server.start()
    try:
        for url in (
            f"redis://:wrong-{SECRET}@127.0.0.1:{server.port}/0",
            f"redis://127.0.0.1:{server.port}/0",  # none given
        ):
            result = run(["--redis", url, *command], env)
            message = assert_one_line_error(result, 69, "Redis refused the credentials")
            assert message == "Error: Redis refused the credentials\n"
        env["LOGCOUNT_REDIS"] = server.url  # the right one
        assert run(command, env).returncode == 0
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://:{}@127.0.0.1/zero", "database 'zero' is not a number"),
        ("redis://:{}@127.0.0.1/0?pasword=x", "unknown option 'pasword'"),
    ],
)
def test_bad_redis_url(env: dict[str, str], url: str, message: str) -> None:
    result = run(["--redis", url.format(SECRET), "top"], env)
    assert SECRET not in assert_one_line_error(result, 69, f"bad Redis URL: {message}")


def _drop_file_access() -> None:
    """Run as root without the capabilities that bypass file permissions."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            os._exit(99)


def test_unreadable_config_file(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "secret.toml"
    path.write_text(f'redis = "redis://:{SECRET}@127.0.0.1:1/0"\n')
    path.chmod(0)
    preexec = _drop_file_access if os.geteuid() == 0 else None
    result = run(["--config", str(path), "top"], env, preexec)
    need(result.returncode != 99, "cannot drop CAP_DAC_OVERRIDE to make a file unreadable")
    assert_one_line_error(result, 78, f"cannot read config file {path}: Permission denied")
    env["LOGCOUNT_CONFIG"] = str(path)
    result = run(["config", "check"], env, preexec)
    assert_one_line_error(result, 78, f"cannot read config file {path}: Permission denied")
    assert SECRET not in result.stderr
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_missing_or_odd_config_file(env: dict[str, str], tmp_path: Path) -> None:
    assert_one_line_error(
        run(["--config", str(tmp_path / "none.toml"), "top"], env),
        78,
        f"config file {tmp_path / 'none.toml'} not found",
    )
    assert_one_line_error(
        run(["--config", str(tmp_path), "status"], env),
        78,
        f"config file {tmp_path} is not a regular file",
    )
    env["LOGCOUNT_CONFIG"] = str(tmp_path / "gone.toml")
    assert_one_line_error(
        run(["top"], env),
        78,
        f"config file {tmp_path / 'gone.toml'} (from LOGCOUNT_CONFIG) not found",
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("site = [\n")
    assert_one_line_error(
        run(["--config", str(bad), "config", "check"], env), 78, f"config file {bad}: "
    )


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (
            'regex = "^/broken/(?P<id>[0-9]+$"\nobject = "broken"',
            "route #1 (broken): invalid regex '^/broken/(?P<id>[0-9]+$': missing ), unterminated "
            "subpattern at position 9",
        ),
        ('pattern = "/x/<int:id>/"', "route #1: missing 'object', the object type"),
        (
            'pattern = "/x/<num>/"\nobject = "x"',
            "route #1 (x): '/x/<num>/' has no group named 'id'",
        ),
        ('object = "x"', "route #1 (x): give exactly one of 'pattern' or 'regex'"),
    ],
)
@pytest.mark.parametrize("command", [["top"], ["status"], ["config", "check"]])
def test_invalid_route(
    env: dict[str, str], tmp_path: Path, route: str, message: str, command: list[str]
) -> None:
    (tmp_path / "logcount.toml").write_text(f"[[route]]\n{route}\n")
    env["LOGCOUNT_REDIS"] = f"redis://127.0.0.1:{free_port()}/0"  # never reached
    assert_one_line_error(run(command, env), 78, message)


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ("3x", "unknown window '3x' (use 5m, 15m, 1h"),
        ("yesterday-ish", "unknown window 'yesterday-ish'"),
        ("2026-13-45", "'2026-13-45' is not a date (YYYY-MM-DD)"),
        ("", "unknown window ''"),
        # Past the calendar, or longer than the buckets live: one line, at once.
        ("9999-12-31", "window '9999-12-31' reaches past the dates a calendar holds\n"),
        ("99999999d", "window '99999999d' is longer than 3,660 days (ten years)\n"),
        (
            "0001-01-01..9999-12-31",
            "window '0001-01-01..9999-12-31' spans more than 3,660 days (ten years)\n",
        ),
        (
            "9999999h",
            "window '9999999h' reaches back past the hour buckets (192 h, live.ttl.hour): "
            "use days (Nd) or dates\n",
        ),
        ("99999999999999999999m", "window '99999999999999999999m' reaches back past the hour"),
    ],
)
def test_bad_window(env: dict[str, str], window: str, message: str) -> None:
    env["LOGCOUNT_REDIS"] = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    assert_one_line_error(run(["top", "--window", window], env), 2, message)
    assert time.monotonic() - started < 20  # 9999999h took minutes, naming every hour


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "0001-01-01"], "the window holds 7"),
        (["--since", "2020-01-01", "--until", "9999-12-31"], "the window holds 2,9"),
        (["--since", "9999-12-31T23:59:59-14:00"], "'9999-12-31T23:59:59-14:00' is past the dates"),
    ],
)
def test_since_until_bounded(env: dict[str, str], args: list[str], message: str) -> None:
    env["LOGCOUNT_REDIS"] = f"redis://127.0.0.1:{free_port()}/0"
    assert_one_line_error(run(["top", *args], env), 2, message)


def test_cli_runner_sees_the_same_one_line(env: dict[str, str]) -> None:
    """In-process too (how the other tests drive the CLI)."""
    result = CliRunner().invoke(cli, ["top", "--format", "yaml"], env=env)
    assert result.exit_code == 2
    assert result.output.startswith("Error: Invalid value for '--format' / '-f': 'yaml'")
    assert result.output.count("\n") == 1
