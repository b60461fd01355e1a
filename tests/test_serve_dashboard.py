"""The dashboard in a real headless browser: Debian's chromium, driven through its own
chromedriver by Selenium (nothing is downloaded). The page shows the numbers the API
gives, updates itself when new lines are piped in, shows a hostile path as text, asks
for a token, and says when the server is gone; the static report renders the same way
from a file with no server at all."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests import test_cli_top as known
from tests import test_events as journey_tests
from tests import waiting
from tests.conftest import ROOT, RedisServer, logcount_env, need, run_logcount
from tests.test_cli_top import Loaded
from tests.test_events import Step
from tests.test_serve_process import TOKEN, Served, serving

loaded = known.loaded
CHROMIUM = os.environ.get("LOGCOUNT_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("LOGCOUNT_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
HOSTILE = "/<script>alert(1)</script>"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    need(
        Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(),
        f"no headless browser: Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER})",
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium'}")
    options.add_argument("--window-size=1280,2000")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(check: Callable[[], Any], what: str, seconds: float = 20) -> Any:
    """The page's elements come and go while it redraws: any error means "not yet"."""
    return waiting.wait_for(check, what, seconds, interval=0.1, ignoring=(Exception,))


def text_of(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def card(driver: Any, name: str) -> str:
    return text_of(driver, f"#card-{name} .value")


def rows(driver: Any, panel: str) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, f"#panel-{panel} tbody tr")
    return [[td.text for td in tr.find_elements(By.CSS_SELECTOR, "td")][:5] for tr in found]


@pytest.fixture
def served(loaded: Loaded) -> Iterator[Served]:
    with serving(loaded) as server:
        yield server


def test_cards_and_panels_show_the_api_s_numbers(
    browser: Any, served: Served, loaded: Loaded
) -> None:
    browser.get(served.base + "/")
    wait_for(lambda: card(browser, "hits") == "5", "the hits card")
    _, api = served.get("/api/top?window=today&by=path")
    total = api["total"]
    assert card(browser, "visitors") == str(total["visitors"])
    assert card(browser, "malformed") == "1"
    assert card(browser, "bots") == "0"
    assert card(browser, "bytes") == "4.4 KiB"
    assert card(browser, "5xx") == "0.0%"
    assert rows(browser, "path") == [
        ["/press/42/", "4", "80.0%", "–", "3.9 KiB"],
        ["/about", "1", "20.0%", "–", "500 B"],
    ]
    wait_for(lambda: rows(browser, "object"), "the object panel")
    assert rows(browser, "object")[0][:3] == ["press_release:42", "4", "80.0%"]
    chart = browser.find_element("css selector", "#chart svg")
    assert chart.get_attribute("data-total") == "5"
    assert "live" in text_of(browser, "#status")
    assert text_of(browser, "#panel-funnel p") == (
        "no events configured: a funnel and retention need [[event]] rows in the config"
    )
    # The window picked on the page: yesterday's numbers
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "window")).select_by_value("yesterday")
    wait_for(lambda: card(browser, "hits") == "6", "yesterday's hits")
    assert card(browser, "bots") == "2"
    assert card(browser, "5xx") == "16.7%"
    assert rows(browser, "status-5xx")[0][:2] == ["/boom", "1"]
    # A day typed in, as top's windows are written
    days = browser.find_element("id", "window-days")
    days.send_keys(f"{loaded.rolled_days[1]}\n")
    wait_for(lambda: card(browser, "hits") == "4", "the typed day's hits")
    assert card(browser, "4xx") == "50.0%"
    shots = os.environ.get("LOGCOUNT_SCREENSHOTS")  # a directory to look at the page in
    if shots:
        browser.save_screenshot(str(Path(shots) / "dashboard.png"))


def test_the_page_updates_itself_when_lines_are_piped_in(
    browser: Any, served: Served, loaded: Loaded
) -> None:
    browser.get(served.base + "/")
    wait_for(lambda: card(browser, "hits") == "5", "the hits card")
    browser.execute_script("window.__same_page = true")
    lines = "".join(known.line(known.at(loaded.today, 0), "/fresh/") for _ in range(3))
    env = logcount_env()
    piped = run_logcount(loaded.args("pipe"), env, lines.encode())
    assert piped.returncode == 0, piped.stderr
    start = time.monotonic()
    wait_for(lambda: card(browser, "hits") == "8", "the hits card after new lines", 10)
    assert time.monotonic() - start < 3
    assert browser.execute_script("return window.__same_page") is True  # no reload
    assert ["/fresh/", "3", "37.5%", "–", "2.9 KiB"] in rows(browser, "path")


def test_a_hostile_path_shows_as_text(browser: Any, served: Served, loaded: Loaded) -> None:
    known.feed(loaded.config, known.line(known.at(loaded.today, 0), HOSTILE))
    browser.get(served.base + "/")
    wait_for(lambda: any(HOSTILE in r[0] for r in rows(browser, "path")), "the hostile row")
    assert browser.execute_script("return document.querySelectorAll('main script').length") == 0
    alerts = browser.execute_script("return typeof window.__alerted")
    assert alerts == "undefined"
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018


def test_the_token_prompt(browser: Any, loaded: Loaded, tmp_path: Path) -> None:
    token_file = tmp_path / "serve.token"
    token_file.write_text(TOKEN)
    server = Served(loaded, "--token-file", str(token_file))
    try:
        server.wait_ready(TOKEN)
        browser.get(server.base + "/")
        field = wait_for(
            lambda: (
                browser.find_element("id", "token").is_displayed()
                and browser.find_element("id", "token")
            ),
            "the token prompt",
        )
        field.send_keys("not-the-token-at-all")
        browser.find_element("css selector", "#token-form button").click()
        wait_for(lambda: browser.find_element("id", "token-error").is_displayed(), "refused")
        browser.find_element("id", "token").send_keys(TOKEN)
        browser.find_element("css selector", "#token-form button").click()
        wait_for(lambda: card(browser, "hits") == "5", "the hits card with the token")
        assert TOKEN not in browser.current_url
        assert not browser.find_element("id", "token-form").is_displayed()
    finally:
        server.stop()


def test_the_page_says_when_the_server_is_gone(browser: Any, served: Served) -> None:
    browser.get(served.base + "/")
    wait_for(lambda: card(browser, "hits") == "5", "the hits card")
    assert served.stop() == 0
    wait_for(lambda: "server unreachable" in text_of(browser, "#status"), "the status line", 15)


def test_the_page_says_when_redis_is_gone(browser: Any, served: Served, loaded: Loaded) -> None:
    browser.get(served.base + "/")
    wait_for(lambda: card(browser, "hits") == "5", "the hits card")
    loaded.server.stop()
    try:
        wait_for(lambda: "Redis" in text_of(browser, "#status"), "the status line", 15)
    finally:
        loaded.server.start()


def test_the_static_report_opens_from_a_file(browser: Any, loaded: Loaded, tmp_path: Path) -> None:
    known.feed(loaded.config, known.line(known.at(loaded.today, 0), HOSTILE))
    result = run_logcount(loaded.args("top", "--format", "html"), logcount_env())
    assert result.returncode == 0, result.stderr
    page = tmp_path / "report.html"
    page.write_bytes(result.stdout)
    assert b"http://" not in result.stdout.replace(b"http://www.w3.org/2000/svg", b"")
    browser.get(page.as_uri())
    wait_for(lambda: card(browser, "hits") == "6", "the static hits card")
    assert card(browser, "malformed") == "1"
    assert rows(browser, "path")[0][:2] == ["/press/42/", "4"]
    assert any(r[0] == HOSTILE for r in rows(browser, "path"))
    assert rows(browser, "status")[0][:2] == ["200", "6"]
    assert browser.find_element("css selector", "#chart svg").get_attribute("data-total") == "6"
    assert browser.title.startswith("logcount: test")
    # Under its own policy (the inline script and style by hash): nothing was refused
    refused = [e for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert refused == []


def test_ci_installs_the_browser() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert "need+=(chromium)" in script and "need+=(chromium-driver)" in script


def test_a_file_report_opens_as_the_same_page(browser: Any, tmp_path: Path) -> None:
    """`report FILE -o report.html`: the dashboard's page of files, no Redis, no server."""
    from tests.test_file_report import KNOWN

    log = tmp_path / "access.log"
    log.write_text(KNOWN)
    page = tmp_path / "report.html"
    env = logcount_env()
    env.update({"LOGCOUNT_REDIS": "redis://127.0.0.1:1/0", "LOGCOUNT_DATA_DIR": str(tmp_path)})
    result = run_logcount(["report", str(log), "-o", str(page)], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    html = page.read_bytes()
    assert b"http://" not in html.replace(b"http://www.w3.org/2000/svg", b"")
    browser.get(page.as_uri())
    wait_for(lambda: card(browser, "hits") == "6", "the report's hits card")
    assert card(browser, "malformed") == "1"
    assert rows(browser, "path")[0][:2] == ["/a", "3"]
    assert rows(browser, "status-404")[0][:2] == ["/missing", "1"]
    assert browser.find_element("css selector", "#chart svg").get_attribute("data-total") == "6"
    assert browser.title == f"logcount: {log}"
    refused = [e for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
    assert refused == []
    bad = run_logcount(["report", str(log), "-o", str(tmp_path / "none" / "r.html")], env)
    assert bad.returncode == 1
    assert bad.stderr.decode().startswith("Error: cannot write ") and bad.stderr.count(b"\n") == 1


# --- funnel and retention ------------------------------------------------------------------


class Journeys(journey_tests.Live):
    """test_events' config (five events) and lines, served as `Served` serves `Loaded`."""

    def args(self, *more: str) -> list[str]:
        return [*self.base, *more]


def journey_steps(today: date) -> list[Step]:
    """Who did what, by hand: the funnel of yesterday and read_press by day."""
    day0, day1 = today - timedelta(days=2), today - timedelta(days=1)

    def step(who: int, hour: int, minute: int, path: str, day: Any = day1) -> Step:
        when = journey_tests.at(day, hour) + timedelta(minutes=minute, seconds=who)
        return Step(who, when, path, "POST" if path == "/login" else "GET")

    song, press = "/songs/1/play", "/press/42/"
    return [
        *(step(1, 9, 0, "/login"), step(1, 9, 10, song), step(1, 9, 30, "/pay/card/done")),
        *(step(2, 10, 0, "/login"), step(2, 12, 0, song)),  # two hours on: not within 1h
        *(step(3, 11, 0, "/login"), step(3, 11, 5, song)),
        step(4, 11, 0, song),  # no login: in no step
        step(5, 13, 0, "/login"),
        *(step(who, 0, 0, press, day0) for who in (1, 2, 3)),
        *(step(who, 0, 0, press) for who in (1, 6)),
        *(step(who, 0, 0, press, today) for who in (2, 6, 7)),
    ]


def table(driver: Any, panel: str) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, f"#panel-{panel} tbody tr")
    return [[td.text for td in tr.find_elements(By.CSS_SELECTOR, "td")] for tr in found]


def test_the_funnel_and_retention_panels(
    browser: Any, tmp_path: Path, redis_server: RedisServer
) -> None:
    from selenium.webdriver.support.ui import Select

    data = Journeys(tmp_path, redis_server)
    today = datetime.now(UTC).date()  # as the lines are written: a run may cross midnight
    data.feed(journey_steps(today))
    with serving(data) as served:  # type: ignore[arg-type]
        query = "?funnel=login,song_played,paid&event=read_press&periods=3"
        browser.get(served.base + "/" + query)
        wait_for(lambda: table(browser, "funnel"), "the funnel panel")
        Select(browser.find_element("id", "window")).select_by_value("yesterday")
        expected = [
            ["1", "login", "", "4", "100.0%", ""],
            ["2", "song_played", "", "3", "75.0%", "1"],
            ["3", "paid", "", "1", "25.0%", "2"],
        ]
        wait_for(lambda: table(browser, "funnel") == expected, "yesterday's funnel")
        _, api = served.get("/api/funnel?events=login,song_played,paid&window=yesterday")
        assert [s["visitors"] for s in api["steps"]] == [4, 3, 1]
        # The retention's cohorts by day, picked on the page
        Select(browser.find_element("id", "cohort")).select_by_value("day")
        days = [str(today - timedelta(days=n)) for n in (2, 1, 0)]
        cohorts = [
            [days[0], "3", "1 33.3%", "1 33.3%"],
            [days[1], "1", "1 100.0%"],
            [days[2], "1"],
        ]
        wait_for(lambda: table(browser, "retention") == cohorts, "the cohorts by day")
        cells = "document.querySelectorAll('#panel-retention td.back')"
        shades = browser.execute_script(f"return [...{cells}].map(c => c.className)")
        assert shades == ["back shade-2", "back shade-2", "back shade-5"]
        shots = os.environ.get("LOGCOUNT_SCREENSHOTS")
        if shots:
            browser.find_element("id", "journeys").screenshot(str(Path(shots) / "journeys.png"))
        # Each step within an hour of the one before: v2's song two hours on drops out
        browser.get(served.base + "/" + query + "&within=1h")
        Select(browser.find_element("id", "window")).select_by_value("yesterday")
        within = [row[:2] + row[3:] for row in expected]
        within[1:] = [["2", "song_played", "2", "50.0%", "2"], ["3", "paid", "1", "25.0%", "1"]]
        wait_for(lambda: [r[:2] + r[3:] for r in table(browser, "funnel")] == within, "within 1h")
        assert "within 1h" in text_of(browser, "#panel-funnel h2")
        # No query string: every configured event, in config order
        browser.get(served.base + "/")
        steps = wait_for(lambda: [r[1] for r in table(browser, "funnel")], "the default funnel")
        assert steps == list(journey_tests.EVENTS)
        # An unknown event in the address: the panel says so, the rest of the page is drawn
        browser.get(served.base + "/?funnel=login,nope")
        error = wait_for(lambda: text_of(browser, "#panel-funnel p.error"), "the funnel's error")
        assert error == f"unknown event 'nope' (events: {', '.join(journey_tests.EVENTS)})"
        assert card(browser, "hits") == "3"  # today's three reads of /press/42/
        weeks = table(browser, "retention")
        assert len(weeks) == 8
        assert weeks[0][1:] == ["0"] * 8  # an empty cohort: no shares
        if shots:
            browser.save_screenshot(str(Path(shots) / "journeys-page.png"))
