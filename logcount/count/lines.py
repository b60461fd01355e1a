"""Cutting a byte stream into whole lines: the one splitter of pipe, tail and rollup.

One policy for all three:
- a line longer than MAX_LINE bytes is garbage: it is counted once as malformed (its
  first bytes kept as the sample) when its newline comes, and its bytes are skipped
  as they are read, never held, so memory stays bounded whatever a writer sends;
- a last line without a newline is held until its newline comes. At the end of a
  finished input (pipe's EOF, a rollup file) `finish()` gives it as a line like any
  other: Apache writes whole lines, so such a line is one whose newline was lost. A
  followed file (`tail`) never finishes: its last line may still be being written.

The splitter owns one reused buffer: a source reads into `space()`, hands the byte count
to `filled()` and gets back pieces of whole lines (views into the buffer, valid until the
next `space()`) with the number of input bytes each stands for, so that a follower's
read position moves exactly past what was counted.
"""

from __future__ import annotations

import ctypes  # imported with the rest, before `pipe --user` drops privileges
import sys
from dataclasses import dataclass
from typing import Any

READ_SIZE = 1 << 20  # bytes read at once
MAX_LINE = 1 << 20  # bytes of a line (its newline excluded) past which it is garbage
SAMPLE = 4096  # bytes of an over-long line kept as the malformed sample


@dataclass(frozen=True)
class Piece:
    """Whole lines (`lines`, each ending with a newline), or one over-long line (`long`:
    its first bytes); `size` is the number of input bytes it stands for."""

    size: int
    lines: memoryview | bytes | None = None
    long: bytes | None = None


class LineSplitter:
    """Whole lines out of reads of any size, in one buffer of MAX_LINE + READ_SIZE bytes.

    Every line given in `lines` is at most `max_line` bytes long: the held part of a line
    is checked when its newline comes, and a read is at most `block` <= `max_line` bytes,
    so any other line in it is shorter."""

    def __init__(self, max_line: int = MAX_LINE, block: int = READ_SIZE):
        if block > max_line:
            raise ValueError("a read must not be larger than the longest line")
        self.max_line = max_line
        self.block = block
        self.buf = bytearray(max_line + block)
        self.view = memoryview(self.buf)
        self.start = 0  # buf[start:end] is the line being held (no newline yet)
        self.end = 0
        self.skipped = 0  # > 0: inside an over-long line, this many bytes of it skipped
        self.head = b""  # the over-long line's first bytes

    @property
    def pending(self) -> int:
        """Input bytes read but not yet given in a piece (a held or skipped line)."""
        return self.skipped + self.end - self.start

    def reset(self) -> None:
        """Forget what is held (a follower moved to another file or offset)."""
        self.start = self.end = self.skipped = 0
        self.head = b""

    def space(self, limit: int | None = None) -> memoryview:
        """Where to read next: at most `block` bytes (and `limit`, when given)."""
        if self.start:  # the held line to the front; the last pieces are consumed by now
            held = self.end - self.start
            self.view[:held] = self.view[self.start : self.end]  # memoryview: overlap-safe
            self.start, self.end = 0, held
        size = self.block if limit is None else max(0, min(self.block, limit))
        return self.view[self.end : self.end + size]

    def filled(self, n: int) -> list[Piece]:
        """`n` bytes were read into `space()`: the pieces they complete."""
        buf, begin, stop = self.buf, self.end, self.end + n
        self.end = stop
        pieces: list[Piece] = []
        first = buf.find(b"\n", begin, stop)
        if first < 0:
            if self.skipped:
                self.skipped += n
                self.start = self.end = 0
            elif stop - self.start > self.max_line:
                self.head = bytes(self.view[self.start : min(stop, self.start + SAMPLE)])
                self.skipped = stop - self.start
                self.start = self.end = 0
            return pieces
        if self.skipped or first - self.start > self.max_line:
            if not self.skipped:
                self.head = bytes(self.view[self.start : min(first, self.start + SAMPLE)])
            pieces.append(Piece(self.skipped + first + 1 - self.start, long=self.head))
            self.skipped, self.head = 0, b""
            self.start = first + 1
        last = buf.rfind(b"\n", begin, stop) + 1
        if last > self.start:
            pieces.append(Piece(last - self.start, lines=self.view[self.start : last]))
            self.start = last
        return pieces

    def finish(self) -> list[Piece]:
        """The input ended: a line held without its newline is a line like any other (an
        over-long one stays malformed). Nothing is held afterwards."""
        pieces: list[Piece] = []
        if self.skipped:
            pieces.append(Piece(self.skipped, long=self.head))
        elif self.end > self.start:
            line = bytes(self.view[self.start : self.end]) + b"\n"
            pieces.append(Piece(self.end - self.start, lines=line))
        self.reset()
        return pieces


def return_freed_buffers(threshold: int = 128 * 1024) -> None:
    """Have glibc give freed buffers of `threshold` bytes or more back to the system at
    once.

    A reader allocates and frees buffers of a megabyte and more all the time (1 MiB
    reads, the batches it sends to Redis). After the first such buffer is freed, glibc
    raises its mmap threshold, so later ones come from the heap, where freed memory stays
    with the process: on bench_pipe's day spread the resident size grew some 40 MB past
    what was in use (18 MB traced by tracemalloc). A fixed threshold keeps them mmapped.
    A rollup's counters and parent too, at 1 MiB: their arrays of a day's visitor hashes
    (up to 8 MiB) grow a batch at a time, and the pickled parts the parent receives are as
    big; at 128 KiB a rollup of the real lines took 60 % more page faults than glibc's
    own threshold (+6 % CPU), at 1 MiB 7 %. Elsewhere than glibc this does nothing."""
    mallopt = _mallopt()
    if mallopt is None:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, threshold)
    mallopt(m_trim_threshold, threshold)


def one_malloc_arena() -> None:
    """Have glibc serve every thread from one heap (M_ARENA_MAX 1), before the threads
    start. A live pipeline's reader, classifier and sender each got an arena of their
    own, and what one thread freed in its arena stayed there, unused by the others: 4-5
    MB of the pipe's peak on a diverse day. They take turns under the GIL anyway (the C
    scanner keeps it), so one arena's lock costs nothing measurable."""
    mallopt = _mallopt()
    if mallopt is not None:
        m_arena_max = -8
        mallopt(m_arena_max, 1)


def _mallopt() -> Any:
    """glibc's mallopt(), or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
