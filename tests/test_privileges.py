"""Root against a data directory another user owns, as the README sets it up for Apache
(`install -d -o www-data /var/lib/logcount`): what that user plants there must never
reach a root-only file, files are private, and visitor hashes are keyed.

These run the real commands as root against a directory owned by `nobody`; they skip
when not run as root (and fail under CI=true, like every real-server test)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from logcount import config as config_module
from logcount.config import Config
from logcount.count.classify import visitor_hash
from logcount.sinks import keys
from tests.conftest import LOGCOUNT, ROOT, need, run_logcount

NOBODY = pwd.getpwnam("nobody")
DAY = "2026-04-08"
ROOT_ONLY = b"root only: must stay as it is\n"


def line(path: str, client: str = "192.0.2.1", agent: str = "Mozilla/5.0 Firefox/128") -> bytes:
    return (
        f'{client} - - [08/Apr/2026:10:00:00 +0000] "GET {path} HTTP/1.1" 200 5 "-" "{agent}"'
    ).encode()


@pytest.fixture
def owned() -> Iterator[Path]:
    """An empty data directory owned by nobody, 0700, in a directory nobody can reach
    (pytest's own tmp is root-only)."""
    need(os.geteuid() == 0, "needs root: these tests run root's commands against nobody's files")
    base = Path(tempfile.mkdtemp(prefix="logcount-privs-"))
    base.chmod(0o711)
    data = base / "data"
    data.mkdir(mode=0o700)
    os.chown(data, NOBODY.pw_uid, NOBODY.pw_gid)
    yield data
    kill_embedded(data)
    shutil.rmtree(base)


def kill_embedded(data: Path) -> None:
    """Whatever embedded Redis a test left in `data` (a failed stop leaves it running)."""
    sock = str(data / "redis.sock").encode()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and sock in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture
def env(owned: Path, tmp_path: Path) -> dict[str, str]:
    """The embedded Redis and the SQLite store in `owned`; the config root's alone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGCOUNT_")}
    config = tmp_path / "logcount.toml"
    config.write_text('site = "test"\n')
    config.chmod(0o600)
    env.update(
        {"LOGCOUNT_DATA_DIR": str(owned), "LOGCOUNT_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
    )
    return env


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A root-only directory with a root-only file, `target`, and an empty one, `empty`."""
    where = tmp_path / "victim"
    where.mkdir(mode=0o700)
    (where / "target").write_bytes(ROOT_ONLY)
    (where / "empty").write_bytes(b"")
    for f in where.iterdir():
        f.chmod(0o600)
    return where


def plant(link: Path, target: Path) -> None:
    """A symbolic link as nobody would make it."""
    os.symlink(target, link)
    os.lchown(link, NOBODY.pw_uid, NOBODY.pw_gid)


def snapshot(directory: Path) -> dict[str, tuple[int, int, int, bytes]]:
    return {
        p.name: (p.lstat().st_mode, p.lstat().st_uid, p.lstat().st_mtime_ns, p.read_bytes())
        for p in directory.iterdir()
    }


def assert_one_line_error(result: subprocess.CompletedProcess[bytes]) -> None:
    """A refusal is a clear one-line error, never a traceback."""
    err = result.stderr.decode()
    assert "Traceback" not in err, err
    assert err.startswith("Error: ") and err.count("\n") == 1, err


def assert_private(data: Path) -> None:
    """Everything in the data directory is nobody's: files 0600, directories 0700."""
    for path in [data, *data.rglob("*")]:
        st = path.lstat()
        assert (st.st_uid, st.st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid), path
        if stat.S_ISDIR(st.st_mode):
            assert stat.S_IMODE(st.st_mode) == 0o700, path
        elif stat.S_ISREG(st.st_mode):
            assert stat.S_IMODE(st.st_mode) == 0o600, path


def server_pid(data: Path) -> int:
    """The embedded server's pid, from the process list (its pid file may be planted)."""
    sock = str(data / "redis.sock").encode()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if sock in (proc / "cmdline").read_bytes():
                    return int(proc.name)
            except OSError:
                continue
    raise AssertionError("no embedded Redis running")


def uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return int(next(x for x in status if x.startswith("Uid:")).split()[2])  # effective


# --- root's commands and the links nobody planted -----------------------------------------


@pytest.mark.parametrize("planted", ["redis.lock", "redis.log", "redis.pid"])
def test_top_as_root_never_follows_a_planted_link(
    env: dict[str, str], owned: Path, victim: Path, planted: str
) -> None:
    plant(owned / planted, victim / "target")
    before = snapshot(victim)
    result = run_logcount(["top", "--format", "json"], env)
    assert snapshot(victim) == before
    if result.returncode != 0:
        assert_one_line_error(result)
    if planted == "redis.lock":
        assert result.stderr.decode() == (
            f"Error: {owned / 'redis.lock'} is a symbolic link: not following it\n"
        )
    # Root made nothing there: what the start made, it made as the owner.
    for path in owned.iterdir():
        assert path.lstat().st_uid == NOBODY.pw_uid, path


def test_embedded_redis_runs_as_the_owner_and_stop_saves_nothing_through_links(
    env: dict[str, str], owned: Path, victim: Path
) -> None:
    assert run_logcount(["top", "--format", "json"], env).returncode == 0
    pid = server_pid(owned)
    assert uid_of(pid) == NOBODY.pw_uid, "root started the embedded Redis as root"
    # Where it saves is fixed: no client can move it.
    cli = subprocess.run(
        [
            *LOGCOUNT[:1],
            "-c",
            "import redis,sys; r=redis.Redis(unix_socket_path=sys.argv[1]);"
            "print(r.execute_command('CONFIG', 'SET', 'dir', '/root'))",
            str(owned / "redis.sock"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "unknown command" in cli.stderr, cli.stderr
    # SHUTDOWN SAVE writes temp-PID.rdb first: a link there must not reach root's file.
    plant(owned / f"temp-{pid}.rdb", victim / "target")
    before = snapshot(victim)
    result = run_logcount(["embedded", "stop"], env)
    assert snapshot(victim) == before
    assert result.returncode != 0
    assert_one_line_error(result)
    (owned / f"temp-{pid}.rdb").unlink()
    result = run_logcount(["embedded", "stop"], env)
    assert (result.returncode, result.stdout) == (0, b"stopped\n"), result.stderr
    assert (owned / "redis.rdb").is_file()
    assert_private(owned)


def test_embedded_stop_never_makes_a_root_server_save_there(
    env: dict[str, str], owned: Path
) -> None:
    """A server root started there before (older logcount) would save as root."""
    from logcount.sinks.embedded import server_args

    subprocess.run(server_args(owned), check=True, capture_output=True)
    deadline = time.monotonic() + 10
    while not (owned / "redis.sock").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    result = run_logcount(["embedded", "stop"], env)
    assert result.returncode != 0
    assert_one_line_error(result)
    assert "redis.sock belongs to uid 0, not to nobody" in result.stderr.decode()
    assert uid_of(server_pid(owned)) == 0  # still running: not stopped, not saved


def write_log(tmp_path: Path, n: int) -> Path:
    """A root-only log file (as /var/log/apache2 is), n lines, n distinct visitors."""
    log = tmp_path / "access.log"
    log.write_bytes(b"".join(line(f"/p{i % 7}", client=f"192.0.2.{i}") + b"\n" for i in range(n)))
    log.chmod(0o600)
    return log


def test_rollup_as_root_never_writes_through_a_planted_link(
    env: dict[str, str], owned: Path, victim: Path, tmp_path: Path
) -> None:
    # (SQLite itself opens its -wal and -shm files without following a link.)
    plant(owned / "logcount.sqlite3", victim / "empty")
    log = write_log(tmp_path, 20)
    before = snapshot(victim)
    result = run_logcount(["rollup", "--logs", str(log), "--quiet"], env)
    assert snapshot(victim) == before
    store = owned / "logcount.sqlite3"
    assert (result.returncode, result.stderr.decode()) == (
        69,
        f"Error: store sqlite:///{store}: unable to open database file\n",
    )


def test_rollup_as_root_reads_root_logs_and_keeps_the_store_private(
    env: dict[str, str], owned: Path, tmp_path: Path
) -> None:
    log = write_log(tmp_path, 30)
    result = run_logcount(["rollup", "--logs", str(log), "--quiet"], env)
    assert result.returncode == 0, result.stderr.decode()
    assert (owned / "logcount.sqlite3").is_file()
    key = owned / "visitor.key"
    assert len(key.read_bytes()) == 32
    shown = run_logcount(["top", "--window", DAY, "--format", "json"], env)
    assert shown.returncode == 0, shown.stderr.decode()
    total = json.loads(shown.stdout)["total"]
    assert (total["hits"], total["visitors"]) == (30, 30)
    assert_private(owned)  # the store's journal files too


def test_root_refuses_a_root_data_directory_others_can_write(
    env: dict[str, str], tmp_path: Path
) -> None:
    need(os.geteuid() == 0, "needs root")
    shared = Path(tempfile.mkdtemp(prefix="logcount-shared-"))
    try:
        shared.chmod(0o777)
        result = run_logcount(["top"], {**env, "LOGCOUNT_DATA_DIR": str(shared)})
        assert result.returncode == 78
        assert result.stderr.decode() == (
            f"Error: data directory {shared} is root's but writable by other users (mode 777): "
            "make it 0700, or give it to the user that writes it (pipe --user)\n"
        )
        assert list(shared.iterdir()) == []
    finally:
        shutil.rmtree(shared)


# --- pipe --user: what the reader makes is the user's, and SIGHUP reloads ---------------


def start_pipe(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*LOGCOUNT, "pipe", "--user", "nobody"],
        env=env,
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_pipe_user_makes_private_files_owned_by_the_user(env: dict[str, str], owned: Path) -> None:
    # Redis away: the reader keeps its counts in a spool file at EOF.
    Path(env["LOGCOUNT_CONFIG"]).write_text('site = "test"\n[live]\ngrace = 1\n')
    env = {**env, "LOGCOUNT_REDIS": "redis://127.0.0.1:1/0"}
    proc = start_pipe(env)
    _, err = proc.communicate(b"".join(line(f"/a{i}") + b"\n" for i in range(10)), timeout=60)
    assert proc.returncode == 0, err.decode()
    spooled = list((owned / "spool").iterdir())
    assert spooled, err.decode()
    assert len((owned / "visitor.key").read_bytes()) == 32
    assert_private(owned)


def wait_for(proc: subprocess.Popen[bytes], text: str, timeout: float = 20) -> str:
    """stderr up to the first line holding `text` (a deadline, not a sleep)."""
    assert proc.stderr is not None
    os.set_blocking(proc.stderr.fileno(), False)
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = proc.stderr.read()
        if chunk:
            seen += chunk
            if text.encode() in seen:
                return seen.decode()
        time.sleep(0.02)
    raise AssertionError(f"{text!r} not in stderr: {seen.decode()!r}")


def day_hits(client: redis.Redis) -> int:
    return int(client.hget(keys.totals("test", "day", DAY.replace("-", "")), "hits") or 0)


def test_sighup_reloads_a_root_only_config_under_user(
    env: dict[str, str], redis_server, redis_client
) -> None:
    config = Path(env["LOGCOUNT_CONFIG"])
    config.write_text(f'site = "test"\nredis = "{redis_server.url}"\n')
    proc = start_pipe(env)
    try:
        assert proc.stdin is not None
        proc.stdin.write(line("/products/7/") + b"\n")
        proc.stdin.flush()
        # Counted: the supervisor handles signals by now (before, SIGHUP would kill it).
        deadline = time.monotonic() + 20
        while day_hits(redis_client) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert day_hits(redis_client) == 1
        config.write_text(
            f'site = "test"\nredis = "{redis_server.url}"\n'
            '[[route]]\npattern = "/products/<int:id>/"\nobject = "product"\n'
        )
        proc.send_signal(signal.SIGHUP)
        err = wait_for(proc, "configuration reloaded")
        assert "configuration reloaded (1 routes)" in err and "reload failed" not in err
        proc.stdin.write(line("/products/8/") + b"\n")
        proc.stdin.close()
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()
    shown = run_logcount(["top", "--window", DAY, "--by", "object", "--format", "json"], env)
    assert shown.returncode == 0, shown.stderr.decode()
    assert [r["key"] for r in json.loads(shown.stdout)["rows"]] == ["product:8"]


# --- the keyed visitor hash ---------------------------------------------------------------


def test_visitor_hash_is_keyed() -> None:
    ip, agent = b"198.51.100.7", b"Mozilla/5.0 Firefox/128"
    one = Config(secret="one secret of 16+ bytes").visitor_key()
    two = Config(secret="another secret, also long").visitor_key()
    assert one != two and len(one) == 32
    assert visitor_hash(ip, agent, one) == visitor_hash(ip, agent, one)
    assert visitor_hash(ip, agent, one) != visitor_hash(ip, agent, two)
    assert Config(secret="one secret of 16+ bytes").visitor_key() == one  # hosts agree


def test_visitor_key_is_made_once_private_in_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config_module, "_VISITOR_KEYS", {})
    key = Config(data_dir=str(tmp_path / "d")).visitor_key()
    path = tmp_path / "d" / "visitor.key"
    assert path.read_bytes() == key and len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700
    monkeypatch.setattr(config_module, "_VISITOR_KEYS", {})  # another process
    assert Config(data_dir=str(tmp_path / "d")).visitor_key() == key
    monkeypatch.setattr(config_module, "_VISITOR_KEYS", {})
    assert Config(data_dir=str(tmp_path / "e")).visitor_key() != key


def test_visitor_key_file_and_secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_module, "_VISITOR_KEYS", {})
    shared = tmp_path / "shared.key"
    shared.write_text("the same on every host\n")
    by_file = Config(secret_file=str(shared)).visitor_key()
    assert by_file == Config(secret="the same on every host").visitor_key()
    os.symlink(tmp_path / "elsewhere", tmp_path / "visitor.key")
    with pytest.raises(config_module.ConfigError, match="is a symbolic link: not following it"):
        Config(data_dir=str(tmp_path)).visitor_key()


def test_config_check_masks_the_secret(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[privacy]\nsecret = "correct horse battery staple"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOGCOUNT_CONFIG": str(config)}
    result = run_logcount(["config", "check"], env)
    assert result.returncode == 0, result.stderr.decode()
    assert b"horse" not in result.stdout + result.stderr
    assert json.loads(result.stdout)["privacy"]["secret"] == "***"
    config.write_text('[privacy]\nsecret = "short"\n')
    result = run_logcount(["config", "check"], env)
    assert (result.returncode, result.stderr.decode()) == (
        78,
        f"Error: config file {config}: privacy.secret is shorter than 16 bytes\n",
    )


def test_open_append_refuses_links_and_makes_private_files(owned: Path, victim: Path) -> None:
    """The helper for files root may append to there (the spool's, when `tail` runs as
    root): as the owner, 0600, never through a link."""
    from logcount.errors import ConfigError
    from logcount.safefs import open_append

    plant(owned / "planted.jsonl", victim / "target")
    with pytest.raises(ConfigError, match="planted.jsonl is a symbolic link: not following it"):
        open_append(owned, "planted.jsonl")
    fd = open_append(owned / "spool", "spool-x.jsonl")
    os.write(fd, b"{}\n")
    os.close(fd)
    assert (owned / "spool" / "spool-x.jsonl").read_bytes() == b"{}\n"
    assert_private(owned)


def test_an_unreadable_secret_file_is_one_line_before_counting(
    lc_env: dict[str, str], tmp_path: Path
) -> None:
    """The key is read once before the rollup forks its counters and before the tail
    starts its threads: a missing secret_file is one configuration error (exit 78), not
    counters dying one by one ("its counting process died") with a traceback each."""
    Path(lc_env["LOGCOUNT_CONFIG"]).write_text(
        'site = "test"\n[privacy]\nsecret_file = "/nonexistent/logcount.key"\n'
    )
    log = tmp_path / "access.log"
    log.write_text(
        '10.0.0.1 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8"\n'
    )
    expected = b"Error: privacy.secret_file /nonexistent/logcount.key: No such file or directory\n"
    for args in (["rollup", "--logs", str(log)], ["tail", str(log)]):
        done = run_logcount(args, lc_env)
        assert (done.returncode, done.stderr) == (78, expected), args
