"""Reading a compiled Argo workflow the way Argo's controller does.

The embedded engine does not keep its own copy of a DAG: it takes the
WorkflowTemplate compiled from ``flows/`` and the small Workflow that refers
to it, merges them as Argo does, and walks the entrypoint DAG with Argo's
rules: ``depends`` expressions over task results, ``when`` conditions,
``{{...}}`` variables, output parameters read from files and artifacts passed
by name.

This is hand-written because no library evaluates Argo templates outside a
cluster; it covers the subset csflow's flows use and rejects the rest loudly
(Argo docs: https://argo-workflows.readthedocs.io/en/latest/variables/ and
https://argo-workflows.readthedocs.io/en/latest/enhanced-depends-logic/).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from csflow.sdk.core.errors import CsflowError
from csflow.sdk.core.status import StepPhase


class SpecError(CsflowError):
    """The compiled workflow uses something the embedded engine does not support."""


_VARIABLE = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")


def merge_workflow(workflow: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """A Workflow with ``workflowTemplateRef`` plus its template -> the effective spec
    (the Workflow's own fields and argument values win, as in Argo)."""
    ref = workflow["spec"].get("workflowTemplateRef", {}).get("name")
    if ref is not None and ref != template["metadata"]["name"]:
        raise SpecError(f"workflow refers to {ref!r}, not {template['metadata']['name']!r}")
    spec = copy.deepcopy(template["spec"])
    own = {
        k: v for k, v in workflow["spec"].items() if k not in ("workflowTemplateRef", "arguments")
    }
    spec.update(copy.deepcopy(own))
    values = {
        p["name"]: p.get("value")
        for p in workflow["spec"].get("arguments", {}).get("parameters", [])
    }
    merged_params = []
    for parameter in template["spec"].get("arguments", {}).get("parameters", []):
        value = values.pop(parameter["name"], parameter.get("value"))
        if value is None:
            raise SpecError(f"workflow parameter {parameter['name']!r} has no value")
        merged_params.append({"name": parameter["name"], "value": str(value)})
    if values:
        raise SpecError(f"unknown workflow parameter(s): {', '.join(sorted(values))}")
    spec["arguments"] = {"parameters": merged_params}
    return {"metadata": copy.deepcopy(workflow.get("metadata", {})), "spec": spec}


def substitute(text: str, scope: dict[str, str]) -> str:
    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in scope:
            raise SpecError(f"failed to resolve {{{{{name}}}}}")
        return scope[name]

    return _VARIABLE.sub(replace, text)


def variables(text: str) -> list[str]:
    return [m.group(1) for m in _VARIABLE.finditer(text)]


@dataclass
class Task:
    name: str
    template: str
    depends: str = ""
    when: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)

    def upstream(self) -> list[str]:
        return sorted(set(re.findall(r"([A-Za-z0-9][A-Za-z0-9-]*)(?:\.[A-Za-z]+)?", self.depends)))


def dag_tasks(spec: dict[str, Any], template_name: str) -> list[Task]:
    """The DAG's tasks in an order where each comes after what it depends on."""
    templates = {t["name"]: t for t in spec["templates"]}
    dag = templates.get(template_name, {}).get("dag")
    if dag is None:
        raise SpecError(f"template {template_name!r} is not a DAG")
    tasks = {}
    for raw in dag["tasks"]:
        if "dependencies" in raw:
            raise SpecError("use 'depends', not 'dependencies'")
        tasks[raw["name"]] = Task(
            name=raw["name"],
            template=raw["template"],
            depends=raw.get("depends", ""),
            when=raw.get("when", ""),
            arguments=raw.get("arguments", {}),
        )
    ordered: list[Task] = []
    state: dict[str, str] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if name in path:
            raise SpecError(f"dependency cycle detected: {' -> '.join(path + (name,))}")
        if name not in tasks:
            raise SpecError(f"depends names an unknown task {name!r}")
        for upstream in tasks[name].upstream():
            visit(upstream, path + (name,))
        state[name] = "done"
        ordered.append(tasks[name])

    for name in tasks:
        visit(name, ())
    return ordered


def _tokens(expression: str) -> list[str]:
    return re.findall(r"&&|\|\||!|\(|\)|[A-Za-z0-9][A-Za-z0-9-]*(?:\.[A-Za-z]+)?", expression)


def evaluate_depends(expression: str, results: dict[str, str]) -> bool:
    """Argo's enhanced ``depends`` logic: ``A``, ``A.Succeeded``, ``&&``, ``||``, ``!``.
    A bare ``A`` means A succeeded or was skipped."""
    if not expression.strip():
        return True
    tokens = _tokens(expression)
    if "".join(tokens) != re.sub(r"\s+", "", expression):
        raise SpecError(f"unsupported depends expression {expression!r}")
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def atom() -> bool:
        token = take()
        if token == "!":
            return not atom()
        if token == "(":
            value = disjunction()
            if take() != ")":
                raise SpecError(f"unbalanced parentheses in {expression!r}")
            return value
        task, _, outcome = token.partition(".")
        result = results.get(task)
        if result is None:
            raise SpecError(f"depends names a task that has not finished: {task!r}")
        if not outcome:
            return result in (StepPhase.SUCCEEDED, StepPhase.SKIPPED)
        if outcome == "AnySucceeded" or outcome == "AllFailed":
            raise SpecError(f"{outcome} applies to loops, which csflow flows do not use")
        return result == outcome

    def conjunction() -> bool:
        value = atom()
        while peek() == "&&":
            take()
            value = atom() and value
        return value

    def disjunction() -> bool:
        value = conjunction()
        while peek() == "||":
            take()
            value = conjunction() or value
        return value

    value = disjunction()
    if position != len(tokens):
        raise SpecError(f"cannot parse depends expression {expression!r}")
    return value


def evaluate_when(expression: str) -> bool:
    """A resolved ``when``: ``a == b`` or ``a != b`` (Argo uses govaluate; csflow's
    flows need only these)."""
    match = re.fullmatch(r"\s*(.*?)\s*(==|!=)\s*(.*?)\s*", expression)
    if not match:
        raise SpecError(f"unsupported when expression {expression!r}")
    left, operator, right = (s.strip("'\"") for s in match.groups())
    return (left == right) if operator == "==" else (left != right)
