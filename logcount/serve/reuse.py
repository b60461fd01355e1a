"""Answers reused while they cannot have changed: for at most a second, and only while
the site's monotonic totals (read with one HMGET) stand where they stood.

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
