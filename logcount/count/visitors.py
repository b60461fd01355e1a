"""Distinct visitors per day and per member (path, object), for the store: the live
side keeps them per bucket (Aggregator), a rollup per day and member as well."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from logcount.count import sums
from logcount.count.aggregate import Aggregator
from logcount.count.classify import Who, visitor_numbers_py
from logcount.count.sums import add_to_sets

# The fields of a visitor key that say which page it asked for (its path's visitors)
PAGE_FIELDS = ("request", "method", "uri", "query")


# The most requests (and contexts) whose path and object are kept between batches
KEEP_PAGES = 50_000


visitor_numbers: Callable[..., Callable[[Who], int | None]] = getattr(
    sums.native_sum(), "VisitorNumbers", visitor_numbers_py
)


def _numbers() -> array[int]:
    """Where a batch's visitor numbers of a day, path or object gather: extended by an
    array('Q') of the C scanner's is a copy of its bytes, and the sketch sorts it whole."""
    return array("Q")


class MemberVisitors:
    """Turns a LineCounter's visitor keys (counted with path_visitors) into the sets of
    visitor hashes (as numbers: classify.visitor_number) of each (site, day), (site, day,
    path) and (site, day, object), with the aggregator's classifier and the live side's
    rule for bots."""

    def __init__(self, aggregator: Aggregator):
        self.aggregator = aggregator
        # What a request and a context resolve to, kept from batch to batch: a diverse
        # day's batch of 100,000 keys asks for ~4,000 requests, mostly those of the batch
        # before (47,000 classifications in the 12 batches of a 1,000,000-line day, which
        # has ~6,700 distinct requests).
        self.pages: dict[Any, tuple[str, str | None] | None] = {}  # None: ignored
        self.places: dict[tuple[bytes, ...], tuple[str, str]] = {}  # context -> (site, day)

    def number_in_scanner(self) -> bool:
        """Have the counter's scanner number the visitors (LineCounter.number_visitors),
        for collect_numbered; False when the format counts none."""
        agg = self.aggregator
        counter = agg.counter
        if "client" not in counter.vis_layout:
            return False
        page_fields = tuple(f for f in counter.vis_layout if f in PAGE_FIELDS)
        key = agg.classifier.config.visitor_key()
        counter.number_visitors(key, page_fields, self._skip_of(), arrays=True)
        return True

    def _skip_of(self) -> Callable[[bytes], bool] | None:
        """The live side's rule for bots: whether an agent is a bot not counted (asked once
        per agent of a batch: a diverse day has a visitor (client, agent) for every few
        lines and only some thousands of agents); None when bots count."""
        if self.aggregator.count_bots:
            return None
        # the classifier's method alone: the C scanner keeps it, and is no object the cyclic
        # collector sees, so a closure over the aggregator would keep it alive for good
        agent_of = self.aggregator.classifier.agent
        return lambda agent: agent_of(agent or b"-")[0]

    def _sets_of(
        self, tables: tuple[dict[Any, Any], ...], make: Callable[[], Any] = set
    ) -> Callable[[tuple[Any, Any]], tuple[Any, ...] | None]:
        """Where the visitors of a place (context, page key) go: the sets (or what `make`
        makes) of its day, path and object in `tables`; None for an ignored path (visitors
        are those of counted hits, as on the live side)."""
        agg, cl = self.aggregator, self.aggregator.classifier
        layout, ctx_layout = agg.counter.vis_layout, agg.counter.ctx_layout
        page_fields = tuple(f for f in layout if f in PAGE_FIELDS)
        day_v, path_v, obj_v = tables
        if len(self.pages) > KEEP_PAGES:  # a flood of distinct URLs: memory stays bounded
            self.pages.clear()
        if len(self.places) > KEEP_PAGES:
            self.places.clear()
        places, pages = self.places, self.pages

        def sets_of(where: tuple[Any, Any]) -> tuple[set[int], ...] | None:
            ctx, page_key = where
            if page_key in pages:
                page = pages[page_key]
            else:
                path = agg.path_of(dict(zip(page_fields, page_key, strict=True)))
                page = None if cl.ignored(path) else (path, cl.object_of(path))
                pages[page_key] = page
            if page is None:
                return None
            place = places.get(ctx)
            if place is None:
                site, buckets = agg.context_of(ctx_layout, ctx)
                place = places[ctx] = (site, buckets.day)
            site, day = place
            path, obj = page
            out = [
                day_v.get((site, "day", day)) or day_v.setdefault((site, "day", day), make()),
                path_v.get((site, day, path)) or path_v.setdefault((site, day, path), make()),
            ]
            if obj is not None:
                out.append(
                    obj_v.get((site, day, obj)) or obj_v.setdefault((site, day, obj), make())
                )
            return tuple(out)

        return sets_of

    def collect_numbered(
        self,
        numbered: Mapping[tuple[bytes, ...], Sequence[int]],
        tables: tuple[dict[Any, array[int]], ...],
    ) -> None:
        """Day, path and object visitors from a batch numbered by the scanner
        (RawCounts.numbered: (context..., page...) -> visitor numbers, bots not counted
        already left out), as array('Q')s that may repeat a number (a visitor of several
        pages of a day): the sketches they go to take each once (sketch.sorted_hashes),
        and an array grows at a fraction of a set's cost, with no int per number when the
        C scanner hands arrays (number_in_scanner). The hashes collect() gives for the keys."""
        sets_of = self._sets_of(tables, _numbers)
        nctx = len(self.aggregator.counter.ctx_layout)
        for place, numbers in numbered.items():
            for found in sets_of((place[:nctx], place[nctx:])) or ():
                found.extend(numbers)

    def collect(
        self, visitors: set[tuple[bytes, ...]], tables: tuple[dict[Any, set[int]], ...]
    ) -> None:
        """Day, path and object visitors, with the live side's rule for bots.

        A key per distinct (day, visitor, request): sums.add_to_sets finds the sets of each
        (day, request) and the hash of each visitor (or that it is a bot not counted) once
        per batch, and adds each key's hash to its sets."""
        agg = self.aggregator
        layout, ctx_layout = agg.counter.vis_layout, agg.counter.ctx_layout
        page_fields = tuple(f for f in layout if f in PAGE_FIELDS)
        who_fields = tuple(f for f in layout if f in ("client", "agent"))
        sets_of = self._sets_of(tables)
        ci = who_fields.index("client") if "client" in who_fields else -1
        ai = who_fields.index("agent") if "agent" in who_fields else -1
        digest_of = visitor_numbers(
            agg.classifier.config.visitor_key(), ci, ai, {}, self._skip_of()
        )
        page_at = tuple(layout.index(f) for f in page_fields)
        who_at = tuple(layout.index(f) for f in who_fields)
        add_to_sets(visitors, len(ctx_layout), page_at, who_at, {}, {}, sets_of, digest_of)
