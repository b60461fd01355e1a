"""Every Redis key logcount reads or writes is built here.

All keys of one site share the hash tag `{site}`, so a window is computed on the
server (ZUNIONSTORE, PFCOUNT over buckets) and a Redis Cluster keeps a site on one node.
"""

from __future__ import annotations

import hashlib

PREFIX = "lc"
OTHER = "(other)"


def _tag(site: str) -> str:
    return f"{PREFIX}:{{{site}}}"


def totals(site: str, gran: str, label: str) -> str:
    """Hash of counters (hits, bytes, bots, malformed, s2xx, ...) of one bucket."""
    return f"{_tag(site)}:t:{gran}:{label}"


def lifetime(site: str) -> str:
    """Hash of a site's monotonic totals (the fields of a bucket's totals, summed over
    every line ever counted live, never expiring): what `/metrics` exports."""
    return f"{_tag(site)}:life"


def members(site: str, dim: str, gran: str, label: str) -> str:
    """Sorted set of hits per member (path, object, ...) of one bucket."""
    return f"{_tag(site)}:z:{dim}:{gran}:{label}"


def member_bytes(site: str, dim: str, gran: str, label: str) -> str:
    """Sorted set of bytes per member of one bucket."""
    return f"{_tag(site)}:zb:{dim}:{gran}:{label}"


def member_durations(site: str, dim: str, gran: str, label: str) -> str:
    """Sorted set of the sum of durations (microseconds) per member of one bucket."""
    return f"{_tag(site)}:zd:{dim}:{gran}:{label}"


def visitors(site: str, gran: str, label: str) -> str:
    """HyperLogLog of visitor hashes of one bucket."""
    return f"{_tag(site)}:v:{gran}:{label}"


def section_visitors(site: str, depth: str, gran: str, label: str, section: str) -> str:
    """HyperLogLog of the visitor hashes of one section (paths cut at `depth`) in a bucket;
    the section last, as it comes: a path, up to 512 bytes."""
    return f"{_tag(site)}:sv:{depth}:{gran}:{label}:{section}"


def sections_kept(site: str, depth: str, gran: str, label: str) -> str:
    """Set of the sections of one bucket whose visitors are kept (at most max_members)."""
    return f"{_tag(site)}:sk:{depth}:{gran}:{label}"


def event_set(site: str, event: str, gran: str, label: str) -> str:
    """Bitmap of the visitors (by their number, visitor_ids) who did an event in a bucket."""
    return f"{_tag(site)}:e:{event}:{gran}:{label}"


def visitor_ids(site: str) -> str:
    """Hash: visitor hash -> its number in the event bitmaps (field `#next`: the next one)."""
    return f"{_tag(site)}:vid"


def visitor_hashes(site: str) -> str:
    """String: the visitor hash of number N at bytes 16N..16N+15 (the numbering reversed)."""
    return f"{_tag(site)}:vidr"


def recent(site: str) -> str:
    """Capped list of the latest requests (JSON), newest first."""
    return f"{_tag(site)}:recent"


def malformed_sample(site: str) -> str:
    """Capped list of the latest lines that did not parse."""
    return f"{_tag(site)}:malformed"


def batch_marker(site: str, batch_id: str) -> str:
    """Set when a batch is applied, so a retried or replayed batch counts once."""
    return f"{_tag(site)}:batch:{batch_id}"


def position(site: str, host: str, path: str) -> str:
    """Read position of a tailed file, committed with the counts it produced."""
    digest = hashlib.blake2b(f"{host}\0{path}".encode(), digest_size=8).hexdigest()
    return f"{_tag(site)}:pos:{digest}"


def scratch(site: str, name: str) -> str:
    """Temporary key for a server-side union (same slot as the site's data)."""
    return f"{_tag(site)}:tmp:{name}"


SITES = f"{PREFIX}:sites"


def heartbeat(host: str, pid: int) -> str:
    return f"{PREFIX}:reader:{host}:{pid}"


HEARTBEAT_PATTERN = f"{PREFIX}:reader:*"
