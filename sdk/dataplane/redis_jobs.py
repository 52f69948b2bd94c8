"""The Redis job store: a simulation's inputs under ``job-<uuid>``, with an expiry.

The submitter writes the key as the ``scheduler`` ACL user, value and expiry
in one ``SET ... EX`` so no job ever lives without one; a model step reads
its own key as the ``model`` user, which can do nothing but GET ``job-*``
(``sdk/ops/redis_acl.py``). An expired key is gone, so it reads as missing, with
an error that says so.

URL: ``redis://host:port/db`` (``rediss://`` for TLS). The user and password
come from the arguments or from ``CSFLOW_REDIS_USER`` / ``CSFLOW_REDIS_PASSWORD``
(``runtime/step_env.py``), never from the URL: URLs end up in settings, manifests and run records.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlparse

import redis

from csflow.runtime.step_env import REDIS_PASSWORD, REDIS_USER
from csflow.sdk.core.errors import BadInput, CsflowError, NotFound, translated
from csflow.sdk.dataplane.jobstore import DEFAULT_TTL, cached_run_key, flight_key, job_key

T = TypeVar("T")


class JobStoreError(CsflowError):
    """The job store refused or could not be reached."""


class RedisJobStore:
    def __init__(
        self,
        url: str,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
    ):
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss"):
            raise BadInput(f"not a Redis URL: {url!r}")
        if parsed.password is not None:
            raise BadInput(
                f"put the Redis password in {REDIS_PASSWORD.name}, not in the job store URL"
            )
        self.url = url
        self.username = username or parsed.username or REDIS_USER.get() or None
        password = password if password is not None else REDIS_PASSWORD.get()
        self._client = redis.Redis.from_url(
            url,
            username=self.username,
            password=password or None,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )

    def __repr__(self) -> str:
        return f"RedisJobStore({self.url!r}, user={self.username!r})"

    def _call(self, action: str, command: Callable[[redis.Redis], T]) -> T:
        """Run one command; Redis' errors become one line that names the user
        (never the password)."""
        who = f"user {self.username!r}" if self.username else "the default user"
        with translated(
            (
                redis.AuthenticationError,
                lambda _: JobStoreError(
                    f"job store {self.url} refused {who}: wrong password, or the user is disabled"
                ),
            ),
            (
                redis.exceptions.NoPermissionError,
                lambda exc: JobStoreError(f"job store {self.url}: {who} may not {action} ({exc})"),
            ),
            (
                (redis.ConnectionError, redis.TimeoutError),
                lambda exc: JobStoreError(f"cannot reach the job store at {self.url}: {exc}"),
            ),
            (
                redis.RedisError,
                lambda exc: JobStoreError(f"job store {self.url}: {action} failed: {exc}"),
            ),
        ):
            return command(self._client)

    def put(self, job_id: str, job: dict[str, Any], ttl: int = DEFAULT_TTL) -> None:
        if int(ttl) <= 0:
            raise BadInput(f"a job's expiry must be positive, got {ttl}")
        key = job_key(job_id)
        data = json.dumps(job)
        self._call(f"write {key}", lambda client: client.set(key, data, ex=int(ttl)))

    def get(self, job_id: str) -> dict[str, Any]:
        key = job_key(job_id)
        raw = self._call(f"read {key}", lambda client: client.get(key))
        if raw is None:
            raise NotFound(
                f"job {job_id} is not in the job store: it has expired or was never written"
            )
        return json.loads(raw)

    def expire(self, job_id: str, ttl: int) -> None:
        """Give a stored job a new expiry (``ttl`` seconds from now)."""
        key = job_key(job_id)
        if not self._call(f"expire {key}", lambda client: client.expire(key, int(ttl))):
            raise NotFound(
                f"job {job_id} is not in the job store: it has expired or was never written"
            )

    # -- claims (single flight across a cluster) and cached runs ------------------------

    def claim(self, key: str, holder: str, ttl: int) -> str:
        name = flight_key(key)

        def claim(client: redis.Redis) -> str:
            if client.set(name, holder, nx=True, ex=int(ttl)):
                return holder
            current = client.get(name)
            if current is None:  # expired between the two commands: try once more
                return holder if client.set(name, holder, nx=True, ex=int(ttl)) else ""
            return _text(current)

        return self._call(f"claim {name}", claim)

    def _change_claim(self, name: str, old: str, new: str | None, ttl: int) -> bool:
        """Set (``new``) or drop (None) the claim ``name`` if ``old`` holds it (or no
        one does, for a set), in one WATCH transaction."""

        def change(client: redis.Redis) -> bool:
            with client.pipeline() as pipe:
                try:
                    pipe.watch(name)
                    current = pipe.get(name)
                    current = _text(current) if current is not None else None
                    if current != old and not (new is not None and current is None):
                        pipe.unwatch()
                        return False
                    pipe.multi()
                    if new is None:
                        pipe.expire(name, 0)  # (EXPIRE 0 deletes: the scheduler has no DEL)
                    else:
                        pipe.set(name, new, ex=int(ttl))
                    pipe.execute()
                    return True
                except redis.WatchError:
                    return False

        return self._call(f"change {name}", change)

    def replace_claim(self, key: str, old: str, new: str, ttl: int) -> bool:
        return self._change_claim(flight_key(key), old, new, ttl)

    def release(self, key: str, holder: str) -> None:
        self._change_claim(flight_key(key), holder, None, 0)

    def put_run(self, job_id: str, run: dict[str, Any], ttl: int = DEFAULT_TTL) -> None:
        key = cached_run_key(job_id)
        data = json.dumps(run)
        self._call(f"write {key}", lambda client: client.set(key, data, ex=int(ttl)))

    def get_run(self, job_id: str) -> dict[str, Any] | None:
        key = cached_run_key(job_id)
        raw = self._call(f"read {key}", lambda client: client.get(key))
        return None if raw is None else json.loads(raw)

    def close(self) -> None:
        self._client.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
