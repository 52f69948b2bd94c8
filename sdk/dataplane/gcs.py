"""Google Cloud Storage: where a cluster keeps simulation results.

``GCSStorage`` implements ``Storage`` (``sdk/dataplane/storage.py``) for ``gs://BUCKET[/PREFIX]``
with ``google-cloud-storage``. Keys are laid out as ``FileStorage`` lays out
its folder: ``OWNER/TITLE/JOB_ID/<file>`` under the URL's prefix.

Access stays private: nothing here changes an ACL or makes an object public
(C/S 1.6 read results from a public bucket). Readers go through the SDK, or
get a time-limited signed URL (``signed_url``) where the credentials can sign:
a service-account key signs locally; GKE Workload Identity signs through the
IAM ``signBlob`` API (the account needs ``iam.serviceAccountTokenCreator`` on
itself).

Credentials are Google's Application Default Credentials; tests and local
runs point the client at an emulator with ``STORAGE_EMULATOR_HOST``.
Docs: https://cloud.google.com/python/docs/reference/storage/latest
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlparse

from google.api_core import exceptions as google_errors
from google.auth import exceptions as auth_errors

# google-cloud-storage has no py.typed while other google.cloud packages (secret manager)
# do, so mypy knows google.cloud but not its storage module.
from google.cloud import storage  # type: ignore[attr-defined]
from google.cloud.storage.retry import DEFAULT_RETRY

from csflow.sdk.core.errors import BadInput, CsflowError, NotFound, translated
from csflow.sdk.dataplane.storage import _check_key

T = TypeVar("T")

# https://cloud.google.com/storage/docs/buckets#naming (dotted names aside)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$")
MAX_SIGNED_URL_LIFETIME = dt.timedelta(days=7)  # the V4 signing limit


class StorageError(CsflowError):
    """Cloud Storage refused, or could not be reached."""


def cloud_storage_errors(
    what: str,
    not_found: Callable[[Exception], Exception | None],
    passing: tuple[type[Exception], ...] = (),
):
    """A Cloud Storage call's failures as one line each (``with ...: return call()``):
    ``not_found`` says what a 404 means to the caller; ``passing`` exceptions go on
    unchanged (for the caller to handle)."""

    def gave_up(exc: google_errors.RetryError) -> StorageError:  # retried until the deadline
        cause = type(exc.cause).__name__ if exc.cause else "no answer"
        return StorageError(f"cannot reach Cloud Storage for {what}: {cause} (gave up retrying)")

    return translated(
        (passing, lambda _: None),
        (google_errors.NotFound, not_found),
        (
            google_errors.GoogleAPICallError,
            lambda exc: StorageError(f"Cloud Storage refused {what}: {exc.message}"),
        ),
        (google_errors.RetryError, gave_up),
        (
            (auth_errors.GoogleAuthError, ConnectionError, OSError),
            lambda exc: StorageError(f"cannot reach Cloud Storage for {what}: {exc}"),
        ),
    )


class GCSStorage:
    def __init__(self, url: str, client: storage.Client | None = None):
        parsed = urlparse(url)
        if parsed.scheme != "gs" or not _BUCKET.match(parsed.netloc or ""):
            raise BadInput(f"invalid Cloud Storage URL {url!r}: expected gs://BUCKET[/PREFIX]")
        self.bucket_name = parsed.netloc
        self.prefix = parsed.path.strip("/")
        if self.prefix:
            _check_key(self.prefix)
        self.url = f"gs://{self.bucket_name}" + (f"/{self.prefix}" if self.prefix else "")
        self._client = client

    def __repr__(self) -> str:
        return f"GCSStorage({self.url!r})"

    @property
    def client(self) -> storage.Client:
        if self._client is None:
            try:
                # Object reads and writes need no project; None keeps the client
                # from failing where none can be inferred.
                self._client = storage.Client(
                    project=os.environ.get("GOOGLE_CLOUD_PROJECT") or None
                )
            except auth_errors.DefaultCredentialsError:
                raise StorageError(
                    f"no Google Cloud credentials for {self.url}: "
                    "set GOOGLE_APPLICATION_CREDENTIALS or use Workload Identity"
                ) from None
        return self._client

    def _object_name(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _blob(self, key: str) -> storage.Blob:
        return self.client.bucket(self.bucket_name).blob(self._object_name(key))

    def _call(self, what: str, action: Callable[[], T]) -> T:
        with cloud_storage_errors(what, lambda _: NotFound(f"no stored object {what}")):
            return action()

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        blob = self._blob(key)
        # Writing the same bytes to the same key again is harmless, so uploads
        # may be retried (the library retries them only with a precondition).
        self._call(
            self.uri(key),
            lambda: blob.upload_from_string(data, content_type=content_type, retry=DEFAULT_RETRY),
        )
        return self.uri(key)

    def get(self, key: str) -> bytes:
        blob = self._blob(key)
        return self._call(self.uri(key), blob.download_as_bytes)

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (a folder), relative to the URL's prefix."""
        folder = self._object_name(prefix.rstrip("/")) + "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        blobs = self._call(
            f"{self.url}/{prefix}",
            lambda: list(self.client.list_blobs(self.bucket_name, prefix=folder)),
        )
        return sorted(blob.name[strip:] for blob in blobs)

    def delete(self, key: str) -> None:
        blob = self._blob(key)
        try:
            self._call(self.uri(key), lambda: blob.delete(retry=DEFAULT_RETRY))
        except NotFound:
            pass

    def uri(self, key: str) -> str:
        return f"{self.url}/{_check_key(key)}"

    def signed_url(self, key: str, expires: dt.timedelta | int = dt.timedelta(hours=1)) -> str:
        """A V4 signed URL that lets its holder GET ``key`` until it expires.
        Raises ``StorageError`` when the credentials cannot sign."""
        lifetime = expires if isinstance(expires, dt.timedelta) else dt.timedelta(seconds=expires)
        if not dt.timedelta(0) < lifetime <= MAX_SIGNED_URL_LIFETIME:
            raise BadInput("a signed URL must expire within 7 days")
        blob = self._blob(key)
        options: dict[str, object] = {"version": "v4", "method": "GET", "expiration": lifetime}
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        if emulator:
            options["api_access_endpoint"] = emulator
        credentials = self.client._credentials
        if not hasattr(credentials, "sign_bytes") and hasattr(credentials, "service_account_email"):
            # Workload Identity / metadata-server credentials hold no key:
            # sign through IAM with the account's own access token.
            from google.auth.transport.requests import Request

            try:
                credentials.refresh(Request())
            except auth_errors.GoogleAuthError as exc:
                raise StorageError(f"cannot sign a URL for {self.uri(key)}: {exc}") from None
            options.update(
                service_account_email=credentials.service_account_email,
                access_token=credentials.token,
            )
        try:
            return blob.generate_signed_url(**options)
        except (AttributeError, auth_errors.TransportError, auth_errors.RefreshError) as exc:
            # google-auth raises AttributeError when the credentials carry no key.
            raise StorageError(
                f"cannot sign a URL for {self.uri(key)}: the credentials "
                f"({type(credentials).__name__}) cannot sign; use a service account "
                "key or Workload Identity with signBlob permission"
            ) from exc
