"""Delta: counter increments per bucket, what a sink (Redis or SQL) applies.

The aggregator produces one per batch of lines; the Redis sink merges those waiting to be
sent, and writes them to its spool as JSON while Redis is away.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

SAMPLE_SIZE = 20  # malformed lines kept as samples

BucketKey = tuple[str, str, str]  # site, granularity, label
MemberKey = tuple[str, str, str, str]  # site, dimension, granularity, label


@dataclass
class Delta:
    """Counter increments per bucket, mergeable; what a sink (Redis or SQL) applies."""

    totals: dict[BucketKey, Counter[str]] = field(default_factory=dict)
    members: dict[MemberKey, Counter[str]] = field(default_factory=dict)
    member_bytes: dict[MemberKey, Counter[str]] = field(default_factory=dict)
    visitors: dict[BucketKey, set[str]] = field(default_factory=dict)
    recent: dict[str, list[str]] = field(default_factory=dict)  # site -> JSON, oldest first
    samples: dict[str, list[str]] = field(default_factory=dict)
    lines: int = 0
    malformed: int = 0

    def __bool__(self) -> bool:
        return bool(self.totals or self.recent or self.samples)

    def size(self) -> int:
        """Rough count of entries, for the memory budget."""
        return (
            sum(len(c) for c in self.members.values())
            + sum(len(v) for v in self.visitors.values())
            + len(self.totals)
        )

    def sites(self) -> set[str]:
        return (
            {k[0] for k in self.totals}
            | {k[0] for k in self.members}
            | set(self.recent)
            | set(self.samples)
        )

    def merge(self, other: Delta) -> None:
        for bkey, counts in other.totals.items():
            self.totals.setdefault(bkey, Counter()).update(counts)
        for mkey, counts in other.members.items():
            self.members.setdefault(mkey, Counter()).update(counts)
        for mkey, counts in other.member_bytes.items():
            self.member_bytes.setdefault(mkey, Counter()).update(counts)
        for key, hashes in other.visitors.items():
            self.visitors.setdefault(key, set()).update(hashes)
        for site, items in other.recent.items():
            self.recent.setdefault(site, []).extend(items)
        for site, items in other.samples.items():
            merged = self.samples.setdefault(site, [])
            merged.extend(items)
            del merged[:-SAMPLE_SIZE]
        self.lines += other.lines
        self.malformed += other.malformed

    def split_by_site(self) -> dict[str, Delta]:
        out: dict[str, Delta] = {}
        for name in ("totals", "visitors"):
            for key, value in getattr(self, name).items():
                getattr(out.setdefault(key[0], Delta()), name)[key] = value
        for name in ("members", "member_bytes"):
            for key, value in getattr(self, name).items():
                getattr(out.setdefault(key[0], Delta()), name)[key] = value
        for name in ("recent", "samples"):
            for site, value in getattr(self, name).items():
                getattr(out.setdefault(site, Delta()), name)[site] = value
        return out

    def to_json(self) -> str:
        return json.dumps(
            {
                "t": [[list(k), dict(v)] for k, v in self.totals.items()],
                "m": [[list(k), dict(v)] for k, v in self.members.items()],
                "b": [[list(k), dict(v)] for k, v in self.member_bytes.items()],
                "v": [[list(k), sorted(v)] for k, v in self.visitors.items()],
                "r": self.recent,
                "s": self.samples,
                "n": [self.lines, self.malformed],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Delta:
        data = json.loads(text)
        return cls(
            totals={tuple(k): Counter(v) for k, v in data["t"]},
            members={tuple(k): Counter(v) for k, v in data["m"]},
            member_bytes={tuple(k): Counter(v) for k, v in data["b"]},
            visitors={tuple(k): set(v) for k, v in data["v"]},
            recent=data["r"],
            samples=data["s"],
            lines=data["n"][0],
            malformed=data["n"][1],
        )
