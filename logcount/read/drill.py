"""`top --by path --status 404` (or a class, `4xx`): the paths of one error status.

The engine counts a hidden dimension, `status_path`, whose members are an error status and
a path ("404 /missing"; 4xx and 5xx only); a drill-down reads its members whose status is
the one asked for (or in its class), and folds them back into paths: under `4xx` a path's
404s and 410s add up.
"""

from __future__ import annotations

import re
from typing import Any

from logcount.dimensions import ERROR_CLASSES
from logcount.errors import LogcountError

DIM = "status_path"
_STATUS = re.compile(r"\A(?:[1-5][0-9][0-9]|[1-5]xx)\Z")


class StatusError(LogcountError):
    exit_code = 2  # a usage error, like click's


def status_filter(text: str, by: str) -> str:
    """`--status` as given ("404", "4xx", "4XX"), checked; lower case."""
    status = text.strip().lower()
    if not _STATUS.match(status):
        raise StatusError(f"--status {text!r}: give a status (404) or a class (4xx)")
    if status[0] not in ERROR_CLASSES:
        raise StatusError(f"--status {text!r}: paths are kept per status for 4xx and 5xx only")
    if by != "path":
        raise StatusError("--status lists the paths of a status: use it with --by path")
    return status


def member_like(status: str) -> str:
    """The SQL LIKE pattern of the members of `status`."""
    return status.replace("x", "_") + " %"


def matches(member: str, status: str) -> bool:
    if len(member) < 4 or member[3] != " ":
        return False
    if status.endswith("xx"):
        return member[0] == status[0]
    return member.startswith(status)


def fold(
    rows: list[dict[str, Any]], status: str, limit: int, sort: str = "hits"
) -> dict[str, list[str]]:
    """Rows of `status_path` members -> rows of paths (in place, at most `limit`, ranked as
    top ranks by `sort`'s field); returns each path's members, for its trend."""
    paths: dict[str, dict[str, Any]] = {}
    parts: dict[str, list[str]] = {}
    for row in rows:
        if not matches(row["key"], status):
            continue
        path = row["key"][4:]
        found = paths.get(path)
        if found is None:
            paths[path] = {**row, "key": path}
        else:
            found["hits"] += row["hits"]
            found["bytes"] += row["bytes"]
            found["time_us"] = found.get("time_us", 0) + row.get("time_us", 0)
            if found["visitors"] is not None or row["visitors"] is not None:
                found["visitors"] = (found["visitors"] or 0) + (row["visitors"] or 0)
        parts.setdefault(path, []).append(row["key"])
    ranked = sorted(paths.values(), key=lambda r: (-r.get(sort, 0), r["key"]))[:limit]
    rows[:] = ranked
    return {r["key"]: parts[r["key"]] for r in ranked}


def fold_trends(trend: dict[str, list[int]], parts: dict[str, list[str]]) -> dict[str, list[int]]:
    """Each path's trend: the sum of its members' trends."""
    out = {}
    for path, members in parts.items():
        series = [trend[m] for m in members]
        out[path] = [sum(values) for values in zip(*series, strict=True)] if series else []
    return out
