"""Connecting to Redis: the configured server, a cluster node, or the embedded default.

Kept apart from the writing side so that a report (`logcount top`, `Counts`) connects
without importing the parser and classifier.
"""

from __future__ import annotations

import gc
import importlib
import importlib.machinery
import importlib.util
import sys
import threading
from typing import Any


def _defer_redis_asyncio() -> None:
    """Leave redis-py's asyncio client unexecuted until something uses it.

    `import redis` (redis-py 5 to 8) imports its `redis.asyncio` package, and with it the
    asyncio client, cluster, connection and sentinel modules, which a synchronous client
    never touches (about 5% of the instructions `import redis` takes). Before redis is
    first imported, `redis.asyncio` is put in `sys.modules` as the real package module
    (its spec, `__path__`, file), not yet executed, with a module `__getattr__` (PEP 562)
    that executes it on the first attribute it lacks: `redis.asyncio.Redis`,
    `from redis.asyncio import Redis`, `import redis.asyncio` followed by any use, all
    load it whole. Its submodules import normally meanwhile (redis-py's sync commands
    import `redis.asyncio.observability`).

    Executing it late is safe once `import redis` has finished (an eager import ends in
    the same state); should a redis-py version use it while `import redis` runs and that
    fail, `_import_redis` imports again the ordinary way. Nothing here is redis-py's code
    or a copy of it; with redis already imported or another layout it does nothing.
    """
    if "redis" in sys.modules or "redis.asyncio" in sys.modules:
        return
    try:
        spec = importlib.util.find_spec("redis")
        if spec is None or not spec.submodule_search_locations:
            return
        sub = importlib.machinery.PathFinder.find_spec(
            "redis.asyncio", list(spec.submodule_search_locations)
        )
        if sub is None or sub.loader is None or not sub.submodule_search_locations:
            return
        module = importlib.util.module_from_spec(sub)
    except Exception:
        return
    loader = sub.loader
    lock = threading.RLock()
    state = {"loading": False}

    def __getattr__(name: str) -> Any:
        with lock:
            namespace = vars(module)
            if namespace.get("__getattr__") is __getattr__ and not state["loading"]:
                if not name.startswith("__") and importlib.util.find_spec(f"{sub.name}.{name}"):
                    # A submodule (`from redis.asyncio import utils` inside another one):
                    # imported as Python's own `from package import module` does.
                    return importlib.import_module(f"{sub.name}.{name}")
                state["loading"] = True
                try:
                    loader.exec_module(module)
                except BaseException:
                    if sys.modules.get(sub.name) is module:
                        del sys.modules[sub.name]
                    raise
                finally:
                    state["loading"] = False
                if namespace.get("__getattr__") is __getattr__:
                    del namespace["__getattr__"]
            if name in namespace:
                return namespace[name]
        raise AttributeError(f"module {sub.name!r} has no attribute {name!r}")

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[sub.name] = module


def _import_redis() -> None:
    _defer_redis_asyncio()
    # Importing redis-py creates tens of thousands of objects, none of them garbage: the
    # cyclic collector would only walk them, some 60 times (~2% of the import). Paused
    # for the import alone.
    collecting = gc.isenabled()
    gc.disable()
    try:
        import redis  # noqa: F401
    except Exception:
        # Whatever went wrong, the ordinary import decides: drop the half-imported
        # modules and import again, eagerly.
        for name in [n for n in sys.modules if n == "redis" or n.startswith("redis.")]:
            del sys.modules[name]
        import redis  # noqa: F401
    finally:
        if collecting:
            gc.enable()


_import_redis()

import redis  # noqa: E402  (already in sys.modules: _import_redis imported it)

from logcount.config import Config  # noqa: E402
from logcount.embedded import ensure_embedded  # noqa: E402
from logcount.errors import RedisUnavailable  # noqa: E402


def redis_url(config: Config) -> str:
    """The configured Redis, or the embedded one (started on demand)."""
    if config.redis:
        return config.redis
    return ensure_embedded(config.resolved_data_dir())


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
    except ValueError as exc:
        raise RedisUnavailable(f"bad Redis URL: {exc}") from None
    if info.get("cluster_enabled"):
        client.close()
        return redis.RedisCluster.from_url(url, socket_timeout=timeout, **extra)
    return client


def _driver_info() -> dict[str, Any]:
    """The version CLIENT SETINFO reports, given rather than looked up: by default redis-py
    asks importlib.metadata, which searches every sys.path entry (~4 ms of a report).
    Older redis-py (no DriverInfo) keeps its default."""
    info = getattr(redis, "DriverInfo", None)
    version = getattr(redis, "__version__", None)
    if info is None or not isinstance(version, str):
        return {}
    return {"driver_info": info(lib_version=version)}


def is_cluster(client: Any) -> bool:
    return isinstance(client, redis.RedisCluster)


def reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    # redis-py may quote the URL; never echo a password.
    return text.split("@")[-1] if "@" in text else text
