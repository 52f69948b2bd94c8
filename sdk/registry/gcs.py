"""The model registry and the inputs cache on Google Cloud Storage, for clusters.

On a cluster the ``push`` and ``deploy`` steps run in pods that share no
files, so the registry (``sdk/registry/local.py`` ``Registry``: each model's versions and
its moving tags) and the inputs cache must live in object storage. This module
keeps the same documents at ``gs://BUCKET/PREFIX``:

- ``PREFIX/registry/OWNER/TITLE.json``: one JSON document per model, the same
  document ``Registry`` keeps in ``$CSFLOW_HOME/registry/``;
- ``PREFIX/inputs/OWNER/TITLE/TAG.json``: the inputs cache entries.

``GCSRegistry`` has ``Registry``'s interface: only reading and changing a
document differ. A change is a compare-and-swap on the object's generation
(Cloud Storage's request preconditions): read the document and its
generation, apply the edit, write with ``ifGenerationMatch`` = that generation
(``0``: only if the object does not exist yet). When another writer got there
first, Cloud Storage answers 412 Precondition Failed; the change is then read
and applied again, after a short random pause. So a tag moves atomically, and
two publishes of one model cannot lose each other's versions or moves.

Each write carries a random change id in the object's metadata: when a retried
upload (the library retries a conditional upload whose answer was lost) meets
its own earlier success as a 412, the change is known to have landed and is not
applied twice (a rollback applied twice would go back two versions).

Inputs cache entries are keyed by content tag, which names immutable content,
so they are written plainly.

Docs: https://cloud.google.com/storage/docs/request-preconditions and
https://cloud.google.com/storage/docs/generations-preconditions
"""

from __future__ import annotations

import functools
import json
import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from google.api_core import exceptions as google_errors

# google-cloud-storage has no py.typed while other google.cloud packages (secret manager)
# do, so mypy knows google.cloud but not its storage module.
from google.cloud import storage  # type: ignore[attr-defined]

from csflow.sdk.core import names
from csflow.sdk.core.errors import CsflowError, NotFound
from csflow.sdk.dataplane.gcs import GCSStorage, StorageError, cloud_storage_errors
from csflow.sdk.registry.local import Registry, empty_document

T = TypeVar("T")

CHANGE_ID = "csflow-change"
MAX_ATTEMPTS = 12
FIRST_PAUSE = 0.05  # seconds; doubles per lost race, up to MAX_PAUSE, with jitter
MAX_PAUSE = 2.0


class RegistryBusy(CsflowError):
    """Other writers kept changing a model's document; this change never got in."""


def _serialize(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=1, sort_keys=True).encode()


class GCSRegistry(Registry):
    """``Registry`` on Cloud Storage. ``home`` still locates the embedded engine's
    environments (``resolve``); on a cluster nothing reads them."""

    def __init__(self, url: str, home: Path, client: storage.Client | None = None):
        super().__init__(home)
        self.storage = GCSStorage(url, client)  # parses and checks the URL; makes the client
        self.url = self.storage.url

    def __repr__(self) -> str:
        return f"GCSRegistry({self.url!r})"

    # -- objects ------------------------------------------------------------------

    def object_name(self, owner: str, title: str) -> str:
        names.check_project_part("owner", owner)
        names.check_project_part("title", title)
        return self._under_prefix(f"registry/{owner}/{title}.json")

    def _under_prefix(self, key: str) -> str:
        prefix = self.storage.prefix
        return f"{prefix}/{key}" if prefix else key

    def _bucket(self) -> storage.Bucket:
        return self.storage.client.bucket(self.storage.bucket_name)

    def _call(self, what: str, action: Callable[[], T]) -> T:
        """One Cloud Storage call; its failures (but a lost race) as one line."""
        no_bucket = f"Cloud Storage has no bucket {self.storage.bucket_name!r} ({what})"
        with cloud_storage_errors(
            what, lambda _: StorageError(no_bucket), passing=(google_errors.PreconditionFailed,)
        ):
            return action()

    def read(self, owner: str, title: str) -> tuple[dict[str, Any], int, dict[str, str]]:
        """The model's document, its generation (0: no object yet) and its metadata."""
        name = self.object_name(owner, title)
        where = f"gs://{self.storage.bucket_name}/{name}"
        for _ in range(MAX_ATTEMPTS):
            blob = self._call(f"reading {where}", lambda: self._bucket().get_blob(name))
            if blob is None:
                return empty_document(owner, title), 0, {}
            # Kept now: a download resets the blob's fields from its answer's headers.
            generation, metadata = int(blob.generation), dict(blob.metadata or {})
            try:
                # The bytes of exactly that generation (a newer one answers 412).
                data = self._call(
                    f"reading {where}",
                    functools.partial(blob.download_as_bytes, if_generation_match=generation),
                )
            except google_errors.PreconditionFailed:
                continue  # changed between the two requests: read again
            try:
                return json.loads(data), generation, metadata
            except json.JSONDecodeError as exc:
                raise StorageError(f"{where} is not a registry document: {exc}") from None
        raise RegistryBusy(f"{where} kept changing while being read ({MAX_ATTEMPTS} attempts)")

    # -- Registry's two primitives ----------------------------------------------------

    def document(self, owner: str, title: str) -> dict[str, Any]:
        return self.read(owner, title)[0]

    def change(self, owner: str, title: str, edit: Callable[[dict[str, Any]], Any]) -> Any:
        """Apply ``edit`` to the model's document and write it only if nobody wrote
        since it was read; otherwise read and apply again."""
        name = self.object_name(owner, title)
        where = f"gs://{self.storage.bucket_name}/{name}"
        change_id = uuid.uuid4().hex
        pause = FIRST_PAUSE
        for _ in range(MAX_ATTEMPTS):
            doc, generation, _metadata = self.read(owner, title)
            before = _serialize(doc)
            result = edit(doc)  # may raise (unknown tag, ...): nothing is written
            after = _serialize(doc)
            if generation and after == before:
                return result  # nothing to change (a tag moved to where it points)
            blob = self._bucket().blob(name)
            blob.metadata = {CHANGE_ID: change_id}
            blob.cache_control = "no-store"
            try:
                self._call(
                    f"writing {where}",
                    functools.partial(
                        blob.upload_from_string,
                        after,
                        content_type="application/json",
                        if_generation_match=generation,
                    ),
                )
                return result
            except google_errors.PreconditionFailed:
                if self.read(owner, title)[2].get(CHANGE_ID) == change_id:
                    return result  # a retried upload: the first one had landed
            time.sleep(random.uniform(pause / 2, pause))
            pause = min(pause * 2, MAX_PAUSE)
        raise RegistryBusy(
            f"could not change {where}: other writers changed it {MAX_ATTEMPTS} times in a row"
        )

    def models(self) -> list[tuple[str, str]]:
        folder = self._under_prefix("registry/")
        blobs = self._call(
            f"listing gs://{self.storage.bucket_name}/{folder}",
            lambda: list(self.storage.client.list_blobs(self.storage.bucket_name, prefix=folder)),
        )
        found = []
        for blob in blobs:
            parts = blob.name[len(folder) :].split("/")
            if len(parts) == 2 and parts[1].endswith(".json"):
                found.append((parts[0], parts[1].removesuffix(".json")))
        return sorted(found)


class GCSInputsCache:
    """``sdk/inputs_cache.InputsCache`` on Cloud Storage (``PREFIX/inputs/...``)."""

    def __init__(self, url: str, client: storage.Client | None = None):
        self.storage = GCSStorage(url, client)

    def key(self, owner: str, title: str, tag: str) -> str:
        names.check_project_part("owner", owner)
        names.check_project_part("title", title)
        return f"inputs/{owner}/{title}/{names.check_tag(tag)}.json"

    def path(self, owner: str, title: str, tag: str) -> str:
        return self.storage.uri(self.key(owner, title, tag))

    def put(self, owner: str, title: str, tag: str, entry: dict[str, Any]) -> str:
        data = json.dumps(
            {**entry, "meta_param_dict": {}, "cached_at": time.time()}, indent=1
        ).encode()
        return self.storage.put(self.key(owner, title, tag), data, "application/json")

    def get(self, owner: str, title: str, tag: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.storage.get(self.key(owner, title, tag)))
        except (NotFound, json.JSONDecodeError):
            return None
