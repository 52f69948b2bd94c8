"""The model registry: each model's versions (content tags) and its moving tags.

A model has versions, one per content tag, each with its build record, and
named tags (``latest``, ``staging``) that point at versions. The embedded
registry keeps one JSON document per model under
``$CSFLOW_HOME/registry/OWNER/TITLE.json``. Every change happens under an
exclusive file lock and is written atomically, so tags move atomically and two
publishes at once cannot corrupt it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from csflow.sdk import names
from csflow.sdk.errors import NotFound
from csflow.sdk.fileutil import file_lock, write_json_atomic

MOVING_TAGS = ("latest", "staging")


def version_dir(home: Path, owner: str, title: str, tag: str) -> Path:
    """Where a version's environment (embedded engine) lives."""
    return home / "envs" / owner / title / names.check_tag(tag)


@dataclass(frozen=True)
class ModelVersion:
    owner: str
    title: str
    tag: str
    record: dict[str, Any]
    path: Path

    @property
    def name(self) -> str:
        return f"{self.owner}/{self.title}"

    @property
    def python(self) -> Path:
        return self.path / "venv" / "bin" / "python"

    @property
    def source(self) -> Path:
        return self.path / "src"

    @property
    def config(self) -> dict[str, Any]:
        return self.record["config"]


class Registry:
    def __init__(self, home: Path):
        self.home = home
        self.root = home / "registry"

    def _path(self, owner: str, title: str) -> Path:
        names.check_project_part("owner", owner)
        names.check_project_part("title", title)
        return self.root / owner / f"{title}.json"

    def document(self, owner: str, title: str) -> dict[str, Any]:
        path = self._path(owner, title)
        if not path.is_file():
            return {"owner": owner, "title": title, "versions": {}, "tags": {}, "history": []}
        return json.loads(path.read_text())

    def change(self, owner: str, title: str, edit: Callable[[dict[str, Any]], Any]) -> Any:
        """Apply ``edit`` to the model's document under the lock; write it atomically."""
        path = self._path(owner, title)
        with file_lock(self.root / ".locks" / f"{owner}-{title}"):
            doc = self.document(owner, title)
            result = edit(doc)
            write_json_atomic(path, doc)
        return result

    def add_version(self, record: dict[str, Any]) -> None:
        tag = names.check_tag(record["tag"])

        def edit(doc: dict[str, Any]) -> None:
            doc["versions"].setdefault(tag, {**record, "registered": time.time()})

        self.change(record["owner"], record["title"], edit)

    def move_tag(self, owner: str, title: str, tag_name: str, tag: str) -> str | None:
        """Point ``tag_name`` at version ``tag``; return what it pointed at before."""
        names.check_tag(tag_name)

        def edit(doc: dict[str, Any]) -> str | None:
            if tag not in doc["versions"]:
                raise NotFound(f"{owner}/{title} has no version {tag!r}")
            previous = doc["tags"].get(tag_name)
            doc["tags"][tag_name] = tag
            doc["history"].append(
                {"tag": tag_name, "from": previous, "to": tag, "at": time.time()}
            )
            return previous

        return self.change(owner, title, edit)

    def models(self) -> list[tuple[str, str]]:
        if not self.root.is_dir():
            return []
        return sorted(
            (p.parent.name, p.stem) for p in self.root.glob("*/*.json") if p.is_file()
        )

    def resolve(self, owner: str, title: str, tag: str) -> ModelVersion:
        """A tag name (``latest``) or a content tag -> a built version."""
        names.check_tag(tag)
        doc = self.document(owner, title)
        concrete = doc["tags"].get(tag, tag)
        record = doc["versions"].get(concrete)
        if record is None:
            known = sorted(set(doc["tags"]) | set(doc["versions"]))
            hint = f" (known: {', '.join(known)})" if known else ""
            raise NotFound(f"unknown tag {tag!r} for model {owner}/{title}{hint}")
        return ModelVersion(owner, title, concrete, record, version_dir(self.home, owner, title, concrete))
