"""The job store: a simulation's inputs under ``job-<uuid>``, with an expiry.

The submitter writes the key; the model's ``inputs`` and ``run`` steps read
only their own key (``runtime/model_step.py``). ``file://`` serves the
embedded engine; ``redis://`` serves clusters, fenced by ACL users.

It also holds the result cache's coordination (``sdk/dataplane/result_cache.py``),
always with an expiry: **claims** (single flight: the one run that computes a
cache key's results, ``claim``/``replace_claim``/``release``; on Redis
``cache-flight-KEY``, set with ``SET NX EX`` and changed in a ``WATCH``
transaction) and the **records of cached runs** that have no Workflow
(``put_run``/``get_run``; on Redis ``cache-run-<uuid>``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from csflow.sdk.core import names
from csflow.sdk.core.errors import BadInput, NotFound
from csflow.sdk.core.fileutil import file_lock, write_json_atomic

DEFAULT_TTL = 7 * 24 * 3600


def job_key(job_id: str) -> str:
    return f"job-{names.check_job_id(job_id)}"


def flight_key(key: str) -> str:
    """A cache key's single-flight claim."""
    return f"cache-flight-{names.check_cache_key(key)}"


def cached_run_key(job_id: str) -> str:
    return f"cache-run-{names.check_job_id(job_id)}"


class JobStore(Protocol):
    url: str

    def put(self, job_id: str, job: dict[str, Any], ttl: int = DEFAULT_TTL) -> None: ...

    def get(self, job_id: str) -> dict[str, Any]: ...

    def claim(self, key: str, holder: str, ttl: int) -> str:
        """Claim cache key ``key`` for run ``holder`` unless a live claim exists;
        return the run that holds it now (``holder`` if this call won)."""

    def replace_claim(self, key: str, old: str, new: str, ttl: int) -> bool:
        """Hand ``old``'s claim (a run that ended) to ``new``; False if the claim
        is no longer ``old``'s (another took it over first)."""

    def release(self, key: str, holder: str) -> None:
        """Drop ``holder``'s claim (someone else's is left alone)."""

    def put_run(self, job_id: str, run: dict[str, Any], ttl: int = DEFAULT_TTL) -> None:
        """Keep the record of a run that has no Workflow (a cache hit on a cluster)."""

    def get_run(self, job_id: str) -> dict[str, Any] | None: ...


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

    # -- claims and cached runs (one machine: files under a lock) -------------------

    def _claim_path(self, key: str) -> Path:
        return self.root / "claims" / f"{flight_key(key)}.json"

    def _holder(self, path: Path) -> str | None:
        try:
            claim = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return claim["holder"] if claim.get("expires", 0) > time.time() else None

    def _set_claim(self, path: Path, holder: str, ttl: int) -> None:
        write_json_atomic(
            path, {"holder": holder, "pid": os.getpid(), "expires": time.time() + ttl}
        )

    def claim(self, key: str, holder: str, ttl: int) -> str:
        path = self._claim_path(key)
        with file_lock(self.root / "claims" / ".lock"):
            current = self._holder(path)
            if current is not None:
                return current
            self._set_claim(path, holder, ttl)
            return holder

    def replace_claim(self, key: str, old: str, new: str, ttl: int) -> bool:
        path = self._claim_path(key)
        with file_lock(self.root / "claims" / ".lock"):
            current = self._holder(path)
            if current not in (None, old):
                return False
            self._set_claim(path, new, ttl)
            return True

    def release(self, key: str, holder: str) -> None:
        path = self._claim_path(key)
        with file_lock(self.root / "claims" / ".lock"):
            if self._holder(path) == holder:
                path.unlink(missing_ok=True)

    def put_run(self, job_id: str, run: dict[str, Any], ttl: int = DEFAULT_TTL) -> None:
        write_json_atomic(
            self.root / f"{cached_run_key(job_id)}.json", {"run": run, "expires": time.time() + ttl}
        )

    def get_run(self, job_id: str) -> dict[str, Any] | None:
        try:
            record = json.loads((self.root / f"{cached_run_key(job_id)}.json").read_text())
        except FileNotFoundError:
            return None
        return record["run"] if record.get("expires", 0) > time.time() else None


def open_job_store(url: str) -> JobStore:
    scheme = urlparse(url).scheme
    if scheme == "file":
        return FileJobStore(url)
    if scheme in ("redis", "rediss"):
        from csflow.sdk.dataplane.redis_jobs import RedisJobStore

        return RedisJobStore(url)
    raise BadInput(f"unsupported job store URL {url!r}: use file:// or redis://")
