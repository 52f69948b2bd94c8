"""Secrets, by name: each model's own, and the service's (cluster-level).

A secret store is the only place a value lives. Everything else in csflow
carries names: model configs declare the secrets a model needs, manifests
refer to Kubernetes Secrets by name (``envFrom``), run records and logs never
see a value. Values leave a store only through ``get`` (the ``secrets get``
command) and ``values`` (delivery: the embedded engine puts a model's
declared secrets into its process environment; ``csflow svc secrets sync``
writes them into Kubernetes Secrets).

Two backends, chosen by ``Settings.secrets_backend``:

- ``local`` (default, the embedded engine): JSON files under
  ``$CSFLOW_HOME/secrets/`` (folder mode 0700, files 0600):
  ``service.json`` and ``models/OWNER/TITLE.json``;
- ``gcp``: Google Secret Manager (``google-cloud-secret-manager``), one
  secret per name, in ``Settings.gcp_project``
  (https://cloud.google.com/secret-manager/docs). Secret ids:
  ``csflow-svc--NAME`` and ``csflow-m-<kube-name>-<hash>--NAME``; the hash of
  ``OWNER/TITLE`` keeps two models apart even when their Kubernetes names match.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from csflow.sdk.core import names
from csflow.sdk.core.errors import BadInput, CsflowError, NotFound, translated
from csflow.sdk.core.fileutil import file_lock, write_json_atomic

if TYPE_CHECKING:
    from csflow.sdk.core.settings import Settings

T = TypeVar("T")

# Names the platform sets in a model's environment; a model secret may not shadow them.
RESERVED_PREFIXES = ("CSFLOW_",)
MAX_VALUE_BYTES = 64 * 1024  # Secret Manager's payload limit


class SecretError(CsflowError):
    """The secret store refused, or could not be reached."""


def check_secret_name(name: str, model: bool) -> str:
    names.check_env_name(name)
    if model and name.startswith(RESERVED_PREFIXES):
        raise BadInput(
            f"invalid secret name {name!r}: names starting with CSFLOW_ are csflow's own"
        )
    return name


def check_value(value: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadInput("a secret's value may not be empty")
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise BadInput(f"a secret's value may not exceed {MAX_VALUE_BYTES} bytes")
    return value


def _model(owner: str | None, title: str | None) -> tuple[str, str] | None:
    """(owner, title) validated, or None for the service scope."""
    if owner is None and title is None:
        return None
    if owner is None or title is None:
        raise BadInput("a model secret needs both owner and title")
    return names.check_project_part("owner", owner), names.check_project_part("title", title)


class SecretStore(Protocol):
    """Both backends. ``owner``/``title`` name a model's scope; without them,
    the service scope."""

    def set(
        self, name: str, value: str, owner: str | None = None, title: str | None = None
    ) -> None: ...

    def get(self, name: str, owner: str | None = None, title: str | None = None) -> str: ...

    def list(self, owner: str | None = None, title: str | None = None) -> list[str]: ...

    def delete(self, name: str, owner: str | None = None, title: str | None = None) -> None: ...

    def values(self, owner: str | None, title: str | None, wanted: Iterable[str]) -> dict[str, str]:
        """The ``wanted`` secrets that are set (for delivery to a process or a Secret)."""


class LocalSecretStore:
    """JSON files readable by their owner only (the embedded engine's store)."""

    def __init__(self, home: Path):
        self.root = Path(home) / "secrets"

    def __repr__(self) -> str:
        return f"LocalSecretStore({str(self.root)!r})"

    def _path(self, owner: str | None, title: str | None) -> Path:
        model = _model(owner, title)
        if model is None:
            return self.root / "service.json"
        return self.root / "models" / model[0] / f"{model[1]}.json"

    def _read(self, path: Path) -> dict[str, str]:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError) as exc:
            raise SecretError(
                f"cannot read the secret store {path}: {type(exc).__name__}"
            ) from None
        return data if isinstance(data, dict) else {}

    def _write(self, path: Path, values: dict[str, str]) -> None:
        folder = path.parent
        folder.mkdir(parents=True, exist_ok=True)
        while True:  # every folder from the file up to the store's root: owner only
            folder.chmod(0o700)
            if folder == self.root:
                break
            folder = folder.parent
        write_json_atomic(path, values, mode=0o600)

    def set(
        self, name: str, value: str, owner: str | None = None, title: str | None = None
    ) -> None:
        check_secret_name(name, model=owner is not None)
        check_value(value)
        path = self._path(owner, title)
        with file_lock(self.root / ".lock"):
            values = self._read(path)
            values[name] = value
            self._write(path, values)

    def get(self, name: str, owner: str | None = None, title: str | None = None) -> str:
        names.check_env_name(name)
        values = self._read(self._path(owner, title))
        if name not in values:
            raise NotFound(f"no secret {name!r}{_scope_text(owner, title)}")
        return values[name]

    def list(self, owner: str | None = None, title: str | None = None) -> list[str]:
        return sorted(self._read(self._path(owner, title)))

    def delete(self, name: str, owner: str | None = None, title: str | None = None) -> None:
        names.check_env_name(name)
        path = self._path(owner, title)
        with file_lock(self.root / ".lock"):
            values = self._read(path)
            if values.pop(name, None) is None:
                raise NotFound(f"no secret {name!r}{_scope_text(owner, title)}")
            self._write(path, values)

    def values(self, owner: str | None, title: str | None, wanted: Iterable[str]) -> dict[str, str]:
        stored = self._read(self._path(owner, title))
        return {name: stored[name] for name in wanted if name in stored}


def _scope_text(owner: str | None, title: str | None) -> str:
    return f" for {owner}/{title}" if owner is not None else " in the service scope"


_LIBRARY_DEFAULT = object()


class SecretManagerStore:
    """Google Secret Manager: one secret per name; ``set`` adds a version and
    ``get`` reads the latest, checking its CRC32C."""

    SERVICE_PREFIX = "csflow-svc--"

    def __init__(
        self,
        project: str,
        client: Any = None,
        endpoint: str = "",
        retry: Any = _LIBRARY_DEFAULT,
        timeout: float = 30.0,
    ):
        if not project:
            raise BadInput(
                "the gcp secrets backend needs a project: set gcp_project (CSFLOW_GCP_PROJECT)"
            )
        self.project = project
        self.endpoint = endpoint
        self._client = client
        self._options: dict[str, Any] = {"timeout": timeout}
        if retry is not _LIBRARY_DEFAULT:  # tests pass None: the default retry waits ~60 s
            self._options["retry"] = retry

    def __repr__(self) -> str:
        return f"SecretManagerStore(project={self.project!r})"

    @property
    def client(self) -> Any:
        if self._client is None:
            from google.cloud import secretmanager

            kwargs: dict[str, Any] = {}
            if self.endpoint:
                kwargs.update(transport="rest", client_options={"api_endpoint": self.endpoint})
                if self.endpoint.startswith("http://"):
                    # A plain-HTTP endpoint is a local test server: never send
                    # real credentials to it.
                    from google.auth.credentials import AnonymousCredentials

                    kwargs["credentials"] = AnonymousCredentials()
            try:
                self._client = secretmanager.SecretManagerServiceClient(**kwargs)
            except Exception as exc:  # google.auth's DefaultCredentialsError and friends
                raise SecretError(
                    f"cannot open Secret Manager: {type(exc).__name__}: {exc}"
                ) from None
        return self._client

    # -- names ---------------------------------------------------------------

    def _prefix(self, owner: str | None, title: str | None) -> str:
        model = _model(owner, title)
        if model is None:
            return self.SERVICE_PREFIX
        digest = hashlib.sha256(f"{model[0]}/{model[1]}".encode()).hexdigest()[:10]
        return f"csflow-m-{names.kube_name(*model)[:50]}-{digest}--"

    def _secret_path(self, name: str, owner: str | None, title: str | None) -> str:
        return f"projects/{self.project}/secrets/{self._prefix(owner, title)}{name}"

    def _call(self, what: str, action: Callable[[], T]) -> T:
        from google.api_core import exceptions as google_errors

        with translated(
            (google_errors.NotFound, lambda _: NotFound(f"no secret {what}")),
            (
                google_errors.GoogleAPICallError,
                lambda exc: SecretError(f"Secret Manager refused {what}: {exc.message}"),
            ),
            (
                google_errors.RetryError,
                lambda exc: SecretError(f"Secret Manager did not answer for {what}: {exc.message}"),
            ),
            (
                OSError,
                lambda exc: SecretError(
                    f"cannot reach Secret Manager for {what}: {type(exc).__name__}"
                ),
            ),
        ):
            return action()

    # -- the store -----------------------------------------------------------

    def set(
        self, name: str, value: str, owner: str | None = None, title: str | None = None
    ) -> None:
        import google_crc32c
        from google.api_core import exceptions as google_errors

        check_secret_name(name, model=owner is not None)
        check_value(value)
        path = self._secret_path(name, owner, title)
        labels = {"managed-by": "csflow", "csflow-scope": "service" if owner is None else "model"}
        what = f"{name!r}{_scope_text(owner, title)}"

        def create() -> None:
            try:
                self.client.create_secret(
                    parent=f"projects/{self.project}",
                    secret_id=path.rsplit("/", 1)[1],
                    secret={"replication": {"automatic": {}}, "labels": labels},
                    **self._options,
                )
            except google_errors.Conflict:  # ALREADY_EXISTS: 409 over REST, AlreadyExists over gRPC
                pass  # a new version of an existing secret

        self._call(what, create)
        data = value.encode()
        self._call(
            what,
            lambda: self.client.add_secret_version(
                parent=path,
                payload={"data": data, "data_crc32c": google_crc32c.value(data)},
                **self._options,
            ),
        )

    def get(self, name: str, owner: str | None = None, title: str | None = None) -> str:
        import google_crc32c

        names.check_env_name(name)
        path = self._secret_path(name, owner, title)
        what = f"{name!r}{_scope_text(owner, title)}"
        reply = self._call(
            what,
            lambda: self.client.access_secret_version(
                name=f"{path}/versions/latest", **self._options
            ),
        )
        data = reply.payload.data
        if reply.payload.data_crc32c and google_crc32c.value(data) != reply.payload.data_crc32c:
            raise SecretError(f"secret {what} arrived corrupted (CRC32C mismatch)")
        return data.decode()

    def list(self, owner: str | None = None, title: str | None = None) -> list[str]:
        prefix = f"projects/{self.project}/secrets/{self._prefix(owner, title)}"
        secrets = self._call(
            f"list in project {self.project}",
            lambda: list(
                self.client.list_secrets(parent=f"projects/{self.project}", **self._options)
            ),
        )
        return sorted(s.name[len(prefix) :] for s in secrets if s.name.startswith(prefix))

    def delete(self, name: str, owner: str | None = None, title: str | None = None) -> None:
        names.check_env_name(name)
        path = self._secret_path(name, owner, title)
        self._call(
            f"{name!r}{_scope_text(owner, title)}",
            lambda: self.client.delete_secret(name=path, **self._options),
        )

    def values(self, owner: str | None, title: str | None, wanted: Iterable[str]) -> dict[str, str]:
        found = {}
        for name in wanted:
            try:
                found[name] = self.get(name, owner, title)
            except NotFound:
                pass
        return found


def open_secret_store(settings: Settings) -> SecretStore:
    """The store ``settings.secrets_backend`` names (``local`` by default)."""
    backend = getattr(settings, "secrets_backend", "local")
    if backend == "local":
        return LocalSecretStore(settings.home)
    if backend == "gcp":
        return SecretManagerStore(settings.gcp_project, endpoint=settings.secret_manager_endpoint)
    raise BadInput(f"unknown secrets backend {backend!r}: use local or gcp")
