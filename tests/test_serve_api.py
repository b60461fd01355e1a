"""`logcount serve`'s JSON API through Starlette's ASGI test client, against the known data
of the CLI tests (real pipeline into a private redis-server, two days rolled up into a
real SQLite store): the answers equal the commands' JSON and the known counts."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from logcount import Counts
from logcount.serve.app import create_app
from logcount.serve.endpoints import ENDPOINTS
from tests import test_cli_top as known
from tests.conftest import ROOT
from tests.test_cli_top import Loaded

loaded = known.loaded
rolled = known.rolled
TOKEN = "s3cret-token-0123456789"


def day_hits(data: Loaded) -> dict[date, int]:
    """Counted hits per day of the known data (bots apart)."""
    return dict(zip((*data.rolled_days, data.live_only, data.today), (3, 4, 6, 5), strict=True))


def counts_of(data: Loaded) -> Counts:
    return Counts.from_config(
        str(data.config_path),
        redis=data.server.url,
        store=data.store_url,
        data_dir=str(data.data_dir),
    )


def client_of(data: Loaded, **options: Any) -> TestClient:
    return TestClient(create_app(counts_of(data), **options))


@pytest.fixture
def api(rolled: Loaded) -> Iterator[TestClient]:
    with client_of(rolled) as client:
        yield client


def get(client: TestClient, url: str, status: int = 200, **kwargs: Any) -> Any:
    response = client.get(url, **kwargs)
    assert response.status_code == status, response.text
    return response.json()


# --- the same JSON as the commands ------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["-w", "{span}"],
        ["-w", "{span}", "--by", "object", "-n", "1"],
        ["-w", "yesterday", "--by", "status"],
        ["-w", "{span}", "--by", "path", "--status", "4xx"],
        ["-w", "{stored}", "--by", "referrer", "--sort", "bytes"],
    ],
)
def test_top_is_the_json_of_the_top_command(
    rolled: Loaded, api: TestClient, args: list[str]
) -> None:
    names = {"-w": "window", "--by": "by", "-n": "limit", "--status": "status", "--sort": "sort"}
    stored = "..".join(map(str, rolled.rolled_days))
    args = [arg.format(span=rolled.span, stored=stored) for arg in args]
    query = {names[flag]: value for flag, value in zip(args[::2], args[1::2], strict=True)}
    cli = json.loads(rolled.run("top", *args, "-f", "json").output)
    assert get(api, "/api/top", params=query) == cli


def test_top_of_the_known_span(rolled: Loaded, api: TestClient) -> None:
    report = get(api, "/api/top", params={"window": rolled.span, "limit": 2})
    assert report["window"]["source"] == "both"
    assert report["total"]["hits"] == 13
    assert report["total"]["bots"] == 2
    assert [[r["key"], r["hits"]] for r in report["rows"]] == [["/press/42/", 5], ["/about", 4]]


def test_top_details_add_trends_and_the_rate(api: TestClient) -> None:
    report = get(api, "/api/top", params={"window": "yesterday", "details": "true"})
    about = report["rows"][0]
    assert about["key"] == "/about"
    assert about["trend"][9:12] == [1, 2, 0] and sum(about["trend"]) == 3
    assert report["rate"] == 0


def test_hits_is_the_json_of_the_hits_command(rolled: Loaded, api: TestClient) -> None:
    for args, query in (
        (["/press/42/", "--days", "5"], {"path": "/press/42/", "days": 5}),
        (["--object", "press_release:7", "--days", "4"], {"object": "press_release:7", "days": 4}),
    ):
        cli = json.loads(rolled.run("hits", *args, "-f", "json").output)
        assert get(api, "/api/hits", params=query) == cli
    hits = get(api, "/api/hits", params={"path": "/press/42/", "days": 5})
    assert hits["today"] == 4 and hits["total"] == 9


def test_series_of_a_day_by_hours(rolled: Loaded, api: TestClient) -> None:
    series = get(api, "/api/series", params={"window": str(rolled.live_only)})
    assert series["granularity"] == "hour"
    points = series["points"]
    assert len(points) == 24
    assert points[0][0] == f"{rolled.live_only}T00:00:00+00:00"
    assert {p[0][11:13]: p[1:] for p in points if p[1]} == {
        "09": [3, 3],
        "10": [2, 2],
        "11": [1, 1],
    }
    assert sum(p[1] for p in points) == day_hits(rolled)[rolled.live_only]


def test_series_of_a_path_by_days_store_then_live(rolled: Loaded, api: TestClient) -> None:
    series = get(
        api,
        "/api/series",
        params={"window": rolled.span, "path": "/press/42/", "granularity": "day"},
    )
    assert series["source"] == "both"
    assert series["points"] == [
        [f"{rolled.rolled_days[0]}T00:00:00+00:00", 2, None],
        [f"{rolled.rolled_days[1]}T00:00:00+00:00", 1, None],
        [f"{rolled.live_only}T00:00:00+00:00", 2, None],
    ]
    site = get(api, "/api/series", params={"window": rolled.span, "granularity": "day"})
    assert [p[1] for p in site["points"]] == [3, 4, 6]
    assert [p[2] for p in site["points"]] == [2, 2, 4]  # visitors: the store's, then live


def test_series_of_minutes_has_every_bucket(rolled: Loaded, api: TestClient) -> None:
    points = get(api, "/api/series", params={"window": "15m", "granularity": "minute"})["points"]
    assert 15 <= len(points) <= 16
    # Nothing was counted in the last 15 minutes, but today's first minute (its lines at
    # 00:00:30) when the test runs just after midnight
    first = f"{rolled.today}T00:00:00+00:00"
    assert all(p[1] == 0 and p[2] == 0 for p in points if p[0] != first)


def _stats_url(day: date, *parts: int) -> str:
    return "/api/stats/test/" + "/".join(str(p) for p in (day.year, day.month, day.day, *parts))


def test_stats_of_a_day_and_an_hour(rolled: Loaded, api: TestClient) -> None:
    day = get(api, _stats_url(rolled.live_only))
    assert day["total"] == 6
    assert day["data"] == {str(h): {9: 3, 10: 2, 11: 1}.get(h, 0) for h in range(24)}
    assert (day["year"], day["month"], day["day"], day["hour"]) == (
        rolled.live_only.year,
        rolled.live_only.month,
        rolled.live_only.day,
        None,
    )
    hour = get(api, _stats_url(rolled.live_only, 9))
    assert hour["total"] == 3
    assert hour["data"] == {str(m): 3 if m == 0 else 0 for m in range(60)}
    rolled_day = get(api, _stats_url(rolled.rolled_days[1]))
    assert rolled_day["total"] == 4  # from the store


def test_stats_of_a_month_and_a_year(rolled: Loaded, api: TestClient) -> None:
    month = get(api, f"/api/stats/test/{rolled.today.year}/{rolled.today.month}")
    expected = {
        d.day: n
        for d, n in day_hits(rolled).items()
        if (d.year, d.month) == (rolled.today.year, rolled.today.month)
    }
    assert {int(k): v for k, v in month["data"].items() if v} == expected
    assert month["total"] == sum(expected.values())
    year = get(api, f"/api/stats/test/{rolled.today.year}")
    assert list(year["data"]) == [str(m) for m in range(1, 13)]
    assert year["total"] == sum(
        n for d, n in day_hits(rolled).items() if d.year == rolled.today.year
    )


def test_unknown_site_path_or_object_gives_zeros(api: TestClient) -> None:
    top = get(api, "/api/top", params={"site": "nowhere.example"})
    assert top["total"]["hits"] == 0 and top["rows"] == []
    assert get(api, "/api/hits", params={"path": "/never/seen/", "days": 2})["total"] == 0
    assert get(api, "/api/hits", params={"object": "nothing:1"})["today"] == 0
    series = get(api, "/api/series", params={"site": "nowhere", "window": "yesterday"})
    assert {p[1] for p in series["points"]} == {0}
    assert get(api, "/api/stats/nowhere/2026/2")["total"] == 0


def test_sites_and_status(rolled: Loaded, api: TestClient) -> None:
    sites = get(api, "/api/sites")
    assert sites == {**json.loads(rolled.run("sites", "-f", "json").output), "default": "test"}
    assert [(r["site"], r["today"], r["live"]) for r in sites["sites"]] == [("test", 5, True)]
    readers = get(api, "/api/status")["readers"]
    assert [(r["mode"], r["malformed"]) for r in readers] == [("pipe", 1)]
    assert readers == json.loads(rolled.run("status", "-f", "json").output)


def test_recent_newest_first(api: TestClient) -> None:
    recent = get(api, "/api/recent", params={"limit": 2})
    assert recent["site"] == "test"
    assert [r["path"] for r in recent["recent"]] == ["/about", "/press/42/"]


# --- bad parameters ---------------------------------------------------------------------

BAD = [
    ("/api/top?window=fortnight", "window"),
    ("/api/top?window=99999h", "window"),
    ("/api/top?by=colour", "by"),
    ("/api/top?by=client", "by"),
    ("/api/top?limit=0", "limit"),
    ("/api/top?limit=ten", "limit"),
    ("/api/top?limit=100001", "limit"),
    ("/api/top?limit=%C2%B2", "limit"),  # a superscript two: a digit to isdigit()
    ("/api/stats/test/%D9%A2%D9%A0%D9%A2%D9%A6", "year"),  # Arabic-Indic digits
    ("/api/top?status=200", "status"),
    ("/api/top?by=status&status=404", "status"),
    ("/api/top?by=referrer&sort=time", "sort"),
    ("/api/top?details=yes", "details"),
    ("/api/hits", "path"),
    ("/api/hits?object=nocolon", "object"),
    ("/api/hits?path=/a&object=a:1", "object"),
    ("/api/hits?path=/a&days=0", "days"),
    ("/api/series?granularity=second", "granularity"),
    ("/api/series?window=30d&granularity=minute", "granularity"),
    ("/api/stats/test/2026/13", "month"),
    ("/api/stats/test/2026/2/30", "day"),
    ("/api/stats/test/2026/2/3/24", "hour"),
    ("/api/stats/test/99", "year"),
    ("/api/stats/test/twenty", "year"),
    ("/api/top?site=" + "x" * 300, "site"),
]


@pytest.mark.parametrize(("url", "parameter"), BAD)
def test_a_bad_parameter_is_400_naming_it(api: TestClient, url: str, parameter: str) -> None:
    body = get(api, url, 400)
    assert body["parameter"] == parameter
    assert isinstance(body["error"], str) and "\n" not in body["error"]


# --- Redis away, health -----------------------------------------------------------------


def test_healthz_names_what_failed(rolled: Loaded) -> None:
    with client_of(rolled) as client:
        assert get(client, "/healthz") == {"ok": True, "redis": "ok", "store": "ok"}
        rolled.server.stop()
        try:
            body = get(client, "/healthz", 503)
            assert body["ok"] is False and body["store"] == "ok"
            assert body["redis"].startswith("cannot read from Redis")
            top = get(client, "/api/top", 503)
            assert top["error"].startswith("cannot read from Redis")
            assert client.get("/metrics").status_code == 503
        finally:
            rolled.server.start()  # empty: it saves nothing
        assert get(client, "/api/top")["total"]["hits"] == 0


# --- token and CORS ---------------------------------------------------------------------


def test_token_is_required_of_every_request_but_the_page(rolled: Loaded) -> None:
    with client_of(rolled, token=TOKEN) as client:
        for url in ("/api/top", "/api/sites", "/healthz", "/metrics", "/openapi.json"):
            refused = client.get(url)
            assert refused.status_code == 401, url
            assert refused.headers["www-authenticate"] == "Bearer"
            assert client.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert client.get(url, headers={"Authorization": TOKEN}).status_code == 401
            good = client.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
            assert good.status_code == 200, url
        assert client.get(f"/api/top?token={TOKEN}").status_code == 401  # never in a URL
        for url in ("/", "/dashboard.js", "/dashboard.css"):
            assert client.get(url).status_code == 200


def test_cors_only_for_the_given_origin(rolled: Loaded) -> None:
    origin = "https://admin.example.org"
    with client_of(rolled) as client:
        plain = client.get("/api/sites", headers={"Origin": origin})
        assert "access-control-allow-origin" not in plain.headers
    with client_of(rolled, token=TOKEN, cors_origin=origin) as client:
        preflight = client.options(
            "/api/sites",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == origin
        auth = {"Origin": origin, "Authorization": f"Bearer {TOKEN}"}
        answer = client.get("/api/sites", headers=auth)
        assert answer.headers["access-control-allow-origin"] == origin
        other = client.get("/api/sites", headers={**auth, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


# --- the documents ----------------------------------------------------------------------


def test_openapi_documents_every_endpoint(api: TestClient) -> None:
    doc = get(api, "/openapi.json")
    assert doc["openapi"].startswith("3.")
    extra = {"/healthz", "/metrics", "/api/events"}
    assert set(doc["paths"]) == {e.path for e in ENDPOINTS} | extra
    top = doc["paths"]["/api/top"]["get"]
    assert [p["name"] for p in top["parameters"]] == [
        "window",
        "by",
        "site",
        "limit",
        "status",
        "sort",
        "details",
    ]
    assert set(top["responses"]) == {"200", "400", "401", "503"}


def test_the_readme_shows_every_endpoint_with_an_example() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## logcount serve", 1)[1].split("\n## ", 1)[0]
    for endpoint in ENDPOINTS:
        shown = endpoint.path.split("{", 1)[0].rstrip("/")
        assert f"GET {shown}" in section, endpoint.path
    for extra in ("GET /healthz", "GET /metrics", "GET /openapi.json", "GET /api/events"):
        assert extra in section


def test_the_page_is_served_with_a_strict_policy(api: TestClient) -> None:
    page = api.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '"mode":"live"' in page.text


def test_hostile_path_reaches_the_json_as_text(loaded: Loaded, tmp_path: Path) -> None:
    hostile = "/<script>alert(1)</script>"
    known.feed(loaded.config, known.line(known.at(loaded.today, 1), hostile))
    with client_of(loaded) as client:
        rows = get(client, "/api/top", params={"limit": 50})["rows"]
    assert any(
        r["key"] == "/%3Cscript%3Ealert(1)%3C/script%3E" or r["key"] == hostile for r in rows
    )


def _wait_for_hits(client: TestClient, hits: int, why: str) -> None:
    deadline = time.monotonic() + 10
    while get(client, "/api/top")["total"]["hits"] != hits:
        assert time.monotonic() < deadline, why
        time.sleep(0.05)


def test_answers_are_reused_for_a_second_at_most(loaded: Loaded) -> None:
    with client_of(loaded) as client:
        assert get(client, "/api/top")["total"]["hits"] == 5
        # The buckets change behind the readers' back: the answer of a moment ago stands
        loaded.server.client().delete(f"lc:{{test}}:t:day:{loaded.today.strftime('%Y%m%d')}")
        assert get(client, "/api/top")["total"]["hits"] == 5
        _wait_for_hits(client, 0, "an answer outlived its second")


def test_answers_are_reused_only_while_nothing_was_counted(loaded: Loaded) -> None:
    with client_of(loaded, reuse_seconds=3600) as client:
        assert get(client, "/api/top")["total"]["hits"] == 5
        loaded.server.client().delete(f"lc:{{test}}:t:day:{loaded.today.strftime('%Y%m%d')}")
        for _ in range(3):
            assert get(client, "/api/top")["total"]["hits"] == 5
        # A batch counted moves the site's totals: the answer is computed anew (the
        # version is read again within 0.1 s, long before the hour is up)
        known.feed(loaded.config, known.line(known.at(loaded.today, 3), "/new"))
        _wait_for_hits(client, 1, "a batch counted did not renew the answer")


def test_unknown_pages_and_methods_are_json_errors(api: TestClient) -> None:
    assert get(api, "/api/nothing", 404) == {"error": "no such page: /api/nothing"}
    assert get(api, "/api/stats/a/b/c/d/e/f", 404)["error"].startswith("no such page")
    refused = api.post("/api/top")
    assert refused.status_code == 405
    assert refused.json() == {"error": "read-only: GET only"}


def test_top_format_html_is_one_static_page(loaded: Loaded) -> None:
    known.feed(loaded.config, known.line(known.at(loaded.today, 1), "/<script>alert(1)</script>"))
    assert loaded.run("top", "--format", "html", "--sort", "time").exit_code == 0
    result = loaded.run("top", "--format", "html")
    assert result.exit_code == 0, result.output
    page = result.output
    assert page.startswith("<!doctype html>")
    assert "<script>alert(1)" not in page  # the data block escapes every <
    assert "src=" not in page and "href=" not in page  # nothing to fetch
    block = page.split('<script type="application/json" id="lc-setup">', 1)[1]
    setup = json.loads(block.split("</script>", 1)[0])
    assert setup["mode"] == "static"
    reports = setup["data"]["reports"]
    assert [r["by"] for r in reports[:3]] == ["path", "object", "status"]
    assert reports[0]["total"]["hits"] == 6
    assert "/<script>alert(1)</script>" in [r["key"] for r in reports[0]["rows"]]
    assert [r.get("status_filter") for r in reports[-2:]] == ["404", "5xx"]


def test_healthz_names_an_unreachable_store(loaded: Loaded) -> None:
    from tests.conftest import free_port

    counts = Counts.from_config(
        str(loaded.config_path),
        redis=loaded.server.url,
        store=f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none",
        data_dir=str(loaded.data_dir),
    )
    with TestClient(create_app(counts)) as client:
        body = get(client, "/healthz", 503)
    assert body["ok"] is False and body["redis"] == "ok"
    assert body["store"].startswith("store postgresql+psycopg://nobody@127.0.0.1:")
    assert body["store"].endswith("Connection refused") and "\n" not in body["store"]


def test_a_running_server_finds_the_store_of_the_first_rollup(
    loaded: Loaded, tmp_path: Path
) -> None:
    with client_of(loaded, reuse_seconds=0) as client:
        before = get(client, "/api/top", params={"window": loaded.span})
        assert before["window"]["source"] == "live"
        assert get(client, "/healthz")["store"] == "none"
        loaded.roll_up(tmp_path)
        after = get(client, "/api/top", params={"window": loaded.span})
        assert after["window"]["source"] == "both"
        assert after["total"]["hits"] == before["total"]["hits"] == 13
        assert get(client, "/healthz")["store"] == "ok"
