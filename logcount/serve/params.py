"""The HTTP API's parameters: one table gives each its OpenAPI schema, its description and
its check, so the document at /openapi.json and what the server accepts cannot differ.

A value that breaks its schema is a `BadParameter` naming the parameter (HTTP 400); what
only the library can judge (a window's spelling, a status filter) is checked by calling
the library function the report itself calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from logcount.dimensions import DIMENSION_NAMES, GRANULARITY_NAMES, MAX_DAYS, SORT_NAMES
from logcount.read.journeys import COHORTS, PER

MAX_TEXT = 8192  # a path or an object as a client may send it (the counted ones are 512)
MAX_STEPS = 20  # a funnel's steps: each is a read of every bucket of the window


class BadParameter(Exception):
    """A parameter the API refuses: HTTP 400 {"error": ..., "parameter": name}."""

    def __init__(self, parameter: str, message: str):
        super().__init__(message)
        self.parameter = parameter


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    schema: dict[str, Any]
    where: str = "query"  # or "path"
    example: Any = None
    # Checks beyond the schema, with the other values: raises LogcountError (its message
    # is the error's)
    check: Callable[[Any, Mapping[str, Any], Any], Any] | None = field(default=None)
    key: str = ""  # its key in PARAMS when another parameter has its name
    required: bool = False  # a query parameter without a default (a path's always is)

    def openapi(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "in": self.where,
            "required": self.where == "path" or self.required,
            "description": self.description,
            "schema": self.schema,
        }
        if self.example is not None:
            doc["example"] = self.example
        return doc

    def parse(self, raw: str | None) -> Any:
        """The value of `raw` (None when absent: the schema's default), or BadParameter."""
        schema = self.schema
        if raw is None:
            if self.required:
                raise BadParameter(self.name, f"{self.name} is required")
            return schema.get("default")
        kind = schema.get("type")
        if kind == "integer":
            text = raw.strip()
            # ASCII digits only: "²".isdigit() holds, and int() refuses it
            if not (text.isascii() and text.lstrip("-").isdigit() and len(text) <= 12):
                raise BadParameter(self.name, f"{self.name} must be an integer")
            value: Any = int(text)
            low, high = schema.get("minimum"), schema.get("maximum")
            if (low is not None and value < low) or (high is not None and value > high):
                raise BadParameter(self.name, f"{self.name} must be from {low} to {high}")
            return value
        if kind == "boolean":
            if raw not in ("true", "false"):
                raise BadParameter(self.name, f"{self.name} must be true or false")
            return raw == "true"
        if "enum" in schema and raw not in schema["enum"]:
            choices = ", ".join(schema["enum"])
            raise BadParameter(self.name, f"{self.name} {raw!r} is not one of {choices}")
        if len(raw) > schema.get("maxLength", MAX_TEXT) or len(raw) < schema.get("minLength", 0):
            raise BadParameter(self.name, f"{self.name} is too long or empty")
        if "\x00" in raw:
            raise BadParameter(self.name, f"{self.name} holds a NUL character")
        return raw


def _status_check(value: Any, args: Mapping[str, Any], counts: Any) -> None:
    from logcount.read.drill import status_filter

    status_filter(value, args.get("by") or "path")


def _sort_check(value: Any, args: Mapping[str, Any], counts: Any) -> None:
    from logcount.read.report import check_sort

    check_sort(value, args.get("by") or "path")


def _by_check(value: Any, args: Mapping[str, Any], counts: Any) -> None:
    from logcount.errors import LogcountError

    config = counts.config
    if value == "client" and not (config.count_clients or config.store_clients):
        raise LogcountError("client addresses are not counted ([privacy] count_clients)")


def _window_check(value: Any, args: Mapping[str, Any], counts: Any) -> None:
    counts.window(value)


def _object_check(value: Any, args: Mapping[str, Any], counts: Any) -> None:
    from logcount.errors import LogcountError

    if ":" not in value.strip(":"):
        raise LogcountError(f"object {value!r} is not TYPE:ID")
    if args.get("path") is not None:
        raise LogcountError("give path or object, not both")


def event_list(text: str) -> list[str]:
    """`events=login,song_played,paid`: the funnel's steps in order."""
    return [name.strip() for name in text.split(",")]


def _known(names: list[str], counts: Any) -> None:
    from logcount.read.journeys import ExpressionError

    known = counts.event_names()
    for name in names:
        if name not in known:
            configured = ", ".join(known) or "none configured: see [[event]]"
            raise ExpressionError(f"unknown event {name!r} (events: {configured})")


def _events_check(value: Any, args: Mapping[str, Any], counts: Any) -> None:
    from logcount.errors import LogcountError

    names = event_list(value)
    if len(names) > MAX_STEPS:
        raise LogcountError(f"at most {MAX_STEPS} steps")
    if "" in names:
        raise LogcountError(f"events {value!r}: an empty name (give them as a,b,c)")
    _known(names, counts)


def _event_check(value: Any, args: Mapping[str, Any], counts: Any) -> None:
    _known([value], counts)


def _expr_check(value: Any, args: Mapping[str, Any], counts: Any) -> None:
    from logcount.read.journeys import parse_expression

    parse_expression(value, counts.event_names())


def _within_check(value: Any, args: Mapping[str, Any], counts: Any) -> None:
    from logcount.config import parse_duration

    parse_duration(value, "within")


def _text(maximum: int = MAX_TEXT) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": maximum}


def _integer(low: int, high: int, default: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": low, "maximum": high}
    if default is not None:
        schema["default"] = default
    return schema


WINDOWS = "5m, 15m, 1h, 6h, 24h, today, yesterday, 7d, 30d, YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD"

PARAMS: dict[str, Param] = {
    p.key or p.name: p
    for p in (
        Param(
            "window",
            f"The window, as `logcount top --window`: {WINDOWS}.",
            {**_text(64), "default": "today"},
            example="1h",
            check=_window_check,
        ),
        Param(
            "by",
            "The dimension rows are counted by.",
            {"type": "string", "enum": list(DIMENSION_NAMES), "default": "path"},
            check=_by_check,
        ),
        Param("site", "The site (virtual host); default: the configured site.", _text(255)),
        Param("limit", "How many rows.", _integer(1, 10_000, 20)),
        Param(
            "status",
            "With by=path: the paths of one error status (404) or class (4xx, 5xx).",
            {"type": "string", "minLength": 1, "maxLength": 16},
            example="404",
            check=_status_check,
        ),
        Param(
            "sort",
            "Rank rows by hits, bytes or time (the sum of response times).",
            {"type": "string", "enum": list(SORT_NAMES), "default": "hits"},
            check=_sort_check,
        ),
        Param(
            "details",
            "true: each row's trend over the window and the current rate too (the "
            "dashboard's extras).",
            {"type": "boolean", "default": False},
        ),
        Param("path", "A request path, normalised as the readers count it.", _text()),
        Param(
            "object",
            "An application object, TYPE:ID (from the routes).",
            _text(),
            example="press_release:42",
            check=_object_check,
        ),
        Param("days", "Days of history, today included.", _integer(1, MAX_DAYS, 30)),
        Param(
            "granularity",
            "The buckets of the points; default: a day by hours, minutes within the "
            "minute buckets' life, days beyond.",
            {"type": "string", "enum": list(GRANULARITY_NAMES)},
        ),
        Param(
            "expr",
            "A set expression of the configured events: & (both), | (either), - (the "
            "first and not the second), parentheses (`logcount visitors EXPR`).",
            _text(1000),
            example="login & song_played",
            check=_expr_check,
            required=True,
        ),
        Param(
            "per",
            "Count per hour, day or week of the window too (default: the whole window only).",
            {"type": "string", "enum": list(PER)},
        ),
        Param(
            "events",
            "The funnel's steps: configured events in order, comma-separated.",
            _text(1300),
            example="login,song_played,paid",
            check=_events_check,
            required=True,
        ),
        Param(
            "within",
            "Each step at most this long after the one before: 1h, 1d, 7d (default: "
            "anywhere in the window).",
            _text(32),
            example="1h",
            check=_within_check,
        ),
        Param(
            "event",
            "The event (default: any configured event).",
            _text(64),
            example="login",
            check=_event_check,
        ),
        Param(
            "cohort",
            "The cohorts' period: weeks from Monday, calendar months, or days.",
            {"type": "string", "enum": list(COHORTS), "default": "week"},
        ),
        Param("periods", "How many periods, the current one included.", _integer(1, 60, 8)),
        Param("year", "The year.", _integer(1001, 9998), where="path", example=2026),
        Param("month", "The month, 1-12.", _integer(1, 12), where="path", example=2),
        Param("day", "The day of the month.", _integer(1, 31), where="path", example=14),
        Param("hour", "The hour, 0-23.", _integer(0, 23), where="path", example=9),
        Param("site", "The site.", _text(255), where="path", example="acme", key="stats_site"),
    )
}


def parse_args(
    names: tuple[str, ...], query: Mapping[str, str], path: Mapping[str, str], counts: Any
) -> dict[str, Any]:
    """The parameters `names` (keys of PARAMS) parsed and checked, by their names on the
    wire; BadParameter names the first one that is wrong."""
    from logcount.errors import LogcountError, RedisUnavailable, StoreError

    params = [PARAMS[key] for key in names]
    args: dict[str, Any] = {}
    for param in params:
        raw = path.get(param.name) if param.where == "path" else query.get(param.name)
        args[param.name] = param.parse(raw)
    for param in params:
        value = args[param.name]
        if param.check is not None and value is not None:
            try:
                param.check(value, args, counts)
            except (RedisUnavailable, StoreError):
                raise
            except LogcountError as exc:
                raise BadParameter(param.name, str(exc)) from None
    return args
