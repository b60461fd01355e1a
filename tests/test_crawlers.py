"""Bot detection: logcount's CrawlerMatcher decides exactly as crawler-user-agents'
is_crawler() (the maintained library whose patterns it reads), only faster."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from crawleruseragents import CRAWLER_USER_AGENTS_DATA, is_crawler

from logcount.config import Config
from logcount.count.agents import CrawlerMatcher, _plain_literal, bot_matcher
from logcount.count.classify import Classifier

PATTERNS = [entry["pattern"] for entry in CRAWLER_USER_AGENTS_DATA]
INSTANCES = [text for entry in CRAWLER_USER_AGENTS_DATA for text in entry.get("instances", [])]


def real_agents(real_data: Path) -> list[str]:
    agents = set()
    for log in sorted(real_data.glob("*.log")):
        for line in log.read_bytes().split(b"\n"):
            parts = line.split(b'"')
            if len(parts) >= 6:
                agents.add(parts[5].decode("utf-8", "backslashreplace"))
    return sorted(agents)


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        ("bingbot", "bingbot"),
        ("Googlebot\\/", "Googlebot/"),
        ("yandex\\.com\\/bots", "yandex.com/bots"),
        ("Mediapartners \\(Googlebot\\)", "Mediapartners (Googlebot)"),
        ("^Seekbot", None),
        ("[wW]get", None),
        ("a.b", None),
        ("BlogTraffic\\/\\d", None),  # \d is syntax, not an escaped character
        ("x\\_y", None),
        ("Ahrefs(Bot|SiteAudit)", None),
        ("trailing\\", None),
        ("", ""),
    ],
)
def test_plain_literal(pattern: str, text: str | None) -> None:
    assert _plain_literal(pattern) == text


def test_the_classifier_uses_the_matcher_on_the_librarys_patterns() -> None:
    matcher = bot_matcher()
    assert isinstance(matcher, CrawlerMatcher)
    assert Classifier(Config())._is_bot is not is_crawler
    assert sum(map(len, matcher.by_prefix.values())) > 0.9 * len(PATTERNS)  # plain strings


def test_decides_as_is_crawler(real_data: Path) -> None:
    matcher = bot_matcher()
    agents = real_agents(real_data)
    samples = agents + INSTANCES
    rng = random.Random(5)
    for _ in range(20_000):  # pieces of agents and instances glued together, cut, cased
        a, b = rng.choice(samples), rng.choice(samples)
        cut = rng.randrange(len(a) + 1)
        samples += [a[:cut] + b[rng.randrange(len(b) + 1) :], a[cut:], a.lower(), a.upper()]
    samples += ["", "a", "ab", "bot", "Bot", "\x00bot", "é" * 50, "wget", "Wget/1.2"]
    differ = [s for s in samples if matcher(s) != is_crawler(s)]
    assert differ == []
    bots = sum(map(matcher, samples))
    assert 0.1 * len(samples) < bots < 0.9 * len(samples)  # both answers are exercised
    assert sum(map(matcher, INSTANCES)) > 0.95 * len(INSTANCES)


def test_each_pattern_alone() -> None:
    """Every pattern, plain string or regex, is found where the library finds it."""
    for pattern in PATTERNS:
        alone = CrawlerMatcher([pattern])
        for text in INSTANCES[:: max(1, len(INSTANCES) // 100)] + [pattern, "x " + pattern]:
            assert alone(text) == bool(re.search(pattern, text)), (pattern, text)
