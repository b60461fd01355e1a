"""Classification: path normalisation (RFC 3986 6.2.2), bots and agent families, referrer
hosts, ignored extensions, time buckets, site and visitor hashes."""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logcount.config import Config, config_from_dict
from logcount.count.aggregate import Aggregator
from logcount.count.classify import (
    DIRECT,
    Buckets,
    Classifier,
    referrer_host,
    url_hostname,
    visitor_digests,
    visitor_hash,
)
from logcount.count.line_counter import LineCounter
from logcount.count.logformat import compile_format
from logcount.count.paths import (
    MAX_PATH_BYTES,
    NO_PATH,
    NOT_HTTP,
    normalise_target,
    remove_dot_segments,
    request_target,
)


def classifier(**settings: object) -> Classifier:
    return Classifier(config_from_dict(dict(settings)))


# --- paths -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "path"),
    [
        (b"/%7euser/%41%62c", "/~user/Abc"),  # unreserved characters decoded
        (b"/a%2fb/%3a%e2%82%ac", "/a%2Fb/%3A%E2%82%AC"),  # reserved and non-ASCII kept, upper case
        (b"/a%zz/%4", "/a%25zz/%254"),  # a stray % is written %25
        (b"/100%", "/100%25"),
        (b"/a\x00b\n\x1b[0m\x7f", "/a%00b%0A%1B[0m%7F"),  # control bytes: escapes
        (b"/a/./b/../c", "/a/c"),
        (b"/a/b/c/./../../g", "/a/g"),  # RFC 3986 5.4.1
        (b"/a/b/../../../../g", "/g"),  # more .. than segments
        (b"/a/b/..", "/a/"),
        (b"/a/b/.", "/a/b/"),
        (b"/%2E%2e/secret", "/secret"),  # decoded first, then resolved
        (b"/a//b/../c", "/a//c"),
        (b"/a/.../b", "/a/.../b"),
        (b"/search?q=x&page=2", "/search"),  # query dropped
        (b"/page#frag", "/page"),
        (b"/caf\xc3\xa9", "/caf\u00e9"),  # UTF-8 bytes
        (b"/bad\xff\xfe/x", "/bad\\xff\\xfe/x"),  # not UTF-8: visible as \xhh
        (b"http://example.com:8080/abs/../path?x=1", "/path"),  # absolute-form (proxies)
        (b"https://example.com", "/"),
        (b"http://[::1/x/y", "/x/y"),  # a malformed authority (urlsplit raises on it)
        (b"http://host?q=1", "/"),
        (b"*", "*"),
        (b"", NO_PATH),
    ],
)
def test_normalise_target(target: bytes, path: str) -> None:
    assert normalise_target(target) == path


def test_remove_dot_segments_rfc_examples() -> None:
    # RFC 3986 section 5.2.4 walks through these two.
    assert remove_dot_segments(b"/a/b/c/./../../g") == b"/a/g"
    assert remove_dot_segments(b"mid/content=5/../6") == b"mid/6"


def test_keep_query_parameters_sorted() -> None:
    assert normalise_target(b"/list?b=2&drop=1&a=%7E1", ("a", "b")) == "/list?a=~1&b=2"
    assert normalise_target(b"/list?drop=1", ("a",)) == "/list"
    cl = classifier(normalize={"keep_query": ["page"]})
    assert cl.path_of_request(b"GET /news?page=3&utm_source=x HTTP/1.1") == "/news?page=3"


def test_path_capped_at_512_bytes_without_splitting_a_character() -> None:
    path = normalise_target(b"/" + "\u00e9".encode() * 600)
    raw = path.encode("utf-8")
    assert len(raw) <= MAX_PATH_BYTES and len(raw) >= MAX_PATH_BYTES - 1
    assert path == "/" + "\u00e9" * 255  # 1 + 255 * 2 = 511 bytes; the 256th would split
    euro = normalise_target(b"/" + "\u20ac".encode() * 300)
    assert len(euro.encode()) == 511 and euro.endswith("\u20ac")
    assert len(normalise_target(b"/" + b"a" * 100_000)) == MAX_PATH_BYTES
    # A byte that is not UTF-8 shows as \xhh: never cut inside those four characters.
    for pad in range(505, 512):
        shown = normalise_target(b"/" + b"a" * pad + b"\xff" * 4)
        assert len(shown) <= MAX_PATH_BYTES
        assert shown.replace("\\xff", "").strip("a/") == "", shown[-8:]


def test_path_of_request_unescapes_apache_escapes() -> None:
    cl = classifier()
    # As Apache writes them: \" \\ and \xhh for bytes >= 0x80.
    assert cl.path_of_request(b'GET /caf\\xc3\\xa9/q\\"uote\\\\ HTTP/1.1') == '/caf\u00e9/q"uote\\'
    assert cl.path_of_request(b"GET /bad\\xff HTTP/1.1") == "/bad\\xff"
    assert cl.path_of_request(b"GET /with space/in it HTTP/1.1") == "/with space/in it"
    assert cl.path_of_request(b"GET /http09") == "/http09"
    assert cl.path_of_request(b"GET http://proxy.example/x/./y HTTP/1.1") == "/x/y"
    for unreadable in (b"-", b""):
        assert cl.path_of_request(unreadable) == NO_PATH
    for not_http in (b"\\x16\\x03\\x01\\x02\\x00", b"GET"):
        assert cl.path_of_request(not_http) == NOT_HTTP
    assert request_target(b"POST /form HTTP/1.0") == b"/form"
    assert cl.path_of_request(b"M-SEARCH * HTTP/1.1") == "*"  # methods are tokens


def test_path_of_uri_and_query() -> None:
    cl = classifier(normalize={"keep_query": ["id"]})
    assert cl.path_of_uri((b"/a/../b", b"?id=4&x=1")) == "/b?id=4"
    assert cl.path_of_uri((b"-", b"")) == NO_PATH


# --- agents, referrers, extensions ------------------------------------------------------

CRAWLERS = {
    b"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)": "Googlebot",
    b"Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)": "bingbot",
    b"Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)": "YandexBot",
    b"Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)": (
        "Baiduspider"
    ),
    b"facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)": "FacebookBot",
    b"Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)": "AhrefsBot",
    b"Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.0; "
    b"+https://openai.com/gptbot)": "GPTBot",
    b"Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, "
    b"like Gecko) Chrome/120.0 Mobile Safari/537.36 (compatible; Googlebot/2.1; "
    b"+http://www.google.com/bot.html)": "Googlebot",
}
BROWSERS = {
    b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/120.0.0.0 Safari/537.36": "Chrome",
    b"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0": "Firefox",
    b"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    b"Version/17.2 Safari/605.1.15": "Safari",
    b"Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 "
    b"(KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1": "Mobile Safari",
    b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91": "Edge",
}


@pytest.mark.parametrize(("agent", "name"), CRAWLERS.items())
def test_crawlers_are_bots_by_name(agent: bytes, name: str) -> None:
    assert classifier().agent(agent) == (True, name)


def test_a_crawler_ua_parser_does_not_know_is_named_by_its_pattern() -> None:
    from logcount.count.agents import CrawlerMatcher

    matcher = CrawlerMatcher(["zzbot", "Zz[a-z]+Crawler", "zzbot/x"])
    assert matcher.name("Mozilla/5.0 (compatible; zzbot/x.1)") == "zzbot/x"  # the longest
    assert matcher.name("ZzfooCrawler and zzbot") == "ZzfooCrawler"  # the first
    assert matcher.name("no crawler here") == "(bot)"


@pytest.mark.parametrize(("agent", "family"), BROWSERS.items())
def test_browsers_are_people_with_a_family(agent: bytes, family: str) -> None:
    assert classifier().agent(agent) == (False, family)


def test_agent_edge_cases() -> None:
    cl = classifier()
    assert cl.agent(b"-") == (False, "(none)")
    assert cl.agent(b"") == (False, "(none)")
    assert cl.agent(b"curl/8.5.0")[0] is True  # crawler-user-agents lists HTTP libraries
    # An escaped agent is unescaped before it is classified.
    assert cl.agent(b'Mozilla/5.0 (compatible; \\"Googlebot/2.1\\")')[0] is True


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        (b"-", DIRECT),
        (b"", DIRECT),
        (b"http://Example.COM:8080/x?y=1", "example.com"),
        (b"https://www.google.com/search?q=x", "www.google.com"),
        (b"android-app://com.google.android.gm/", "com.google.android.gm"),
        (b"http://[::1]:8080/", "::1"),
        (b"http://[bad/", "(other)"),
        (b"not a url", "(other)"),
        (b"http://xn--bcher-kva.example/", "xn--bcher-kva.example"),
        (b"http://\\xe4\\xe5-\\xec.\\xf0\\xf4/", "\\xe4\\xe5-\\xec.\\xf0\\xf4"),  # not UTF-8
        (b"http://caf\\xc3\\xa9.example/", "caf\u00e9.example"),
    ],
)
def test_referrer_host(raw: bytes, host: str) -> None:
    assert referrer_host(raw) == host


def url_part(*choices: str) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(choices), max_size=3).map("".join)


# scheme, separator, authority, rest: each from pieces that take urlsplit into its corners
URL_TEXTS = st.tuples(
    url_part("http", "HTTPS", "a+b", "1x", " ", "\x00", "-"),
    url_part("://", "//", ":", "/"),
    url_part("Ex.COM", "a_b", "~", "@", "[", "]", "::1", "\u00e9", "%41", "\t", "-", ":"),
    url_part(":", "80", "x", "\n"),
    url_part("/", "?", "#", " ", "a"),
).map("".join)


@settings(max_examples=1000, deadline=None)
@given(URL_TEXTS)
def test_url_hostname_reads_as_urlsplit(text: str) -> None:
    try:
        expected = urlsplit(text).hostname
    except ValueError:
        expected = None
    assert url_hostname(text) == expected


def test_ignored_extensions() -> None:
    cl = classifier(normalize={"ignore_extensions": [".css", "JS", ".png"]})
    assert cl.config.ignore_extensions == (".css", ".js", ".png")
    assert cl.ignored("/static/site.css")
    assert cl.ignored("/static/app.min.JS".lower()) and cl.ignored("/IMG/A.PNG")
    assert not cl.ignored("/cssfile") and not cl.ignored("/page.html")
    assert not cl.ignored("/static/site.css/")  # a directory, not a file
    assert classifier().ignored("/site.css") is False


# --- time buckets ------------------------------------------------------------------------


def test_buckets_use_the_lines_own_offset_by_default() -> None:
    cl = classifier()
    assert cl.buckets((b"31/Dec/2023:23:59", b"+0200")) == Buckets(
        "202312312359", "2023123123", "20231231"
    )
    assert cl.buckets((b"01/Jan/2024:00:30", b"-0500")).day == "20240101"
    assert cl.buckets((b"bad", b"+0000")) is None


@pytest.mark.parametrize(
    ("zone", "tmin", "ttz", "minute"),
    [
        # a +0200 line just after midnight is still the previous day in UTC...
        ("UTC", b"01/Jan/2024:00:30", b"+0200", "202312312230"),
        # ...and in Berlin (+0100 in winter)
        ("Europe/Berlin", b"01/Jan/2024:00:30", b"+0200", "202312312330"),
        # a UTC line late in the evening is the next day in Tokyo
        ("Asia/Tokyo", b"31/Dec/2023:20:15", b"+0000", "202401010515"),
        # daylight saving time starts in Paris on 31 March 2024 at 01:00 UTC
        ("Europe/Paris", b"31/Mar/2024:00:59", b"+0000", "202403310159"),
        ("Europe/Paris", b"31/Mar/2024:01:00", b"+0000", "202403310300"),
        ("America/New_York", b"10/Mar/2024:07:30", b"+0000", "202403100330"),
    ],
)
def test_buckets_in_a_configured_time_zone(zone: str, tmin: bytes, ttz: bytes, minute: str) -> None:
    found = classifier(timezone=zone).buckets((tmin, ttz))
    assert found == Buckets(minute, minute[:10], minute[:8])


def test_buckets_without_offset_take_the_zone() -> None:
    # A strftime format without %z: the wall clock is read in the configured zone.
    cl = classifier(timezone="Asia/Tokyo")
    assert cl.buckets((b"01/Jan/2024:00:30", b"")) == Buckets(
        "202401010030", "2024010100", "20240101"
    )


# --- site and visitors ------------------------------------------------------------------


def test_site_from_vhost() -> None:
    cl = classifier(site="main")
    assert cl.site(b"WWW.Example.COM") == "www.example.com"
    assert cl.site(b"-") == "main" and cl.site(b"") == "main"
    assert cl.site(b"a{b}c") == "a(b)c"  # braces would break the Redis hash tag


def test_visitor_hash_never_holds_the_address() -> None:
    address, agent = b"192.0.2.77", b"Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0"
    key = bytes(range(32))
    digest = visitor_hash(address, agent, key)
    assert digest == visitor_hash(address, agent, key)  # stable across processes and hosts
    assert len(digest) == 16 and int(digest, 16) >= 0
    assert visitor_hash(b"192.0.2.78", agent, key) != digest
    assert visitor_hash(address, agent + b" ", key) != digest
    for clear in (address, address.hex().encode(), bytes(reversed(address))):
        assert clear.decode() not in digest
    # Not the address hashed alone (which a dictionary of addresses would reverse).
    assert digest != hashlib.blake2b(address, digest_size=8).hexdigest()


def test_visitor_digests_are_visitor_hash_from_a_copied_keyed_state() -> None:
    key = bytes(range(32))
    pair, alone = visitor_digests(key, 2), visitor_digests(key, 1)
    for address, agent in ((b"192.0.2.77", b"Mozilla/5.0"), (b"", b""), (b"::1", b"a\0b")):
        assert pair((address, agent)) == visitor_hash(address, agent, key)
        assert alone((address,)) == visitor_hash(
            address, b"", key
        )  # a format without %{User-agent}i
    # the same function twice, then another key: no state carried from one digest to the next
    assert pair((b"192.0.2.77", b"x")) == pair((b"192.0.2.77", b"x"))
    assert visitor_digests(bytes(32), 2)((b"192.0.2.77", b"x")) != pair((b"192.0.2.77", b"x"))


def test_aggregated_visitors_are_hashes_only() -> None:
    config = Config(log_format="combined")
    counter = LineCounter(compile_format("combined"))
    addresses = [f"198.51.100.{i}" for i in range(1, 40)] + ["2001:db8::beef"]
    lines = b"".join(
        f'{a} - - [17/May/2015:10:05:03 +0000] "GET /p HTTP/1.1" 200 5 "-" "Firefox/{i}"\n'.encode()
        for i, a in enumerate(addresses)
    )
    counter.feed(lines)
    delta = Aggregator(config, counter).classify(counter.take())
    hashes = delta.visitors[("default", "day", "20150517")]
    assert len(hashes) == len(addresses)
    for h in hashes:
        assert len(h) == 16 and all(a not in h for a in addresses)
    text = delta.to_json()
    assert not any(a in text for a in addresses)


# --- normalising a normalised key changes nothing ---------------------------------------

# Pieces that interact: escapes (of any byte, either case) beside stray `%` and hex
# digits, dot segments, separators, a scheme's `://`, Apache's `\x`, bytes that are not
# UTF-8; after a run of "a" that brings the key near the 512-byte cut.
_PIECES = st.one_of(
    st.sampled_from(
        [b"%", b"/", b".", b"..", b"?", b"#", b"://", b"=", b"&", b"a=", b"b=", b"\\x", b"\xc3"]
    ),
    st.integers(0, 255).map(lambda b: b"%%%02x" % b),
    st.integers(0, 255).map(lambda b: b"%%%02X" % b),
    st.sampled_from([bytes([c]) for c in b"0123456789abcdefABCDEFxyz~-_ +"]),
    st.binary(max_size=3),
)
_TARGETS = st.one_of(
    st.binary(max_size=600),
    st.lists(_PIECES, max_size=80).map(b"".join),
    st.tuples(st.integers(440, 520), st.lists(_PIECES, max_size=40)).map(
        lambda t: b"/" + b"a" * t[0] + b"".join(t[1])
    ),
)


@settings(max_examples=3000, deadline=None)
@given(_TARGETS, st.sampled_from([(), ("a",), ("a", "b")]))
def test_normalising_twice_gives_the_same_key(target: bytes, keep: tuple[str, ...]) -> None:
    """A key that `top` shows must be found again by `hits`, which normalises its argument."""
    once = normalise_target(target, keep)
    assert normalise_target(once.encode(), keep) == once
    assert len(once.encode()) <= MAX_PATH_BYTES


@pytest.mark.parametrize(
    ("target", "path"),
    [
        (b"/%%32%65", "/%252e"),  # a stray % before escapes of hex digits: not a new escape
        (b"/%4%31", "/%2541"),
        (b"%41%41%41%41%41://x/y", NOT_HTTP),  # no scheme made by decoding
        (b"?x", NOT_HTTP),
        (b".", NOT_HTTP),
        (b"/" + b"a" * 509 + b"/..x", "/" + "a" * 509 + "/"),  # no dot segment made by the cut
        (b"/" + b"a" * 507 + b"%2F%2F", "/" + "a" * 507 + "%2F"),  # nor half an escape
    ],
)
def test_normalise_target_makes_a_fixed_point(target: bytes, path: str) -> None:
    assert normalise_target(target) == path


def test_kept_query_cut_between_parameters() -> None:
    long = b"/p?a=" + b"x" * 480 + b"&b=" + b"y" * 40
    assert normalise_target(long, ("a", "b")) == "/p?a=" + "x" * 480
    assert normalise_target(b"/p?b=" + b"y" * 600, ("b",)) == "/p"
