"""Bounds on what one line can cost: an agent is classified on a bounded prefix, and every
member a reader counts (path, referrer host, agent family, object, site) is capped in
bytes, whatever the log holds."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from crawleruseragents import CRAWLER_USER_AGENTS_DATA, is_crawler

from logcount.config import Config, config_from_dict
from logcount.count.agents import (
    AGENT_PREFIX,
    MAX_FAMILY_BYTES,
    _family_parser,
    agent_family,
    bot_matcher,
)
from logcount.count.aggregate import Aggregator
from logcount.count.classify import (
    CACHE_BYTES,
    INVALID,
    MAX_HOST_BYTES,
    MAX_OBJECT_BYTES,
    MAX_SITE_BYTES,
    Classifier,
    referrer_host,
)
from logcount.count.delta import Delta
from logcount.count.format_atoms import unescape
from logcount.count.line_counter import LineCounter
from logcount.count.logformat import compile_format
from logcount.count.paths import MAX_PATH_BYTES
from logcount.dimensions import DIMENSIONS
from logcount.errors import ConfigError

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
CAPS = {
    "path": MAX_PATH_BYTES,
    "referrer": MAX_HOST_BYTES,
    "agent": MAX_FAMILY_BYTES,
    "object": MAX_OBJECT_BYTES,
    "status": 3,
    "method": len("(other)"),
    "bot": MAX_FAMILY_BYTES,
    "os": MAX_FAMILY_BYTES,
    "device": len("console"),  # the longest type
    "client": MAX_HOST_BYTES,
    "status_path": 4 + MAX_PATH_BYTES,
}


def test_every_dimension_has_its_cap() -> None:
    assert set(CAPS) == set(DIMENSIONS)


def long_agent(i: int) -> bytes:
    """8 KB agents of the two costliest shapes found: ua-parser's `[A-z]+[Ss]pider` takes
    the whole run of letters as the family, and a long parenthesised platform list."""
    if i % 2:
        letters = bytes(65 + i // 26**k % 26 for k in range(4))  # distinct
        return b"Q/" + letters + b"Z" * 8174 + b"Spider 1"
    return b"Mozilla/5.0 (%08d; " % i + b"Windows NT 10.0; " * 480 + b")"


def real_agents(real_data: Path) -> list[bytes]:
    """The agents of the real logs (as written, escapes and all) and the library's own
    examples of crawlers."""
    agents = set()
    for log in sorted(real_data.glob("*.log")):
        for line in log.read_bytes().split(b"\n"):
            parts = line.split(b'"')
            if len(parts) >= 6:
                agents.add(parts[5])
    for entry in CRAWLER_USER_AGENTS_DATA:
        agents.update(text.encode() for text in entry.get("instances", []))
    return sorted(agents - {b"-"})


def full_answer(raw: bytes) -> tuple[bool, str]:
    """What the libraries say about the whole agent, unbounded."""
    text = unescape(raw).decode("utf-8", "backslashreplace")
    ua = _family_parser().parse_user_agent(text)
    family = ua.family if ua is not None else "Other"
    if is_crawler(text):
        return True, family if family != "Other" else bot_matcher().name(text)
    return False, family


def test_distinct_long_agents_cost_a_bounded_time_and_real_ones_keep_their_answer(
    real_data: Path,
) -> None:
    cl = Classifier(Config())
    agents = [long_agent(i) for i in range(1500)]
    assert len({a[:24] for a in agents}) == 1500 and all(len(a) > 8000 for a in agents)
    started = time.perf_counter()
    for agent in agents:
        cl.agent(agent)
    elapsed = time.perf_counter() - started
    assert elapsed < 3.0, f"1,500 distinct 8 KB agents took {elapsed:.1f} s"
    real = real_agents(real_data)
    assert len(real) > 2000 and max(map(len, real)) < AGENT_PREFIX
    changed = [a for a in real if cl.agent(a) != full_answer(a)]
    assert changed == []


def test_an_agent_is_decided_on_its_prefix() -> None:
    cl = Classifier(Config())
    padded = CHROME.encode() + b" " + b"x" * 8000
    assert cl.agent(padded) == (False, "Chrome")
    # A crawler's mark past the prefix is not seen: the agent is the browser it starts as.
    assert cl.agent(padded + b" Googlebot/2.1") == (False, "Chrome")
    assert cl.agent(b"Googlebot/2.1 " + b"x" * 8000) == (True, "Googlebot")
    # Apache's \xhh escapes count as the one byte they stand for.
    assert cl.agent(CHROME.encode() + b" " + b"\\xff" * 4000) == (False, "Chrome")


def test_a_family_is_capped() -> None:
    # ua-parser names the family after the whole run of letters before "Spider".
    assert agent_family("Q/" + "Z" * 300 + "Spider 1") == "Other"
    assert agent_family("Q/" + "Z" * 20 + "Spider 1") == "Z" * 20 + "Spider"
    assert len(agent_family("Q/" + "Z" * (MAX_FAMILY_BYTES - 6) + "Spider 1")) == 64


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        (b"http://" + b"a" * 253 + b"/x", "a" * 253),
        (b"http://" + b"a" * 254 + b"/x", INVALID),
        (b"http://" + b"a" * 9000, INVALID),  # a host cut by the prefix is not a host
        (b"http://example.com/" + b"q" * 9000, "example.com"),
        (b"https://u:" + b"p" * 2000 + b"@example.com/", INVALID),  # past the prefix
        (b"http://" + b"\\xe9" * 100 + b"/", INVALID),  # 200 bytes of UTF-8 shown as 400
    ],
)
def test_referrer_host_capped(raw: bytes, host: str) -> None:
    assert referrer_host(raw) == host


def test_site_and_object_capped() -> None:
    cl = Classifier(
        config_from_dict(
            {"route": [{"pattern": "/doc/<path:id>", "object": "doc"}], "site": "main"}
        )
    )
    assert cl.site(b"a" * MAX_SITE_BYTES) == "a" * MAX_SITE_BYTES
    assert cl.site(b"a" * (MAX_SITE_BYTES + 1)) == INVALID
    assert cl.object_of("/doc/" + "i" * 100) == "doc:" + "i" * 100
    assert cl.object_of("/doc/" + "i" * 400) == "doc:" + INVALID
    with pytest.raises(ConfigError, match="at most 64 bytes"):
        Classifier(config_from_dict({"route": [{"pattern": "/<int:id>", "object": "t" * 65}]}))


def test_a_flood_of_long_referrers_and_agents_makes_bounded_members() -> None:
    """20,000 lines of one minute, each with its own 8 KB referrer host and 8 KB agent."""
    config = Config(log_format="combined")
    counter = LineCounter(compile_format("combined"))
    agg = Aggregator(config, counter)
    delta = Delta()
    for start in range(0, 20_000, 1000):
        lines = b"".join(
            b'203.0.113.%d - - [17/May/2015:10:05:03 +0000] "GET /p/%d HTTP/1.1" 200 5 '
            b'"http://%08d%s/" "%s"\n' % (i % 250, i, i, b"r" * 8184, long_agent(i))
            for i in range(start, start + 1000)
        )
        counter.feed(lines)
        delta.merge(agg.classify(counter.take()))
    total = delta.totals[("default", "minute", "201505171005")]
    assert total["hits"] == 20_000
    size = 0
    for (_, dim, _, _), members in delta.members.items():
        for member in members:
            assert len(member.encode()) <= CAPS[dim], (dim, member[:40])
            size += len(member.encode())
    assert delta.members[("default", "referrer", "day", "20150517")] == {INVALID: 20_000}
    assert size < 1_500_000, f"{size:,} bytes of members"  # its 8 KB fields: 960 MB


def test_the_aggregator_holds_long_requests_within_a_byte_budget() -> None:
    """What a request says (path, object) is kept from batch to batch, but not 8 KB
    requests without end: 6,000 of them are 48 MB."""
    config = Config(log_format="combined")
    counter = LineCounter(compile_format("combined"))
    agg = Aggregator(config, counter)
    for start in range(0, 6000, 1000):
        counter.feed(
            b"".join(
                b'192.0.2.1 - - [17/May/2015:10:05:03 +0000] "GET /%d/%s HTTP/1.1" 200 5 "-" "-"\n'
                % (i, b"p" * 8192)
                for i in range(start, start + 1000)
            )
        )
        delta = agg.classify(counter.take())
        assert delta.totals[("default", "minute", "201505171005")]["hits"] == 1000
        held = sum(len(part) for key in agg._described for part in key)
        assert held <= CACHE_BYTES


def test_the_rollup_names_agents_from_the_same_prefix() -> None:
    """The rollup leaves agents unnamed until its parent process names them: what it
    holds meanwhile is the prefix, and names the same family as the live side."""
    from logcount.count.agents import RAW_AGENT
    from logcount.sources.rollup_count import families_of, store_classifier

    raw = b"Q/" + b"Z" * 8000 + b"Spider 1"
    config = Config()
    unnamed = store_classifier(config, compile_format(config.log_format)).agent(raw)
    assert unnamed == (False, RAW_AGENT + "Q/" + "Z" * (AGENT_PREFIX - 2))
    delta = Delta(members={("default", "agent", "day", "20150517"): Counter({unnamed[1]: 1})})
    families_of(delta)
    assert delta.members[("default", "agent", "day", "20150517")] == {"Other": 1}
    assert Classifier(Config()).agent(raw) == (False, "Other")


def test_bot_decisions_are_kept_within_a_byte_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pure path caches one bot decision per distinct agent as received: 3,000
    distinct 8 KB agents (24 MB) must not all stay there (200,000 such entries were
    allowed, 1.6 GB); the counts are unchanged."""
    from logcount.count.aggregate import Aggregator
    from logcount.count.line_counter import LineCounter
    from logcount.count.logformat import compile_format
    from logcount.count.regex_scan import DECISION_BYTES

    monkeypatch.setenv("LOGCOUNT_PURE_PYTHON", "1")
    counter = LineCounter(compile_format("combined"))
    assert not counter.native
    aggregator = Aggregator(Config(site="test"), counter)
    hits = 0
    for batch in range(6):
        lines = [
            f'1.2.3.4 - - [14/Mar/2026:10:05:03 +0000] "GET / HTTP/1.1" 200 5 "-" '
            f'"Mozilla/5.0 {batch:02d}{i:06d}{"x" * 8192}"\n'.encode()
            for i in range(500)
        ]
        counter.feed(b"".join(lines))
        delta = aggregator.classify(counter.take())
        hits += delta.totals[("test", "day", "20260314")]["hits"]
        assert sum(map(len, counter.scanner.bot_flags)) <= DECISION_BYTES
    assert hits == 3000
