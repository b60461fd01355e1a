"""logcount: web-server access logs into live (Redis) and durable (SQL) counts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Counts", "__version__"]

if TYPE_CHECKING:
    from logcount.read.api import Counts


def __getattr__(name: str) -> Any:
    # Imported lazily: `logcount pipe` must not pay for the read-side modules.
    if name == "Counts":
        from logcount.read.api import Counts

        return Counts
    raise AttributeError(name)
