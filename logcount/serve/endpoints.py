"""The JSON API: one row per endpoint (its path, parameters, what it calls in `Counts`,
an example answer). The routes and the OpenAPI document at /openapi.json are both made
from this table. Every answer comes from the library functions the commands call:
`/api/top` is `logcount top --format json`, `/api/hits` is `logcount hits --format json`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from logcount import __version__
from logcount.read.render import VISITORS_JSON_KEYS, top_data
from logcount.serve.params import PARAMS, event_list

Handler = Callable[[Any, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Endpoint:
    path: str  # as Starlette and OpenAPI spell it: /api/stats/{site}/{year}
    summary: str
    params: tuple[str, ...]  # keys of params.PARAMS
    handler: Handler
    example: dict[str, Any]
    # The parameter an error of the library names when no parameter's check caught it
    # (a window of too many buckets of the granularity asked for, ...)
    blame: str = ""
    # Its answers are reused for a second while the site's totals stand still (reuse.py)
    reuse: bool = False


def _top(counts: Any, a: dict[str, Any]) -> dict[str, Any]:
    report = counts.report(
        window=a["window"],
        by=a["by"],
        limit=a["limit"],
        site=a["site"],
        status=a["status"],
        sort=a["sort"],
    )
    shown = top_data(report)
    if a["details"]:
        for shown_row, row in zip(shown["rows"], report["rows"], strict=True):
            shown_row["trend"] = row["trend"]
        shown["rate"] = report["rate"]
    return shown


def _member(a: dict[str, Any]) -> dict[str, Any]:
    if a.get("object") is not None:
        return {"object": a["object"]}
    return {"path": a.get("path")}


def _hits(counts: Any, a: dict[str, Any]) -> dict[str, Any]:
    from logcount.serve.params import BadParameter

    if a["path"] is None and a["object"] is None:
        raise BadParameter("path", "give path or object")
    return counts.hits(days=a["days"], site=a["site"], **_member(a))


def _series(counts: Any, a: dict[str, Any]) -> dict[str, Any]:
    return counts.series(
        window=a["window"], granularity=a["granularity"], site=a["site"], **_member(a)
    )


def _stats(counts: Any, a: dict[str, Any]) -> dict[str, Any]:
    return counts.stats(a["year"], a.get("month"), a.get("day"), a.get("hour"), site=a["site"])


def _recent(counts: Any, a: dict[str, Any]) -> dict[str, Any]:
    site = a["site"] or counts.site
    return {"site": site, "recent": counts.recent(a["limit"], site)}


def _sites(counts: Any, a: dict[str, Any]) -> dict[str, Any]:
    return {"sites": counts.sites(), "default": counts.site}  # `logcount sites`' JSON


def _status(counts: Any, a: dict[str, Any]) -> dict[str, Any]:
    return {"readers": counts.readers()}


def _visitors(counts: Any, a: dict[str, Any]) -> dict[str, Any]:
    report = counts.visitors(a["expr"], window=a["window"], per=a["per"], site=a["site"])
    return {k: report[k] for k in VISITORS_JSON_KEYS}  # `logcount visitors`' JSON


def _funnel(counts: Any, a: dict[str, Any]) -> dict[str, Any]:
    events = event_list(a["events"])
    report = counts.funnel(events, window=a["window"], within=a["within"], site=a["site"])
    return {"window": report["window"], "steps": report["steps"]}  # `logcount funnel`'s


def _retention(counts: Any, a: dict[str, Any]) -> dict[str, Any]:
    report = counts.retention(a["event"], a["cohort"], a["periods"], site=a["site"])
    return {"cohorts": report["cohorts"]}  # `logcount retention`'s JSON


TOP_EXAMPLE = {
    "window": {
        "start": "2026-02-14T00:00:00+00:00",
        "end": "2026-02-14T09:30:12+00:00",
        "source": "live",
    },
    "site": "acme",
    "by": "path",
    "total": {
        "hits": 15,
        "bytes": 9500,
        "visitors": 6,
        "bots": 2,
        "malformed": 1,
        **{"s1xx": 0, "s2xx": 12, "s3xx": 0, "s4xx": 2, "s5xx": 1},
    },
    "rows": [{"key": "/press/42/", "hits": 9, "bytes": 9000, "visitors": None}],
}
HITS_EXAMPLE = {
    "site": "acme",
    "path": "/press/42/",
    "today": 4,
    "total": 6,
    "days": [
        {"date": "2026-02-13", "hits": 2, "source": "store"},
        {"date": "2026-02-14", "hits": 4, "source": "live"},
    ],
}
SERIES_EXAMPLE = {
    "site": "acme",
    "granularity": "hour",
    "source": "live",
    "points": [["2026-02-14T00:00:00+00:00", 5, 4], ["2026-02-14T01:00:00+00:00", 0, 0]],
}
STATS_EXAMPLE = {
    "site": "acme",
    "year": 2026,
    "month": 2,
    "day": None,
    "hour": None,
    "total": 15,
    "data": {"1": 10, "2": 5, "3": 0},
}
JOURNEY_WINDOW = {
    "start": "2026-02-14T00:00:00+00:00",
    "end": "2026-02-15T00:00:00+00:00",
    "source": "live",
}
VISITORS_EXAMPLE = {
    "expr": "login & song_played",
    "window": JOURNEY_WINDOW,
    "total": 41,
    "per": [
        {"start": "2026-02-14T00:00:00+00:00", "visitors": 2},
        {"start": "2026-02-14T01:00:00+00:00", "visitors": 0},
    ],
}
FUNNEL_EXAMPLE = {
    "window": JOURNEY_WINDOW,
    "steps": [
        {"event": "login", "visitors": 412},
        {"event": "song_played", "visitors": 230},
        {"event": "paid", "visitors": 31},
    ],
}
RETENTION_EXAMPLE = {
    "cohorts": [
        {"start": "2026-02-02", "size": 120, "back": [31, 18]},
        {"start": "2026-02-09", "size": 97, "back": [25]},
        {"start": "2026-02-16", "size": 40, "back": []},
    ]
}
STATS = ("stats_site", "year")
TOP = ("window", "by", "site", "limit", "status", "sort", "details")
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("/api/top", "`logcount top --format json`", TOP, _top, TOP_EXAMPLE, reuse=True),
    Endpoint(
        "/api/hits",
        "`logcount hits --format json`: a path's or an object's hits today and per day",
        ("path", "object", "days", "site"),
        _hits,
        HITS_EXAMPLE,
        reuse=True,
    ),
    Endpoint(
        "/api/series",
        "Points [time, hits, visitors] of the site (or a path, an object) per bucket, "
        "zeros where nothing was counted; visitors null for a path or an object",
        ("site", "path", "object", "granularity", "window"),
        _series,
        SERIES_EXAMPLE,
        blame="granularity",
        reuse=True,
    ),
    Endpoint(
        "/api/visitors",
        "`logcount visitors EXPR --format json`: distinct visitors of a set expression of "
        "events over the window, and per hour, day or week of it",
        ("expr", "window", "per", "site"),
        _visitors,
        VISITORS_EXAMPLE,
        blame="window",
        reuse=True,
    ),
    Endpoint(
        "/api/funnel",
        "`logcount funnel E1 E2 ... --format json`: the visitors who did each event after "
        "the one before",
        ("events", "window", "within", "site"),
        _funnel,
        FUNNEL_EXAMPLE,
        blame="within",
        reuse=True,
    ),
    Endpoint(
        "/api/retention",
        "`logcount retention --format json`: cohorts of the visitors first seen doing the "
        "event in each period, and how many of them came back in each later one",
        ("event", "cohort", "periods", "site"),
        _retention,
        RETENTION_EXAMPLE,
        blame="event",
        reuse=True,
    ),
    Endpoint(
        "/api/stats/{site}/{year}",
        "A year's hits and its months'",
        STATS,
        _stats,
        STATS_EXAMPLE | {"month": None, "data": {"1": 10, "2": 5}},
    ),
    Endpoint(
        "/api/stats/{site}/{year}/{month}",
        "A month's hits and its days'",
        (*STATS, "month"),
        _stats,
        STATS_EXAMPLE,
    ),
    Endpoint(
        "/api/stats/{site}/{year}/{month}/{day}",
        "A day's hits and its hours'",
        (*STATS, "month", "day"),
        _stats,
        STATS_EXAMPLE | {"day": 14, "data": {"0": 3, "1": 0}},
    ),
    Endpoint(
        "/api/stats/{site}/{year}/{month}/{day}/{hour}",
        "An hour's hits and its minutes'",
        (*STATS, "month", "day", "hour"),
        _stats,
        STATS_EXAMPLE | {"day": 14, "hour": 9, "data": {"0": 3, "1": 0}},
    ),
    Endpoint(
        "/api/recent",
        "The last requests, newest first (`logcount top --recent --format json`)",
        ("site", "limit"),
        _recent,
        {"site": "acme", "recent": [{"time": "2026-02-14T09:29", "path": "/", "status": 200}]},
    ),
    Endpoint(
        "/api/sites",
        "The sites seen, live and in the store, as `logcount sites --format json`, and "
        "the configured one",
        (),
        _sites,
        {
            "sites": [
                {
                    "site": "acme",
                    "today": 1204,
                    "live": True,
                    "stored_days": 30,
                    "first_day": "2026-01-15",
                    "last_day": "2026-02-13",
                }
            ],
            "default": "acme",
        },
    ),
    Endpoint(
        "/api/status",
        "Running readers, as `logcount status --format json`",
        (),
        _status,
        {"readers": [{"host": "web1", "pid": 41022, "mode": "pipe", "lines": 1204332}]},
    ),
)

ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "parameter": {"type": "string"}},
    "required": ["error"],
}


def _responses(example: dict[str, Any], bad_request: bool) -> dict[str, Any]:
    def error(text: str, what: str) -> dict[str, Any]:
        return {
            "description": text,
            "content": {"application/json": {"schema": ERROR, "example": {"error": what}}},
        }

    out = {
        "200": {
            "description": "OK",
            "content": {"application/json": {"schema": {"type": "object"}, "example": example}},
        },
        "401": error("A token is required (serve --token-file)", "missing or wrong token"),
        "503": error("Redis or the store cannot be reached", "cannot read from Redis: ..."),
    }
    if bad_request:
        out["400"] = error("A bad parameter, named in `parameter`", "limit must be ...")
    return out


def openapi(extra: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ENDPOINTS, plus `extra` paths (healthz, metrics)."""
    paths: dict[str, Any] = {}
    for e in ENDPOINTS:
        paths[e.path] = {
            "get": {
                "summary": e.summary,
                "operationId": e.path.strip("/")
                .replace("/", "_")
                .replace("{", "")
                .replace("}", ""),
                "parameters": [PARAMS[key].openapi() for key in e.params],
                "responses": _responses(e.example, bool(e.params)),
                "security": [{}, {"bearer": []}],
            }
        }
    paths.update(extra)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "logcount",
            "version": __version__,
            "description": "Read-only counts of web-server access logs (logcount serve).",
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }
