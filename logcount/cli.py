"""The command line: parse options, call one library function, turn errors into one line."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from logcount import __version__
from logcount.cli_common import (
    Settings,
    domain_errors,
    emit,
    emit_report,
    format_option,
    pass_settings,
    terminal_width,
    window_options,
)
from logcount.dimensions import DIMENSION_NAMES, SORT_NAMES

DIMENSION = click.Choice(DIMENSION_NAMES)


class OneLineErrors(click.Group):
    """A usage error (bad flag, bad value) is one `Error: ...` line too, not click's
    usage block: the exit code (2) and the hint to --help say the rest."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _one_line(exc) from None


def _one_line(exc: click.UsageError) -> click.ClickException:
    if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):
        return exc  # `logcount` alone prints the help
    where = exc.ctx.command_path if exc.ctx is not None else "logcount"
    err = click.ClickException(f"{exc.format_message()} (see '{where} --help')")
    err.exit_code = exc.exit_code  # type: ignore[misc]
    return err


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="logcount")
# No envvar here: load_config reads $LOGCOUNT_CONFIG itself, to name it in its errors.
@click.option(
    "--config",
    "config",
    metavar="FILE",
    help="TOML config file (default: $LOGCOUNT_CONFIG, /etc/logcount.toml, then "
    "~/.config/logcount/logcount.toml).",
)
@click.option(
    "--redis",
    envvar="LOGCOUNT_REDIS",
    metavar="URL",
    help="redis://, rediss:// or unix:// URL (default: embedded Redis in the data dir).",
)
@click.option(
    "--store",
    envvar="LOGCOUNT_STORE",
    metavar="URL",
    help="SQLAlchemy URL of the durable store (default: SQLite in the data dir).",
)
@click.option(
    "--data-dir",
    envvar="LOGCOUNT_DATA_DIR",
    metavar="DIR",
    help="Where the embedded Redis, SQLite store and spool files live.",
)
@click.option(
    "--log-format",
    envvar="LOGCOUNT_LOG_FORMAT",
    metavar="FMT",
    help="Apache LogFormat string or nickname (common, combined, vhost_combined, ...).",
)
@click.pass_context
def cli(ctx: click.Context, **options: Any) -> None:
    """Count web-server access logs: live into Redis, durably into SQL."""
    ctx.obj = Settings(**options)


@cli.command()
@click.option("--user", metavar="NAME", help="Drop root privileges to this user after start-up.")
@pass_settings
def pipe(settings: Settings, user: str | None) -> None:
    """Read access-log lines on stdin (Apache's CustomLog "|...") and count them live.

    Exits 0 at EOF only; never blocks its writer; on a set-up error it says so once on
    stderr and keeps draining stdin.
    """
    import signal

    # Apache may SIGTERM us before we are ready: held until the supervisor handles them.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
    from logcount.sources.supervisor import Supervisor

    sys.exit(Supervisor(settings.loader(), user=user).run())


@cli.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option(
    "--from-start/--from-end",
    default=False,
    show_default=True,
    help="Where to begin in a file never read before (default: its end).",
)
@click.option("--poll", is_flag=True, help="Poll files instead of inotify events.")
@pass_settings
@domain_errors
def tail(settings: Settings, paths: tuple[str, ...], from_start: bool, poll: bool) -> None:
    """Follow log files through rotation and count each line once (SIGTERM: flush, exit)."""
    from logcount.sources.tail import Tailer

    sys.exit(Tailer(settings.load(), paths, from_start=from_start, poll=poll).run())


@cli.command()
@window_options
@click.option(
    "--since",
    metavar="DATETIME",
    help="Start of the window (YYYY-MM-DD[THH:MM[:SS]], the configured zone).",
)
@click.option("--until", metavar="DATETIME", help="End of the window (default: now).")
@click.option("--by", "-b", type=DIMENSION, default="path", show_default=True)
@click.option(
    "--status",
    metavar="CODE|CLASS",
    help="With --by path: the paths of one status (404) or class (4xx).",
)
@click.option("--limit", "-n", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option(
    "--sort",
    type=click.Choice(SORT_NAMES),
    default="hits",
    show_default=True,
    help="Rank rows by hits, bytes or time (the sum of response times: %D, %T).",
)
@click.option(
    "--depth",
    type=int,
    metavar="N",
    help="With --by path: sections, paths rolled up to their first N segments (/blog/).",
)
@click.option(
    "--metric",
    metavar="A/B",
    help="Show a ratio of two totals per row: bytes/hits, time/hits, s5xx/hits, ...",
)
@click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(["table", "json", "csv", "html"]),
    default="table",
    show_default=True,
    help="html: the dashboard's page as one self-contained file, a panel per dimension.",
)
@click.option(
    "--watch",
    type=click.FloatRange(min=0.2),
    is_flag=False,
    flag_value=2.0,
    default=None,
    metavar="[SECONDS]",
    help="Redraw in place every SECONDS (default 2) until q or Ctrl-C.",
)
@click.option("--recent", is_flag=True, help="The last --limit requests, newest first.")
@pass_settings
@domain_errors
def top(
    settings: Settings,
    window: str,
    site: str | None,
    since: str | None,
    until: str | None,
    by: str,
    status: str | None,
    limit: int,
    sort: str,
    depth: int | None,
    metric: str | None,
    fmt: str,
    watch: float | None,
    recent: bool,
) -> None:
    """The most requested paths (objects, statuses, ...) in a window."""
    from logcount.read.api import Counts
    from logcount.read.render import recent_csv, recent_json, recent_table, top_csv, top_json

    if watch is not None and (depth is not None or metric is not None):
        raise click.UsageError("--watch shows paths as counted; --depth and --metric print once")
    if watch is not None and fmt != "table":
        raise click.UsageError("--watch redraws a table; use --format table (the default)")
    counts = Counts.from_settings(settings.load())
    if watch is not None:
        from logcount.read.watch import watch_top

        sys.exit(
            watch_top(
                counts,
                watch,
                window=window,
                by=by,
                limit=limit,
                site=site,
                since=since,
                until=until,
                recent=recent,
                status=status,
                sort=sort,
            )
        )
    # To a terminal, CSV and JSON are escaped like a table; elsewhere they hold the exact
    # values, which `emit` writes without click's stripping of escape sequences.
    width, terminal = terminal_width(sys.stdout)
    if fmt == "html":
        if depth is not None or metric is not None:
            raise click.UsageError(
                "--format html draws every dimension; not with --depth or --metric"
            )
        from logcount.serve.page import html_report

        emit(html_report(counts, window, site, since, until, limit, sort))
        return
    if recent:
        items = counts.recent(limit, site)
        if fmt == "json":
            emit(recent_json(site or counts.site, items, terminal) + "\n")
        elif fmt == "csv":
            emit(recent_csv(items, terminal))
        else:
            emit(recent_table(site or counts.site, items, width, terminal))
        return
    report = counts.report(
        window=window,
        by=by,
        limit=limit,
        site=site,
        since=since,
        until=until,
        status=status,
        sort=sort,
        depth=depth,
        metric=metric,
    )
    if fmt == "json":
        emit(top_json(report, terminal) + "\n")
    elif fmt == "csv":
        emit(top_csv(report, terminal))
    else:
        from logcount.read.render import top_table

        note = _other_sites(counts, report, site, window, since, until)
        emit(top_table(report, width, terminal, empty=note or "(no hits in this window)"))
        return
    note = _other_sites(counts, report, site, window, since, until)
    if note:
        click.echo(note, err=True)


def _other_sites(
    counts: Any,
    report: dict[str, Any],
    site: str | None,
    window: str,
    since: str | None,
    until: str | None,
) -> str:
    """With no --site and no hits for the configured site: which sites have some."""
    if site is not None or report["rows"] or report["total"]["hits"]:
        return ""
    from logcount.read.render import other_sites_note

    others = counts.other_sites(window, None, since, until)
    return other_sites_note(report["site"], others) if others else ""


@cli.command()
@format_option
@pass_settings
@domain_errors
def sites(settings: Settings, fmt: str) -> None:
    """The sites (virtual hosts) seen, live and in the store, with today's hits."""
    from logcount.read.api import Counts
    from logcount.read.render import dump_json, sites_csv, sites_table

    rows = Counts.from_settings(settings.load()).sites()
    emit_report(fmt, rows, lambda r, t: dump_json({"sites": r}, t), sites_csv, sites_table)


@cli.command()
@click.argument("path", required=False)
@click.option("--object", "obj", metavar="TYPE:ID", help="An object (from the routes).")
@click.option("--prefix", metavar="PATH", help="A whole section: every path under PATH.")
@click.option("--days", "-d", type=click.IntRange(1, 3660), default=30, show_default=True)
@click.option("--site", "-s", default=None, help="Virtual host (default: the configured site).")
@format_option
@pass_settings
@domain_errors
def hits(
    settings: Settings,
    path: str | None,
    obj: str | None,
    prefix: str | None,
    days: int,
    site: str | None,
    fmt: str,
) -> None:
    """Hits of one PATH (or --object TYPE:ID, or a section: --prefix PATH) today and per
    day: rolled-up days from the store, the rest from the live counters."""
    from logcount.read.api import Counts
    from logcount.read.render import hits_csv, hits_json, hits_table

    if [path, obj, prefix].count(None) != 2:
        raise click.UsageError("give a PATH, --object TYPE:ID or --prefix PATH (one of them)")
    if obj is not None and ":" not in obj.strip(":"):
        raise click.BadParameter(f"{obj!r} is not TYPE:ID", param_hint="--object")
    counts = Counts.from_settings(settings.load())
    if prefix is not None:
        report = counts.section_hits(prefix, days, site)
    else:
        report = counts.hits(path, obj, days, site)
    emit_report(fmt, report, hits_json, hits_csv, hits_table)


@cli.command()
@click.option(
    "--date",
    "day",
    type=click.DateTime(["%Y-%m-%d"]),
    metavar="YYYY-MM-DD",
    help="The day to roll up (default: yesterday).",
)
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d"]),
    metavar="YYYY-MM-DD",
    help="First day of a backfill.",
)
@click.option(
    "--until",
    type=click.DateTime(["%Y-%m-%d"]),
    metavar="YYYY-MM-DD",
    help="Last day of a backfill (default: yesterday).",
)
@click.option(
    "--logs",
    "specs",
    multiple=True,
    metavar="TEMPLATE|FILE|GLOB",
    help="strftime template (cronolog style) or files/globs read whole "
    "(default: `logs` of the config). Repeatable.",
)
@click.option("--allow-missing", is_flag=True, help="A missing day's file is only a warning.")
@click.option("--quiet", "-q", is_flag=True, help="Nothing but errors (cron).")
@click.option("--host", metavar="NAME", help="Host the files come from (default: this host).")
@click.option("--jobs", "-j", type=click.IntRange(1, 256), help="Processes (default: all cores).")
@pass_settings
@domain_errors
def rollup(
    settings: Settings,
    day: Any,
    since: Any,
    until: Any,
    specs: tuple[str, ...],
    allow_missing: bool,
    quiet: bool,
    host: str | None,
    jobs: int | None,
) -> None:
    """Re-read rotated log files and store per-day counts durably (idempotent per file)."""
    from logcount.sources.rollup import run_command

    show = not quiet and sys.stderr.isatty()
    done = run_command(
        settings.load(),
        list(specs),
        day,
        since,
        until,
        allow_missing=allow_missing,
        host=host,
        jobs=jobs,
        show_progress=show,
    )
    if show:
        click.echo(done, err=True)


# The log format of `report` when none is given (flag, environment or config file): told
# from the first lines of its first input (count.detect).
REPORT_LOG_FORMAT = "auto"


@cli.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--limit", "-n", type=click.IntRange(1, 10_000), default=10, show_default=True)
@click.option("--site", "-s", default=None, help="One virtual host (default: every site).")
@format_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--jobs", "-j", type=click.IntRange(1, 256), help="Processes (default: all cores).")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the report as one self-contained HTML page (the dashboard's) to this file.",
)
@pass_settings
@domain_errors
def report(
    settings: Settings,
    files: tuple[str, ...],
    limit: int,
    site: str | None,
    fmt: str,
    quiet: bool,
    jobs: int | None,
    output: str | None,
) -> None:
    """A one-shot report of log files (plain or .gz/.bz2/.xz; - for standard input):
    counted in memory, no Redis or store needed."""
    from logcount.read.file_report import report_csv, report_json, report_table
    from logcount.sources.one_shot import report_files

    settings.defaults["log_format"] = REPORT_LOG_FORMAT
    show = not quiet and sys.stderr.isatty()
    built = report_files(settings.load(), list(files), limit, site, jobs, show)
    if output is not None:
        from logcount.read.file_report import as_dashboard
        from logcount.serve.page import static_html

        reports, series = as_dashboard(built)
        page = static_html(reports, series, title=f"logcount: {', '.join(files)}")
        try:
            with open(output, "w", encoding="utf-8") as out:
                out.write(page)
        except OSError as exc:
            raise click.ClickException(f"cannot write {output}: {exc.strerror}") from None
    else:
        emit_report(fmt, built, report_json, report_csv, report_table)


@cli.command()
@click.option(
    "--bind",
    default="127.0.0.1:8087",
    show_default=True,
    envvar="LOGCOUNT_BIND",
    metavar="HOST:PORT",
    help="Where to listen (loopback by default).",
)
@click.option(
    "--token-file",
    envvar="LOGCOUNT_TOKEN_FILE",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Every request needs `Authorization: Bearer <the file's content>`.",
)
@click.option(
    "--cors-origin",
    envvar="LOGCOUNT_CORS_ORIGIN",
    metavar="ORIGIN",
    help="The one origin (https://admin.example.org) whose pages may read the API.",
)
@click.option(
    "--workers",
    envvar="LOGCOUNT_SERVE_WORKERS",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Server processes on the one socket (up to one per core).",
)
@pass_settings
@domain_errors
def serve(
    settings: Settings,
    bind: str,
    token_file: str | None,
    cors_origin: str | None,
    workers: int,
) -> None:
    """A read-only web dashboard, JSON API (/openapi.json) and Prometheus /metrics."""
    from logcount.read.api import Counts
    from logcount.serve.run import read_token, serve

    token = read_token(token_file) if token_file else None
    counts = Counts.from_settings(settings.load())
    sys.exit(serve(counts, bind, token, cors_origin, workers))


@cli.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("check")
@pass_settings
@domain_errors
def config_check(settings: Settings) -> None:
    """Validate the configuration and print it, secrets masked."""
    from logcount.config import check_store_url

    config = settings.load()
    check_store_url(config)
    if config.store and not config.store.startswith("sqlite:"):
        from logcount.sinks.store import check_driver

        check_driver(config.store)
    click.echo(json.dumps(config.masked(), indent=2))
    click.echo(f"configuration OK ({len(config.routes)} routes)", err=True)


@cli.group("embedded")
def embedded_group() -> None:
    """The embedded Redis server in the data directory."""


@embedded_group.command("stop")
@pass_settings
@domain_errors
def embedded_stop(settings: Settings) -> None:
    """Shut the embedded Redis down (it is started again on demand)."""
    from logcount.sinks.embedded import stop_embedded

    data_dir = settings.load().resolved_data_dir()
    click.echo("stopped" if stop_embedded(data_dir) else "not running")


# The commands about who did what (events), and about the readers' health: their own
# modules, on this group.
from logcount.cli_journeys import funnel, retention, visitors  # noqa: E402
from logcount.cli_status import malformed, status  # noqa: E402

for _command in (status, malformed, visitors, funnel, retention):
    cli.add_command(_command)


def main() -> None:
    _hide_passwords_in_title()
    cli(prog_name="logcount")


def _hide_passwords_in_title() -> None:
    """`--redis redis://:PW@host` given on the command line would show in `ps` and
    /proc/PID/cmdline to every user of the machine, for as long as a reader runs: the
    process title is rewritten with its URLs masked (a reader's child inherits it)."""
    shown = [_masked_argument(arg) for arg in sys.argv]
    if shown != sys.argv:
        import setproctitle

        setproctitle.setproctitle(" ".join(shown))


def _masked_argument(arg: str) -> str:
    from logcount.config import mask_url

    if "://" not in arg:
        return arg
    name, eq, value = arg.partition("=")
    if eq and name.startswith("--"):
        return f"{name}={mask_url(value)}"
    return mask_url(arg)


if __name__ == "__main__":
    main()
