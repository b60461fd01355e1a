"""Keys of hostile real requests: what `top` shows, `hits` finds.

Requests seen in real logs from the internet (scanners speaking RTSP, SIP, FTP, Java's T3
or TLS to port 80, path traversals spelt with stray `%`, paths longer than the 512-byte
cut) go through the real `logcount pipe` into a real Redis; every key `top` then shows is
looked up again, as `hits` looks a path up.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from logcount.config import Config
from logcount.count.paths import MAX_PATH_BYTES, NOT_HTTP, normalise_target
from logcount.read.api import Counts
from tests.conftest import RedisServer, run_logcount

# (request as Apache logs it, the key it is counted under)
HOSTILE = [
    (b"OPTIONS / RTSP/1.0", "/"),
    (b"OPTIONS sip:nm SIP/2.0", NOT_HTTP),
    (b"USER anonymous", NOT_HTTP),
    (b"t3 12.1.2\\n", NOT_HTTP),
    (b"\\x16\\x03\\x01\\x02\\x00\\x01\\x00\\x01\\xfc\\x03\\x03", NOT_HTTP),
    (b"GET /cgi-bin/%%32%65%%32%65/bin/sh HTTP/1.1", "/cgi-bin/%252e%252e/bin/sh"),
    (b"GET /cgi-bin/.%2e/.%2e/.%2e/bin/sh HTTP/1.1", "/bin/sh"),
    (b"GET /100% HTTP/1.1", "/100%25"),
    (b"GET /a\\x00b\\x1b[2J\\x7f HTTP/1.1", "/a%00b%1B[2J%7F"),  # control bytes escaped
    (b"OPTIONS * HTTP/1.1", "*"),
    (b"GET http://example.com/proxy/me HTTP/1.1", "/proxy/me"),
    (b"-", "-"),
    # 512-byte cuts: never inside an escape, nor inside a character
    (b"GET /" + b"a" * 509 + b"%2F%2F HTTP/1.1", "/" + "a" * 509),
    (b"GET /" + b"a" * 508 + b"%2F%2F HTTP/1.1", "/" + "a" * 508 + "%2F"),
    (b"GET /" + b"b" * 510 + b"\\xc3\\xa9 HTTP/1.1", "/" + "b" * 510),
    (b"GET /" + b"c" * 508 + b"\\xff HTTP/1.1", "/" + "c" * 508),
]


def _line(request: bytes, when: datetime, n: int) -> bytes:
    stamp = when.strftime("%d/%b/%Y:%H:%M:%S +0000").encode()
    return (
        b'203.0.113.%d - - [%s] "%s" 400 %d "-" "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) '
        b'Gecko/20100101 Firefox/121.0"\n' % (n % 250, stamp, request, n)
    )


def _today_lines(path: Path, when: datetime) -> bytes:
    """A real log's lines with today's date and time (every other field as written)."""
    stamp = when.strftime("%d/%b/%Y:%H:%M:%S +0000").encode()
    out = []
    for line in path.read_bytes().splitlines(keepends=True):
        start, end = line.find(b"["), line.find(b"]")
        out.append(line[: start + 1] + stamp + line[end:] if 0 <= start < end else line)
    return b"".join(out)


@pytest.fixture
def counted(tmp_path: Path, lc_env: dict[str, str], redis_server: RedisServer, real_data: Path):
    utc = datetime.now(UTC)
    lines = b"".join(_line(req, utc, i) for i, (req, _) in enumerate(HOSTILE))
    lines += _today_lines(real_data / "elastic_apache_logs.log", utc)
    (tmp_path / "logcount.toml").write_text('site = "test"\ntimezone = "UTC"\n')
    done = run_logcount(["pipe"], lc_env, input=lines)
    assert done.returncode == 0, done.stderr.decode()
    return Counts(redis_url=redis_server.url, config=Config(site="test", timezone="UTC"))


def test_hostile_requests_are_counted_under_their_keys(counted: Counts) -> None:
    for request, key in HOSTILE:
        assert len(key.encode()) <= MAX_PATH_BYTES
        assert counted.hits_today(key) >= 1, (request[:40], key[-12:])
    rows = counted.top(window="today", by="path", limit=10_000)
    keys = {r["key"] for r in rows}
    assert not any(k.endswith("\n") or " RTSP/" in k or "SIP/" in k for k in keys)
    assert next(r["hits"] for r in rows if r["key"] == NOT_HTTP) == 4
    assert not any(c < " " or c == "\x7f" for k in keys for c in k)


def test_every_key_top_shows_hits_finds(counted: Counts, lc_env: dict[str, str]) -> None:
    rows = counted.top(window="today", by="path", limit=10_000)
    assert len(rows) > 800  # the real log's paths and the hostile ones
    for row in rows:
        assert normalise_target(row["key"].encode()) == row["key"]
        assert counted.hits_today(row["key"]) == row["hits"], row["key"]
    # and as a user does it, through the command line
    for key in (NOT_HTTP, "/cgi-bin/%252e%252e/bin/sh", "*", "-", "/a%00b%1B[2J%7F"):
        done = run_logcount(["hits", key, "--days", "1", "--format", "json"], lc_env)
        assert done.returncode == 0, done.stderr.decode()
        expected = next(r["hits"] for r in rows if r["key"] == key)
        assert json.loads(done.stdout)["today"] == expected
