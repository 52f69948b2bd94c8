"""The job store: a simulation's inputs under ``job-<uuid>``, with an expiry.

The submitter writes the key; the model's ``inputs`` and ``run`` steps read
only their own key (``runtime/model_step.py``). ``file://`` serves the
embedded engine; ``redis://`` serves clusters, fenced by ACL users.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from csflow.sdk.core import names
from csflow.sdk.core.errors import BadInput, NotFound
from csflow.sdk.core.fileutil import write_json_atomic

DEFAULT_TTL = 7 * 24 * 3600


def job_key(job_id: str) -> str:
    return f"job-{names.check_job_id(job_id)}"


class JobStore(Protocol):
    url: str

    def put(self, job_id: str, job: dict[str, Any], ttl: int = DEFAULT_TTL) -> None: ...

    def get(self, job_id: str) -> dict[str, Any]: ...


class FileJobStore:
    """One JSON file per job; expired files read as missing and are removed."""

    def __init__(self, url: str):
        self.url = url
        self.root = Path(unquote(urlparse(url).path))

    def put(self, job_id: str, job: dict[str, Any], ttl: int = DEFAULT_TTL) -> None:
        write_json_atomic(
            self.root / f"{job_key(job_id)}.json", {**job, "expires": time.time() + ttl}, 0o600
        )

    def get(self, job_id: str) -> dict[str, Any]:
        path = self.root / f"{job_key(job_id)}.json"
        try:
            job = json.loads(path.read_text())
        except FileNotFoundError:
            raise NotFound(f"job {job_id} not found (expired or never written)") from None
        if job.get("expires", float("inf")) < time.time():
            path.unlink(missing_ok=True)
            raise NotFound(f"job {job_id} has expired")
        return job


def open_job_store(url: str) -> JobStore:
    scheme = urlparse(url).scheme
    if scheme == "file":
        return FileJobStore(url)
    if scheme in ("redis", "rediss"):
        from csflow.sdk.dataplane.redis_jobs import RedisJobStore

        return RedisJobStore(url)
    raise BadInput(f"unsupported job store URL {url!r}: use file:// or redis://")
