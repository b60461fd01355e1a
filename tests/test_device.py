"""`--by device`: the type of device a user agent names, from logcount's own table
(dimensions.DEVICE_TYPES), counted live by a real `logcount pipe` into a private Redis and
from the store after a real `logcount rollup`, with both scanners."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import pytest

from logcount.config import Config
from logcount.count.agents import _family_parser, device_type
from logcount.count.classify import Classifier
from logcount.dimensions import DEVICE_TYPES
from tests.conftest import run_logcount

# Agents as their makers' browsers and devices send them, and the type each names.
DESKTOP = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    # Windows' pen support on a laptop, not a tablet
    "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0; SLCC2; Tablet PC 2.0)",
]
MOBILE = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    # Chrome's reduced agent: "K" for every model, Mobile on a phone
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Android 14; Mobile; rv:120.0) Gecko/120.0 Firefox/120.0",
    "Opera/9.80 (J2ME/MIDP; Opera Mini/7.1.32052/34.1244; U; en) Presto/2.8.119 Version/11.10",
    "Mozilla/5.0 (compatible; MSIE 10.0; Windows Phone 8.0; Trident/6.0; IEMobile/10.0; ARM; "
    "Touch; NOKIA; Lumia 920)",
]
TABLET = [
    "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; U; Android 4.0.3; en-us; KFTT Build/IML74K) AppleWebKit/535.19 "
    "(KHTML, like Gecko) Silk/3.4 Mobile Safari/535.19 Silk-Accelerated=true",
    "Mozilla/5.0 (Android 14; Tablet; rv:120.0) Gecko/120.0 Firefox/120.0",
]
TV = [
    "Mozilla/5.0 (SMART-TV; LINUX; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) "
    "76.0.3809.146/6.0 TV Safari/537.36",
    "Mozilla/5.0 (Web0S; Linux/SmartTV) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/79.0.3945.79 Safari/537.36 WebAppManager",
    # Chromecast says X11 and Linux, Fire TV Android and Mobile: the TV rows come first
    "Mozilla/5.0 (X11; Linux armv7l) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/91.0.4472.114 Safari/537.36 CrKey/1.56.500000",
    "Mozilla/5.0 (Linux; Android 9; AFTMM Build/PS7233; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/108.0.5359.160 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux armv7l) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/56.0.2924.0 "
    "Safari/537.36 OPR/43.0.2442.991 HbbTV/1.2.1 (; Vestel; MB211; 3.28.3.1; _TV_G31_2018;)",
]
CONSOLE = [
    "Mozilla/5.0 (PlayStation; PlayStation 5/2.26) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/13.0 Safari/605.1.15",
    # an Xbox says Windows NT too
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; Xbox; Xbox Series X) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/48.0.2564.82 Safari/537.36 Edge/20.02",
    "Mozilla/5.0 (Nintendo Switch; WifiWebAuthApplet) AppleWebKit/606.4 (KHTML, like Gecko) "
    "NF/6.0.1.15.4 NintendoBrowser/5.1.0.20393",
]
OTHER = [
    # an iOS app's, a text browser's (curl and python-requests are crawlers: bots)
    "Reeder/2.1.1 CFNetwork/672.0.8 Darwin/14.0.0",
    "Lynx/2.8.9rel.1 libwww-FM/2.14 SSL-MM/1.4.1 OpenSSL/1.1.1d",
    # an Android app's agent: a phone's or a tablet's
    "Dalvik/2.1.0 (Linux; U; Android 13; SM-S918B Build/TP1A.220624.014)",
    "Instagram 3.0.4 Android (8/2.2.1; 240dpi; 480x800; HTC/verizon_wwe; ADR6400L; mecha)",
]
KNOWN = {
    "desktop": DESKTOP,
    "mobile": MOBILE,
    "tablet": TABLET,
    "tv": TV,
    "console": CONSOLE,
    "other": OTHER,
}
GOOGLEBOT_PHONE = (
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36 "
    "(compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
)


@pytest.mark.parametrize(
    ("agent", "kind"), [(a, kind) for kind, agents in KNOWN.items() for a in agents]
)
def test_the_type_an_agent_names(agent: str, kind: str) -> None:
    assert device_type(agent) == kind


def test_the_classifier_names_no_agent_and_bots_apart_and_reads_the_prefix() -> None:
    cl = Classifier(Config())
    assert cl.device(b"-") == "(none)"
    assert cl.device(b"") == "(none)"
    assert cl.device(GOOGLEBOT_PHONE.encode()) == "bot"  # not the phone it imitates
    # what follows the first AGENT_PREFIX bytes is not read
    assert cl.device(DESKTOP[2].encode() + b" " + b"x" * 8000 + b" iPhone") == "desktop"
    assert cl.device(b"Mozilla/5.0 (iPad; " + b"\\xff" * 4000) == "tablet"


def _unbounded_repeats(parsed: Any, inside: bool = False) -> list[str]:
    """Repeats of a parsed pattern that are unbounded or hold another repeat."""
    found = []
    for op, av in parsed:
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
            low, high, sub = av
            if high == sre.MAXREPEAT or inside:
                found.append(f"{op} {low}..{high}")
            found += _unbounded_repeats(sub, True)
        elif op is sre.SUBPATTERN:
            found += _unbounded_repeats(av[3], inside)
        elif op is sre.BRANCH:
            for branch in av[1]:
                found += _unbounded_repeats(branch, inside)
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            found += _unbounded_repeats(av[1], inside)
    return found


def test_every_pattern_searches_in_linear_time() -> None:
    """Literals and bounded repeats, none inside another: a match tried at each of the
    prefix's positions costs a bounded number of steps."""
    for kind, pattern in DEVICE_TYPES:
        assert _unbounded_repeats(sre_parse.parse(pattern)) == [], kind
    assert _unbounded_repeats(sre_parse.parse(r"Android.*Mobile")) != []  # the check sees


# ua-parser's operating systems (an oracle independent of the table): the types they allow
SYSTEMS = {
    "desktop": {"Windows", "Mac OS X", "Linux", "Ubuntu", "Chrome OS", "FreeBSD", "Fedora"},
    "mobile": {"iOS", "Android", "Windows Phone", "Windows Mobile", "Symbian OS"},
}
ALLOWED = {"desktop": {"desktop", "other"}, "mobile": {"mobile", "tablet", "other"}}


def test_the_real_logs_agents_agree_with_their_operating_systems(real_data: Path) -> None:
    """Every non-bot agent of the real logs: a desktop system's agent is never a phone's,
    tablet's, TV's or console's, and a phone system's never a desktop's; few lines of an
    agent whose system ua-parser names are left without a type."""
    cl = Classifier(Config())
    lines: Counter[tuple[str, str]] = Counter()  # (system, type) -> lines
    wrong = []
    for log in sorted(real_data.glob("*.log")):
        for line in log.read_bytes().split(b"\n"):
            parts = line.split(b'"')
            if len(parts) < 6 or cl.agent(parts[5])[0]:
                continue
            text = parts[5].decode("utf-8", "backslashreplace")
            found = _family_parser().parse_os(text)
            system = found.family if found is not None else "Other"
            kind = cl.device(parts[5])
            lines[system, kind] += 1
            for group, systems in SYSTEMS.items():
                if system in systems and kind not in ALLOWED[group]:
                    wrong.append((system, kind, text))
    assert wrong == []
    named = sum(n for (system, _), n in lines.items() if system != "Other")
    untyped = sum(n for (system, kind), n in lines.items() if system != "Other" and kind == "other")
    assert named > 7000 and untyped < 0.02 * named, (untyped, named)
    typed = {kind for (_, kind), n in lines.items()}
    assert {"desktop", "mobile", "tablet"} <= typed


# --- acceptance: live and from the store --------------------------------------------------

DAY = "2026-03-14"
BOTS = [GOOGLEBOT_PHONE, "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"]
# Each type's agents over as many lines as make its count its own: desktop 7 ... (none) 1
REPEAT = {"desktop": 7, "mobile": 6, "tablet": 5, "tv": 4, "other": 3, "console": 2}


def held_out_log() -> tuple[bytes, Counter[str]]:
    """Lines of the known agents, one client each, and the hits expected per type."""
    agents = [
        (kind, KNOWN[kind][i % len(KNOWN[kind])]) for kind, n in REPEAT.items() for i in range(n)
    ]
    agents += [("(none)", "-")] + [("bot", a) for a in BOTS]
    lines = [
        f"10.0.{i // 250}.{i % 250} - - [14/Mar/2026:10:{i % 60:02d}:03 +0000] "
        f'"GET /p/{i} HTTP/1.1" 200 100 "-" "{agent}"\n'
        for i, (_, agent) in enumerate(agents)
    ]
    return "".join(lines).encode(), Counter(kind for kind, _ in agents)


def top_device(env: dict[str, str]) -> dict[str, Any]:
    done = run_logcount(["top", "--window", DAY, "--by", "device", "--format", "json"], env)
    assert done.returncode == 0, done.stderr.decode()
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.mark.parametrize(("count_bots", "scanner"), [(False, "c"), (False, "pure"), (True, "c")])
def test_top_by_device_live_then_from_the_store(
    lc_env: dict[str, str], tmp_path: Path, count_bots: bool, scanner: str
) -> None:
    env = dict(lc_env)
    if scanner == "pure":
        env["LOGCOUNT_PURE_PYTHON"] = "1"
    else:
        env.pop("LOGCOUNT_PURE_PYTHON", None)
    config = 'site = "test"\ntimezone = "UTC"\n[normalize]\n'
    Path(env["LOGCOUNT_CONFIG"]).write_text(config + f"count_bots = {str(count_bots).lower()}\n")
    log, per_type = held_out_log()
    bots = per_type["bot"]
    if not count_bots:
        del per_type["bot"]  # a bot's line counts in bots, not in hits
    hits = sum(per_type.values())
    expected_rows = [
        {"key": kind, "hits": n, "bytes": 0, "visitors": None}  # bytes: hit-key dimensions
        for kind, n in sorted(per_type.items(), key=lambda kv: (-kv[1], kv[0]))
    ]

    def expected(source: str) -> dict[str, Any]:
        return {
            "window": {
                "start": f"{DAY}T00:00:00+00:00",
                "end": "2026-03-15T00:00:00+00:00",
                "source": source,
            },
            "site": "test",
            "by": "device",
            "total": {
                "hits": hits,
                "bytes": 100 * hits,
                "visitors": hits,
                "bots": bots,
                "malformed": 0,
                **{"s1xx": 0, "s2xx": hits, "s3xx": 0, "s4xx": 0, "s5xx": 0},
            },
            "rows": expected_rows,
        }

    live = run_logcount(["pipe"], env, input=log)
    assert live.returncode == 0, live.stderr.decode()
    assert top_device(env) == expected("live")
    (tmp_path / "held_out.log").write_bytes(log)
    done = run_logcount(["rollup", "--logs", str(tmp_path / "held_out.log")], env)
    assert done.returncode == 0, done.stderr.decode()
    assert top_device(env) == expected("store")
