"""Which visitor hashes the last batches already put in which small HyperLogLog, so that
the next batch need not send them to it again.

Redis keeps a HyperLogLog of up to some 1,000 visitors in its sparse encoding, where each
PFADD of a hash walks the encoding from its start (hllSparseSet), even when the hash is
there already: on the real lines over 4 s, every batch of the same minute re-sent its
~1,900 visitors to the site's and every section's minute, hour and day sets, and those
walks were 55 % of Redis' instructions. A hash already added to a set changes nothing
when added again (a register keeps its maximum), so leaving it out stores the very same
value; the key still gets its operation (its EXPIRE, a section's place in its bucket).

What makes leaving a hash out safe: the key still holds it. It is forgotten whenever a
batch fails or is refused (Redis may have restarted empty), when nothing was sent for
MAX_AGE seconds (no bucket lives that short: keys expire from their last write), and for
keys of more than PER_KEY hashes (Redis made those dense: a hash there costs little).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

PER_KEY = 2_000  # past ~1,000 hashes Redis' sparse encoding passes 3,000 bytes: dense
TOTAL = 100_000  # hashes remembered in all (each a str the deltas made anyway)
MAX_AGE = 60.0  # seconds; far below the shortest bucket's ttl (the minute's, hours)


class SentVisitors:
    """Key -> the hashes applied to it, for the keys of the last applied batch."""

    def __init__(self) -> None:
        self.applied: dict[str, set[str]] = {}
        self.big: set[str] = set()  # keys past PER_KEY: always sent everything
        self.when = 0.0
        self.start()

    def start(self) -> None:
        """A batch is about to be built: drops what a built but unapplied one noted, and
        everything when the last batch applied is too old to be sure of."""
        self.pending: dict[str, set[str]] = {}  # the batch being built
        self.pending_big: set[str] = set()
        self.room = TOTAL  # hashes pending may still note; past it, none is kept
        if time.monotonic() - self.when > MAX_AGE:
            self.applied = {}

    def new_hashes(self, key: str, hashes: Iterable[str]) -> list[str]:
        """`hashes` but those `key` already holds, in their order; what is sent is noted
        as pending until commit()."""
        listed = list(hashes)
        if key in self.big or key in self.pending_big:
            self.pending_big.add(key)
            return listed
        held = self.applied.get(key, set())
        fresh = [h for h in listed if h not in held] if held else listed
        noted = self.pending.get(key, held)
        if len(noted) + len(fresh) > PER_KEY:
            self.pending_big.add(key)
            self.pending.pop(key, None)
        elif self.room >= 0:
            if key not in self.pending:
                self.pending[key] = held  # shared until it gets more (most keys don't)
                self.room -= len(held)
            if fresh:
                if noted is held:
                    noted = self.pending[key] = set(held)
                noted.update(fresh)
                self.room -= len(fresh)
            if self.room < 0:
                self.pending = {}
        return fresh

    def commit(self) -> None:
        """The batch built since start() was applied: its keys are the ones remembered
        now (a key of earlier batches only is let go)."""
        self.applied = self.pending
        self.big = self.pending_big
        self.when = time.monotonic()
        self.start()

    def forget(self) -> None:
        """A batch failed, or its outcome is unknown: nothing is taken as held."""
        self.applied, self.big = {}, set()
        self.start()
