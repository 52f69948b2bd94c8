"""The sweep flow: one simulation per point of a parameter's range, then a fan-in.

One WorkflowTemplate, ``csflow-sweep``. Each point is a job of its own (its
inputs under its own job key, its results under its own job id), run by the
``point`` DAG: the same four steps as ``csflow-simulate``, declared once in
``simulate.declare_steps`` and ``declare_tasks``. Argo fans the points out with
``withParam`` over the ``points`` parameter (a JSON list of the points' job ids),
so a cluster runs them side by side across its nodes; the embedded engine runs the
same document, bounded by the cores. ``combine`` runs once every point has ended,
when any succeeded (or all failed, to say so): it reads the points' results and
stores the combined outputs under the sweep's own job id (``runtime/platform_step.py``).

``combine`` is the DAG's target task, so points that failed do not fail the sweep
(Argo's DAG rule): their reasons are read from their nodes (``sdk/core/sweep.py``),
and the rest count; a sweep with no results at all fails in ``combine``.

Argo docs: https://argo-workflows.readthedocs.io/en/latest/walk-through/loops/
"""

from __future__ import annotations

import json

from hera.workflows import DAG, Parameter, Task, Workflow, WorkflowTemplate
from hera.workflows.models import WorkflowTemplateRef

from csflow.flows import _common as c
from csflow.flows import simulate
from csflow.sdk.core import steps

NAME = "csflow-sweep"
ENTRYPOINT = "sweep"
POINT = "point"

# The simulate flow's parameters (``job-id`` is the sweep's), the swept parameter's
# name, and the points' job ids and labels (JSON lists, in the same order).
PARAMETERS = (*simulate.PARAMETERS, "axis", "points", "labels")


def build(platform_image: str = "gcr.io/csflow/csflow:0.1.0") -> WorkflowTemplate:
    with WorkflowTemplate(
        name=NAME,
        namespace=steps.NAMESPACE,
        entrypoint=ENTRYPOINT,
        **c.template_safety(),
        labels={f"{steps.LABEL_PREFIX}/flow": "sweep"},
        annotations={
            "workflows.argoproj.io/title": "csflow sweep",
            "workflows.argoproj.io/description": "one simulation per point → combine",
        },
        arguments=c.required(*PARAMETERS),
    ) as template:
        point_steps = simulate.declare_steps(
            platform_image, "{{inputs.parameters.job-id}}", point=True
        )
        combine = c.platform_step(
            "combine",
            args=[
                "combine",
                *simulate.RUN_ARGS,
                "--axis",
                c.param("axis"),
                "--points",
                c.param("points"),
                "--labels",
                c.param("labels"),
            ],
            image=platform_image,
            resources=simulate.PLATFORM_RESOURCES,
            retry_strategy=c.transient_retry(),
        )
        with DAG(name=POINT, inputs=[Parameter(name="job-id")]):
            simulate.declare_tasks(
                point_steps, [Parameter(name="job-id", value="{{inputs.parameters.job-id}}")]
            )
        with DAG(name=ENTRYPOINT):
            c.dag_task(
                Task(
                    name=POINT,
                    template=POINT,
                    with_param=c.param("points"),
                    arguments=[Parameter(name="job-id", value="{{item}}")],
                )
            )
            combine(name="combine", depends=f"{POINT}.AnySucceeded || {POINT}.AllFailed")
    return template


def sweep_workflow_for(
    version, job_id: str, axis: str, points: list[str], labels: list[str], registry: str
) -> Workflow:
    """The small Workflow of a sweep of a published model version: the simulation
    Workflow's parameters (the sweep's job id), the points' job ids and labels, and
    a deadline that leaves room for the points to run in turns."""
    one = simulate.simulation_workflow_for(version, job_id, registry).to_dict()
    arguments = {p["name"]: p["value"] for p in one["spec"]["arguments"]["parameters"]}
    arguments.update(axis=axis, points=json.dumps(points), labels=json.dumps(labels))
    deadline = int(one["spec"]["activeDeadlineSeconds"]) * max(1, len(points))
    return Workflow(
        name=f"sweep-{job_id}",
        namespace=steps.NAMESPACE,
        workflow_template_ref=WorkflowTemplateRef(name=NAME),
        **c.run_clean_up(),
        active_deadline_seconds=deadline,
        labels={**one["metadata"]["labels"], f"{steps.LABEL_PREFIX}/flow": "sweep"},
        annotations={
            "workflows.argoproj.io/title": f"sweep {version.owner}/{version.title}:{version.tag}",
            "workflows.argoproj.io/description": (
                f"job `{job_id}`: {len(points)} points of **{version.owner}/{version.title}**"
            ),
        },
        arguments=arguments,
    )
