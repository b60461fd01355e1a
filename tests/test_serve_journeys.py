"""`/api/visitors`, `/api/funnel` and `/api/retention` through Starlette's ASGI test client,
over the scripted journeys of test_events (counted by the real pipeline into a private
redis-server, some days rolled up into a real SQLite store): each answer is the command's
JSON, and both equal the numbers of the test's own reference code."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from logcount import Counts
from logcount.serve.app import create_app
from tests import test_cli_top as known
from tests import test_events as journey_tests
from tests.test_events import (
    EVENTS,
    Step,
    Stored,
    at,
    did,
    funnel_reference,
    journeys,
    retention_reference,
    sessions,
)
from tests.test_serve_api import get

stored = journey_tests.stored
loaded = known.loaded
TODAY = datetime.now(UTC).date()
DAY2 = TODAY - timedelta(days=1)  # yesterday: the whole day has passed
DAY1 = DAY2 - timedelta(days=1)
NAMES = ", ".join(EVENTS)


@pytest.fixture(autouse=True)
def days_of_this_test() -> None:
    """TODAY, DAY1 and DAY2 from the day each test writes its lines, not the day the module
    was imported: a run that crosses midnight UTC would ask for the wrong days."""
    global TODAY, DAY1, DAY2
    TODAY = datetime.now(UTC).date()
    DAY2 = TODAY - timedelta(days=1)
    DAY1 = DAY2 - timedelta(days=1)


@pytest.fixture
def api(stored: Stored) -> Iterator[TestClient]:
    with TestClient(create_app(Counts(config=stored.config))) as client:
        yield client


def window_of(day: Any, days: int = 1) -> dict[str, str]:
    end = at(day + timedelta(days=days))
    return {"start": at(day).isoformat(), "end": end.isoformat(), "source": "live"}


def test_visitors_per_hour_is_the_command_s_json(stored: Stored, api: TestClient) -> None:
    steps = journeys(1, 200, at(DAY2), 24)
    stored.feed(steps)
    expr = "login & song_played"
    answer = get(api, "/api/visitors", params={"expr": expr, "window": str(DAY2), "per": "hour"})
    assert answer == stored.json("visitors", expr, "--window", str(DAY2), "--per", "hour")
    both = lambda d: d["login"] & d["song_played"]  # noqa: E731
    per = [
        {
            "start": at(DAY2, h).isoformat(),
            "visitors": len(both(did(steps, lambda s, h=h: s.when.hour == h))),
        }
        for h in range(24)
    ]
    expected = {"expr": expr, "window": window_of(DAY2), "total": len(both(did(steps)))}
    assert answer == {**expected, "per": per}
    assert answer["total"] > 0


def test_visitors_of_store_and_live_days(stored: Stored, api: TestClient) -> None:
    old = journeys(4, 150, at(DAY1, 8), 12)
    new = journeys(5, 150, at(TODAY), 1)
    stored.roll_up("day1.log", old)
    stored.feed(new)
    expr = "(login | signup) & paid - read_press"
    span = f"{DAY1}..{TODAY}"
    answer = get(api, "/api/visitors", params={"expr": expr, "window": span})
    assert answer == stored.json("visitors", expr, "--window", span)
    reference = lambda d: (d["login"] | d["signup"]) & (d["paid"] - d["read_press"])  # noqa: E731
    assert answer["window"]["source"] == "both"
    # The expression over each event's visitors of the whole window (the same visitor,
    # address and agent, in either numbering), not the union of each day's answers
    assert answer["total"] == len(reference(did(old + new)))
    assert answer["total"] != len(reference(did(old)) | reference(did(new)))
    assert answer["per"] == []


@pytest.mark.parametrize("within", ["1h", None])
def test_a_funnel_is_the_command_s_json(
    stored: Stored, api: TestClient, within: str | None
) -> None:
    steps = sessions(7, 400, at(DAY2), 24)
    stored.feed(steps)
    events = ["login", "song_played", "paid"]
    query = {"events": ",".join(events), "window": str(DAY2)}
    flags = ["--window", str(DAY2)]
    if within:
        query["within"], flags = within, [*flags, "--within", within]
    answer = get(api, "/api/funnel", params=query)
    assert answer == stored.json("funnel", *events, *flags)
    # Without a span a day's window is one day bucket: anywhere in it counts as after
    bucket = (lambda s: s.when.hour) if within else (lambda s: 0)
    expected = funnel_reference(steps, events, bucket, 1 if within else 0)
    assert answer == {
        "window": window_of(DAY2),
        "steps": [{"event": e, "visitors": n} for e, n in zip(events, expected, strict=True)],
    }
    assert expected[0] > expected[1] > expected[2] > 0


def test_retention_is_the_command_s_json(stored: Stored, api: TestClient) -> None:
    steps = journeys(9, 300, at(DAY1), 72)  # DAY1, DAY2 rolled up; today live
    stored.roll_up("past.log", [s for s in steps if s.when.date() < TODAY])
    stored.feed([s for s in steps if s.when.date() == TODAY])
    query = {"event": "read_press", "cohort": "day", "periods": 3}
    answer = get(api, "/api/retention", params=query)
    flags = ["--event", "read_press", "--cohort", "day", "--periods", "3"]
    assert answer == stored.json("retention", *flags)
    assert answer == {"cohorts": retention_reference(steps, "read_press", [DAY1, DAY2, TODAY])}
    weeks = get(api, "/api/retention")  # any event, 8 weeks
    assert weeks == stored.json("retention")
    assert len(weeks["cohorts"]) == 8


BAD = [
    ("/api/visitors", "expr", "expr is required"),
    ("/api/visitors?expr=login%20%26%20nope", "expr", f"unknown event 'nope' (events: {NAMES})"),
    ("/api/visitors?expr=login%20%26", "expr", "expression 'login &' ends where an event was"),
    ("/api/visitors?expr=(login", "expr", "expression '(login': a '(' is not closed"),
    ("/api/visitors?expr=login&per=minute", "per", "per 'minute' is not one of hour, day, week"),
    ("/api/visitors?expr=login&window=fortnight", "window", "unknown window 'fortnight'"),
    ("/api/funnel", "events", "events is required"),
    ("/api/funnel?events=login,nope", "events", f"unknown event 'nope' (events: {NAMES})"),
    ("/api/funnel?events=login,,paid", "events", "events 'login,,paid': an empty name (give"),
    ("/api/funnel?events=" + ",login" * 21, "events", "at most 20 steps"),
    ("/api/funnel?events=login&within=soon", "within", "within: 'soon' is not a duration"),
    ("/api/funnel?events=login&within=99999d", "within", "--within '99999d' is longer than"),
    ("/api/retention?event=nope", "event", f"unknown event 'nope' (events: {NAMES})"),
    ("/api/retention?cohort=year", "cohort", "cohort 'year' is not one of day, week, month"),
    ("/api/retention?periods=0", "periods", "periods must be from 1 to 60"),
    ("/api/retention?periods=61", "periods", "periods must be from 1 to 60"),
]


@pytest.mark.parametrize(("url", "parameter", "message"), BAD)
def test_a_bad_parameter_is_400_naming_it(
    api: TestClient, url: str, parameter: str, message: str
) -> None:
    body = get(api, url, 400)
    assert body["parameter"] == parameter
    assert body["error"].startswith(message), body["error"]
    assert "\n" not in body["error"]


def test_without_events_configured_the_questions_say_so(loaded: known.Loaded) -> None:
    counts = Counts(config=loaded.config)
    with TestClient(create_app(counts)) as client:
        assert get(client, "/api/retention", 400) == {
            "error": "no events are configured: see [[event]] in the README",
            "parameter": "event",
        }
        assert get(client, "/api/funnel?events=login", 400) == {
            "error": "unknown event 'login' (events: none configured: see [[event]])",
            "parameter": "events",
        }


def test_the_openapi_document_has_the_questions(api: TestClient) -> None:
    paths = get(api, "/openapi.json")["paths"]
    expected = {
        "/api/visitors": ["expr", "window", "per", "site"],
        "/api/funnel": ["events", "window", "within", "site"],
        "/api/retention": ["event", "cohort", "periods", "site"],
    }
    for path, names in expected.items():
        doc = paths[path]["get"]
        assert [p["name"] for p in doc["parameters"]] == names
        assert set(doc["responses"]) == {"200", "400", "401", "503"}
        assert doc["responses"]["200"]["content"]["application/json"]["example"]
    required = {p["name"]: p["required"] for p in paths["/api/funnel"]["get"]["parameters"]}
    assert required == {"events": True, "window": False, "within": False, "site": False}


def test_an_answer_follows_new_lines(stored: Stored) -> None:
    """Reused answers (a second, while nothing is counted) end when a batch is counted."""
    with TestClient(create_app(Counts(config=stored.config), reuse_seconds=3600)) as client:
        query = {"expr": "login", "window": str(DAY2)}
        assert get(client, "/api/visitors", params=query)["total"] == 0
        stored.feed([Step(1, at(DAY2, 9), "/login", "POST")])
        # The site's totals are read again within 0.1 s: the answer is computed anew
        deadline = time.monotonic() + 10
        while get(client, "/api/visitors", params=query)["total"] != 1:
            assert time.monotonic() < deadline, "a batch counted did not renew the answer"
            time.sleep(0.05)


def test_no_generated_question_is_a_server_error(stored: Stored) -> None:
    """schemathesis over the three operations, with events configured and counted (the
    process tests fuzz every operation over data without events)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error

    stored.feed(journeys(11, 50, at(DAY2), 24))
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", create_app(Counts(config=stored.config))
    )
    questions = {"/api/visitors", "/api/funnel", "/api/retention"}
    operations = [r.ok() for r in schema.get_all_operations() if r.ok().path in questions]
    assert len(operations) == 3
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case: Any) -> None:
            case.call_and_validate(checks=[not_a_server_error])

        check()
