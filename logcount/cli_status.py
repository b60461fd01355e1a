"""The command line of the readers' health: `status` (the running readers, their rates,
lag, spool and losses) and `malformed` (the last lines that did not parse), added to
logcount.cli's group."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from logcount.cli_common import Settings, domain_errors, emit, pass_settings, table_or_json


@click.command()
@table_or_json
@pass_settings
@domain_errors
def status(settings: Settings, fmt: str) -> None:
    """Running readers (pipe, tail) with their rates, lag and spool."""
    from logcount.read.api import Counts
    from logcount.read.render import dump_json, safe_text

    readers = Counts.from_settings(settings.load()).readers()
    terminal = sys.stdout.isatty()
    if fmt == "json":
        emit(dump_json(readers, terminal) + "\n")
        return
    if not readers:
        click.echo("no running readers")
        return
    now = time.time()
    click.echo(
        f"{'host':<16} {'pid':>7} {'mode':<5} {'lines':>11} {'lines/s':>9} "
        f"{'malformed':>16} {'lag':>7} {'flushed':>8} {'spool':>7}  state"
    )
    for r in readers:
        # Heartbeats come from every host writing to this Redis (hosts, file paths, error
        # texts): escaped like any other text before they reach a terminal.
        ago = f"{now - r['last_flush']:.0f}s ago" if r.get("last_flush") else "never"
        state = safe_text(str(r.get("error") or ("stopped" if r.get("stopped") else "ok")))
        # The spool directory's size: its batch count would miss files being replayed.
        spool = _size(r["spool_bytes"]) if "spool_bytes" in r else r.get("spooled", 0)
        click.echo(
            f"{safe_text(str(r['host']))[:16]:<16} {r['pid']:>7} {safe_text(str(r['mode'])):<5} "
            f"{r['lines']:>11,} "
            f"{r['rate']:>9,.0f} {_malformed(r):>16} {r['lag']:>7} {ago:>8} "
            f"{spool:>7}  {state}"
        )
        for f in r.get("files", []):
            click.echo(
                f"    {safe_text(str(f['path']))} -> {safe_text(str(f.get('target', f['path'])))} "
                f"offset {f['offset']:,} "
                f"lag {f.get('lag_bytes', 0):,} bytes"
            )
        if r.get("delivery"):
            click.echo(f"    delivery: {safe_text(str(r['delivery']))}")
        lost = _losses(r)
        if lost:
            click.echo(f"    {lost}")


@click.command()
@click.option("--site", "-s", default=None, help="Virtual host (default: the configured site).")
@table_or_json
@pass_settings
@domain_errors
def malformed(settings: Settings, site: str | None, fmt: str) -> None:
    """The last lines that did not parse (20 kept per site), newest first."""
    from logcount.read.api import Counts
    from logcount.read.render import dump_json, safe_text

    counts = Counts.from_settings(settings.load())
    lines = counts.malformed(site)
    terminal = sys.stdout.isatty()
    if fmt == "json":
        emit(dump_json({"site": site or counts.site, "lines": lines}, terminal) + "\n")
    elif not lines:
        click.echo(f"no malformed lines kept for site {safe_text(site or counts.site)}")
    else:
        # Every byte of a log line is the client's: escaped before it reaches a terminal.
        emit("".join(f"{safe_text(line) if terminal else line}\n" for line in lines))


def _malformed(reader: dict[str, Any]) -> str:
    """Malformed lines and their share of the lines read: `1,234 (61.7%)`."""
    total = reader["lines"] + reader["malformed"]
    share = reader["malformed"] / total if total else 0.0
    return f"{reader['malformed']:,} ({share:.1%})"


def _size(n: int) -> str:
    """Bytes in at most 4 characters or so: 0, 512, 8.4k, 12M, 268M, 5.0G."""
    value = float(n)
    for unit in ("", "k", "M"):
        if value < 1000:
            return f"{value:.0f}{unit}" if unit == "" or value >= 10 else f"{value:.1f}{unit}"
        value /= 1000
    return f"{value:.1f}G" if value < 10 else f"{value:.0f}G"


def _losses(r: dict[str, Any]) -> str:
    """What a reader could not keep (spool full, batches Redis refused, bad spool lines)."""
    parts = []
    if r.get("dropped_batches"):
        whole = (
            f", {r['dropped_lines']:,} lines with their totals" if r.get("dropped_lines") else ""
        )
        parts.append(
            f"dropped {r['dropped_batches']:,} batches ({r.get('dropped_bytes', 0):,} bytes"
            f"{whole}): spool full or unwritable"
        )
    if r.get("rejected_batches"):
        parts.append(
            f"rejected by Redis {r['rejected_batches']:,} batches "
            f"({r.get('rejected_lines', 0):,} lines), kept in .bad files"
        )
    if r.get("bad_spool_lines"):
        parts.append(f"{r['bad_spool_lines']:,} unreadable spool lines, kept in .bad files")
    return "; ".join(parts)
