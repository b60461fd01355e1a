"""`top --metric A/B`: two counted totals of each row (and of the window) as a ratio:
`bytes/hits` (bytes per request), `time/hits` (ms per request), `s5xx/hits` (the share of
server errors), `hits/visitors` (requests per visitor).

What a row counts depends on its dimension: hits and bytes always; visitors where kept
(rows from stored days); time where the window has response times (milliseconds); the
hits of a status class (`s4xx`, ...) for `--by status` (a row is in its class or not) and,
for the error classes, `--by path` (the drill-down's counts of that class, see drill.py).
A ratio whose parts a row does not have, or whose denominator is 0, is null.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from logcount.dimensions import ERROR_CLASSES
from logcount.errors import LogcountError

CLASS_FIELDS = tuple(f"s{n}xx" for n in "12345")
FIELDS = ("hits", "bytes", "visitors", "time", *CLASS_FIELDS, "bots", "malformed")
# The window's own totals only: a row (a path, an agent) has no bots or malformed lines.
TOTAL_ONLY = ("bots", "malformed")
_SPEC = re.compile(r"\A\s*(\w+)\s*/\s*(\w+)\s*\Z")


class MetricError(LogcountError):
    exit_code = 2  # a usage error, like click's


@dataclass(frozen=True)
class Metric:
    name: str  # "bytes/hits"
    numerator: str
    denominator: str

    def classes(self) -> list[str]:
        """The status classes (s5xx -> "5xx") whose per-row counts must be read."""
        return [f[1:] for f in (self.numerator, self.denominator) if f in CLASS_FIELDS]


def parse_metric(text: str, by: str) -> Metric:
    """`bytes/hits` checked against what rows of `by` count."""
    m = _SPEC.match(text)
    if not m:
        raise MetricError(f"--metric {text!r}: give two totals as A/B, e.g. bytes/hits")
    parts = (m.group(1).lower(), m.group(2).lower())
    for part in parts:
        if part not in FIELDS:
            raise MetricError(
                f"--metric {text!r}: unknown total {part!r} (use {', '.join(FIELDS)})"
            )
        if part in TOTAL_ONLY:
            raise MetricError(f"--metric {text!r}: rows have no {part} (only the window does)")
        if part in CLASS_FIELDS and not _class_per_row(part, by):
            raise MetricError(
                f"--metric {text!r}: {part} is kept per row for --by status, and for --by path "
                f"of the error classes ({', '.join(f's{c}xx' for c in ERROR_CLASSES)})"
            )
    return Metric(f"{parts[0]}/{parts[1]}", *parts)


def _class_per_row(field: str, by: str) -> bool:
    return by == "status" or (by == "path" and field[1] in ERROR_CLASSES)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 6)


def add_metric(
    report: dict[str, Any],
    metric: Metric,
    class_hits: Callable[[str], dict[str, int]],
) -> None:
    """Each row's ratio as `metric`, and the window's as `metric_total`; `class_hits("5xx")`
    gives the hits of that class per path (read only for --by path)."""
    by = report["by"]
    per_class = {c: class_hits(c) for c in metric.classes()} if by == "path" else {}
    for row in report["rows"]:
        value = {
            f: _row_value(row, f, by, per_class) for f in (metric.numerator, metric.denominator)
        }
        row["metric"] = ratio(value[metric.numerator], value[metric.denominator])
    total = report["total"]
    report["metric"] = metric.name
    report["metric_total"] = ratio(
        _total_value(total, metric.numerator), _total_value(total, metric.denominator)
    )


def _row_value(
    row: dict[str, Any], field: str, by: str, per_class: dict[str, dict[str, int]]
) -> float | None:
    if field == "time":
        return row["time_avg_ms"] * row["hits"] if "time_avg_ms" in row else None
    if field in CLASS_FIELDS:
        if by == "status":
            return row["hits"] if row["key"][:1] == field[1] else 0
        return per_class[field[1:]].get(row["key"], 0)
    value = row.get(field)
    return None if value is None else float(value)


def _total_value(total: dict[str, Any], field: str) -> float | None:
    """The window's total; its time is not summed (only its percentiles are kept)."""
    value = total.get(field)
    return None if value is None else float(value)
