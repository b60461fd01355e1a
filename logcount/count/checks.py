"""What can only be checked by compiling it: the log format and the routes.

config.py reads and checks settings and compiles nothing; the command line (and a
reader reloading on SIGHUP) loads a configuration through load_checked(), which also
compiles what the engine will compile, so that a bad format or route is one line at start.
"""

from __future__ import annotations

from typing import Any

from logcount.config import Config, load_config


def check_compiles(config: Config) -> None:
    """Compile the log format and the routes; ConfigError on the first that does not.

    The built-in default format is known to compile (tests/test_config.py), and compiling
    it again would cost each `logcount top` importing apachelogs and building its regexes
    (~35 ms); nor can an empty route list be wrong."""
    # auto: the format is told from the first lines, and compiled then (count.detect)
    if config.log_format != "auto" and (
        config.log_format != Config.log_format or config.event_identity != "visitor"
    ):
        from logcount.count.events import identity_source
        from logcount.count.logformat import compile_format

        compile_format(config.log_format, ident=identity_source(config.event_identity))
    if config.routes:
        from logcount.count.routes import RouteTable

        RouteTable.from_config(config.routes)
    if config.events or config.event_identity != Config.event_identity:
        from logcount.count.events import check_identity, parse_events

        parse_events(config.events)
        check_identity(config.event_identity)


def load_checked(
    explicit: str | None = None, defaults: dict[str, str] | None = None, **overrides: Any
) -> Config:
    """load_config(), then check_compiles()."""
    config = load_config(explicit, defaults, **overrides)
    check_compiles(config)
    return config
