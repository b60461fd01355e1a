"""Configuration: where the file is found, what overrides it, `logcount config check`, and
one clear error for each kind of bad configuration."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from logcount import config as config_module
from logcount.cli import cli
from logcount.config import Config, load_config, mask_url
from logcount.count.checks import load_checked
from logcount.errors import ConfigError

SECRET = "Zq9-s3cr3t-pw"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A clean environment: HOME in a tmp dir, no LOGCOUNT_* variables, and the system
    config file moved under tmp (the machine's own /etc must not decide the test)."""
    for var in (
        "LOGCOUNT_CONFIG",
        "LOGCOUNT_REDIS",
        "LOGCOUNT_STORE",
        "LOGCOUNT_DATA_DIR",
        "LOGCOUNT_LOG_FORMAT",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
    ):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(config_module, "SYSTEM_CONFIG", tmp_path / "etc" / "logcount.toml")
    yield home


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def check(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, [*args, "config", "check"], env=env)


# --- where the file comes from ----------------------------------------------------------


def test_search_order(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_config().source == ""  # nothing anywhere: defaults
    assert load_config() == Config()
    user = write(home / ".config" / "logcount" / "logcount.toml", 'site = "user"\n')
    assert (load_config().site, load_config().source) == ("user", str(user))
    system = write(tmp_path / "etc" / "logcount.toml", 'site = "system"\n')
    assert (load_config().site, load_config().source) == ("system", str(system))
    env = write(tmp_path / "env.toml", 'site = "env"\n')
    monkeypatch.setenv("LOGCOUNT_CONFIG", str(env))
    assert load_config().site == "env"
    explicit = write(tmp_path / "explicit.toml", 'site = "explicit"\n')
    assert load_config(str(explicit)).site == "explicit"


def test_xdg_config_home(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(home / ".config" / "logcount" / "logcount.toml", 'site = "dot-config"\n')
    write(tmp_path / "xdg" / "logcount" / "logcount.toml", 'site = "xdg"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert load_config().site == "xdg"


def test_search_order_through_the_cli(home: Path, tmp_path: Path) -> None:
    write(home / ".config" / "logcount" / "logcount.toml", 'site = "user"\n')
    result = check([])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["site"] == "user"
    env_file = write(tmp_path / "env.toml", 'site = "env"\n')
    result = check([], env={"LOGCOUNT_CONFIG": str(env_file)})
    assert json.loads(result.stdout)["site"] == "env"
    flag_file = write(tmp_path / "flag.toml", 'site = "flag"\n')
    result = check(["--config", str(flag_file)], env={"LOGCOUNT_CONFIG": str(env_file)})
    assert json.loads(result.stdout)["site"] == "flag"
    assert json.loads(result.stdout)["source"] == str(flag_file)


def test_missing_files_named(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"^config file /nowhere/x.toml not found$"):
        load_config("/nowhere/x.toml")
    monkeypatch.setenv("LOGCOUNT_CONFIG", "/nowhere/y.toml")
    with pytest.raises(ConfigError, match=r"/nowhere/y.toml \(from LOGCOUNT_CONFIG\) not found"):
        load_config()
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_config(str(tmp_path))


# --- what overrides the file ------------------------------------------------------------

FILE = """
redis = "redis://file:6379/0"
store = "sqlite:////file.db"
data_dir = "/file/data"
log_format = "common"
"""


def test_environment_overrides_the_file(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "c.toml", FILE)
    loaded = load_config(str(path))
    assert (loaded.redis, loaded.store, loaded.data_dir, loaded.log_format) == (
        "redis://file:6379/0",
        "sqlite:////file.db",
        "/file/data",
        "common",
    )
    monkeypatch.setenv("LOGCOUNT_REDIS", "redis://env:6379/1")
    monkeypatch.setenv("LOGCOUNT_STORE", "sqlite:////env.db")
    monkeypatch.setenv("LOGCOUNT_DATA_DIR", "/env/data")
    monkeypatch.setenv("LOGCOUNT_LOG_FORMAT", "vhost_combined")
    # The Python API (Counts.from_config) reads the environment as the CLI does.
    loaded = load_config(str(path))
    assert (loaded.redis, loaded.store, loaded.data_dir, loaded.log_format) == (
        "redis://env:6379/1",
        "sqlite:////env.db",
        "/env/data",
        "vhost_combined",
    )
    loaded = load_config(str(path), redis="redis://flag:6379/2", data_dir=None)
    assert (loaded.redis, loaded.data_dir) == ("redis://flag:6379/2", "/env/data")


def test_global_options_override_environment_and_file(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", FILE)
    env = {
        "LOGCOUNT_CONFIG": str(path),
        "LOGCOUNT_REDIS": "redis://env:6379/1",
        "LOGCOUNT_STORE": "sqlite:////env.db",
        "LOGCOUNT_DATA_DIR": str(tmp_path / "env"),
        "LOGCOUNT_LOG_FORMAT": "combined",
    }
    shown = json.loads(check([], env=env).stdout)
    assert (shown["redis"], shown["store"], shown["data_dir"], shown["log_format"]) == (
        "redis://env:6379/1",
        "sqlite:////env.db",
        str(tmp_path / "env"),
        "combined",
    )
    args = [
        "--redis",
        "unix:///run/redis.sock",
        "--store",
        "sqlite:////flag.db",
        "--data-dir",
        str(tmp_path / "flag"),
        "--log-format",
        '%h %t "%r" %>s %b',
    ]
    result = check(args, env=env)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert (shown["redis"], shown["store"], shown["data_dir"], shown["log_format"]) == (
        "unix:///run/redis.sock",
        "sqlite:////flag.db",
        str(tmp_path / "flag"),
        '%h %t "%r" %>s %b',
    )


# --- config check -----------------------------------------------------------------------

FULL = f"""
log_format = "vhost_combined"
site = "shop"
timezone = "Europe/Paris"
redis = "redis://logcount:{SECRET}@redis.example:6380/2"
store = "postgresql+psycopg://lc:{SECRET}@db.example/logcount?sslmode=require"
data_dir = "/srv/logcount"

[live]
flush_interval = 0.5
max_members = 500
ttl = {{ minute = "90m", day = "60d" }}

[normalize]
keep_query = ["page"]
ignore_extensions = [".css", "PNG"]
count_bots = true

[[route]]
pattern = "/press/<slug:slug>/<int:id>/"
object = "press_release"

[[route]]
regex = '^/products/(?P<id>[0-9]+)(/|$)'
object = "product"
"""


def test_config_check_prints_the_effective_config(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path / "full.toml", FULL)
    result = check(["--config", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stderr == "configuration OK (2 routes)\n"
    shown = json.loads(result.stdout)
    assert shown == {
        "source": str(path),
        "log_format": "vhost_combined",
        "site": "shop",
        "timezone": "Europe/Paris",
        "redis": "redis://logcount:***@redis.example:6380/2",
        "store": "postgresql+psycopg://lc:***@db.example/logcount?sslmode=require",
        "data_dir": "/srv/logcount",
        "logs": "",
        "django_settings": "",
        "live": {
            "flush_interval": 0.5,
            "max_members": 500,
            "ttl": {"minute": 5400, "hour": 8 * 86400, "day": 60 * 86400},
            "recent_size": 1000,
            "pending_limit": 200_000,
            "grace": 10.0,
            "max_event_visitors": 10_000_000,
            "section_depth": 1,
        },
        "normalize": {
            "keep_query": ["page"],
            "ignore_extensions": [".css", ".png"],
            "count_bots": True,
        },
        "routes": [
            {"pattern": "/press/<slug:slug>/<int:id>/", "object": "press_release"},
            {"regex": "^/products/(?P<id>[0-9]+)(/|$)", "object": "product"},
        ],
        "events": [],
        "event_identity": "visitor",
        "privacy": {
            "secret": "",
            "secret_file": "(data_dir/visitor.key, made on first use)",
            "count_clients": False,
            "store_clients": False,
        },
        "serve": {"metrics_sites": 100},
    }


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{SECRET}@127.0.0.1:6379/0",
        f"rediss://default:{SECRET}@[2001:db8::1]:6380",
        f"unix:///run/redis.sock?db=2&password={SECRET}",
        f"redis://user:{SECRET}@host/0?ssl_cert_reqs=none",
        f"rediss://host/0?ssl_certfile=c.pem&ssl_keyfile=k.pem&ssl_password={SECRET}",
    ],
)
def test_secret_never_in_output(home: Path, tmp_path: Path, url: str) -> None:
    for args in (["--redis", url], ["--store", "postgresql://u:" + SECRET + "@h/db"]):
        result = check(args)
        assert result.exit_code == 0, result.output
        assert SECRET not in result.output and SECRET not in result.stderr
        assert "***" in result.stdout
    # Nor in the error about a wrong scheme.
    result = check(["--redis", url.replace("redis", "http", 1).replace("unix", "http", 1)])
    assert result.exit_code == 78 and SECRET not in result.output
    assert result.output.startswith("Error: redis '") and result.output.count("\n") == 1


def test_mask_url() -> None:
    assert mask_url("") == ""
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"
    assert mask_url(f"redis://:{SECRET}@h") == "redis://:***@h"
    assert mask_url(f"redis://:p@{SECRET}@h") == "redis://:***@h"  # @ in the password
    assert mask_url(f"h:1?Password={SECRET}#x") == "h:1?Password=***#x"
    assert mask_url(f"default:{SECRET}@h:6379") == "default:***@h:6379"  # no scheme
    assert mask_url(f"postgresql://u:{SECRET}@h/db?options=http://x&password={SECRET}") == (
        "postgresql://u:***@h/db?options=http://x&password=***"
    )


def test_config_check_validates_routes(home: Path, tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", '[[route]]\npattern = "/x/<int:num>/"\nobject = "x"\n')
    result = check(["--config", str(path)])
    assert result.exit_code == 78
    assert result.output == (
        "Error: route #1 (x): '/x/<int:num>/' has no group named 'id' to "
        "take the object id from (named groups: num; name one id, or set "
        'id = "<group>")\n'
    )


# --- bad configurations: one line each --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("site = \n", r"^config file .*c.toml: Invalid value \(at line 1, column 8\)$"),
        ("[live\n", r"^config file .*c.toml: Expected ']' at the end of a table declaration"),
        ("colour = 'red'\n", r"^config file .*c.toml: unknown setting 'colour'$"),
        ("[live]\nflush = 1\n", r"unknown setting live.flush$"),
        ("[normalize]\nkeep = []\n", r"unknown setting normalize.keep$"),
        ("[serve]\nport = 1\n", r"unknown setting serve.port$"),
        ("[serve]\nmetrics_sites = 0\n", r"serve.metrics_sites must be a whole number from 1"),
        ("[serve]\nmetrics_sites = true\n", r"serve.metrics_sites must be a whole number from 1"),
        ("serve = 1\n", r"\[serve\] must be a table$"),
        ("[live]\nttl = { week = '1w' }\n", r"live.ttl.week: not one of minute, hour, day$"),
        (
            "[live]\nttl = { minute = '3x' }\n",
            r"live.ttl.minute: '3x' is not a duration like 90s, 30m, 3h or 40d$",
        ),
        ("[live]\nttl = { hour = 0 }\n", r"live.ttl.hour: 0 is not a duration"),
        ("[live]\nttl = { hour = -5 }\n", r"live.ttl.hour: -5 is not a duration"),
        ("[live]\nttl = { hour = true }\n", r"live.ttl.hour: True is not a duration"),
        ("[live]\nttl = '3h'\n", r"live.ttl must be a table"),
        (
            "[live]\nmax_members = 1.5\n",
            r"live.max_members must be a positive whole number, not 1.5",
        ),
        ("[live]\nflush_interval = 0\n", r"live.flush_interval must be a positive number, not 0"),
        ("[live]\nsection_depth = 4\n", r"live.section_depth must be a whole number from 0 to 3"),
        ("[live]\nsection_depth = true\n", r"live.section_depth must be .* not True$"),
        ("[live]\nflush_interval = '1s'\n", r"live.flush_interval must be a positive number"),
        ("[normalize]\ncount_bots = 'yes'\n", r"normalize.count_bots must be true or false"),
        ("[privacy]\nstore_clients = 'yes'\n", r"privacy.store_clients must be true or false"),
        ("[normalize]\nkeep_query = 'page'\n", r"normalize.keep_query must be a list of strings"),
        ("site = 3\n", r"site must be a string"),
        ("timezone = 'Mars/Olympus_Mons'\n", r"^timezone 'Mars/Olympus_Mons' is not a known IANA"),
        ("timezone = '../../etc/passwd'\n", r"^timezone '../../etc/passwd' is not a known IANA"),
        ("timezone = 'Europe'\n", r"^timezone 'Europe' is not a known IANA zone$"),
        ("log_format = '%h %Z'\n", r"^log format '%h %Z': "),
        ("site = 'a{b}'\n", r"^site 'a\{b\}' must be non-empty and contain no braces$"),
        ("redis = 'localhost:6379'\n", r"^redis 'localhost:6379': not a redis://, rediss:// or "),
        ("store = '/var/lib/x.db'\n", r"^store '/var/lib/x.db': not an SQLAlchemy URL"),
        ("route = 'x'\n", r"\[\[route\]\] must be a list of tables$"),
    ],
)
def test_bad_config_one_clear_error(home: Path, tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "c.toml", text)
    with pytest.raises(ConfigError, match=message) as err:
        load_checked(str(path))  # load_config, then what only compiling checks
    assert "\n" not in str(err.value)
    result = check(["--config", str(path)])
    assert result.exit_code == 78
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert "Traceback" not in result.output


def test_default_log_format_compiles(home: Path) -> None:
    # check_compiles() does not compile the built-in default (a report would pay for
    # apachelogs on every start): it must compile, and a format given anywhere is compiled.
    from logcount.count.logformat import compile_format

    compile_format(Config().log_format)
    with pytest.raises(ConfigError, match=r"^log format 'combined %Z': "):
        load_checked(None, log_format="combined %Z")
    assert load_config(None, log_format="combined %Z").log_format == "combined %Z"


def test_file_that_is_not_utf8(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'site = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"latin1.toml: not UTF-8 text \(byte 11\)$"):
        load_config(str(path))
