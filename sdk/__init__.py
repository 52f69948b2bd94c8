"""csflow's SDK: ``Client``, the one API under the CLI and the webapp.

    from csflow.sdk import Client

Everything else lives in rooms below (``core``, ``dataplane``, ``registry``,
``argo``, ``ops``, ``builds``, ``backends``). ``Client`` is loaded on first
use, so a step program that imports ``csflow.sdk.core`` does not pay for the
backends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from csflow.sdk.client import Client

__all__ = ["Client"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from csflow.sdk.client import Client

        return Client
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
