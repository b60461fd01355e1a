"""The files a rollup reads: templates and globs expanded, compressed files opened, and a
large file cut into ranges that start at line starts (one unit of work each)."""

from __future__ import annotations

import bz2
import glob
import gzip
import lzma
import os
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

SPLIT_MIN = 16 << 20  # an uncompressed file this large is shared between processes,
RANGE = 8 << 20  # in ranges of about this size, up to PER_JOB per process: a busy core
PER_JOB = 16  # then takes fewer of them instead of holding the others up. The counters
# end at most a range apart, while the parent waits with a core idle: a range of a diverse
# day is ~0.1 s of CPU (at 24 MB, 4 per process, they ended 0.13 - 0.7 s apart); a
# counter goes on with its next range of the file without handing anything over.
TAIL = 1 << 20  # the file's last TAIL_UNITS units per process are this small (see
TAIL_UNITS = 4  # split_units): the counters then end about 10 ms of counting apart
COMPRESSED = (".gz", ".bz2", ".xz")
_STRFTIME = re.compile(r"%[a-zA-Z]")


@dataclass(frozen=True)
class Input:
    path: str
    day: date | None  # the day the template gave this file; None for explicit files


@dataclass(frozen=True)
class Unit:
    """A piece of work: a whole file, or a byte range of an uncompressed one."""

    input: Input
    start: int
    end: int | None  # None: to the end
    tail: bool = False  # one of the file's last small units (see split_units)


def is_template(spec: str) -> bool:
    return bool(_STRFTIME.search(spec))


def resolve_inputs(specs: list[str], days: list[date]) -> tuple[list[Input], list[str]]:
    """Templates expanded per day, globs expanded; returns (inputs, missing descriptions)."""
    inputs: list[Input] = []
    missing: list[str] = []
    seen: set[str] = set()
    for spec in specs:
        if is_template(spec):
            for day in days:
                path = _existing(day.strftime(spec))
                if path is None:
                    missing.append(f"no log file for {day.isoformat()}: {day.strftime(spec)}")
                elif path not in seen:
                    seen.add(path)
                    inputs.append(Input(path, day))
            continue
        matched = (
            sorted(glob.glob(os.path.expanduser(spec)))
            if glob.has_magic(spec)
            else ([spec] if os.path.exists(spec) else [])
        )
        if not matched:
            missing.append(f"no log file matches {spec}")
        for path in matched:
            if path not in seen and not os.path.isdir(path):
                seen.add(path)
                inputs.append(Input(path, None))
    return inputs, missing


def _existing(path: str) -> str | None:
    """The file, or its compressed form (a rotated log may have been compressed since)."""
    for candidate in (path, *(path + ext for ext in COMPRESSED)):
        if os.path.isfile(candidate):
            return candidate
    return None


def source_name(path: str) -> str:
    """A file's identity in the store: its absolute path without a compression suffix, so a
    log compressed after its rollup (access.log -> access.log.gz) replaces its own rows."""
    path = os.path.abspath(path)
    for ext in COMPRESSED:
        if path.endswith(ext):
            return path[: -len(ext)]
    return path


def split_units(inp: Input, jobs: int) -> list[Unit]:
    """Cut a large uncompressed file into ranges that start at line starts: its last
    jobs * TAIL_UNITS * TAIL bytes into units of TAIL, so that the counters end together
    and each has only a small unit's counts to classify after its last line (a counter
    classifies what it holds before each such unit, see rollup_count.count_at): the
    parent's serial work at the end, merging and writing, begins that much earlier."""
    size = os.path.getsize(inp.path)
    if jobs <= 1 or size < SPLIT_MIN or inp.path.endswith(COMPRESSED):
        return [Unit(inp, 0, None)]
    parts = max(jobs, min(jobs * PER_JOB, size // RANGE))
    tail = size - min(size // 2, jobs * TAIL_UNITS * TAIL)
    starts = [size * i // parts for i in range(1, parts) if size * i // parts < tail]
    starts += range(tail, size, TAIL)
    cuts = [0]
    with open(inp.path, "rb") as f:
        for start in starts:
            f.seek(start)
            pos = _past_newline(f)
            if cuts[-1] < pos < size:
                cuts.append(pos)
    return [Unit(inp, a, b, tail=a > tail) for a, b in zip(cuts, [*cuts[1:], None], strict=True)]


def _past_newline(f: Any) -> int:
    """The offset just past the next newline (or the end), read in blocks: a cut that
    falls inside a line of 50 MB must not hold the line (readline would)."""
    while True:
        block = f.read(1 << 16)
        if not block:
            return int(f.tell())
        found = block.find(b"\n")
        if found >= 0:
            return int(f.tell()) - len(block) + found + 1


def open_log(path: str) -> Any:
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.endswith(".bz2"):
        return bz2.open(path, "rb")
    if path.endswith(".xz"):
        return lzma.open(path, "rb")
    return open(path, "rb", buffering=0)
