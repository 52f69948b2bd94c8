"""The simulate flow: inputs -> run -> outputs -> upload, with an exit handler.

One WorkflowTemplate, ``csflow-simulate``, declared here once. Each simulation
is a small Workflow that refers to it by ``workflowTemplateRef`` and carries
only parameters (``simulation_workflow``); inputs and outputs travel by
reference (the job key in the job store, the storage URI), never as
parameters. The embedded engine executes the same compiled template.

1. ``inputs`` (model): load the job, check meta parameters and sections, call
   ``validate_inputs``. Invalid inputs end the run as INVALID; not a crash.
2. ``run`` (model): call ``run_model``; only when the inputs are valid.
3. ``outputs`` (platform): validate against the schema, serialize, zip, summarize.
4. ``upload`` (platform): write to storage, then tell the webapp (with the
   model's version from ``inputs`` and ``run_model``'s time from ``run``, which
   the webapp bills on).
``notify`` (platform) runs on every end, so nothing stays PENDING.

Argo docs: https://argo-workflows.readthedocs.io/en/latest/walk-through/dag/ and
https://argo-workflows.readthedocs.io/en/latest/walk-through/exit-handlers/
"""

from __future__ import annotations

from dataclasses import dataclass

from hera.workflows import (
    DAG,
    Artifact,
    Container,
    NoneArchiveStrategy,
    Parameter,
    Resources,
    Workflow,
    WorkflowTemplate,
)
from hera.workflows.models import ValueFrom, WorkflowTemplateRef

from csflow.flows import _common as c
from csflow.sdk.core import steps

NAME = "csflow-simulate"
ENTRYPOINT = "simulate"
WORKFLOW_DEADLINE_MARGIN = 300

# Parameters each simulation Workflow passes (all small strings).
PARAMETERS = (
    "owner",
    "title",
    "tag",
    "image",
    "job-id",
    "cpu",
    "memory-request",
    "memory-limit",
    "timeout",
    "model-secret",
)

PLATFORM_RESOURCES = Resources(
    cpu_request="100m", cpu_limit="1", memory_request="256Mi", memory_limit="512Mi"
)

JOB_ARGS = ["--job-id", c.param("job-id")]
RUN_ARGS = JOB_ARGS + ["--owner", c.param("owner"), "--title", c.param("title")]


def _file_output(name: str, default: str = "", global_name: str | None = None) -> Parameter:
    return Parameter(
        name=name,
        value_from=ValueFrom(path=f"{steps.WORK_DIR}/{name}", default=default),
        global_name=global_name,
    )


def _artifact(name: str, path: str, **kwargs) -> Artifact:
    return Artifact(
        name=name, path=f"{steps.WORK_DIR}/{path}", archive=NoneArchiveStrategy(), **kwargs
    )


@dataclass
class SimulationSteps:
    """The four step templates of one simulation."""

    inputs: Container
    run: Container
    outputs: Container
    upload: Container


def declare_steps(platform_image: str, job_id: str, point: bool = False) -> SimulationSteps:
    """Declare a simulation's step templates in the current WorkflowTemplate, once for
    both flows. ``job_id``: where a step reads its job id. A sweep's ``point`` steps
    read it from their input (each point is its own job), tell no webapp (the webapp
    knows only its own jobs) and set no global outputs (points would overwrite them)."""
    job_input = [Parameter(name="job-id")] if point else []
    job_args = ["--job-id", job_id]
    run_args = job_args + ["--owner", c.param("owner"), "--title", c.param("title")]

    def global_name(name: str) -> str | None:
        return None if point else name

    inputs = c.model_step(
        "inputs",
        args=["inputs", *job_args],
        inputs=job_input,
        outputs=[
            _file_output("valid", default="false"),
            _file_output(
                "errors-warnings", default="{}", global_name=global_name("errors-warnings")
            ),
            _file_output("model-version", global_name=global_name("model-version")),
        ],
    )
    run = c.model_step(
        "run",
        args=["run", *job_args],
        active_deadline_seconds=c.param("timeout"),
        inputs=job_input,
        outputs=[
            _artifact("raw-outputs", "raw-outputs.json"),
            # Seconds run_model took; empty from a model image older than this output.
            _file_output("task-time"),
        ],
    )
    outputs = c.platform_step(
        "outputs",
        args=["outputs", *run_args],
        image=platform_image,
        resources=PLATFORM_RESOURCES,
        inputs=[*job_input, _artifact("raw-outputs", "raw-outputs.json")],
        outputs=[_artifact("results", "results")],
    )
    upload = c.platform_step(
        "upload",
        args=[
            "upload",
            *run_args,
            "--task-time={{inputs.parameters.task-time}}",
            "--model-version={{inputs.parameters.model-version}}",
            *(["--no-webapp"] if point else []),
        ],
        image=platform_image,
        resources=PLATFORM_RESOURCES,
        retry_strategy=c.transient_retry(),
        inputs=[
            *job_input,
            _artifact("results", "results"),
            Parameter(name="task-time"),
            Parameter(name="model-version"),
        ],
    )
    return SimulationSteps(inputs, run, outputs, upload)


def declare_tasks(steps: SimulationSteps, job_arguments: list[Parameter]) -> None:
    """Inside a DAG: inputs -> run -> outputs -> upload, each task given
    ``job_arguments`` (a point's job id) beside what flows between them."""
    # Explicit ".Succeeded": a bare "run" would also fire when run is skipped.
    inputs_task = c.dag_task(steps.inputs(name="inputs", arguments=[*job_arguments]))
    run_task = c.dag_task(
        steps.run(
            name="run",
            depends="inputs.Succeeded",
            when="{{tasks.inputs.outputs.parameters.valid}} == true",
            arguments=[*job_arguments],
        )
    )
    outputs_task = c.dag_task(
        steps.outputs(
            name="outputs",
            depends="run.Succeeded",
            arguments=[*job_arguments, run_task.get_artifact("raw-outputs")],
        )
    )
    steps.upload(
        name="upload",
        depends="outputs.Succeeded",
        arguments=[
            *job_arguments,
            outputs_task.get_artifact("results"),
            run_task.get_parameter("task-time"),
            inputs_task.get_parameter("model-version"),
        ],
    )


def build(platform_image: str = "gcr.io/csflow/csflow:0.1.0") -> WorkflowTemplate:
    with WorkflowTemplate(
        name=NAME,
        namespace=steps.NAMESPACE,
        entrypoint=ENTRYPOINT,
        on_exit="notify",
        **c.template_safety(),
        labels={f"{steps.LABEL_PREFIX}/flow": "simulate"},
        annotations={
            "workflows.argoproj.io/title": "csflow simulate",
            "workflows.argoproj.io/description": "inputs → run → outputs → upload",
        },
        arguments=c.required(*PARAMETERS),
    ) as template:
        simulation = declare_steps(platform_image, c.param("job-id"))
        c.platform_step(
            "notify",
            args=[
                "notify",
                *RUN_ARGS,
                "--status",
                "{{workflow.status}}",
                "--failures",
                "{{workflow.failures}}",
                "--errors-warnings",
                "{{workflow.outputs.parameters.errors-warnings}}",
            ],
            image=platform_image,
            resources=PLATFORM_RESOURCES,
            retry_strategy=c.transient_retry(),
        )
        with DAG(name=ENTRYPOINT):
            declare_tasks(simulation, [])
    return template


def simulation_workflow(
    *,
    owner: str,
    title: str,
    tag: str,
    image: str,
    job_id: str,
    resources: dict[str, dict[str, str]],
    timeout: int,
    model_secret: str,
) -> Workflow:
    """The small Workflow for one simulation: a reference to the template plus
    parameters. Its name is the job id, so submitting a job twice is refused."""
    model = f"{owner}/{title}"
    return Workflow(
        name=f"sim-{job_id}",
        namespace=steps.NAMESPACE,
        workflow_template_ref=WorkflowTemplateRef(name=NAME),
        **c.run_clean_up(),
        # Room beyond the model's own timeout for the inputs and platform steps.
        active_deadline_seconds=timeout + WORKFLOW_DEADLINE_MARGIN,
        labels={
            f"{steps.LABEL_PREFIX}/owner": owner,
            f"{steps.LABEL_PREFIX}/title": title,
            f"{steps.LABEL_PREFIX}/job-id": job_id,
            f"{steps.LABEL_PREFIX}/tag": tag,
        },
        annotations={
            "workflows.argoproj.io/title": f"simulate {model}:{tag}",
            "workflows.argoproj.io/description": f"job `{job_id}` of **{model}** at tag `{tag}`",
        },
        arguments={
            "owner": owner,
            "title": title,
            "tag": tag,
            "image": image,
            "job-id": job_id,
            "cpu": resources["requests"]["cpu"],
            "memory-request": resources["requests"]["memory"],
            "memory-limit": resources["limits"]["memory"],
            "timeout": str(timeout),
            "model-secret": model_secret,
        },
    )


def simulation_workflow_for(version, job_id: str, registry: str) -> Workflow:
    """The simulation Workflow for a published model version (``ModelVersion``):
    its resources, timeout and secret name come from the version's config; its
    image is the one its publish pushed, else ``registry``'s name for the tag."""
    from csflow.sdk.core import names
    from csflow.sdk.core.model_config import ModelConfig

    config = ModelConfig.model_validate(version.config)
    kube = names.kube_name(version.owner, version.title)
    return simulation_workflow(
        owner=version.owner,
        title=version.title,
        tag=version.tag,
        image=version.record.get("image")
        or names.model_image(registry, version.owner, version.title, version.tag),
        job_id=job_id,
        resources=config.resources.kubernetes(),
        timeout=config.timeout,
        model_secret=f"{kube}-secrets",
    )
