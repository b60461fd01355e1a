"""ARCHITECTURE.md's table of which part may import which, checked against every import of
logcount/ (those inside functions too)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "logcount"
ALWAYS = {"__version__"}  # names the package itself exports


def parts() -> dict[str, str]:
    """module -> part, from ARCHITECTURE.md's first table."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    table = text.split("## The parts", 1)[1].split("\n## ", 1)[0]
    out = {}
    for row in re.findall(r"^\| (\w[\w ]*?) \| (.+?) \| .+ \|$", table, re.MULTILINE):
        part, modules = row
        for module in re.findall(r"`(\w+)(?:\.c)?`", modules):
            out[module] = part
    return out


def allowed() -> dict[str, set[str]]:
    """part -> the parts (and single modules, in backquotes) it may import."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    table = text.split("## Which part may import which", 1)[1].split("\n## ", 1)[0]
    out: dict[str, set[str]] = {}
    for part, may in re.findall(r"^\| (\w[\w ]*?) \| (.+?) \|$", table, re.MULTILINE):
        if part == "part":
            continue
        names = {n.strip().strip("`").split(" (")[0].strip("`") for n in may.split(",")}
        out[part] = names
    return out


def imports(path: Path) -> set[str]:
    """The logcount modules `path` imports, wherever in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "logcount":
                found.update(a.name for a in node.names)
            elif node.module.startswith("logcount."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("logcount."))
    return found - ALWAYS


# Imports that break the table today, each with the work that removes it.
KNOWN: dict[tuple[str, str], str] = {}


def test_every_module_has_a_part() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")} | {"_scan"}
    assert modules == set(parts())


def test_imports_follow_the_table() -> None:
    part_of, may = parts(), allowed()
    broken = set()
    for path in PACKAGE.glob("*.py"):
        mine = part_of[path.stem]
        if "everything" in may[mine]:
            continue
        for target in imports(path):
            if target == path.stem or target in may[mine] or part_of[target] in may[mine]:
                continue
            broken.add((path.stem, target))
    assert broken - set(KNOWN) == set(), "imports against ARCHITECTURE.md"
    assert set(KNOWN) - broken == set(), "fixed: take them out of KNOWN"
