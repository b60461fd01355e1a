"""The dashboard page: served live by `logcount serve`, or written as one self-contained
static file (`top --format html`, and `report -o report.html`).

Both are the same HTML, stylesheet and script (static/). The live page loads the script
and stylesheet from the server and fetches its numbers from the JSON API; the static file
carries them inline, with the numbers as a JSON block the script renders without any
network access. Log data only ever reaches the page as JSON read by the script, which puts
it in the document as text (textContent), never as markup.
"""

from __future__ import annotations

import base64
import hashlib
import json
from importlib import resources
from typing import Any

from starlette.responses import Response

from logcount.dimensions import DIMENSION_NAMES, DIMENSIONS

WINDOWS = ("5m", "15m", "1h", "6h", "24h", "today", "yesterday", "7d", "30d")
# The live page's policy: its own script and stylesheet, fetches to its own origin only.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
ASSET_TYPES = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}


def asset(name: str) -> str:
    return resources.files("logcount.serve").joinpath("static").joinpath(name).read_text()


def _json_block(data: Any) -> str:
    """JSON safe inside a <script type="application/json"> element: no `</script>`, no
    `<!--` can end or bend it."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _page(setup: dict[str, Any], head: str, script: str) -> str:
    return (
        asset("dashboard.html")
        .replace("<!--HEAD-->", head)
        .replace("<!--SETUP-->", _json_block(setup))
        .replace("<!--SCRIPT-->", script)
    )


def dashboard_html(config: Any) -> str:
    """The live page: the sites and windows are picked on it, numbers fetched."""
    setup = {
        "mode": "live",
        "site": config.site,
        "windows": list(WINDOWS),
        "dimensions": [d for d in DIMENSION_NAMES if d != "client" or config.count_clients],
        # The funnel's and retention's panels: the configured events, in config order
        "events": [e["name"] for e in config.events if isinstance(e, dict)],
    }
    head = '<link rel="stylesheet" href="/dashboard.css">'
    return _page(setup, head, '<script src="/dashboard.js" defer></script>')


def dashboard_response(config: Any) -> Response:
    headers = {"Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-store"}
    return Response(dashboard_html(config), headers=headers, media_type="text/html")


def asset_response(name: str) -> Response:
    return Response(asset(name), media_type=ASSET_TYPES[name])


def static_html(
    reports: list[dict[str, Any]],
    series: dict[str, Any] | None = None,
    recent: list[dict[str, Any]] | None = None,
    title: str = "logcount report",
) -> str:
    """One self-contained page of `reports`, each shaped as `top --format json` prints it
    (the first gives the summary cards, each a panel; rows may carry a `trend` list, a
    report its `rate`), with an optional `series` (/api/series' shape) for the chart and
    `recent` requests. Opens with no network access."""
    setup = {
        "mode": "static",
        "title": title,
        "data": {"reports": reports, "series": series, "recent": recent},
    }
    style, script = asset("dashboard.css"), asset("dashboard.js")
    # A `</script` inside the script itself would end it early: it holds none, checked.
    assert "</script" not in script.lower()
    # Its own script and style only, by their hashes, and no network at all: a report
    # that is mailed or published fetches nothing, whatever its data holds.
    policy = (
        f"default-src 'none'; script-src '{_sha256(script)}'; style-src '{_sha256(style)}'; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    head = f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n<style>{style}</style>'
    return _page(setup, head, f"<script>{script}</script>")


def _sha256(text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return "sha256-" + base64.b64encode(digest).decode()


def html_report(
    counts: Any,
    window: str = "today",
    site: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int = 20,
    sort: str = "hits",
) -> str:
    """`top --format html`: the page of a window, a panel for every dimension (and the
    404 and 5xx paths), the chart and the recent requests, as one static file."""
    from logcount.read.render import top_data

    config = counts.config
    dims = [d for d in DIMENSION_NAMES if d != "client" or config.count_clients]
    asked: list[dict[str, Any]] = [{"by": by} for by in dims]
    asked += [{"by": "path", "status": "404"}, {"by": "path", "status": "5xx"}]
    reports = []
    for ask in asked:
        report = counts.report(
            window,
            limit=limit,
            site=site,
            since=since,
            until=until,
            # a dimension without response times is ranked by hits under --sort time
            sort=sort if sort != "time" or DIMENSIONS[ask["by"]].timed else "hits",
            **ask,
        )
        shown = top_data(report)
        for row, full in zip(shown["rows"], report["rows"], strict=True):
            row["trend"] = full["trend"]
        shown["rate"] = report["rate"]
        reports.append(shown)
    series = None if since else counts.series(window=window, site=site)
    recent = counts.recent(20, site)
    title = f"logcount: {reports[0]['site']}, {window if not since else 'since ' + since}"
    return static_html(reports, series, recent, title)
