"""Routes: Django-style patterns and regexes to "type:id", first match wins, and one clear
ConfigError per mistake in a route."""

from __future__ import annotations

import re
from typing import Any

import pytest

from logcount.config import config_from_dict
from logcount.count.classify import Classifier
from logcount.count.routes import RouteTable
from logcount.errors import ConfigError

UUID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def table(*entries: dict[str, Any]) -> RouteTable:
    return RouteTable.from_config(entries)


@pytest.mark.parametrize(
    ("pattern", "path", "found"),
    [
        ("/press/<slug:slug>/<int:id>/", "/press/new-offices_2024/42/", "press_release:42"),
        ("/press/<slug:slug>/<int:id>/", "/press/new-offices/42", None),  # trailing / is part
        ("/press/<slug:slug>/<int:id>/", "/press/new offices/42/", None),  # not a slug
        ("/press/<slug:slug>/<int:id>/", "/press/x/4a/", None),  # not an int
        ("/press/<slug:slug>/<int:id>/", "/press/x/042/", "press_release:42"),  # int, as in Django
        ("/press/<slug:slug>/<int:id>/", "/en/press/x/42/", None),  # anchored at the start
        ("/press/<slug:slug>/<int:id>/", "/press/x/42/more", None),  # and at the end
        ("/u/<str:id>/", "/u/caf\u00e9 + co/", "press_release:caf\u00e9 + co"),
        ("/u/<str:id>/", "/u/a/b/", None),  # str stops at /
        ("/u/<id>/", "/u/abc/", "press_release:abc"),  # no converter: str
        ("/f/<path:id>", "/f/docs/a/b.pdf", "press_release:docs/a/b.pdf"),
        ("/o/<uuid:id>/", f"/o/{UUID}/", f"press_release:{UUID}"),
        ("/o/<uuid:id>/", f"/o/{UUID.upper()}/", None),  # Django's uuid is lower case
        ("/o/<uuid:pk>/", f"/o/{UUID}/", f"press_release:{UUID}"),  # pk when there is no id
        ("press/<int:id>/", "/press/7/", "press_release:7"),  # Django URLconf style, no leading /
        ("/a.b/<int:id>", "/a.b/1", "press_release:1"),  # literal parts are not regexes
        ("/a.b/<int:id>", "/axb/1", None),
        ("/p/<int:id>/", "/p/7/?page=2", "press_release:7"),  # a kept query is not matched
    ],
)
def test_patterns(pattern: str, path: str, found: str | None) -> None:
    assert table({"pattern": pattern, "object": "press_release"}).resolve(path) == found


def test_regexes_and_explicit_id_group() -> None:
    routes = table(
        {"regex": r"^/products/(?P<id>[0-9]+)(/|$)", "object": "product"},
        {"regex": r"^/article\.php\?id=(?P<id>[0-9]+)", "object": "article"},
        {"regex": r"/tag/(?P<name>[a-z]+)$", "object": "tag", "id": "name"},
        {"pattern": "/cat/<slug:slug>/", "object": "category", "id": "slug"},
    )
    assert routes.resolve("/products/12") == "product:12"
    assert routes.resolve("/products/12/specs") == "product:12"
    assert routes.resolve("/products/12x") is None
    assert routes.resolve("/products/012") == "product:012"  # a regex id is kept as written
    assert routes.resolve("/article.php?id=5") == "article:5"  # with keep_query = ["id"]
    assert routes.resolve("/blog/tag/python") == "tag:python"  # a regex is searched
    assert routes.resolve("/cat/red-shoes/") == "category:red-shoes"
    assert routes.resolve("/nothing") is None
    assert len(routes) == 4


def test_first_match_wins() -> None:
    routes = table(
        {"pattern": "/press/archive/<int:id>/", "object": "archive"},
        {"pattern": "/press/<slug:section>/<int:id>/", "object": "press_release"},
        {"regex": r"^/press/(?P<id>.+)$", "object": "press_page"},
    )
    assert routes.resolve("/press/archive/3/") == "archive:3"
    assert routes.resolve("/press/news/3/") == "press_release:3"
    assert routes.resolve("/press/news/") == "press_page:news/"


def test_classifier_resolves_normalised_paths() -> None:
    config = config_from_dict({"route": [{"pattern": "/press/<int:id>/", "object": "press"}]})
    cl = Classifier(config)
    assert cl.object_of(cl.path_of_request(b"GET /press/./%34%32/?utm=x HTTP/1.1")) == "press:42"
    assert cl.object_of("-") is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"pattern": "/x/<int:id>/"}, "route #1: missing 'object', the object type"),
        ({"pattern": "/x/<int:id>/", "object": "two words"}, "'object' must name the object type"),
        ({"pattern": "/x/<int:id>/", "object": 3}, "'object' must name the object type"),
        ({"object": "thing"}, "route #1 (thing): give exactly one of 'pattern' or 'regex'"),
        (
            {"object": "thing", "pattern": "/x/<int:id>/", "regex": "^/x/(?P<id>[0-9]+)"},
            "route #1 (thing): give exactly one of 'pattern' or 'regex'",
        ),
        (
            {"object": "thing", "regex": "^/broken/(?P<id>[0-9]+$"},
            "route #1 (thing): invalid regex '^/broken/(?P<id>[0-9]+$': missing ), unterminated "
            "subpattern at position 9",
        ),
        (
            {"object": "thing", "regex": "^/x/([0-9]+)"},
            "route #1 (thing): '^/x/([0-9]+)' has no group named 'id' to take the object id from "
            '(named groups: none; name one id, or set id = "<group>")',
        ),
        (
            {"object": "thing", "pattern": "/x/<slug:slug>/<int:num>/"},
            "has no group named 'id' to take the object id from (named groups: slug, num;",
        ),
        (
            {"object": "thing", "regex": "^/x/(?P<num>[0-9]+)", "id": "number"},
            "has no group named 'number'",
        ),
        (
            {"object": "thing", "pattern": "/x/<float:id>/"},
            "route #1 (thing): invalid pattern '/x/<float:id>/': unknown converter 'float' "
            "(use one of int, str, slug, uuid, path)",
        ),
        (
            {"object": "thing", "pattern": "/x/< int:id >/"},
            "invalid pattern '/x/< int:id >/': a placeholder is written <name> or <converter:name>",
        ),
        ({"object": "thing", "pattern": "/x/<int:id>/<slug:id>/"}, "invalid pattern"),
        ({"object": "thing", "pattern": 42}, "route #1 (thing): pattern must be a string"),
        ({"object": "thing", "pattern": "/x/<id>/", "name": "x"}, "route #1: unknown key(s) name"),
    ],
)
def test_one_clear_error_per_mistake(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        table(entry)
    assert "\n" not in str(err.value)


def test_error_names_the_route_by_position() -> None:
    with pytest.raises(ConfigError, match=r"^route #2 \(b\): give exactly one"):
        table({"pattern": "/a/<int:id>/", "object": "a"}, {"object": "b"})
