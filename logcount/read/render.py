"""Text output of reports: tables for people (rich), CSV and JSON for programs.

Everything that came from a request (paths, referrers, agents, sites) goes through
`safe_text` before it reaches a terminal: a request for `/%1b[2J` must not clear a screen.
A table is plain text (no colour, no escape sequence at all) unless it goes to a terminal.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

# What a terminal must never receive raw: C0 (ESC among them), DEL and C1 (U+009B is a CSI
# on its own), every Unicode format character (category Cf: bidi overrides, isolates and
# marks, zero-width characters, U+061C, U+2060-U+206F, the tag characters U+E0000-U+E007F
# that can spell hidden text), the line and paragraph separators and lone surrogates.
# Listed rather than built from unicodedata at import (a scan of every code point would
# be most of a `logcount top`); tests/test_output_safety.py checks it against the
# running Python's Unicode tables.
_CONTROL = re.compile(
    "[\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2"
    "\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff"
    "\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0000-\U000e007f]"
)
# In JSON text a raw newline is layout (json.dumps escapes the ones in strings).
_JSON_CONTROL = re.compile("(?!\n)" + _CONTROL.pattern)
_SURROGATE = re.compile("[\ud800-\udfff]")
# A spreadsheet takes a cell starting with one of these as a formula (or, after a tab or
# CR, re-reads what follows): such a cell goes out with a leading quote.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
SPARKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 24
TOP_JSON_KEYS = ("window", "site", "by", "total", "rows")
ROW_JSON_KEYS = ("key", "hits", "bytes", "visitors")
# Only in a report whose window has response times (logcount.timing)
ROW_TIME_KEY = "time_avg_ms"


def _escape(char: str) -> str:
    n = ord(char)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def safe_text(text: str) -> str:
    """Escape control and format characters as \\xhh, \\uhhhh or \\Uhhhhhhhh."""
    return _CONTROL.sub(lambda m: _escape(m.group()), text)


def _json_escape(char: str) -> str:
    n = ord(char)
    if n < 0x10000:
        return f"\\u{n:04x}"
    n -= 0x10000  # a UTF-16 surrogate pair, as JSON spells a character past U+FFFF
    return f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}"


def dump_json(data: Any, terminal: bool = False) -> str:
    """JSON with the text as it is; for a terminal, every control and format character
    as a JSON escape: a program reading it gets the same value, a screen shows no effect."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    # Lone surrogates (from a "\\ud800" in stored JSON) cannot be written as UTF-8 at all.
    return (_JSON_CONTROL if terminal else _SURROGATE).sub(lambda m: _json_escape(m.group()), text)


def csv_cell(value: Any, terminal: bool = False) -> Any:
    """A CSV cell: text that a spreadsheet would run as a formula gets a leading quote;
    for a terminal, control and format characters are escaped as in a table."""
    if not isinstance(value, str):
        return value
    if value.startswith(_FORMULA_START):
        value = "'" + value
    return safe_text(value) if terminal else value


def csv_text(rows: list[list[Any]], terminal: bool) -> str:
    import csv  # only for --format csv (a table or JSON has no use for it)

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow([csv_cell(cell, terminal) for cell in row])
    return out.getvalue()


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def sparkline(values: list[int], width: int = SPARK_WIDTH) -> str:
    """Values as block characters, summed into at most `width` columns; zero is the floor."""
    if not values:
        return ""
    if len(values) > width:
        size = len(values) / width
        values = [sum(values[int(i * size) : int((i + 1) * size)]) for i in range(width)]
    top = max(values)
    if top <= 0:
        return SPARKS[0] * len(values)
    steps = len(SPARKS) - 1
    return "".join(SPARKS[0] if v <= 0 else SPARKS[max(1, round(v / top * steps))] for v in values)


# --- top -------------------------------------------------------------------------------


def top_json(report: dict[str, Any], terminal: bool = False) -> str:
    return dump_json(top_data(report), terminal)


def top_data(report: dict[str, Any]) -> dict[str, Any]:
    """What `top --format json` shows of a report (the documented, stable shape)."""
    shown = {k: report[k] for k in TOP_JSON_KEYS}
    for extra in ("status_filter", "sort_note", "depth", "metric"):
        if report.get(extra):
            shown[extra] = report[extra]
    if "metric" in report:
        shown["metric_total"] = report["metric_total"]
    keys = (*ROW_JSON_KEYS, ROW_TIME_KEY) if _timed(report) else ROW_JSON_KEYS
    if "metric" in report:
        keys = (*keys, "metric")
    shown["rows"] = [{k: row[k] for k in keys} for row in report["rows"]]
    return shown


def _timed(report: dict[str, Any]) -> bool:
    """The rows carry an average response time (the window has durations)."""
    return any(ROW_TIME_KEY in row for row in report["rows"])


def milliseconds(ms: float) -> str:
    """Three significant digits or so: 0.375, 12.3, 1,205 (JSON has the exact value)."""
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def top_csv(report: dict[str, Any], terminal: bool = False) -> str:
    total = report["total"]["hits"] or 1
    timed = _timed(report)
    rows: list[list[Any]] = [
        ["rank", "key", "hits", "share", "visitors", "bytes", *(["avg_ms"] if timed else [])]
        + ([report["metric"]] if "metric" in report else [])
    ]
    for rank, row in enumerate(report["rows"], 1):
        rows.append(
            [
                rank,
                row["key"],
                row["hits"],
                f"{row['hits'] / total:.4f}",
                "" if row["visitors"] is None else row["visitors"],
                row["bytes"],
                *([row[ROW_TIME_KEY]] if timed else []),
                *(["" if row["metric"] is None else row["metric"]] if "metric" in report else []),
            ]
        )
    return csv_text(rows, terminal)


def _when(iso: str) -> str:
    # Cut from the ISO form, not strftime: %Y writes year 1 as "1".
    return f"{iso[:10]} {iso[11:16]}"


def _by_note(report: dict[str, Any]) -> str:
    status = report.get("status_filter")
    sort = report.get("sort_note")
    return (f" (status {status})" if status else "") + (f" ({sort})" if sort else "")


def top_header(report: dict[str, Any], rate_note: str = "") -> str:
    """Three lines: the window, the totals, then the error rate and the current rate
    (hits in the last full minute)."""
    total = report["total"]
    w = report["window"]
    status = report.get("status", {})
    hits = total["hits"] or 0
    e4 = status.get("s4xx", 0) / hits * 100 if hits else 0.0
    e5 = status.get("s5xx", 0) / hits * 100 if hits else 0.0
    spec = report.get("spec", "")
    times = "".join(
        f"  {name[5:8]} {milliseconds(total[name])} ms"
        for name in ("time_p50_ms", "time_p95_ms", "time_p99_ms")
        if name in total
    )
    return (
        f"{safe_text(spec)}: {_when(w['start'])} .. {_when(w['end'])} ({w['source']})  "
        f"site {safe_text(report['site'])}  by {report['by']}{_by_note(report)}\n"
        f"hits {hits:,}  visitors {total['visitors']:,}  bytes {human_bytes(total['bytes'])}"
        f"  bots {total['bots']:,}  malformed {total['malformed']:,}\n"
        f"errors 4xx {e4:.1f}%  5xx {e5:.1f}%  rate {report.get('rate', 0):,}/min{rate_note}"
        f"{times}"
    )


def _console(buf: io.StringIO, width: int) -> Any:
    from rich.console import Console

    return Console(
        file=buf,
        width=width,
        force_terminal=True,
        color_system="standard",
        highlight=False,
        emoji=False,
        markup=False,
        legacy_windows=False,
    )


def _layout(names: list[str], rows: list[list[str]], flex: int, width: int) -> list[int]:
    """Column widths: every column its natural width but the `flex` one, which gives way
    (down to 8 cells) so that the table fits `width` with two spaces between columns."""
    from rich.cells import cell_len

    widths = [
        max([cell_len(name)] + [cell_len(r[i]) for r in rows]) for i, name in enumerate(names)
    ]
    room = width - sum(widths) + widths[flex] - 2 * (len(names) - 1)
    widths[flex] = min(widths[flex], max(8, room))
    return widths


def _fit(text: str, width: int, right: bool) -> str:
    from rich.cells import cell_len, set_cell_size

    if cell_len(text) > width:
        text = set_cell_size(text, width - 1) + "…"
    pad = " " * (width - cell_len(text))
    return pad + text if right else text + pad


def render_table(
    head: list[str],
    names: list[str],
    rows: list[list[str]],
    width: int,
    terminal: bool,
    right: set[int],
    flex: int,
    empty: str,
) -> str:
    """Header lines, a blank line and an aligned table: plain text, or rich on a terminal
    (bold header and column names). Cells must already be safe (see `safe_text`)."""
    widths = _layout(names, rows, flex, width)
    if not terminal:
        import textwrap

        lines = [
            part
            for line in head
            for part in textwrap.wrap(line, width, break_on_hyphens=False, break_long_words=True)
            or [""]
        ] + [""]
        if not rows:
            lines.append(empty)
        for cells in [names, *rows] if rows else []:
            lines.append(
                "  ".join(_fit(c, widths[i], i in right) for i, c in enumerate(cells)).rstrip()
            )
        return "".join(line.rstrip() + "\n" for line in lines)
    from rich.table import Table

    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for i, name in enumerate(names):
        table.add_column(
            name,
            justify="right" if i in right else "left",
            no_wrap=True,
            overflow="ellipsis",
            min_width=widths[i],
            max_width=widths[i],
        )
    for cells in rows:
        table.add_row(*cells)
    buf = io.StringIO()
    console = _console(buf, width)
    console.print("\n".join(head), style="bold")
    console.print()
    console.print(table if rows else empty)
    return "".join(line.rstrip() + "\n" for line in buf.getvalue().splitlines())


def top_table(
    report: dict[str, Any],
    width: int | None = None,
    terminal: bool = False,
    rate_note: str = "",
    empty: str = "(no hits in this window)",
) -> str:
    """The table people read; `terminal` adds style, else plain text."""
    total = report["total"]["hits"] or 1
    spark_width = min(
        SPARK_WIDTH, max((len(r.get("trend", [])) for r in report["rows"]), default=0)
    )
    timed = _timed(report)
    rows = []
    for rank, row in enumerate(report["rows"], 1):
        cells = [
            str(rank),
            safe_text(row["key"]),
            f"{row['hits']:,}",
            f"{row['hits'] / total * 100:.1f}%",
            "-" if row["visitors"] is None else f"{row['visitors']:,}",
            human_bytes(row["bytes"]),
        ]
        if timed:
            cells.append(milliseconds(row[ROW_TIME_KEY]))
        if "metric" in report:
            cells.append(ratio_text(row["metric"]))
        if spark_width:
            cells.append(sparkline(row.get("trend", []), spark_width))
        rows.append(cells)
    by = report["by"] if "depth" not in report else f"section (depth {report['depth']})"
    names = ["#", by, "hits", "share", "visitors", "bytes"]
    if timed:
        names.append("avg ms")
    if "metric" in report:
        names.append(report["metric"])
    if spark_width:
        names.append("trend")
    head = top_header(report, rate_note).split("\n")
    if "metric" in report:
        head[-1] += f"  {report['metric']} {ratio_text(report['metric_total'])}"
    # Numbers and the trend keep their full width; only the key gives way (with an ellipsis).
    numbers = len(names) - (1 if spark_width else 0)
    return render_table(
        head,
        names,
        rows,
        width or 100,
        terminal,
        {0, *range(2, numbers)},
        1,
        empty,
    )


def other_sites_note(site: str, others: list[tuple[str, int]]) -> str:
    """What `top` says when its site has no hits in the window but other sites do."""
    named = ", ".join(f"{safe_text(s)} ({n:,} hits)" for s, n in others[:10])
    more = f" and {len(others) - 10:,} more" if len(others) > 10 else ""
    return (
        f"(no hits for site {safe_text(site)} in this window; sites with hits: {named}{more}; "
        "choose one with --site)"
    )


def sites_table(rows: list[dict[str, Any]], width: int = 100, terminal: bool = False) -> str:
    cells = [
        [
            safe_text(r["site"]),
            f"{r['today']:,}",
            "yes" if r["live"] else "no",
            f"{r['stored_days']:,}",
            f"{r['first_day']} .. {r['last_day']}" if r["first_day"] else "-",
        ]
        for r in rows
    ]
    names = ["site", "today", "live", "stored days", "stored"]
    head = [f"{len(rows):,} site(s): today's hits live; days rolled up into the store"]
    return render_table(head, names, cells, width, terminal, {1, 3}, 0, "(no sites seen yet)")


def sites_csv(rows: list[dict[str, Any]], terminal: bool = False) -> str:
    names = ["site", "today", "live", "stored_days", "first_day", "last_day"]
    out: list[list[Any]] = [names]
    out += [[r[n] if r[n] is not None else "" for n in names] for r in rows]
    return csv_text(out, terminal)


def ratio_text(value: float | None) -> str:
    """A ratio in a table: `-` where a row lacks a part; 4 significant digits or so."""
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


# --- recent ----------------------------------------------------------------------------


def recent_json(site: str, items: list[dict[str, Any]], terminal: bool = False) -> str:
    return dump_json({"site": site, "recent": items}, terminal)


def recent_csv(items: list[dict[str, Any]], terminal: bool = False) -> str:
    fields = ("time", "path", "status", "bytes", "agent", "bot")
    rows: list[list[Any]] = [list(fields)]
    for item in items:
        rows.append([item[f] for f in fields[:-1]] + ["true" if item["bot"] else "false"])
    return csv_text(rows, terminal)


def recent_table(
    site: str, items: list[dict[str, Any]], width: int | None = None, terminal: bool = False
) -> str:
    rows = []
    for item in items:
        agent = safe_text(str(item["agent"]))
        if item["bot"] and "bot" not in agent:
            agent += " (bot)"
        rows.append(
            [
                str(item["time"]).replace("T", " "),
                safe_text(str(item["status"])),
                f"{item['bytes']:,}",
                safe_text(str(item["path"])),
                agent[:40],
            ]
        )
    head = [f"site {safe_text(site)}  last {len(items)} requests, newest first"]
    return render_table(
        head,
        ["time", "status", "bytes", "path", "agent"],
        rows,
        width or 100,
        terminal,
        {1, 2},
        3,
        "(no recent requests)",
    )


# --- hits ------------------------------------------------------------------------------


def hits_json(report: dict[str, Any], terminal: bool = False) -> str:
    return dump_json(report, terminal)


def hits_csv(report: dict[str, Any], terminal: bool = False) -> str:
    rows: list[list[Any]] = [["date", "hits", "source"]]
    rows += [[day["date"], day["hits"], day["source"]] for day in report["days"]]
    return csv_text(rows, terminal)


def hits_table(report: dict[str, Any], width: int | None = None, terminal: bool = False) -> str:
    dim = next(d for d in ("object", "prefix", "path") if d in report)
    days = report["days"]
    head = [
        f"site {safe_text(report['site'])}  {dim} {safe_text(report[dim])}",
        f"today {report['today']:,}  last {len(days)} days {report['total']:,}  "
        f"{sparkline([d['hits'] for d in days], 60)}",
    ]
    rows = [[day["date"], f"{day['hits']:,}", day["source"]] for day in days]
    return render_table(head, ["date", "hits", "source"], rows, width or 100, terminal, {1}, 0, "")


# --- visitors, funnel, retention ---------------------------------------------------------

VISITORS_JSON_KEYS = ("expr", "window", "total", "per")


def visitors_json(report: dict[str, Any], terminal: bool = False) -> str:
    return dump_json({k: report[k] for k in VISITORS_JSON_KEYS}, terminal)


def _visitor_rows(report: dict[str, Any]) -> list[tuple[str, int]]:
    """(start, visitors) per bucket; the whole window's when there are no buckets."""
    if report["per"]:
        return [(p["start"], p["visitors"]) for p in report["per"]]
    return [(report["window"]["start"], report["total"])]


def visitors_csv(report: dict[str, Any], terminal: bool = False) -> str:
    rows: list[list[Any]] = [["start", "visitors"]]
    rows += [[start, n] for start, n in _visitor_rows(report)]
    return csv_text(rows, terminal)


def visitors_table(report: dict[str, Any], width: int | None = None, terminal: bool = False) -> str:
    w = report["window"]
    head = [
        f"{_when(w['start'])} .. {_when(w['end'])} ({w['source']})  "
        f"site {safe_text(report['site'])}  visitors of {safe_text(report['expr'])}",
        f"visitors {report['total']:,}  " + sparkline([p["visitors"] for p in report["per"]], 60),
    ]
    rows = [[_when(start), f"{n:,}"] for start, n in _visitor_rows(report)]
    return render_table(head, ["start", "visitors"], rows, width or 100, terminal, {1}, 0, "")


def funnel_json(report: dict[str, Any], terminal: bool = False) -> str:
    return dump_json({"window": report["window"], "steps": report["steps"]}, terminal)


def _funnel_rows(report: dict[str, Any]) -> list[tuple[int, str, int, float, int]]:
    """(step, event, visitors, share of the first step, drop from the step before)."""
    steps = report["steps"]
    first = steps[0]["visitors"] if steps else 0
    out = []
    for i, s in enumerate(steps):
        before = steps[i - 1]["visitors"] if i else s["visitors"]
        share = s["visitors"] / first if first else 0.0
        out.append((i + 1, s["event"], s["visitors"], share, before - s["visitors"]))
    return out


def funnel_csv(report: dict[str, Any], terminal: bool = False) -> str:
    rows: list[list[Any]] = [["step", "event", "visitors", "share", "drop"]]
    rows += [[n, e, v, f"{share:.4f}", drop] for n, e, v, share, drop in _funnel_rows(report)]
    return csv_text(rows, terminal)


def funnel_table(report: dict[str, Any], width: int | None = None, terminal: bool = False) -> str:
    w = report["window"]
    within = report.get("within")
    head = [
        f"{_when(w['start'])} .. {_when(w['end'])} ({w['source']})  "
        f"site {safe_text(report['site'])}  funnel"
        + (f", each step within {_span(within)} of the one before" if within else "")
    ]
    rows = [
        [str(n), safe_text(e), f"{v:,}", f"{share * 100:.1f}%", f"{drop:,}" if n > 1 else ""]
        for n, e, v, share, drop in _funnel_rows(report)
    ]
    names = ["#", "event", "visitors", "of first", "drop"]
    return render_table(head, names, rows, width or 100, terminal, {0, 2, 3, 4}, 1, "")


def _span(seconds: int) -> str:
    """3600 -> 1h, 604800 -> 7d, 90 -> 90s: as --within takes it."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def retention_json(report: dict[str, Any], terminal: bool = False) -> str:
    return dump_json({"cohorts": report["cohorts"]}, terminal)


def retention_csv(report: dict[str, Any], terminal: bool = False) -> str:
    most = max((len(c["back"]) for c in report["cohorts"]), default=0)
    rows: list[list[Any]] = [["start", "size", *(f"back_{i}" for i in range(1, most + 1))]]
    rows += [[c["start"], c["size"], *c["back"]] for c in report["cohorts"]]
    return csv_text(rows, terminal)


# Shades of a retention cell on a terminal, from none back to all back.
SHADES = ("grey11", "grey23", "dark_green", "green4", "green3", "green1")


def retention_table(
    report: dict[str, Any], width: int | None = None, terminal: bool = False
) -> str:
    """The cohort table: each cohort's size and the share back in each later period,
    shaded by that share on a terminal."""
    cohorts = report["cohorts"]
    most = max((len(c["back"]) for c in cohorts), default=0)
    names = ["cohort", "size", *(f"+{i}" for i in range(1, most + 1))]
    rows = []
    for c in cohorts:
        # an empty cohort has no share back (0 of 0): "-", as the dashboard shows none
        shares = [n / c["size"] if c["size"] else None for n in c["back"]]
        rows.append((c["start"], f"{c['size']:,}", shares))
    events = ", ".join(report["events"])
    head = (
        f"site {safe_text(report['site'])}  retention by {report['cohort']}  of {safe_text(events)}"
    )
    if not terminal:
        cells = [
            [s, size, *(_share(x) for x in shares), *[""] * (most - len(shares))]
            for s, size, shares in rows
        ]
        right = set(range(1, len(names)))
        return render_table([head], names, cells, width or 100, False, right, 0, "(no cohorts)")
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for i, name in enumerate(names):
        table.add_column(name, justify="left" if i == 0 else "right", no_wrap=True)
    for start, size, shares in rows:
        shaded = [Text(_share(x), style="" if x is None else f"on {_shade(x)}") for x in shares]
        table.add_row(start, size, *shaded, *[""] * (most - len(shares)))
    buf = io.StringIO()
    console = _console(buf, width or 100)
    console.print(head, style="bold")
    console.print()
    console.print(table)
    return "".join(line.rstrip() + "\n" for line in buf.getvalue().splitlines())


def _share(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


def _shade(share: float) -> str:
    return SHADES[min(len(SHADES) - 1, int(share * (len(SHADES) - 1) + 0.5))]
