"""A real Apache httpd on a free loopback port, logging through contrib/apache/logcount.conf.

Each test gets its own Apache (Debian's apache2, or httpd), a private Redis, a data
directory and a cronolog directory; the generated httpd.conf only sets what a server
needs to run unprivileged in a temporary directory, then Includes the contrib file with
its Define variables pointed at this test's logcount, config and directories. Nothing is
installed here: a missing apache2/httpd or cronolog skips (fails under CI=true).
"""

from __future__ import annotations

import grp
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT, RedisServer, free_port, logcount_env, need

CONTRIB = ROOT / "contrib" / "apache" / "logcount.conf"
MODULE_DIRS = (
    "/usr/lib/apache2/modules",
    "/usr/lib64/httpd/modules",
    "/usr/lib/httpd/modules",
    "/usr/libexec/apache2",
    "/usr/local/apache2/modules",
)
# Modules the generated server needs; log_config is often compiled in (Debian), else loaded.
MODULES = ("mpm_event", "authz_core", "log_config", "mime", "dir", "alias", "unixd")
BOT_AGENT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
BROWSER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
ROUTES = """
[[route]]
pattern = "/press/<int:id>/"
object  = "press_release"
"""


def which(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
        for folder in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
            path = Path(folder) / name
            if os.access(path, os.X_OK):
                return str(path)
    return None


def module_dir() -> Path | None:
    return next((Path(d) for d in MODULE_DIRS if (Path(d) / "mod_mpm_event.so").is_file()), None)


def logcount_program() -> str | None:
    """The installed `logcount` script next to this interpreter (the venv), else PATH."""
    beside = Path(sys.executable).parent / "logcount"
    return str(beside) if os.access(beside, os.X_OK) else shutil.which("logcount")


def run_as() -> tuple[str, str]:
    """(user, group) for Apache's workers and `pipe --user`: nobody as root, else ourselves."""
    if os.geteuid() == 0:
        entry = pwd.getpwnam("nobody")
        return entry.pw_name, grp.getgrgid(entry.pw_gid).gr_name
    entry = pwd.getpwuid(os.geteuid())
    return entry.pw_name, grp.getgrgid(os.getegid()).gr_name


# --- processes ------------------------------------------------------------------------


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line), read from /proc (ps --ppid without ps)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] == "Z":
            continue
        table[int(entry.name)] = (int(fields[1]), cmdline.strip())
    return table


def children_of(pid: int) -> list[int]:
    return sorted(p for p, (ppid, _) in process_table().items() if ppid == pid)


def uid_of(pid: int) -> int | None:
    """The effective uid of a process (None once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    line = next(x for x in status.splitlines() if x.startswith("Uid:"))
    return int(line.split()[2])


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def wait_for(condition, timeout: float, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll `condition` until it returns something true; return that, or the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# --- the server -----------------------------------------------------------------------


class Apache:
    """One httpd with its own ServerRoot; start/graceful/restart/stop with -k."""

    def __init__(
        self,
        workdir: Path,
        binary: str,
        modules: Path,
        defines: dict[str, str],
        user: str,
        group: str,
    ):
        self.workdir = workdir
        self.binary = binary
        self.modules = modules
        self.defines = defines
        self.user, self.group = user, group
        self.port = free_port()
        self.conf = workdir / "httpd.conf"
        self.error_log = workdir / "error.log"
        self.vhost_log = workdir / "vhost-access.log"
        self.run_dir = workdir / "run"
        self.pid_file = self.run_dir / "httpd.pid"
        self.htdocs = workdir / "htdocs"
        self.run_dir.mkdir()
        self.htdocs.mkdir()

    def write_conf(self) -> None:
        loads = []
        for name in MODULES:
            so = self.modules / f"mod_{name}.so"
            if so.is_file():
                loads.append(
                    f"<IfModule !{name}_module>\n    LoadModule {name}_module {so}\n</IfModule>"
                )
        defines = "\n".join(f'Define {k} "{v}"' for k, v in self.defines.items())
        privileged = f"User {self.user}\nGroup {self.group}\n" if os.geteuid() == 0 else ""
        self.conf.write_text(f"""\
ServerRoot "{self.workdir}"
ServerName 127.0.0.1
Listen 127.0.0.1:{self.port}
{chr(10).join(loads)}
{privileged}PidFile "{self.pid_file}"
DefaultRuntimeDir "{self.run_dir}"
Mutex file:{self.run_dir} default
ErrorLog "{self.error_log}"
LogLevel warn
StartServers 2
ThreadsPerChild 16
MaxRequestWorkers 128
KeepAlive On
TypesConfig /dev/null
DocumentRoot "{self.htdocs}"
DirectoryIndex index.html
<Directory "{self.htdocs}">
    Require all granted
</Directory>

{defines}
Include "{CONTRIB}"

# Like Debian's 000-default: a virtual host with an access log of its own.
<VirtualHost 127.0.0.1:{self.port}>
    ServerName localhost
    CustomLog "{self.vhost_log}" "%h %t \\"%r\\" %>s"
</VirtualHost>
""")

    def ctl(self, action: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        env = logcount_env()
        return subprocess.run(
            [self.binary, "-d", str(self.workdir), "-f", str(self.conf), "-k", action],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @property
    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def accepting(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def start(self) -> None:
        self.write_conf()
        result = self.ctl("start")
        assert result.returncode == 0, f"apache did not start: {result.stderr}\n{self.errors()}"
        assert wait_for(lambda: self.pid and self.accepting(), 15), (
            f"apache is not listening on {self.port}:\n{self.errors()}"
        )

    def graceful(self) -> None:
        result = self.ctl("graceful")
        assert result.returncode == 0, result.stderr

    def restart(self) -> None:
        result = self.ctl("restart")
        assert result.returncode == 0, result.stderr

    def stop(self) -> None:
        pid = self.pid
        if pid is None or not alive(pid):
            return
        self.ctl("stop")
        if not wait_for(lambda: not alive(pid), 20):
            os.kill(pid, signal.SIGKILL)

    def errors(self) -> str:
        try:
            return self.error_log.read_text(errors="replace")
        except OSError:
            return ""


# --- a client ---------------------------------------------------------------------------


@dataclass
class Outcome:
    path: str
    status: int | None  # None: the request failed (connection reset during a restart)
    seconds: float
    finished: float  # time.monotonic() when the answer (or the error) came


@dataclass
class Load:
    """Threads sending GETs to numbered paths until stopped, at most `limit` in all."""

    port: int
    prefix: str = "/flow/"
    threads: int = 4
    limit: int = 20_000
    pause: float = 0.002
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next: int = 0
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for _ in range(self.threads):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(30)

    def _take(self) -> str | None:
        with self._lock:
            if self._next >= self.limit:
                return None
            self._next += 1
            return f"{self.prefix}{self._next}"

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            path = self._take()
            if path is None:
                return
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            started = time.monotonic()
            try:
                conn.request("GET", path, headers={"User-Agent": BROWSER_AGENT})
                resp = conn.getresponse()
                resp.read()
                status: int | None = resp.status
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                status = None
                conn.close()
                conn = None
            with self._lock:
                now = time.monotonic()
                self.outcomes.append(Outcome(path, status, now - started, now))
            time.sleep(self.pause)
        if conn is not None:
            conn.close()

    @property
    def answered(self) -> set[str]:
        return {o.path for o in self.outcomes if o.status is not None}

    @property
    def failed(self) -> set[str]:
        return {o.path for o in self.outcomes if o.status is None}

    def slowest(self) -> float:
        return max((o.seconds for o in self.outcomes if o.status is not None), default=0.0)

    def count(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def more(self, n: int, timeout: float = 10) -> None:
        """Wait until `n` more requests have been answered (or have failed)."""
        target = self.count() + n
        wait_for(lambda: self.count() >= target, timeout)


def get(port: int, path: str, agent: str = BROWSER_AGENT) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"User-Agent": agent})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


# --- the fixture ------------------------------------------------------------------------


class Site:
    """Apache + the logcount it feeds: what a test drives and what it asks."""

    def __init__(self, apache: Apache, redis: RedisServer, config: Path, logs: Path, data: Path):
        self.apache = apache
        self.redis = redis
        self.config = config
        self.logs = logs
        self.data = data

    @property
    def port(self) -> int:
        return self.apache.port

    def env(self) -> dict[str, str]:
        env = logcount_env()
        env.update({"LOGCOUNT_CONFIG": str(self.config), "PYTHONPATH": str(ROOT)})
        return env

    def logcount(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "logcount.cli", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def top(self, by: str = "path", window: str = "today") -> dict:  # type: ignore[type-arg]
        result = self.logcount(
            "top", "--window", window, "--by", by, "--limit", "10000", "--format", "json"
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def path_hits(self, prefix: str = "/") -> dict[str, int]:
        return {
            row["key"]: row["hits"] for row in self.top()["rows"] if row["key"].startswith(prefix)
        }

    def wait_counts(self, expected: dict[str, int], prefix: str, timeout: float) -> dict[str, int]:
        """Poll until the counts under `prefix` equal `expected` (or time is up)."""
        last: dict[str, int] = {}

        def done() -> bool:
            nonlocal last
            last = self.path_hits(prefix)
            return last == expected

        wait_for(done, timeout, 0.2)
        return last

    def loggers(self) -> list[int]:
        """Every logcount process (supervisors and readers) started with this config."""
        marker = f"--config {self.config} pipe"
        return sorted(p for p, (_, cmd) in process_table().items() if marker in cmd)

    def cronologs(self) -> list[int]:
        """The cronolog processes writing this test's log directory."""
        table = process_table()
        return sorted(p for p, (_, cmd) in table.items() if f"cronolog {self.logs}/" in cmd)

    def logged_paths(self) -> list[str]:
        """The request path of every line in the cronolog files, in file order."""
        return [
            line.split('"')[1].split()[1]
            for f in self.cronolog_files()
            for line in f.read_text().splitlines()
        ]

    def supervisors(self) -> list[int]:
        """The loggers Apache's parent started itself (their children are readers)."""
        parent = self.apache.pid
        table = process_table()
        return [p for p in self.loggers() if table.get(p, (0, ""))[0] == parent]

    def readers(self) -> list[int]:
        table = process_table()
        sups = set(self.supervisors())
        return [p for p in self.loggers() if table.get(p, (0, ""))[0] in sups]

    def status(self) -> list[dict]:  # type: ignore[type-arg]
        result = self.logcount("status", "--format", "json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def wait_ready(self, timeout: float = 30) -> None:
        """Until the current reader has sent its first heartbeat (it reads and flushes)."""

        def beating() -> bool:
            readers = set(self.readers())
            return any(r["pid"] in readers for r in self.status() if r["mode"] == "pipe")

        assert wait_for(beating, timeout, 0.2), (
            f"no heartbeat from the pipe:\n{self.apache.errors()}"
        )

    def cronolog_files(self) -> list[Path]:
        return sorted(self.logs.rglob("access.log"))


def write_config(path: Path, redis_url: str, data: Path, extra: str = "") -> None:
    path.write_text(
        f'site = "e2e"\nredis = "{redis_url}"\ndata_dir = "{data}"\n'
        f"{extra}\n[live]\nflush_interval = 1.0\n{ROUTES}"
    )


@pytest.fixture
def e2e_dir() -> Iterator[Path]:
    """A work directory the unprivileged user can enter (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="logcount-e2e-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def site_factory(e2e_dir: Path, redis_server: RedisServer) -> Iterator:  # type: ignore[type-arg]
    """Builds (not starts) the Apache of a test; `config_extra` goes into logcount.toml."""
    binary = which("apache2", "httpd")
    need(binary is not None, "no apache2/httpd binary (Debian package apache2)")
    cronolog = which("cronolog")
    need(cronolog is not None, "no cronolog binary (Debian package cronolog)")
    modules = module_dir()
    need(modules is not None, f"no Apache module directory with mod_mpm_event.so in {MODULE_DIRS}")
    program = logcount_program()
    need(program is not None, "logcount is not installed (pip install -e .)")
    assert binary and cronolog and modules and program
    user, group = run_as()
    made: list[Site] = []

    def make(config_extra: str = "") -> Site:
        data, logs = e2e_dir / "data", e2e_dir / "logs"
        data.mkdir()
        logs.mkdir()
        if os.geteuid() == 0:
            entry = pwd.getpwnam(user)
            os.chown(data, entry.pw_uid, entry.pw_gid)
        config = e2e_dir / "logcount.toml"
        write_config(config, redis_server.url, data, config_extra)
        defines = {
            "LOGCOUNT_BIN": program,
            "LOGCOUNT_CONFIG": str(config),
            "LOGCOUNT_USER": user,
            "LOGCOUNT_CRONOLOG": cronolog,
            "LOGCOUNT_LOG_DIR": str(logs),
        }
        (e2e_dir / "httpd").mkdir()
        apache = Apache(e2e_dir / "httpd", binary, modules, defines, user, group)
        site = Site(apache, redis_server, config, logs, data)
        made.append(site)
        return site

    yield make
    for site in made:
        site.apache.stop()
        # Loggers see EOF once Apache's processes are gone, and exit by themselves.
        gone = wait_for(lambda s=site: not s.loggers() and not s.cronologs(), 15)
        leftover = site.loggers() + site.cronologs()
        for pid in leftover:
            os.kill(pid, signal.SIGKILL)
        assert gone, f"logger processes left behind after apache stopped: {leftover}"
        assert "reader crashed" not in site.apache.errors(), site.apache.errors()


@pytest.fixture
def site(site_factory) -> Site:  # type: ignore[no-untyped-def]
    """A running Apache feeding logcount, with the default test configuration."""
    s = site_factory()
    s.apache.start()
    s.wait_ready()
    return s
