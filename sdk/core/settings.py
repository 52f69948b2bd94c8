"""csflow's own configuration: one object, one precedence.

Flags beat ``CSFLOW_*`` environment variables, which beat the config file,
which beats the defaults below. The CLI passes flags as keyword arguments to
``Settings``. The config file is ``config.yaml`` in the home actually chosen:
the ``home`` flag (``csflow --home X``), else ``CSFLOW_HOME``, else
``~/.csflow``. Secret values never live here; only the names of secrets do.
The variables csflow's steps read are declared in ``runtime/step_env.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from csflow.runtime import step_env

# The image a model's image is built on, unless configured (e.g. a mirror).
BASE_IMAGE = "python:{python}-slim-bookworm"
REPO_ROOT = Path(__file__).resolve().parents[2]


CONFIG_FILE = "config.yaml"


def default_home() -> Path:
    """The home when no flag chooses one: ``CSFLOW_HOME``, else ``~/.csflow``."""
    return Path(step_env.HOME.get() or Path.home() / ".csflow")


class _YamlFileSource(PydanticBaseSettingsSource):
    """Reads ``config.yaml`` in the chosen home: the ``home`` keyword (a flag), else
    ``home`` from the environment (``CSFLOW_HOME``), else ``~/.csflow``.
    (pydantic-settings ships TOML/YAML sources keyed to a fixed path; ours depends on
    the sources above it, hence this small source.)"""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        *above: PydanticBaseSettingsSource,
    ):
        super().__init__(settings_cls)
        self.above = above

    def get_field_value(self, field, field_name):  # pragma: no cover - unused by __call__
        return None, field_name, False

    def home(self) -> Path:
        for source in self.above:
            home = source().get("home")
            if home is not None and str(home) != "":
                return Path(home)
        return default_home()

    def __call__(self) -> dict[str, Any]:
        path = self.home() / CONFIG_FILE
        if not path.is_file():
            return {}
        data = yaml.safe_load(path.read_text()) or {}
        return data if isinstance(data, dict) else {}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CSFLOW_", extra="ignore")

    home: Path = Field(default_factory=default_home)
    backend: Literal["local", "argo"] = "local"
    config_dirs: list[Path] = Field(
        default_factory=lambda: [Path.cwd() / "config", REPO_ROOT / "config"]
    )
    # Where results go: file:// for the embedded engine, gs:// on a cluster.
    storage_url: str = ""
    # How many simulations the embedded engine runs at once.
    max_parallel: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    # Steps fork from warm workers that imported the model once (else: a fresh
    # interpreter per step).
    warm_workers: bool = True
    # The largest simulation inputs accepted (bytes of JSON: a file, text or a
    # dict re-encoded); checked before the file is read whole (sdk/core/jsonio.py).
    max_inputs_bytes: int = Field(default=8 * 1024 * 1024, ge=1)
    # The most points one sweep may have (``--sweep``), checked before anything runs.
    max_sweep_points: int = Field(default=50, ge=1)
    # The result cache (sdk/dataplane/result_cache.py): a successful simulation's
    # results, reused for the same model version and inputs; kept beside the
    # results, at most result_cache_max_bytes (least recently used evicted first).
    # A run computing a key holds its claim (single flight) at most
    # result_cache_claim_seconds; identical submissions wait for it meanwhile.
    result_cache: bool = True
    result_cache_max_bytes: int = Field(default=1024**3, ge=0)
    result_cache_claim_seconds: int = Field(default=3600, ge=1)
    # The webapp to tell about finished runs (empty: nobody), and the service
    # secret that holds its API token.
    webapp_url: str = ""
    webapp_token_secret: str = "CS_API_TOKEN"
    # Where job inputs wait for the model steps: empty means $CSFLOW_HOME/jobs
    # (file://); redis://host:port/db on a cluster. The Redis user and password
    # come from CSFLOW_REDIS_USER / CSFLOW_REDIS_PASSWORD, never from the URL.
    job_store_url: str = ""
    # The secret store: local ($CSFLOW_HOME/secrets, mode 0600) or gcp (Google
    # Secret Manager in gcp_project; secret_manager_endpoint overrides Google's).
    secrets_backend: Literal["local", "gcp"] = "local"
    gcp_project: str = ""
    secret_manager_endpoint: str = ""
    # Argo (backend "argo"): the Argo Server's URL (https://host:2746), the
    # namespace, and a bearer token (CSFLOW_ARGO_TOKEN; the csflow-submitter
    # service account's token, see cluster/argo/rbac.yaml). The token is a
    # SecretStr, so it never shows in a repr, a log or `-o json` output.
    argo_host: str = ""
    argo_namespace: str = "csflow"
    argo_verify_ssl: bool = True
    argo_token: SecretStr = SecretStr("")
    # Where the Argo UI is, if not at argo_host (links to runs).
    argo_ui_url: str = ""
    # How often waiting for a run on Argo asks the Argo Server (seconds).
    argo_poll_seconds: float = Field(default=2.0, gt=0)
    registry: str = "gcr.io/csflow"
    # Plain-HTTP image registry (a development cluster's); never in production.
    registry_insecure: bool = False
    # The image a model's image is built on; {python} is the config's version.
    model_base_image: str = BASE_IMAGE
    image: str = "gcr.io/csflow/csflow:0.1.0"
    # The model registry (versions, tags, inputs cache; not the image registry
    # above): empty for $CSFLOW_HOME, file:///DIR, or gs://BUCKET/PREFIX, which a
    # cluster's publish steps (the csflow-platform ConfigMap) and the argo
    # backend's clients must share. The embedded engine keeps its own under
    # $CSFLOW_HOME, beside the environments it builds.
    model_registry_url: str = ""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        return (
            init_settings,
            env_settings,
            _YamlFileSource(settings_cls, init_settings, env_settings),
        )

    def environment(self) -> dict[str, str]:
        """The settings this object was given or found (flags, variables, the config
        file) as the ``CSFLOW_*`` variables that give another csflow process the same
        settings: the detached engine's (a flag beats the config file there too).
        Secret fields stay out."""
        variables = {}
        for name in sorted(self.model_fields_set):
            value = getattr(self, name)
            if isinstance(value, SecretStr) or value is None:
                continue
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, (list, tuple)):
                text = json.dumps([str(item) for item in value])
            else:
                text = str(value)
            variables[f"CSFLOW_{name.upper()}"] = text
        return variables

    @property
    def results_url(self) -> str:
        return self.storage_url or (self.home / "results").as_uri()

    @property
    def jobs_url(self) -> str:
        return self.job_store_url or (self.home / "jobs").as_uri()

    def path(self, *parts: str) -> Path:
        return self.home.joinpath(*parts)
