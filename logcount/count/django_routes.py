"""Resolve paths with a Django project's own URLconf (optional: `pip install logcount[django]`).

The object type is the URL pattern's name and the id its `id` (or `pk`) keyword argument,
so `path("press/<int:id>/", ..., name="press_release")` gives "press_release:42". A path
that does not resolve, or resolves to a URL without a name or an id, has no object.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from logcount.errors import ConfigError


def django_resolver(settings_module: str) -> Callable[[str], str | None]:
    """Set Django up with `settings_module` and return path -> "urlname:id" | None."""
    try:
        import django
        from django.urls import Resolver404, resolve
    except ImportError:
        raise ConfigError(
            "django_settings is set but Django is not installed (pip install 'logcount[django]')"
        ) from None
    current = os.environ.get("DJANGO_SETTINGS_MODULE")
    if current and current != settings_module:
        raise ConfigError(
            f"django_settings {settings_module!r} differs from "
            f"DJANGO_SETTINGS_MODULE={current!r} already set in this process"
        )
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    try:
        django.setup()
    except ImportError as exc:
        raise ConfigError(
            f"django_settings {settings_module!r}: cannot import it ({exc}); "
            "is the project on PYTHONPATH?"
        ) from None
    except Exception as exc:  # ImproperlyConfigured and the project's own errors
        raise ConfigError(
            f"django_settings {settings_module!r}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None

    def resolve_path(path: str) -> str | None:
        try:
            match = resolve(path)
        except Resolver404:
            return None
        except Exception:  # a broken converter or view import must not stop counting
            return None
        name = match.url_name
        ident = match.kwargs.get("id", match.kwargs.get("pk"))
        if not name or ident is None:
            return None
        return f"{name}:{ident}"

    return resolve_path
