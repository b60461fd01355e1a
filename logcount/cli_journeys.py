"""The command line of events: `visitors`, `funnel`, `retention` (each one library call,
in logcount.read.api.Counts), added to logcount.cli's group."""

from __future__ import annotations

import click

from logcount.cli_common import (
    Settings,
    domain_errors,
    emit_report,
    format_option,
    pass_settings,
    window_options,
)


@click.command()
@click.argument("expr", metavar="EXPR")
@window_options
@click.option(
    "--per",
    type=click.Choice(["hour", "day", "week"]),
    help="Count per bucket of the window too (default: the whole window only).",
)
@format_option
@pass_settings
@domain_errors
def visitors(
    settings: Settings, expr: str, window: str, site: str | None, per: str | None, fmt: str
) -> None:
    """Distinct visitors of a set expression of events: 'login & song_played',
    'signup - paid', '(a | b) & c'."""
    from logcount.read.api import Counts
    from logcount.read.render import visitors_csv, visitors_json, visitors_table

    report = Counts.from_settings(settings.load()).visitors(expr, window, per, site)
    emit_report(fmt, report, visitors_json, visitors_csv, visitors_table)


@click.command()
@click.argument("events", nargs=-1, required=True, metavar="EVENT...")
@window_options
@click.option(
    "--within",
    metavar="SPAN",
    help="Each step at most this long after the one before: 1h, 1d, 7d (default: the window).",
)
@format_option
@pass_settings
@domain_errors
def funnel(
    settings: Settings,
    events: tuple[str, ...],
    window: str,
    site: str | None,
    within: str | None,
    fmt: str,
) -> None:
    """How many visitors did the first EVENT, of those how many did the next after it,
    and so on, with the drop at each step."""
    from logcount.read.api import Counts
    from logcount.read.render import funnel_csv, funnel_json, funnel_table

    report = Counts.from_settings(settings.load()).funnel(list(events), window, within, site)
    emit_report(fmt, report, funnel_json, funnel_csv, funnel_table)


@click.command()
@click.option("--event", "-e", metavar="EVENT", help="The event (default: any event).")
@click.option(
    "--cohort", type=click.Choice(["day", "week", "month"]), default="week", show_default=True
)
@click.option("--periods", "-n", type=click.IntRange(1, 60), default=8, show_default=True)
@click.option("--site", "-s", default=None, help="Virtual host (default: the configured site).")
@format_option
@pass_settings
@domain_errors
def retention(
    settings: Settings, event: str | None, cohort: str, periods: int, site: str | None, fmt: str
) -> None:
    """Cohorts: the visitors first seen doing EVENT in each period, and the share of them
    back in each later period."""
    from logcount.read.api import Counts
    from logcount.read.render import retention_csv, retention_json, retention_table

    report = Counts.from_settings(settings.load()).retention(event, cohort, periods, site)
    emit_report(fmt, report, retention_json, retention_csv, retention_table)
