"""`GET /metrics`, read back with prometheus_client's own parser: the monotonic totals kept
beside the buckets equal the known counts, survive the buckets, count a replayed batch
once, and keep their labels to a bounded set of sites."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from logcount import Counts
from logcount.config import load_config
from logcount.count.delta import Delta
from logcount.serve.app import create_app
from logcount.sinks import keys
from logcount.sinks.batch import Batch
from logcount.sinks.live import RedisWriter
from tests import test_cli_top as known
from tests.conftest import RedisServer
from tests.test_cli_top import Loaded

loaded = known.loaded


def scrape(counts: Counts) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one scrape: (name, sorted labels) -> value."""
    with TestClient(create_app(counts)) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def requests_of(samples: dict[Any, float], site: str) -> dict[str, float]:
    return {
        dict(labels)["class"]: value
        for (name, labels), value in samples.items()
        if name == "logcount_requests_total" and dict(labels)["site"] == site
    }


def counts_of(data: Loaded, **overrides: Any) -> Counts:
    config = load_config(
        str(data.config_path),
        redis=data.server.url,
        store=data.store_url,
        data_dir=str(data.data_dir),
    )
    return Counts.from_settings(config.with_overrides(**overrides))


KNOWN = {"1xx": 0, "2xx": 15, "3xx": 0, "4xx": 2, "5xx": 1, "bots": 2, "malformed": 1}


def test_totals_equal_the_known_counts(loaded: Loaded) -> None:
    samples = scrape(counts_of(loaded))
    assert requests_of(samples, "test") == KNOWN
    assert samples[("logcount_bytes_total", (("site", "test"),))] == 13700
    # no %D in the format: no histogram samples
    assert not [k for k in samples if k[0].startswith("logcount_request_duration")]
    beat = counts_of(loaded).readers()[0]
    labels = (("host", beat["host"]), ("mode", "pipe"), ("pid", str(beat["pid"])))
    assert samples[("logcount_reader_up", labels)] == 0  # the pipe reached EOF
    assert samples[("logcount_reader_lines", labels)] == beat["lines"]
    assert samples[("logcount_reader_malformed", labels)] == 1


def test_totals_outlive_the_buckets_and_grow(loaded: Loaded) -> None:
    client = loaded.server.client()
    life = keys.lifetime("test")
    assert client.ttl(life) == -1  # never expires
    # Every bucket gone, as their TTLs would make them
    for name in client.scan_iter(match="lc:{test}:*"):
        if name.decode() != life:
            client.delete(name)
    counts = counts_of(loaded)
    assert requests_of(scrape(counts), "test") == KNOWN
    assert counts.report("today")["total"]["hits"] == 0
    known.feed(loaded.config, known.line(known.at(loaded.today, 2), "/again", status=404))
    assert requests_of(scrape(counts), "test") == {**KNOWN, "4xx": 3}


def test_a_replayed_batch_counts_once(loaded: Loaded) -> None:
    delta = Delta()
    minute = datetime.now(UTC).strftime("%Y%m%d%H%M")
    from collections import Counter

    delta.totals[("test", "minute", minute)] = Counter({"hits": 2, "s2xx": 2, "bytes": 10})
    delta.totals[("test", "hour", minute[:10])] = Counter({"hits": 2, "s2xx": 2, "bytes": 10})
    batch = Batch(delta)
    writer = RedisWriter(loaded.config)
    writer.apply(batch)
    writer.apply(Batch.from_line(batch.to_line()))  # replayed from a spool: same id
    samples = scrape(counts_of(loaded))
    assert requests_of(samples, "test")["2xx"] == KNOWN["2xx"] + 2
    assert samples[("logcount_bytes_total", (("site", "test"),))] == 13700 + 10


def test_durations_make_an_exact_histogram(tmp_path: Path, redis_server: RedisServer) -> None:
    config_path = tmp_path / "logcount.toml"
    config_path.write_text(
        'site = "timed"\ntimezone = "UTC"\nlog_format = \'%h %l %u %t "%r" %>s %b %D\'\n'
    )
    config = load_config(str(config_path), redis=redis_server.url, data_dir=str(tmp_path / "d"))
    stamp = datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    text = "".join(
        f'10.0.0.1 - - [{stamp}] "GET /t HTTP/1.1" 200 10 {us}\n' for us in (500, 3000, 70_000)
    )
    known.feed(config, text)
    samples = scrape(Counts.from_settings(config))
    site = ("site", "timed")

    def bucket(le: str) -> float:
        return samples[("logcount_request_duration_seconds_bucket", (("le", le), site))]

    assert bucket("0.001024") == 1
    assert bucket("0.002048") == 1
    assert bucket("0.004096") == 2
    assert bucket("0.065536") == 2
    assert bucket("0.131072") == 3
    assert bucket("+Inf") == 3
    assert samples[("logcount_request_duration_seconds_count", (site,))] == 3
    assert abs(samples[("logcount_request_duration_seconds_sum", (site,))] - 0.0735) < 1e-9


def test_sites_past_the_cap_are_summed_as_other(tmp_path: Path, redis_server: RedisServer) -> None:
    config_path = tmp_path / "logcount.toml"
    config_path.write_text('timezone = "UTC"\nlog_format = "vhost_combined"\n')
    config = load_config(str(config_path), redis=redis_server.url, data_dir=str(tmp_path / "d"))
    stamp = datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    lines = [
        f'{site}:80 10.0.0.1 - - [{stamp}] "GET / HTTP/1.1" {status} 5 "-" "{known.FIREFOX}"\n'
        for site, status in (("a.example", 200), ("b.example", 200), ("c.example", 500))
    ]
    known.feed(config, "".join(lines))
    capped = Counts.from_settings(config.with_overrides(metrics_sites=1))
    samples = scrape(capped)
    sites = {dict(labels)["site"] for (name, labels) in samples if name.startswith("logcount_by")}
    assert sites == {"a.example", "(other)"}
    assert requests_of(samples, "(other)")["2xx"] == 1
    assert requests_of(samples, "(other)")["5xx"] == 1
    assert requests_of(samples, "a.example")["2xx"] == 1
    every = scrape(Counts.from_settings(config))
    assert {dict(lb)["site"] for (n, lb) in every if n == "logcount_bytes_total"} == {
        "a.example",
        "b.example",
        "c.example",
    }


def test_real_log_metrics_and_api_equal_the_counts(
    tmp_path: Path, redis_server: RedisServer, real_data: Path
) -> None:
    """The 10,000 real lines piped in: /metrics' totals equal the four days' totals as
    `top` sums them, and /api/top, /api/series and /api/stats agree with them."""
    from click.testing import CliRunner

    from logcount.cli import cli

    config_path = tmp_path / "logcount.toml"
    config_path.write_text('site = "real"\ntimezone = "UTC"\n')
    config = load_config(str(config_path), redis=redis_server.url, data_dir=str(tmp_path / "d"))
    text = (real_data / "elastic_apache_logs.log").read_bytes().decode("utf-8", "surrogateescape")
    known.feed(config, text)
    window = "2015-05-17..2015-05-20"
    flags = ["--config", str(config_path), "--redis", redis_server.url]
    flags += ["--data-dir", str(tmp_path / "d"), "--store", f"sqlite:///{tmp_path / 'no.db'}"]
    cli_top = CliRunner().invoke(cli, [*flags, "top", "-w", window, "-f", "json", "-n", "5"])
    assert cli_top.exit_code == 0, cli_top.output
    import json

    top = json.loads(cli_top.output)
    total = top["total"]
    counts = Counts.from_settings(config)
    samples = scrape(counts)
    assert requests_of(samples, "real") == {
        "1xx": total["s1xx"],
        "2xx": total["s2xx"],
        "3xx": total["s3xx"],
        "4xx": total["s4xx"],
        "5xx": total["s5xx"],
        "bots": total["bots"],
        # line 8899 (no closing quote): malformed, counted in the minute it arrived
        "malformed": 1,
    }
    assert total["malformed"] == 0
    assert sum(requests_of(samples, "real").values()) == 10_000
    assert samples[("logcount_bytes_total", (("site", "real"),))] == total["bytes"]
    with TestClient(create_app(counts)) as client:
        assert client.get("/api/top", params={"window": window, "limit": 5}).json() == top
        series = client.get("/api/series", params={"window": window}).json()
        assert [p[1] for p in series["points"]] == [
            client.get(f"/api/stats/real/2015/5/{day}").json()["total"] for day in (17, 18, 19, 20)
        ]
        assert sum(p[1] for p in series["points"]) == total["hits"]
        month = client.get("/api/stats/real/2015/5").json()
        assert month["total"] == total["hits"]
        assert [month["data"][str(d)] for d in (17, 18, 19, 20)] == [p[1] for p in series["points"]]
