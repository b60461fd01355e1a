"""`GET /metrics`: Prometheus' text format, rendered with prometheus_client.

The counters are the sites' monotonic totals in Redis (keys.lifetime), which every reader
on every host adds to in the same Lua call as its buckets: they never reset when a bucket
expires, and a scrape of any `serve` sees all of them. Labels are sites only (never paths),
at most `[serve] metrics_sites` of them: the sites past the cap (by name) are summed into
one `(other)`, so a flood of virtual hosts cannot flood Prometheus.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from logcount import timing
from logcount.read.sites import live_sites
from logcount.sinks.keys import OTHER

# class label -> the field of the totals that counts it
CLASSES = {
    "1xx": "s1xx",
    "2xx": "s2xx",
    "3xx": "s3xx",
    "4xx": "s4xx",
    "5xx": "s5xx",
    "bots": "bots",
    "malformed": "malformed",
}
# Histogram edges: every doubling from 1 ms to 2^26 us (67 s). A doubling ends on a bin
# edge of timing's histogram, so each cumulative count is exact.
EDGES_US = tuple(2**e for e in range(10, 27))
# What a reader's heartbeat says, as gauges (name, field, help)
READER_GAUGES = (
    ("logcount_reader_lines", "lines", "Lines read by the reader since it started"),
    ("logcount_reader_malformed", "malformed", "Malformed lines read by the reader"),
    ("logcount_reader_lag_seconds", "lag", "Seconds the oldest unflushed line has waited"),
    ("logcount_reader_spool_bytes", "spool_bytes", "Bytes in the reader's spool directory"),
    ("logcount_reader_pending", "pending", "Entries waiting in memory for Redis"),
)


def capped_sites(sites: list[str], cap: int) -> tuple[list[str], list[str]]:
    """The sites labelled by name, and those summed into (other)."""
    return sites[:cap], sites[cap:]


def _sum(totals: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for one in totals:
        for name, n in one.items():
            out[name] = out.get(name, 0) + n
    return out


def _histogram(totals: dict[str, int]) -> tuple[list[tuple[str, float]], float] | None:
    """Cumulative buckets (le in seconds) and the sum of a site's durations; None when
    its lines had none."""
    hist = timing.histogram_of(totals)
    if not hist:
        return None
    buckets = []
    for edge in EDGES_US:
        below = sum(n for b, n in hist.items() if timing.upper_edge(b) <= edge)
        buckets.append((f"{edge / 1e6:g}", float(below)))
    buckets.append(("+Inf", float(sum(hist.values()))))
    return buckets, totals.get("duration_us", 0) / 1e6


class TotalsCollector:
    """Reads Redis at each scrape (no state of its own)."""

    def __init__(self, counts: Any):
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        counts = self.counts
        # the sites counted live: only they have monotonic totals
        named, folded = capped_sites(live_sites(counts.redis), counts.config.metrics_sites)
        totals = counts.lifetime(named + folded)
        per_site = {site: totals[site] for site in named}
        if folded:
            per_site[OTHER] = _sum([totals[s] for s in folded])
        requests = CounterMetricFamily(
            "logcount_requests",
            "Requests counted live, by status class (bots and malformed lines apart)",
            labels=["site", "class"],
        )
        sent = CounterMetricFamily("logcount_bytes", "Bytes sent in counted hits", labels=["site"])
        durations = HistogramMetricFamily(
            "logcount_request_duration_seconds",
            "Response times of counted hits (formats with %D or %T)",
            labels=["site"],
        )
        for site, t in per_site.items():
            for label, name in CLASSES.items():
                requests.add_metric([site, label], t.get(name, 0))
            sent.add_metric([site], t.get("bytes", 0))
            hist = _histogram(t)
            if hist is not None:
                durations.add_metric([site], hist[0], hist[1])
        yield requests
        yield sent
        yield durations
        yield from self._readers(counts.readers())

    def _readers(self, readers: list[dict[str, Any]]) -> Iterator[Metric]:
        labels = ["host", "pid", "mode"]
        alive = GaugeMetricFamily(
            "logcount_reader_up", "1 while a reader runs, 0 once it stopped", labels=labels
        )
        gauges = [GaugeMetricFamily(n, text, labels=labels) for n, _, text in READER_GAUGES]
        flushed = GaugeMetricFamily(
            "logcount_reader_last_flush_age_seconds",
            "Seconds since the reader's last flush to Redis",
            labels=labels,
        )
        now = time.time()
        for r in readers:
            values = [str(r["host"]), str(r["pid"]), str(r["mode"])]
            alive.add_metric(values, 0 if r.get("stopped") else 1)
            for gauge, (_, name, _) in zip(gauges, READER_GAUGES, strict=True):
                value = r.get(name, 0)
                gauge.add_metric(values, float(value) if isinstance(value, int | float) else 0.0)
            last = r.get("last_flush")
            if isinstance(last, int | float) and last > 0:
                flushed.add_metric(values, max(0.0, now - last))
        yield alive
        yield from gauges
        yield flushed


def render_metrics(counts: Any) -> bytes:
    """The text format of one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TotalsCollector(counts))
    return generate_latest(registry)
