"""Waiting for a condition in a test: poll it until it holds, with a deadline, never a
fixed sleep (a test that passes alone must pass with both cores busy)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import IO, Any


def wait_for(
    check: Callable[[], Any],
    what: str,
    timeout: float = 30.0,
    interval: float = 0.02,
    ignoring: tuple[type[BaseException], ...] = (),
) -> Any:
    """Poll `check()` until it gives a true value, and return that value. `ignoring`:
    errors that mean "not yet" (a server still starting). Past `timeout` seconds, an
    AssertionError names `what` and the last value or error seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = check()
        except ignoring as exc:
            value, last = None, exc
        else:
            last = value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what} (last: {last!r})"
            )
        time.sleep(interval)


def read_until(
    stream: IO[bytes] | None, done: Callable[[bytes], Any], what: str, timeout: float = 30.0
) -> bytes:
    """What a process has written to `stream` (its stdout or stderr pipe), read without
    blocking until `done(what was read)` holds; the rest is read by the caller as usual."""
    assert stream is not None
    fd = stream.fileno()
    os.set_blocking(fd, False)
    seen = bytearray()

    def enough() -> Any:
        try:
            seen.extend(os.read(fd, 65536))
        except BlockingIOError:
            pass
        return done(bytes(seen))

    wait_for(enough, what, timeout, ignoring=(OSError,))
    os.set_blocking(fd, True)
    return bytes(seen)
