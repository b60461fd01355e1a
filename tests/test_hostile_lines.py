"""Lines written to hurt: escape storms, torn and 1 MB lines, numbers and dates out of range.

Every byte of a log line comes from the public. apachelogs' regex, which logcount tries on a
line its fast path refuses, read the text `\\x80` (how Apache writes a byte >= 0x80) in two
ways, so that a line of thirty of them that did not match took hours to be rejected. A
`%b` of 99999999999999999999 made the Lua call fail (its whole batch was lost), a year 0001
or a year 9999 moved to a configured time zone raised in the middle of a batch. Here such
lines go through the counting code (C scanner and pure Python alike), a real `logcount
pipe`, `rollup` and `tail`: they take linear time, the storms count as apachelogs reads
them (malformed, or hits), a number or date out of range makes its line malformed, and
the good lines beside them are counted exactly.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import redis

from logcount import timing
from logcount.config import Config
from logcount.count.aggregate import Aggregator
from logcount.count.delta import Delta
from logcount.count.line_counter import LineCounter
from logcount.count.logformat import compile_format
from logcount.sinks import keys
from tests.conftest import LOGCOUNT, run_logcount
from tests.test_logformat import CUSTOM_DURATION, MS_ONLY, STRFTIME, reference

WHEN = "14/Mar/2026:10:05:03 +0000"


def line(
    request: str = "GET / HTTP/1.1",
    size: str = "5",
    referrer: str = "-",
    agent: str = "-",
    client: str = "1.2.3.4",
    user: str = "-",
    when: str = WHEN,
    status: str = "200",
    extra: str = "",
) -> bytes:
    """A combined line (also one of STRFTIME, whose time reads the same)."""
    text = f'{client} - {user} [{when}] "{request}" {status} {size} "{referrer}" "{agent}"'
    return (text + extra).encode("ascii")


def storms(n: int) -> dict[str, bytes]:
    """Lines holding `n` escapes `\\x80`, by name; names starting "ok" are valid lines."""
    esc = "\\x80" * n
    agent = line(agent=esc)
    return {
        "ok-agent": agent,
        "ok-request": line(request=f"GET /{esc} HTTP/1.1"),
        "ok-referrer": line(referrer=f"http://x/{esc}"),
        "ok-xff": line(client="10.0.0.2, 10.0.0.1", agent=esc),  # apachelogs' regex reads it
        "ok-user": line(user='""', request=f"GET /{esc} HTTP/1.1"),  # and this one
        "torn-agent": agent[:-1],
        "torn-in-escape": agent[:-3],
        "torn-request": line(request=f"GET /{esc} HTTP/1.1").split(b" HTTP/")[0],
        "torn-then-intruder": agent[:-3] + line(),
        "bad-status": line(agent=esc, status="2000"),
        "bad-referrer": line(referrer=esc, agent=esc)[:-1] + b" x",
    }


def counter_for(fmt: str, monkeypatch: pytest.MonkeyPatch, pure: bool, **config: str):
    if pure:
        monkeypatch.setenv("LOGCOUNT_PURE_PYTHON", "1")
    else:
        monkeypatch.delenv("LOGCOUNT_PURE_PYTHON", raising=False)
    cf = compile_format(fmt)
    counter = LineCounter(cf)
    assert (not counter.native) == (pure or cf.plan is None)
    aggregator = Aggregator(Config(log_format=fmt, site="test", **config), counter)
    return counter, aggregator


def count(counter: LineCounter, aggregator: Aggregator, lines: list[bytes]) -> Delta:
    """Feed the lines as the readers do (a chunk of whole lines) and classify them."""
    counter.feed(b"".join(ln + b"\n" for ln in lines))
    return aggregator.classify(counter.take())


def day_totals(delta: Delta, day: str = "20260314") -> dict[str, int]:
    return dict(delta.totals.get(("test", "day", day), {}))


@pytest.fixture(params=["C", "pure"])
def pure(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "pure")


# --- escape storms: linear time, apachelogs' verdict ------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fmt", ["combined", STRFTIME])
def test_1000_storm_lines_count_in_linear_time(
    fmt: str, pure: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thirty escapes (2**30 readings for apachelogs' regex): each variant counted as with
    eight, 1,000 lines in well under a few seconds (this took hours per line)."""
    cf = compile_format(fmt)
    for name, text in storms(8).items():  # apachelogs answers quickly: its verdict is ours
        expected = reference(fmt, text)
        assert (expected is not None) == name.startswith("ok"), name
        assert (cf.match(text) is not None) == (expected is not None), name
    variants = storms(30)
    lines = [variants[name] for _ in range(1000 // len(variants) + 1) for name in variants]
    lines = lines[:1000]
    good = sum(1 for text in lines if text in {v for k, v in variants.items() if k[:2] == "ok"})
    counter, aggregator = counter_for(fmt, monkeypatch, pure)
    started = time.monotonic()
    delta = count(counter, aggregator, lines)
    elapsed = time.monotonic() - started
    assert (delta.lines, delta.malformed) == (good, 1000 - good)
    assert day_totals(delta)["hits"] == good
    assert elapsed < 3, f"{elapsed:.1f}s"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fmt", ["combined", STRFTIME])
def test_1mb_storm_lines_take_linear_time(
    fmt: str, pure: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Escapes filling a 1 MB line, whole or torn, in each quoted field: the broken lines
    are refused in linear time. (The valid ones are matched as fast; classifying their
    1 MB agent or path is bounded by the classifier's own caps, not timed here.)"""
    big = storms(250_000)
    bad = ["torn-agent", "torn-in-escape", "torn-request", "bad-status", "bad-referrer"]
    good = ["ok-agent", "ok-request", "ok-referrer", "ok-user"]
    counter, aggregator = counter_for(fmt, monkeypatch, pure)
    started = time.monotonic()
    delta = count(counter, aggregator, [big[name] for name in bad])
    cf = compile_format(fmt)
    assert all(cf.match(big[name]) is not None for name in good)
    elapsed = time.monotonic() - started
    assert (delta.lines, delta.malformed) == (0, 5)
    assert elapsed < 3, f"{elapsed:.1f}s"
    delta = count(counter, aggregator, [big[name] for name in good])
    assert (delta.lines, delta.malformed) == (4, 0)


@pytest.mark.timeout(60)
def test_an_escaped_backslash_before_a_quote_hides_no_spaces() -> None:
    """apachelogs' lazy unquoted fields try every split at a space; the slow path refuses
    a line with too many spaces outside quotes. `\\\\"` (an escaped backslash, then the
    closing quote) was taken for an escaped quote, so the spaces after it counted as
    inside a string and the regex ran: 40 s for this line."""
    cf = compile_format('"%r" %h %u %t %>s')
    words = " ".join(["a"] * 20_000)
    text = f'"GET /\\\\" {words} "x" [{WHEN}] 2000'.encode()
    started = time.monotonic()
    assert cf.match(text) is None
    assert time.monotonic() - started < 1


# --- numbers and dates: the line is malformed, its batch is counted -------------------


BAD_SIZES = ["99999999999999999999", str(2**53), str(2**63), str(2**64 + 1), "-5", "-1"]
GOOD_SIZES = ["0", "-", "7", str(2**53 - 1)]


def test_numbers_out_of_range_make_their_line_malformed(
    pure: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter, aggregator = counter_for("combined", monkeypatch, pure)
    lines = [line(size=s) for s in GOOD_SIZES + BAD_SIZES] * 3
    delta = count(counter, aggregator, lines)
    assert (delta.lines, delta.malformed) == (12, 18)
    totals = day_totals(delta)
    assert (totals["hits"], totals["bytes"]) == (12, 3 * (7 + 2**53 - 1))


def test_sizes_are_summed_per_key_not_part_of_it(
    pure: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random sizes must not make every line a key of its own; sums past a C long long
    (1,100 lines of 2^53 - 1 bytes on one key) stay exact."""
    counter, aggregator = counter_for("combined", monkeypatch, pure)
    big = 2**53 - 1
    sizes = [str(n) for n in range(1, 501)] + ["-", "0"] + [str(big)] * 1100
    counter.feed(b"".join(line(size=s) + b"\n" for s in sizes))
    assert counter.pending_keys() == 3  # one key each: hit, visitor, referrer
    delta = aggregator.classify(counter.take())
    totals = day_totals(delta)
    assert (totals["hits"], totals["bytes"]) == (len(sizes), 500 * 501 // 2 + 1100 * big)
    paths = delta.member_bytes[("test", "path", "day", "20260314")]
    assert dict(paths) == {"/": 500 * 501 // 2 + 1100 * big}


@pytest.mark.parametrize(
    "fmt,limit",
    [(CUSTOM_DURATION, 2**53), (MS_ONLY, -(-(2**53) // 1000))],  # %D in us, %{ms}T in ms
)
def test_durations_out_of_range_make_their_line_malformed(
    fmt: str, limit: int, pure: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter, aggregator = counter_for(fmt, monkeypatch, pure)
    scale = 1 if fmt == CUSTOM_DURATION else 1000

    def timed(value: int | str) -> bytes:
        if fmt == CUSTOM_DURATION:
            return line(extra=f" {value} 1")
        return f'1.2.3.4 [{WHEN}] "GET / HTTP/1.1" 200 5 {value}'.encode()

    good, bad = [0, 1500, limit - 1], [limit, 10**20, "-3"]
    delta = count(counter, aggregator, [timed(v) for v in good + bad])
    assert (delta.lines, delta.malformed) == (3, 3)
    # A counted duration past timing.CAP_US (19 hours) counts as the cap, in the sums and
    # in the histogram's last bin
    totals = day_totals(delta)
    assert totals["duration_us"] == 1500 * scale + timing.CAP_US
    assert timing.histogram_of(totals) == {
        0: 1,
        timing.bin_of(1500 * scale): 1,
        timing.bin_of(timing.CAP_US): 1,
    }


DATES = {
    "01/Jan/0001:00:00:00 +0000": False,
    "01/Jan/1000:12:00:00 +0000": False,
    "31/Dec/9999:23:59:59 -2359": False,
    "31/Dec/9999:00:00:00 +0000": False,
    "01/Jan/1001:00:00:00 +2359": True,
    "31/Dec/9998:23:59:59 -2359": True,
}


@pytest.mark.parametrize("zone", ["", "Pacific/Kiritimati", "Etc/GMT+12"])
@pytest.mark.parametrize("fmt", ["combined", STRFTIME])
def test_dates_out_of_range_make_their_line_malformed(
    fmt: str, zone: str, pure: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A year 0001 or 9999 (whatever the zone it is moved to) is malformed; the years
    around the edges that every zone can hold are counted, and the batch with them."""
    counter, aggregator = counter_for(fmt, monkeypatch, pure, timezone=zone)
    lines = [line(when=when) for when in DATES] + [line()] * 5
    delta = count(counter, aggregator, lines)
    assert (delta.lines, delta.malformed) == (7, 4)
    days = {key[2]: n for key, n in delta.totals.items() if key[1] == "day"}
    assert sum(n["hits"] for n in days.values()) == 7
    assert all(len(label) == 8 and label[:4].isdigit() for label in days)


# --- through the real commands -----------------------------------------------------------


def hostile_batch() -> tuple[list[bytes], int, int, int]:
    """Good lines mixed with every kind of bad one: (lines, hits, bytes, malformed)."""
    good = [line(request=f"GET /p/{i} HTTP/1.1", size=str(i)) for i in range(1000)]
    bad = [line(size=s) for s in BAD_SIZES]
    bad += [line(when=when) for when, ok in DATES.items() if not ok]
    bad += [text for name, text in storms(30).items() if not name.startswith("ok")]
    bad = (bad * 100)[:997]
    big = storms(250_000)  # and three torn lines of 1 MB
    bad += [big["torn-agent"], big["torn-in-escape"], big["bad-status"]]
    lines = [x for pair in zip(good, bad, strict=True) for x in pair]
    return lines, len(good), sum(range(1000)), len(bad)


@pytest.mark.parametrize("pure_env", ["", "1"])
def test_pipe_counts_the_good_lines_of_a_hostile_batch(
    pure_env: str, lc_env: dict[str, str], redis_client: redis.Redis
) -> None:
    lines, hits, nbytes, malformed = hostile_batch()
    env = dict(lc_env, LOGCOUNT_PURE_PYTHON=pure_env) if pure_env else lc_env
    started = time.monotonic()
    result = run_logcount(["pipe"], env, input=b"\n".join(lines) + b"\n", timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert time.monotonic() - started < 20  # start-up and flush included, on a busy machine
    day = redis_client.hgetall(keys.totals("test", "day", "20260314"))
    assert (int(day[b"hits"]), int(day[b"bytes"])) == (hits, nbytes)
    counted = sum(
        int(redis_client.hget(key, "malformed") or 0)
        for key in redis_client.scan_iter(keys.totals("test", "day", "*"))
    )
    assert counted == malformed


def test_pipe_counts_byte_sums_past_lua_numbers_exactly(
    lc_env: dict[str, str], redis_client: redis.Redis
) -> None:
    """Every `%b` below 2^53 is a good line, but twenty of 2^53 - 1 in one batch sum past
    what a Lua number holds exactly (Redis refused the batch's bytes; its hits were lost
    with them): the sum goes as digits, and the day's bytes are exact."""
    big = 2**53 - 1
    lines = [line(size=str(big)) for _ in range(20)] + [line(size="7")] * 5
    result = run_logcount(["pipe"], lc_env, input=b"\n".join(lines) + b"\n", timeout=60)
    assert (result.returncode, result.stderr) == (0, b"")
    day = redis_client.hgetall(keys.totals("test", "day", "20260314"))
    assert (int(day[b"hits"]), int(day[b"bytes"])) == (25, 20 * big + 35)


@pytest.mark.timeout(120)
def test_rollup_counts_the_good_lines_of_a_hostile_batch(
    lc_env: dict[str, str], tmp_path: Path
) -> None:
    """A %b of 2**63 or a year 9999 moved to a configured zone killed the rollup."""
    from logcount.sinks.store import Store

    (tmp_path / "logcount.toml").write_text('site = "test"\ntimezone = "Europe/Paris"\n')
    lines, hits, nbytes, malformed = hostile_batch()
    log = tmp_path / "access.log"
    log.write_bytes(b"\n".join(lines) + b"\n")
    noon = datetime(2026, 3, 14, 12, tzinfo=UTC).timestamp()
    os.utime(log, (noon, noon))  # malformed lines count on the file's day
    done = run_logcount(["rollup", "--logs", str(log)], lc_env, timeout=100)
    assert done.returncode == 0, done.stderr.decode()
    store = Store(f"sqlite:///{lc_env['LOGCOUNT_DATA_DIR']}/logcount.sqlite3")
    totals = store.day_totals("test", [date(2026, 3, 14)])
    assert (totals["hits"], totals["bytes"], totals["malformed"]) == (hits, nbytes, malformed)


@pytest.fixture
def tail_proc() -> Iterator[list[subprocess.Popen[bytes]]]:
    """`logcount tail` processes a test started: killed if the test left them running."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.timeout(120)
def test_tail_stops_promptly_on_sigterm_while_fed_storms(
    lc_env: dict[str, str],
    redis_client: redis.Redis,
    tmp_path: Path,
    tail_proc: list[subprocess.Popen[bytes]],
) -> None:
    path = tmp_path / "access.log"
    path.write_bytes(b"")
    proc = subprocess.Popen(
        LOGCOUNT + ["tail", str(path), "--from-start"],
        env=lc_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    tail_proc.append(proc)
    beat = keys.heartbeat(socket.gethostname(), proc.pid)
    deadline = time.monotonic() + 30
    while not redis_client.exists(beat) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert redis_client.exists(beat), "tail never started"
    bad = [text for name, text in storms(30).items() if not name.startswith("ok")]
    with open(path, "ab") as log:
        for i in range(20):
            log.write(b"".join(text + b"\n" for text in bad) + line() + b"\n")
            log.flush()
            if i == 10:
                time.sleep(0.5)  # tail is now in the middle of the storm
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert time.monotonic() - started < 5
