"""csflow's SDK: ``Client`` and the parts behind it (config, registry, storage, secrets)."""

from csflow.sdk.client import Client

__all__ = ["Client"]
