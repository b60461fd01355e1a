"""`logcount top --watch` in a real terminal: a private tmux server, a real pane.

Lines are fed through the real `logcount pipe` while the screen is up; capture-pane shows
what a person would see: the redraw in place, escaped control characters, and after `q`
(or Ctrl-C) the shell's screen back with the terminal in its usual mode.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import ROOT, RedisServer, need, run_logcount
from tests.waiting import read_until


class Tmux:
    def __init__(self, tmp: Path, env: dict[str, str]):
        self.socket = str(tmp / "tmux.sock")
        self.env = env

    def __call__(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-S", self.socket, "-f", "/dev/null", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        return done.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "w")

    def type(self, text: str, enter: bool = True) -> None:
        self("send-keys", "-t", "w", "-l", text)
        if enter:
            self("send-keys", "-t", "w", "Enter")

    def wait_for(self, ok: Callable[[str], bool], what: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if ok(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; screen:\n{screen}")


@pytest.fixture
def tmux(tmp_path: Path, lc_env: dict[str, str]) -> Iterator[Tmux]:
    need(shutil.which("tmux") is not None, "tmux is not installed")
    Path(lc_env["LOGCOUNT_CONFIG"]).write_text('site = "test"\ntimezone = "UTC"\n')
    env = dict(lc_env, TERM="xterm-256color", PS1="$ ", HOME=str(tmp_path))
    env.pop("TMUX", None)
    t = Tmux(tmp_path, env)
    t("new-session", "-d", "-s", "w", "-x", "110", "-y", "30", "bash --norc --noprofile")
    t.wait_for(lambda s: bool(s.strip()), "the shell prompt")
    yield t
    t("kill-server")


def lines_now(paths: list[str]) -> bytes:
    stamp = datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    return "".join(
        f'10.0.0.{i} - - [{stamp}] "GET {p} HTTP/1.1" 200 100 "-" "Mozilla/5.0 Firefox/120.0"\n'
        for i, p in enumerate(paths)
    ).encode()


def watch_command() -> str:
    return (
        f"cd {shlex.quote(str(ROOT))} && {shlex.quote(sys.executable)} -m logcount.cli "
        "top --watch 0.5 -w today"
    )


def terminal_is_sane(tmux: Tmux) -> None:
    tmux.type(
        "clear; stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e echo | tr '\\n' ' '; echo END"
    )
    screen = tmux.wait_for(
        lambda s: any(ln.endswith("END") and "grep" not in ln for ln in s.splitlines()), "stty"
    )
    assert "icanon echo END" in screen  # not -icanon / -echo: cbreak mode was undone


MARKER = "BEFORE-WATCH-42"


def show_marker(tmux: Tmux) -> None:
    """Clear the shell's screen and print MARKER on a line of its own, and wait for that
    line. The typed command does not hold the marker (the shell works out 6*7): a wait
    for the typed line's echo would let the next command be typed ahead, echoed before
    `clear` runs, and the marker printed after it on one wrapped line."""
    tmux.type("clear; echo BEFORE-WATCH-$((6*7))")
    tmux.wait_for(lambda s: MARKER in s.splitlines(), "the marker")


def test_watch_redraws_in_place_and_q_restores_the_screen(
    tmux: Tmux, lc_env: dict[str, str]
) -> None:
    show_marker(tmux)
    tmux.type(watch_command())
    first = tmux.wait_for(lambda s: "q or Ctrl-C quits" in s, "the first frame")
    assert MARKER not in first  # the alternate screen
    assert "hits 0 " in first

    fed = run_logcount(
        ["pipe"], lc_env, input=lines_now(["/watched/page"] * 3 + ["/\\x1b[2Jcleared"])
    )
    assert fed.returncode == 0, fed.stderr
    screen = tmux.wait_for(
        lambda s: "hits 4 " in s and "since last redraw" in s, "a redraw with the new hits"
    )
    assert screen.count("site test") == 1  # redrawn in place, not scrolled
    assert "/watched/page" in screen and "3  75.0%" in screen
    # Apache's \x1b of an ESC is counted as its escape (count.paths): the screen was not
    # cleared
    assert "/%1B[2Jcleared" in screen
    assert "since last redraw" in screen

    tmux("send-keys", "-t", "w", "q")
    back = tmux.wait_for(
        lambda s: MARKER in s.splitlines() and "site test" not in s, "the shell screen after q"
    )
    assert "q or Ctrl-C quits" not in back
    terminal_is_sane(tmux)


def test_ctrl_c_ends_watch_and_restores_the_terminal(tmux: Tmux) -> None:
    show_marker(tmux)
    tmux.type(watch_command() + "; echo EXIT=$?")
    tmux.wait_for(lambda s: "q or Ctrl-C quits" in s, "the first frame")
    tmux("send-keys", "-t", "w", "C-c")
    # A line of its own, so that the typed command (which a long path may wrap) never matches.
    screen = tmux.wait_for(
        lambda s: any(re.fullmatch(r"EXIT=\d+", ln) for ln in s.splitlines()), "the exit"
    )
    assert "EXIT=0" in screen.splitlines()
    assert MARKER in screen.splitlines() and "site test" not in screen
    terminal_is_sane(tmux)


def test_watch_off_a_terminal_prints_one_plain_report_per_interval(lc_env) -> None:
    """Piped into a file, --watch appends plain reports (no escape codes) until stopped."""
    import signal

    from tests.conftest import LOGCOUNT

    line = b'10.0.0.1 - - [06/Apr/2026:10:00:00 +0000] "GET /w HTTP/1.1" 200 5 "-" "x/1"\n'
    assert run_logcount(["pipe"], lc_env, input=line * 3).returncode == 0
    proc = subprocess.Popen(
        LOGCOUNT + ["top", "--window", "2026-04-06", "--watch", "0.3"],
        env=lc_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # the fourth report begun: three whole ones
    seen = read_until(proc.stdout, lambda out: out.count(b"2026-04-06: ") >= 4, "4 reports")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    text = (seen + out).decode()
    assert "\x1b" not in text
    reports = [r for r in text.split("\n\n2026-04-06: ") if r.strip()]
    assert len(reports) >= 3  # one every 0.3 s while it ran
    for report in reports:
        assert "hits 3  visitors 1  bytes 15 B  bots 0  malformed 0" in report
        assert "1  /w       3  100.0%         -   15 B" in report
    assert "since last redraw 0.0/s" in reports[1]


def test_redis_gone_before_the_rate_query_is_a_line(redis_server: RedisServer, tmp_path) -> None:
    """The rate's query after the report fails like the report does (RedisUnavailable,
    shown on the screen with "(retrying)"), not with the client's own error."""
    from logcount.config import Config
    from logcount.errors import RedisUnavailable
    from logcount.read.api import Counts
    from logcount.read.watch import _frame_or_error, today_hits

    config = Config(redis=redis_server.url, site="test", data_dir=str(tmp_path / "d"))
    counts = Counts.from_settings(config)
    assert today_hits(counts, "test") == 0
    redis_server.stop()
    with pytest.raises(RedisUnavailable, match="^cannot read from Redis: connecting to "):
        today_hits(counts, "test")
    frame = _frame_or_error(lambda: str(today_hits(counts, "test")))
    assert frame.startswith("cannot read from Redis: ") and frame.endswith(" (retrying)")
