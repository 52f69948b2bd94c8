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

from hera.workflows import Container, EmptyDirVolume, Parameter, Step, Task
from hera.workflows.models import (
    Backoff as BackoffModel,
)
from hera.workflows.models import (
    Capabilities,
    ConfigMapEnvSource,
    EnvFromSource,
    ExecutorConfig,
    IntOrString,
    PodGC,
    PodSecurityContext,
    RetryStrategy,
    SeccompProfile,
    SecretEnvSource,
    SecurityContext,
    TTLStrategy,
)

from csflow.sdk.core.steps import (
    ENVIRONMENT_LABEL,
    EXECUTOR_SERVICE_ACCOUNT,
    MODEL,
    MODEL_JOB_STORE_SECRET,
    MODEL_SERVICE_ACCOUNT,
    MODEL_STEP_COMMAND,
    PLATFORM,
    PLATFORM_CONFIG,
    PLATFORM_SECRET,
    PLATFORM_STEP_COMMAND,
    RUN_AS_USER,
    WORK_DIR,
    WORKFLOW_SERVICE_ACCOUNT,
)


def dag_task(created: Step | Task | None) -> Task:
    """What calling a template inside a ``DAG`` context made: a Task. Hera types the
    call for any context (a Step under Steps, None under a Workflow)."""
    if not isinstance(created, Task):
        raise TypeError(f"expected a DAG task, got {type(created).__name__}")
    return created


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


def pod_gc() -> PodGC:
    return PodGC(strategy="OnPodCompletion")


def template_safety() -> dict:
    """Fields every csflow WorkflowTemplate sets (hera keyword arguments): clean-up
    by Argo, the service accounts, and a pod security context. The controller's
    ``workflowDefaults`` repeat them as a backstop."""
    return {
        **run_clean_up(),
        "service_account_name": WORKFLOW_SERVICE_ACCOUNT,
        "automount_service_account_token": False,
        "executor": ExecutorConfig(service_account_name=EXECUTOR_SERVICE_ACCOUNT),
        "security_context": pod_security_context(),
    }


def run_clean_up() -> dict:
    """What a submitted Workflow sets besides its template reference, arguments and
    deadline: its own clean-up, so each run keeps it even if the template is edited.
    Identity and pod security stay on the template alone: under
    ``templateReferencing: Strict`` Argo refuses a Workflow that overrides them, and
    the admission policy refuses any other field (cluster/argo/admission-policy.yaml)."""
    return {"pod_gc": pod_gc(), "ttl_strategy": ttl_strategy()}


def ttl_strategy() -> TTLStrategy:
    # Keep failures longer than successes so operators can look at them.
    return TTLStrategy(seconds_after_success=3600, seconds_after_failure=7 * 24 * 3600)


def transient_retry() -> RetryStrategy:
    """Retries with backoff for platform steps that talk to services. Model steps
    never get one: a model that failed on its own is not run again. Limit and
    factor stay strings ('4', '2'), as the compiled templates have always had them."""
    return RetryStrategy(
        limit=IntOrString("4"),
        retry_policy="Always",
        backoff=BackoffModel(duration="5s", factor=IntOrString("2"), max_duration="5m"),
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
