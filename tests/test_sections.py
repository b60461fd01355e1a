"""Sections (`top --by path --depth N`, `hits --prefix`) and ratios (`top --metric A/B`),
live and from the store, on known lines; the expected numbers come from the reference
code below, which reads the test's own table of requests, not logcount's code."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from logcount.cli import cli
from logcount.config import load_config
from logcount.sources.rollup import rollup
from tests.conftest import RedisServer
from tests.test_cli_top import FIREFOX, feed, line

CONFIG = 'site = "test"\ntimezone = "UTC"\n'
LIVE_SECTIONS = "[live]\nsection_depth = 1\n"


@dataclass(frozen=True)
class Request:
    client: str
    path: str
    size: int = 1000
    status: int = 200


# Who asked for what: visitor 10.0.0.1 reads two pages of /blog/ (one visitor there, not
# two); 10.0.0.2 three, one of them a 404; the shop has its own visitors.
REQUESTS = [
    Request("10.0.0.1", "/blog/2015/a", 1000),
    Request("10.0.0.1", "/blog/2016/c", 3000),
    Request("10.0.0.2", "/blog/2015/a", 1000),
    Request("10.0.0.2", "/blog/2015/b", 2000),
    Request("10.0.0.2", "/blog/2015/gone", 100, 404),
    Request("10.0.0.3", "/blog", 500),
    Request("10.0.0.3", "/shop/x", 4000),
    Request("10.0.0.4", "/shop/y", 6000, 500),
    Request("10.0.0.4", "/", 700),
    Request("10.0.0.5", "/about", 800),
]


def section(path: str, depth: int) -> str:
    """The reference: the path up to the slash after its `depth`th segment."""
    segments = path.split("/")[1:]
    if len(segments) <= depth:
        return path
    return "/" + "/".join(segments[:depth]) + "/"


def expected_sections(requests: list[Request], depth: int, visitors: bool) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    who: dict[str, set[str]] = {}
    for r in requests:
        key = section(r.path, depth)
        row = rows.setdefault(key, {"key": key, "hits": 0, "bytes": 0, "visitors": None})
        row["hits"] += 1
        row["bytes"] += r.size
        who.setdefault(key, set()).add(r.client)
    if visitors:
        for key, row in rows.items():
            row["visitors"] = len(who[key])
    return sorted(rows.values(), key=lambda r: (-r["hits"], r["key"]))


def text(day: date, requests: list[Request]) -> str:
    when = datetime(day.year, day.month, day.day, 12, 0, 0, tzinfo=UTC)
    return "".join(
        line(when, r.path, r.status, r.size, agent=FIREFOX, client=r.client) for r in requests
    )


class Site:
    def __init__(self, tmp: Path, server: RedisServer, more: str = ""):
        self.tmp = tmp
        config = tmp / "logcount.toml"
        config.write_text(CONFIG + more)
        self.store = f"sqlite:///{tmp / 'store.sqlite3'}"
        self.base = ["--config", str(config), "--redis", server.url]
        self.base += ["--data-dir", str(tmp / "data"), "--store", self.store]
        self.config = load_config(
            str(config), redis=server.url, data_dir=str(tmp / "data"), store=self.store
        )
        # The days of the lines, from the day they are written: a run that crosses
        # midnight UTC writes (and expects) the next day's.
        self.today = datetime.now(UTC).date()
        self.past = self.today - timedelta(days=2)

    def run(self, *args: str) -> Any:
        return CliRunner().invoke(cli, [*self.base, *args], catch_exceptions=False)

    def json(self, *args: str) -> Any:
        result = self.run(*args, "--format", "json")
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    def roll_up(self, name: str, lines: str, host: str = "web1") -> None:
        log = self.tmp / name
        log.write_text(lines)
        rollup(self.config, [str(log)], [], host=host, jobs=1, warn=lambda m: None)


@pytest.fixture
def site(tmp_path: Path, redis_server: RedisServer) -> Site:
    s = Site(tmp_path, redis_server, LIVE_SECTIONS)
    feed(s.config, text(s.past, REQUESTS) + text(s.today, REQUESTS))
    return s


@pytest.mark.parametrize("depth", [1, 2])
def test_live_sections_sum_hits_and_bytes(site: Site, depth: int) -> None:
    """Visitors too at depth 1 ([live] section_depth = 1, the default: a HyperLogLog per
    section, hour and day, exact for so few); none kept at depth 2."""
    report = site.json("top", "--window", "today", "--by", "path", "--depth", str(depth))
    assert report["depth"] == depth
    assert report["window"]["source"] == "live"
    assert report["rows"] == expected_sections(REQUESTS, depth, visitors=depth == 1)
    assert report["rows"][0]["visitors"] == (2 if depth == 1 else None)  # a union, not 5
    assert report["total"]["hits"] == len(REQUESTS)


def test_live_sections_deeper_and_per_hour(tmp_path: Path, redis_server: RedisServer) -> None:
    """section_depth = 2 keeps depth 2 as well; the hour buckets of a `24h` window hold
    the same visitors as the day's; a window of minutes keeps none (`-`)."""
    s = Site(tmp_path, redis_server, "[live]\nsection_depth = 2\n")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    lines = [line(now, r.path, r.status, r.size, agent=FIREFOX, client=r.client) for r in REQUESTS]
    feed(s.config, "".join(lines))
    for depth in (1, 2):
        for window in ("today", "24h"):
            report = s.json("top", "--window", window, "--depth", str(depth))
            assert report["rows"] == expected_sections(REQUESTS, depth, visitors=True), window
    minutes = s.json("top", "--window", "15m", "--depth", "1")
    assert minutes["rows"] == expected_sections(REQUESTS, 1, visitors=False)


def test_stored_and_live_days_add_their_visitors(site: Site) -> None:
    """A window of stored days and today: each side's union, added (a visitor of both
    counts twice, as in the window's total); the hits of both."""
    site.roll_up("past.log", text(site.past, REQUESTS))
    report = site.json("top", "--window", "3d", "--depth", "1")
    assert report["window"]["source"] == "both"
    twice = [
        {**row, "hits": 2 * row["hits"], "bytes": 2 * row["bytes"], "visitors": 2 * row["visitors"]}
        for row in expected_sections(REQUESTS, 1, visitors=True)
    ]
    assert report["rows"] == twice


def test_a_bucket_keeps_visitors_of_max_members_sections(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Made-up paths cannot make a HyperLogLog each: a bucket keeps the visitors of its
    first max_members sections; the others show none (`-`), their hits still counted."""
    s = Site(tmp_path, redis_server, LIVE_SECTIONS + "max_members = 1000\n")
    many = [Request(f"10.0.{i // 250}.{i % 250}", f"/made-up-{i}/x") for i in range(1500)]
    feed(s.config, text(s.today, many))
    report = s.json("top", "--window", "today", "--depth", "1", "--limit", "2000")
    assert len(report["rows"]) == 1001  # 1,000 paths and (other): 500 folded
    assert sum(row["hits"] for row in report["rows"]) == 1500
    # The sections kept and the paths kept are each the first 1,000 of their own order
    kept = [row for row in report["rows"] if row["visitors"] is not None]
    assert 0 < len(kept) <= 1000 and all(row["visitors"] == 1 for row in kept)
    assert report["rows"][0] == {"key": "(other)", "hits": 500, "bytes": 500_000, "visitors": None}
    client = redis_server.client()
    label = s.today.strftime("%Y%m%d")
    assert client.scard(f"lc:{{test}}:sk:1:day:{label}") == 1000
    assert len(list(client.scan_iter(match=f"lc:{{test}}:sv:1:day:{label}:*", count=1000))) == 1000


def test_stored_sections_count_visitors_as_a_union(site: Site) -> None:
    site.roll_up("past.log", text(site.past, REQUESTS))
    report = site.json("top", "--window", site.past.isoformat(), "--depth", "1")
    assert report["window"]["source"] == "store"
    rows = expected_sections(REQUESTS, 1, visitors=True)
    assert rows[0] == {"key": "/blog/", "hits": 5, "bytes": 7100, "visitors": 2}
    assert report["rows"] == rows


def test_two_hosts_files_of_one_day_make_one_union(site: Site) -> None:
    half = len(REQUESTS) // 2
    site.roll_up("web1.log", text(site.past, REQUESTS[:half]), host="web1")
    site.roll_up("web2.log", text(site.past, REQUESTS[half:]), host="web2")
    # and again: a re-run replaces its own rows
    site.roll_up("web2.log", text(site.past, REQUESTS[half:]), host="web2")
    report = site.json("top", "--window", site.past.isoformat(), "--depth", "1", "--limit", "2")
    assert report["rows"] == expected_sections(REQUESTS, 1, visitors=True)[:2]


def test_a_section_s_hits_live_and_stored(site: Site) -> None:
    site.roll_up("past.log", text(site.past, REQUESTS))
    blog = sum(1 for r in REQUESTS if r.path.startswith("/blog/"))
    report = site.json("hits", "--prefix", "/blog/", "--days", "3")
    assert report == {
        "site": "test",
        "prefix": "/blog/",
        "today": blog,
        "total": 2 * blog,
        "days": [
            {"date": site.past.isoformat(), "hits": blog, "source": "store"},
            {"date": (site.past + timedelta(days=1)).isoformat(), "hits": 0, "source": "live"},
            {"date": site.today.isoformat(), "hits": blog, "source": "live"},
        ],
    }


def test_a_prefix_is_literal_not_a_pattern(site: Site) -> None:
    odd = [Request("10.0.0.9", "/a*b/x"), Request("10.0.0.9", "/a_b")]
    feed(site.config, text(site.today, odd))
    site.roll_up("past.log", text(site.past, odd))
    # the store holds the odd lines alone; today has /about beside them
    for prefix, stored, live in (("/a*", 1, 1), ("/a_", 1, 1), ("/a", 2, 3)):
        days = site.json("hits", "--prefix", prefix, "--days", "3")["days"]
        assert [d["hits"] for d in days] == [stored, 0, live], prefix


def test_the_section_table(site: Site) -> None:
    result = site.run("top", "--window", "today", "--depth", "1", "--limit", "2")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[4].split() == [
        "#",
        "section",
        "(depth",
        "1)",
        "hits",
        "share",
        "visitors",
        "bytes",
    ]
    assert lines[5].split() == ["1", "/blog/", "5", "50.0%", "2", "6.9", "KiB"]


def test_metric_bytes_per_hit_and_errors_per_hit(site: Site) -> None:
    report = site.json("top", "--window", "today", "--metric", "bytes/hits", "--limit", "1")
    assert report["metric"] == "bytes/hits"
    assert report["metric_total"] == round(sum(r.size for r in REQUESTS) / len(REQUESTS), 6)
    assert report["rows"] == [
        {"key": "/blog/2015/a", "hits": 2, "bytes": 2000, "visitors": None, "metric": 1000.0}
    ]
    errors = site.json("top", "--window", "today", "--depth", "1", "--metric", "s4xx/hits")
    share = {row["key"]: row["metric"] for row in errors["rows"]}
    assert share == {"/blog/": 0.2, "/shop/": 0.0, "/blog": 0.0, "/": 0.0, "/about": 0.0}
    assert errors["metric_total"] == 0.1


def test_metric_by_status_and_visitors_from_the_store(site: Site) -> None:
    site.roll_up("past.log", text(site.past, REQUESTS))
    report = site.json(
        "top", "--window", site.past.isoformat(), "--by", "status", "--metric", "s5xx/hits"
    )
    assert {r["key"]: r["metric"] for r in report["rows"]} == {"200": 0.0, "404": 0.0, "500": 1.0}
    per_visitor = site.json(
        "top", "--window", site.past.isoformat(), "--depth", "1", "--metric", "hits/visitors"
    )
    assert per_visitor["rows"][0]["metric"] == 2.5  # /blog/: 5 hits, 2 visitors
    assert per_visitor["metric_total"] == 2.0  # 10 hits, 5 visitors
    csv = site.run(
        "top",
        "--window",
        site.past.isoformat(),
        "--depth",
        "1",
        "--metric",
        "hits/visitors",
        "--format",
        "csv",
    )
    assert csv.output.splitlines()[:2] == [
        "rank,key,hits,share,visitors,bytes,hits/visitors",
        "1,/blog/,5,0.5000,2,7100,2.5",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "status", "--depth", "1"], "--depth rolls paths up into sections"),
        (["--depth", "0"], "--depth must be from 1 to 32"),
        (["--depth", "1", "--status", "404"], "--depth and --status: give one of them"),
        (["--metric", "bytes"], "give two totals as A/B"),
        (["--metric", "cats/hits"], "unknown total 'cats'"),
        (["--metric", "s2xx/hits"], "s2xx is kept per row for --by status"),
        (["--metric", "bots/hits"], "rows have no bots"),
        (["--metric", "bytes/hits", "--watch"], "--depth and --metric print once"),
    ],
)
def test_bad_sections_and_metrics_are_one_line(site: Site, args: list[str], message: str) -> None:
    result = site.run("top", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_metric_time_per_hit(tmp_path: Path, redis_server: RedisServer) -> None:
    config = tmp_path / "d.toml"
    config.write_text(
        CONFIG + """log_format = '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %D'\n"""
    )
    loaded = load_config(str(config), redis=redis_server.url, data_dir=str(tmp_path / "d"))
    today = datetime.now(UTC).date()  # as the lines are written
    when = datetime(today.year, today.month, today.day, 0, 0, 5, tzinfo=UTC)
    lines = [
        line(when, path, agent=FIREFOX).rstrip("\n") + f" {us}\n"
        for path, us in (("/a/1", 1000), ("/a/2", 3000), ("/b", 500))
    ]
    feed(loaded, "".join(lines))
    base = ["--config", str(config), "--redis", redis_server.url, "--data-dir", str(tmp_path / "d")]
    args = ["top", "--window", "today", "--depth", "1", "--metric", "time/hits", "--format", "json"]
    report = json.loads(CliRunner().invoke(cli, [*base, *args]).output)
    assert [(r["key"], r["time_avg_ms"], r["metric"]) for r in report["rows"]] == [
        ("/a/", 2.0, 2.0),
        ("/b", 0.5, 0.5),
    ]
    assert report["metric_total"] is None  # the window's time is not summed


def test_section_sets_survive_the_spool_and_a_split() -> None:
    """A delta's section sets go through the spool (JSON) and the split into batches
    whole; a spool line written before sections were kept live still reads."""
    from logcount.count.delta import Delta

    hashes = {f"{i:016x}" for i in range(3000)}
    delta = Delta(sections={("test", "1", "/blog/", "day", "20261205"): set(hashes)})
    delta.sections[("other", "2", "/a/b/", "hour", "2026120509")] = {"00000000000000aa"}
    again = Delta.from_json(delta.to_json())
    assert again.sections == delta.sections
    parts = list(delta.parts(20_000))
    assert len(parts) > 1
    merged = Delta()
    for part in parts:
        merged.merge(part)
    assert merged.sections == delta.sections
    assert set(delta.split_by_site()) == {"test", "other"}
    assert Delta.from_json(Delta().to_json().replace(',"q":[]', "")).sections == {}
    with pytest.raises(ValueError):
        Delta.from_json(delta.to_json().replace('"1","/blog/"', '"/blog/"'))  # 4 strings


def test_apply_lua_refuses_a_bad_section_op(redis_server: RedisServer) -> None:
    """apply.lua checks a section's operation before any write, as every other."""
    import redis

    from logcount.sinks.live import _SCRIPT

    client = redis_server.client()
    script = client.register_script(_SCRIPT)
    names = ["lc:{t}:sv:1:day:20261205:/blog/", "lc:{t}:sk:1:day:20261205"]
    good = [10, 2, "/blog/", ["00000000000000aa"]]
    more = ([*good, 1, 2], [*good, 9, 2, 60], [*good, 1, 2, -1])  # bad (key, kept, ttl)
    for bad in ([10, 2, 7, ["a"]], [10, 9, "/blog/", ["a"]], [10, 2, "/blog/", [1]], "x", *more):
        ops = [["h", 1, 60, {"hits": 1}], ["q", 1, 60, good], ["q", 1, 60, bad]]
        with pytest.raises(redis.ResponseError, match="operation 3: bad section visitors"):
            script(keys=names, args=[json.dumps({"m": 0, "mt": 1, "ops": ops})])
        assert client.keys("*") == []
    for more in ([1], [9, 60], [1, -1], "x"):  # a site's visitors' bad (key, ttl) pairs
        ops = [["p", 1, 60, ["00000000000000aa"], more]]
        with pytest.raises(redis.ResponseError, match="operation 1: bad visitors"):
            script(keys=names, args=[json.dumps({"m": 0, "mt": 1, "ops": ops})])
    script(keys=names, args=[json.dumps({"m": 0, "mt": 1, "ops": [["q", 1, 60, good]]})])
    assert client.pfcount(names[0]) == 1 and client.smembers(names[1]) == {b"/blog/"}


def test_a_section_hour_and_day_of_the_same_visitors_go_in_one_operation(
    redis_server: RedisServer,
) -> None:
    """build_call sends a list of hashes once for a section's hour and day when both get
    the same list, and Redis then holds what one operation per bucket made: the same
    HyperLogLogs byte for byte and the same sets of kept sections (max_members of them,
    in the delta's order); a list that differs gets an operation of its own."""
    from logcount.config import Config
    from logcount.count.delta import Delta
    from logcount.sinks.batch import build_call
    from logcount.sinks.live import _SCRIPT

    config = Config(max_members=2)
    same = [f"{i:016x}" for i in range(2500)]  # past one PFADD's 1,000
    delta = Delta()
    for section in ("/a/", "/b/", "/c/"):  # /c/ past max_members: kept in no bucket
        delta.sections[("t", "1", section, "hour", "2026120509")] = set(same)
        delta.sections[("t", "1", section, "day", "20261205")] = set(same)
    delta.sections[("t", "1", "/d/", "hour", "2026120509")] = {same[0]}
    delta.sections[("t", "1", "/d/", "day", "20261205")] = {same[0], same[1]}
    keys, payload = build_call(delta, config, None, None, list_sites=False)
    ops = json.loads(payload)["ops"]
    assert [(op[0], len(op[3])) for op in ops] == [("q", 7)] * 3 + [("q", 4)] * 2
    client = redis_server.client()
    script = client.register_script(_SCRIPT)

    def held() -> dict[bytes, Any]:
        kept = {k: client.smembers(k) for k in client.keys("*:sk:*")}
        return {**{k: client.get(k) for k in client.keys("*:sv:*")}, **kept}

    script(keys=keys, args=[payload])
    shared = held()
    client.flushall()
    for _, first, first_ttl, (most, first_kept, name, hashes, *more) in ops:
        buckets = [
            (first, first_kept, first_ttl),
            *zip(more[::3], more[1::3], more[2::3], strict=True),
        ]
        for key, kept, ttl in buckets:  # a bucket an operation
            one = ["q", key, ttl, [most, kept, name, hashes]]
            script(keys=keys, args=[json.dumps({"m": 0, "mt": 1, "ops": [one]})])
    assert held() == shared and len(shared) == 2 + 4  # kept sets; /a/ and /b/ hour and day
    assert client.smembers(keys[ops[0][3][1] - 1]) == {b"/a/", b"/b/"}


def test_a_site_hour_and_day_of_the_same_visitors_go_in_one_operation(
    redis_server: RedisServer,
) -> None:
    """The site's visitors too: a list of hashes sent once for the buckets that get the
    same list, and Redis holds what one operation per bucket made, byte for byte."""
    from logcount.config import Config
    from logcount.count.delta import Delta
    from logcount.sinks.batch import build_call
    from logcount.sinks.keys import visitors as visitors_key
    from logcount.sinks.live import _SCRIPT

    minute = {f"{i:016x}" for i in range(2500)}  # its copies: the same list, or not
    delta = Delta(visitors={("t", "minute", "202612050901"): minute})
    for gran, label in (("hour", "2026120509"), ("day", "20261205")):
        delta.visitors[("t", gran, label)] = set(minute)
    delta.visitors[("u", "day", "20261205")] = set(minute)  # another site's: its own
    keys, payload = build_call(delta, Config(), None, None, list_sites=False)
    ops = json.loads(payload)["ops"]
    hour, day, other = (keys.index(visitors_key(*b)) + 1 for b in list(delta.visitors)[1:])

    def targets(op: list[Any]) -> list[int]:  # the keys an operation adds its hashes to
        return [op[1], *(op[4][::2] if len(op) == 5 else [])]

    (shared,) = (op for op in ops if hour in targets(op))
    assert day in targets(shared) and shared[3] == list(delta.visitors[("t", "day", "20261205")])
    assert [targets(op) for op in ops if other in targets(op)] == [[other]]
    client = redis_server.client()
    script = client.register_script(_SCRIPT)

    def held() -> dict[bytes, Any]:
        return {k: (client.get(k), client.ttl(k)) for k in client.keys("*")}

    script(keys=keys, args=[payload])
    together = held()
    client.flushall()
    for (site, gran, label), hashes in delta.visitors.items():  # a bucket an operation
        at = keys.index(visitors_key(site, gran, label)) + 1
        one = ["p", at, Config().ttl[gran], list(hashes)]
        script(keys=keys, args=[json.dumps({"m": 0, "mt": 1, "ops": [one]})])
    assert held() == together and len(together) == 4


def test_live_sections_keep_no_visitors_at_depth_0(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """[live] section_depth = 0: live sections show `-`, Redis holds no section key;
    hits and bytes as ever."""
    s = Site(tmp_path, redis_server, "[live]\nsection_depth = 0\n")
    feed(s.config, text(s.today, REQUESTS))
    report = s.json("top", "--window", "today", "--depth", "1")
    assert report["rows"] == expected_sections(REQUESTS, 1, visitors=False)
    assert list(redis_server.client().scan_iter(match="lc:{test}:s[vk]:*")) == []
