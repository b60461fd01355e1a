"""Response times: the fixed log-scale histogram a bucket keeps, and its quantiles.

A line's duration (`%D`, `%T`, `%{ms}T`, in microseconds once scaled) falls in one bin:
bin 0 holds 0 us; bin 1 + 4e + s holds [2^e (1 + s/4), 2^e (1 + (s+1)/4)), four bins per
doubling, so a bin is at most 25 % wide whatever the scale. A duration is capped at CAP_US
(2^36 us, 19 hours), which has the last bin to itself: a hostile `%D` of 2^52 counts as the
cap, in the sums too, so no sum of a day's lines nears a 64-bit counter.

The C scanner (_scan_tables.c bin_of, _scan.h DUR_CAP) computes the same bins; keep them in step.

A quantile is reported as the upper edge of the bin that holds it: the exact value is
below it and at most one bin (25 %) under it, so "p95 <= 120 ms" never flatters a site.
"""

from __future__ import annotations

from collections.abc import Mapping

BINS_PER_DOUBLING = 4  # the C scanner takes the 2 bits after the leading one
CAP_US = 1 << 36
NBINS = 1 + BINS_PER_DOUBLING * 36 + 1  # 0 us, 36 doublings, and the cap
FIELD_PREFIX = "tb"  # a bin's field in a bucket's totals hash: "tb57"
QUANTILES = (("time_p50_ms", 0.50), ("time_p95_ms", 0.95), ("time_p99_ms", 0.99))


def capped(us: int) -> int:
    return min(max(us, 0), CAP_US)


def bin_of(us: int) -> int:
    """The bin of a duration in microseconds (capped)."""
    us = capped(us)
    if us == 0:
        return 0
    e = us.bit_length() - 1
    return 1 + BINS_PER_DOUBLING * e + (((us << 2) >> e) & 3)


def upper_edge(b: int) -> float:
    """The (exclusive) upper edge of bin `b` in microseconds; the value itself for the
    bins that hold a single value (0 us, the cap)."""
    if b <= 0:
        return 0.0
    if b >= NBINS - 1:
        return float(CAP_US)
    e, s = divmod(b - 1, BINS_PER_DOUBLING)
    return float(2**e * (BINS_PER_DOUBLING + s + 1) / BINS_PER_DOUBLING)


def field_of(b: int) -> str:
    return f"{FIELD_PREFIX}{b}"


def histogram_of(totals: Mapping[str, int]) -> dict[int, int]:
    """The bins a totals hash (or Counter) holds; fields that name no bin are not one."""
    out: dict[int, int] = {}
    for name, n in totals.items():
        if name.startswith(FIELD_PREFIX) and name[2:].isdigit() and len(name) <= 5:
            b = int(name[2:])
            if b < NBINS and int(n) > 0:
                out[b] = out.get(b, 0) + int(n)
    return out


def merge(into: dict[int, int], other: Mapping[int, int]) -> dict[int, int]:
    for b, n in other.items():
        into[b] = into.get(b, 0) + n
    return into


def quantile_bin(hist: Mapping[int, int], q: float) -> int | None:
    """The bin of the nearest-rank q-quantile (the smallest value with at least q of the
    lines at or below it); None for an empty histogram."""
    total = sum(hist.values())
    if total <= 0:
        return None
    rank = max(1, -(-int(q * 1_000_000) * total // 1_000_000))  # ceil(q * total), exact
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if seen >= rank:
            return b
    return max(hist)


def ms(us: float) -> float:
    return round(us / 1000, 3)


def quantiles(hist: Mapping[int, int]) -> dict[str, float]:
    """time_p50_ms, time_p95_ms, time_p99_ms of a histogram; {} when it is empty (a
    window without durations shows no time fields)."""
    out = {}
    for name, q in QUANTILES:
        b = quantile_bin(hist, q)
        if b is None:
            return {}
        out[name] = ms(upper_edge(b))
    return out


def average_ms(total_us: int, hits: int) -> float:
    return ms(total_us / hits) if hits > 0 else 0.0
