"""Connecting to Redis: the configured server, a cluster node, or the embedded default.

Kept apart from the writing side so that a report (`logcount top`, `Counts`) connects
without importing the parser and classifier.
"""

from __future__ import annotations

from typing import Any

import redis

from logcount.config import Config
from logcount.embedded import ensure_embedded
from logcount.errors import RedisUnavailable


def redis_url(config: Config) -> str:
    """The configured Redis, or the embedded one (started on demand)."""
    if config.redis:
        return config.redis
    return ensure_embedded(config.resolved_data_dir())


def connect(url: str, timeout: float = 5.0) -> redis.Redis | redis.RedisCluster:
    """A client for a single Redis or a cluster node (cluster mode is detected)."""
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=2)
        info = client.info("cluster")
    except redis.AuthenticationError:
        raise RedisUnavailable("Redis refused the credentials") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise RedisUnavailable(f"cannot reach Redis: {reason(exc)}") from None
    except redis.ResponseError as exc:  # BUSY (a long script), LOADING: try again later
        raise RedisUnavailable(f"Redis error: {reason(exc)}") from None
    except ValueError as exc:
        raise RedisUnavailable(f"bad Redis URL: {exc}") from None
    if info.get("cluster_enabled"):
        client.close()
        return redis.RedisCluster.from_url(url, socket_timeout=timeout)
    return client


def is_cluster(client: Any) -> bool:
    return isinstance(client, redis.RedisCluster)


def reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    # redis-py may quote the URL; never echo a password.
    return text.split("@")[-1] if "@" in text else text
