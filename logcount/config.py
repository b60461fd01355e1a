"""Configuration: one TOML file, overridden by environment variables and global options.

Precedence, lowest first: built-in defaults, the first config file found
(`--config`, `$LOGCOUNT_CONFIG`, `/etc/logcount.toml`,
`~/.config/logcount/logcount.toml`), then the `LOGCOUNT_*` environment variables and
the global command-line options (click resolves those two together).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from logcount.dimensions import GRANULARITIES, GRANULARITY_NAMES
from logcount.errors import ConfigError

SYSTEM_CONFIG = Path("/etc/logcount.toml")
DEFAULT_TTL = {g.name: g.default_ttl for g in GRANULARITIES.values()}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
REDIS_SCHEMES = ("redis", "rediss", "unix")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str | int | float, what: str) -> int:
    """'3h' -> 10800. A bare number is seconds; a duration is at least one second."""
    seconds = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = int(value)
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            seconds = int(float(m.group(1)) * _UNIT_SECONDS[m.group(2)])
    if seconds is None or seconds < 1:
        raise ConfigError(f"{what}: {value!r} is not a duration like 90s, 30m, 3h or 40d")
    return seconds


@dataclass(frozen=True)
class Config:
    log_format: str = "combined"
    site: str = "default"
    timezone: str = ""
    redis: str = ""
    store: str = ""
    data_dir: str = ""
    logs: str = ""
    django_settings: str = ""
    # [live]
    flush_interval: float = 1.0
    max_members: int = 10_000
    ttl: dict[str, int] = field(
        default_factory=lambda: {g: parse_duration(v, "ttl") for g, v in DEFAULT_TTL.items()}
    )
    recent_size: int = 1000
    pending_limit: int = 200_000  # distinct pending deltas kept in memory while Redis is away
    grace: float = 10.0  # seconds a reader keeps draining after SIGTERM
    # Visitors a site's event numbering holds at most (about 100 bytes each in Redis): a
    # flood of made-up visitors doing an event cannot fill Redis
    max_event_visitors: int = 10_000_000
    # Sections (paths cut after their first N segments) whose visitors the live buckets
    # keep, at depths 1..N, for `top --by path --depth N` on a live window; 0: none (each
    # depth costs the reader: README, Sections)
    section_depth: int = 1
    # [rollup]
    rollup_max_members: int = 0  # members kept per source, day and dimension; 0: max_members
    # [normalize]
    keep_query: tuple[str, ...] = ()
    ignore_extensions: tuple[str, ...] = ()
    count_bots: bool = False
    routes: tuple[dict[str, Any], ...] = ()
    # [[event]]: named matches on lines (count/events.py checks them), and who did them
    events: tuple[dict[str, Any], ...] = ()
    event_identity: str = "visitor"
    # [privacy]: the visitor hash's key (repr=False: a Config may end up in a message)
    secret: str = field(default="", repr=False)
    secret_file: str = ""
    count_clients: bool = False  # client addresses counted live (kept for the buckets' TTL)
    store_clients: bool = False  # ... and in the store
    # [serve]
    metrics_sites: int = 100  # sites /metrics labels; the rest are summed as (other)
    source: str = ""  # the file this came from, "" for defaults only

    def resolved_data_dir(self) -> Path:
        # $LOGCOUNT_DATA_DIR also for a Config built in code (a web app's Counts, a test),
        # as load_config would have applied it.
        chosen = self.data_dir or os.environ.get("LOGCOUNT_DATA_DIR", "")
        if chosen:
            return Path(chosen).expanduser()
        if os.geteuid() == 0:
            return Path("/var/lib/logcount")
        xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        return Path(xdg) / "logcount"

    def visitor_key(self) -> bytes:
        """The key of the visitor hash: `secret`, else `secret_file`'s content, else a
        random key kept in the data directory (made on first use). Read once per process
        (a forked reader inherits it): the hash runs for every distinct visitor."""
        where = (self.secret, self.secret_file, "")
        if not (self.secret or self.secret_file):
            where = ("", "", str(self.resolved_data_dir()))
        key = _VISITOR_KEYS.get(where)
        if key is None:
            key = _VISITOR_KEYS[where] = _load_visitor_key(self)
        return key

    def resolved_store(self) -> str:
        """The store's SQLAlchemy URL: the configured one, else SQLite in the data dir."""
        return self.store or f"sqlite:///{self.resolved_data_dir() / 'logcount.sqlite3'}"

    def store_cap(self) -> int:
        """Members a source keeps in the store per site, day and dimension (see rollup)."""
        return self.rollup_max_members or self.max_members

    def with_overrides(self, **overrides: Any) -> Config:
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **given) if given else self

    def masked(self) -> dict[str, Any]:
        """The effective configuration as a dict, secrets masked, for `config check`."""
        out = {
            "source": self.source or "(defaults)",
            "log_format": self.log_format,
            "site": self.site,
            "timezone": self.timezone,
            "redis": mask_url(self.redis) or "(embedded)",
            "store": mask_url(self.store) or "(sqlite in data_dir)",
            "data_dir": str(self.resolved_data_dir()),
            "logs": self.logs,
            "django_settings": self.django_settings,
            "live": {
                "flush_interval": self.flush_interval,
                "max_members": self.max_members,
                "ttl": dict(self.ttl),
                "recent_size": self.recent_size,
                "pending_limit": self.pending_limit,
                "grace": self.grace,
                "max_event_visitors": self.max_event_visitors,
                "section_depth": self.section_depth,
            },
            "normalize": {
                "keep_query": list(self.keep_query),
                "ignore_extensions": list(self.ignore_extensions),
                "count_bots": self.count_bots,
            },
            "routes": [dict(r) for r in self.routes],
            "events": [dict(e) for e in self.events],
            "event_identity": self.event_identity,
            "privacy": {
                "secret": "***" if self.secret else "",
                "secret_file": self.secret_file
                or f"(data_dir/{VISITOR_KEY_FILE}, made on first use)",
                "count_clients": self.count_clients,
                "store_clients": self.store_clients,
            },
            "serve": {"metrics_sites": self.metrics_sites},
        }
        return out


# Each depth kept live costs a HyperLogLog per section, hour and day, and a Redis write per
# distinct (section, visitor) of a batch: deeper sections are read from the store.
MAX_SECTION_DEPTH = 3
VISITOR_KEY_FILE = "visitor.key"
MIN_SECRET = 16  # bytes: a shorter secret is a password that can be guessed
_VISITOR_KEYS: dict[tuple[str, str, str], bytes] = {}


def visitor_keys() -> dict[tuple[str, str, str], bytes]:
    """The keys read so far by this process (the pipe's supervisor passes them on)."""
    return _VISITOR_KEYS


def _load_visitor_key(config: Config) -> bytes:
    import hashlib

    from logcount.safefs import read_or_create_key

    if config.secret:
        secret = config.secret.encode()
    elif config.secret_file:
        path = Path(config.secret_file).expanduser()
        try:
            secret = path.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"privacy.secret_file {path}: {exc.strerror}") from None
    else:
        directory = config.resolved_data_dir()
        try:
            return read_or_create_key(directory, VISITOR_KEY_FILE)
        except OSError as exc:
            raise ConfigError(f"visitor key in {directory}: {exc.strerror}") from None
    if len(secret) < MIN_SECRET:
        what = "privacy.secret" if config.secret else f"privacy.secret_file {config.secret_file}"
        raise ConfigError(f"{what}: shorter than {MIN_SECRET} bytes")
    # blake2b takes a key of 64 bytes at most: a secret of any length is hashed to one.
    return hashlib.blake2b(secret, digest_size=32, person=b"logcount-visitor").digest()


_SECRET_PARAM = re.compile(
    r"(?i)^(?:password|passwd|pwd|pass|secret|token|sslpassword|ssl_password)$"
)
HIDDEN = "***"


def mask_url(url: str) -> str:
    """The URL with its password hidden, as the clients read it: the user part
    (`redis://:pw@host`), secret query options (`?password=pw`) and the fragment. A URL the
    clients would misread or cannot parse is hidden but for its scheme: whatever part of
    it we showed might be the password (`redis://:S3#CR3T@host` reads as host "" and
    port "S3")."""
    if not url:
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:  # no scheme (refused by `validate`, but named in its error)
        return _mask_bare(url)
    if scheme.lower() in REDIS_SCHEMES:
        if redis_url_problem(url):
            return f"{scheme}://{HIDDEN}"
        return _mask_split(url)
    return _mask_sqlalchemy(url)


def _mask_split(url: str) -> str:
    """A redis URL rebuilt from urlsplit's parts, as redis-py reads them."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{HIDDEN}@{host}" if ":" in userinfo else f"{user}@{host}"
    query = _mask_query(parts.query)
    return (
        f"{parts.scheme}://{netloc}{parts.path}"
        + (f"?{query}" if query else "")
        + (f"#{HIDDEN}" if parts.fragment else "")
    )


def _mask_bare(url: str) -> str:
    """`user:pw@host?password=pw#x` without a scheme: everything before the last '@' but
    the user name is hidden, and the secret query options."""
    head, at, host = url.rpartition("@")
    shown = f"{head.partition(':')[0] if ':' in head else ''}:{HIDDEN}@{host}" if at else url
    base, qmark, query = shown.partition("?")
    if not qmark:
        return shown
    query, hash_, fragment = query.partition("#")
    return f"{base}?{_mask_query(query)}{hash_}{fragment}"


def _mask_query(query: str) -> str:
    params = []
    for param in query.split("&") if query else []:
        key, eq, _value = param.partition("=")
        params.append(f"{key}={HIDDEN}" if eq and _SECRET_PARAM.match(key) else param)
    return "&".join(params)


def _mask_sqlalchemy(url: str) -> str:
    """A store URL as SQLAlchemy reads it (its own pattern, not urlsplit's: a password may
    hold '#', '?' or '/'), rendered with the password hidden."""
    if store_url_problem(url):  # nothing of it is safe to show
        return f"{url.partition('://')[0]}://{HIDDEN}"
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.password is None and not parsed.query:
        return url  # nothing to hide; rendering would re-encode it (an '@' as %40)
    base = parsed.set(query={}).render_as_string(hide_password=True)
    # The query as SQLAlchemy split it (a '?' in the password is not its start).
    pairs = [
        (name, value)
        for name, values in parsed.query.items()
        for value in (values if isinstance(values, tuple) else (values,))
    ]
    query = "&".join(f"{n}={HIDDEN if _SECRET_PARAM.match(n) else v}" for n, v in pairs)
    return f"{base}?{query}" if query else base


def store_url_problem(url: str) -> str:
    """Why SQLAlchemy would not read the store URL as written, or "" when it would. Its
    password ends at the first '@': a second one (unencoded in the password) would put
    the password's end into the host."""
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception:
        return "SQLAlchemy cannot parse it (like sqlite:////path/logcount.db)"
    if "@" in (parsed.host or ""):
        return "its host holds an '@' (percent-encode an '@' in a password as %40)"
    return ""


def redis_url_problem(url: str) -> str:
    """Why redis-py (it reads a URL with urlsplit's rules) would not read `url` as
    written, or "" when it would. Never quotes a part of the URL: a
    password with an unencoded '#', '?' or '/' ends the host part early, and what follows
    it (the password's end) becomes path, query or fragment, its start a "port"."""
    from urllib.parse import urlsplit

    if url.partition("://")[0].lower() not in REDIS_SCHEMES:
        return "not a redis://, rediss:// or unix:// URL"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "it does not parse (a bad [IPv6] address)"
    if _user_part_cut(parts):
        return (
            "its user part would be cut at a '/', '?' or '#' (percent-encode them in a "
            "password: %2F, %3F, %23; an '@' as %40)"
        )
    try:
        _ = parts.port  # a property: raises on a port that is not a number
    except ValueError:
        return "its port is not a number from 0 to 65535"
    return ""


def _user_part_cut(parts: Any) -> bool:
    """An '@' past the host part where none belongs: the end of a password whose '#', '?'
    or '/' ended the host part early. An '@' may stand in a socket's path (a data
    directory /home/a@b/...) or in a query value (`?password=a@b`)."""
    if "@" in parts.fragment:  # the clients ignore a fragment: nothing there is meant
        return True
    if "@" in parts.path and (parts.scheme != "unix" or parts.netloc.rpartition("@")[2]):
        return True
    for param in parts.query.split("&"):
        key, eq, _value = param.partition("=")
        if "@" in key or (not eq and "@" in param):
            return True
    return False


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "logcount" / "logcount.toml"


def find_config_file(explicit: str | None) -> Path | None:
    """The first of --config, $LOGCOUNT_CONFIG, /etc/logcount.toml and
    ~/.config/logcount/logcount.toml ($XDG_CONFIG_HOME) that is given or exists."""
    for given, origin in (
        (explicit, ""),
        (os.environ.get("LOGCOUNT_CONFIG"), " (from LOGCOUNT_CONFIG)"),
    ):
        if given:
            path = Path(given).expanduser()
            if not path.exists():
                raise ConfigError(f"config file {given}{origin} not found")
            if not path.is_file():
                raise ConfigError(f"config file {given}{origin} is not a regular file")
            return path
    for candidate in (SYSTEM_CONFIG, user_config_path()):
        if candidate.is_file():
            return candidate
    return None


_TOP_KEYS = {
    "log_format": str,
    "site": str,
    "timezone": str,
    "redis": str,
    "store": str,
    "data_dir": str,
    "logs": str,
    "django_settings": str,
    "event_identity": str,
}


# Settings that an environment variable overrides (the CLI's global options too).
ENVIRONMENT = {
    "redis": "LOGCOUNT_REDIS",
    "store": "LOGCOUNT_STORE",
    "data_dir": "LOGCOUNT_DATA_DIR",
    "log_format": "LOGCOUNT_LOG_FORMAT",
}


def load_config(
    explicit: str | None = None, defaults: dict[str, str] | None = None, **overrides: Any
) -> Config:
    """Read the config file (if any), then the LOGCOUNT_* environment variables, then
    `overrides` (the command line; None = not given); validate the result. `defaults`:
    a command's own defaults of top-level settings, which the file, too, overrides."""
    path = find_config_file(explicit)
    data: dict[str, Any] = dict(defaults or {})
    if path is not None:
        data.update(_read_toml(path))
    config = config_from_dict(data, source=str(path) if path else "")
    from_env = {key: os.environ.get(var) or None for key, var in ENVIRONMENT.items()}
    config = config.with_overrides(**from_env).with_overrides(**overrides)
    validate(config)
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    # Imported only when there is a file: 4% of the instructions of a `logcount top` without.
    import tomllib

    try:
        text = path.read_bytes().decode("utf-8")
        return tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None


def config_from_dict(data: dict[str, Any], source: str = "") -> Config:
    where = f"config file {source}" if source else "config"
    kwargs: dict[str, Any] = {"source": source}
    for key, value in data.items():
        if key in _TOP_KEYS:
            if not isinstance(value, str):
                raise ConfigError(f"{where}: {key} must be a string")
            kwargs[key] = value
        elif key in ("live", "normalize", "route", "privacy", "rollup", "serve", "event"):
            continue
        else:
            raise ConfigError(f"{where}: unknown setting {key!r}")
    kwargs.update(_live_section(data.get("live", {}), where))
    kwargs.update(_normalize_section(data.get("normalize", {}), where))
    kwargs.update(_privacy_section(data.get("privacy", {}), where))
    kwargs.update(_rollup_section(data.get("rollup", {}), where))
    kwargs.update(_serve_section(data.get("serve", {}), where))
    routes = data.get("route", [])
    if not isinstance(routes, list) or not all(isinstance(r, dict) for r in routes):
        raise ConfigError(f"{where}: [[route]] must be a list of tables")
    kwargs["routes"] = tuple(routes)
    events = data.get("event", [])
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise ConfigError(f"{where}: [[event]] must be a list of tables")
    kwargs["events"] = tuple(events)
    return Config(**kwargs)


def _live_section(live: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    known = {"flush_interval", "max_members", "ttl", "recent_size", "pending_limit", "grace"}
    known |= {"max_event_visitors", "section_depth"}
    for key in live:
        if key not in known:
            raise ConfigError(f"{where}: unknown setting live.{key}")
    for key, kind in (
        ("flush_interval", float),
        ("grace", float),
        ("max_members", int),
        ("recent_size", int),
        ("pending_limit", int),
        ("max_event_visitors", int),
    ):
        if key in live:
            value = live[key]
            if not isinstance(value, kind | int) or isinstance(value, bool) or value <= 0:
                whole = "whole " if kind is int else ""
                raise ConfigError(
                    f"{where}: live.{key} must be a positive {whole}number, not {value!r}"
                )
            out[key] = kind(value)
    if "section_depth" in live:
        depth = live["section_depth"]
        if type(depth) is not int or not 0 <= depth <= MAX_SECTION_DEPTH:
            raise ConfigError(
                f"{where}: live.section_depth must be a whole number from 0 to "
                f"{MAX_SECTION_DEPTH}, not {depth!r}"
            )
        out["section_depth"] = depth
    if "ttl" in live:
        ttl = {g: parse_duration(v, "ttl") for g, v in DEFAULT_TTL.items()}
        if not isinstance(live["ttl"], dict):
            raise ConfigError(f"{where}: live.ttl must be a table")
        for gran, value in live["ttl"].items():
            if gran not in GRANULARITIES:
                names = ", ".join(GRANULARITY_NAMES)
                raise ConfigError(f"{where}: live.ttl.{gran}: not one of {names}")
            ttl[gran] = parse_duration(value, f"{where}: live.ttl.{gran}")
        out["ttl"] = ttl
    return out


def _rollup_section(rollup: Any, where: str) -> dict[str, Any]:
    if not isinstance(rollup, dict):
        raise ConfigError(f"{where}: [rollup] must be a table")
    for key in rollup:
        if key != "max_members":
            raise ConfigError(f"{where}: unknown setting rollup.{key}")
    if "max_members" not in rollup:
        return {}
    value = rollup["max_members"]
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{where}: rollup.max_members must be a positive whole number")
    return {"rollup_max_members": value}


def _serve_section(serve: Any, where: str) -> dict[str, Any]:
    if not isinstance(serve, dict):
        raise ConfigError(f"{where}: [serve] must be a table")
    for key in serve:
        if key != "metrics_sites":
            raise ConfigError(f"{where}: unknown setting serve.{key}")
    if "metrics_sites" not in serve:
        return {}
    value = serve["metrics_sites"]
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10_000:
        raise ConfigError(f"{where}: serve.metrics_sites must be a whole number from 1 to 10000")
    return {"metrics_sites": value}


def _normalize_section(norm: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in norm:
        if key not in ("keep_query", "ignore_extensions", "count_bots"):
            raise ConfigError(f"{where}: unknown setting normalize.{key}")
    for key in ("keep_query", "ignore_extensions"):
        if key in norm:
            value = norm[key]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}: normalize.{key} must be a list of strings")
            out[key] = tuple(value)
    if "ignore_extensions" in out:
        out["ignore_extensions"] = tuple(
            e.lower() if e.startswith(".") else "." + e.lower() for e in out["ignore_extensions"]
        )
    if "count_bots" in norm:
        if not isinstance(norm["count_bots"], bool):
            raise ConfigError(f"{where}: normalize.count_bots must be true or false")
        out["count_bots"] = norm["count_bots"]
    return out


def check_store_url(config: Config) -> None:
    """The store URL as SQLAlchemy reads it (`config check`: the reports, which import
    SQLAlchemy only for past days, do not pay for it)."""
    problem = store_url_problem(config.store) if config.store else ""
    if problem:
        raise ConfigError(f"store {mask_url(config.store)!r}: {problem}")


def _privacy_section(privacy: Any, where: str) -> dict[str, Any]:
    if not isinstance(privacy, dict):
        raise ConfigError(f"{where}: [privacy] must be a table")
    for key, value in privacy.items():
        if key not in ("secret", "secret_file", "count_clients", "store_clients"):
            raise ConfigError(f"{where}: unknown setting privacy.{key}")
        if key in ("count_clients", "store_clients"):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: privacy.{key} must be true or false")
        elif not isinstance(value, str):
            raise ConfigError(f"{where}: privacy.{key} must be a string")
    if privacy.get("secret") and privacy.get("secret_file"):
        raise ConfigError(f"{where}: give privacy.secret or privacy.secret_file, not both")
    if privacy.get("secret") and len(privacy["secret"].encode()) < MIN_SECRET:
        raise ConfigError(f"{where}: privacy.secret is shorter than {MIN_SECRET} bytes")
    return dict(privacy)


def validate(config: Config) -> None:
    """Check the settings as a whole: time zone, site, URLs. What only compiling can check
    (the log format, the routes) is checks.check_compiles()'s."""
    if config.timezone:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(config.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"timezone {config.timezone!r} is not a known IANA zone") from None
    if not config.site or any(c in config.site for c in "{}"):
        raise ConfigError(f"site {config.site!r} must be non-empty and contain no braces")
    problem = redis_url_problem(config.redis) if config.redis else ""
    if problem:
        raise ConfigError(f"redis {mask_url(config.redis)!r}: {problem}")
    if config.store and "://" not in config.store:
        raise ConfigError(
            f"store {mask_url(config.store)!r}: not an SQLAlchemy URL like "
            "sqlite:////path/logcount.db or postgresql+psycopg://user@host/db"
        )
