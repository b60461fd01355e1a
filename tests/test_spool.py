"""The spool and the Redis sink's bounds, against a real Redis and a real `logcount pipe`:
bad spool lines are quarantined, batches Redis refuses are never taken as applied,
adoption names keep their length, files are private and symlinks never followed."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from logcount.config import Config
from logcount.count.delta import Delta
from logcount.errors import RedisUnavailable
from logcount.sinks import keys
from logcount.sinks.batch import Batch
from logcount.sinks.live import SPILL_BATCH_BYTES, LiveSink, RedisWriter
from logcount.sinks.spool import HOST, Spool
from tests.conftest import RedisServer, free_port, run_logcount

MINUTE = "202611200000"
TOTALS = keys.totals("test", "minute", MINUTE)
DEAD = 9_999_999  # above any pid_max: a dead process


def delta(hits: int, paths: int = 1, size: int = 5, bytes_: int = 10) -> Delta:
    """`hits` hits on `paths` distinct paths of `size` characters, in one minute."""
    names = [f"/{i}/".ljust(size, "x") for i in range(paths)]
    return Delta(
        totals={("test", "minute", MINUTE): Counter(hits=hits, bytes=bytes_)},
        members={("test", "path", "minute", MINUTE): Counter(dict.fromkeys(names, 1))},
        lines=hits,
    )


def hits(server: RedisServer) -> int:
    return int(server.client().hget(TOTALS, "hits") or 0)


class Lines(list[str]):
    """A log: what the sink said, one message per item."""

    def __call__(self, message: str) -> None:
        self.append(message)


BAD_LINES = {
    "garbage": b"\xff\xfe not json \x80\x81\n",
    "nuls": b"\x00" * 64 + b"\n",
    "empty object": b"{}\n",
    "truncated": Batch(delta(1)).to_line()[:60].encode() + b"\n",
    "wrong shape": json.dumps({"id": "x", "x": {}, "d": json.dumps({"t": [[["a"], 1]]})}).encode()
    + b"\n",
}


@pytest.mark.parametrize("bad", list(BAD_LINES), ids=list(BAD_LINES))
def test_a_bad_spool_line_is_quarantined_and_the_rest_replayed(
    lc_env: dict[str, str], redis_server: RedisServer, tmp_path: Path, bad: str
) -> None:
    directory = tmp_path / "data" / "spool"
    directory.mkdir(parents=True)
    left = directory / f"spool-{HOST}-{DEAD}.jsonl"
    before, after = Batch(delta(2)).to_line().encode(), Batch(delta(3)).to_line().encode()
    left.write_bytes(before + BAD_LINES[bad] + after)
    result = run_logcount(["pipe"], lc_env, input=b"", timeout=30)
    assert result.returncode == 0
    assert hits(redis_server) == 5
    assert not list(directory.glob("*.jsonl"))
    quarantined = list(directory.glob("*.bad"))
    assert len(quarantined) == 1
    assert quarantined[0].read_bytes() == before + BAD_LINES[bad] + after
    said = [line for line in result.stderr.decode().splitlines() if "unreadable" in line]
    assert len(said) == 1, result.stderr.decode()
    assert "1 unreadable line(s) (line 2: " in said[0]
    assert f"moved to {quarantined[0].name}, the other lines replayed" in said[0]


def test_a_batch_redis_rejects_is_quarantined_not_taken_as_applied(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """A `%b` of 1e20 in a batch: Redis (apply.lua) refuses the batch before any write;
    it goes to a `.bad` file, is counted, and the next batches are applied. Redis out of
    memory is not a bad batch: kept, retried, applied once."""
    config = Config(site="test", redis=redis_server.url, data_dir=str(tmp_path))
    log = Lines()
    sink = LiveSink(config, spool_dir=tmp_path / "spool", log=log)
    client = redis_server.client()
    sink.submit(delta(7, bytes_=10**20))
    assert sink.flush(force=True)
    assert client.exists(TOTALS) == 0, "nothing of the batch was written"
    assert client.keys("*:batch:*") == [], "no marker: the batch was not applied"
    rejected = list((tmp_path / "spool").glob("*.bad"))
    assert len(rejected) == 1
    kept = json.loads(rejected[0].read_text())
    assert kept["d"]["n"] == [7, 0]
    assert sink.status()["rejected_batches"] == 1
    assert sink.status()["rejected_lines"] == 7
    assert [m for m in log if "rejected" in m] == [
        "Redis rejected a batch as invalid (LCBAD invalid batch: operation 1: counter "
        f"bytes is not an integer in [0, 2^53]); kept in {rejected[0]}, not retried"
    ]
    assert not [m for m in log if "resumed" in m]
    client.config_set("maxmemory", 1)
    sink.submit(delta(4))
    assert not sink.flush(force=True)
    assert "OOM" in sink.last_error
    client.config_set("maxmemory", 0)
    client.replicaof("127.0.0.1", str(free_port()))  # a replica: READONLY
    assert not sink.flush(force=True)
    assert "READONLY" in sink.last_error
    client.replicaof("NO", "ONE")
    client.config_set("lua-time-limit", 10)
    busy = threading.Thread(target=lambda: _script_until_killed(redis_server))
    busy.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # until the script holds Redis
        try:
            client.ping()
        except redis.ResponseError:
            break
    assert not sink.flush(force=True)
    assert sink.last_error.startswith("Redis error: BUSY"), sink.last_error
    client.script_kill()
    busy.join()
    assert sink.flush(force=True)
    assert hits(redis_server) == 4
    assert sink.status()["rejected_batches"] == 1


def _script_until_killed(server: RedisServer) -> None:
    with contextlib.suppress(redis.ResponseError):
        server.client().eval("while true do end", 0)


def test_a_large_spool_is_replayed_in_calls_redis_accepts(
    lc_env: dict[str, str], redis_server: RedisServer, tmp_path: Path
) -> None:
    """Redis away while 20,000 lines with distinct 1 KB paths come (some 30 MB to send
    for their minute, hour and day buckets): with Redis taking requests of 6 MB at most,
    every line still counts."""
    redis_server.stop()
    lines = b"".join(
        b'10.0.0.1 - - [20/Nov/2026:00:00:00 +0000] "GET /%d/%s HTTP/1.1" 200 5 "-" "a"\n'
        % (i, b"p" * 1000)
        for i in range(20_000)
    )
    assert run_logcount(["pipe"], lc_env, input=lines).returncode == 0
    redis_server.start()
    redis_server.client().config_set("proto-max-bulk-len", 6 << 20)
    result = run_logcount(["pipe"], lc_env, input=b"", timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert hits(redis_server) == 20_000
    assert not list((tmp_path / "data" / "spool").glob("*.jsonl"))


def test_a_full_spool_drops_members_keeps_totals_and_says_so(
    lc_env: dict[str, str], tmp_path: Path, redis_server: RedisServer
) -> None:
    config = Config(site="test", redis=redis_server.url, data_dir=str(tmp_path))
    log = Lines()
    sink = LiveSink(
        config,
        spool_dir=tmp_path / "spool",
        log=log,
        batch_max_bytes=20_000,
        pending_max_bytes=50_000,
        spool_max_bytes=200_000,
    )
    redis_server.stop()
    for _ in range(10):  # 10 x 1,000 lines on 100 paths of 1,000 bytes: ~100 KB each
        sink.submit(delta(1000, paths=100, size=1000))
        sink.flush(force=True)
    assert sink.close() is False
    spooled = sum(p.stat().st_size for p in (tmp_path / "spool").iterdir())
    assert spooled <= 200_000 * 9 // 8
    status = sink.status()
    assert status["dropped_batches"] > 0 and status["dropped_bytes"] > 0
    assert status["dropped_lines"] == 0
    assert len([m for m in log if "counts dropped" in m]) == 1
    redis_server.start()
    assert sink.flush(force=True)
    assert hits(redis_server) == 10_000, "the totals of dropped batches are kept"
    paths = redis_server.client().zcard(keys.members("test", "path", "minute", MINUTE))
    assert 0 < paths < 1000
    # What `logcount status` shows of it (the reader's heartbeat carries these fields).
    info = {"host": HOST, "pid": 1, "mode": "pipe", "lines": 10_000, "malformed": 0}
    info |= {"rate": 0, "lag": 0, "last_flush": 0, **status}  # as it was with Redis away
    RedisWriter(config).heartbeat(info)
    table = run_logcount(["status"], lc_env).stdout.decode()
    assert f" {round(status['spool_bytes'] / 1000)}k  ok\n" in table  # the spool's size
    assert (
        f"    dropped {status['dropped_batches']:,} batches ({status['dropped_bytes']:,} "
        "bytes): spool full or unwritable\n"
    ) in table


def test_thirty_adoptions_keep_the_name_short_and_replay_once(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    directory = tmp_path / "spool"
    first = Spool(directory, pid=DEAD)
    first.append(Batch(delta(6)).to_line())
    name_lengths = set()
    for n in range(30):  # each adopts the previous one's file, then dies
        spool = Spool(directory, pid=DEAD - 1 - n)
        adopted = spool.pending_files()
        assert len(adopted) == 1
        name_lengths.add(len(adopted[0].name))
    assert len(name_lengths) == 1
    config = Config(site="test", redis=redis_server.url, data_dir=str(tmp_path))
    sink = LiveSink(config, spool_dir=directory)
    assert sink.flush(force=True)
    assert hits(redis_server) == 6
    assert not list(directory.iterdir())


def test_spool_files_are_private_and_symlinks_are_never_followed(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o755)
    outside = tmp_path / "outside"
    outside.write_text("precious\n")
    mine = directory / f"spool-{HOST}-{os.getpid()}.jsonl"
    mine.symlink_to(outside)
    planted = tmp_path / "planted.jsonl"
    planted.write_text(Batch(delta(50)).to_line())
    (directory / f"spool-{HOST}-{DEAD}.jsonl").symlink_to(planted)
    config = Config(site="test", redis=redis_server.url, data_dir=str(tmp_path))
    log = Lines()
    sink = LiveSink(config, spool_dir=directory, log=log)
    redis_server.stop()
    sink.submit(delta(1))
    assert sink.close() is False
    assert outside.read_text() == "precious\n"
    assert sink.status()["dropped_lines"] == 1
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    mine.unlink()
    sink.submit(delta(2))
    assert sink.close() is False
    assert stat.S_IMODE(mine.stat().st_mode) == 0o600
    redis_server.start()
    assert sink.flush(force=True)
    assert hits(redis_server) == 2, "the planted file is not replayed"
    assert (directory / f"spool-{HOST}-{DEAD}.jsonl").is_symlink()


def test_a_large_delta_goes_as_several_calls_with_the_position_in_the_last(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    config = Config(site="test", redis=redis_server.url, data_dir=str(tmp_path))
    sink = LiveSink(config, spool_dir=tmp_path / "spool", batch_max_bytes=20_000)
    position = keys.position("test", HOST, "/var/log/access.log")
    sink.submit(delta(500, paths=500, size=200), {position: "offset 500"})
    assert sink.flush(force=True)
    client = redis_server.client()
    assert len(client.keys("*:batch:*")) >= 5, "one marker per call"
    assert hits(redis_server) == 500
    assert client.zcard(keys.members("test", "path", "minute", MINUTE)) == 500
    assert client.get(position) == b"offset 500"


def test_a_many_site_delta_splits_within_its_limit_and_adds_up() -> None:
    """50 sites' small buckets (3 paths, their bytes) and one bucket of 400 paths, split
    at 5,000: each part within it, a small bucket cut only where a part fills up, the big
    one over five parts, and the parts add up to the delta; a spool line of each part
    reads back the same."""
    whole = Delta(lines=450)
    for i in range(50):
        site = f"site{i:02d}.example"
        mkey = (site, "path", "minute", MINUTE)
        whole.totals[(site, "minute", MINUTE)] = Counter(hits=3, bytes=30)
        whole.members[mkey] = Counter({"/a": 1, "/b": 1, "/c": 1})
        whole.member_bytes[mkey] = Counter({"/a": 10, "/b": 10, "/c": 10})
    big = ("big.example", "path", "minute", MINUTE)
    whole.members[big] = Counter({f"/page/{i:04d}": 2 for i in range(400)})
    parts = list(whole.parts(5_000))
    assert all(part.weight() <= 5_000 for part in parts)
    holding = Counter(mkey for part in parts for mkey in part.members)
    cut = ("site13.example", "path", "minute", MINUTE)  # where the first part filled up
    assert {mkey: n for mkey, n in holding.items() if n > 1} == {cut: 2, big: 5}
    assert len(parts) == 9  # the totals first, then the members
    assert [part.lines for part in parts] == [450] + [0] * (len(parts) - 1)
    merged = Delta()
    for part in parts:
        assert Delta.from_json(part.to_json()) == part
        merged.merge(part)
    assert merged.totals == whole.totals
    assert merged.members == whole.members
    assert merged.member_bytes == whole.member_bytes


def test_a_spool_line_holds_its_delta_as_objects_and_old_lines_still_replay(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """A line keeps its delta as JSON objects (not a string of JSON, a copy more each
    way); a line of the versions before, its delta a string, is replayed as well, and a
    copy of either that Redis took in flight is recognised by its id and skipped."""
    new, old, taken = Batch(delta(2)), Batch(delta(3)), Batch(delta(100))
    assert json.loads(new.to_line())["d"]["n"] == [2, 0]
    old_line = json.dumps({"id": old.batch_id, "x": {}, "d": old.delta.to_json()}) + "\n"
    taken_line = json.dumps({"id": taken.batch_id, "x": {}, "d": taken.delta.to_json()})
    assert Batch.id_of_line(new.to_line().encode()) == new.batch_id
    assert Batch.id_of_line(old_line.encode()) == old.batch_id
    directory = tmp_path / "spool"
    spool = Spool(directory, pid=DEAD)
    for line in (old_line, new.to_line(), taken_line + "\n"):
        spool.append(line)
    config = Config(site="test", redis=redis_server.url, data_dir=str(tmp_path))
    sink = LiveSink(config, spool_dir=directory)
    sink.done_ids.add(taken.batch_id)
    assert sink.flush(force=True)
    assert hits(redis_server) == 5
    assert not list(directory.iterdir())


def test_reading_a_spool_keeps_no_line_the_reader_let_go(tmp_path: Path) -> None:
    """The reader holds the only reference to the line it was handed: a replay lets a
    line's JSON go once its batch is made, before the batch's payload is."""
    spool = Spool(tmp_path / "spool", pid=DEAD)
    for n in (2, 3):
        spool.append(Batch(delta(n)).to_line())
    lines = spool.read(spool.path)
    line = next(lines)
    assert line is not None
    assert sys.getrefcount(line) == 2  # `line`, and getrefcount's argument
    assert next(lines) != line
    lines.close()


def test_a_split_keeps_the_sets_that_fit_as_they_are_and_cuts_the_others() -> None:
    """A spill's parts are made one after the other (Delta.parts): a visitor set that fits
    in a part goes there as it is, not copied; one too large for a part is cut over
    several, in order, and the parts add up to the delta."""
    whole = Delta(lines=7)
    small_key, big_key = ("test", "minute", MINUTE), ("test", "day", MINUTE[:8])
    small = {f"{i:016x}" for i in range(10)}
    big = {f"{i:016x}" for i in range(1000, 3000)}
    whole.visitors[small_key], whole.visitors[big_key] = small, big
    whole.sections[("test", "1", "/a", "hour", MINUTE[:10])] = set(small)
    parts = whole.parts(20_000)
    first = next(parts)
    assert first.visitors[small_key] is small
    rest = list(parts)
    # 2,000 hashes of 48 bytes' weight: 400 beside the small set, 413 a part after
    assert len(rest) == 4
    assert all(part.weight() <= 20_000 for part in [first, *rest])
    assert [part.lines for part in [first, *rest]] == [7, 0, 0, 0, 0]
    cut = [part.visitors[big_key] for part in [first, *rest] if big_key in part.visitors]
    assert sorted(h for piece in cut for h in piece) == sorted(big)
    assert max(cut[0]) < min(cut[1])  # cut in order
    merged = Delta()
    for part in [first, *rest]:
        assert Delta.from_json(part.to_json()) == part
        merged.merge(part)
    assert merged.visitors == whole.visitors and merged.sections == whole.sections


def test_the_parts_of_a_send_go_one_call_each_and_are_let_go_once_applied(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """A delta sent as several parts: each part is applied by a call of its own, in
    order, and leaves the batches in flight once applied (its delta and payload are not
    held until the last part is in); a failure leaves only the parts not yet applied."""
    config = Config(site="test", redis=redis_server.url, data_dir=str(tmp_path))
    sink: LiveSink
    seen: list[int] = []

    class CountingWriter(RedisWriter):
        fail_at = -1

        def apply_all(self, batches: list[Batch]) -> list[tuple[Batch, str]]:
            assert len(batches) == 1
            seen.append(len(sink.inflight))
            if len(seen) == self.fail_at:
                raise RedisUnavailable("cannot reach Redis: gone for the test")
            return super().apply_all(batches)

    writer = CountingWriter(config)
    sink = LiveSink(config, writer, tmp_path / "spool", batch_max_bytes=20_000)
    sink.submit(delta(500, paths=500, size=200))  # a pipe's: no position rides along
    parts = len(list(Batch.each_part(sink.pending, {}, sink.pending_bytes, 20_000)))
    assert parts >= 5
    writer.fail_at = 3
    assert not sink.flush(force=True)
    assert seen == [parts, parts - 1, parts - 2]
    assert len(sink.inflight) == parts - 2
    seen.clear()
    writer.fail_at = -1
    assert sink.flush(force=True)
    assert seen == list(range(parts - 2, 0, -1))
    assert hits(redis_server) == 500
    assert not sink.inflight and sink.inflight_bytes == 0


def test_the_parts_of_a_tails_send_go_in_one_call_all_or_none(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """A tail's position rides in the last part: its parts go in one MULTI/EXEC, so that
    no part is in Redis without the position after it (a kill -9 between calls would make
    the next tail count that part's lines again)."""
    config = Config(site="test", redis=redis_server.url, data_dir=str(tmp_path))
    calls: list[int] = []

    class CountingWriter(RedisWriter):
        fail = True

        def apply_all(self, batches: list[Batch]) -> list[tuple[Batch, str]]:
            calls.append(len(batches))
            if self.fail:
                raise RedisUnavailable("cannot reach Redis: gone for the test")
            return super().apply_all(batches)

    writer = CountingWriter(config)
    sink = LiveSink(config, writer, tmp_path / "spool", batch_max_bytes=20_000)
    position = keys.position("test", HOST, "/var/log/access.log")
    sink.submit(delta(500, paths=500, size=200), {position: "offset 500"})
    parts = len(list(Batch.each_part(sink.pending, {}, sink.pending_bytes, 20_000)))
    assert parts >= 5
    assert not sink.flush(force=True)
    assert len(sink.inflight) == parts and hits(redis_server) == 0
    writer.fail = False
    assert sink.flush(force=True)
    assert calls == [parts, parts]
    assert hits(redis_server) == 500
    assert redis_server.client().get(position) == b"offset 500"
    assert not sink.inflight and sink.inflight_bytes == 0


def test_a_spill_writes_batches_smaller_than_those_sent(tmp_path: Path) -> None:
    """Pending spilled (Redis away) goes to the spool in batches of SPILL_BATCH_BYTES at
    most, whose JSON is made, written and read back one at a time; the totals and the
    position are all there."""
    config = Config(site="test", redis="redis://127.0.0.1:1", data_dir=str(tmp_path))
    sink = LiveSink(config, spool_dir=tmp_path / "spool", pending_max_bytes=1)
    position = keys.position("test", HOST, "/var/log/access.log")
    sink.submit(delta(4000, paths=4000, size=1000), {position: "offset 4000"})
    assert not sink.pending and sink.spool.batches > 3
    lines = [line for line in sink.spool.read(sink.spool.path) if line is not None]
    assert len(lines) == sink.spool.batches
    batches = [Batch.from_line(line) for line in lines]
    assert all(b.delta.weight() <= SPILL_BATCH_BYTES for b in batches)
    assert sum(b.delta.lines for b in batches) == 4000
    assert [b.extra for b in batches][-1] == {position: "offset 4000"}


def spill(config: Config, directory: Path, *deltas: tuple[Delta, dict[str, str]]) -> list[bytes]:
    """The spool lines a sink writes with Redis away, one spill per delta (and its
    positions), as a dead process's file would hold them."""
    sink = LiveSink(config, spool_dir=directory, pending_max_bytes=1)
    for counted, extra in deltas:
        sink.submit(counted, extra)
    assert not sink.pending
    lines = [line for line in sink.spool.read(sink.spool.path) if line is not None]
    sink.spool.path.unlink()  # this process's own: a test writes what the dead one left
    return lines


@pytest.mark.parametrize("tail", [True, False], ids=["tail", "pipe"])
def test_a_spill_cut_short_by_a_kill_is_left_out_for_a_tail_and_replayed_for_a_pipe(
    redis_server: RedisServer, tmp_path: Path, tail: bool
) -> None:
    """A kill -9 between two appends of a spill: an adopting process leaves the unfinished
    spill of a tail out (its positions were still to come, and the tail reads its lines
    again from the positions before: replayed, they counted twice), and replays one of a
    pipe (nothing reads its lines again)."""
    config = Config(site="test", redis=redis_server.url, data_dir=str(tmp_path))
    directory = tmp_path / "spool"
    position = keys.position("test", HOST, "/var/log/access.log")
    extras = ({position: "offset 100"}, {position: "offset 4100"}) if tail else ({}, {})
    redis_server.stop()
    lines = spill(config, directory, (delta(100), extras[0]), (delta(4000, 4000, 1000), extras[1]))
    redis_server.start()
    assert len(lines) > 4  # the first spill is one line, the second several
    assert [Batch.more_follows(line) for line in lines] == [False] + [tail] * (len(lines) - 2) + [
        False
    ]
    assert [Batch.from_line(lines[i]).extra for i in (0, -1)] == list(extras)
    kept = lines[:4]  # the kill came after the second spill's third append
    (directory / f"spool-{HOST}-{DEAD}.jsonl").write_bytes(b"".join(kept))
    log = Lines()
    replaying = LiveSink(config, spool_dir=directory, log=log)
    assert replaying.flush(force=True)
    saved = redis_server.client().get(position)
    if tail:
        assert hits(redis_server) == 100 and saved == b"offset 100"
        assert log == [
            f"spool file {f'spool-{HOST}-{os.getpid()}-adopted-'}{log[0].split('-adopted-')[1]}"
        ]
        assert log[0].endswith(
            " ends in a spill its process did not finish (3 batch(es)): not replayed; a tail "
            "reads their lines again from its saved positions"
        )
    else:
        # Every batch of the unfinished spill counts: its totals and the paths it holds
        path_key = ("test", "path", "minute", MINUTE)
        paths = sum(len(Batch.from_line(line).delta.members[path_key]) for line in kept[1:])
        assert 0 < paths < 4000
        assert hits(redis_server) == 4100 and saved is None and log == []
        stored = redis_server.client().zcard(keys.members("test", "path", "minute", MINUTE))
        assert stored == 1 + paths
    assert not list(directory.iterdir())
