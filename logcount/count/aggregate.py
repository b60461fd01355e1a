"""Count lines in memory, then classify each distinct key once.

Two stages, shared by every entry point (pipe, tail, rollup):

1. `LineCounter.feed(chunk)`: the hot path. One `findall` of the compiled format over a
   whole chunk of lines, and C-level `Counter`/`set` updates over projections of the
   matched tuples: no Python code runs per line. Bots and ignored extensions are told
   apart per line through dict look-ups mapped in C (a Python call happens only for an
   agent or request not seen before), so the counted keys need not carry the agent.
   The chunk regex ends in an alternative that captures any line it does not parse;
   such a line is tried once more with apachelogs' regex, else counted malformed.
2. `Aggregator.classify(raw)`: classification of each distinct key (path, object, agent
   family, referrer host, buckets), producing a `Delta` per minute/hour/day bucket.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from logcount.config import Config
from logcount.count.classify import (
    CACHE_BYTES,
    BoundedCache,
    Buckets,
    Classifier,
    method_of,
    status_class,
    visitor_hash,
)
from logcount.count.delta import SAMPLE_SIZE, Delta
from logcount.count.logformat import CompiledFormat
from logcount.count.paths import NO_PATH
from logcount.count.regex_scan import RegexScanner, getter
from logcount.dimensions import ERROR_CLASSES, GRANULARITIES, GRANULARITY_NAMES, HIT_KEY_DIMS

GRANS = GRANULARITY_NAMES
_CUT = {g.name: g.cut for g in GRANULARITIES.values()}  # of a minute label, for each


SCAN_VERSION = 2  # the _scan.c this code calls (its SCAN_VERSION)


def _scan_module() -> Any:
    """logcount.count._scan (the C hot loop), or None: not built, built from another _scan.c
    (said once on stderr), or LOGCOUNT_PURE_PYTHON set."""
    if os.environ.get("LOGCOUNT_PURE_PYTHON"):
        return None
    try:
        import logcount.count._scan as _scan
    except ImportError:
        return None
    if getattr(_scan, "VERSION", None) != SCAN_VERSION:
        _stale_scanner_warning(_scan.__file__)
        return None
    return _scan


@functools.cache
def _stale_scanner_warning(where: str) -> None:
    # A build left from an older _scan.c would refuse this code's plan (or hand back
    # other tables): count with the pure path, and say why it is slower.
    print(
        f"logcount: {where} was built from another _scan.c; counting without it "
        "(rebuild: pip install -e .)",
        file=sys.stderr,
    )


@dataclass
class RawCounts:
    """What the hot path gathered since the last take(): raw bytes, nothing decoded.

    Every Counter below counts only lines that are hits (not bots unless count_bots,
    not ignored extensions), except `bots` and `ignored`, keyed by the line's context
    (minute, offset, vhost)."""

    hits: Counter[tuple[bytes, ...]] = field(default_factory=Counter)  # key_layout
    sizes: dict[tuple[bytes, ...], int] = field(default_factory=dict)  # key_layout: sum of %b
    agents: Counter[tuple[bytes, ...]] = field(default_factory=Counter)  # agent_layout
    referrers: Counter[tuple[bytes, ...]] = field(default_factory=Counter)  # ref_layout
    clients: Counter[tuple[bytes, ...]] = field(default_factory=Counter)  # client_layout
    visitors: set[tuple[bytes, ...]] = field(default_factory=set)  # vis_layout
    bots: Counter[tuple[bytes, ...]] = field(default_factory=Counter)  # agent_layout
    ignored: Counter[tuple[bytes, ...]] = field(default_factory=Counter)  # ctx_layout
    durations: dict[tuple[bytes, ...], int] = field(default_factory=dict)  # ctx_layout
    malformed: int = 0
    samples: deque[bytes] = field(default_factory=lambda: deque(maxlen=SAMPLE_SIZE))
    recent: deque[tuple[bytes, ...]] = field(default_factory=lambda: deque(maxlen=1000))
    lines: int = 0
    arrival: float = field(default_factory=time.time)

    def __bool__(self) -> bool:
        return bool(self.lines or self.malformed)


class LineCounter:
    """The hot path: counts complete lines of one log format into RawCounts, through one
    scanner chosen at start: the C one (logcount/count/_scan.c), else its Python twin
    (logcount/count/regex_scan.py). Lines a scanner refuses come back here: apachelogs' regex
    decides (the row is counted), else the line is malformed."""

    def __init__(
        self,
        fmt: CompiledFormat,
        recent_size: int = 1000,
        path_visitors: bool = False,
        classifier: Classifier | None = None,
        count_clients: bool = False,
    ):
        self.format = fmt
        self.recent_size = recent_size
        gi = fmt.group_index
        has = [f for f in fmt.key_names if f in gi]
        ctx = [f for f in ("tmin", "ttz", "site") if f in gi]
        self.ctx_layout = tuple(ctx)
        # The trailing empty group of the chunk regex stands in for a field the format lacks.
        empty = len(gi)
        # A line's size is summed per key, not part of it: random sizes would make
        # nearly every line a key of its own.
        self.key_layout = tuple(f for f in has if f not in ("referrer", "agent"))
        self.agent_layout = (*ctx, "agent")
        self.ref_layout = (*ctx, "referrer")
        self.client_layout = (*ctx, "client")
        vis = [*ctx, "client", "agent"]
        if path_visitors:
            vis += [f for f in ("request", "method", "uri", "query") if f in gi]
        self.vis_layout = tuple(f for f in vis if f in gi)
        target = "request" if "request" in gi else "uri" if "uri" in gi else None
        self._target_field = target
        self.recent_layout = tuple(f for f in fmt.key_names + fmt.value_names if f in gi)
        self._recent = getter([gi[f] for f in self.recent_layout])
        # The chunk regex (^...$()) with a last alternative that captures any other
        # non-empty line: one findall finds good and bad lines alike.
        self._lines = re.compile(b"^(?:" + fmt.chunk.pattern[1:] + b"|([^\n]+)$)", re.M)
        self.raw = RawCounts(recent=deque(maxlen=recent_size))
        layouts: dict[str, Any] = {
            "ctx": [gi[f] for f in ctx],
            "hits": [gi[f] for f in self.key_layout],
            "agents": [gi[f] for f in self.agent_layout] if "agent" in gi else None,
            "referrers": [gi[f] for f in self.ref_layout] if "referrer" in gi else None,
            "visitors": [gi[f] for f in self.vis_layout] if "client" in gi else None,
            "clients": [gi[f] for f in self.client_layout]
            if count_clients and "client" in gi
            else None,
            "agent": gi.get("agent", -1),
            "target": gi[target] if target else -1,
            "duration": gi.get("duration", -1),
            "size": gi.get("bytes", -1),
            "recent_size": recent_size,
            "decide_bot": self._is_bot,
            "decide_ignore": self._is_ignored,
        }
        scan = _scan_module() if fmt.plan is not None else None
        self.native = scan is not None  # the C scanner counts
        self.scanner: Any
        if scan is not None:
            self.scanner = scan.Scanner(
                plan=fmt.plan, nfields=empty, count_bots=False, ignore=False, **layouts
            )
        else:
            self.scanner = RegexScanner(self._lines, **layouts)
        self.use(classifier or Classifier(Config(log_format=fmt.log_format), fmt))

    def use(self, classifier: Classifier) -> None:
        """(Re)bind the classifier deciding which lines are bots or ignored."""
        self.classifier = classifier
        self.count_bots = classifier.config.count_bots
        ignore = bool(classifier.ignore_ext) and self._target_field is not None
        self.scanner.rebind(self.count_bots, ignore)

    def _is_bot(self, agent: bytes) -> bool:
        return self.classifier.agent(agent)[0]

    def _is_ignored(self, target: bytes) -> bool:
        cl = self.classifier
        if self._target_field == "request":
            return cl.ignored(cl.path_of_request(target))
        return cl.ignored(cl.path_of_uri((target, b"")))

    def pending(self) -> tuple[int, int, int]:
        """(lines, distinct keys, bytes of keys) held since the last take(); for the
        Python scanner the bytes fed, an upper bound of the same."""
        lines, keys, held = self.scanner.pending()
        return int(lines), int(keys), int(held)

    def pending_lines(self) -> int:
        return self.pending()[0]

    def pending_keys(self) -> int:
        """Distinct hit, visitor, referrer and client keys held since the last take()."""
        return self.pending()[1]

    def pending_bytes(self) -> int:
        return self.pending()[2]

    def take(self, with_recent: bool = True) -> RawCounts:
        """What was counted since the last take(); the recent lines only `with_recent`."""
        raw, self.raw = self.raw, RawCounts(recent=deque(maxlen=self.recent_size))
        (
            raw.lines,
            raw.hits,
            raw.agents,
            raw.referrers,
            raw.visitors,
            raw.bots,
            raw.ignored,
            raw.durations,
            raw.sizes,
            raw.clients,
            recent,
        ) = self.scanner.take(Counter, with_recent)
        for item in recent:  # a line's bytes (the C scanner's), or a row
            row = item if isinstance(item, tuple) else self._lines.findall(item)[0]
            raw.recent.append(self._recent(row))
        return raw

    def feed(self, chunk: bytes) -> None:
        """Count the complete lines in `chunk` (which must end with a newline)."""
        for line in self.scanner.feed(chunk):
            row = self._retry(line)
            if row is not None:
                self.scanner.count_row(row)

    def _retry(self, line: bytes) -> tuple[bytes, ...] | None:
        """A line the chunk regex rejected: apachelogs' regex decides, else malformed."""
        fmt = self.format
        line = line.rstrip(b"\r")
        m = fmt.fast.fullmatch(line)
        if m is not None:
            fields = {name: m.group(name) for name in fmt.group_index}
        else:
            slow = fmt.slow_match(line)
            if slow is None:
                self.raw.malformed += 1
                self.raw.samples.append(line[:4096])
                return None
            key, values = slow
            fields = dict(zip(fmt.key_names, key, strict=True))
            fields.update(zip(fmt.value_names, values, strict=True))
        row = [b""] * (fmt.chunk.groups + 1)
        for name, index in fmt.group_index.items():
            row[index] = fields.get(name, b"")
        return tuple(row)

    def count_malformed(self, line: bytes) -> None:
        """A line known to be broken (torn, over-long) without matching it."""
        self.raw.malformed += 1
        self.raw.samples.append(line[:4096])


Minutes = dict[tuple[str, str], Any]  # (site, minute label) -> what was counted in it
# A hit key's status class, and its (dimension, member) pairs: path, status, method, object.
Described = tuple[str, tuple[tuple[str, str], ...]]


class Aggregator:
    """Classifies RawCounts into a Delta: once per distinct key, never per line.

    The loops below run once per distinct key of a batch, which for a site whose lines
    are spread thinly over time is nearly once per line: they look things up in dicts
    inline rather than through calls."""

    def __init__(self, config: Config, counter: LineCounter, classifier: Classifier | None = None):
        self.config = config
        self.counter = counter
        self.classifier = classifier or Classifier(config, counter.format)
        counter.use(self.classifier)
        self.count_bots = config.count_bots
        self.grans: tuple[str, ...] = GRANS
        self._site_minute: dict[tuple[bytes, ...], tuple[str, str]] = {}
        # What a hit key says after its context (request, status, ...), described once.
        self._described: dict[tuple[bytes, ...], Described] = {}
        self._held = 0  # bytes of the keys of both: 8 KB requests must not pile up

    def classify(self, raw: RawCounts) -> Delta:
        delta = Delta(lines=raw.lines, malformed=raw.malformed)
        totals: Minutes = {}  # -> Counter of totals
        hits: Minutes = {}  # -> dimension -> member -> hits
        sizes: Minutes = {}  # -> dimension -> member -> bytes
        self._hits(raw, totals, hits, sizes)
        cl = self.classifier
        self._simple_dim(raw.agents, "agent", cl.agent, hits, part=1)  # (bot, family)
        self._simple_dim(raw.agents, "os", cl.os, hits)
        self._simple_dim(raw.agents, "device", cl.device, hits)
        self._simple_dim(raw.clients, "client", cl.client, hits)
        self._simple_dim(raw.referrers, "referrer", cl.referrer, hits)
        for ctx, n in raw.ignored.items():
            self._totals_of(totals, self._at(ctx))["ignored"] += n
        self._bots(raw, totals, hits)
        self._visitors(raw, delta)
        self._durations(raw, totals)
        self._malformed(raw, totals, delta)
        self._roll_up(totals, hits, sizes, delta)
        self._recent(raw, delta)
        if self._held > CACHE_BYTES or max(len(self._site_minute), len(self._described)) > 50_000:
            self._site_minute.clear()
            self._described.clear()
            self._held = 0
        return delta

    def unclassified(self, raw: RawCounts) -> Delta:
        """A batch classify() failed on: every line of it counted as malformed."""
        broken = RawCounts(malformed=raw.lines + raw.malformed, samples=raw.samples)
        delta = Delta(lines=raw.lines, malformed=broken.malformed)
        totals: Minutes = {}
        self._malformed(broken, totals, delta)
        self._roll_up(totals, {}, {}, delta)
        return delta

    # --- per distinct key ----------------------------------------------------------

    def _at(self, ctx: tuple[bytes, ...]) -> tuple[str, str]:
        """(site, minute label) of a context tuple (tmin, ttz, site) as laid out."""
        found = self._site_minute.get(ctx)
        if found is None:
            site, buckets = self.context_of(self.counter.ctx_layout, ctx)
            found = self._site_minute[ctx] = (site, buckets.minute)
            self._held += sum(map(len, ctx))
        return found

    @staticmethod
    def _totals_of(totals: Minutes, sm: tuple[str, str]) -> Counter[str]:
        found = totals.get(sm)
        if found is None:
            found = totals[sm] = Counter()
        return found

    def _describe(self, what: tuple[bytes, ...]) -> Described:
        """The status class and the members a hit key's fields (after its context) give."""
        layout = self.counter.key_layout
        fields = dict(zip(layout[len(self.counter.ctx_layout) :], what, strict=True))
        path = self.path_of(fields)
        status = fields["status"].decode("ascii", "replace") if "status" in fields else "-"
        members = {
            "path": path,
            "status": status,
            "method": method_of(fields),
            # only errors: a drill-down is for the paths of 404s and 5xx, and 2xx-3xx
            # would count every path a second time
            "status_path": f"{status} {path}" if status[:1] in ERROR_CLASSES else None,
            "object": self.classifier.object_of(path),
        }
        pairs = tuple((d, m) for d in HIT_KEY_DIMS if (m := members[d]) is not None)
        found = (status_class(status), pairs)
        self._described[what] = found
        self._held += sum(map(len, what))
        return found

    def _hits(self, raw: RawCounts, totals: Minutes, hits: Minutes, sizes: Minutes) -> None:
        nctx = len(self.counter.ctx_layout)
        site_minute, at = self._site_minute.get, self._at
        described, describe = self._described.get, self._describe
        size_of = raw.sizes.get
        for key, n in raw.hits.items():
            ctx = key[:nctx]
            sm = site_minute(ctx) or at(ctx)
            what = key[nctx:]
            cls, members = described(what) or describe(what)
            nbytes = size_of(key, 0)
            tot = totals.get(sm)
            if tot is None:
                tot = totals[sm] = Counter()
                hits[sm] = {dim: {} for dim in HIT_KEY_DIMS}
                sizes[sm] = {dim: {} for dim in HIT_KEY_DIMS}
            tot["hits"] += n
            tot["bytes"] += nbytes
            tot[cls] += n
            h, b = hits[sm], sizes[sm]
            for dim, member in members:
                per = h[dim]
                per[member] = per.get(member, 0) + n
                per = b[dim]
                per[member] = per.get(member, 0) + nbytes

    def _bots(self, raw: RawCounts, totals: Minutes, hits: Minutes) -> None:
        """Bot lines (keyed by context and agent): the bots total, and per crawler name."""
        nctx = len(self.counter.ctx_layout)
        agent = self.classifier.agent
        for key, n in raw.bots.items():
            sm = self._at(key[:nctx])
            self._totals_of(totals, sm)["bots"] += n
            name = agent(key[nctx])[1]
            per = hits.setdefault(sm, {}).setdefault("bot", {})
            per[name] = per.get(name, 0) + n

    def _simple_dim(
        self,
        counts: Counter[tuple[bytes, ...]],
        dim: str,
        classify: BoundedCache[bytes, Any],
        hits: Minutes,
        part: int | None = None,
    ) -> None:
        """Agents or referrers: keys of (context..., value), counted per member of `dim`.
        The classifier's cache is read in place: one dict look-up a key, a call only for
        a value it has not seen."""
        nctx = len(self.counter.ctx_layout)
        site_minute, at = self._site_minute.get, self._at
        known = classify.data.get
        for key, n in counts.items():
            ctx = key[:nctx]
            sm = site_minute(ctx) or at(ctx)
            value = key[nctx]
            found = known(value)
            if found is None:
                found = classify(value)
            member = found if part is None else found[part]
            dims: dict[str, dict[str, int]] | None = hits.get(sm)
            if dims is None:
                dims = hits[sm] = {}
            per = dims.get(dim)
            if per is None:
                per = dims[dim] = {}
            per[member] = per.get(member, 0) + n

    # --- shared with the rollup (kept stable) ----------------------------------------

    def context_of(self, layout: tuple[str, ...], values: tuple[bytes, ...]) -> tuple[str, Buckets]:
        cl = self.classifier
        fields = dict(zip(layout, values, strict=False))
        site = cl.site(fields.get("site", b""))
        buckets = None
        if "tmin" in fields:
            buckets = cl.buckets((fields["tmin"], fields.get("ttz", b"")))
        return site, buckets or cl.now_buckets()

    def path_of(self, fields: dict[str, bytes]) -> str:
        cl = self.classifier
        if "request" in fields:
            return cl.path_of_request(fields["request"])
        if "uri" in fields:
            return cl.path_of_uri((fields["uri"], fields.get("query", b"")))
        return NO_PATH

    # --- the rest ----------------------------------------------------------------------

    def _visitors(self, raw: RawCounts, delta: Delta) -> None:
        """Minute sets of visitor hashes; hours and days are their unions."""
        layout = self.counter.vis_layout
        nctx = len(self.counter.ctx_layout)
        ci = layout.index("client")
        ai = layout.index("agent") if "agent" in layout else -1
        minute_sets: dict[tuple[str, str], set[str]] = {}
        hashes: dict[tuple[bytes, bytes], str] = {}
        site_minute, at, hkey = self._site_minute.get, self._at, self.config.visitor_key()
        for key in raw.visitors:
            who = (key[ci], key[ai] if ai >= 0 else b"")
            digest = hashes.get(who)
            if digest is None:
                digest = hashes[who] = visitor_hash(*who, hkey)
            ctx = key[:nctx]
            sm = site_minute(ctx) or at(ctx)
            found = minute_sets.get(sm)
            if found is None:
                found = minute_sets[sm] = set()
            found.add(digest)
        for (site, minute), digests in minute_sets.items():
            for gran in self.grans:
                bucket = (site, gran, minute[: _CUT[gran]])
                target = delta.visitors.get(bucket)
                if target is None:
                    delta.visitors[bucket] = set(digests) if gran != "minute" else digests
                else:
                    target.update(digests)

    def _durations(self, raw: RawCounts, totals: Minutes) -> None:
        scale = self.counter.format.duration_scale
        for ctx, total in raw.durations.items():
            self._totals_of(totals, self._at(ctx))["duration_us"] += int(total * scale)

    def _malformed(self, raw: RawCounts, totals: Minutes, delta: Delta) -> None:
        if not raw.malformed:
            return
        # A line that does not parse has no time of its own: it counts at its arrival.
        site = self.config.site
        minute = self.classifier.now_buckets().minute
        self._totals_of(totals, (site, minute))["malformed"] += raw.malformed
        delta.samples[site] = [s.decode("utf-8", "backslashreplace") for s in raw.samples]

    def _roll_up(self, totals: Minutes, hits: Minutes, sizes: Minutes, delta: Delta) -> None:
        """Minute-level counts into every configured granularity's buckets."""
        for (site, minute), counts in totals.items():
            for gran in self.grans:
                key = (site, gran, minute[: _CUT[gran]])
                found = delta.totals.get(key)
                if found is None:
                    delta.totals[key] = Counter(counts)
                else:
                    found.update(counts)
        for minutes, target in ((hits, delta.members), (sizes, delta.member_bytes)):
            for (site, minute), dims in minutes.items():
                for dim, per in dims.items():
                    if target is delta.member_bytes:
                        per = {m: b for m, b in per.items() if b}
                    if not per:
                        continue
                    for gran in self.grans:
                        mkey = (site, dim, gran, minute[: _CUT[gran]])
                        found = target.get(mkey)
                        if found is None:
                            target[mkey] = Counter(per)
                        else:
                            found.update(per)

    def _recent(self, raw: RawCounts, delta: Delta) -> None:
        if not raw.recent:
            return
        cl = self.classifier
        layout = self.counter.recent_layout
        for values in raw.recent:
            fields = dict(zip(layout, values, strict=True))
            site, buckets = self.context_of(layout, values)
            bot, family = cl.agent(fields.get("agent", b"-"))
            size = fields.get("bytes", b"-")
            item = {
                "time": buckets.minute,
                "path": self.path_of(fields),
                "status": fields.get("status", b"-").decode("ascii", "replace"),
                "bytes": int(size) if size not in (b"-", b"") else 0,
                "agent": family,
                "bot": bot,
            }
            delta.recent.setdefault(site, []).append(json.dumps(item, separators=(",", ":")))
