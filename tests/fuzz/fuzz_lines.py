"""Fuzz the line path with atheris (libFuzzer): `python tests/fuzz/fuzz_lines.py [libFuzzer
options] [corpus dirs]`, run for 60 s by `make test`.

Each input is a chunk of log lines, fed to a LineCounter with the C scanner and to one
without (LOGCOUNT_PURE_PYTHON's path), then classified with a configured time zone. A crash
is an exception out of that path, the two paths counting differently (lines, malformed
lines, hits, agents, referrers, visitors), or one input taking longer than TIME_LIMIT.

With no corpus directory given, a seed corpus is made at run time in a temporary
directory: lines of the real logs (found as tests/conftest.py finds them; never committed)
and a few hostile lines (escape storms, torn lines, numbers and dates out of range).
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

with atheris.instrument_imports(include=["logcount"]):
    from logcount.config import Config
    from logcount.count import line_counter
    from logcount.count.aggregate import Aggregator
    from logcount.count.line_counter import LineCounter
    from logcount.count.logformat import compile_format

FORMATS = [
    "combined",
    '%h %l %u [%{%d/%b/%Y:%H:%M:%S %z}t] "%r" %>s %b "%{Referer}i" "%{User-Agent}i"',
    # nginx: $request_time is the C scanner's MILLIS element
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent" $request_time "$upstream_response_time" $host',
]
TIME_LIMIT = 2.0  # seconds for one input of at most -max_len bytes (default 4096)
FIELDS = (
    "lines",
    "malformed",
    "hits",
    "agents",
    "referrers",
    "visitors",
    "bots",
    "ignored",
    "durations",
)
HOSTILE = [
    b'1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 5 "-" "' + b"\\x80" * 30,
    b'1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET /' + b"\\x80" * 30 + b' HTTP/1.1" 2000 5',
    b'10.0.0.2, 10.0.0.1 - "" [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 5 "-" "-"',
    b'1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 99999999999999999999 "-" "-"',
    b'1.2.3.4 - - [31/Dec/9999:23:59:59 -2359] "GET / HTTP/1.1" 200 5 "-" "-"',
    b'1.2.3.4 - - [01/Jan/0001:00:00:00 +0000] "GET / HTTP/1.1" 200 -5 "-" "-"',
    b'1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 5 "-" "-" 999999999.999 "-" h',
    b'1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 5 "-" "-" 0.1234 "0.1, 2" h',
]


def _counter(fmt: str, pure: bool) -> tuple[LineCounter, Aggregator]:
    """A counter with or without the C scanner (the module reads the variable each time)."""
    if pure:
        os.environ["LOGCOUNT_PURE_PYTHON"] = "1"
    else:
        os.environ.pop("LOGCOUNT_PURE_PYTHON", None)
    counter = LineCounter(compile_format(fmt))
    config = Config(log_format=fmt, site="fuzz", timezone="Pacific/Kiritimati")
    return counter, Aggregator(config, counter)


PATHS = [(fmt, _counter(fmt, False), _counter(fmt, True)) for fmt in FORMATS]
assert line_counter._scan_module() is None  # the last one built was the pure path
os.environ.pop("LOGCOUNT_PURE_PYTHON", None)


def check_input(data: bytes) -> None:
    if not data.endswith(b"\n"):
        data += b"\n"
    for _fmt, (c_counter, c_agg), (p_counter, p_agg) in PATHS:
        started = time.monotonic()
        c_counter.feed(data)
        p_counter.feed(data)
        fast, slow = c_counter.take(), p_counter.take()
        if c_counter.native:
            for name in FIELDS:
                if getattr(fast, name) != getattr(slow, name):
                    raise AssertionError(f"C and pure paths count {name} differently")
        c_agg.classify(fast)
        p_agg.classify(slow)
        elapsed = time.monotonic() - started
        if elapsed > TIME_LIMIT:
            raise AssertionError(f"{elapsed:.2f}s for {len(data)} bytes")


def seed_lines() -> list[bytes]:
    """The hostile lines and a sample of the real logs' lines (a few hundred per file)."""
    from tests.conftest import REAL_DATA

    rng = random.Random(1)
    lines: list[bytes] = list(HOSTILE)
    if not REAL_DATA.is_dir():
        print(f"fuzz_lines: no real logs at {REAL_DATA}: hostile seeds only", file=sys.stderr)
        return lines
    for path in sorted(REAL_DATA.glob("*.log")):
        found = path.read_bytes().splitlines()
        lines += rng.sample(found, min(len(found), 200))
    return lines


def seed_corpus(directory: Path) -> None:
    lines = seed_lines()
    for i in range(0, len(lines), 3):
        (directory / f"seed-{i:05d}").write_bytes(b"\n".join(lines[i : i + 3]) + b"\n")


def main() -> None:
    argv = list(sys.argv)
    if not any(not a.startswith("-") for a in argv[1:]):
        work = Path(tempfile.mkdtemp(prefix="logcount-fuzz-"))
        corpus = work / "corpus"
        corpus.mkdir()
        seed_corpus(corpus)
        argv += [f"-artifact_prefix={work}/", str(corpus)]
        print(f"fuzz_lines: corpus and any crash in {work}", file=sys.stderr)
    for default in ("-max_len=4096", f"-timeout={int(TIME_LIMIT * 5)}"):  # a stall is a crash
        if not any(a.startswith(default.split("=")[0] + "=") for a in argv):
            argv.append(default)
    atheris.Setup(argv, check_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
