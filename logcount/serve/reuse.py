"""Answers reused while they cannot have changed: for at most a second, and only while
the site's monotonic totals (read with one HMGET, at most every 0.1 s) stand where they
stood.

Every batch a reader applies moves its site's totals (keys.lifetime) in the same Lua call
as its buckets, so an answer computed before the last batch is never served after it; the
second bounds what the clock alone changes (a window's end, its minute boundaries). A
dashboard on many screens, or a monitor polling `/api/top` 200 times a second, then costs
one report a second instead of one per request.
"""

from __future__ import annotations

import threading
import time
from typing import Any

MAX_AGE = 1.0  # seconds
MAX_ANSWERS = 1000  # distinct requests remembered; past it, all are forgotten at once
VERSION_AGE = 0.1  # seconds a site's version is taken as read, between requests


class Answers:
    def __init__(self, max_age: float = MAX_AGE, most: int = MAX_ANSWERS):
        self.max_age = max_age
        self.most = most
        self._kept: dict[Any, tuple[float, Any, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, version: Any) -> Any:
        """The answer kept for `key` at `version` if it is young enough, else None."""
        found = self._kept.get(key)
        if found is None:
            return None
        when, kept_version, answer = found
        if kept_version != version or time.monotonic() - when > self.max_age:
            return None
        return answer

    def put(self, key: Any, version: Any, answer: Any) -> None:
        with self._lock:
            if len(self._kept) >= self.most:
                self._kept.clear()
            self._kept[key] = (time.monotonic(), version, answer)


class Versions:
    """Each site's totals version, read from Redis at most every VERSION_AGE seconds:
    at a thousand requests a second, one HMGET in a hundred requests. A batch applied
    meanwhile is seen at most that late; the change feed, which sees it first, forgets
    the site's version at once so that the page it tells to reload gets the new answer."""

    def __init__(self, read: Any, max_age: float = VERSION_AGE):
        self.read = read
        self.max_age = max_age
        self._read_at: dict[str, tuple[float, Any]] = {}

    def get(self, site: str) -> Any:
        found = self._read_at.get(site)
        now = time.monotonic()
        if found is not None and now - found[0] <= self.max_age:
            return found[1]
        version = self.read(site)
        if len(self._read_at) >= MAX_ANSWERS:
            self._read_at.clear()
        self._read_at[site] = (now, version)
        return version

    def forget(self, site: str) -> None:
        self._read_at.pop(site, None)
