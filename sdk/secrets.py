"""Secrets, by name: each model's own, and the cluster's.

Values live only in a secret store. The embedded engine's store is a local
file per scope, readable by its owner only (mode 0600); a cluster uses Google
Secret Manager. Nothing else in csflow holds a value: manifests, run records
and logs carry names.
"""

from __future__ import annotations

import json
from pathlib import Path

from csflow.sdk import names
from csflow.sdk.errors import NotFound
from csflow.sdk.fileutil import file_lock, write_json_atomic

SERVICE_SCOPE = "_service"


class LocalSecretStore:
    def __init__(self, home: Path):
        self.root = home / "secrets"

    def _path(self, scope: str) -> Path:
        return self.root / f"{scope}.json"

    def _scope(self, owner: str | None, title: str | None) -> str:
        if owner is None:
            return SERVICE_SCOPE
        return f"{names.check_project_part('owner', owner)}__{names.check_project_part('title', title or '')}"

    def _read(self, scope: str) -> dict[str, str]:
        path = self._path(scope)
        return json.loads(path.read_text()) if path.is_file() else {}

    def set(self, name: str, value: str, owner: str | None = None, title: str | None = None) -> None:
        scope = self._scope(owner, title)
        names.check_env_name(name)
        with file_lock(self.root / ".lock"):
            values = self._read(scope)
            values[name] = value
            self.root.mkdir(parents=True, exist_ok=True)
            self.root.chmod(0o700)
            write_json_atomic(self._path(scope), values, mode=0o600)

    def get(self, name: str, owner: str | None = None, title: str | None = None) -> str:
        values = self._read(self._scope(owner, title))
        if name not in values:
            raise NotFound(f"no secret {name!r}")
        return values[name]

    def list(self, owner: str | None = None, title: str | None = None) -> list[str]:
        return sorted(self._read(self._scope(owner, title)))

    def delete(self, name: str, owner: str | None = None, title: str | None = None) -> None:
        scope = self._scope(owner, title)
        with file_lock(self.root / ".lock"):
            values = self._read(scope)
            if values.pop(name, None) is None:
                raise NotFound(f"no secret {name!r}")
            write_json_atomic(self._path(scope), values, mode=0o600)

    def values(self, owner: str, title: str, wanted: list[str]) -> dict[str, str]:
        """The model's declared secrets that are set (for its process environment)."""
        stored = self._read(self._scope(owner, title))
        return {name: stored[name] for name in wanted if name in stored}
