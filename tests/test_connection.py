"""logcount.connection imports redis-py with its asyncio client deferred: the synchronous
client, pipelines and scripts work as usual, and redis.asyncio loads whole on first use.

Each check runs in a new interpreter (as `logcount top` does): the test process itself has
imported redis already, where the deferral rightly does nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT, RedisServer


def python(code: str, *, path: list[Path] | None = None) -> str:
    env_path = ":".join(str(p) for p in [*(path or []), ROOT])
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_sync_client_pipeline_and_script_without_the_asyncio_client(
    redis_server: RedisServer,
) -> None:
    out = python(
        f"""
        import sys
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
            pass
        print(sorted(m for m in sys.modules if m.startswith("redis.asyncio.")))
        """
    )
    loaded = eval(out)
    assert loaded and all(m.startswith("redis.asyncio.observability") for m in loaded)


@pytest.mark.parametrize(
    "use",
    [
        "import redis.asyncio; cls = redis.asyncio.Redis",
        "from redis.asyncio import Redis as cls",
        "import redis; cls = redis.asyncio.Redis",
        "from redis.asyncio.client import Redis as cls",
    ],
)
def test_asyncio_client_loads_on_first_use(redis_server: RedisServer, use: str) -> None:
    out = python(
        f"""
        import asyncio, sys
        import logcount.connection
        assert "redis.asyncio.client" not in sys.modules
        {use}

        async def main():
            client = cls.from_url({redis_server.url!r})
            await client.set("k", "v")
            value = await client.get("k")
            await client.aclose()
            return value

        assert asyncio.run(main()) == b"v"
        import redis.asyncio
        assert redis.asyncio.Redis is cls and redis.asyncio.RedisCluster
        assert sys.modules["redis.asyncio"] is redis.asyncio
        try:
            redis.asyncio.no_such_name
        except AttributeError as exc:
            print(exc)
        """
    )
    assert "has no attribute 'no_such_name'" in out


def test_nothing_deferred_when_redis_is_already_imported() -> None:
    out = python(
        """
        import sys
        import redis
        import logcount.connection
        assert logcount.connection.redis is redis
        print("redis.asyncio.client" in sys.modules, type(redis.asyncio).__name__)
        """
    )
    assert out.split() == ["True", "module"]


def test_an_unexpected_layout_imports_the_ordinary_way(tmp_path: Path) -> None:
    # A stand-in "redis" that uses its asyncio package while it is itself being imported,
    # the way a future redis-py might: it gets it executed right then, as usual.
    pkg = tmp_path / "redis"
    (pkg / "asyncio").mkdir(parents=True)
    (pkg / "asyncio" / "__init__.py").write_text("import redis\nRedis = 'async ' + redis.NAME\n")
    (pkg / "__init__.py").write_text(
        "NAME = 'fake'\nfrom redis import asyncio\nASYNC = asyncio.Redis\n"
        "class Redis: pass\nclass RedisCluster: pass\n"
    )
    out = python(
        """
        import logcount.connection as c
        print(c.redis.NAME, c.redis.ASYNC)
        """,
        path=[tmp_path],
    )
    assert out.split() == ["fake", "async", "fake"]


def test_driver_info_gives_redis_py_its_own_version() -> None:
    out = python(
        """
        from logcount.connection import _driver_info, redis
        info = _driver_info()["driver_info"]
        print(info.lib_version == redis.__version__, info.name)
        """
    )
    assert out.split() == ["True", "redis-py"]
