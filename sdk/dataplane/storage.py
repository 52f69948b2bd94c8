"""Result storage: one prefix per run, ``OWNER/TITLE/JOB_ID/``.

``file://`` serves the embedded engine; ``gs://`` (Google Cloud Storage) serves
clusters. Both sit behind ``Storage``; ``open_storage(url)`` picks one.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from csflow.sdk.core import names
from csflow.sdk.core.errors import BadInput, NotFound
from csflow.sdk.core.fileutil import write_bytes_atomic

# The files of a run's results under its prefix (runtime/platform_step.py writes them).
RESULT_FILES = ("outputs.json", "remote.json", "renderable.zip", "downloadable.zip")


def run_prefix(owner: str, title: str, job_id: str) -> str:
    names.check_project_part("owner", owner)
    names.check_project_part("title", title)
    return f"{owner}/{title}/{names.check_job_id(job_id)}"


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise BadInput(f"invalid storage key {key!r}")
    return key


class Storage(Protocol):
    url: str

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Store ``data`` at ``key``; return its URI."""

    def get(self, key: str) -> bytes: ...

    def list(self, prefix: str) -> list[str]: ...

    def delete(self, key: str) -> None:
        """Remove the object at ``key`` (nothing there: nothing to do)."""

    def uri(self, key: str) -> str: ...


class FileStorage:
    """A folder laid out as the bucket is."""

    def __init__(self, url: str):
        parsed = urlparse(url)
        self.url = url.rstrip("/")
        self.root = Path(unquote(parsed.path))

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        write_bytes_atomic(self._path(key), data)
        return self.uri(key)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no stored object {key!r}") from None

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/"))
        if not base.is_dir():
            return []
        return sorted(
            str(p.relative_to(self.root))
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def uri(self, key: str) -> str:
        return f"{self.url}/{_check_key(key)}"


def bucket_key(storage: Storage, key: str) -> str:
    """Where the webapp finds ``key``: its object name in the bucket for
    ``gs://BUCKET[/PREFIX]`` (the prefix and the key; C/S read each run's zips
    as ``gs://$BUCKET/{ziplocation}``), the key itself under a ``file://`` folder."""
    parsed = urlparse(storage.uri(key))
    return parsed.path.lstrip("/") if parsed.scheme == "gs" else _check_key(key)


def open_storage(url: str) -> Storage:
    scheme = urlparse(url).scheme
    if scheme == "file":
        return FileStorage(url)
    if scheme == "gs":
        from csflow.sdk.dataplane.gcs import GCSStorage

        return GCSStorage(url)
    raise BadInput(f"unsupported storage URL {url!r}: use file:// or gs://")


def read_outputs(storage: Storage, owner: str, title: str, job_id: str) -> dict[str, Any]:
    """A finished run's serialized outputs (``outputs.json``)."""
    return json.loads(storage.get(f"{run_prefix(owner, title, job_id)}/outputs.json"))


def write_downloadables(
    storage: Storage, owner: str, title: str, job_id: str, out: Path
) -> list[Path]:
    """Unpack a run's ``downloadable.zip`` into ``out``; return the files written."""
    data = storage.get(f"{run_prefix(owner, title, job_id)}/downloadable.zip")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for member in archive.namelist():
            target = (
                out / Path(member).name
            )  # names are flat and unique (contract.output_filenames)
            target.write_bytes(archive.read(member))
            written.append(target)
    return written
