"""`logcount report` drawn for people (a table per section) and for programs (JSON, CSV).

The report itself is built by logcount/sources/one_shot.py; everything in it that came
from a log line (paths, referrers, agents, sites, file names) goes through `safe_text`
before it reaches a terminal, as in every other report.
"""

from __future__ import annotations

from typing import Any

from logcount.read.render import (
    ROW_TIME_KEY,
    csv_text,
    dump_json,
    human_bytes,
    milliseconds,
    render_table,
    safe_text,
)

JSON_KEYS = ("files", "lines", "first", "last", "sites", "total", "days", "top")
# What a table's columns say, under the summary: `bots` are not in `hits`
LEGEND = (
    "hits: requests answered to people (bots apart, see bots); share: of the hits (of the "
    "bots for a bot); "
    "visitors: distinct client address + user agent; "
    "bytes: sent in the responses"
)


def report_json(report: dict[str, Any], terminal: bool = False) -> str:
    return dump_json({k: report[k] for k in JSON_KEYS}, terminal)


def as_dashboard(report: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The report as the dashboard's page draws it (`report -o FILE.html`): one report per
    dimension and drill-down, each shaped as `top --format json` prints it (the first, the
    paths, gives the cards), and the days as a series of /api/series' shape."""
    site = ", ".join(s["site"] for s in report["sites"]) or "-"
    window = {"start": report["first"], "end": report["last"], "source": "files"}
    reports = []
    for name, rows in report["top"].items():
        by, _, status = name.partition("@")
        shown: dict[str, Any] = {
            "window": window,
            "site": site,
            "by": by,
            "total": report["total"],
            "rows": rows,
        }
        if status:
            shown["status_filter"] = status
        reports.append(shown)
    points = [[f"{d['day']}T00:00:00", d["hits"], d["visitors"]] for d in report["days"]]
    series = {"site": site, "granularity": "day", "source": "files", "points": points}
    return reports, series


def report_csv(report: dict[str, Any], terminal: bool = False) -> str:
    """One table: the total, one row per day, then each dimension's rows."""
    total = report["total"]
    hits = total["hits"] or 1
    rows: list[list[Any]] = [
        ["section", "rank", "key", "hits", "share", "visitors", "bytes", "avg_ms"],
        ["total", "", "", total["hits"], "1.0000", total["visitors"], total["bytes"], ""],
    ]
    for rank, day in enumerate(report["days"], 1):
        share = f"{day['hits'] / hits:.4f}"
        rows.append(["day", rank, day["day"], day["hits"], share, day["visitors"], "", ""])
    for dim, dim_rows in report["top"].items():
        whole = _whole(report, dim)
        for rank, row in enumerate(dim_rows, 1):
            rows.append(
                [
                    dim,
                    rank,
                    row["key"],
                    row["hits"],
                    f"{row['hits'] / whole:.4f}",
                    "" if row["visitors"] is None else row["visitors"],
                    row["bytes"],
                    row.get(ROW_TIME_KEY, ""),
                ]
            )
    return csv_text(rows, terminal)


def summary(report: dict[str, Any]) -> list[str]:
    """The lines above the tables: what was read, the totals, the error rates."""
    total = report["total"]
    hits = total["hits"]
    files = report["files"]
    named = ", ".join(safe_text(f) for f in files[:3]) + (" ..." if len(files) > 3 else "")
    span = ""
    if report["first"]:
        span = (
            f"  {report['first'][:16].replace('T', ' ')} .. {report['last'][:16].replace('T', ' ')}"
        )
    e4 = total["s4xx"] / hits * 100 if hits else 0.0
    e5 = total["s5xx"] / hits * 100 if hits else 0.0
    times = "".join(
        f"  {name[5:8]} {milliseconds(total[name])} ms"
        for name in ("time_p50_ms", "time_p95_ms", "time_p99_ms")
        if name in total
    )
    lines = [
        f"{len(files)} file(s): {named}",
        f"lines {report['lines']:,}{span}",
        f"hits {hits:,}  visitors {total['visitors']:,}  bytes {human_bytes(total['bytes'])}"
        f"  bots {total['bots']:,}  malformed {total['malformed']:,}",
        f"errors 4xx {e4:.1f}%  5xx {e5:.1f}%{times}",
    ]
    if len(report["sites"]) > 1:
        sites = ", ".join(f"{safe_text(s['site'])} {s['hits']:,}" for s in report["sites"][:8])
        lines.append(f"sites: {sites}")
    return [*lines, LEGEND]


def report_table(report: dict[str, Any], width: int = 100, terminal: bool = False) -> str:
    """The summary, the days, then a table per dimension (its first rows)."""
    out = [_days_table(report, width, terminal)]
    for dim, rows in report["top"].items():
        if not rows:
            continue
        hits = _whole(report, dim)
        timed = any(ROW_TIME_KEY in r for r in rows)
        cells = [
            [
                str(rank),
                safe_text(r["key"]),
                f"{r['hits']:,}",
                f"{r['hits'] / hits * 100:.1f}%",
                "-" if r["visitors"] is None else f"{r['visitors']:,}",
                human_bytes(r["bytes"]),
                *([milliseconds(r[ROW_TIME_KEY])] if timed else []),
            ]
            for rank, r in enumerate(rows, 1)
        ]
        names = ["#", dim, "hits", "share", "visitors", "bytes", *(["avg ms"] if timed else [])]
        right = {0, 2, 3, 4, 5, 6}
        title = _TITLES.get(dim, f"by {dim}")
        out.append(render_table([title], names, cells, width, terminal, right, 1, ""))
    return "\n".join(out)


def _whole(report: dict[str, Any], dim: str) -> int:
    """What a row's share is of: the bots for the bot rows, the hits for the others."""
    return report["total"]["bots" if dim == "bot" else "hits"] or 1


_TITLES = {"path@404": "paths not found (404)", "path@5xx": "paths of server errors (5xx)"}


def _days_table(report: dict[str, Any], width: int, terminal: bool) -> str:
    days = report["days"]
    top = max((d["hits"] for d in days), default=0)
    bar = max(1, min(40, width - 40))
    cells = [
        [
            d["day"],
            f"{d['hits']:,}",
            f"{d['visitors']:,}",
            "█" * max(1, round(d["hits"] / top * bar)) if d["hits"] else "",
        ]
        for d in days
    ]
    return render_table(
        summary(report),
        ["day", "hits", "visitors", ""],
        cells,
        width,
        terminal,
        {1, 2},
        3,
        "(no lines with a time)",
    )
