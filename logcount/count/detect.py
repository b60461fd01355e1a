"""`--log-format auto`: which preset reads the first lines of an input, and whether the
format in force reads them at all (the warning every reader and rollup gives once).

One function each, on bytes of whole lines, so that every entry point (pipe, tail,
rollup, report) decides the same way from what it read first.
"""

from __future__ import annotations

from logcount.count.logformat import CompiledFormat, compile_format
from logcount.errors import ConfigError

AUTO = "auto"
# The presets auto tries, in order of preference: among presets that read the same lines
# into the same fields (combined, combined_debian and nginx_combined on a log without a
# `-` size), the first is chosen.
CANDIDATES = (
    "combined",
    "vhost_combined",
    "common",
    "vhost_common",
    "nginx",
    "nginx_combined",
    "combined_debian",
    "common_debian",
)
SAMPLE_LINES = 1000  # lines a rollup file (or a report) is judged on
# Lines auto decides on: a preset that does not fit costs apachelogs' slower regex on
# every line (~60 us a line and preset), and 200 lines of one log tell its format.
DETECT_LINES = 200
SAMPLE_BYTES = 1 << 20  # at most this much of them
SHOWN = 200  # characters of a line quoted in a message


def first_lines(data: bytes, limit: int = SAMPLE_LINES) -> list[bytes]:
    """The first `limit` non-empty lines of `data` (a last line without its newline is
    left out when there are others: it may be cut), without line ends."""
    lines = data.split(b"\n")
    if len(lines) > 1 and not data.endswith(b"\n"):
        lines.pop()
    return [line.rstrip(b"\r") for line in lines if line.strip()][:limit]


def _readings(fmt: CompiledFormat, lines: list[bytes]) -> list[dict[str, bytes] | None]:
    """Each line's fields as `fmt` reads them (None: malformed)."""
    out: list[dict[str, bytes] | None] = []
    for line in lines:
        found = fmt.match(line)
        if found is None:
            out.append(None)
        else:
            out.append(dict(zip(fmt.key_names + fmt.value_names, found[0] + found[1], strict=True)))
    return out


def detect_format(
    head: bytes, where: str = "the input", candidates: tuple[str, ...] = CANDIDATES
) -> str:
    """The preset that reads the most of the first lines of `head` (more than half of
    them); ConfigError when none does, or when two read as many lines into different
    fields (ambiguous). `where` names the input in the error."""
    lines = first_lines(head, DETECT_LINES)
    tried = ", ".join(candidates)
    if not lines:
        raise ConfigError(f"--log-format auto: no line in {where} to tell its format from")
    readings = {name: _readings(compile_format(name), lines) for name in candidates}
    score = {name: sum(r is not None for r in found) for name, found in readings.items()}
    best = max(score.values())
    if best * 2 <= len(lines):
        sample = show_line(lines[0])
        raise ConfigError(
            f"--log-format auto: no preset reads more than half of the first {len(lines)} "
            f"lines of {where} (tried {tried}; the best, {max(score, key=score.__getitem__)}, "
            f"reads {best}); first line: {sample}; give --log-format"
        )
    winners = [name for name in candidates if score[name] == best]
    # Presets that differ only in how they cut the client: the one that keeps it whole
    # (an X-Forwarded-For list before nginx's " - ", which Apache's %l %u would split).
    chosen = max(winners, key=lambda name: _client_length(readings[name]))
    for other in winners:
        if _without_client(readings[other]) != _without_client(readings[chosen]):
            raise ConfigError(
                f"--log-format auto: ambiguous: {chosen} and {other} both read {best} of "
                f"the first {len(lines)} lines of {where}, into different fields (tried "
                f"{tried}); give --log-format"
            )
    return chosen


def _client_length(readings: list[dict[str, bytes] | None]) -> int:
    return sum(len(r.get("client", b"")) for r in readings if r is not None)


def _without_client(readings: list[dict[str, bytes] | None]) -> list[dict[str, bytes] | None]:
    return [{k: v for k, v in r.items() if k != "client"} if r else None for r in readings]


class FirstLines:
    """Judges the first SAMPLE_LINES lines of an input as they come (`add`), keeping two
    counts and one line, not the lines: `verdict()` is the warning when more than half of
    them are malformed under the format in force, once; None otherwise."""

    def __init__(self, log_format: str, where: str):
        self.log_format, self.where = log_format, where
        self.format = compile_format(log_format)
        self.seen = self.bad = 0
        self.sample = b""
        self.judged = False

    @property
    def full(self) -> bool:
        return self.seen >= SAMPLE_LINES

    def add(self, lines: list[bytes]) -> None:
        for line in lines[: SAMPLE_LINES - self.seen]:
            self.seen += 1
            if self.format.match(line) is None:
                self.bad += 1
                self.sample = self.sample or line[: SHOWN + 1]

    def verdict(self) -> str | None:
        if self.judged or self.bad * 2 <= self.seen:
            self.judged = True
            return None
        self.judged = True
        fmt, name = self.format, self.log_format
        shown = name if name == fmt.log_format else f"{name} ({fmt.log_format})"
        return (
            f"{self.where}: {self.bad:,} of the first {self.seen:,} lines are malformed under "
            f"log format {shown}; e.g. {show_line(self.sample)}; is --log-format right? "
            "(logcount malformed shows the samples kept)"
        )


def malformed_warning(log_format: str, lines: list[bytes], where: str) -> str | None:
    """FirstLines' warning for `lines` (an input's first), or None."""
    judge = FirstLines(log_format, where)
    judge.add(lines)
    return judge.verdict()


def show_line(line: bytes) -> str:
    """A log line quoted in a message: printable ASCII, cut at SHOWN characters."""
    text = line[:SHOWN].decode("ascii", "backslashreplace")
    text = "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in text)
    return "'" + text + ("..." if len(line) > SHOWN else "") + "'"
