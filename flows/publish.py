"""The publish flow: clone -> build -> test -> verify -> push -> approve -> deploy.

One WorkflowTemplate, ``csflow-publish``, declared here once. Each publish is
a small Workflow that refers to it by ``workflowTemplateRef`` and carries only
parameters (``publish_workflow``); the model's config travels as one of them
(a few hundred bytes; it names secrets, never holds their values). The
embedded engine executes the same compiled template.

1. ``clone`` (platform): fetch the source at the config's git ref (or take the
   local path), lock the requirements, compute the content tag
   (config + source + lock) and lay out the build context: the source, the
   lock and csflow's model-side programs. It says whether that version is
   already built.
2. ``build`` (csflow image, unprivileged): builds ``REGISTRY/owner_title:TAG``
   from the context, base image plus one layer (``sdk/builds/model_image.py``), only
   when the version is not built yet. The embedded engine builds the model's
   uv environment from the same context instead.
3. ``test`` (model): the contract tests, inside the new image or environment
   (``runtime/contract_tests.py``), with the model's own secrets and nothing else.
4. ``verify`` (platform): checks ``run_model``'s outputs against csflow's
   schema and gives the verdict. A failure stops the flow: nothing moves.
5. ``push`` (platform): records the version (when, from what, its tests) in
   the model registry and moves ``staging`` to it.
6. ``approve`` (optional): a suspend step, when ``require-approval`` is
   ``true``; ``argo resume`` or ``csflow publish approve RUN`` continues it.
7. ``deploy`` (platform): stores the default inputs in the inputs cache, moves
   ``latest``, and tells the webapp.

No workflow-level deadline: a publish may wait days for approval. Each step
has its own (``activeDeadlineSeconds``).

Argo docs: https://argo-workflows.readthedocs.io/en/latest/walk-through/dag/ and
https://argo-workflows.readthedocs.io/en/latest/walk-through/suspending/
"""

from __future__ import annotations

import json

from hera.workflows import (
    DAG,
    Artifact,
    Container,
    Env,
    NoneArchiveStrategy,
    Parameter,
    Resources,
    SecretVolume,
    Suspend,
    Workflow,
    WorkflowTemplate,
)
from hera.workflows.models import (
    ConfigMapEnvSource,
    EnvFromSource,
    KeyToPath,
    SecretEnvSource,
    ValueFrom,
    WorkflowTemplateRef,
)

from csflow.flows import _common as c
from csflow.sdk.core import names, steps
from csflow.sdk.core.model_config import ModelConfig

NAME = "csflow-publish"
ENTRYPOINT = "publish"

# Parameters each publish Workflow passes (all small strings).
PARAMETERS = (
    "owner",
    "title",
    "config",
    "config-dir",
    "registry",
    "require-approval",
    "cpu",
    "memory-request",
    "memory-limit",
    "test-timeout",
    "model-secret",
)

# The registry credentials the build pushes with: a dockerconfigjson Secret
# (optional: a registry may authorize the node or need no credentials).
REGISTRY_SECRET = "csflow-registry-push"
DOCKER_CONFIG_DIR = "/var/run/csflow/registry"
BUILD_DEADLINE = 3600
PLATFORM_DEADLINE = 1800
# The contract tests' deadline: the model's timeout plus room for get_inputs over
# the meta-parameter grid.
TEST_TIMEOUT_MARGIN = 600

PLATFORM_RESOURCES = Resources(
    cpu_request="100m", cpu_limit="1", memory_request="256Mi", memory_limit="1Gi"
)
BUILD_RESOURCES = Resources(
    cpu_request="1", cpu_limit="2", memory_request="2Gi", memory_limit="4Gi"
)

MODEL_ARGS = ["--owner", c.param("owner"), "--title", c.param("title")]
CLONE = "tasks.clone.outputs.parameters"


def _file_output(name: str, default: str | None = None) -> Parameter:
    return Parameter(
        name=name, value_from=ValueFrom(path=f"{steps.WORK_DIR}/{name}", default=default)
    )


def _optional(argument: Artifact) -> Artifact:
    argument.optional = True
    return argument


def _artifact(
    name: str, path: str, archive: bool = False, optional: bool | None = None
) -> Artifact:
    # Small files travel unarchived; the build context is a folder, tarred.
    return Artifact(
        name=name,
        path=f"{steps.WORK_DIR}/{path}",
        archive=None if archive else NoneArchiveStrategy(),
        optional=optional,
    )


def build(platform_image: str = "gcr.io/csflow/csflow:0.1.0") -> WorkflowTemplate:
    with WorkflowTemplate(
        name=NAME,
        namespace=steps.NAMESPACE,
        entrypoint=ENTRYPOINT,
        **c.template_safety(),
        labels={f"{steps.LABEL_PREFIX}/flow": "publish"},
        annotations={
            "workflows.argoproj.io/title": "csflow publish",
            "workflows.argoproj.io/description": "clone → build → test → push → approve → deploy",
        },
        arguments=c.required(*PARAMETERS),
    ) as template:
        clone = c.platform_step(
            "clone",
            command=steps.PUBLISH_STEP_COMMAND,
            args=[
                "clone",
                *MODEL_ARGS,
                "--config",
                c.param("config"),
                "--config-dir",
                c.param("config-dir"),
                "--registry",
                c.param("registry"),
            ],
            image=platform_image,
            # No platform secrets: locking may build a requirement's sdist, which
            # runs code the model's author chose.
            env_from=[EnvFromSource(config_map_ref=ConfigMapEnvSource(name=steps.PLATFORM_CONFIG))],
            resources=PLATFORM_RESOURCES,
            active_deadline_seconds=PLATFORM_DEADLINE,
            # No retries: a wrong URL or ref fails the same way each time.
            outputs=[
                _file_output("content-tag"),
                _file_output("image"),
                _file_output("built", default="false"),
                _artifact("context", "context", archive=True),
                _artifact("tests", "tests.json"),
                _artifact("build-info", "build-info.json"),
            ],
        )
        # Not a platform step: no platform secrets (installing packages may run
        # code the model's author chose) and its own environment label.
        image_build = Container(
            name="build",
            image=platform_image,
            command=steps.IMAGE_BUILD_COMMAND,
            args=[
                f"--context={steps.WORK_DIR}/context",
                "--image={{inputs.parameters.image}}",
                f"--digest-file={steps.WORK_DIR}/digest",
            ],
            labels={steps.ENVIRONMENT_LABEL: steps.BUILD},
            automount_service_account_token=False,
            security_context=c.container_security_context(),
            env_from=[EnvFromSource(config_map_ref=ConfigMapEnvSource(name=steps.PLATFORM_CONFIG))],
            env=[Env(name="DOCKER_CONFIG", value=DOCKER_CONFIG_DIR)],
            resources=BUILD_RESOURCES,
            active_deadline_seconds=BUILD_DEADLINE,
            volumes=[
                c.work_volume(),
                SecretVolume(
                    name="registry-push",
                    secret_name=REGISTRY_SECRET,
                    items=[KeyToPath(key=".dockerconfigjson", path="config.json")],
                    mount_path=DOCKER_CONFIG_DIR,
                    read_only=True,
                    optional=True,
                ),
            ],
            inputs=[Parameter(name="image"), _artifact("context", "context", archive=True)],
        )
        test = c.model_step(
            "test",
            command=steps.CONTRACT_TESTS_COMMAND,
            args=["test"],
            image="{{inputs.parameters.image}}",
            # The model's own secrets only: the tests need no job store.
            env_from=[
                EnvFromSource(
                    secret_ref=SecretEnvSource(name=c.param("model-secret"), optional=True)
                )
            ],
            active_deadline_seconds=c.param("test-timeout"),
            inputs=[Parameter(name="image"), _artifact("tests", "tests.json")],
            outputs=[
                _artifact("test-results", "test-results.json"),
                # Missing when a test failed before run_model or get_inputs passed.
                _artifact("raw-outputs", "raw-outputs.json", optional=True),
                _artifact("inputs-cache", "inputs-cache.json", optional=True),
            ],
        )
        verify = c.platform_step(
            "verify",
            command=steps.PUBLISH_STEP_COMMAND,
            args=["verify", *MODEL_ARGS],
            image=platform_image,
            resources=PLATFORM_RESOURCES,
            active_deadline_seconds=PLATFORM_DEADLINE,
            inputs=[
                _artifact("test-results", "test-results.json"),
                _artifact("raw-outputs", "raw-outputs.json", optional=True),
            ],
            outputs=[_artifact("test-report", "test-report.json")],
        )
        push = c.platform_step(
            "push",
            command=steps.PUBLISH_STEP_COMMAND,
            args=[
                "push",
                *MODEL_ARGS,
                "--tag",
                "{{inputs.parameters.tag}}",
                "--image",
                "{{inputs.parameters.image}}",
                "--run",
                "{{workflow.name}}",
            ],
            image=platform_image,
            resources=PLATFORM_RESOURCES,
            active_deadline_seconds=PLATFORM_DEADLINE,
            retry_strategy=c.transient_retry(),
            inputs=[
                Parameter(name="tag"),
                Parameter(name="image"),
                _artifact("build-info", "build-info.json"),
                _artifact("test-report", "test-report.json"),
            ],
        )
        approve = Suspend(name="approve")
        deploy = c.platform_step(
            "deploy",
            command=steps.PUBLISH_STEP_COMMAND,
            args=[
                "deploy",
                *MODEL_ARGS,
                "--tag",
                "{{inputs.parameters.tag}}",
                "--run",
                "{{workflow.name}}",
            ],
            image=platform_image,
            resources=PLATFORM_RESOURCES,
            active_deadline_seconds=PLATFORM_DEADLINE,
            retry_strategy=c.transient_retry(),
            inputs=[
                Parameter(name="tag"),
                _artifact("inputs-cache", "inputs-cache.json", optional=True),
            ],
        )
        with DAG(name=ENTRYPOINT):
            clone_task = c.dag_task(clone(name="clone"))
            image_build(
                name="build",
                depends="clone.Succeeded",
                when=f"{{{{{CLONE}.built}}}} != true",
                arguments=[
                    Parameter(name="image", value=f"{{{{{CLONE}.image}}}}"),
                    clone_task.get_artifact("context"),
                ],
            )
            # A bare "build" is Succeeded or Skipped (already built).
            test_task = c.dag_task(
                test(
                    name="test",
                    depends="clone.Succeeded && build",
                    arguments=[
                        Parameter(name="image", value=f"{{{{{CLONE}.image}}}}"),
                        clone_task.get_artifact("tests"),
                    ],
                )
            )
            verify_task = c.dag_task(
                verify(
                    name="verify",
                    depends="test.Succeeded",
                    arguments=[
                        test_task.get_artifact("test-results"),
                        # Not produced when the tests stop before run_model (or skip it):
                        # optional here too, or Argo cannot resolve the argument.
                        _optional(test_task.get_artifact("raw-outputs")),
                    ],
                )
            )
            push(
                name="push",
                depends="verify.Succeeded",
                arguments=[
                    Parameter(name="tag", value=f"{{{{{CLONE}.content-tag}}}}"),
                    Parameter(name="image", value=f"{{{{{CLONE}.image}}}}"),
                    clone_task.get_artifact("build-info"),
                    verify_task.get_artifact("test-report"),
                ],
            )
            approve(
                name="approve",
                depends="push.Succeeded",
                when=f"{c.param('require-approval')} == true",
            )
            # A bare "approve" is Succeeded or Skipped (no approval asked).
            deploy(
                name="deploy",
                depends="push.Succeeded && approve",
                arguments=[
                    Parameter(name="tag", value=f"{{{{{CLONE}.content-tag}}}}"),
                    test_task.get_artifact("inputs-cache"),
                ],
            )
    return template


def publish_workflow(
    *,
    config: dict,
    config_dir: str,
    run_id: str,
    registry: str,
    require_approval: bool,
    resources: dict[str, dict[str, str]],
    test_timeout: int,
    model_secret: str,
) -> Workflow:
    """The small Workflow for one publish: a reference to the template plus
    parameters. ``config`` is the model config as loaded (``ModelConfig``'s JSON
    form); ``config_dir`` is where a local ``source.path`` is resolved from
    (empty on a cluster, where sources come from git)."""
    owner, title = config["owner"], config["title"]
    return Workflow(
        name=f"publish-{run_id}",
        namespace=steps.NAMESPACE,
        workflow_template_ref=WorkflowTemplateRef(name=NAME),
        **c.run_clean_up(),
        labels={
            f"{steps.LABEL_PREFIX}/owner": owner,
            f"{steps.LABEL_PREFIX}/title": title,
            f"{steps.LABEL_PREFIX}/flow": "publish",
        },
        annotations={
            "workflows.argoproj.io/title": f"publish {owner}/{title}",
            "workflows.argoproj.io/description": f"publish **{owner}/{title}**"
            + (" (waits for approval before deploying)" if require_approval else ""),
        },
        arguments={
            "owner": owner,
            "title": title,
            "config": json.dumps(config, sort_keys=True, separators=(",", ":")),
            "config-dir": config_dir,
            "registry": registry,
            "require-approval": "true" if require_approval else "false",
            "cpu": resources["requests"]["cpu"],
            "memory-request": resources["requests"]["memory"],
            "memory-limit": resources["limits"]["memory"],
            "test-timeout": str(test_timeout),
            "model-secret": model_secret,
        },
    )


def publish_workflow_for(
    config: ModelConfig, run_id: str, registry: str, require_approval: bool, config_dir: str
) -> Workflow:
    """The publish Workflow for a loaded model config, as every backend submits it:
    its resources, test deadline and secret name come from the config. ``config_dir``
    is the config's folder on the embedded engine, empty on a cluster."""
    names.model_image(registry, config.owner, config.title, "0")  # a name Docker accepts
    return publish_workflow(
        config=config.model_dump(mode="json"),
        config_dir=config_dir,
        run_id=run_id,
        registry=registry,
        require_approval=require_approval,
        resources=config.resources.kubernetes(),
        test_timeout=config.tests.timeout or config.timeout + TEST_TIMEOUT_MARGIN,
        model_secret=f"{names.kube_name(config.owner, config.title)}-secrets",
    )
