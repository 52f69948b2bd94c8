"""What every csflow flow shares: labels, security, step commands and safe defaults.

A step is a container template. Where it runs is declared on the template as
the label ``csflow.io/environment``:

- ``model``: model code runs here (the model's image, or its uv environment in
  the embedded engine). It gets the model's own secrets and its job key, nothing
  more, and no Kubernetes API token.
- ``platform``: csflow's own code (the csflow image, or csflow's environment).
  Storage and webapp credentials live only here.

Argo docs: https://argo-workflows.readthedocs.io/en/latest/workflow-templates/
"""

from __future__ import annotations

import json
import re

from hera.workflows import Container, EmptyDirVolume, Parameter
from hera.workflows.models import (
    Capabilities,
    ConfigMapEnvSource,
    EnvFromSource,
    ExecutorConfig,
    PodGC,
    PodSecurityContext,
    RetryStrategy,
    SeccompProfile,
    SecretEnvSource,
    SecurityContext,
    TTLStrategy,
)
from hera.workflows.models import (
    Backoff as BackoffModel,
)

NAMESPACE = "csflow"
LABEL_PREFIX = "csflow.io"
ENVIRONMENT_LABEL = f"{LABEL_PREFIX}/environment"
MODEL, PLATFORM = "model", "platform"

# Steps read and write files under this folder; Argo moves them between pods
# as artifacts, and the embedded engine maps it to a folder of the run.
WORK_DIR = "/tmp/csflow"

# The programs the images put on PATH (Dockerfile); the embedded engine maps
# each to its local interpreter and module.
MODEL_STEP_COMMAND = ["csflow-model-step"]
PLATFORM_STEP_COMMAND = ["csflow-step"]
# Publishing: the contract tests (model image) and the publish steps (platform).
CONTRACT_TESTS_COMMAND = ["csflow-contract-tests"]
PUBLISH_STEP_COMMAND = ["csflow-publish-step"]
# A third environment: the image builder (in the csflow image on Argo; the
# embedded engine builds a uv environment from the same build context instead).
BUILD = "build"
IMAGE_BUILD_COMMAND = ["csflow-image-build"]

# Service accounts (cluster/argo/rbac.yaml). Pods run as the workflow's account
# (platform steps) or the model's (model steps); neither has Kubernetes API rights
# and no step mounts a token. Argo's executor sidecar gets its own account, whose
# only right is to report task results.
WORKFLOW_SERVICE_ACCOUNT = "csflow-workflow"
MODEL_SERVICE_ACCOUNT = "csflow-model"
EXECUTOR_SERVICE_ACCOUNT = "csflow-executor"
PLATFORM_SECRET = "csflow-platform"
PLATFORM_CONFIG = "csflow-platform"
# The job store's URL and the model's read-only Redis ACL user (get job-*), for
# model steps; keys CSFLOW_JOB_STORE, CSFLOW_REDIS_USER, CSFLOW_REDIS_PASSWORD.
MODEL_JOB_STORE_SECRET = "csflow-model-jobs"

RUN_AS_USER = 1000


def param(name: str) -> str:
    """The Argo expression for a workflow parameter."""
    return f"{{{{workflow.parameters.{name}}}}}"


def pod_security_context() -> PodSecurityContext:
    return PodSecurityContext(
        run_as_non_root=True,
        run_as_user=RUN_AS_USER,
        run_as_group=RUN_AS_USER,
        fs_group=RUN_AS_USER,
        seccomp_profile=SeccompProfile(type="RuntimeDefault"),
    )


def container_security_context() -> SecurityContext:
    return SecurityContext(
        allow_privilege_escalation=False,
        privileged=False,
        run_as_non_root=True,
        capabilities=Capabilities(drop=["ALL"]),
    )


def model_image(registry: str, owner: str, title: str, tag: str) -> str:
    """The model's image, ``REGISTRY/owner_title:TAG`` (as C/S named them). Owner,
    title and tag are validated names; the repository part must also fit Docker's
    grammar (lowercase, no separator at either end)."""
    from csflow.sdk import names
    from csflow.sdk.errors import BadInput

    repository = f"{owner}_{title}".lower()
    if not _DOCKER_PATH_COMPONENT.match(repository):
        raise BadInput(f"cannot derive an image name from {owner}/{title}")
    return f"{registry.rstrip('/')}/{repository}:{names.check_tag(tag)}"


_DOCKER_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")


def pod_gc() -> PodGC:
    return PodGC(strategy="OnPodCompletion")


def workflow_safety() -> dict:
    """Fields every csflow Workflow and WorkflowTemplate sets (hera keyword
    arguments): clean-up by Argo, the service accounts, and a pod security
    context. The controller's ``workflowDefaults`` repeat them as a backstop."""
    return {
        "pod_gc": pod_gc(),
        "ttl_strategy": ttl_strategy(),
        "service_account_name": WORKFLOW_SERVICE_ACCOUNT,
        "automount_service_account_token": False,
        "executor": ExecutorConfig(service_account_name=EXECUTOR_SERVICE_ACCOUNT),
        "security_context": pod_security_context(),
    }


def ttl_strategy() -> TTLStrategy:
    # Keep failures longer than successes so operators can look at them.
    return TTLStrategy(seconds_after_success=3600, seconds_after_failure=7 * 24 * 3600)


def transient_retry() -> RetryStrategy:
    """Retries with backoff for platform steps that talk to services. Model steps
    never get one: a model that failed on its own is not run again."""
    return RetryStrategy(
        limit="4",
        retry_policy="Always",
        backoff=BackoffModel(duration="5s", factor="2", max_duration="5m"),
    )


def resources_patch(container_name: str = "main") -> str:
    """Resources from parameters. Quantities in ``resources`` must match Kubernetes'
    quantity pattern, so templated values go through ``podSpecPatch``."""
    return json.dumps(
        {
            "containers": [
                {
                    "name": container_name,
                    "resources": {
                        "requests": {"cpu": param("cpu"), "memory": param("memory-request")},
                        "limits": {"cpu": param("cpu"), "memory": param("memory-limit")},
                    },
                }
            ]
        },
        separators=(",", ":"),
    )


def platform_env_from() -> list[EnvFromSource]:
    """Platform credentials (storage, webapp token, Redis scheduler user)."""
    return [
        EnvFromSource(config_map_ref=ConfigMapEnvSource(name=PLATFORM_CONFIG)),
        EnvFromSource(secret_ref=SecretEnvSource(name=PLATFORM_SECRET)),
    ]


def model_env_from() -> list[EnvFromSource]:
    """The model's own secrets, by reference (optional, so a model without any
    runs), and the read-only job store credentials."""
    return [
        EnvFromSource(secret_ref=SecretEnvSource(name=param("model-secret"), optional=True)),
        EnvFromSource(secret_ref=SecretEnvSource(name=MODEL_JOB_STORE_SECRET)),
    ]


def work_volume() -> EmptyDirVolume:
    """An emptyDir at WORK_DIR in every step's pod, writable by the step's user (the
    pod's fsGroup). Without it the folder Argo creates to put an input artifact in
    is root's, and the step cannot write its own files beside it."""
    return EmptyDirVolume(name="work", mount_path=WORK_DIR)


def model_step(
    name: str,
    args: list[str],
    image: str | None = None,
    command: list[str] | None = None,
    env_from: list[EnvFromSource] | None = None,
    **kwargs,
) -> Container:
    return Container(
        name=name,
        image=image or param("image"),
        command=command or MODEL_STEP_COMMAND,
        args=args,
        labels={ENVIRONMENT_LABEL: MODEL},
        service_account_name=MODEL_SERVICE_ACCOUNT,
        automount_service_account_token=False,
        security_context=container_security_context(),
        pod_spec_patch=resources_patch(),
        env_from=model_env_from() if env_from is None else env_from,
        volumes=[work_volume()],
        **kwargs,
    )


def platform_step(
    name: str,
    args: list[str],
    image: str,
    command: list[str] | None = None,
    env_from: list[EnvFromSource] | None = None,
    **kwargs,
) -> Container:
    return Container(
        name=name,
        image=image,
        command=command or PLATFORM_STEP_COMMAND,
        args=args,
        labels={ENVIRONMENT_LABEL: PLATFORM},
        automount_service_account_token=False,
        security_context=container_security_context(),
        env_from=platform_env_from() if env_from is None else env_from,
        volumes=[work_volume()],
        **kwargs,
    )


def required(*names: str) -> list[Parameter]:
    return [Parameter(name=n) for n in names]
