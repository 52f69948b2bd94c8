"""The process environments of the embedded engine's steps.

Model steps get a scrubbed environment: a few harmless variables, the model's
own ``env`` and secrets, and where its job waits; no platform credentials
reach model code (least privilege).
"""

from __future__ import annotations

import os

from csflow.sdk.registry.local import ModelVersion

__all__ = ["model_environment"]

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
            "CSFLOW_MODEL_FUNCTIONS": version.config["functions"],
            "CSFLOW_JOB_STORE": job_store_url,
        }
    )
    return env
