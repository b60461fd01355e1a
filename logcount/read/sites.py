"""The sites (virtual hosts) seen: `logcount sites`, and the hint `top` gives when the site
it reads has no hits in a window while others do (a vhost log read without `--site`).

Live, every reader adds the sites of what it writes to one set (keys.SITES); the store
has the sites of its rolled-up days.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from logcount.read.report import Window, reading_redis
from logcount.sinks import keys


def _text(value: Any) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


def live_sites(client: Any) -> list[str]:
    with reading_redis(client):
        return sorted(_text(s) for s in client.smembers(keys.SITES))


def _live_hits(client: Any, sites: list[str], gran: str, labels: tuple[str, ...]) -> list[int]:
    """Each site's hits summed over the buckets."""
    if not sites or not labels:
        return [0] * len(sites)
    with reading_redis(client):
        pipe = client.pipeline(transaction=False)
        for site in sites:
            for label in labels:
                pipe.hget(keys.totals(site, gran, label), "hits")
        replies = pipe.execute()
    n = len(labels)
    return [sum(int(v or 0) for v in replies[i * n : (i + 1) * n]) for i in range(len(sites))]


def list_sites(client: Any, store: Any, today: date) -> list[dict[str, Any]]:
    """Every site seen live or in the store: today's hits (live), whether it was counted
    live, and its days in the store; the busiest today first."""
    live = live_sites(client)
    hits = _live_hits(client, live, "day", (today.strftime("%Y%m%d"),))
    today_hits = dict(zip(live, hits, strict=True))
    stored = store.site_days() if store is not None else {}
    rows = []
    for site in sorted(set(live) | set(stored)):
        days = stored.get(site)
        rows.append(
            {
                "site": site,
                "today": today_hits.get(site, 0),
                "live": site in today_hits,
                "stored_days": days["days"] if days else 0,
                "first_day": days["first"].isoformat() if days else None,
                "last_day": days["last"].isoformat() if days else None,
            }
        )
    return sorted(rows, key=lambda r: (-r["today"], r["site"]))


def sites_with_hits(client: Any, store: Any, window: Window, but: str) -> list[tuple[str, int]]:
    """The other sites with hits in the window (live buckets, or the store's days), the
    busiest first: what `top` names when `but`, the site it read, has none."""
    found: dict[str, int] = {}
    live = [s for s in live_sites(client) if s != but]
    hits_of = _live_hits(client, live, window.gran, window.labels)
    for site, hits in zip(live, hits_of, strict=True):
        if hits:
            found[site] = hits
    if store is not None and window.gran == "day":
        for site, facts in store.site_days(window.days()).items():
            if site != but and facts["hits"]:
                found[site] = max(found.get(site, 0), facts["hits"])
    return sorted(found.items(), key=lambda item: (-item[1], item[0]))
