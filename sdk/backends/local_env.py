"""The process environments of the embedded engine's steps.

Model steps get a scrubbed environment: a few harmless variables, the model's
own ``env`` and secrets, and where its job waits; no platform credentials
reach model code (least privilege).
"""

from __future__ import annotations

import os
from typing import NamedTuple

from csflow.runtime import step_env
from csflow.sdk.ops.redis_acl import model_job_store_env
from csflow.sdk.registry.local import ModelVersion

__all__ = ["LocalEnvironment", "model_environment", "model_process_env"]

# Variables a model process inherits from the engine; nothing else leaks in
# (least privilege: no platform credentials reach model code).
MODEL_ENV_PASSTHROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
MODEL_ENV_PREFIXES = ("OPENBLAS_", "OMP_", "MKL_")


def model_environment(
    version: ModelVersion, job_store_url: str, secrets: dict[str, str]
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k in MODEL_ENV_PASSTHROUGH or k.startswith(MODEL_ENV_PREFIXES)
    }
    env.update(version.config.get("env", {}))
    env.update(secrets)
    env.update(
        {
            "PYTHONPATH": str(version.source),
            "PYTHONUNBUFFERED": "1",
            step_env.MODEL_FUNCTIONS.name: version.config["functions"],
            step_env.JOB_STORE_URL.name: job_store_url,
        }
    )
    return env


class LocalEnvironment(NamedTuple):
    """What stands in, on this machine, for an environment a step's label names
    (model, platform, build): an interpreter, the process environment it runs a
    step program with, and what a warm worker imports besides the program."""

    python: str
    env: dict[str, str]
    preload: tuple[str, ...] = ()


def model_process_env(
    version: ModelVersion, secret_store, job_store_url: str = ""
) -> dict[str, str]:
    """A model process's environment with the model's declared secrets and, for a
    simulation (``job_store_url``), what it needs to read its job."""
    secrets = secret_store.values(version.owner, version.title, version.config.get("secrets", []))
    # A redis:// job store: the model reads its job as the read-only ACL user.
    secrets.update(model_job_store_env(secret_store, job_store_url))
    return model_environment(version, job_store_url, secrets)
