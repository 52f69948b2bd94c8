"""The Argo-semantics kernel (sdk/argo/semantics.py) and the subset the embedded engine
runs (engine/argo_subset.py), table by table: depends, when, loops and their child
names, aggregated outputs, substitution, the merge, the DAG's order, and the
documents the engine refuses or accepts. Where ``argo lint --offline`` applies
(CSFLOW_ARGO_CLI), it must judge those documents as the table says."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from csflow import flows
from csflow.engine import argo_subset
from csflow.sdk.argo import lint, semantics
from csflow.sdk.argo.semantics import Outcome, SpecError
from csflow.sdk.core.status import StepPhase

S, F, E = StepPhase.SUCCEEDED, StepPhase.FAILED, StepPhase.ERRORED
SKIP, OMIT = StepPhase.SKIPPED, StepPhase.OMITTED

# -- depends -------------------------------------------------------------------------

DEPENDS: list[tuple[str, dict[str, Any], bool]] = [
    ("", {}, True),
    ("a", {"a": S}, True),
    ("a", {"a": SKIP}, True),  # bare: Succeeded || Skipped || Daemoned
    ("a", {"a": F}, False),
    ("a", {"a": OMIT}, False),
    ("a.Succeeded", {"a": SKIP}, False),
    ("a.Omitted", {"a": OMIT}, True),
    ("a.Failed || a.Errored", {"a": E}, True),
    ("!a.Failed", {"a": S}, True),
    ("a && b", {"a": S, "b": F}, False),
    ("a || b", {"a": F, "b": SKIP}, True),
    ("(a.Succeeded || b.Failed) && !c-d.Omitted", {"a": F, "b": F, "c-d": S}, True),
    ("a.Daemoned", {"a": S}, False),  # the engine runs no daemons
    ("a.AnySucceeded", {"a": S}, False),  # not a loop
    ("sweep", {"sweep": Outcome(S, (S, S))}, True),
    ("sweep.Succeeded", {"sweep": Outcome(F, (S, F))}, False),
    ("sweep.AnySucceeded", {"sweep": Outcome(F, (F, S))}, True),
    ("sweep.AllFailed", {"sweep": Outcome(F, (F, F))}, True),
    ("sweep.AllFailed", {"sweep": Outcome(E, (F, E))}, False),  # an error is not a failure
    ("sweep", {"sweep": Outcome(SKIP, ())}, True),  # no items: Skipped
    ("sweep.AllFailed", {"sweep": Outcome(SKIP, ())}, False),
]


@pytest.mark.parametrize("expression, results, expected", DEPENDS)
def test_depends(expression, results, expected):
    assert semantics.evaluate_depends(expression, results) is expected


@pytest.mark.parametrize(
    "expression, results, error",
    [
        ("a.Finished", {"a": S}, "unknown depends result 'Finished'"),
        ("a &&", {"a": S}, "cannot parse"),
        ("(a", {"a": S}, "cannot parse"),
        ("a", {}, "has not finished: 'a'"),
        ("a == b", {"a": S, "b": S}, "unsupported depends expression"),
    ],
)
def test_depends_errors(expression, results, error):
    with pytest.raises(SpecError, match=error):
        semantics.evaluate_depends(expression, results)


@pytest.mark.parametrize(
    "expression, targets",
    [
        ("(a.Succeeded || b) && !c-d.Failed", ["a", "b", "c-d"]),
        ("a.Finished", ["a.Finished"]),  # reported by lint as an unknown task
        ("a && a.Failed", ["a"]),
    ],
)
def test_depends_targets_are_shared_with_lint(expression, targets):
    assert semantics.depends_targets(expression) == targets
    assert lint.depends_targets is semantics.depends_targets


@pytest.mark.parametrize(
    "children, phase",
    [((), SKIP), ((S, SKIP), S), ((S, F, S), F), ((E, F), F), ((F, E), E), ((SKIP,), S)],
)
def test_a_loops_phase_is_argos_task_group_phase(children, phase):
    assert semantics.loop_phase(children) == phase


# -- when (govaluate, bare words as strings) -----------------------------------------------

WHEN: list[tuple[str, bool]] = [
    ("true == true", True),
    ("false == true", False),
    ("false != true", True),
    ("heads == heads", True),
    ("heads == 'heads'", True),
    ("'a b' == \"a b\"", True),
    ("5 > 3", True),
    ("2 < 10", True),  # numbers compare as numbers
    ("'2' < '10'", False),  # quoted, as strings
    ("5 == '5'", False),  # a number is not a string
    ("1.5 >= 1.50", True),
    ("heads == heads && 1 == 2", False),
    ("heads == tails || !(1 == 2)", True),
    ("foo =~ '^f'", True),
    ("foo !~ 'o$'", False),
]


@pytest.mark.parametrize("expression, expected", WHEN)
def test_when(expression, expected):
    assert semantics.evaluate_when(expression) is expected


@pytest.mark.parametrize(
    "expression", ["a - b", "== true", "5 > a", "true && x", "(a == b", "heads", ""]
)
def test_when_outside_the_subset_is_an_error(expression):
    with pytest.raises(SpecError):
        semantics.evaluate_when(expression)


def test_a_when_is_checked_before_its_variables_are_known():
    semantics.check_when("{{tasks.inputs.outputs.parameters.valid}} == true")
    semantics.check_when("'{{item}}' != skip")
    with pytest.raises(SpecError):
        semantics.check_when("{{item}} in (1, 2)")


# -- loops: items, child names, {{item}} -----------------------------------------------

EXPANSIONS: list[tuple[dict[str, Any], list[str], list[dict[str, str]]]] = [
    (
        {"withItems": [2025, 2026]},
        ["sweep(0:2025)", "sweep(1:2026)"],
        [{"item": "2025"}, {"item": "2026"}],
    ),
    ({"withItems": ["hello world"]}, ["sweep(0:hello world)"], [{"item": "hello world"}]),
    (
        {"withItems": [True, 1.5]},
        ["sweep(0:true)", "sweep(1:1.5)"],
        [{"item": "true"}, {"item": "1.5"}],
    ),
    (
        {"withItems": [{"year": 2025, "name": "x"}]},
        ["sweep(0:name:x,year:2025)"],  # sorted key:value pairs
        [{"item": '{"name":"x","year":2025}', "item.year": "2025", "item.name": "x"}],
    ),
    (
        {"withItems": [{"a": {"z": 1, "b": [1, 2]}}]},
        ['sweep(0:a:{"z":1,"b":[1,2]})'],  # nested values as their JSON, as written
        [{"item": '{"a":{"z":1,"b":[1,2]}}', "item.a": '{"z":1,"b":[1,2]}'}],
    ),
    ({"withItems": [[1, "a"]]}, ["sweep(0:[1 a])"], [{"item": '[1,"a"]'}]),
    (
        # Go's Item.String(): the JSON with strings.Trim(`"`), which also eats an
        # escaped quote at the end.
        {"withItems": ['say "hi"']},
        ['sweep(0:say \\"hi\\)'],
        [{"item": 'say \\"hi\\'}],
    ),
    (
        {"withItems": [{"t": "<b>"}]},  # {{item}} of a map is json.Marshal's: HTML escaped
        ["sweep(0:t:<b>)"],
        [{"item": '{"t":"\\u003cb\\u003e"}', "item.t": "<b>"}],
    ),
    (
        {"withParam": "{{workflow.parameters.years}}"},
        ["sweep(0:1.50)", "sweep(1:a)", "sweep(2:x:1)"],  # numbers as written
        [{"item": "1.50"}, {"item": "a"}, {"item": '{"x":1}', "item.x": "1"}],
    ),
    ({"withParam": "[]"}, [], []),
    ({"withItems": ["{{workflow.parameters.who}}"]}, ["sweep(0:world)"], [{"item": "world"}]),
]


@pytest.mark.parametrize("loop, names, items", EXPANSIONS)
def test_loop_expansion_names_children_as_argo_does(loop, names, items):
    raw = {"name": "sweep", "template": "step", **loop}
    task = semantics.dag_tasks(_spec_with(raw), "main")[0]
    assert task.loops
    scope = {
        "workflow.parameters.years": '[1.50, "a", {"x": 1}]',
        "workflow.parameters.who": "world",
    }
    children = semantics.loop_children(task.name, semantics.loop_items(task, scope))
    assert [c.name for c in children] == names
    assert [c.variables for c in children] == items
    assert [c.index for c in children] == list(range(len(names)))


@pytest.mark.parametrize("value", ['{"a": 1}', "not json", "3"])
def test_with_param_must_be_a_json_list(value):
    task = semantics.Task("sweep", "step", with_param="{{workflow.parameters.years}}")
    with pytest.raises(SpecError, match="withParam value could not be parsed as a JSON list: "):
        semantics.loop_items(task, {"workflow.parameters.years": value})


def test_an_empty_with_items_is_no_loop():
    task = semantics.dag_tasks(
        _spec_with({"name": "a", "template": "step", "withItems": []}), "main"
    )
    assert not task[0].loops


# -- a loop's aggregated outputs ----------------------------------------------------------

AGGREGATES: list[tuple[list[dict[str, str]], str, dict[str, str]]] = [
    ([], "[]", {}),
    ([{"out": "1"}, {"out": "2"}], '[{"out":"1"},{"out":"2"}]', {"out": '["1","2"]'}),
    (  # every value a JSON object or list: parsed (Argo >= 3.6), as Go writes them
        [{"r": '{"b": 1.0, "a": 2}'}, {"r": " [1, 2.50] "}],
        '[{"r":"{\\"b\\": 1.0, \\"a\\": 2}"},{"r":" [1, 2.50] "}]',
        {"r": '[{"a":2,"b":1},[1,2.5]]'},
    ),
    ([{"r": '{"a": 1}'}, {"r": "x"}], None, {"r": '["{\\"a\\": 1}","x"]'}),  # else strings
    ([{"r": '{"a": 1}'}, {"r": ""}], None, {"r": '["{\\"a\\": 1}",""]'}),
    ([{"r": "{not json}"}], None, {"r": '["{not json}"]'}),
    ([{"b": "1", "a": "<"}], '[{"a":"\\u003c","b":"1"}]', {"a": '["\\u003c"]', "b": '["1"]'}),
]


@pytest.mark.parametrize("children, listed, by_name", AGGREGATES)
def test_aggregated_outputs(children, listed, by_name):
    got_listed, got_by_name = semantics.aggregate_parameters(children)
    if listed is not None:
        assert got_listed == listed
    assert got_by_name == by_name
    for value in got_by_name.values():
        assert isinstance(json.loads(value), list)


# -- {{...}} substitution --------------------------------------------------------------------

SCOPE = {"workflow.parameters.x": "1", "inputs.parameters.y": "2", "item": "{}"}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("{{workflow.parameters.x}}-{{ inputs.parameters.y }}", "1-2"),
        ("no variables", "no variables"),
        ("{{item}}", "{}"),
        ("{{inputs.parameters.y}}{{inputs.parameters.y}}", "22"),
    ],
)
def test_substitution(text, expected):
    assert semantics.substitute(text, SCOPE) == expected


def test_an_unknown_variable_is_an_error_naming_it():
    with pytest.raises(SpecError, match=r"failed to resolve \{\{tasks.a.outputs.result\}\}"):
        semantics.substitute("x {{tasks.a.outputs.result}}", SCOPE)
    assert semantics.variables("{{a}} {{ b.c }} {{=x}}") == ["a", "b.c", "=x"]
    assert lint.references({"k": ["{{a}}", "{{=x}}"]}) == ["a"]


# -- artifact arguments and inputs (an artifact not produced is not in the scope) -----------

PRODUCED = {"tasks.a.outputs.artifacts.given": "a/given"}


def _argument(name: str, optional: bool | None = None) -> dict[str, Any]:
    argument: dict[str, Any] = {"name": name, "from": f"{{{{tasks.a.outputs.artifacts.{name}}}}}"}
    if optional is not None:
        argument["optional"] = optional
    return argument


@pytest.mark.parametrize(
    "arguments, resolved",
    [
        ([_argument("given")], {"given": "a/given"}),
        ([_argument("given"), _argument("extra", optional=True)], {"given": "a/given"}),
        ([_argument("extra", optional=True)], {}),
        ([], {}),
    ],
)
def test_an_optional_artifact_argument_not_produced_is_left_out(arguments, resolved):
    assert semantics.artifact_arguments({"artifacts": arguments}, PRODUCED) == resolved


@pytest.mark.parametrize("optional", [None, False])
def test_an_artifact_argument_not_produced_and_not_optional_is_an_error_naming_it(optional):
    arguments = {"artifacts": [_argument("given"), _argument("extra", optional)]}
    with pytest.raises(SpecError) as raised:
        semantics.artifact_arguments(arguments, PRODUCED)
    assert str(raised.value) == (
        "task 'a' did not produce artifact 'extra' and argument 'extra' is not optional "
        "(failed to resolve {{tasks.a.outputs.artifacts.extra}})"
    )
    other = {"artifacts": [{"name": "x", "from": "{{workflow.parameters.nope}}"}]}
    with pytest.raises(SpecError, match=r"^artifact argument 'x': failed to resolve \{\{workflow"):
        semantics.artifact_arguments(other, PRODUCED)


def test_a_templates_input_artifact_must_be_supplied_unless_optional():
    template = {
        "name": "consume",
        "inputs": {"artifacts": [{"name": "given"}, {"name": "extra", "optional": True}]},
    }
    semantics.check_input_artifacts(template, {"given"})
    semantics.check_input_artifacts(template, {"given", "extra"})
    semantics.check_input_artifacts({"name": "bare"}, set())
    with pytest.raises(SpecError, match=r"^template 'consume': inputs.artifacts.given was not"):
        semantics.check_input_artifacts(template, {"extra"})


# -- the merge ------------------------------------------------------------------------------


def _template_doc(parameters: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": "flow"},
        "spec": {
            "entrypoint": "main",
            "activeDeadlineSeconds": 10,
            "arguments": {"parameters": parameters},
        },
    }


def _workflow_doc(parameters: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "run-1"},
        "spec": {
            "workflowTemplateRef": {"name": "flow"},
            "arguments": {"parameters": parameters},
            **spec,
        },
    }


MERGES: list[tuple[list, list, dict, list | str, list]] = [
    # (template parameters, workflow parameters, workflow fields, strict, lenient)
    ([{"name": "a"}], [{"name": "a", "value": "1"}], {}, [("a", "1")], [("a", "1")]),
    ([{"name": "a", "value": "d"}], [], {}, [("a", "d")], [("a", "d")]),
    ([{"name": "a", "value": "d"}], [{"name": "a", "value": "w"}], {}, [("a", "w")], [("a", "w")]),
    ([{"name": "a"}], [{"name": "a", "value": True}], {}, [("a", "true")], [("a", True)]),
    ([{"name": "a"}], [], {}, "workflow parameter 'a' has no value", [("a", None)]),
    (
        [{"name": "a", "value": "1"}],
        [{"name": "z", "value": "2"}],
        {},
        "unknown workflow parameter(s): z",
        [("a", "1"), ("z", "2")],
    ),
]


@pytest.mark.parametrize("declared, given, fields, strict, lenient", MERGES)
def test_merge(declared, given, fields, strict, lenient):
    template, workflow = _template_doc(declared), _workflow_doc(given, **fields)
    merged = semantics.merge_specs(workflow["spec"], template["spec"])
    assert [(p["name"], p.get("value")) for p in merged["arguments"]["parameters"]] == lenient
    if isinstance(strict, str):
        with pytest.raises(SpecError, match=strict.replace("(", r"\(").replace(")", r"\)")):
            semantics.merge_workflow(workflow, template)
    else:
        spec = semantics.merge_workflow(workflow, template)["spec"]
        assert [(p["name"], p["value"]) for p in spec["arguments"]["parameters"]] == strict


def test_the_workflows_own_fields_win_and_its_reference_must_match():
    template = _template_doc([])
    merged = semantics.merge_workflow(_workflow_doc([], activeDeadlineSeconds=99), template)
    assert merged["spec"]["activeDeadlineSeconds"] == 99 and merged["spec"]["entrypoint"] == "main"
    assert merged["metadata"] == {"name": "run-1"}
    other = _workflow_doc([])
    other["spec"]["workflowTemplateRef"] = {"name": "other"}
    with pytest.raises(SpecError, match="workflow refers to 'other', not 'flow'"):
        semantics.merge_workflow(other, template)


# -- the DAG: order, cycles, ancestry ---------------------------------------------------------


def _spec_with(*tasks: dict[str, Any]) -> dict[str, Any]:
    return {"templates": [{"name": "main", "dag": {"tasks": list(tasks)}}]}


def test_tasks_come_after_what_they_depend_on():
    spec = _spec_with(
        {"name": "c", "template": "t", "depends": "b.Succeeded && a"},
        {"name": "b", "template": "t", "dependencies": ["a"]},  # is "a"
        {"name": "a", "template": "t"},
    )
    tasks = semantics.dag_tasks(spec, "main")
    assert [t.name for t in tasks] == ["a", "b", "c"]
    assert tasks[1].depends == "a"


@pytest.mark.parametrize(
    "tasks, error",
    [
        (
            [
                {"name": "a", "template": "t", "depends": "b"},
                {"name": "b", "template": "t", "depends": "a"},
            ],
            "dependency cycle detected: a -> b -> a",
        ),
        ([{"name": "a", "template": "t", "depends": "nope"}], "unknown task 'nope'"),
        (
            [
                {"name": "a", "template": "t", "depends": "b", "dependencies": ["b"]},
                {"name": "b", "template": "t"},
            ],
            "cannot use both",
        ),
    ],
)
def test_dag_errors(tasks, error):
    with pytest.raises(SpecError, match=error):
        semantics.dag_tasks(_spec_with(*tasks), "main")


GRAPH = {"a": [], "b": ["a"], "c": ["b", "x"], "d": ["c", "a"]}


@pytest.mark.parametrize(
    "graph, cycle",
    [
        (GRAPH, []),
        ({"a": ["b"], "b": ["c"], "c": ["a"]}, ["a", "b", "c", "a"]),
        ({"z": ["a"], "a": ["b"], "b": ["a"]}, ["a", "b", "a"]),  # the cycle only
        ({"a": ["a"]}, ["a", "a"]),
    ],
)
def test_find_cycle(graph, cycle):
    assert semantics.find_cycle(graph) == cycle


@pytest.mark.parametrize(
    "name, found", [("a", set()), ("c", {"a", "b"}), ("d", {"a", "b", "c"}), ("x", set())]
)
def test_ancestors(name, found):
    assert semantics.ancestors(name, GRAPH) == found


# -- what the engine runs and what it refuses ------------------------------------------------


def base_workflow() -> dict[str, Any]:
    """A Workflow the engine runs and Argo lints clean: a loop over a parameter, a
    task reading its aggregated output, an exit handler."""
    step = {
        "name": "step",
        "inputs": {"parameters": [{"name": "x"}]},
        "container": {
            "image": "python:3.11",
            "command": ["csflow-step"],
            "args": ["{{inputs.parameters.x}}"],
        },
        "outputs": {"parameters": [{"name": "out", "valueFrom": {"path": "/tmp/csflow/out"}}]},
    }
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "sweep"},
        "spec": {
            "entrypoint": "main",
            "onExit": "exit",
            "parallelism": 2,
            "arguments": {"parameters": [{"name": "years", "value": "[2025, 2026]"}]},
            "templates": [
                {
                    "name": "main",
                    "parallelism": 2,
                    "dag": {
                        "tasks": [
                            _task("prepare", "p"),
                            {
                                **_task("sweep", "{{item}}"),
                                "depends": "prepare",
                                "withParam": "{{workflow.parameters.years}}",
                            },
                            {
                                **_task("report", "{{tasks.sweep.outputs.parameters.out}}"),
                                "depends": "sweep.AnySucceeded",
                            },
                        ]
                    },
                },
                step,
                {
                    "name": "exit",
                    "container": {
                        "image": "python:3.11",
                        "command": ["csflow-step"],
                        "args": ["{{workflow.status}}"],
                    },
                },
            ],
        },
    }


def _task(name: str, value: str) -> dict[str, Any]:
    return {
        "name": name,
        "template": "step",
        "arguments": {"parameters": [{"name": "x", "value": value}]},
    }


def _named(doc: dict, name: str) -> dict:
    return next(t for t in doc["spec"]["templates"] if t["name"] == name)


def _task_named(doc: dict, name: str) -> dict:
    return next(t for t in _named(doc, "main")["dag"]["tasks"] if t["name"] == name)


def _to_dependencies(doc: dict) -> None:
    """``continueOn`` cannot go with ``depends``: the same DAG, with ``dependencies``."""
    for task in _named(doc, "main")["dag"]["tasks"]:
        if task.pop("depends", None):
            task["dependencies"] = {"sweep": ["prepare"], "report": ["sweep"]}[task["name"]]


def _add_template(template: dict) -> Callable[[dict], None]:
    return lambda d: d["spec"]["templates"].append(template)


IMAGE = {"image": "python:3.11"}
T, M = "(template 'main'", "(template 'main', task "
# (id, how the document changes, the engine's refusal or None: it runs it, argo lint accepts)
SUBSET: list[tuple[str, Callable[[dict], Any], str | None, bool]] = [
    ("base", lambda d: None, None, True),
    (
        "cluster-only-fields",
        lambda d: (
            d["spec"].update(nodeSelector={"pool": "x"}, podGC={"strategy": "OnPodCompletion"}),
            _named(d, "step")["container"].update(
                resources={"limits": {"cpu": "1"}}, env=[{"name": "A", "value": "b"}]
            ),
        ),
        None,
        True,
    ),
    (
        "with-items-of-maps",
        lambda d: (
            _task_named(d, "sweep").pop("withParam"),
            _task_named(d, "sweep").update(withItems=[{"year": 2025}]),
            _task_named(d, "sweep")["arguments"]["parameters"][0].update(value="{{item.year}}"),
        ),
        None,
        True,
    ),
    ("dependencies", _to_dependencies, None, True),
    (
        "with-sequence",
        lambda d: (
            _task_named(d, "sweep").pop("withParam"),
            _task_named(d, "sweep").update(withSequence={"count": "2"}),
        ),
        f"'withSequence' {M}'sweep')",
        True,
    ),
    (
        "continue-on",
        lambda d: (
            _to_dependencies(d),
            _task_named(d, "prepare").update(continueOn={"failed": True}),
        ),
        f"'continueOn' {M}'prepare')",
        True,
    ),
    (
        "workflow-hooks",
        lambda d: d["spec"].update(hooks={"exit": {"template": "exit"}}),
        "'hooks' (workflow spec)",
        True,
    ),
    (
        "task-hooks",
        lambda d: _task_named(d, "prepare").update(hooks={"exit": {"template": "exit"}}),
        f"'hooks' {M}'prepare')",
        True,
    ),
    (
        "task-on-exit",
        lambda d: _task_named(d, "prepare").update(onExit="exit"),
        f"'onExit' {M}'prepare')",
        True,
    ),
    (
        "steps",
        _add_template({"name": "seq", "steps": [[{"name": "s", "template": "exit"}]]}),
        "'steps' (template 'seq')",
        True,
    ),
    (
        "script",
        _add_template({"name": "sc", "script": {**IMAGE, "source": "print(1)"}}),
        "'script' (template 'sc')",
        True,
    ),
    (
        "resource",
        _add_template(
            {"name": "r", "resource": {"action": "create", "manifest": "kind: ConfigMap"}}
        ),
        "'resource' (template 'r')",
        True,
    ),
    (
        "http",
        _add_template({"name": "h", "http": {"url": "http://example.com"}}),
        "'http' (template 'h')",
        True,
    ),
    (
        "container-set",
        _add_template({"name": "cs", "containerSet": {"containers": [{"name": "main", **IMAGE}]}}),
        "'containerSet' (template 'cs')",
        True,
    ),
    (
        "synchronization",
        lambda d: d["spec"].update(synchronization={"mutexes": [{"name": "m"}]}),
        "'synchronization' (workflow spec)",
        True,
    ),
    (
        "memoize",
        lambda d: _named(d, "step").update(
            memoize={"key": "k", "maxAge": "1h", "cache": {"configMap": {"name": "c"}}}
        ),
        "'memoize' (template 'step')",
        True,
    ),
    (
        "template-ref",  # offline, argo lint cannot find the WorkflowTemplate either
        lambda d: (
            _task_named(d, "prepare").pop("template"),
            _task_named(d, "prepare").update(templateRef={"name": "other", "template": "step"}),
        ),
        f"'templateRef' {M}'prepare')",
        False,
    ),
    (
        "inline",
        lambda d: (
            _task_named(d, "prepare").pop("template"),
            _task_named(d, "prepare").pop("arguments"),
            _task_named(d, "prepare").update(inline={"container": IMAGE}),
        ),
        f"'inline' {M}'prepare')",
        True,
    ),
    (
        "dag-target",
        lambda d: _named(d, "main")["dag"].update(target="report"),
        f"'dag.target' {T})",
        True,
    ),
    (
        "dag-fail-fast",
        lambda d: _named(d, "main")["dag"].update(failFast=False),
        f"'dag.failFast' {T})",
        True,
    ),
    (
        "template-timeout",
        lambda d: _named(d, "step").update(timeout="10s"),
        "'timeout' (template 'step')",
        True,
    ),
    ("daemon", lambda d: _named(d, "step").update(daemon=True), "'daemon' (template 'step')", True),
    (
        "sidecars",
        lambda d: _named(d, "step").update(sidecars=[{"name": "s", **IMAGE}]),
        "'sidecars' (template 'step')",
        True,
    ),
    (
        "init-containers",
        lambda d: _named(d, "step").update(initContainers=[{"name": "i", **IMAGE}]),
        "'initContainers' (template 'step')",
        True,
    ),
    (
        "suspend-duration",
        _add_template({"name": "wait", "suspend": {"duration": "10s"}}),
        "'suspend.duration' (template 'wait')",
        True,
    ),
    (
        "retry-policy",
        lambda d: _named(d, "step").update(
            retryStrategy={"limit": 1, "retryPolicy": "OnTransientError"}
        ),
        "'retryPolicy: OnTransientError' (template 'step')",
        True,
    ),
    (
        "retry-expression",
        lambda d: _named(d, "step").update(retryStrategy={"limit": 1, "expression": "true"}),
        "'retryStrategy.expression' (template 'step')",
        True,
    ),
    (
        "workflow-retry",
        lambda d: d["spec"].update(retryStrategy={"limit": 1}),
        "'retryStrategy' (workflow spec)",
        True,
    ),
    (
        "template-defaults",
        lambda d: d["spec"].update(templateDefaults={"timeout": "1m"}),
        "'templateDefaults' (workflow spec)",
        True,
    ),
    (
        "working-dir",
        lambda d: _named(d, "step")["container"].update(workingDir="/w"),
        "'container.workingDir' (template 'step')",
        True,
    ),
    (
        "output-result",
        lambda d: _named(d, "step")["outputs"].update(exitCode="1"),
        "'outputs.exitCode' (template 'step')",
        True,
    ),
    (
        "expression-tag",
        lambda d: _named(d, "step")["container"].update(args=["{{=inputs.parameters.x}}"]),
        "expression tags '{{=...}}' (template 'step')",
        True,
    ),
    (
        "pod-name",
        lambda d: _named(d, "step")["container"].update(args=["{{pod.name}}"]),
        "the variable '{{pod.name}}' (template 'step')",
        True,
    ),
    (
        "entrypoint-not-a-dag",
        lambda d: d["spec"].update(entrypoint="exit"),
        "an entrypoint that is not a DAG (template 'exit')",
        True,
    ),
    (
        "nested-dag",
        lambda d: (
            _add_template({"name": "sub", "dag": {"tasks": [{"name": "e", "template": "exit"}]}})(
                d
            ),
            _named(d, "main")["dag"]["tasks"].append({"name": "nested", "template": "sub"}),
        ),
        None,  # a nested DAG runs (a sweep's points)
        True,
    ),
    (
        "recursive-dag",
        lambda d: (
            _add_template(
                {"name": "sub", "dag": {"tasks": [{"name": "again", "template": "sub"}]}}
            )(d),
            _named(d, "main")["dag"]["tasks"].append({"name": "nested", "template": "sub"}),
        ),
        "a DAG that runs itself ('sub') (template 'sub', task 'again')",
        True,
    ),
    (
        "suspend-in-nested-dag",
        lambda d: (
            _add_template({"name": "wait", "suspend": {}})(d),
            _add_template({"name": "sub", "dag": {"tasks": [{"name": "w", "template": "wait"}]}})(
                d
            ),
            _named(d, "main")["dag"]["tasks"].append({"name": "nested", "template": "sub"}),
        ),
        "a suspend step inside a nested DAG (template 'sub')",
        True,
    ),
    (
        "unknown-key",
        lambda d: _task_named(d, "prepare").update(colour="blue"),
        f"'colour' {M}'prepare')",
        False,
    ),
    (
        "parallelism-zero",
        lambda d: d["spec"].update(parallelism=0),
        "'parallelism: 0' (workflow spec)",
        True,
    ),
]


def _document(case_id: str) -> dict[str, Any]:
    doc = base_workflow()
    next(change for cid, change, *_ in SUBSET if cid == case_id)(doc)
    return doc


@pytest.mark.parametrize("case_id, _change, refusal, _argo", SUBSET, ids=[c[0] for c in SUBSET])
def test_the_engine_runs_or_refuses_in_one_line_naming_the_field(case_id, _change, refusal, _argo):
    spec = _document(case_id)["spec"]
    if refusal is None:
        argo_subset.check(spec)
        return
    with pytest.raises(SpecError) as raised:
        argo_subset.check(spec)
    assert str(raised.value) == f"the embedded engine does not implement {refusal}"
    assert "\n" not in str(raised.value)


def test_csflows_own_flows_are_in_the_subset():
    for name in ("simulate", "publish"):
        template = flows.compiled(name)
        argo_subset.check(semantics.merge_specs({}, template["spec"]))


@pytest.fixture(scope="module")
def argo_cli() -> str:
    path = os.environ.get("CSFLOW_ARGO_CLI")
    if not path:
        pytest.skip("no argo CLI: set CSFLOW_ARGO_CLI=/path/to/argo")
    return path


@pytest.mark.parametrize(
    "case_id, _change, _refusal, argo_accepts", SUBSET, ids=[c[0] for c in SUBSET]
)
def test_argo_lint_judges_the_documents_as_the_table_says(
    argo_cli, tmp_path, case_id, _change, _refusal, argo_accepts
):
    """Most documents the engine refuses are valid Argo: it is the engine's subset
    that leaves them out, not a mistake in the document."""
    path = tmp_path / f"{case_id}.yaml"
    path.write_text(yaml.safe_dump(_document(case_id)))
    done = subprocess.run(
        [argo_cli, "lint", "--offline", "--output", "simple", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode == 0) is argo_accepts, done.stdout + done.stderr


def test_every_refused_case_is_a_change_of_a_document_the_engine_runs():
    base = base_workflow()
    argo_subset.check(copy.deepcopy(base)["spec"])
    assert len({c[0] for c in SUBSET}) == len(SUBSET)


@pytest.mark.parametrize(
    ("phases", "phase"),
    [
        # a -> b -> c, and d alone: the targets are c and d.
        ({"a": "Succeeded", "b": "Succeeded", "c": "Succeeded", "d": "Succeeded"}, "Succeeded"),
        ({"a": "Failed", "b": "Omitted", "c": "Omitted", "d": "Succeeded"}, "Failed"),
        ({"a": "Failed", "b": "Succeeded", "c": "Succeeded", "d": "Succeeded"}, "Succeeded"),
        ({"a": "Succeeded", "b": "Skipped", "c": "Omitted", "d": "Succeeded"}, "Succeeded"),
        ({"a": "Errored", "b": "Skipped", "c": "Omitted", "d": "Succeeded"}, "Errored"),
        ({"a": "Succeeded", "b": "Succeeded", "c": "Succeeded", "d": "Failed"}, "Failed"),
    ],
)
def test_a_dags_phase_is_its_target_tasks_with_omitted_ones_inheriting(phases, phase):
    graph = {"a": [], "b": ["a"], "c": ["b"], "d": []}
    assert semantics.dag_phase(graph, phases) == phase
