"""Connecting to Redis with redis-py: the configured server, a cluster node, or the
embedded default.

The writers (`pipe`, `tail`) and the `Counts` API (long-running web applications: a
thread-safe pool that reconnects on its own) connect here. The command line's read-only
reports use the small client of logcount/resp.py instead, which does not import redis-py,
and come here for a cluster only. Kept apart from the writing side so that `Counts`
connects without importing the parser and classifier.
"""

from __future__ import annotations

from typing import Any

import redis

from logcount.config import redis_url_problem
from logcount.embedded import redis_url  # noqa: F401  (the writers import it from here)
from logcount.errors import RedisUnavailable
from logcount.resp import reason  # live.py imports it from here too


def connect(url: str, timeout: float = 5.0) -> redis.Redis | redis.RedisCluster:
    """A client for a single Redis or a cluster node (cluster mode is detected)."""
    extra = _driver_info()
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=2, **extra
        )
        info = client.info("cluster")
    except redis.AuthenticationError:
        raise RedisUnavailable("Redis refused the credentials") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise RedisUnavailable(f"cannot reach Redis: {reason(exc)}") from None
    except redis.ResponseError as exc:  # BUSY (a long script), LOADING: try again later
        raise RedisUnavailable(f"Redis error: {reason(exc)}") from None
    except ValueError:
        # redis-py's own words may quote a part of the URL (a password cut short).
        problem = redis_url_problem(url) or "redis-py cannot read it"
        raise RedisUnavailable(f"bad Redis URL: {problem}") from None
    if info.get("cluster_enabled"):
        client.close()
        return cluster_client(url, timeout)
    return client


def cluster_client(url: str, timeout: float = 5.0) -> redis.RedisCluster:
    """redis-py's cluster client from the URL of any node (it discovers the others)."""
    try:
        return redis.RedisCluster.from_url(url, socket_timeout=timeout, **_driver_info())
    except redis.AuthenticationError:
        raise RedisUnavailable("Redis refused the credentials") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise RedisUnavailable(f"cannot reach Redis: {reason(exc)}") from None
    except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
        raise RedisUnavailable(f"Redis error: {reason(exc)}") from None


def _driver_info() -> dict[str, Any]:
    """The version CLIENT SETINFO reports, given rather than looked up: by default redis-py
    asks importlib.metadata, which searches every sys.path entry (~4 ms of a first connect).
    Older redis-py (no DriverInfo) keeps its default."""
    info = getattr(redis, "DriverInfo", None)
    version = getattr(redis, "__version__", None)
    if info is None or not isinstance(version, str):
        return {}
    return {"driver_info": info(lib_version=version)}


def is_cluster(client: Any) -> bool:
    return isinstance(client, redis.RedisCluster)
