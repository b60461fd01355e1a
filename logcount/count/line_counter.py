"""Stage one of the engine, the hot path: `LineCounter.feed(chunk)` counts whole lines in
memory (RawCounts), through one scanner chosen at start.

One `findall` of the compiled format over a whole chunk of lines (or the C scanner's own
loop), and C-level `Counter`/`set` updates over projections of the matched tuples: no
Python code runs per line. Bots and ignored extensions are told apart per line through
dict look-ups mapped in C (a Python call happens only for an agent or request not seen
before), so the counted keys need not carry the agent. The chunk regex ends in an
alternative that captures any line it does not parse; such a line is tried once more
with apachelogs' regex, else counted malformed. Stage two, classifying each distinct key
once, is count/aggregate.py's Aggregator.
"""

from __future__ import annotations

import functools
import gc
import re
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from logcount.config import Config
from logcount.count.classify import Classifier
from logcount.count.delta import SAMPLE_SIZE
from logcount.count.logformat import CompiledFormat
from logcount.count.regex_scan import RegexScanner, getter
from logcount.count.sums import native

# The engine makes and drops millions of tuples, dicts and strings a minute, none of them
# in a reference cycle (refcounting frees them). Python's default thresholds ran the cyclic
# collector so often that it cost a fifth of the engine's CPU on a diverse day (300,000
# lines: 2.19-2.44 s of CPU against 2.76-3.07 s, alternating runs): a counting process
# collects after 100,000 allocations, and rarely the old generation.
GC_THRESHOLDS = (100_000, 50, 1000)


SCAN_VERSION = 6  # the _scan this code calls (SCAN_VERSION in _scan.h)


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
    # after number_visitors(), in place of `visitors`: (ctx..., page fields...) -> the
    # numbers (classify.visitor_number) of the visitors of that place
    numbered: dict[tuple[bytes, ...], list[int]] = field(default_factory=dict)
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

    @functools.cached_property
    def _lines(self) -> re.Pattern[bytes]:
        """The chunk regex (^...$()) with a last alternative that captures any other
        non-empty line: one findall finds good and bad lines alike. Compiled at its first
        use (the Python scanner's; the C scanner's only for a line it would refuse): its
        compilation costs ~12 M instructions, which every reader paid at its start."""
        return re.compile(b"^(?:" + self.format.chunk.pattern[1:] + b"|([^\n]+)$)", re.M)

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

    def number_visitors(
        self,
        key: bytes,
        page_fields: tuple[str, ...],
        skip_of: Callable[[bytes], object] | None,
        arrays: bool = False,
    ) -> None:
        """From now on take() hands the visitors over as RawCounts.numbered: per place (the
        context, then the visitor key's `page_fields`) the numbers of its visitors
        (classify.visitor_number(key) of client and agent; a visitor whose agent skip_of
        calls a bot not counted is left out), each pair numbered once per batch inside the
        scanner instead of a key tuple each (a diverse day's ~900,000). `arrays`: the C
        scanner hands each place's numbers as an array('Q'), no int per visitor (for the
        rollup's sketches; the Python scanner's are lists, which they take alike)."""
        layout = self.vis_layout
        if "client" not in layout:
            raise ValueError("this format counts no visitors")
        place = [*range(len(self.ctx_layout)), *(layout.index(f) for f in page_fields)]
        agent = layout.index("agent") if "agent" in layout else -1
        self.scanner.number_visitors(key, place, layout.index("client"), agent, skip_of)
        if self.native:
            self.scanner.numbers_in_arrays(arrays)

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
            raw.numbered,
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
