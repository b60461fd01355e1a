"""Distinct visitors per day and per member (path, object), for the store: the live
side keeps them per bucket (Aggregator), a rollup per day and member as well."""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from logcount.count.aggregate import Aggregator
from logcount.count.classify import visitor_hash


class MemberVisitors:
    """Turns a LineCounter's visitor keys (counted with path_visitors) into the sets of
    visitor hashes of each (site, day), (site, day, path) and (site, day, object), with
    the aggregator's classifier and the live side's rule for bots."""

    def __init__(self, aggregator: Aggregator):
        self.aggregator = aggregator

    def collect(
        self, visitors: set[tuple[bytes, ...]], tables: tuple[dict[Any, set[str]], ...]
    ) -> None:
        """Day, path and object visitors, with the live side's rule for bots.

        A key per distinct (day, visitor, request): each (day, request) finds the sets its
        visitors go to, and each visitor its hash (or that it is a bot not counted), once
        per batch; a key then costs two look-ups and its set additions."""
        cl, agg = self.aggregator.classifier, self.aggregator
        layout = self.aggregator.counter.vis_layout
        nctx = len(self.aggregator.counter.ctx_layout)
        ci = layout.index("client") if "client" in layout else -1
        ai = layout.index("agent") if "agent" in layout else -1
        page_at = [i for i, f in enumerate(layout) if f in ("request", "method", "uri", "query")]
        page_of = itemgetter(*page_at) if page_at else (lambda key: ())
        who_of = itemgetter(ci, ai) if ci >= 0 and ai >= 0 else None
        day_v, path_v, obj_v = tables
        places: dict[tuple[bytes, ...], tuple[str, str]] = {}  # context -> (site, day)
        pages: dict[Any, tuple[str, str | None] | None] = {}  # None: ignored
        # (context, page) -> the sets its visitors join; None: not counted (ignored)
        targets: dict[tuple[Any, Any], tuple[set[str], ...] | None] = {}
        digests: dict[tuple[bytes, bytes], str | None] = {}  # None: a bot not counted
        hkey = cl.config.visitor_key()
        for key in visitors:
            where = (key[:nctx], page_of(key))
            sets = targets.get(where, ())
            if sets == ():
                sets = targets[where] = self._sets(
                    key, where, places, pages, (day_v, path_v, obj_v)
                )
            if sets is None:
                continue
            who = (
                who_of(key)
                if who_of is not None
                else (
                    key[ci] if ci >= 0 else b"",
                    key[ai] if ai >= 0 else b"",
                )
            )
            digest = digests.get(who, "")
            if digest == "":
                bot = cl.agent(who[1] or b"-")[0] and not agg.count_bots
                digest = digests[who] = None if bot else visitor_hash(who[0], who[1], hkey)
            if digest is None:
                continue
            for found in sets:
                found.add(digest)

    def _sets(
        self,
        key: tuple[bytes, ...],
        where: tuple[Any, Any],
        places: dict[tuple[bytes, ...], tuple[str, str]],
        pages: dict[Any, tuple[str, str | None] | None],
        tables: tuple[dict[Any, set[str]], ...],
    ) -> tuple[set[str], ...] | None:
        """The visitor sets of a key's day, path and object; None for an ignored path."""
        cl, agg = self.aggregator.classifier, self.aggregator
        layout = self.aggregator.counter.vis_layout
        ctx, page_key = where
        if page_key in pages:
            page = pages[page_key]
        else:
            path = agg.path_of(dict(zip(layout, key, strict=True)))
            # visitors are those of counted hits, as on the live side
            page = pages[page_key] = None if cl.ignored(path) else (path, cl.object_of(path))
        if page is None:
            return None
        place = places.get(ctx)
        if place is None:
            site, buckets = agg.context_of(layout, key)
            place = places[ctx] = (site, buckets.day)
        site, day = place
        path, obj = page
        day_v, path_v, obj_v = tables
        out = [
            day_v.setdefault((site, "day", day), set()),
            path_v.setdefault((site, day, path), set()),
        ]
        if obj is not None:
            out.append(obj_v.setdefault((site, day, obj), set()))
        return tuple(out)
