"""Stage two of the engine: classify each distinct key a batch counted once.

Stage one, the hot path, is count/line_counter.py (`LineCounter.feed(chunk)` counts whole
lines into RawCounts); `Aggregator.classify(raw)` classifies each distinct key (path,
object, agent family, referrer host, buckets), producing a `Delta` per minute, hour and
day bucket. Both are shared by every entry point (pipe, tail, rollup).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from json.encoder import encode_basestring_ascii  # json.dumps' own, for a str
from operator import itemgetter
from typing import Any

from logcount.config import Config
from logcount.count.classify import (
    CACHE_BYTES,
    Buckets,
    Classifier,
    method_of,
    referrer_host,
    status_class,
    visitor_digests,
)
from logcount.count.delta import Delta
from logcount.count.events import EventSets
from logcount.count.line_counter import LineCounter, RawCounts
from logcount.count.paths import NO_PATH
from logcount.count.section_visitors import PAGE_FIELDS, SectionVisitors
from logcount.count.sums import (
    Pairs,
    add_by_members,
    add_counts,
    add_numbered,
    add_to_sets,
    counter_copy,
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
_CUT = {g.name: g.cut for g in GRANULARITIES.values()}  # of a minute label, for each


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
            # not the classifier's cache of hosts: the pairs below keep each referrer's
            # (15,000 entries of a diverse day held twice); the host is read from the
            # referrer's first bytes either way
            "referrer": referrer_host,
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
        # The batch's visitor hashes, by (client, agent), or by number when the scanner
        # numbered them: the sections' visitors are the site's, hashed once
        digests: dict[tuple[bytes, ...], str | None] = {}
        hexes: dict[int, str] = {}
        self._visitors(raw, delta, digests, hexes)
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

    def number_visitors(self) -> bool:
        """Have the counter's scanner number the visitors (LineCounter.number_visitors) for
        the live sets, the site's and the sections': take() then hands over a number per
        visitor and place, not a key tuple per visitor and page, and the numbers are the
        hashes the key tuples give (classify.visitor_hash). No bot is skipped: the visitor
        keys are those of hits already (a bot's line is one with count_bots only). False,
        nothing changed, when the format counts no visitors or events need the keys."""
        counter = self.counter
        if self.events or "client" not in counter.vis_layout:
            return False
        layout = counter.vis_layout
        pages = tuple(f for f in layout if f in PAGE_FIELDS) if self.sections else ()
        counter.number_visitors(self.config.visitor_key(), pages, None)
        return True

    def cached(self) -> int:
        """Entries its caches and its classifier's hold (bounded each, filled by the
        distinct keys seen: a rollup's counter makes its batches smaller as they grow)."""
        mine: list[dict[Any, Any]] = [self._site_minute, self._described, self._alike]
        mine += (pairs for *_, pairs in self._tables)
        return sum(len(cache) for cache in mine) + self.classifier.cached()

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
        alike = self._alike
        held = tuple(alike.setdefault(p, p) for p in ((TOTALS, status_class(status)), *pairs))
        # Kept under its fields held once: the batch that first met a key made them, and
        # a request met with several statuses over many batches held a copy of itself per
        # key (a diverse day: 25,000 keys, 6,500 requests)
        key = tuple(alike.setdefault(f, f) for f in what)
        found = self._described[key] = alike.setdefault(held, held)
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

        alike = self._alike

        def pairs_of(rest: tuple[bytes, ...]) -> Pairs:
            self._held += len(rest[0])
            # Held once for all the values alike: a diverse day's 15,000 referrers name a
            # few thousand hosts, its 2,000 agents a few dozen families
            members = [of(rest[0]) for of in member_of]
            found = tuple(alike.setdefault(p, p) for p in zip(dims, members, strict=True))
            return alike.setdefault(found, found)

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
        self,
        raw: RawCounts,
        delta: Delta,
        digests: dict[tuple[bytes, ...], str | None],
        hexes: dict[int, str],
    ) -> None:
        """Minute sets of visitor hashes, from the visitor keys or the numbers by place;
        hours and days are their unions."""
        layout = self.counter.vis_layout
        minute_sets: dict[tuple[str, str], set[str]] = {}
        at, hkey = self._at, self.config.visitor_key()

        def minute_set(sm: tuple[str, str]) -> tuple[set[str], ...]:
            found = minute_sets.get(sm)
            if found is None:
                found = minute_sets[sm] = set()
            return (found,)

        nctx = len(self.counter.ctx_layout)
        if raw.visitors:
            who_at = tuple(layout.index(f) for f in ("client", "agent") if f in layout)
            digest_of = visitor_digests(hkey, len(who_at))

            def sets_of(where: tuple[Any, Any]) -> tuple[set[str], ...]:
                return minute_set(at(where[0]))

            add_to_sets(raw.visitors, nctx, (), who_at, {}, digests, sets_of, digest_of)
        if raw.numbered and not (
            self.sections
            and self.sections.collect_numbered(raw.numbered, delta.sections, hexes, at, minute_set)
        ):
            # A place key is a context (and a page, for the sections): its place is its
            # (site, minute), its page the same () for every key. With live sections, the
            # sections' pass gives each number to its minute's set too.
            def minute_of(pair: tuple[Any, Any]) -> tuple[set[str], ...]:
                return minute_set(pair[0])

            add_numbered(raw.numbered, nctx, (), {}, {}, {}, hexes, at, tuple, minute_of)
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
