"""User agents: crawlers (crawler-user-agents' patterns), families and operating
systems (ua-parser), device types (dimensions.DEVICE_TYPES); each decided on an
agent's first AGENT_PREFIX bytes, so that its cost is bounded."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from logcount.count.paths import truncate_utf8
from logcount.dimensions import DEVICE_TYPES, OTHER_DEVICE

MAX_FAMILY_BYTES = 64  # ua-parser's families are words ("Chrome Mobile WebView"): longer is Other
# An agent is classified (bot, family) on its first bytes only, so that its cost is
# bounded: the longest agents of the real logs and of crawler-user-agents' examples are
# under 300 bytes; the regexes' cost grows with the length of the text they search.
AGENT_PREFIX = 512
# An agent left unnamed by a rollup's counters, for the parent to name once per distinct
# agent (rollup_rows.families_of): ua-parser is then loaded in one process only.
RAW_AGENT = "\x00"
BOT = "(bot)"  # a bot whose name is not known
BOT_NAME_STRIP = " /;:,()[]-_+"

_REGEX_SPECIALS = frozenset(".^$*+?{}[]|()")


def _plain_literal(pattern: str) -> str | None:
    """The text a regex matches when it is a plain string (escaped punctuation allowed:
    `Googlebot\\/` is `Googlebot/`); None when it has any other regex syntax."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            nxt = pattern[i + 1 : i + 2]
            if not nxt or nxt.isalnum() or nxt == "_":  # \d, \b, \1 ... are syntax
                return None
            out.append(nxt)
            i += 2
            continue
        if c in _REGEX_SPECIALS:
            return None
        out.append(c)
        i += 1
    return "".join(out)


class CrawlerMatcher:
    """crawler-user-agents' patterns, deciding exactly as its is_crawler() (a
    case-sensitive re.search of every pattern), about four times faster.

    is_crawler() runs some 60 regexes of 25 alternatives each over the agent, which Python's
    re tries at every position: ~130 us an agent, the largest part of classifying the
    distinct agents of a log. Nearly all patterns (1,468 of 1,504 in 2026) are plain
    strings: those are looked up by their first three characters among the agent's
    three-character substrings, then tested with `in`; the few real regexes are
    searched one by one (name() searches them as one alternation, for where each
    match starts)."""

    def __init__(self, patterns: list[str]):
        self.by_prefix: dict[str, list[str]] = {}
        regexes = []
        for pattern in patterns:
            text = _plain_literal(pattern)
            if text is None or len(text) < 3:
                regexes.append(pattern)
            else:
                self.by_prefix.setdefault(text[:3], []).append(text)
        # A set of the prefixes: the agent's ~100 grams are intersected with it by looking
        # each up (against the dict's ~900 keys, intersection walked those).
        self.prefixes = frozenset(self.by_prefix)
        self.regex = re.compile("|".join(f"(?:{p})" for p in regexes)) if regexes else None
        # The same regexes apart, for the yes/no of __call__ (some alternative matches
        # somewhere iff one of them does): re finds most by their literal first
        # characters, which it cannot do in the alternation (25 -> 14 us an agent).
        self.each = [re.compile(p) for p in regexes]

    def __call__(self, agent: str) -> bool:
        agent = agent_prefix(agent)
        if len(agent) >= 3:
            grams = {agent[i : i + 3] for i in range(len(agent) - 2)}
            for gram in grams.intersection(self.prefixes):
                for text in self.by_prefix[gram]:
                    if text in agent:
                        return True
        return any(regex.search(agent) for regex in self.each)

    def name(self, agent: str) -> str:
        """The crawler an agent names: the text of a pattern it matches, the one that
        starts first in the agent (then the longest: "YandexBot", not "yandex.com/bots"
        further on), without punctuation around it; "(bot)" when that leaves nothing."""
        agent = agent_prefix(agent)
        grams = {agent[i : i + 3] for i in range(len(agent) - 2)} & self.by_prefix.keys()
        found = [
            (agent.find(text), -len(text), text)
            for gram in grams
            for text in self.by_prefix[gram]
            if text in agent
        ]
        if self.regex is not None:
            found += [(m.start(), -len(m[0]), m[0]) for m in self.regex.finditer(agent) if m[0]]
        if not found:
            return BOT
        best = min(found)[2]
        return truncate_utf8(best.strip(BOT_NAME_STRIP), MAX_FAMILY_BYTES) or BOT


class _AskTheLibrary:
    """crawler-user-agents' own is_crawler(), when its data is not as CrawlerMatcher
    reads it: no names then."""

    def __init__(self) -> None:
        from crawleruseragents import is_crawler

        self.is_crawler = is_crawler

    def __call__(self, agent: str) -> bool:
        return bool(self.is_crawler(agent_prefix(agent)))

    def name(self, agent: str) -> str:
        return BOT


@functools.cache
def bot_matcher() -> CrawlerMatcher | _AskTheLibrary:
    try:
        from crawleruseragents import CRAWLER_USER_AGENTS_DATA

        return CrawlerMatcher([entry["pattern"] for entry in CRAWLER_USER_AGENTS_DATA])
    except (ImportError, KeyError, TypeError, re.error):  # the library changed: ask it
        return _AskTheLibrary()


@functools.cache
def _family_parser() -> Any:
    """ua-parser with its user-agent and OS matchers: its device table would cost 15 MB
    more in every reader (11.5 to 26.5 MB for ua-parser; see device_type). The lazy
    matchers: the eager ones compile every regex in Python on import (~0.1 s), and the
    Rust resolver reads the pattern strings, never their Python regexes."""
    from ua_parser import BasicResolver, Parser
    from ua_parser.loaders import load_lazy_builtins

    try:
        from ua_parser import RegexResolver as resolver
    except ImportError:
        resolver = None
    agents, systems, _ = load_lazy_builtins()
    return Parser((resolver or BasicResolver)((agents, systems, [])))


def agent_prefix(agent: str) -> str:
    """The first AGENT_PREFIX bytes (UTF-8) of an agent, what decides its bot flag and
    family: the text the matchers search is bounded, whatever the agent's length."""
    head = agent[:AGENT_PREFIX]  # a character is one byte or more
    raw = head.encode("utf-8", "surrogatepass")
    if len(raw) <= AGENT_PREFIX:
        return head
    return raw[:AGENT_PREFIX].decode("utf-8", "ignore")


def bot_name(agent: str, family: Callable[[str], str] | None = None) -> str:
    """A bot's name: ua-parser knows most crawlers (YandexBot, where the pattern that
    caught it is "yandex.com/bots"), else the text of the crawler pattern it matches."""
    found = (family or agent_family)(agent)
    return found if found != "Other" else bot_matcher().name(agent)


def agent_family(agent: str) -> str:
    """ua-parser's family of an agent's prefix; a family past MAX_FAMILY_BYTES (some
    patterns take a whole run of letters as the name) is "Other", as an unknown agent."""
    return _capped(_family_parser().parse_user_agent(agent_prefix(agent)))


def os_family(agent: str) -> str:
    """ua-parser's operating system of an agent's prefix (Windows, Android, iOS, Mac OS X,
    ...), "Other" when it names none or one past MAX_FAMILY_BYTES."""
    return _capped(_family_parser().parse_os(agent_prefix(agent)))


def device_type(agent: str) -> str:
    """The type of device an agent's prefix names: the first row of DEVICE_TYPES whose
    pattern is found in it, OTHER_DEVICE when none is. Our own table: ua-parser's device
    table would cost 15 MB in every reader and names phone models, not types."""
    text = agent_prefix(agent)
    return next((name for name, search in _device_searches() if search(text)), OTHER_DEVICE)


@functools.cache
def _device_searches() -> tuple[tuple[str, Callable[[str], Any]], ...]:
    """DEVICE_TYPES compiled once per process, at its first agent: the table is imported
    by every command, which would otherwise compile it (~7 M instructions) for nothing."""
    return tuple((name, re.compile(pattern).search) for name, pattern in DEVICE_TYPES)


def _capped(found: Any) -> str:
    """The family of a ua-parser result; "Other" for none, or one past MAX_FAMILY_BYTES."""
    family: str = found.family if found is not None else "Other"
    if len(family) * 4 > MAX_FAMILY_BYTES and len(family.encode()) > MAX_FAMILY_BYTES:
        return "Other"
    return family
