"""ARCHITECTURE.md's tables: every module of logcount/ belongs to one part (its package),
and every import (those inside functions too) follows which part may import which."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "logcount"
ALWAYS = {"__version__"}  # names the package itself exports


def module_id(path: Path) -> str:
    """logcount/count/aggregate.py -> "count.aggregate"; logcount/cli.py -> "cli"."""
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def parts() -> dict[str, str]:
    """module id -> part, from ARCHITECTURE.md's first table (package: modules)."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    table = text.split("## The parts", 1)[1].split("\n## ", 1)[0]
    out = {}
    for part, package, modules in re.findall(
        r"^\| (\w[\w ]*?) \| `(\w+)/`: (.+?) \| .+ \|$", table, re.MULTILINE
    ):
        prefix = "" if package == "logcount" else f"{package}."
        for module in re.findall(r"`(\w+)(?:\.c)?`", modules):
            out[prefix + module] = part
    return out


def allowed() -> dict[str, set[str]]:
    """part -> the parts (and single modules, in backquotes) it may import."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    table = text.split("## Which part may import which", 1)[1].split("\n## ", 1)[0]
    out: dict[str, set[str]] = {}
    for part, may in re.findall(r"^\| (\w[\w ]*?) \| (.+?) \|$", table, re.MULTILINE):
        if part == "part":
            continue
        out[part] = {n.split(" (")[0].strip().strip("`") for n in may.split(",")}
    return out


def imports(path: Path) -> set[str]:
    """The logcount modules `path` imports, wherever in it, as module ids."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "logcount":
                found.update(a.name for a in node.names)
            elif node.module.startswith("logcount."):
                inner = node.module.removeprefix("logcount.")
                if inner in {
                    "count",
                    "sinks",
                    "sources",
                    "read",
                    "serve",
                }:  # from a package, modules
                    found.update(f"{inner}.{a.name}" for a in node.names)
                else:
                    found.add(inner)
        elif isinstance(node, ast.Import):
            found.update(
                a.name.removeprefix("logcount.")
                for a in node.names
                if a.name.startswith("logcount.")
            )
    return found - ALWAYS


def modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent == PACKAGE]


# Imports that break the table today, each with the work that removes it.
KNOWN: dict[tuple[str, str], str] = {}


def test_every_module_has_a_part() -> None:
    found = {module_id(p) for p in modules()} | {f"count.{c.stem}" for c in PACKAGE.rglob("*.c")}
    assert found == set(parts())


def test_imports_follow_the_table() -> None:
    part_of, may = parts(), allowed()
    broken = set()
    for path in modules():
        me = module_id(path)
        mine = part_of[me]
        if "everything" in may[mine]:
            continue
        for target in imports(path):
            if target == me or target in may[mine] or part_of[target] in may[mine]:
                continue
            broken.add((me, target))
    assert broken - set(KNOWN) == set(), "imports against ARCHITECTURE.md"
    assert set(KNOWN) - broken == set(), "fixed: take them out of KNOWN"
