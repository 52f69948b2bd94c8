"""Reading a compiled Argo workflow the way Argo's controller does: the kernel of
Argo rules that the embedded engine runs and the semantic lint checks.

The embedded engine does not keep its own copy of a DAG: it takes the
WorkflowTemplate compiled from ``flows/`` and the small Workflow that refers
to it, merges them as Argo does, and walks the entrypoint DAG with Argo's
rules: ``depends`` expressions over task results, ``when`` conditions,
``{{...}}`` variables, loops (``withItems``, ``withParam``) and their
aggregated outputs. ``sdk/argo/lint.py`` uses the same merge, ``depends``
parsing and cycle detection, so no rule is written twice.

This is hand-written because no library evaluates Argo templates outside a
cluster; it follows Argo v4's controller (``workflow/controller/dag.go``,
``operator.go``) and rejects what it cannot evaluate loudly. Argo docs:
https://argo-workflows.readthedocs.io/en/latest/variables/,
https://argo-workflows.readthedocs.io/en/latest/enhanced-depends-logic/ and
https://argo-workflows.readthedocs.io/en/latest/walk-through/loops/
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from csflow.sdk.core.errors import CsflowError
from csflow.sdk.core.status import StepPhase

__all__ = [
    "DEPENDS_RESULTS",
    "LoopChild",
    "Outcome",
    "SpecError",
    "Task",
    "aggregate_parameters",
    "ancestors",
    "artifact_arguments",
    "check_input_artifacts",
    "check_when",
    "dag_tasks",
    "depends_targets",
    "evaluate_depends",
    "evaluate_when",
    "find_cycle",
    "loop_children",
    "loop_items",
    "loop_phase",
    "merge_specs",
    "merge_workflow",
    "strings_in",
    "substitute",
    "task_dependencies",
    "variables",
]


class SpecError(CsflowError):
    """The compiled workflow uses something the embedded engine does not support."""


# -- merging a Workflow with its WorkflowTemplate ---------------------------------


def merge_specs(workflow_spec: dict[str, Any], template_spec: dict[str, Any]) -> dict[str, Any]:
    """The spec Argo runs for a Workflow with ``workflowTemplateRef``: the template's
    spec under the Workflow's own fields, argument parameters merged by name (the
    Workflow's win; ones the template does not declare are kept, last). Lenient:
    lint reports what is wrong with the result, ``merge_workflow`` refuses it."""
    spec = copy.deepcopy(template_spec)
    own = {k: v for k, v in workflow_spec.items() if k not in ("workflowTemplateRef", "arguments")}
    spec.update(copy.deepcopy(own))
    values = {
        p.get("name"): p for p in (workflow_spec.get("arguments") or {}).get("parameters") or []
    }
    merged = []
    for parameter in (spec.get("arguments") or {}).get("parameters") or []:
        merged.append({**parameter, **values.pop(parameter.get("name"), {})})
    merged.extend(copy.deepcopy(list(values.values())))
    spec["arguments"] = {**(spec.get("arguments") or {}), "parameters": merged}
    return spec


def merge_workflow(workflow: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """A Workflow with ``workflowTemplateRef`` plus its template -> the Workflow the
    engine runs. Strict: every parameter has a value, none is unknown."""
    ref = (workflow["spec"].get("workflowTemplateRef") or {}).get("name")
    if ref is not None and ref != template["metadata"]["name"]:
        raise SpecError(f"workflow refers to {ref!r}, not {template['metadata']['name']!r}")
    if ref is not None and workflow["spec"].get("templates"):
        raise SpecError("a workflow that refers to a WorkflowTemplate cannot have templates")
    spec = merge_specs(workflow["spec"], template["spec"])
    declared = [
        p["name"] for p in (template["spec"].get("arguments") or {}).get("parameters") or []
    ]
    parameters = []
    for parameter in spec["arguments"]["parameters"]:
        if parameter.get("name") not in declared:
            continue  # reported below, once every declared one has been checked
        if parameter.get("value") is None:
            raise SpecError(f"workflow parameter {parameter['name']!r} has no value")
        parameters.append({"name": parameter["name"], "value": _text(parameter["value"])})
    unknown = [
        p.get("name") for p in spec["arguments"]["parameters"] if p.get("name") not in declared
    ]
    if unknown:
        raise SpecError(f"unknown workflow parameter(s): {', '.join(sorted(map(str, unknown)))}")
    spec["arguments"] = {**spec["arguments"], "parameters": parameters}
    return {"metadata": copy.deepcopy(workflow.get("metadata", {})), "spec": spec}


def _text(value: Any) -> str:
    """A parameter value as Argo holds it (YAML's ``true`` is "true", not "True")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- {{...}} variables --------------------------------------------------------------

_VARIABLE = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")


def substitute(text: str, scope: Mapping[str, str]) -> str:
    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in scope:
            raise SpecError(f"failed to resolve {{{{{name}}}}}")
        return scope[name]

    return _VARIABLE.sub(replace, text)


def variables(text: str) -> list[str]:
    return [m.group(1) for m in _VARIABLE.finditer(text)]


def strings_in(value: Any) -> Iterator[str]:
    """Every string in a JSON-like value (dict values, list items), depth first."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


# -- artifacts ---------------------------------------------------------------------

_OUTPUT_ARTIFACT = re.compile(r"(?:tasks|steps)\.([^.]+)\.outputs\.artifacts\.(.+)")


def artifact_arguments(arguments: Mapping[str, Any], scope: Mapping[str, str]) -> dict[str, str]:
    """A task's artifact arguments, by name, each ``from`` resolved in ``scope``, as
    Argo's controller resolves them (``dag.go``, ``resolveDependencyReferences``).
    An artifact a task did not produce (an optional output it did not write; a
    task that failed) is not in the scope: an argument with ``optional: true`` that
    refers to one is left out, and the template's input decides whether the step
    runs without it (``check_input_artifacts``); one that is not optional is an
    error naming the task and the artifact."""
    resolved: dict[str, str] = {}
    for argument in arguments.get("artifacts") or []:
        reference = str(argument.get("from", ""))
        try:
            resolved[argument["name"]] = substitute(reference, scope)
        except SpecError:
            if argument.get("optional"):
                continue  # Argo: "Optional artifact was not found; it won't be available"
            raise SpecError(_not_produced(argument["name"], reference, scope)) from None
    return resolved


def _not_produced(name: str, reference: str, scope: Mapping[str, str]) -> str:
    missing = next(v for v in variables(reference) if v not in scope)
    found = _OUTPUT_ARTIFACT.fullmatch(missing)
    if found is None:
        return f"artifact argument {name!r}: failed to resolve {{{{{missing}}}}}"
    task, artifact = found.groups()
    return (
        f"task {task!r} did not produce artifact {artifact!r} and argument {name!r} "
        f"is not optional (failed to resolve {{{{{missing}}}}})"
    )


def check_input_artifacts(template: Mapping[str, Any], supplied: Iterable[str]) -> None:
    """Argo's rule for a template's input artifacts (``workflow/common/util.go``,
    ``ProcessArgs``): each one that is not ``optional`` must be supplied."""
    given = set(supplied)
    for artifact in (template.get("inputs") or {}).get("artifacts") or []:
        if artifact.get("name") not in given and not artifact.get("optional"):
            raise SpecError(
                f"template {template.get('name')!r}: "
                f"inputs.artifacts.{artifact.get('name')} was not supplied"
            )


# -- DAG tasks and their dependencies --------------------------------------------

# The results a ``depends`` operand may name (Argo's TaskResults).
DEPENDS_RESULTS = frozenset(
    {
        "Succeeded",
        "Failed",
        "Errored",
        "Skipped",
        "Omitted",
        "Daemoned",
        "AnySucceeded",
        "AllFailed",
    }
)
_DEPENDS_OPERAND = re.compile(r"([A-Za-z0-9][-A-Za-z0-9]*)(?:\.([A-Za-z]+))?")


def depends_targets(expression: str | None) -> list[str]:
    """Task names in an enhanced ``depends`` expression (``a && (b.Failed || !c)``),
    in order, once each. An operand with an unknown result stays ``name.Result``,
    so it is reported as a task that does not exist."""
    names = []
    for match in _DEPENDS_OPERAND.finditer(expression or ""):
        name, result = match.groups()
        names.append(f"{name}.{result}" if result and result not in DEPENDS_RESULTS else name)
    return list(dict.fromkeys(names))


def task_dependencies(task: Mapping[str, Any]) -> list[str]:
    """The tasks a raw DAG task waits for: its ``depends`` and ``dependencies``."""
    return depends_targets(task.get("depends", "")) + list(task.get("dependencies") or [])


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """A dependency cycle (``[a, b, a]``: a waits for b, b for a) or ``[]``.
    Names that are not in the graph are left for the caller to report."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(name: str) -> list[str]:
        state[name] = "active"
        path.append(name)
        for dependency in graph[name]:
            if dependency not in graph:
                continue
            if state.get(dependency) == "active":
                return path[path.index(dependency) :] + [dependency]
            if dependency not in state:
                cycle = visit(dependency)
                if cycle:
                    return cycle
        path.pop()
        state[name] = "done"
        return []

    for name in graph:
        if name not in state:
            cycle = visit(name)
            if cycle:
                return cycle
    return []


def ancestors(name: str, graph: Mapping[str, Iterable[str]]) -> set[str]:
    """Every task ``name`` waits for, directly or not (Argo's task ancestry: the
    tasks whose outputs it may use)."""
    found: set[str] = set()
    stack = list(graph.get(name, ()))
    while stack:
        current = stack.pop()
        if current in found or current not in graph:
            continue
        found.add(current)
        stack.extend(graph[current])
    return found


@dataclass
class Task:
    name: str
    template: str
    depends: str = ""
    when: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    # A loop: Argo runs one child per item (an empty ``withItems`` is no loop).
    with_items: list[Any] | None = None
    with_param: str | None = None

    @property
    def loops(self) -> bool:
        return self.with_items is not None or self.with_param is not None

    def upstream(self) -> list[str]:
        return sorted(depends_targets(self.depends))


def dag_tasks(spec: dict[str, Any], template_name: str) -> list[Task]:
    """The DAG's tasks in an order where each comes after what it depends on
    (declaration order otherwise)."""
    templates = {t["name"]: t for t in spec["templates"]}
    dag = templates.get(template_name, {}).get("dag")
    if dag is None:
        raise SpecError(f"template {template_name!r} is not a DAG")
    raw_tasks = {raw["name"]: raw for raw in dag["tasks"]}
    graph = {name: task_dependencies(raw) for name, raw in raw_tasks.items()}
    for dependencies in graph.values():
        for dependency in dependencies:
            if dependency not in graph:
                raise SpecError(f"depends names an unknown task {dependency!r}")
    cycle = find_cycle(graph)
    if cycle:
        raise SpecError(f"dependency cycle detected: {' -> '.join(cycle)}")
    ordered: dict[str, None] = {}

    def visit(name: str) -> None:
        if name not in ordered:
            for dependency in graph[name]:
                visit(dependency)
            ordered[name] = None

    for name in graph:
        visit(name)
    return [_task(raw_tasks[name]) for name in ordered]


def _task(raw: dict[str, Any]) -> Task:
    if raw.get("depends") and raw.get("dependencies"):
        raise SpecError(f"task {raw['name']!r} cannot use both 'depends' and 'dependencies'")
    # Argo's rule: ``dependencies: [a, b]`` is ``depends: "a && b"``.
    depends = raw.get("depends") or " && ".join(raw.get("dependencies") or [])
    return Task(
        name=raw["name"],
        template=raw["template"],
        depends=depends,
        when=raw.get("when", ""),
        arguments=raw.get("arguments", {}),
        with_items=raw.get("withItems") or None,
        with_param=raw.get("withParam") or None,
    )


# -- depends --------------------------------------------------------------------

_FAILED = (StepPhase.FAILED, StepPhase.ERRORED)


@dataclass(frozen=True)
class Outcome:
    """What a ``depends`` operand can ask of a finished task: its phase and, for a
    loop, its children's phases (``AnySucceeded``, ``AllFailed``)."""

    phase: str
    children: tuple[str, ...] | None = None

    def result(self, name: str) -> bool:
        if name == "AnySucceeded":
            return StepPhase.SUCCEEDED in (self.children or ())
        if name == "AllFailed":
            return bool(self.children) and all(p == StepPhase.FAILED for p in self.children or ())
        if name == "Daemoned":
            return False  # the engine runs no daemons
        return self.phase == name  # Succeeded, Failed, Errored, Skipped, Omitted


def loop_phase(children: Sequence[str]) -> str:
    """A loop's phase from its children's (Argo's TaskGroup node): Skipped with no
    items, else Succeeded unless a child failed or erred (the last such child's)."""
    if not children:
        return StepPhase.SKIPPED
    phase: str = StepPhase.SUCCEEDED
    for child in children:
        if child in _FAILED:
            phase = child
    return phase


def dag_phase(graph: Mapping[str, Iterable[str]], phases: Mapping[str, str]) -> str:
    """A finished DAG's phase, by Argo's rule (``assessDAGPhase``): its target tasks
    (those no other task depends on) decide. A task that ran (Succeeded, Failed,
    Errored) has its own phase; one that did not (Skipped, Omitted) inherits its
    branch's, a failure first, Succeeded at the top. So a failure a later task
    handled (``depends: "a.Failed"``, or a fan-in after ``AnySucceeded``) does not
    fail the DAG; one no task handled does. ``graph``: task -> its upstream tasks."""
    branch: dict[str, str] = {}

    def branch_phase(name: str) -> str:
        if name not in branch:
            own = phases.get(name, StepPhase.OMITTED)
            if own in (StepPhase.SUCCEEDED, *_FAILED):
                branch[name] = own
            else:
                inherited = [branch_phase(upstream) for upstream in graph.get(name, ())]
                failed = [phase for phase in inherited if phase in _FAILED]
                branch[name] = failed[0] if failed else StepPhase.SUCCEEDED
        return branch[name]

    downstream = {upstream for upstreams in graph.values() for upstream in upstreams}
    for target in (name for name in graph if name not in downstream):
        if branch_phase(target) in _FAILED:
            return branch[target]
    return StepPhase.SUCCEEDED


def _depends_tokens(expression: str) -> list[str]:
    return re.findall(r"&&|\|\||!|\(|\)|[A-Za-z0-9][-A-Za-z0-9]*(?:\.[A-Za-z]+)?", expression)


def evaluate_depends(expression: str, results: Mapping[str, str | Outcome]) -> bool:
    """Argo's enhanced ``depends`` logic: ``A``, ``A.Succeeded``, ``A.AnySucceeded``,
    ``&&``, ``||``, ``!``, parentheses. A bare ``A`` means A succeeded, was skipped
    or is daemoned. ``results``: each finished task's phase, or its Outcome."""
    if not expression.strip():
        return True
    tokens = _depends_tokens(expression)
    if "".join(tokens) != re.sub(r"\s+", "", expression):
        raise SpecError(f"unsupported depends expression {expression!r}")
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        if position == len(tokens):
            raise SpecError(f"cannot parse depends expression {expression!r}")
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
        if token in ("&&", "||", ")"):
            raise SpecError(f"cannot parse depends expression {expression!r}")
        task, _, result = token.partition(".")
        found = results.get(task)
        if found is None:
            raise SpecError(f"depends names a task that has not finished: {task!r}")
        outcome = found if isinstance(found, Outcome) else Outcome(found)
        if not result:
            return outcome.result("Succeeded") or outcome.result("Skipped")
        if result not in DEPENDS_RESULTS:
            raise SpecError(f"unknown depends result {result!r} in {expression!r}")
        return outcome.result(result)

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


# -- when ------------------------------------------------------------------------

# Argo evaluates a resolved ``when`` with govaluate, bare words read as strings.
# This is its subset: literals (numbers, 'quoted' or "quoted" strings, true,
# false, bare words), ! && || ( ), comparisons == != < <= > >= and regex =~ !~.
_WHEN_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d+)?)(?![A-Za-z0-9_.])|(?P<string>'[^']*'|\"[^\"]*\")"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*)|(?P<op>&&|\|\||==|!=|<=|>=|=~|!~|<|>|!|\(|\)))"
)
_COMPARISONS = ("==", "!=", "<=", ">=", "=~", "!~", "<", ">")


def _when_tokens(expression: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    position = 0
    while expression[position:].strip():
        match = _WHEN_TOKEN.match(expression, position)
        if match is None:
            raise SpecError(f"unsupported when expression {expression!r}")
        kind = match.lastgroup or ""
        text = match.group(kind)
        if kind == "number":
            tokens.append(("value", float(text)))
        elif kind == "string":
            tokens.append(("value", text[1:-1]))
        elif kind == "word":
            tokens.append(("value", {"true": True, "false": False}.get(text, text)))
        else:
            tokens.append(("op", text))
        position = match.end()
    return tokens


def _parse_when(expression: str) -> Any:
    """The expression as a tree: a value, ("!", x), (op, left, right)."""
    tokens = _when_tokens(expression)
    position = 0

    def fail() -> SpecError:
        return SpecError(f"unsupported when expression {expression!r}")

    def peek() -> tuple[str, Any] | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> tuple[str, Any]:
        nonlocal position
        if position == len(tokens):
            raise fail()
        position += 1
        return tokens[position - 1]

    def operand() -> Any:
        kind, value = take()
        if (kind, value) == ("op", "!"):
            return ("!", operand())
        if (kind, value) == ("op", "("):
            inner = either()
            if take() != ("op", ")"):
                raise fail()
            return inner
        if kind != "value":
            raise fail()
        return value

    def level(operators: Iterable[str], tighter: Callable[[], Any]) -> Callable[[], Any]:
        """A left-associative level of binary operators over a tighter one."""
        tokens_here = [("op", operator) for operator in operators]

        def parse() -> Any:
            left = tighter()
            while peek() in tokens_here:
                left = (take()[1], left, tighter())
            return left

        return parse

    either = level(["||"], level(["&&"], level(_COMPARISONS, operand)))
    tree = either()
    if position != len(tokens):
        raise fail()
    return tree


def _evaluate(node: Any, expression: str) -> Any:
    if not isinstance(node, tuple):
        return node

    def boolean(value: Any) -> bool:
        if not isinstance(value, bool):
            raise SpecError(f"when {expression!r}: {value!r} is not a boolean")
        return value

    if node[0] == "!":
        return not boolean(_evaluate(node[1], expression))
    operator, left, right = node[0], _evaluate(node[1], expression), None
    if operator == "&&":
        return boolean(left) and boolean(_evaluate(node[2], expression))
    if operator == "||":
        return boolean(left) or boolean(_evaluate(node[2], expression))
    right = _evaluate(node[2], expression)
    if operator in ("==", "!="):  # govaluate compares type and value
        same = type(left) is type(right) and left == right
        return same if operator == "==" else not same
    if operator in ("=~", "!~"):
        if not (isinstance(left, str) and isinstance(right, str)):
            raise SpecError(f"when {expression!r}: {operator} needs strings")
        found = re.search(right, left) is not None
        return found if operator == "=~" else not found
    numbers = all(isinstance(v, float) for v in (left, right))
    if not numbers and not all(isinstance(v, str) for v in (left, right)):
        raise SpecError(f"when {expression!r}: cannot compare {left!r} {operator} {right!r}")
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[
        operator
    ]


def evaluate_when(expression: str) -> bool:
    """A resolved ``when`` (its ``{{...}}`` substituted), as Argo evaluates it."""
    result = _evaluate(_parse_when(expression), expression)
    if not isinstance(result, bool):
        raise SpecError(f"when {expression!r} is not a boolean expression")
    return result


def check_when(expression: str) -> None:
    """Raise SpecError if a ``when`` (not yet resolved) is outside the subset:
    each ``{{...}}`` stands for a word, as the value it becomes mostly is."""
    _parse_when(_VARIABLE.sub("value", expression))


# -- loops -------------------------------------------------------------------------


class _Number(str):
    """A JSON number as written: Argo keeps an item's JSON as it came (``1.50``)."""


def loop_items(task: Task, scope: Mapping[str, str]) -> list[Any]:
    """The items a looped task runs over: ``withItems`` (its strings resolved in
    ``scope``) or ``withParam`` resolved and read as a JSON list."""
    if task.with_items is not None:
        return [_resolve_all(item, scope) for item in task.with_items]
    text = substitute(task.with_param or "", scope)
    try:
        items = json.loads(text, parse_int=_Number, parse_float=_Number)
    except ValueError:
        items = None
    if not isinstance(items, list):
        raise SpecError(f"withParam value could not be parsed as a JSON list: {text.strip()}")
    return items


def _resolve_all(value: Any, scope: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return substitute(value, scope)
    if isinstance(value, dict):
        return {k: _resolve_all(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_all(v, scope) for v in value]
    return value


@dataclass(frozen=True)
class LoopChild:
    """One child of a looped task: Argo's node name and the ``{{item...}}`` it sees."""

    name: str
    index: int
    variables: dict[str, str]


def loop_children(task_name: str, items: Sequence[Any]) -> list[LoopChild]:
    """Argo's expansion of a looped task (``processItem``): child ``i`` is named
    ``task(i:description)``, where a string, number or bool describes itself, a
    map its sorted ``key:value`` pairs joined by commas, a list ``[a b]``.
    ``{{item}}`` is the item (a map or list as JSON), ``{{item.key}}`` a map's value."""
    children = []
    for index, item in enumerate(items):
        if isinstance(item, dict):
            names = {f"item.{key}": _item_text(value) for key, value in item.items()}
            description = ",".join(sorted(f"{k[5:]}:{v}" for k, v in names.items()))
            values = {"item": _go_json(item, sort_depth=1, floats=repr), **names}
        elif isinstance(item, list):
            description = "[" + " ".join(_item_text(v) for v in item) + "]"
            values = {"item": _go_json(item, sort_depth=0, floats=repr)}
        elif item is None:
            raise SpecError(f"withItems[{index}] expected string, number, list, or map")
        else:
            description = _item_text(item)
            values = {"item": description}
        children.append(LoopChild(f"{task_name}({index}:{description})", index, values))
    return children


def _item_text(value: Any) -> str:
    """Go's ``Item.String()``: the item's JSON, a string's quotes trimmed."""
    text = _go_json(value, sort_depth=0, floats=repr, escape_html=False)
    return text.strip('"') if text.startswith('"') else text


def _go_float(number: float) -> str:
    """A float64 as Go's encoding/json writes it (1.0 -> 1, 1e-07 -> 1e-7)."""
    if number != 0 and (abs(number) < 1e-6 or abs(number) >= 1e21):
        return re.sub(r"e-0(\d)$", r"e-\1", repr(number))
    return format(Decimal(repr(number)).normalize(), "f")


def _go_json(value: Any, sort_depth: int, floats: Any = _go_float, escape_html: bool = True) -> str:
    """Compact JSON as Go's encoding/json writes it: maps' keys sorted ``sort_depth``
    levels down, numbers as written (``_Number``) or formatted by ``floats``, and
    ``<``, ``>``, ``&`` escaped unless ``escape_html`` is off."""

    def encode(item: Any, depth: int) -> str:
        if isinstance(item, _Number):
            return str.__str__(item)
        if isinstance(item, float):
            return floats(item)
        if isinstance(item, dict):
            keys = sorted(item) if depth < sort_depth else list(item)
            pairs = (
                f"{json.dumps(k, ensure_ascii=False)}:{encode(item[k], depth + 1)}" for k in keys
            )
            return "{" + ",".join(pairs) + "}"
        if isinstance(item, list):
            return "[" + ",".join(encode(v, depth + 1) for v in item) + "]"
        return json.dumps(item, ensure_ascii=False)

    text = encode(value, 0)
    if escape_html:
        for plain, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
            text = text.replace(plain, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def aggregate_parameters(children: Sequence[Mapping[str, str]]) -> tuple[str, dict[str, str]]:
    """A loop's outputs for the tasks after it, from its succeeded children's output
    parameters in item order: ``tasks.X.outputs.parameters`` (a JSON list of each
    child's parameters) and ``tasks.X.outputs.parameters.NAME`` (a JSON list of the
    values: parsed when every value is a JSON object or list, as Argo >= 3.6 does,
    else the values as strings)."""
    listed = _go_json([dict(child) for child in children], sort_depth=2)
    by_name: dict[str, list[str]] = {}
    for child in children:
        for name, value in child.items():
            by_name.setdefault(name, []).append(value)
    return listed, {name: _aggregate(values) for name, values in by_name.items()}


def _aggregate(values: list[str]) -> str:
    parsed = []
    for value in values:
        trimmed = value.strip(" ")
        if trimmed and trimmed[0] + trimmed[-1] not in ("{}", "[]"):
            return _go_json(values, sort_depth=0)
        try:
            parsed.append(json.loads(value))
        except ValueError:
            return _go_json(values, sort_depth=0)
    return _go_json(parsed, sort_depth=1_000)
