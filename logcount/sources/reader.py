"""The pipe's reader: stdin to EOF through the shared Pipeline (logcount/sources/pipeline.py);
SIGTERM drains with a deadline, SIGHUP reloads the configuration."""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable
from typing import Any

from logcount.config import Config
from logcount.count.lines import LineSplitter
from logcount.sources.pipeline import Pipeline, StderrLog, check_data_dir


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

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, lambda s, f: setattr(self.pipeline, "reload_requested", True))
        # The supervisor forks us with these blocked: one that came meanwhile is handled now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})

    def run(self) -> int:
        check_data_dir(self.config)
        self.pipeline = Pipeline(self.config, "pipe", self.log, loader=self.loader)
        self.install_signals()
        self.pipeline.start()
        try:
            self.read_until_eof()
        finally:
            self.pipeline.close()
        return 0

    def read_until_eof(self) -> None:
        lines = LineSplitter()
        while True:
            # Wait in select, not in read: a signal must be able to start the grace period
            # (PEP 475 would silently resume a blocked read).
            timeout = 0.5
            if self.deadline is not None:
                timeout = self.deadline - time.monotonic()
                if timeout <= 0:
                    self.log("grace period over before EOF; stopping")
                    return
            ready, _, _ = select.select([self.fd], [], [], min(timeout, 0.5))
            if not ready:
                continue
            try:
                n = os.readv(self.fd, [lines.space()])
            except InterruptedError:
                continue
            for piece in lines.filled(n) if n else lines.finish():
                self.pipeline.count_piece(piece)
            if not n:
                return
