"""The inputs cache: ``get_version`` and ``get_inputs`` for the default meta
parameters, per model version.

The C/S webapp draws a model's input form from ``get_inputs``; computing it
means importing the model (Tax-Calculator: seconds), while the webapp waited
1.7 s. Publishing computes it once per version (the contract tests call it
anyway) and the ``deploy`` step stores it here, so the form loads at once.
Entries are keyed by content tag, which names immutable content, so moving
``latest`` (deploy, promote, rollback) never makes an entry stale.

Layout: ``$CSFLOW_HOME/inputs/OWNER/TITLE/TAG.json`` =
``{"version", "meta_param_dict", "inputs", "cached_at"}``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from csflow.sdk.core import names
from csflow.sdk.core.contract import flat_meta_param_dict
from csflow.sdk.core.fileutil import write_json_atomic


class InputsCache:
    def __init__(self, home: Path):
        self.root = home / "inputs"

    def path(self, owner: str, title: str, tag: str) -> Path:
        names.check_project_part("owner", owner)
        names.check_project_part("title", title)
        return self.root / owner / title / f"{names.check_tag(tag)}.json"

    def put(self, owner: str, title: str, tag: str, entry: dict[str, Any]) -> Path:
        path = self.path(owner, title, tag)
        write_json_atomic(path, {**entry, "meta_param_dict": {}, "cached_at": time.time()})
        return path

    def get(self, owner: str, title: str, tag: str) -> dict[str, Any] | None:
        path = self.path(owner, title, tag)
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None


def default_meta(entry: dict[str, Any]) -> dict[str, Any]:
    """The default meta parameters of a cached entry, flat: ``{"year": 2024}``."""
    defaults = {}
    for name, spec in entry["inputs"].get("meta_parameters", {}).items():
        if name == "schema" or not isinstance(spec, dict):
            continue
        value = spec.get("value")
        if isinstance(value, list) and value and isinstance(value[0], dict) and "value" in value[0]:
            value = value[0]["value"]
        defaults[name] = value
    return defaults


def serves(entry: dict[str, Any], meta_param_dict: dict[str, Any]) -> bool:
    """Whether a cached entry answers ``meta_param_dict``: no meta parameters, or
    only their default values."""
    wanted = flat_meta_param_dict(meta_param_dict or {})
    defaults = default_meta(entry)
    return all(name in defaults and defaults[name] == value for name, value in wanted.items())
