"""The Argo subset the embedded engine runs, field by field.

The engine reads only the compiled Workflow, never the hera flow objects, so
what it can run is a list of Argo fields. Each field of the merged document is

- ``RUN``: implemented with Argo's semantics (``sdk/argo/semantics.py``);
- ``CLUSTER``: about the pod or the cluster (placement, identity, clean-up,
  security, the pod's environment and mounts). It has no local meaning and is
  left alone: each step is a process in its own work folder, and the launcher
  gives its program the environment ``env``/``envFrom`` give the pod;
- absent from these tables: refused before anything runs, with a one-line
  SpecError naming the field and where it is.

``check(spec)`` applies the tables to a merged spec (``semantics.merge_workflow``).
"""

from __future__ import annotations

import re
from typing import Any, NoReturn

from csflow.sdk.argo import semantics
from csflow.sdk.argo.semantics import SpecError
from csflow.sdk.core.status import StepPhase
from csflow.sdk.core.steps import WORK_DIR

__all__ = ["CLUSTER", "RETRY_POLICIES", "RUN", "check"]

RUN = "run"
CLUSTER = "cluster"

WORKFLOW_SPEC = {
    "entrypoint": RUN,
    "templates": RUN,
    "arguments": RUN,
    "onExit": RUN,
    "activeDeadlineSeconds": RUN,
    "parallelism": RUN,
    "workflowTemplateRef": RUN,  # merged away before the walk
    "affinity": CLUSTER,
    "archiveLogs": CLUSTER,  # a step's log is always kept
    "artifactGC": CLUSTER,
    "artifactRepositoryRef": CLUSTER,  # artifacts pass as files
    "automountServiceAccountToken": CLUSTER,
    "dnsConfig": CLUSTER,
    "dnsPolicy": CLUSTER,
    "executor": CLUSTER,
    "hostAliases": CLUSTER,
    "hostNetwork": CLUSTER,
    "imagePullSecrets": CLUSTER,
    "nodeSelector": CLUSTER,
    "podDisruptionBudget": CLUSTER,
    "podGC": CLUSTER,
    "podMetadata": CLUSTER,
    "podPriorityClassName": CLUSTER,
    "podSpecPatch": CLUSTER,
    "priority": CLUSTER,
    "schedulerName": CLUSTER,
    "securityContext": CLUSTER,
    "serviceAccountName": CLUSTER,
    "tolerations": CLUSTER,
    "ttlStrategy": CLUSTER,
    "volumeClaimGC": CLUSTER,
    "volumes": CLUSTER,
    "workflowMetadata": CLUSTER,
}
WORKFLOW_ARGUMENTS = {"parameters": RUN}
WORKFLOW_PARAMETER = {"name": RUN, "value": RUN}
TEMPLATE = {
    "name": RUN,
    "container": RUN,
    "dag": RUN,
    "suspend": RUN,
    "inputs": RUN,
    "outputs": RUN,
    "activeDeadlineSeconds": RUN,
    "retryStrategy": RUN,
    "parallelism": RUN,  # on a DAG
    "metadata": RUN,  # labels: csflow.io/environment chooses the step's environment
    "affinity": CLUSTER,
    "annotations": CLUSTER,
    "archiveLocation": CLUSTER,
    "automountServiceAccountToken": CLUSTER,
    "executor": CLUSTER,
    "hostAliases": CLUSTER,
    "nodeSelector": CLUSTER,
    "podSpecPatch": CLUSTER,
    "priorityClassName": CLUSTER,
    "schedulerName": CLUSTER,
    "securityContext": CLUSTER,
    "serviceAccountName": CLUSTER,
    "tolerations": CLUSTER,
    "volumes": CLUSTER,
}
CONTAINER = {
    "command": RUN,  # names the step program
    "args": RUN,
    "image": RUN,  # handed to the launcher (a publish finds the model's build by it)
    "env": CLUSTER,
    "envFrom": CLUSTER,
    "imagePullPolicy": CLUSTER,
    "name": CLUSTER,
    "resources": CLUSTER,
    "securityContext": CLUSTER,
    "terminationMessagePath": CLUSTER,
    "terminationMessagePolicy": CLUSTER,
    "volumeMounts": CLUSTER,  # /tmp/csflow is the step's work folder
}
METADATA = {"labels": RUN, "annotations": CLUSTER}
SUSPEND: dict[str, str] = {}  # waits for approval; ``duration`` is not implemented
DAG = {"tasks": RUN}
DAG_TASK = {
    "name": RUN,
    "template": RUN,
    "arguments": RUN,
    "depends": RUN,
    "dependencies": RUN,
    "when": RUN,
    "withItems": RUN,
    "withParam": RUN,
}
TASK_ARGUMENTS = {"parameters": RUN, "artifacts": RUN}
PARAMETER_ARGUMENT = {"name": RUN, "value": RUN}
ARTIFACT_ARGUMENT = {"name": RUN, "from": RUN, "optional": RUN}
INPUTS = {"parameters": RUN, "artifacts": RUN}
INPUT_PARAMETER = {"name": RUN, "description": RUN}
ARTIFACT = {"name": RUN, "path": RUN, "optional": RUN, "archive": CLUSTER}
OUTPUTS = {"parameters": RUN, "artifacts": RUN}
OUTPUT_PARAMETER = {"name": RUN, "valueFrom": RUN, "globalName": RUN, "description": RUN}
VALUE_FROM = {"path": RUN, "default": RUN}
RETRY_STRATEGY = {"limit": RUN, "retryPolicy": RUN, "backoff": RUN, "affinity": CLUSTER}
BACKOFF = {"duration": RUN, "factor": RUN, "maxDuration": RUN}
# The attempts each retryPolicy retries: one that fails (exit code, signal,
# deadline) or errs (its process could not start). Argo's default is OnFailure.
RETRY_POLICIES: dict[str, tuple[str, ...]] = {
    "": (StepPhase.FAILED,),
    "OnFailure": (StepPhase.FAILED,),
    "OnError": (StepPhase.ERRORED,),
    "Always": (StepPhase.FAILED, StepPhase.ERRORED),
}

# The variables the engine provides; ``{{=...}}`` expression tags are refused.
_PROVIDED = re.compile(
    r"workflow\.(?:name|status|failures|parameters\.[-\w]+|outputs\.parameters\.[-\w]+)"
    r"|inputs\.parameters\.[-\w]+"
    r"|tasks\.[-\w]+\.outputs\.(?:parameters(?:\.[-\w]+)?|artifacts\.[-\w]+)"
    r"|item(?:\.[-\w]+)?"
)


def check(spec: dict[str, Any]) -> None:
    """Raise SpecError naming the first field of a merged spec that the engine
    does not implement (then the entrypoint DAG's ``depends`` graph)."""
    _fields(spec, WORKFLOW_SPEC, "", "workflow spec")
    arguments = spec.get("arguments") or {}
    _fields(arguments, WORKFLOW_ARGUMENTS, "arguments.", "workflow spec")
    for parameter in arguments.get("parameters") or []:
        _fields(parameter, WORKFLOW_PARAMETER, "arguments.parameters.", "workflow spec")
    _positive(spec, "workflow spec")
    templates = {t.get("name"): t for t in spec.get("templates") or []}
    for template in templates.values():
        _template(template, f"template {template.get('name')!r}")
    entry = templates.get(spec.get("entrypoint"))
    if entry is None or "dag" not in entry:
        _refuse("an entrypoint that is not a DAG", f"template {spec.get('entrypoint')!r}")
    _dag(spec, entry, templates, ())
    on_exit = spec.get("onExit")
    if on_exit and "container" not in templates.get(on_exit, {}):
        _refuse("an onExit template that is not a container", f"template {on_exit!r}")


def _dag(
    spec: dict[str, Any], dag: dict[str, Any], templates: dict[Any, Any], outer: tuple
) -> None:
    """A DAG's tasks, then the DAGs they run (nested DAGs: a sweep's points)."""
    for task in dag["dag"].get("tasks") or []:
        _task(task, templates, f"template {dag['name']!r}, task {task.get('name')!r}")
    semantics.dag_tasks(spec, dag["name"])  # unknown tasks, cycles
    for task in dag["dag"].get("tasks") or []:
        inner = templates[task["template"]]
        if "dag" not in inner:
            if outer and "suspend" in inner:  # the walk stops only at the top
                _refuse("a suspend step inside a nested DAG", f"template {dag['name']!r}")
            continue
        where = f"template {dag['name']!r}, task {task.get('name')!r}"
        if inner["name"] in (*outer, dag["name"]):
            _refuse(f"a DAG that runs itself ({inner['name']!r})", where)
        if inner.get("outputs"):
            _refuse("outputs of a DAG template", f"template {inner['name']!r}")
        _dag(spec, inner, templates, (*outer, dag["name"]))


def _refuse(what: str, where: str) -> NoReturn:
    raise SpecError(f"the embedded engine does not implement {what} ({where})")


def _fields(obj: Any, table: dict[str, str], prefix: str, where: str) -> None:
    if not isinstance(obj, dict):
        return
    for key in obj:
        if key not in table:
            _refuse(f"'{prefix}{key}'", where)


def _positive(holder: dict[str, Any], where: str) -> None:
    if "parallelism" in holder and not (
        isinstance(holder["parallelism"], int) and holder["parallelism"] >= 1
    ):
        _refuse(f"'parallelism: {holder['parallelism']}'", where)


def _template(template: dict[str, Any], where: str) -> None:
    _fields(template, TEMPLATE, "", where)
    kinds = [k for k in ("container", "dag", "suspend") if k in template]
    if len(kinds) != 1:
        _refuse("a template that is not one container, dag or suspend", where)
    _fields(template.get("container"), CONTAINER, "container.", where)
    _fields(template.get("metadata"), METADATA, "metadata.", where)
    _fields(template.get("suspend"), SUSPEND, "suspend.", where)
    _fields(template.get("dag"), DAG, "dag.", where)
    if "parallelism" in template and "dag" not in template:
        _refuse("'parallelism' on a template that is not a DAG", where)
    _positive(template, where)
    inputs, outputs = template.get("inputs") or {}, template.get("outputs") or {}
    _fields(inputs, INPUTS, "inputs.", where)
    for parameter in inputs.get("parameters") or []:
        _fields(parameter, INPUT_PARAMETER, "inputs.parameters.", where)
    _fields(outputs, OUTPUTS, "outputs.", where)
    for parameter in outputs.get("parameters") or []:
        _fields(parameter, OUTPUT_PARAMETER, "outputs.parameters.", where)
        _fields(parameter.get("valueFrom"), VALUE_FROM, "outputs.parameters.valueFrom.", where)
        if "path" not in (parameter.get("valueFrom") or {}):
            _refuse("an output parameter without 'valueFrom.path'", where)
        _in_work_dir(parameter["valueFrom"]["path"], where)
    for kind in ("inputs", "outputs"):
        for artifact in (template.get(kind) or {}).get("artifacts") or []:
            _fields(artifact, ARTIFACT, f"{kind}.artifacts.", where)
            _in_work_dir(artifact.get("path", ""), where)
    retry = template.get("retryStrategy") or {}
    _fields(retry, RETRY_STRATEGY, "retryStrategy.", where)
    _fields(retry.get("backoff"), BACKOFF, "retryStrategy.backoff.", where)
    if retry.get("retryPolicy", "") not in RETRY_POLICIES:
        _refuse(f"'retryPolicy: {retry['retryPolicy']}'", where)
    if retry and "limit" not in retry:  # Argo would retry without end
        _refuse("'retryStrategy' without 'limit'", where)
    container = template.get("container") or {}
    _variables([container.get("image", ""), *container.get("args", [])], where)
    _variables([template.get("activeDeadlineSeconds"), retry], where)


def _in_work_dir(path: str, where: str) -> None:
    if not (path == WORK_DIR or path.startswith(WORK_DIR + "/")):
        _refuse(f"a path outside {WORK_DIR} ({path!r})", where)


def _task(task: dict[str, Any], templates: dict[Any, Any], where: str) -> None:
    _fields(task, DAG_TASK, "", where)
    arguments = task.get("arguments") or {}
    _fields(arguments, TASK_ARGUMENTS, "arguments.", where)
    for parameter in arguments.get("parameters") or []:
        _fields(parameter, PARAMETER_ARGUMENT, "arguments.parameters.", where)
    for artifact in arguments.get("artifacts") or []:
        _fields(artifact, ARTIFACT_ARGUMENT, "arguments.artifacts.", where)
    template = templates.get(task.get("template"))
    if template is None:
        raise SpecError(
            f"task {task.get('name')!r} names an unknown template {task.get('template')!r}"
        )
    if task.get("withItems") is not None and task.get("withParam") is not None:
        _refuse("both 'withItems' and 'withParam'", where)
    if task.get("when"):
        try:
            semantics.check_when(task["when"])
        except SpecError:
            _refuse(f"the when expression {task['when']!r}", where)
    if task.get("depends"):
        # Every operand evaluated once (as Succeeded) proves the expression parses.
        operands = semantics.depends_targets(task["depends"])
        finished = {name.split(".")[0]: semantics.Outcome(StepPhase.SUCCEEDED) for name in operands}
        try:
            semantics.evaluate_depends(task["depends"], finished)
        except SpecError:
            _refuse(f"the depends expression {task['depends']!r}", where)
    _variables([arguments, task.get("when"), task.get("withParam"), task.get("withItems")], where)


def _variables(values: list[Any], where: str) -> None:
    for text in semantics.strings_in(values):
        for name in semantics.variables(text):
            if name.startswith("="):
                _refuse("expression tags '{{=...}}'", where)
            if not _PROVIDED.fullmatch(name):
                _refuse(f"the variable '{{{{{name}}}}}'", where)
