"""`logcount top --watch`: redraw a report in place, like top(1), until `q` or Ctrl-C.

The screen is the terminal's alternate screen (so the shell's screen comes back untouched
when we leave), the cursor is hidden, and stdin is in cbreak mode so that a single `q`
quits without Enter while Ctrl-C still raises SIGINT. Whatever ends the loop (q, Ctrl-C,
SIGTERM, an error), the terminal settings are restored.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from logcount.errors import LogcountError
from logcount.read.report import reading_redis
from logcount.sinks import keys

ENTER_SCREEN = "\x1b[?1049h\x1b[?25l"  # alternate screen, cursor hidden
LEAVE_SCREEN = "\x1b[?25h\x1b[?1049l"
HOME, CLEAR_LINE, CLEAR_BELOW = "\x1b[H", "\x1b[K", "\x1b[J"


class RateMeter:
    """Hits per second between two redraws, from today's live total (one HGET)."""

    def __init__(self) -> None:
        self.last: tuple[float, int] | None = None

    def update(self, hits: int, now: float) -> float | None:
        previous, self.last = self.last, (now, hits)
        if previous is None or now <= previous[0]:
            return None
        return max(0, hits - previous[1]) / (now - previous[0])


def today_hits(counts: Any, site: str) -> int:
    label = counts.now().strftime("%Y%m%d")
    # Redis may go away between the report and this query: a line on the screen, as for
    # the report, not a traceback.
    client = counts.redis
    with reading_redis(client):
        return int(client.hget(keys.totals(site, "day", label), "hits") or 0)


def render_frame(
    counts: Any, meter: RateMeter, options: dict[str, Any], width: int, terminal: bool = True
) -> str:
    from logcount.read.render import recent_table, top_table

    site = options["site"] or counts.site
    if options["recent"]:
        if terminal:
            return recent_table(site, counts.recent(options["limit"], site), width, True)
        return recent_table(site, counts.recent(options["limit"], site))
    report = counts.report(
        window=options["window"],
        by=options["by"],
        limit=options["limit"],
        site=site,
        since=options["since"],
        until=options["until"],
        status=options.get("status"),
        sort=options.get("sort", "hits"),
    )
    rate = meter.update(today_hits(counts, site), time.monotonic())
    note = "" if rate is None else f"  since last redraw {rate:,.1f}/s"
    return top_table(report, width, terminal, note)


def draw(out: TextIO, frame: str, footer: str) -> None:
    """Overwrite the screen from the top left: no blank flash between frames."""
    size = shutil.get_terminal_size((100, 24))
    lines = frame.rstrip("\n").split("\n")[: max(1, size.lines - 2)]
    lines += ["", footer[: size.columns]]
    out.write(
        HOME
        + "".join(line + CLEAR_LINE + "\n" for line in lines[:-1])
        + lines[-1]
        + CLEAR_LINE
        + CLEAR_BELOW
    )
    out.flush()


@contextmanager
def terminal_mode(out: TextIO, keys_fd: int | None) -> Iterator[None]:
    """Alternate screen + cbreak input for the duration; restored whatever happens."""
    import termios
    import tty

    saved = termios.tcgetattr(keys_fd) if keys_fd is not None else None
    previous_term = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        if keys_fd is not None:
            tty.setcbreak(keys_fd)
        out.write(ENTER_SCREEN)
        out.flush()
        yield
    finally:
        out.write(LEAVE_SCREEN)
        out.flush()
        if saved is not None and keys_fd is not None:
            termios.tcsetattr(keys_fd, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGTERM, previous_term)


def wait_for_key(fd: int | None, seconds: float) -> bool:
    """Sleep up to `seconds`; True when `q` was typed."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if fd is None:
            time.sleep(left)
            return False
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            data = os.read(fd, 64)
            if not data or b"q" in data.lower():
                return True


def watch_top(counts: Any, interval: float, **options: Any) -> int:
    """Redraw until q / Ctrl-C / SIGTERM; exit status 0."""
    out = sys.stdout
    if not out.isatty():
        return _watch_plain(counts, interval, options, out)
    keys_fd = sys.stdin.fileno() if sys.stdin.isatty() else None
    meter = RateMeter()
    try:
        with terminal_mode(out, keys_fd):
            while True:
                frame = _frame_or_error(
                    lambda: render_frame(
                        counts, meter, options, shutil.get_terminal_size((100, 24)).columns
                    )
                )
                footer = f"{time.strftime('%H:%M:%S')}  every {interval:g}s  q or Ctrl-C quits"
                draw(out, frame, footer)
                if wait_for_key(keys_fd, interval):
                    break
    except KeyboardInterrupt:
        pass
    return 0


def _frame_or_error(make: Callable[[], str]) -> str:
    # Redis going away for a moment must not end the screen: say so and try again.
    try:
        return make()
    except LogcountError as exc:
        return f"{exc} (retrying)"


def _watch_plain(counts: Any, interval: float, options: dict[str, Any], out: TextIO) -> int:
    """Not a terminal: one plain report per interval, separated by a blank line."""
    meter = RateMeter()
    try:
        while True:
            text = render_frame(counts, meter, options, 100, terminal=False)
            out.write(text + "\n")
            out.flush()
            time.sleep(interval)
    except (KeyboardInterrupt, BrokenPipeError):
        pass
    return 0
