"""logcount.connection: redis-py for the writers and the `Counts` API. The synchronous
client, pipelines, transactions and scripts work as usual, redis-py is told its own version,
and cluster mode is detected from the same URL (tests/test_cluster.py has the cluster).

Each check runs in a new interpreter, as a writer starts."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import ROOT, RedisServer


def python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_sync_client_pipeline_transaction_and_script(redis_server: RedisServer) -> None:
    out = python(
        f"""
        from logcount.connection import connect, is_cluster, redis

        client = connect({redis_server.url!r})
        assert not is_cluster(client) and isinstance(client, redis.Redis)
        pipe = client.pipeline(transaction=False)
        pipe.zadd("z", {{"a": 1, "b": 2}})
        pipe.zrevrange("z", 0, 0, withscores=True)
        assert pipe.execute()[-1] == [(b"b", 2.0)]
        with client.pipeline() as tx:  # MULTI/EXEC
            tx.incr("n").incr("n")
            assert tx.execute() == [1, 2]
        script = client.register_script("return redis.call('ZCARD', KEYS[1]) + ARGV[1]")
        assert script(keys=["z"], args=[40]) == 42
        try:
            client.execute_command("NO-SUCH-COMMAND")
        except redis.ResponseError:
            print("ResponseError")
        """
    )
    assert out.split() == ["ResponseError"]


def test_driver_info_gives_redis_py_its_own_version() -> None:
    out = python(
        """
        from logcount.connection import _driver_info, redis
        info = _driver_info()["driver_info"]
        print(info.lib_version == redis.__version__, info.name)
        """
    )
    assert out.split() == ["True", "redis-py"]
