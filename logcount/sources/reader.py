"""The pipe's reader: stdin to EOF through the shared Pipeline (logcount/sources/pipeline.py);
SIGTERM drains with a deadline, SIGHUP reloads the configuration."""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from logcount.config import Config
from logcount.count.detect import AUTO, detect_format
from logcount.count.lines import LineSplitter, Piece
from logcount.sources.pipeline import Pipeline, StderrLog, check_data_dir

# Under `--log-format auto` the pipe counts nothing until this many lines (or EOF, or the
# grace deadline after SIGTERM) have come, then tells the format from them: they are
# counted then, none is lost; a quiet site's first counts wait for its tenth request.
PIPE_DETECT_LINES = 10


class Reader:
    """Reads a file descriptor (the pipe's stdin) to EOF; SIGTERM drains with a deadline."""

    def __init__(
        self,
        config: Config,
        fd: int = 0,
        log: Callable[[str], None] | None = None,
        loader: Callable[[], Config] | None = None,
    ):
        self.config = config
        self.loader = loader
        self.fd = fd
        self.log = log or StderrLog()
        self.deadline: float | None = None
        self.pipeline: Pipeline

    def install_signals(self) -> None:
        def on_term(signum: int, frame: Any) -> None:
            if self.deadline is None:
                self.deadline = time.monotonic() + self.config.grace

        def on_hup(signum: int, frame: Any) -> None:
            if hasattr(self, "pipeline"):  # not before the format is known (auto)
                self.pipeline.reload_requested = True

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, on_hup)
        # The supervisor forks us with these blocked: one that came meanwhile is handled now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})

    def run(self) -> int:
        check_data_dir(self.config)
        self.install_signals()
        lines = LineSplitter()
        head: list[Piece] = []
        ended = False
        if self.config.log_format == AUTO:
            # A piece's lines lie in the splitter's buffer, which the next read reuses.
            ended = self.read(
                lines,
                lambda p: head.append(replace(p, lines=bytes(p.lines or b""))),
                lambda: _lines_in(head) >= PIPE_DETECT_LINES,
            )
            data = b"".join(bytes(p.lines or b"") for p in head)
            if ended and not data:
                return 0  # nothing came: nothing to count
            fmt = detect_format(data, "stdin")
            self.config = replace(self.config, log_format=fmt)
            self.log(f"--log-format auto: {fmt}")
        self.pipeline = Pipeline(self.config, "pipe", self.log, loader=self.loader)
        self.pipeline.start()
        try:
            for piece in head:
                self.pipeline.count_piece(piece)
            if not ended:
                self.read(lines, self.pipeline.count_piece)
        finally:
            self.pipeline.close()
        return 0

    def read(
        self,
        lines: LineSplitter,
        take: Callable[[Piece], None],
        enough: Callable[[], bool] = lambda: False,
    ) -> bool:
        """Hand the pieces read to `take` until `enough()`; True at EOF or past the grace
        deadline (nothing more to read)."""
        while not enough():
            # Wait in select, not in read: a signal must be able to start the grace period
            # (PEP 475 would silently resume a blocked read).
            timeout = 0.5
            if self.deadline is not None:
                timeout = self.deadline - time.monotonic()
                if timeout <= 0:
                    self.log("grace period over before EOF; stopping")
                    return True
            ready, _, _ = select.select([self.fd], [], [], min(timeout, 0.5))
            if not ready:
                continue
            try:
                n = os.readv(self.fd, [lines.space()])
            except InterruptedError:
                continue
            for piece in lines.filled(n) if n else lines.finish():
                take(piece)
            if not n:
                return True
        return False


def _lines_in(pieces: list[Piece]) -> int:
    return sum(bytes(p.lines).count(b"\n") if p.lines else 1 for p in pieces)
