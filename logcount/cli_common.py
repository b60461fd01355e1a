"""What the commands share: the global settings, one-line errors, the window options,
the output formats and how a report is written."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from logcount.config import Config
from logcount.count.checks import load_checked
from logcount.errors import LogcountError

FORMATS: click.Choice = click.Choice(["table", "json", "csv"])
# `--format table|json|csv`, for the reports of rows
format_option = click.option(
    "--format", "-f", "fmt", type=FORMATS, default="table", show_default=True
)
# `--format table|json`, for the commands whose output is no table of rows (status, ...)
table_or_json = click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)


class Settings:
    """Global options, resolved into a Config on first use."""

    def __init__(self, **options: Any):
        self.options = options
        self.defaults: dict[str, str] = {}  # a command's own (see config.load_config)
        self._config: Config | None = None

    def load(self) -> Config:
        if self._config is None:
            opts = dict(self.options)
            self._config = load_checked(opts.pop("config"), self.defaults, **opts)
        return self._config

    def loader(self) -> Callable[[], Config]:
        opts, defaults = dict(self.options), dict(self.defaults)

        def load() -> Config:
            local = dict(opts)
            return load_checked(local.pop("config"), defaults, **local)

        return load


def domain_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A LogcountError becomes `Error: <one line>` and its exit code, never a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LogcountError as exc:
            err = click.ClickException(str(exc))
            err.exit_code = exc.exit_code  # type: ignore[misc]
            raise err from None

    return wrapper


pass_settings: Callable[..., Any] = click.make_pass_decorator(Settings)


def window_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for decorator in reversed(
        [
            click.option(
                "--window",
                "-w",
                default="today",
                show_default=True,
                help="5m 15m 1h 6h 24h today yesterday 7d 30d YYYY-MM-DD[..YYYY-MM-DD]",
            ),
            click.option(
                "--site", "-s", default=None, help="Virtual host (default: the configured site)."
            ),
        ]
    ):
        fn = decorator(fn)
    return fn


def emit(text: str) -> None:
    """Write a report as it is: click.echo would strip what looks like an ANSI sequence
    from redirected output, and a CSV or JSON file must hold the real value (what could
    harm a terminal was escaped already when the output is one)."""
    click.echo(text, nl=False, color=True)


def emit_report(
    fmt: str,
    report: Any,
    as_json: Callable[[Any, bool], str],
    as_csv: Callable[[Any, bool], str],
    as_table: Callable[[Any, int, bool], str],
) -> None:
    """`report` on stdout in the --format asked: JSON (and its newline), CSV, or a table
    as wide as the terminal; each escaped for a terminal when stdout is one."""
    width, terminal = terminal_width(sys.stdout)
    if fmt == "json":
        emit(as_json(report, terminal) + "\n")
    elif fmt == "csv":
        emit(as_csv(report, terminal))
    else:
        emit(as_table(report, width, terminal))


def terminal_width(stream: Any) -> tuple[int, bool]:
    """(width, is a terminal): a terminal's own width; 100 columns of plain text otherwise."""
    import shutil

    if stream.isatty():
        return shutil.get_terminal_size((100, 24)).columns, True
    return 100, False
