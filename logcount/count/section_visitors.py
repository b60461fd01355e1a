"""Live visitors per section: who asked for a page under `/blog/` this hour and today.

`top --by path --depth N` sums a section's hits and bytes from its paths' members, but
visitors do not add up: one reader of ten posts is one visitor of `/blog/`. The store
keeps each path's visitor set of a day and unions them (sinks/section_store.py); the
live buckets keep no visitors per path, so the reader (LineCounter, with the page fields
in its visitor keys) hands each section of depth 1..`section_depth` its visitor hashes
here, per hour and day, as events are kept (count/events.py). apply.lua adds them to a
HyperLogLog per section and bucket, as the site's own visitors are, so a window's union
is one PFCOUNT; a bucket keeps at most max_members sections, so that made-up paths cannot
fill Redis with keys.

A section's visitor is the site's: the same hash of (client, agent), so the union of a
site's sections is the site's visitors.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from logcount.count.classify import CACHE_BYTES, visitor_digests
from logcount.count.delta import SectionKey
from logcount.count.paths import section_of
from logcount.count.sums import add_numbered, add_to_place_sets
from logcount.dimensions import SET_GRANS

PAGE_FIELDS = ("request", "uri", "query")  # what says which path a visitor asked for
PAGES_KEPT = 50_000  # pages whose sections are kept from batch to batch, at most


def section_fields(config: Any) -> tuple[str, ...]:
    """The fields a LineCounter's visitor keys must carry for the live sections."""
    return PAGE_FIELDS if config.section_depth else ()


class SectionVisitors:
    """Turns a LineCounter's visitor keys (with the page fields), or the visitor numbers
    its scanner gave each (context, page), into the sets of visitor hashes of each (site,
    depth, section, granularity, label): each distinct context is placed once a batch,
    each distinct request cut into its sections once (kept from batch to batch), their
    pairs' sets found once, each visitor hashed once a batch."""

    def __init__(self, aggregator: Any, depth: int, grans: tuple[str, ...] = SET_GRANS):
        self.aggregator = aggregator
        self.depths = tuple(range(1, depth + 1))
        self.grans = grans
        # A page's sections, kept from batch to batch (a diverse day asks the same few
        # thousand pages in every batch), and the sections made once as objects; bounded
        # as the aggregator's own caches, in entries and in bytes of the keys held.
        self.pages: dict[tuple[bytes, ...], tuple[tuple[str, str], ...] | None] = {}
        self.alike: dict[Any, Any] = {}
        self.held = 0

    def __bool__(self) -> bool:
        return bool(self.depths)

    def collect(
        self,
        visitors: set[tuple[bytes, ...]],
        out: dict[SectionKey, set[str]],
        digests: dict[tuple[bytes, ...], str | None] | None = None,
    ) -> None:
        """`digests`: the batch's visitor hashes by (client, agent) known so far (the
        aggregator's, made for the site's visitors), added to."""
        found = self._levels(out) if visitors else None
        if found is None:
            return
        page_fields, place_of, sections_of, sets_of = found
        agg, cl = self.aggregator, self.aggregator.classifier
        layout = agg.counter.vis_layout
        who_fields = tuple(f for f in layout if f in ("client", "agent"))
        page_at = tuple(layout.index(f) for f in page_fields)
        who_at = tuple(layout.index(f) for f in who_fields)
        digest_of = visitor_digests(cl.config.visitor_key(), len(who_at))
        known = {} if digests is None else digests
        nctx = len(agg.counter.ctx_layout)
        add_to_place_sets(
            visitors,
            nctx,
            page_at,
            who_at,
            {},
            self.pages,
            {},
            known,
            place_of,
            sections_of,
            sets_of,
            digest_of,
        )

    def collect_numbered(
        self,
        numbered: dict[tuple[bytes, ...], list[int]],
        out: dict[SectionKey, set[str]],
        hexes: dict[int, str],
        site_place: Callable[[tuple[bytes, ...]], Hashable],
        site_sets: Callable[[Any], tuple[set[str], ...]],
    ) -> bool:
        """collect() for visitors the scanner numbered (Aggregator.number_visitors): a
        place key is the context and then the page fields, in the visitor keys' order;
        `hexes`: the batch's hashes by number known so far, added to. The site's sets get
        each number in the same pass (`site_sets` of a context's `site_place`: its minute),
        one look-up of its text for both. False, nothing done, when the format names no
        page or no visitor: the caller adds the site's own."""
        found = self._levels(out, site_place, site_sets) if numbered else None
        if found is None:
            return False
        page_fields, place_of, sections_of, sets_of = found
        nctx = len(self.aggregator.counter.ctx_layout)
        page_at = tuple(range(nctx, nctx + len(page_fields)))
        places: dict[Any, Any] = {}
        targets: dict[Any, Any] = {}
        add_numbered(
            numbered, nctx, page_at, places, self.pages, targets, hexes,
            place_of, sections_of, sets_of,
        )  # fmt: skip
        return True

    def _levels(
        self,
        out: dict[SectionKey, set[str]],
        site_place: Callable[[tuple[bytes, ...]], Hashable] | None = None,
        site_sets: Callable[[Any], tuple[set[str], ...]] | None = None,
    ) -> tuple[Any, ...] | None:
        """(the page fields, then what finds a context's place, a page's sections and
        their pair's sets in `out`, and the site's sets first when given) for a batch;
        None when the format names no page or no visitor: nothing to keep."""
        agg, cl = self.aggregator, self.aggregator.classifier
        layout, ctx_layout = agg.counter.vis_layout, agg.counter.ctx_layout
        page_fields = tuple(f for f in layout if f in PAGE_FIELDS)
        if not page_fields or not any(f in layout for f in ("client", "agent")):
            return None
        grans = tuple(g for g in self.grans if g in agg.grans)
        depths = self.depths
        if self.held > CACHE_BYTES or len(self.pages) > PAGES_KEPT:
            self.pages.clear()
            self.alike.clear()
            self.held = 0
        # Places (the site's place, site, labels) and sections, each made once: equal ones
        # as one object, so that the C loop finds a (place, sections) pair by identity. A
        # key of the scanner is per minute and request, sets are per hour or day and section.
        places: dict[Any, Any] = {}
        alike = self.alike

        def place_of(ctx: tuple[bytes, ...]) -> tuple[Any, ...]:
            site, buckets = agg.context_of(ctx_layout, ctx)
            first = site_place(ctx) if site_place is not None else None
            place = (first, site, *(getattr(buckets, g) for g in grans))
            return places.setdefault(place, place)

        # A page's sections at each depth, as (depth, section) pairs: the same section
        # name at two depths is two sets (`/blog/` at depth 2 is the page alone); none for
        # a page not counted, whose visitor is still the site's.
        def sections_of(page_key: tuple[bytes, ...]) -> tuple[tuple[str, str], ...]:
            self.held += sum(map(len, page_key))
            path = agg.path_of(dict(zip(page_fields, page_key, strict=True)))
            if cl.ignored(path) or not path.startswith("/"):
                return ()  # not a counted hit, or no path to cut (`-`, `*`)
            sections = tuple((str(d), section_of(path, d)) for d in depths)
            return alike.setdefault(sections, sections)

        def sets_of(where: tuple[Any, Any]) -> tuple[set[str], ...] | None:
            (first, site, *labels), sections = where
            found = site_sets(first) if site_sets is not None else ()
            found += tuple(
                out.setdefault((site, depth, section, gran, label), set())
                for depth, section in sections
                for gran, label in zip(grans, labels, strict=True)
            )
            return found or None

        return page_fields, place_of, sections_of, sets_of
