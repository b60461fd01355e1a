"""The C scanner (logcount/count/_scan.c) against the regex path it speeds up.

The regex path is itself checked against apachelogs (tests/test_logformat.py); here the
scanner must cut every line exactly as the chunk regex does, or refuse it exactly when the
regex does, over the real logs, generated lines and random mutations of them (bytes
flipped, quotes, backslashes, spaces and digits inserted or removed). Then a LineCounter
with the scanner and one without (LOGCOUNT_PURE_PYTHON) must count the same: every
counter, the recent lines, the malformed lines and their samples.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from logcount.config import Config
from logcount.count.classify import Classifier
from logcount.count.line_counter import LineCounter, RawCounts
from logcount.count.logformat import compile_format
from tests.test_logformat import (
    CUSTOM_DURATION,
    FORMATS,
    STRFTIME,
    URI_QUERY,
    VHOST_FIRST,
    generated_lines,
    real_lines,
)

try:
    from logcount.count import _scan
except ImportError:  # pragma: no cover - only where the extension could not be built
    _scan = None

if _scan is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("logcount.count._scan was not built: CI must test the C scanner")
    pytest.skip("logcount.count._scan is not built (no C compiler?)", allow_module_level=True)


@pytest.fixture(autouse=True)
def c_scanner_unless_a_test_says(monkeypatch) -> None:
    """This module compares the C scanner with the regex path in one run, choosing each by
    LOGCOUNT_PURE_PYTHON itself (see counted()): a run of the suite with the variable set
    (make test's pure-Python pass) must not turn the C side of each comparison pure too."""
    monkeypatch.delenv("LOGCOUNT_PURE_PYTHON", raising=False)


SCANNED = [f for f in FORMATS if compile_format(f).plan is not None]
ODD = [b"\\", b'"', b" ", b"-", b"0", b"9", b"[", b"]", b":", b"\\x", b"\\\\", b'\\"', b"\r"]


def scanner_for(fmt: str) -> tuple[object, object]:
    cf = compile_format(fmt)
    assert cf.plan is not None, fmt
    counter = LineCounter(cf)
    assert counter.native
    return cf, counter.scanner


def mutations(rng: random.Random, line: bytes, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        b = bytearray(line)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(b) + 1)
            what = rng.randrange(4)
            if what == 0 and b:
                del b[min(at, len(b) - 1)]
            elif what == 1:
                b[at:at] = rng.choice(ODD)
            elif what == 2 and b:
                b[min(at, len(b) - 1)] = rng.randrange(1, 256)
            else:
                b[at:at] = bytes([rng.randrange(0x20, 0x7F)])
        out.append(bytes(b).replace(b"\n", b""))
    return out


def regex_row(cf, line: bytes) -> tuple[bytes, ...] | None:
    rows = cf.chunk.findall(line + b"\n")
    return rows[0][: len(cf.group_index) + 1] if rows else None


@pytest.mark.parametrize("fmt", SCANNED)
def test_scanner_cuts_lines_like_the_regex(fmt: str, real_data: Path) -> None:
    cf, scanner = scanner_for(fmt)
    rng = random.Random(SCANNED.index(fmt))
    lines = generated_lines(fmt, 600, seed=7 + SCANNED.index(fmt))
    if fmt == "combined":
        lines += list(real_lines(real_data))
    accepted = 0
    for good in lines:
        for line in [good, *mutations(rng, good, 12)]:
            expected = regex_row(cf, line)
            assert scanner.match(line) == expected, line[:300]
            accepted += expected is not None
    assert accepted > len(lines) // 2  # the check is not vacuous


def test_timestamps_are_checked_like_the_regex() -> None:
    cf, scanner = scanner_for("common")
    days = ["00", "01", "28", "29", "30", "31", "32", "9x"]
    months = ["Jan", "Feb", "Apr", "Dec", "Foo", "feb"]
    years = ["0000", "1900", "2000", "2023", "2024", "2100", "2400", "1996", "20x4"]
    times = ["00:00:00", "23:59:59", "24:00:00", "12:60:00", "12:00:60", "1:00:00"]
    zones = ["+0000", "-0130", "+2359", "+2400", "+0060", "0000", "+000"]
    n = 0
    for d in days:
        for m in months:
            for y in years:
                for t in times[:3] if d != "29" else times:
                    for z in zones:
                        line = f'1.2.3.4 - - [{d}/{m}/{y}:{t} {z}] "GET / HTTP/1.1" 200 5'
                        raw = line.encode()
                        assert scanner.match(raw) == regex_row(cf, raw), line
                        n += regex_row(cf, raw) is not None
    assert n > 100


def test_formats_the_scanner_does_not_know_keep_the_regex_path() -> None:
    assert compile_format(STRFTIME).plan is None
    # Two directives with nothing between them: only the regex can try every split.
    assert compile_format('%h %t "%r" %>s %b%D').plan is None
    assert compile_format(URI_QUERY).plan is None
    assert compile_format(VHOST_FIRST).plan is None  # %a: an address regex of its own
    for fmt in ("common", "combined", "vhost_combined", "combined_debian", CUSTOM_DURATION):
        assert fmt in SCANNED


def line_counter(fmt: str, pure: bool, monkeypatch, **config) -> LineCounter:
    """A counter of `fmt` with the pure-Python scanner, or the C one."""
    if pure:
        monkeypatch.setenv("LOGCOUNT_PURE_PYTHON", "1")
    else:
        monkeypatch.delenv("LOGCOUNT_PURE_PYTHON", raising=False)
    cf = compile_format(fmt)
    counter = LineCounter(
        cf, recent_size=50, classifier=Classifier(Config(log_format=fmt, **config), cf)
    )
    assert (not counter.native) == pure
    return counter


def counted(fmt: str, lines: list[bytes], pure: bool, monkeypatch, **config) -> RawCounts:
    counter = line_counter(fmt, pure, monkeypatch, **config)
    data = b"".join(line + b"\n" for line in lines)
    start = 0
    while start < len(data):  # uneven chunks of whole lines
        end = data.rfind(b"\n", start, start + 7000) + 1 or data.index(b"\n", start) + 1
        counter.feed(data[start:end])
        start = end
    return counter.take()


FIELDS = (
    "lines",
    "malformed",
    "hits",
    "agents",
    "referrers",
    "visitors",
    "bots",
    "ignored",
    "timings",  # lines per context and duration bin (logcount.timing)
)


@pytest.mark.parametrize("fmt", SCANNED)
@pytest.mark.parametrize(
    "config",
    [{}, {"count_bots": True}, {"ignore_extensions": [".png", ".css", ".js", ".gif"]}],
    ids=["default", "count_bots", "ignore"],
)
def test_scanner_counts_like_the_regex_path(fmt: str, config: dict, monkeypatch) -> None:
    rng = random.Random(3)
    lines = generated_lines(fmt, 1500, seed=11)
    lines += [m for line in lines[:300] for m in mutations(rng, line, 2)]
    lines += lines[:500]  # repeated keys add up
    fast = counted(fmt, lines, False, monkeypatch, **config)
    slow = counted(fmt, lines, True, monkeypatch, **config)
    for name in FIELDS:
        assert getattr(fast, name) == getattr(slow, name), name
    assert fast.durations == slow.durations
    assert list(fast.recent) == list(slow.recent)
    assert list(fast.samples) == list(slow.samples)
    assert fast.lines > 1000 and fast.malformed > 10
    if "duration" in compile_format(fmt).group_index:  # a format with durations
        assert fast.durations and sum(fast.timings.values()) > 500


def test_real_log_counts_like_the_regex_path(real_data: Path, monkeypatch) -> None:
    lines = [line for line in real_lines(real_data) if line.strip()]
    config = {"ignore_extensions": [".png", ".jpg"]}
    fast = counted("combined", lines, False, monkeypatch, **config)
    slow = counted("combined", lines, True, monkeypatch, **config)
    for name in FIELDS:
        assert getattr(fast, name) == getattr(slow, name), name
    assert list(fast.recent) == list(slow.recent)


def burst_and_after(pure: bool, monkeypatch) -> list[RawCounts]:
    """Two takes of one counter: 40,000 lines of distinct requests, referrers, visitors,
    sizes and durations, then 50 lines of a few keys."""
    counter = line_counter(CUSTOM_DURATION, pure, monkeypatch)

    def line(i: int) -> bytes:
        return (
            f"10.{i % 250}.{i // 250 % 250}.1 - - [10/Oct/2020:10:{i % 60:02}:00 +0000] "
            f'"GET /page/{i}?q={i * 7919} HTTP/1.1" {(200, 404, 500)[i % 3]} {i * 13} '
            f'"http://ref{i}.example/" "agent {i % 700}" {i % 9000} {i % 9}\n'
        ).encode()

    takes = []
    for lines in (range(40_000), [i % 5 for i in range(50)]):
        data = b"".join(map(line, lines))
        start = 0
        while start < len(data):  # chunks of 1 MiB cut after a newline, as the pipe reads
            end = data.rfind(b"\n", start, start + (1 << 20)) + 1
            counter.feed(data[start:end])
            start = end
        takes.append(counter.take())
    return takes


def test_a_burst_of_distinct_keys_and_the_batch_after_count_like_the_regex_path(
    monkeypatch,
) -> None:
    """The burst grows the C scanner's tables many times (at three quarters full) past the
    size take() shrinks them back from; the next batch counts in the shrunk tables."""
    fast = burst_and_after(False, monkeypatch)
    slow = burst_and_after(True, monkeypatch)
    for got, want in zip(fast, slow, strict=True):
        for name in FIELDS:
            assert getattr(got, name) == getattr(want, name), name
        assert got.sizes == want.sizes and got.durations == want.durations
    assert fast[0].lines == 40_000 and len(fast[0].hits) == 40_000
    assert len(fast[0].referrers) == 40_000 and sum(fast[0].sizes.values()) > 10**10
    assert fast[1].lines == 50 and len(fast[1].hits) == 5


def test_rollup_day_format_cuts_the_day_like_its_regex(real_data: Path) -> None:
    """The rollup counts by day: its regexes and the scanner's plan capture DD/Mon/YYYY."""
    from logcount.sources.rollup import day_format

    cf = day_format(Config(log_format="combined"))
    scanner = LineCounter(cf).scanner
    lines = list(real_lines(real_data))[:3000] + generated_lines("combined", 300, seed=5)
    days = set()
    for line in lines:
        expected = regex_row(cf, line)
        assert scanner.match(line) == expected, line[:300]
        if expected is not None:
            days.add(expected[cf.group_index["tmin"]])
    assert b"17/May/2015" in days and all(len(d) == 11 for d in days)


def test_every_refused_byte_at_every_offset_of_a_field() -> None:
    """The scanner walks plain text 16 (or 8) bytes at a time: a byte that ends or spoils a
    field must be found wherever it falls in a step, in a quoted string and in a word."""
    cf, scanner = scanner_for("combined")
    for special in (0x00, 0x1F, 0x20, 0x22, 0x5C, 0x7E, 0x7F, 0x80, 0xFF):
        for at in range(0, 40):
            for field in ("agent", "client"):
                text = bytearray(b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH"[:41])
                text[at] = special
                agent = bytes(text) if field == "agent" else b"Mozilla/5.0"
                client = bytes(text) if field == "client" else b"10.0.0.1"
                line = (
                    client + b' - - [17/May/2015:10:05:03 +0000] "GET /a HTTP/1.1" 200 5 "-" "'
                    b"" + agent + b'"'
                )
                assert scanner.match(line) == regex_row(cf, line), (special, at, field)


def test_feeding_a_reused_buffer_counts_like_bytes(real_data: Path, monkeypatch) -> None:
    """The rollup reads a file into one bytearray and feeds views of it: the counts, and the
    recent lines kept after the buffer is overwritten, are those of feeding bytes."""
    monkeypatch.delenv("LOGCOUNT_PURE_PYTHON", raising=False)
    cf = compile_format("combined")
    lines = [line for line in real_lines(real_data) if line.strip()][:4000]
    data = b"".join(line + b"\n" for line in lines)
    cut = data.index(b"\n", len(data) // 2) + 1
    as_bytes = LineCounter(cf, recent_size=30)
    as_view = LineCounter(cf, recent_size=30)
    buf = bytearray(len(data))
    for start, end in ((0, cut), (cut, len(data))):
        as_bytes.feed(data[start:end])
        buf[: end - start] = data[start:end]
        with memoryview(buf) as view:
            as_view.feed(view[: end - start])  # type: ignore[arg-type]
    buf[:] = b"x" * len(buf)  # the next block overwrites the buffer
    fast, slow = as_view.take(), as_bytes.take()
    for name in FIELDS:
        assert getattr(fast, name) == getattr(slow, name), name
    assert list(fast.recent) == list(slow.recent) and len(fast.recent) == 30
    buf.extend(b"more")  # no view of the buffer is left behind (it could not grow)
    with pytest.raises(TypeError):
        as_view.scanner.feed("a str is no buffer")


def test_a_scanner_built_from_another_source_is_not_used(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A build left from an older _scan.c (a pull without a rebuild) would refuse the plan
    or hand back other tables: the pure path counts, and stderr says why, once."""
    from logcount.count import _scan, line_counter, sums

    monkeypatch.delenv("LOGCOUNT_PURE_PYTHON", raising=False)
    monkeypatch.setattr(_scan, "VERSION", line_counter.SCAN_VERSION - 1)
    sums.stale_build_warning.cache_clear()
    counters = [LineCounter(compile_format("combined")) for _ in range(2)]
    assert [c.native for c in counters] == [False, False]
    counters[0].feed(b'1.2.3.4 - - [10/Oct/2020:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "x"\n')
    assert counters[0].take().lines == 1
    assert capsys.readouterr().err == (
        f"logcount: {_scan.__file__} was built from another _scan.c; counting without it "
        "(rebuild: pip install -e .)\n"
    )


KEY = b"a visitor key of 32 bytes, fixed"


def numbered(fmt: str, lines: list[bytes], pure: bool, monkeypatch, number: bool, **config):
    """Two takes (the numbering holds from batch to batch) of a counter with path
    visitors; `number`: the scanner numbers them (bots named "bot" not counted)."""
    from logcount.count.visitors import PAGE_FIELDS

    if pure:
        monkeypatch.setenv("LOGCOUNT_PURE_PYTHON", "1")
    else:
        monkeypatch.delenv("LOGCOUNT_PURE_PYTHON", raising=False)
    cf = compile_format(fmt)
    cl = Classifier(Config(log_format=fmt, **config), cf)
    counter = LineCounter(cf, path_visitors=True, classifier=cl)
    assert (not counter.native) == pure
    pages = tuple(f for f in counter.vis_layout if f in PAGE_FIELDS)
    if number:
        counter.number_visitors(KEY, pages, lambda agent: b"bot" in agent.lower())
    half = len(lines) // 2
    takes = []
    for part in (lines[:half], lines[half:]):
        counter.feed(b"".join(line + b"\n" for line in part))
        takes.append(counter.take())
    return counter, takes


@pytest.mark.parametrize("fmt", SCANNED)
@pytest.mark.parametrize("config", [{}, {"count_bots": True}], ids=["default", "count_bots"])
def test_scanner_numbers_visitors_like_the_regex_path(fmt: str, config: dict, monkeypatch) -> None:
    """number_visitors: the C scanner's visitors numbered by place (in C, each (client,
    agent) of a batch hashed once) are those of its Python twin, and those numbered_py
    makes of the key tuples either scanner hands over without it: classify.visitor_number
    of client and agent, a bot named "bot" left out."""
    from logcount.count.regex_scan import numbered_py

    lines = generated_lines(fmt, 1500, seed=12)
    lines += [b'9.9.9.9 - - [17/May/2015:10:05:03 +0000] "GET /b HTTP/1.1" 200 5 "-" "Abot"']
    lines += lines[:400]  # keys seen again, in the second batch
    fast = numbered(fmt, lines, False, monkeypatch, True, **config)[1]
    slow = numbered(fmt, lines, True, monkeypatch, True, **config)[1]
    counter, plain = numbered(fmt, lines, False, monkeypatch, False, **config)
    from logcount.count.visitors import PAGE_FIELDS

    layout = counter.vis_layout
    place = [*range(len(counter.ctx_layout))]
    place += [layout.index(f) for f in layout if f in PAGE_FIELDS]
    agent = layout.index("agent") if "agent" in layout else -1
    for c, py, keys in zip(fast, slow, plain, strict=True):
        assert not c.visitors and not py.visitors and keys.visitors
        expected = numbered_py(
            keys.visitors,
            place,
            layout.index("client"),
            agent,
            KEY,
            lambda agent: b"bot" in agent.lower(),
        )
        assert {k: sorted(v) for k, v in c.numbered.items()} == {
            k: sorted(v) for k, v in expected.items()
        }
        assert {k: sorted(v) for k, v in py.numbered.items()} == {
            k: sorted(v) for k, v in expected.items()
        }
        assert c.hits == keys.hits and c.agents == keys.agents  # the rest as it was
    every = [n for c in fast for numbers in c.numbered.values() for n in numbers]
    assert len(every) > 1000


def test_numbered_visitors_are_classify_numbers_and_bots_are_left_out(monkeypatch) -> None:
    """The numbers are classify.visitor_number's; the bot's key is counted (count_bots) but
    not numbered; without a skip rule it is."""
    from logcount.count.classify import visitor_number

    lines = [
        b'1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET /a HTTP/1.1" 200 5 "-" "Firefox"',
        b'1.2.3.4 - - [17/May/2015:11:05:03 +0000] "GET /a HTTP/1.1" 200 5 "-" "Firefox"',
        b'5.6.7.8 - - [17/May/2015:10:05:03 +0000] "GET /a?x=1 HTTP/1.1" 200 5 "-" "Firefox"',
        b'9.9.9.9 - - [17/May/2015:10:05:03 +0000] "GET /a HTTP/1.1" 200 5 "-" "Abot"',
    ]
    number = visitor_number(KEY)
    for pure in (False, True):
        takes = numbered("combined", lines, pure, monkeypatch, True, count_bots=True)[1]
        got: dict[tuple[bytes, ...], set[int]] = {}
        for raw in takes:  # a place per minute and request
            for k, v in raw.numbered.items():
                assert len(v) == 1, k
                got.setdefault(k[-1:], set()).update(v)
        assert got == {
            (b"GET /a HTTP/1.1",): {number(b"1.2.3.4", b"Firefox")},
            (b"GET /a?x=1 HTTP/1.1",): {number(b"5.6.7.8", b"Firefox")},
        }, pure
    no_client = LineCounter(compile_format('%t "%r" %>s %b'))
    with pytest.raises(ValueError):
        no_client.number_visitors(KEY, (), None)
    with pytest.raises(ValueError):  # the scanner itself refuses it
        no_client.scanner.number_visitors(KEY, [], -1, -1, None)


def test_numbering_turned_on_with_lines_pending(monkeypatch) -> None:
    """The C scanner numbers visitors as it counts them: lines counted before
    number_visitors() (kept as keys) are numbered at take() beside them, the agents summed
    from both exactly; turning it off while numbered visitors are pending is refused."""
    from logcount.count.regex_scan import numbered_py
    from logcount.count.visitors import PAGE_FIELDS

    monkeypatch.delenv("LOGCOUNT_PURE_PYTHON", raising=False)
    lines = generated_lines("combined", 1200, seed=7)
    cf = compile_format("combined")
    counters = [LineCounter(cf, path_visitors=True) for _ in range(2)]
    plain, late = counters
    if not late.native:
        pytest.skip("the C scanner is not built")
    pages = tuple(f for f in late.vis_layout if f in PAGE_FIELDS)
    for counter in counters:
        counter.feed(b"".join(line + b"\n" for line in lines[:500]))
    late.number_visitors(KEY, pages, None)
    for counter in counters:
        counter.feed(b"".join(line + b"\n" for line in lines[500:]))
    with pytest.raises(ValueError):
        late.scanner.number_visitors(None, (), -1, -1, None)
    keys, got = plain.take(), late.take()
    layout = late.vis_layout
    place = [*range(len(late.ctx_layout)), *(layout.index(f) for f in pages)]
    expected = numbered_py(
        keys.visitors, place, layout.index("client"), layout.index("agent"), KEY, None
    )
    assert {k: sorted(v) for k, v in got.numbered.items()} == {
        k: sorted(v) for k, v in expected.items()
    }
    assert got.agents == keys.agents and got.hits == keys.hits
    assert sum(got.agents.values()) == sum(keys.hits.values()) > 500
    late.scanner.number_visitors(None, (), -1, -1, None)  # nothing pending after take()
