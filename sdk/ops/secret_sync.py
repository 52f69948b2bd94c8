"""Delivering secrets to a cluster: the Kubernetes Secrets pods read by ``envFrom``.

The secret store (``sdk/dataplane/secrets.py``) holds the values; a Kubernetes Secret
is how they reach pods (https://kubernetes.io/docs/concepts/configuration/secret/).
Workflow manifests only name these Secrets; this module, behind
``csflow svc secrets sync``, is the one place that writes values into them:

- ``<kube_name(OWNER, TITLE)>-secrets``, one per model config: the secrets the
  config declares (``secrets:``), for the model's ``inputs`` and ``run`` steps.
  Undeclared secrets stay in the store; a model gets only what it declares;
- ``csflow-model-jobs``: the job store's URL and the read-only ``model`` Redis
  user, for every model step;
- ``csflow-platform``: the webapp token and the ``scheduler`` Redis user, for
  the platform steps only;
- ``csflow-redis-acl``: Redis' ``users.acl`` (password hashes; ``sdk/ops/redis_acl.py``).

``plan`` renders them and warns (by name, never value) about what is missing;
``summary`` describes them without values; ``apply`` creates or replaces them
with the kubernetes client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from csflow.runtime import step_env
from csflow.sdk.core import names
from csflow.sdk.core.errors import CsflowError, NotFound
from csflow.sdk.core.model_config import ModelConfig, load_model_config
from csflow.sdk.core.steps import MODEL_JOB_STORE_SECRET, PLATFORM_SECRET
from csflow.sdk.dataplane.secrets import SecretStore
from csflow.sdk.ops import redis_acl

if TYPE_CHECKING:
    from csflow.sdk.core.settings import Settings

MANAGED_BY = {"app.kubernetes.io/managed-by": "csflow"}


def model_secret_name(owner: str, title: str) -> str:
    """The Kubernetes Secret a model's steps read (the ``model-secret`` parameter)."""
    return f"{names.kube_name(owner, title)}-secrets"


@dataclass
class SyncPlan:
    secrets: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def secret_object(
    name: str,
    namespace: str,
    values: dict[str, str],
    component: str,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {**MANAGED_BY, "app.kubernetes.io/component": component},
    }
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "stringData": dict(sorted(values.items())),
    }


def model_configs(
    config_dirs: list[Path],
    only: list[tuple[str, str]] | None = None,
    warnings: list[str] | None = None,
) -> list[ModelConfig]:
    """Every model config under ``config_dirs`` (``OWNER/TITLE.yaml``; the first
    folder that has a model wins, as for ``find_model_config``)."""
    found: dict[tuple[str, str], ModelConfig] = {}
    for folder in config_dirs:
        for path in sorted(Path(folder).glob("*/*.yaml")):
            key = (path.parent.name, path.stem)
            if key in found or (only is not None and key not in only):
                continue
            try:
                found[key] = load_model_config(path)
            except CsflowError as exc:
                if warnings is not None:
                    warnings.append(f"skipped {path}: {exc}")
    missing = [f"{o}/{t}" for o, t in (only or []) if (o, t) not in found]
    if missing:
        raise NotFound(f"no model config for {', '.join(missing)}")
    return [found[key] for key in sorted(found)]


def plan(
    settings: Settings, store: SecretStore, only: list[tuple[str, str]] | None = None
) -> SyncPlan:
    """The Secrets to deliver; ``only`` limits the model Secrets to some models
    (the service Secrets are rendered when ``only`` is None)."""
    namespace = settings.argo_namespace
    result = SyncPlan()
    for config in model_configs(settings.config_dirs, only, result.warnings):
        values = store.values(config.owner, config.title, config.secrets)
        for name in config.secrets:
            if name not in values:
                result.warnings.append(f"{config.name}: declared secret {name} is not set")
        result.secrets.append(
            secret_object(
                model_secret_name(config.owner, config.title),
                namespace,
                values,
                "model",
                {"csflow.io/model": config.name},
            )
        )
    if only is not None:
        return result

    service = {
        user.name: store.values(None, None, [user.password_secret]).get(user.password_secret, "")
        for user in redis_acl.acl_users()
        if user.password_secret
    }
    unset = [redis_acl.acl_user(u).secret_name for u, pw in service.items() if not pw]
    if unset:
        result.warnings.append(
            f"Redis passwords not set: {', '.join(unset)} "
            f"(csflow svc secrets set NAME --generate); skipped {redis_acl.ACL_SECRET}"
        )
    else:
        result.secrets.append(redis_acl.acl_secret(service, namespace))

    if service.get(redis_acl.MODEL):
        job_store = (
            settings.job_store_url
            if settings.job_store_url.startswith("redis")
            else redis_acl.CLUSTER_JOB_STORE_URL
        )
        result.secrets.append(
            secret_object(
                MODEL_JOB_STORE_SECRET,
                namespace,
                redis_acl.job_store_env(job_store, redis_acl.MODEL, service[redis_acl.MODEL]),
                "model",
            )
        )
    else:
        result.warnings.append(f"skipped {MODEL_JOB_STORE_SECRET}: REDIS_MODEL_PW is not set")

    platform: dict[str, str] = {}
    if service.get(redis_acl.SCHEDULER):
        platform[step_env.REDIS_USER.name] = redis_acl.SCHEDULER
        platform[step_env.REDIS_PASSWORD.name] = service[redis_acl.SCHEDULER]
    token = store.values(None, None, [settings.webapp_token_secret])
    if token:
        platform[step_env.WEBAPP_TOKEN.name] = token[settings.webapp_token_secret]
    else:
        result.warnings.append(f"the webapp token ({settings.webapp_token_secret}) is not set")
    result.secrets.append(secret_object(PLATFORM_SECRET, namespace, platform, "platform"))
    return result


def summary(secrets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What ``secrets`` hold, by name only."""
    return [
        {
            "secret": s["metadata"]["name"],
            "namespace": s["metadata"]["namespace"],
            "for": s["metadata"].get("annotations", {}).get("csflow.io/model")
            or s["metadata"]["labels"]["app.kubernetes.io/component"],
            "keys": sorted(s["stringData"]),
        }
        for s in secrets
    ]


def render_yaml(secrets: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(secrets, sort_keys=False, default_flow_style=False)


def kubernetes_api(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """A CoreV1Api from a kubeconfig (``--kubeconfig``/``--context``, else the
    default one), or from the pod's service account inside a cluster."""
    from kubernetes import client, config

    try:
        config.load_kube_config(config_file=kubeconfig, context=context)
    except (config.ConfigException, FileNotFoundError, TypeError) as exc:
        if kubeconfig or context:
            raise CsflowError(f"cannot load the Kubernetes configuration: {exc}") from None
        try:
            config.load_incluster_config()
        except config.ConfigException:
            raise CsflowError(
                "no Kubernetes configuration: give --kubeconfig, or run inside a cluster"
            ) from None
    return client.CoreV1Api()


def apply(secrets: list[dict[str, Any]], api: Any) -> list[tuple[str, str]]:
    """Create each Secret, or replace it when it exists. Returns (name, action)."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    done = []
    for secret in secrets:
        name, namespace = secret["metadata"]["name"], secret["metadata"]["namespace"]
        try:
            try:
                api.create_namespaced_secret(namespace, secret)
                done.append((name, "created"))
            except ApiException as exc:
                if exc.status != 409:
                    raise
                api.replace_namespaced_secret(name, namespace, secret)
                done.append((name, "replaced"))
        except ApiException as exc:
            # Only the status: a reply body could quote the object.
            raise CsflowError(
                f"cannot write Secret {namespace}/{name}: HTTP {exc.status} {exc.reason}"
            ) from None
        except (OSError, HTTPError) as exc:
            raise CsflowError(
                f"cannot reach the Kubernetes API for Secret {namespace}/{name}: "
                f"{type(exc).__name__}"
            ) from None
    return done
