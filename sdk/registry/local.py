"""The model registry: each model's versions (content tags) and its moving tags.

A model has versions, one per content tag, each with its build record, and
named tags (``latest``, ``staging``) that point at versions. The embedded
registry keeps one JSON document per model under
``$CSFLOW_HOME/registry/OWNER/TITLE.json``. Every change happens under an
exclusive file lock and is written atomically, so tags move atomically and two
publishes at once cannot corrupt it.

``open_registry(url, home)`` picks where the documents live: under
``$CSFLOW_HOME`` (the default), in another folder (``file://``), or on Cloud
Storage (``gs://``, ``sdk/registry/gcs.py``), where the push and deploy pods
of a cluster share them. Only ``document`` and ``change`` differ between them.

Publishing records a version (``record_version``: when, from what, how its
contract tests went), moves ``staging`` to it, then ``latest``. Every tag move
is kept in the document's ``history``; ``rollback`` moves a tag back to the
target it had before its current one, following that history (a rollback
undoes a move, so rolling back twice goes two versions back, not back and
forth).

    {"owner": "PSLmodels", "title": "Tax-Cruncher",
     "versions": {"42ce5647434e": {...build record...}},
     "tags": {"latest": "42ce5647434e", "staging": "42ce5647434e"},
     "history": [{"tag": "latest", "from": null, "to": "42ce5647434e",
                  "action": "deploy", "run": "...", "at": 1700000000.0}]}
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from csflow.sdk.core import names
from csflow.sdk.core.errors import BadInput, NotFound
from csflow.sdk.core.fileutil import file_lock, write_json_atomic

MOVING_TAGS = ("latest", "staging")


def empty_document(owner: str, title: str) -> dict[str, Any]:
    """A model's document before its first version."""
    return {"owner": owner, "title": title, "versions": {}, "tags": {}, "history": []}


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
            return empty_document(owner, title)
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

    def record_version(self, record: dict[str, Any]) -> dict[str, Any]:
        """Add or update a version's record (a publish's push); return it."""
        tag = names.check_tag(record["tag"])

        def edit(doc: dict[str, Any]) -> dict[str, Any]:
            old = doc["versions"].get(tag, {})
            doc["versions"][tag] = {
                **old,
                **record,
                "registered": old.get("registered", time.time()),
            }
            return doc["versions"][tag]

        return self.change(record["owner"], record["title"], edit)

    def move_tag(
        self,
        owner: str,
        title: str,
        tag_name: str,
        tag: str,
        action: str = "move",
        run: str | None = None,
    ) -> str | None:
        """Point ``tag_name`` at version ``tag`` (a version, or another tag name,
        resolved under the same lock); return what it pointed at before. Moving a
        tag to where it already points changes nothing."""
        names.check_tag(tag_name)
        names.check_tag(tag)

        def edit(doc: dict[str, Any]) -> str | None:
            return _move(doc, owner, title, tag_name, doc["tags"].get(tag, tag), action, run)

        return self.change(owner, title, edit)

    def rollback(
        self, owner: str, title: str, tag_name: str = "latest", run: str | None = None
    ) -> tuple[str, str]:
        """Move ``tag_name`` back to its previous target; return (from, to)."""
        names.check_tag(tag_name)

        def edit(doc: dict[str, Any]) -> tuple[str, str]:
            current = doc["tags"].get(tag_name)
            if current is None:
                raise NotFound(f"{owner}/{title} has no tag {tag_name!r} to roll back")
            target = previous_target(doc, tag_name)
            if target is None:
                raise BadInput(
                    f"{owner}/{title}: {tag_name} has no earlier version to roll back to"
                )
            _move(doc, owner, title, tag_name, target, "rollback", run)
            return current, target

        return self.change(owner, title, edit)

    def models(self) -> list[tuple[str, str]]:
        if not self.root.is_dir():
            return []
        return sorted((p.parent.name, p.stem) for p in self.root.glob("*/*.json") if p.is_file())

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
        return ModelVersion(
            owner, title, concrete, record, version_dir(self.home, owner, title, concrete)
        )


def open_registry(url: str, home: Path) -> Registry:
    """The registry at ``url``: empty for ``$CSFLOW_HOME`` (``home``), ``file:///DIR``
    for a folder (``DIR/registry/...``; it must be shared by whoever publishes and
    simulates) or ``gs://BUCKET[/PREFIX]`` (``sdk/registry/gcs.py``, for clusters)."""
    if not url:
        return Registry(home)
    if url.startswith("gs://"):
        from csflow.sdk.registry.gcs import GCSRegistry

        return GCSRegistry(url, home)
    return Registry(_folder(url))


def open_inputs_cache(url: str, home: Path):
    """The inputs cache beside the registry at ``url`` (see ``open_registry``)."""
    if url.startswith("gs://"):
        from csflow.sdk.registry.gcs import GCSInputsCache

        return GCSInputsCache(url)
    from csflow.sdk.registry.inputs_cache import InputsCache

    return InputsCache(_folder(url) if url else home)


def _folder(url: str) -> Path:
    parsed = urlparse(url)
    if (
        parsed.scheme != "file"
        or parsed.netloc not in ("", "localhost")
        or not parsed.path.startswith("/")
    ):
        raise BadInput(
            f"invalid model registry URL {url!r}: "
            "expected file:///DIR, gs://BUCKET or gs://BUCKET/PREFIX"
        )
    return Path(unquote(parsed.path))


def _move(
    doc: dict[str, Any],
    owner: str,
    title: str,
    tag_name: str,
    target: str,
    action: str,
    run: str | None,
) -> str | None:
    if target not in doc["versions"]:
        raise NotFound(f"{owner}/{title} has no version or tag {target!r}")
    previous = doc["tags"].get(tag_name)
    if previous == target:
        return previous
    doc["tags"][tag_name] = target
    entry = {"tag": tag_name, "from": previous, "to": target, "action": action, "at": time.time()}
    if run:
        entry["run"] = run
    doc["history"].append(entry)
    return previous


def previous_target(doc: dict[str, Any], tag_name: str) -> str | None:
    """Where ``tag_name`` pointed before its current target, per the history: replay
    its moves as a stack, where a move pushes and a rollback pops."""
    stack: list[str] = []
    for entry in doc.get("history", []):
        if entry.get("tag") != tag_name:
            continue
        if entry.get("action") == "rollback":
            if stack:
                stack.pop()
            if not stack or stack[-1] != entry["to"]:
                stack.append(entry["to"])  # history from before this rule; trust the entry
        else:
            stack.append(entry["to"])
    return stack[-2] if len(stack) >= 2 else None
