"""Semantic lint of Argo Workflows manifests: what ``argo lint`` checks beyond the schema.

The CRD schema (``sdk/argo/schema.py``) says whether each field has the right
shape; it cannot say whether a DAG task names a template that exists or a
``{{tasks.x.outputs.parameters.y}}`` reference points at a real output. Argo
makes those checks in ``workflow/validate/validate.go`` when a workflow is
linted or submitted. No Python library implements them, so they are written
here, following Argo v4.0.5's rules and messages:

- names: object names (63 characters at most, RFC 1123); template, task, step,
  parameter and artifact names valid and unique;
- exactly one template type per template; a container or script has an image;
- template references resolve: DAG tasks and steps, the entrypoint, onExit and
  exit hooks, ``workflowTemplateRef`` and ``templateRef`` (offline: against the
  documents linted together, as ``argo lint --offline`` does);
- every ``{{...}}`` reference resolves (inputs, workflow parameters, task and
  step outputs, globals); task outputs used as arguments come from ancestors;
- DAGs: ``depends`` and ``dependencies`` targets exist, no cycles, not both
  forms at once, no ``continueOn`` with ``depends``, ``target`` names exist;
- ``activeDeadlineSeconds`` only on leaf templates; ``parallelism`` only on
  steps and DAGs; one loop kind per task; known retry policies and podGC
  strategies; no duplicate mount paths.

The Argo rules the embedded engine runs too (the Workflow/WorkflowTemplate merge,
``depends`` parsing, dependency cycles and ancestry, ``{{...}}`` variables) come
from the kernel, ``sdk/argo/semantics.py``; this module reports what they find.

One deliberate difference: in a WorkflowTemplate, ``{{workflow.parameters.x}}``
must name a parameter the template declares (Argo lets it through, since a
Workflow may supply it). csflow's templates declare every parameter, so a typo
there is caught before it reaches a cluster.

Argo docs: https://argo-workflows.readthedocs.io/en/latest/cli/argo_lint/ and
https://argo-workflows.readthedocs.io/en/latest/variables/
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from csflow.sdk.argo.schema import Finding, document_name
from csflow.sdk.argo.semantics import (
    ancestors,
    depends_targets,
    find_cycle,
    merge_specs,
    strings_in,
    task_dependencies,
    variables,
)

MAX_OBJECT_NAME = 63
MAX_CRON_NAME = 52
MAX_FIELD_NAME = 128
TEMPLATE_TYPES = (
    "container",
    "containerSet",
    "steps",
    "script",
    "resource",
    "dag",
    "suspend",
    "data",
    "http",
    "plugin",
)
LEAF_TYPES = frozenset(TEMPLATE_TYPES) - {"steps", "dag"}
POD_TYPES = frozenset({"container", "containerSet", "script", "resource", "data"})
RETRY_POLICIES = frozenset({"", "Always", "OnError", "OnFailure", "OnTransientError"})
POD_GC_STRATEGIES = frozenset(
    {"", "OnPodCompletion", "OnPodSuccess", "OnWorkflowCompletion", "OnWorkflowSuccess"}
)
WORKFLOW_KINDS = frozenset(
    {"Workflow", "WorkflowTemplate", "ClusterWorkflowTemplate", "CronWorkflow"}
)

_FIELD_NAME = re.compile(r"^[a-zA-Z0-9][-a-zA-Z0-9]*$")
_PARAM_NAME = re.compile(r"^[-a-zA-Z0-9_]+$")
_RFC1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
# Argo checks only references under these roots; anything else is left alone.
_CHECKED_ROOTS = ("item.", "steps.", "inputs.", "outputs.", "pod.", "workflow.", "tasks.")
_ALWAYS_GLOBAL = (
    "workflow.name",
    "workflow.namespace",
    "workflow.mainEntrypoint",
    "workflow.serviceAccountName",
    "workflow.uid",
    "workflow.status",
    "workflow.annotations",
    "workflow.annotations.json",
    "workflow.labels",
    "workflow.labels.json",
)
# Set at run time; Argo accepts anything under these prefixes.
_RUNTIME_PREFIXES = (
    "outputs.",
    "workflow.creationTimestamp",
    "workflow.scheduledTime",
    "workflow.duration",
    "tasks.name",
    "steps.name",
    "node.name",
)


# -- helpers -----------------------------------------------------------------


def references(value: Any) -> list[str]:
    """The ``{{tag}}`` references in every string of a value (expression tags
    ``{{=...}}`` are Argo's expr language and are not resolved statically)."""
    return [tag for text in strings_in(value) for tag in variables(text) if tag[:1] != "="]


def template_type(template: dict[str, Any]) -> list[str]:
    return [t for t in TEMPLATE_TYPES if template.get(t) is not None]


def _check_names(
    items: Any, where: str, pattern: re.Pattern, rule: str
) -> Iterator[tuple[str, str]]:
    seen: set[str] = set()
    for index, item in enumerate(items or []):
        name = item.get("name") if isinstance(item, dict) else None
        if not name:
            yield f"{where}[{index}]", "name is required"
            continue
        if len(name) > MAX_FIELD_NAME or not pattern.match(name):
            yield f"{where}[{index}]", f"name '{name}' is invalid: {rule}"
        if name in seen:
            yield f"{where}[{index}]", f"name '{name}' is not unique"
        seen.add(name)


_FIELD_RULE = (
    "name must consist of alpha-numeric characters or '-', "
    "and must start with an alpha-numeric character"
)
_PARAM_RULE = "Parameter/Artifact name must consist of alpha-numeric characters, '_' or '-'"


def _field_names(items: Any, where: str) -> Iterator[tuple[str, str]]:
    return _check_names(items, where, _FIELD_NAME, _FIELD_RULE)


def _param_names(items: Any, where: str) -> Iterator[tuple[str, str]]:
    return _check_names(items, where, _PARAM_NAME, _PARAM_RULE)


# -- the linter ----------------------------------------------------------------


class _Linter:
    """Lints one workflow-like document; collects (path, message) pairs."""

    def __init__(self, doc: dict[str, Any], library: dict[str, dict[str, Any]]):
        self.doc = doc
        self.kind = doc.get("kind")
        self.library = library
        self.problems: list[tuple[str, str]] = []
        spec = doc.get("spec") or {}
        self.spec = (spec.get("workflowSpec") or {}) if self.kind == "CronWorkflow" else spec
        self.spec_path = "spec.workflowSpec" if self.kind == "CronWorkflow" else "spec"
        self.is_template = self.kind in ("WorkflowTemplate", "ClusterWorkflowTemplate")

    def add(self, path: str, message: str) -> None:
        self.problems.append((path, message))

    # -- the document ---------------------------------------------------------

    def run(self) -> list[tuple[str, str]]:
        self.check_object_name()
        spec = self.spec
        ref = spec.get("workflowTemplateRef")
        if ref:
            if spec.get("templates"):
                self.add(
                    f"{self.spec_path}.templates",
                    "Templates is invalid field in spec "
                    "if workflow referred WorkflowTemplate reference",
                )
            referred = self.library.get(ref.get("name", ""))
            if referred is None:
                self.add(
                    f"{self.spec_path}.workflowTemplateRef",
                    f"workflow template '{ref.get('name')}' not found "
                    "(lint it together with this file)",
                )
                return self.problems
            spec = merge_specs(self.spec, referred.get("spec") or {})
        self.effective = spec
        templates = spec.get("templates") or []
        for path, message in _field_names(templates, f"{self.spec_path}.templates"):
            self.add(path, message)
        self.templates = {
            t.get("name"): t for t in templates if isinstance(t, dict) and t.get("name")
        }
        self.check_arguments(spec)
        self.globals = self.global_scope(spec)
        entrypoint = spec.get("entrypoint")
        if not entrypoint:
            self.add(f"{self.spec_path}.entrypoint", "spec.entrypoint is required")
        elif entrypoint not in self.templates:
            self.add(f"{self.spec_path}.entrypoint", f"template name '{entrypoint}' undefined")
        on_exit = spec.get("onExit")
        if on_exit and on_exit not in self.templates:
            self.add(f"{self.spec_path}.onExit", f"template name '{on_exit}' undefined")
        for hook_name, hook in (spec.get("hooks") or {}).items():
            self.check_hook(hook, f"{self.spec_path}.hooks.{hook_name}", hook_name)
        strategy = (spec.get("podGC") or {}).get("strategy", "")
        if strategy not in POD_GC_STRATEGIES:
            self.add(
                f"{self.spec_path}.podGC.strategy", f"podGC.strategy unknown strategy '{strategy}'"
            )
        for index, template in enumerate(templates):
            if isinstance(template, dict):
                self.check_template(template, f"{self.spec_path}.templates[{index}]")
        return self.problems

    def check_object_name(self) -> None:
        metadata = self.doc.get("metadata") or {}
        name = metadata.get("name") or metadata.get("generateName")
        if not name:
            self.add("metadata", "metadata.name or metadata.generateName is required")
            return
        limit = MAX_CRON_NAME if self.kind == "CronWorkflow" else MAX_OBJECT_NAME
        if metadata.get("name") and len(name) > limit:
            self.add(
                "metadata.name",
                f"name {name!r} must not be more than {limit} characters long "
                f"(currently {len(name)})",
            )
        base = name.rstrip("-") if not metadata.get("name") else name
        if not _RFC1123_SUBDOMAIN.match(base):
            self.add(
                "metadata.name",
                f"name {name!r} is not a valid RFC 1123 subdomain "
                "(lowercase letters, digits, '-' and '.')",
            )

    def check_arguments(self, spec: dict[str, Any]) -> None:
        arguments = spec.get("arguments") or {}
        where = f"{self.spec_path}.arguments"
        for path, message in _param_names(arguments.get("parameters"), f"{where}.parameters"):
            self.add(path, message)
        for path, message in _param_names(arguments.get("artifacts"), f"{where}.artifacts"):
            self.add(path, message)
        for parameter in arguments.get("parameters") or []:
            self.check_argument_value(
                parameter, f"{where}.parameters", allow_empty=self.is_template
            )

    def check_argument_value(
        self, parameter: dict[str, Any], where: str, allow_empty: bool
    ) -> None:
        name = parameter.get("name")
        has_value = parameter.get("value") is not None
        value_from = parameter.get("valueFrom")
        if value_from is not None:
            extra = set(value_from) - {"default", "configMapKeyRef", "supplied"}
            if extra:
                self.add(
                    f"{where}.{name}",
                    f"{name}.valueFrom only allows: default, configMapKeyRef and supplied",
                )
        if not allow_empty and not has_value and value_from is None:
            self.add(f"{where}.{name}", f"{name}.value is required")
        enum = parameter.get("enum")
        if enum is not None:
            if not enum:
                self.add(f"{where}.{name}", f"{name}.enum should contain at least one value")
            elif has_value and str(parameter["value"]) not in [str(e) for e in enum]:
                self.add(f"{where}.{name}", f"{name}.value should be present in {name}.enum list")

    def global_scope(self, spec: dict[str, Any]) -> set[str]:
        scope = set(_ALWAYS_GLOBAL)
        parameters = (spec.get("arguments") or {}).get("parameters") or []
        if parameters:
            scope |= {"workflow.parameters", "workflow.parameters.json"}
        scope |= {f"workflow.parameters.{p.get('name')}" for p in parameters}
        metadata = self.doc.get("metadata") or {}
        workflow_metadata = spec.get("workflowMetadata") or {}
        for key in {
            **(metadata.get("annotations") or {}),
            **(workflow_metadata.get("annotations") or {}),
        }:
            scope.add(f"workflow.annotations.{key}")
        for key in {
            **(metadata.get("labels") or {}),
            **(workflow_metadata.get("labels") or {}),
            **(workflow_metadata.get("labelsFrom") or {}),
        }:
            scope.add(f"workflow.labels.{key}")
        if spec.get("priority") is not None:
            scope.add("workflow.priority")
        if spec.get("onExit") or "exit" in (spec.get("hooks") or {}):
            scope.add("workflow.failures")
        for template in spec.get("templates") or []:
            outputs = (template or {}).get("outputs") or {}
            for kind in ("parameters", "artifacts"):
                for output in outputs.get(kind) or []:
                    if output.get("globalName"):
                        scope.add(f"workflow.outputs.{kind}.{output['globalName']}")
        return scope

    # -- templates ------------------------------------------------------------

    def check_template_reference(self, holder: dict[str, Any], where: str) -> dict[str, Any] | None:
        """The template a task, step or hook names (``template`` or ``templateRef``)."""
        name, ref = holder.get("template"), holder.get("templateRef")
        if holder.get("inline") is not None:
            return holder["inline"]
        if name and ref:
            self.add(where, "template name cannot be specified with templateRef.")
            return None
        if ref:
            if not ref.get("name"):
                self.add(where, "resource name is required")
                return None
            if not ref.get("template"):
                self.add(where, "template name is required")
                return None
            if references(ref):  # resolved at run time
                return None
            referred = self.library.get(ref["name"])
            found = None
            if referred is not None:
                found = next(
                    (
                        t
                        for t in (referred.get("spec") or {}).get("templates") or []
                        if t.get("name") == ref["template"]
                    ),
                    None,
                )
            if found is None:
                self.add(where, f"template reference {ref['name']}.{ref['template']} not found")
            return found
        if not name:
            self.add(where, "template or templateRef is required")
            return None
        if name not in self.templates:
            self.add(where, f"template name '{name}' undefined")
            return None
        return self.templates[name]

    def check_hook(self, hook: dict[str, Any], where: str, hook_name: str) -> None:
        if hook_name != "exit" and not hook.get("expression"):
            self.add(where, f"{where.split('.', 1)[-1]} Expression required")
        self.check_template_reference(hook, where)

    def check_template(self, template: dict[str, Any], where: str) -> None:
        name = template.get("name", "?")
        types = template_type(template)
        choose = (
            "choose one of: container, containerSet, steps, script, resource, dag, suspend, "
            "template, template ref"
        )
        if not types:
            self.add(where, f"templates.{name} template type unspecified. {choose}")
            return
        if len(types) > 1:
            self.add(where, f"templates.{name} multiple template types specified. {choose}")
            return
        kind = types[0]
        leaf = kind in LEAF_TYPES
        if template.get("activeDeadlineSeconds") is not None:
            if not leaf:
                self.add(
                    f"{where}.activeDeadlineSeconds",
                    f"templates.{name}.activeDeadlineSeconds is only valid for leaf templates",
                )
            else:
                value = template["activeDeadlineSeconds"]
                if not (isinstance(value, str) and references(value)) and not (
                    str(value).isdigit() and int(value) > 0
                ):
                    self.add(
                        f"{where}.activeDeadlineSeconds",
                        f"templates.{name}.activeDeadlineSeconds "
                        "must be a positive integer > 0 or an argo variable",
                    )
        if template.get("parallelism") is not None and leaf:
            self.add(
                f"{where}.parallelism",
                f"templates.{name}.parallelism is only valid for steps and dag templates",
            )
        policy = (template.get("retryStrategy") or {}).get("retryPolicy", "")
        if policy not in RETRY_POLICIES:
            self.add(f"{where}.retryStrategy.retryPolicy", f"{policy} is not a valid RetryPolicy")
        inputs = template.get("inputs") or {}
        outputs = template.get("outputs") or {}
        for path, message in _param_names(inputs.get("parameters"), f"{where}.inputs.parameters"):
            self.add(path, message)
        for path, message in _param_names(inputs.get("artifacts"), f"{where}.inputs.artifacts"):
            self.add(path, message)
        for path, message in _param_names(outputs.get("parameters"), f"{where}.outputs.parameters"):
            self.add(path, message)
        for path, message in _param_names(outputs.get("artifacts"), f"{where}.outputs.artifacts"):
            self.add(path, message)
        for index, parameter in enumerate(outputs.get("parameters") or []):
            if parameter.get("value") is not None and parameter.get("valueFrom") is not None:
                self.add(
                    f"{where}.outputs.parameters[{index}]",
                    f"{parameter.get('name')} has both valueFrom and value specified. Choose one.",
                )
            elif parameter.get("value") is None and parameter.get("valueFrom") is None:
                self.add(
                    f"{where}.outputs.parameters[{index}]",
                    f"{parameter.get('name')} does not have valueFrom or value specified",
                )
        scope = self.template_scope(template, kind)
        if kind == "dag":
            self.check_dag(template, where, scope)
        elif kind == "steps":
            self.check_steps(template, where, scope)
        else:
            self.check_leaf(template, where, kind, scope)

    def template_scope(self, template: dict[str, Any], kind: str) -> set[str]:
        inputs = template.get("inputs") or {}
        scope = set(self.globals)
        parameters = inputs.get("parameters") or []
        scope |= {f"inputs.parameters.{p.get('name')}" for p in parameters}
        if parameters:
            scope.add("inputs.parameters")
        for artifact in inputs.get("artifacts") or []:
            scope.add(f"inputs.artifacts.{artifact.get('name')}")
            if kind in LEAF_TYPES:
                scope.add(f"inputs.artifacts.{artifact.get('name')}.path")
        if kind in POD_TYPES:
            scope.add("pod.name")
        return scope

    def check_refs(self, value: Any, scope: set[str], where: str) -> None:
        for tag in references(value):
            if not tag.startswith(_CHECKED_ROOTS) or tag in scope:
                continue
            if tag.startswith(_RUNTIME_PREFIXES):
                continue
            if tag.startswith("item.") and "item.*" in scope:  # withParam: keys known at run time
                continue
            self.add(where, f"failed to resolve {{{{{tag}}}}}")

    def check_leaf(self, template: dict[str, Any], where: str, kind: str, scope: set[str]) -> None:
        name = template.get("name", "?")
        body = template.get(kind) or {}
        if kind in ("container", "script") and not body.get("image"):
            self.add(f"{where}.{kind}.image", f"templates.{name}.{kind}.image may not be empty")
        mounts: dict[str, str] = {}
        for index, mount in (
            enumerate(body.get("volumeMounts") or []) if kind == "container" else []
        ):
            path = mount.get("mountPath")
            if path in mounts:
                self.add(
                    f"{where}.container.volumeMounts[{index}]",
                    f"templates.{name}.container.volumeMounts[{index}].mountPath '{path}' "
                    f"already mounted in {mounts[path]}",
                )
            mounts[path] = f"container.volumeMounts.{mount.get('name')}"
        if kind == "container":
            for index, artifact in enumerate((template.get("inputs") or {}).get("artifacts") or []):
                path = artifact.get("path")
                if path and path in mounts:
                    self.add(
                        f"{where}.inputs.artifacts[{index}]",
                        f"templates.{name}.inputs.artifacts[{index}].path '{path}' "
                        f"already mounted in {mounts[path]}",
                    )
                if path:
                    mounts[path] = f"inputs.artifacts.{artifact.get('name')}"
        leaf_scope = set(scope)
        for kind_name in ("parameters", "artifacts"):
            for output in (template.get("outputs") or {}).get(kind_name) or []:
                leaf_scope.add(f"outputs.{kind_name}.{output.get('name')}.path")
        self.check_refs(template, leaf_scope, where)

    def outputs_scope(
        self, prefix: str, template: dict[str, Any] | None, aggregate: bool
    ) -> set[str]:
        scope = {f"{prefix}.{field}" for field in ("id", "startedAt", "finishedAt", "hostNodeName")}
        if template is None:
            return scope
        types = template_type(template)
        if types and types[0] in ("container", "script", "containerSet", "data"):
            scope |= {f"{prefix}.outputs.result", f"{prefix}.exitCode"}
        if template.get("daemon"):
            scope.add(f"{prefix}.ip")
        outputs = template.get("outputs") or {}
        for parameter in outputs.get("parameters") or []:
            scope.add(f"{prefix}.outputs.parameters.{parameter.get('name')}")
        for artifact in outputs.get("artifacts") or []:
            scope.add(f"{prefix}.outputs.artifacts.{artifact.get('name')}")
        if aggregate:
            scope.add(f"{prefix}.outputs.parameters")
            scope.add(f"{prefix}.outputs.result")
        return scope

    def check_loops(self, item: dict[str, Any], where: str, scope: set[str]) -> set[str]:
        loops = [k for k in ("withItems", "withParam", "withSequence") if item.get(k) is not None]
        if len(loops) > 1:
            self.add(where, "only one of withItems, withParam, withSequence can be specified")
        if loops:
            scope = scope | {"item"}
            # withItems of maps give item.<key>; withParam is only known at run time.
            scope |= {
                f"item.{key}"
                for entry in item.get("withItems") or []
                if isinstance(entry, dict)
                for key in entry
            }
            if item.get("withParam") is not None:
                scope.add("item.*")
        return scope

    def check_dag(self, template: dict[str, Any], where: str, scope: set[str]) -> None:
        name = template.get("name", "?")
        dag = template.get("dag") or {}
        tasks = [t for t in dag.get("tasks") or [] if isinstance(t, dict)]
        if not tasks:
            self.add(f"{where}.dag.tasks", f"templates.{name} must have at least one task")
            return
        for path, message in _field_names(tasks, f"{where}.dag.tasks"):
            self.add(path, message)
        by_name = {t["name"]: t for t in tasks if t.get("name")}
        using_depends = any(t.get("depends") for t in tasks)
        resolved: dict[str, dict[str, Any] | None] = {}
        for index, task in enumerate(tasks):
            task_where = f"{where}.dag.tasks[{index}]"
            task_name = task.get("name", "")
            if (using_depends or task.get("dependencies")) and task_name[:1].isdigit():
                self.add(
                    task_where,
                    f"templates.{name}.tasks.{task_name} name cannot begin with a digit "
                    "when using either 'depends' or 'dependencies'",
                )
            if using_depends and task.get("dependencies"):
                self.add(
                    task_where,
                    f"templates.{name} cannot use both 'depends' and 'dependencies' "
                    "in the same DAG template",
                )
            if using_depends and task.get("continueOn") is not None:
                self.add(
                    task_where,
                    f"templates.{name} cannot use 'continueOn' when using 'depends'. "
                    "Instead use 'dep-task.Failed'/'dep-task.Errored'",
                )
            resolved[task_name] = self.check_template_reference(task, task_where)
            for dependency in task_dependencies(task):
                if dependency not in by_name:
                    self.add(
                        task_where,
                        f"templates.{name}.tasks.{task_name} dependency '{dependency}' not defined",
                    )
        graph = {task_name: task_dependencies(task) for task_name, task in by_name.items()}
        cycle = find_cycle(graph)
        if cycle:
            self.add(
                f"{where}.dag.tasks",
                f"templates.{name}.tasks dependency cycle detected: {'->'.join(cycle)}",
            )
            return
        for target in (dag.get("target") or "").split():
            if not references(target) and target not in by_name:
                self.add(
                    f"{where}.dag.target",
                    f"templates.{name}.targets: target '{target}' is not defined",
                )
        every_task = set()
        for task_name, task in by_name.items():
            aggregate = bool(task.get("withItems") or task.get("withParam"))
            every_task |= self.outputs_scope(
                f"tasks.{task_name}", resolved.get(task_name), aggregate
            )
        for index, task in enumerate(tasks):
            task_where = f"{where}.dag.tasks[{index}]"
            ancestry = ancestors(task.get("name", ""), graph)
            task_scope = scope | every_task | {f"tasks.{a}.status" for a in ancestry}
            if task.get("hooks"):
                task_scope.add(f"tasks.{task.get('name')}.status")
            task_scope = self.check_loops(task, task_where, task_scope)
            self.check_refs(task, task_scope, task_where)
            arguments = task.get("arguments") or {}
            for parameter in arguments.get("parameters") or []:
                self.check_argument_value(
                    parameter, f"{task_where}.arguments.parameters", allow_empty=False
                )
                self.check_ancestor_reference(
                    parameter.get("value"), ancestry, task_where, "parameter", parameter.get("name")
                )
            for artifact in arguments.get("artifacts") or []:
                self.check_ancestor_reference(
                    artifact.get("from"), ancestry, task_where, "artifact", artifact.get("name")
                )
            for hook_name, hook in (task.get("hooks") or {}).items():
                self.check_hook(hook, f"{task_where}.hooks.{hook_name}", hook_name)

    def check_ancestor_reference(
        self, value: Any, ancestry: set[str], where: str, what: str, name: Any
    ) -> None:
        if isinstance(value, str) and value.startswith("{{tasks."):
            referred = value[len("{{tasks.") :].split(".", 1)[0]
            if referred not in ancestry:
                self.add(where, f"missing dependency '{referred}' for {what} '{name}'")

    def check_steps(self, template: dict[str, Any], where: str, scope: set[str]) -> None:
        name = template.get("name", "?")
        seen: set[str] = set()
        step_scope = set(scope)
        for group_index, group in enumerate(template.get("steps") or []):
            group = group if isinstance(group, list) else []
            new_scope = set()
            for index, step in enumerate(group):
                step_where = f"{where}.steps[{group_index}][{index}]"
                step_name = step.get("name")
                if not step_name:
                    self.add(step_where, f"templates.{name}.steps[{group_index}].name is required")
                    continue
                if step_name in seen:
                    self.add(
                        step_where,
                        f"templates.{name}.steps[{group_index}].name '{step_name}' is not unique",
                    )
                elif not _FIELD_NAME.match(step_name) or len(step_name) > MAX_FIELD_NAME:
                    self.add(
                        step_where,
                        f"templates.{name}.steps[{group_index}].name '{step_name}' "
                        f"is invalid: {_FIELD_RULE}",
                    )
                seen.add(step_name)
                resolved = self.check_template_reference(step, step_where)
                this_scope = self.check_loops(step, step_where, step_scope)
                self.check_refs(step, this_scope, step_where)
                for parameter in (step.get("arguments") or {}).get("parameters") or []:
                    self.check_argument_value(
                        parameter, f"{step_where}.arguments.parameters", allow_empty=False
                    )
                aggregate = bool(step.get("withItems") or step.get("withParam"))
                new_scope |= self.outputs_scope(f"steps.{step_name}", resolved, aggregate)
                new_scope.add(f"steps.{step_name}.status")
            step_scope |= new_scope


# -- public API ----------------------------------------------------------------


def library_of(docs: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """WorkflowTemplates (and cluster ones) by name, to resolve references offline."""
    return {
        d["metadata"]["name"]: d
        for d in docs
        if isinstance(d, dict)
        and d.get("kind") in ("WorkflowTemplate", "ClusterWorkflowTemplate")
        and (d.get("metadata") or {}).get("name")
    }


def lint_document(
    doc: dict[str, Any], library: dict[str, dict[str, Any]] | None = None
) -> list[Finding]:
    """Semantic findings for one Argo document (other kinds have none)."""
    if not isinstance(doc, dict) or doc.get("kind") not in WORKFLOW_KINDS:
        return []
    problems = _Linter(doc, library or {}).run()
    name = document_name(doc)
    unique = dict.fromkeys(problems)  # one line per distinct problem, in order
    return [Finding(name, path, message) for path, message in unique]


def lint_documents(
    docs: list[dict[str, Any]], library: dict[str, dict[str, Any]] | None = None
) -> list[Finding]:
    """Lint documents together: a Workflow may refer to a WorkflowTemplate among them
    (or in ``library``, e.g. csflow's own flows)."""
    known = {**(library or {}), **library_of(docs)}
    findings = []
    for doc in docs:
        findings.extend(lint_document(doc, known))
    return findings


def describe(findings: list[Finding]) -> str:
    return "\n".join(str(f) for f in findings)


__all__ = [
    "Finding",
    "depends_targets",
    "describe",
    "library_of",
    "lint_document",
    "lint_documents",
    "references",
]
