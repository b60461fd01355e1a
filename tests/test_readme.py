"""Every command of the CLI (subcommands of groups included) is documented in README.md:
the README shows it as "logcount <command>", e.g. "logcount config check"."""

from __future__ import annotations

import re
from collections.abc import Iterator

import click

from logcount.cli import cli
from logcount.dimensions import DIMENSIONS
from tests.conftest import ROOT


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[str]:
    """Every command a user can run, as typed after "logcount"; a group's own name is
    covered by its commands."""
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        if isinstance(command, click.Group):
            yield from command_paths(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name))


def test_the_walk_finds_the_known_commands() -> None:
    paths = set(command_paths(cli))
    assert {"pipe", "top", "status", "config check", "embedded stop"} <= paths
    assert "config" not in paths


def test_every_command_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [
        path
        for path in command_paths(cli)
        if not re.search(rf"\blogcount {re.escape(path)}(?![\w-])", readme)
    ]
    assert not missing, f"README.md does not show: {', '.join('logcount ' + p for p in missing)}"


def test_the_dimensions_table_is_the_code_s() -> None:
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \| (yes|no) \|$", readme, re.MULTILINE)
    listed = [d for d in DIMENSIONS.values() if d.listed]
    assert rows == [(d.name, d.member, "yes" if d.visitors else "no") for d in listed]
    synopsis = re.search(r"logcount top .*\[--by ([\w|]+)\]", readme)
    assert synopsis is not None
    assert tuple(synopsis.group(1).split("|")) == tuple(d.name for d in listed)
