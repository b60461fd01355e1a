"""The route table: URL path -> (object type, object id).

Routes come from the config file, either Django-style patterns with converters
(`/press/<slug:slug>/<int:id>/`) or regexes with a named group `id`. The first route that
matches wins. A Django project's own URLconf can resolve paths instead (`django_settings`).

As in Django, a pattern matches the whole path (never the query string, even one kept by
`normalize.keep_query`) and an `<int:...>` id is a number ("/press/042/" is press:42);
a regex is searched in the normalised path, query included, so that
`^/article\\.php\\?id=(?P<id>[0-9]+)` works with `keep_query = ["id"]`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from logcount.errors import ConfigError

# Django's path converters, as regexes.
CONVERTERS = {
    "int": r"[0-9]+",
    "str": r"[^/]+",
    "slug": r"[-a-zA-Z0-9_]+",
    "uuid": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    "path": r".+",
}
_PLACEHOLDER = re.compile(r"<(?:(?P<conv>[a-z_]+):)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)>")
_TYPE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
MAX_TYPE_BYTES = 64  # an object type's name (ASCII); classify.MAX_OBJECT_BYTES caps "type:id"


def pattern_to_regex(pattern: str) -> str:
    """Django `path()` syntax to an anchored regex with named groups.

    The leading "/" may be left out, as in a Django URLconf ("press/<int:id>/").
    """
    if not pattern.startswith("/"):
        pattern = "/" + pattern
    out = ["^"]
    pos = 0
    for m in _PLACEHOLDER.finditer(pattern):
        out.append(_literal(pattern[pos : m.start()]))
        conv = m.group("conv") or "str"
        if conv not in CONVERTERS:
            raise ValueError(f"unknown converter {conv!r} (use one of {', '.join(CONVERTERS)})")
        out.append(f"(?P<{m.group('name')}>{CONVERTERS[conv]})")
        pos = m.end()
    out.append(_literal(pattern[pos:]))
    out.append("$")
    return "".join(out)


def _literal(text: str) -> str:
    if "<" in text or ">" in text:
        raise ValueError(
            "a placeholder is written <name> or <converter:name>, "
            "a name being letters, digits and _"
        )
    return re.escape(text)


def _int_groups(pattern: str) -> frozenset[str]:
    return frozenset(
        m.group("name") for m in _PLACEHOLDER.finditer(pattern) if m.group("conv") == "int"
    )


@dataclass(frozen=True)
class Route:
    object_type: str
    regex: re.Pattern[str]
    id_group: str
    source: str  # the pattern or regex as written, for messages
    whole_path: bool = False  # a pattern: matched against the path without its query
    int_id: bool = False  # <int:id>: "042" is 42, as Django's converter gives it

    def match(self, path: str) -> str | None:
        if self.whole_path:
            path = path.partition("?")[0]
        m = self.regex.search(path)
        if m is None:
            return None
        ident = m.group(self.id_group)
        if ident is None:  # an optional group that did not take part
            return None
        if self.int_id:
            ident = str(int(ident))
        return f"{self.object_type}:{ident}"


class RouteTable:
    """Ordered routes; `resolve(path)` gives "type:id" or None."""

    def __init__(
        self, routes: Sequence[Route], resolver: Callable[[str], str | None] | None = None
    ):
        self.routes = tuple(routes)
        self._resolver = resolver

    @classmethod
    def from_config(
        cls, entries: Sequence[Mapping[str, Any]], django_settings: str = ""
    ) -> RouteTable:
        routes = [_route_from_entry(i, e) for i, e in enumerate(entries, 1)]
        resolver = None
        if django_settings:
            from logcount.count.django_routes import django_resolver

            resolver = django_resolver(django_settings)
        return cls(routes, resolver)

    def __len__(self) -> int:
        return len(self.routes)

    def resolve(self, path: str) -> str | None:
        for route in self.routes:
            found = route.match(path)
            if found is not None:
                return found
        if self._resolver is not None:
            return self._resolver(path.partition("?")[0])  # a URLconf never sees the query
        return None


def _route_from_entry(n: int, entry: Mapping[str, Any]) -> Route:
    where = f"route #{n}"
    unknown = set(entry) - {"pattern", "regex", "object", "id"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    obj = entry.get("object")
    if obj is None:
        raise ConfigError(f"{where}: missing 'object', the object type, like \"press_release\"")
    if not isinstance(obj, str) or not _TYPE_NAME.match(obj):
        raise ConfigError(
            f"{where}: 'object' must name the object type with letters, digits, "
            f'_ . or -, like "press_release" (not {obj!r})'
        )
    if len(obj) > MAX_TYPE_BYTES:  # counted objects are capped in bytes: keep the type whole
        raise ConfigError(
            f"{where}: 'object' must be at most {MAX_TYPE_BYTES} bytes (not {len(obj)})"
        )
    has_pattern, has_regex = "pattern" in entry, "regex" in entry
    if has_pattern == has_regex:
        raise ConfigError(f"{where} ({obj}): give exactly one of 'pattern' or 'regex'")
    source = entry["pattern"] if has_pattern else entry["regex"]
    if not isinstance(source, str):
        raise ConfigError(
            f"{where} ({obj}): {'pattern' if has_pattern else 'regex'} must be a string"
        )
    try:
        text = pattern_to_regex(source) if has_pattern else source
        regex = re.compile(text)
    except (ValueError, re.error) as exc:
        raise ConfigError(
            f"{where} ({obj}): invalid {'pattern' if has_pattern else 'regex'} {source!r}: {exc}"
        ) from None
    id_group = entry.get("id")
    if id_group is None:
        id_group = next((g for g in ("id", "pk") if g in regex.groupindex), None)
    if not isinstance(id_group, str) or id_group not in regex.groupindex:
        groups = ", ".join(regex.groupindex) or "none"
        raise ConfigError(
            f"{where} ({obj}): {source!r} has no group named "
            f"{id_group if isinstance(id_group, str) else 'id'!r} to take the "
            f"object id from (named groups: {groups}; name one id, or set "
            f'id = "<group>")'
        )
    int_id = has_pattern and id_group in _int_groups(source)
    return Route(obj, regex, id_group, source, whole_path=has_pattern, int_id=int_id)
