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

import gc
import re
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii  # json.dumps' own, for a str
from operator import itemgetter
from typing import Any

from logcount.config import Config
from logcount.count.classify import (
    CACHE_BYTES,
    Buckets,
    Classifier,
    method_of,
    status_class,
    visitor_digests,
)
from logcount.count.delta import SAMPLE_SIZE, Delta
from logcount.count.events import EventSets
from logcount.count.logformat import CompiledFormat
from logcount.count.paths import NO_PATH
from logcount.count.regex_scan import RegexScanner, getter
from logcount.count.section_visitors import SectionVisitors
from logcount.count.sums import (
    Pairs,
    add_by_members,
    add_counts,
    add_to_sets,
    counter_copy,
    native,
)
from logcount.dimensions import (
    DIMENSIONS,
    ERROR_CLASSES,
    GRANULARITIES,
    GRANULARITY_NAMES,
    HIT_KEY_DIMS,
)
from logcount.timing import FIELD_PREFIX

GRANS = GRANULARITY_NAMES
# The engine makes and drops millions of tuples, dicts and strings a minute, none of them
# in a reference cycle (refcounting frees them). Python's default thresholds ran the cyclic
# collector so often that it cost a fifth of the engine's CPU on a diverse day (300,000
# lines: 2.19-2.44 s of CPU against 2.76-3.07 s, alternating runs): a counting process
# collects after 100,000 allocations, and rarely the old generation.
GC_THRESHOLDS = (100_000, 50, 1000)
_CUT = {g.name: g.cut for g in GRANULARITIES.values()}  # of a minute label, for each


SCAN_VERSION = 4  # the _scan.c this code calls (its SCAN_VERSION)


def tune_gc() -> None:
    """For a process that counts: what start-up made (modules, tables, the classifier) is
    frozen out of the collector's reach, which then runs at GC_THRESHOLDS."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _scan_module() -> Any:
    """logcount.count._scan (the C hot loop), or None (see sums.native)."""
    return native("_scan", SCAN_VERSION)


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
    # key_layout: the sum of the lines' durations, in microseconds (timing.capped)
    durations: dict[tuple[bytes, ...], int] = field(default_factory=dict)
    # (ctx_layout..., bin): lines per duration bin (logcount.timing), the bin as text
    timings: Counter[tuple[bytes, ...]] = field(default_factory=Counter)
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
        event_fields: tuple[str, ...] = (),
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
        vis += [f for f in event_fields if f in gi and f not in vis]  # count/events.py
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
            "duration_scale": int(fmt.duration_scale),
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
            raw.timings,
            raw.sizes,
            raw.clients,
            recent,
            raw.durations,
        ) = self.scanner.take(Counter, with_recent)
        for item in recent:  # a line's bytes (the C scanner's), or a row
            row = item if isinstance(item, tuple) else self._row(item)
            raw.recent.append(self._recent(row))
        return raw

    def _row(self, line: bytes) -> tuple[bytes, ...]:
        """The fields of a recent line the C scanner kept as bytes: cut by the scanner
        again (0.3 ms a batch's 1,000, the chunk regex took 4.4), which accepted it; the
        regex should the scanner ever refuse it."""
        row: tuple[bytes, ...] | None = self.scanner.match(line)
        return row if row is not None else self._lines.findall(line)[0]

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
# The dimension of the pair that adds a hit key's hits (or bytes) to its bucket's totals,
# under its status class (s2xx ...): the bucket's hits are their sum.
TOTALS = ""


class Aggregator:
    """Classifies RawCounts into a Delta: once per distinct key, never per line.

    The loops below run once per distinct key of a batch, which for a site whose lines
    are spread thinly over time is nearly once per line: they look things up in dicts
    inline rather than through calls."""

    def __init__(
        self,
        config: Config,
        counter: LineCounter,
        classifier: Classifier | None = None,
        section_depth: int = 0,
    ):
        """`section_depth`: the depths whose sections' visitors a live reader keeps (its
        counter's visitor keys carry the page: section_visitors.section_fields)."""
        self.config = config
        self.counter = counter
        self.classifier = classifier or Classifier(config, counter.format)
        counter.use(self.classifier)
        self.count_bots = config.count_bots
        self.grans: tuple[str, ...] = GRANS
        self.events = EventSets(self) if config.events else None
        self.sections = SectionVisitors(self, section_depth) if section_depth else None
        self._site_minute: dict[tuple[bytes, ...], tuple[str, str]] = {}
        # What a hit key says after its context (request, status, ...), described once:
        # the (dimension, member) pairs it adds its hits and bytes to, (TOTALS, its status
        # class) first
        self._described: dict[tuple[bytes, ...], Pairs] = {}
        # Each description and (dimension, member) pair held once, not once per hit key:
        # many keys describe alike (a path's statuses), as a diverse day's 50,000 do
        self._alike: dict[Any, Any] = {}
        self._held = 0  # bytes of the keys held: 8 KB requests must not pile up
        cl = self.classifier
        # What yields the member of each dimension of the scanner's other tables
        member_of: dict[str, Callable[[bytes], str]] = {
            "agent": lambda raw: cl.agent(raw)[1],
            "os": cl.os,
            "device": cl.device,
            "client": cl.client,
            "referrer": cl.referrer,
        }
        # (RawCounts table, its dimensions, what yields each one's member, the pairs of
        # each value seen): one row per `source` of dimensions.DIMENSIONS but hit and bot
        sources = (("agent", "agents"), ("client", "clients"), ("referrer", "referrers"))
        self._tables: list[tuple[str, tuple[str, ...], tuple[Any, ...], dict[Any, Pairs]]] = [
            (table, dims, tuple(member_of[d] for d in dims), {})
            for source, table in sources
            if (dims := tuple(n for n, d in DIMENSIONS.items() if d.source == source))
        ]

    def classify(self, raw: RawCounts) -> Delta:
        delta = Delta(lines=raw.lines, malformed=raw.malformed)
        totals: Minutes = {}  # -> Counter of totals
        hits: Minutes = {}  # -> dimension -> member -> hits
        sizes: Minutes = {}  # -> dimension -> member -> bytes
        times: Minutes = {}  # -> dimension -> member -> microseconds
        self._hits(raw, totals, hits, sizes, times)
        for table, dims, member_of, pairs in self._tables:
            self._table_dims(getattr(raw, table), dims, member_of, pairs, hits)
        for ctx, n in raw.ignored.items():
            self._totals_of(totals, self._at(ctx))["ignored"] += n
        self._bots(raw, totals, hits)
        # The batch's visitor hashes, by (client, agent): the sections' visitors are the
        # site's, hashed once
        digests: dict[tuple[bytes, ...], str | None] = {}
        self._visitors(raw, delta, digests)
        if self.events:
            self.events.collect(raw.visitors, delta.events)
        if self.sections:
            self.sections.collect(raw.visitors, delta.sections, digests)
        self._timings(raw, totals)
        self._malformed(raw, totals, delta)
        self._roll_up(totals, hits, sizes, delta, times)
        self._recent(raw, delta)
        caches: tuple[dict[Any, Any], ...] = (
            self._site_minute,
            self._described,
            *(pairs for *_, pairs in self._tables),
        )
        if self._held > CACHE_BYTES or max(map(len, caches)) > 50_000:
            for cache in caches:
                cache.clear()
            self._alike.clear()
            self._held = 0
        return delta

    def unclassified(self, raw: RawCounts) -> Delta:
        """A batch classify() failed on: every line of it counted as malformed."""
        broken = RawCounts(malformed=raw.lines + raw.malformed, samples=raw.samples)
        delta = Delta(lines=raw.lines, malformed=broken.malformed)
        totals: Minutes = {}
        self._malformed(broken, totals, delta)
        self._roll_up(totals, {}, {}, delta, {})
        return delta

    # --- per distinct key ----------------------------------------------------------

    def _at_of(self, ctx: tuple[bytes, ...]) -> tuple[str, str]:
        """(site, minute label) of a context seen for the first time (the caller keeps it)."""
        site, buckets = self.context_of(self.counter.ctx_layout, ctx)
        self._held += sum(map(len, ctx))
        return site, buckets.minute

    def _at(self, ctx: tuple[bytes, ...]) -> tuple[str, str]:
        """(site, minute label) of a context tuple (tmin, ttz, site) as laid out."""
        found = self._site_minute.get(ctx)
        if found is None:
            found = self._site_minute[ctx] = self._at_of(ctx)
        return found

    @staticmethod
    def _totals_of(totals: Minutes, sm: tuple[str, str]) -> Counter[str]:
        found = totals.get(sm)
        if found is None:
            found = totals[sm] = Counter()
        return found

    def _describe(self, what: tuple[bytes, ...]) -> Pairs:
        """The status class and the members a hit key's fields (after its context) give,
        as (dimension, member) pairs: (TOTALS, class) and then one per dimension."""
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
        pairs = ((d, m) for d in HIT_KEY_DIMS if (m := members[d]) is not None)
        held = tuple(self._alike.setdefault(p, p) for p in ((TOTALS, status_class(status)), *pairs))
        found = self._described[what] = self._alike.setdefault(held, held)
        self._held += sum(map(len, what))
        return found

    def _hits(
        self, raw: RawCounts, totals: Minutes, hits: Minutes, sizes: Minutes, times: Minutes
    ) -> None:
        """Hits, bytes and durations per member of each hit-key dimension, and the bucket's
        totals (hits, bytes, per status class, duration_us): sums.add_by_members over the
        hit keys, their sizes and their durations; a context or a key's fields seen for
        the first time are described then."""
        nctx = len(self.counter.ctx_layout)
        where, described, at_of, describe = (
            self._site_minute,
            self._described,
            self._at_of,
            self._describe,
        )
        # Sizes and durations are keyed as the hits (a key of 0 bytes, or no duration, is
        # absent): summed in the hits' pass, on its look-ups of context and description
        more = (
            ((raw.sizes, sizes), (raw.durations, times)) if raw.durations else ((raw.sizes, sizes),)
        )
        add_by_members(raw.hits, nctx, where, described, hits, at_of, describe, more)
        # TOTALS: hits (and bytes) per status class, whose sum is the bucket's
        for sm, dims in hits.items():
            per_class = dims.pop(TOTALS, None)
            if per_class:
                own = self._totals_of(totals, sm)
                own.update(per_class)
                own["hits"] += sum(per_class.values())
        for sm, dims in sizes.items():
            per_class = dims.pop(TOTALS, None)
            if per_class:
                self._totals_of(totals, sm)["bytes"] += sum(per_class.values())
        for sm, dims in times.items():
            per_class = dims.pop(TOTALS, None)
            if per_class:
                self._totals_of(totals, sm)["duration_us"] += sum(per_class.values())

    def _table_dims(
        self,
        counts: Counter[tuple[bytes, ...]],
        dims: tuple[str, ...],
        member_of: tuple[Callable[[bytes], str], ...],
        pairs: dict[tuple[bytes, ...], Pairs],
        hits: Minutes,
    ) -> None:
        """A table of (context..., value) keys counted per member of the dimensions its
        value yields (an agent: family, os, device type; a referrer: its host); each value
        classified once, when first seen."""

        def pairs_of(rest: tuple[bytes, ...]) -> Pairs:
            self._held += len(rest[0])
            return tuple(zip(dims, [of(rest[0]) for of in member_of], strict=True))

        nctx = len(self.counter.ctx_layout)
        add_by_members(counts, nctx, self._site_minute, pairs, hits, self._at_of, pairs_of)

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

    def _visitors(
        self, raw: RawCounts, delta: Delta, digests: dict[tuple[bytes, ...], str | None]
    ) -> None:
        """Minute sets of visitor hashes; hours and days are their unions."""
        layout = self.counter.vis_layout
        minute_sets: dict[tuple[str, str], set[str]] = {}
        at, hkey = self._at, self.config.visitor_key()

        def sets_of(where: tuple[Any, Any]) -> tuple[set[str], ...]:
            sm = at(where[0])
            found = minute_sets.get(sm)
            if found is None:
                found = minute_sets[sm] = set()
            return (found,)

        who_at = tuple(layout.index(f) for f in ("client", "agent") if f in layout)
        digest_of = visitor_digests(hkey, len(who_at))
        nctx = len(self.counter.ctx_layout)
        add_to_sets(raw.visitors, nctx, (), who_at, {}, digests, sets_of, digest_of)
        for (site, minute), hashes in minute_sets.items():
            for gran in self.grans:
                bucket = (site, gran, minute[: _CUT[gran]])
                target = delta.visitors.get(bucket)
                if target is None:
                    delta.visitors[bucket] = set(hashes) if gran != "minute" else hashes
                else:
                    target.update(hashes)

    def _timings(self, raw: RawCounts, totals: Minutes) -> None:
        """Lines per duration bin: fields of the bucket's totals (timing.field_of)."""
        nctx = len(self.counter.ctx_layout)
        prefix = FIELD_PREFIX
        for key, n in raw.timings.items():
            self._totals_of(totals, self._at(key[:nctx]))[prefix + key[nctx].decode()] += n

    def _malformed(self, raw: RawCounts, totals: Minutes, delta: Delta) -> None:
        if not raw.malformed:
            return
        # A line that does not parse has no time of its own: it counts at its arrival.
        site = self.config.site
        minute = self.classifier.now_buckets().minute
        self._totals_of(totals, (site, minute))["malformed"] += raw.malformed
        delta.samples[site] = [s.decode("utf-8", "backslashreplace") for s in raw.samples]

    def _roll_up(
        self, totals: Minutes, hits: Minutes, sizes: Minutes, delta: Delta, times: Minutes
    ) -> None:
        """Minute-level counts into every configured granularity's buckets."""
        for (site, minute), counts in totals.items():
            for gran in self.grans:
                key = (site, gran, minute[: _CUT[gran]])
                found = delta.totals.get(key)
                if found is None:
                    delta.totals[key] = counter_copy(counts)
                else:
                    add_counts(found, counts)
        for minutes, target, with_zeros in (
            (hits, delta.members, False),
            (sizes, delta.member_bytes, True),
            (times, delta.member_durations, False),  # raw.durations holds no 0 sums
        ):
            for (site, minute), dims in minutes.items():
                for dim, per in dims.items():
                    if with_zeros and 0 in per.values():
                        per = {m: b for m, b in per.items() if b}
                    if not per:
                        continue
                    for gran in self.grans:
                        mkey = (site, dim, gran, minute[: _CUT[gran]])
                        found = target.get(mkey)
                        if found is None:
                            target[mkey] = counter_copy(per)
                        else:
                            add_counts(found, per)

    def _recent(self, raw: RawCounts, delta: Delta) -> None:
        """The last requests as JSON lines. Per record: its context through the _at
        cache, path and agent through the classifier's caches, and the JSON written
        from parts (json's own encoder for the strings): a batch has up to 1,000 of them."""
        if not raw.recent:
            return
        layout = self.counter.recent_layout
        at_of = [layout.index(f) for f in self.counter.ctx_layout]
        ctx_of = itemgetter(*at_of) if len(at_of) > 1 else None
        pos = {f: i for i, f in enumerate(layout)}
        ai, si, bi = pos.get("agent", -1), pos.get("status", -1), pos.get("bytes", -1)
        target = [(f, pos[f]) for f in ("request", "uri", "query") if f in pos]
        agent, dumps, at = self.classifier.agent, encode_basestring_ascii, self._at
        out = delta.recent
        for values in raw.recent:
            ctx = ctx_of(values) if ctx_of is not None else tuple(values[i] for i in at_of)
            site, minute = at(ctx)
            bot, family = agent(values[ai] if ai >= 0 else b"-")
            status = values[si].decode("ascii", "replace") if si >= 0 else "-"
            size = values[bi] if bi >= 0 else b"-"
            path = self.path_of({f: values[i] for f, i in target})
            out.setdefault(site, []).append(
                f'{{"time":"{minute}","path":{dumps(path)},"status":{dumps(status)},'
                f'"bytes":{int(size) if size not in (b"-", b"") else 0},'
                f'"agent":{dumps(family)},"bot":{"true" if bot else "false"}}}'
            )
