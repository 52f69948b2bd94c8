"""The semantic checks of ``argo lint`` (sdk/argo/lint.py): csflow's own manifests
pass, and each check rejects a manifest broken on purpose. The same broken
manifests go through the real ``argo lint --offline`` in
test_argo_cli.py when the argo binary is available."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from csflow.sdk.argo import lint

from .conftest import make_simulation_workflow


def base_workflow() -> dict:
    """A small valid Workflow: a DAG (a -> b, b uses a's output) and an exit handler."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "lint-me", "labels": {"team": "x"}},
        "spec": {
            "entrypoint": "main",
            "onExit": "exit",
            "arguments": {"parameters": [{"name": "who", "value": "world"}]},
            "templates": [
                {
                    "name": "main",
                    "dag": {
                        "tasks": [
                            {
                                "name": "a",
                                "template": "say",
                                "arguments": {
                                    "parameters": [
                                        {"name": "text", "value": "{{workflow.parameters.who}}"}
                                    ]
                                },
                            },
                            {
                                "name": "b",
                                "template": "say",
                                "depends": "a.Succeeded",
                                "when": "{{tasks.a.outputs.parameters.out}} != ''",
                                "arguments": {
                                    "parameters": [
                                        {
                                            "name": "text",
                                            "value": "{{tasks.a.outputs.parameters.out}}",
                                        }
                                    ]
                                },
                            },
                        ]
                    },
                },
                {
                    "name": "say",
                    "inputs": {"parameters": [{"name": "text"}]},
                    "activeDeadlineSeconds": 60,
                    "container": {
                        "image": "alpine:3",
                        "command": ["echo", "{{inputs.parameters.text}}"],
                    },
                    "outputs": {"parameters": [{"name": "out", "valueFrom": {"path": "/tmp/out"}}]},
                },
                {
                    "name": "exit",
                    "container": {
                        "image": "alpine:3",
                        "args": [
                            "{{workflow.status}}",
                            "{{workflow.failures}}",
                            "{{workflow.labels.team}}",
                        ],
                    },
                },
            ],
        },
    }


def template_named(doc: dict, name: str) -> dict:
    return next(t for t in doc["spec"]["templates"] if t["name"] == name)


def task_named(doc: dict, name: str) -> dict:
    return next(t for t in template_named(doc, "main")["dag"]["tasks"] if t["name"] == name)


def _set(path: Callable[[dict], dict], **values) -> Callable[[dict], None]:
    return lambda doc: path(doc).update(values)


# (id, how to break the base workflow, a phrase the finding must contain, csflow-only)
BROKEN: list[tuple[str, Callable[[dict], None], str, bool]] = [
    (
        "object-name-too-long",
        lambda d: d["metadata"].update(name="x" * 64),
        "must not be more than 63",
        False,
    ),
    ("object-name-not-rfc1123", lambda d: d["metadata"].update(name="Lint_Me"), "RFC 1123", True),
    (
        "duplicate-template-names",
        lambda d: d["spec"]["templates"].append(copy.deepcopy(template_named(d, "say"))),
        "is not unique",
        False,
    ),
    (
        "invalid-template-name",
        lambda d: (
            template_named(d, "exit").update(name="exit_handler"),
            d["spec"].update(onExit="exit_handler"),
        ),
        "is invalid",
        False,
    ),
    (
        "duplicate-task-names",
        lambda d: task_named(d, "b").update(name="a", depends=""),
        "is not unique",
        False,
    ),
    ("invalid-task-name", lambda d: task_named(d, "b").update(name="b.two"), "is invalid", False),
    (
        "two-template-types",
        _set(lambda d: template_named(d, "exit"), script={"image": "alpine:3", "source": "x"}),
        "multiple template types",
        False,
    ),
    (
        "no-template-type",
        lambda d: template_named(d, "exit").pop("container"),
        "template type unspecified",
        False,
    ),
    (
        "task-template-undefined",
        _set(lambda d: task_named(d, "a"), template="nope"),
        "template name 'nope' undefined",
        False,
    ),
    (
        "entrypoint-undefined",
        lambda d: d["spec"].update(entrypoint="nope"),
        "template name 'nope' undefined",
        False,
    ),
    (
        "onexit-undefined",
        lambda d: d["spec"].update(onExit="nope"),
        "template name 'nope' undefined",
        False,
    ),
    (
        "template-ref-unresolved",
        lambda d: (
            task_named(d, "a").update(
                template=None, templateRef={"name": "other", "template": "say"}
            )
            or task_named(d, "a").pop("template")
        ),
        "template reference other.say not found",
        False,
    ),
    (
        "input-parameter-unresolved",
        _set(
            lambda d: template_named(d, "say")["container"], args=["{{inputs.parameters.missing}}"]
        ),
        "failed to resolve {{inputs.parameters.missing}}",
        False,
    ),
    (
        "workflow-parameter-unresolved",
        _set(
            lambda d: template_named(d, "exit")["container"], args=["{{workflow.parameters.whom}}"]
        ),
        "failed to resolve {{workflow.parameters.whom}}",
        False,
    ),
    (
        "task-output-unresolved",
        lambda d: task_named(d, "b")["arguments"]["parameters"][0].update(
            value="{{tasks.a.outputs.parameters.nope}}"
        ),
        "failed to resolve {{tasks.a.outputs.parameters.nope}}",
        False,
    ),
    (
        "argument-from-non-ancestor",
        lambda d: (task_named(d, "b").update(depends=""), task_named(d, "b").pop("when")),
        "missing dependency 'a'",
        False,
    ),
    (
        "dag-cycle",
        _set(lambda d: task_named(d, "a"), depends="b"),
        "dependency cycle detected",
        False,
    ),
    (
        "depends-target-undefined",
        _set(lambda d: task_named(d, "b"), depends="a.Succeeded && c"),
        "dependency 'c' not defined",
        False,
    ),
    (
        "depends-and-dependencies",
        _set(lambda d: task_named(d, "a"), dependencies=["b"]),
        "cannot use both 'depends' and 'dependencies'",
        False,
    ),
    (
        "deadline-on-non-leaf",
        _set(lambda d: template_named(d, "main"), activeDeadlineSeconds=60),
        "activeDeadlineSeconds is only valid for leaf templates",
        False,
    ),
    (
        "empty-image",
        _set(lambda d: template_named(d, "exit")["container"], image=""),
        "image may not be empty",
        False,
    ),
    (
        "two-loop-kinds",
        _set(lambda d: task_named(d, "a"), withItems=[1, 2], withParam="[1]"),
        "only one of withItems, withParam, withSequence",
        False,
    ),
    (
        "parallelism-on-leaf",
        _set(lambda d: template_named(d, "say"), parallelism=2),
        "parallelism is only valid for steps and dag templates",
        False,
    ),
    # argo lint lets a missing value through (the server refuses it at submission);
    # csflow checks what submission checks.
    (
        "workflow-argument-without-value",
        lambda d: d["spec"]["arguments"]["parameters"][0].pop("value"),
        "who.value is required",
        True,
    ),
]


def broken(case_id: str) -> dict:
    _, break_it, _, _ = next(c for c in BROKEN if c[0] == case_id)
    doc = base_workflow()
    break_it(doc)
    return doc


def test_the_base_workflow_is_clean():
    assert lint.lint_document(base_workflow()) == []


@pytest.mark.parametrize(
    "case_id, break_it, expected, _csflow_only", BROKEN, ids=[c[0] for c in BROKEN]
)
def test_each_check_rejects_a_broken_manifest(case_id, break_it, expected, _csflow_only):
    doc = base_workflow()
    break_it(doc)
    findings = lint.lint_document(doc)
    assert findings, f"{case_id}: the broken manifest passed"
    assert any(expected in f.message for f in findings), [str(f) for f in findings]


def test_csflow_flows_and_the_simulation_workflow_lint_clean(templates, sim_workflow):
    assert lint.lint_documents([*templates, sim_workflow]) == []


def test_a_workflow_is_linted_against_the_template_it_refers_to(simulate_template):
    workflow = make_simulation_workflow()
    workflow["spec"]["arguments"]["parameters"] = [
        p for p in workflow["spec"]["arguments"]["parameters"] if p["name"] != "job-id"
    ]
    template = copy.deepcopy(simulate_template)
    template["spec"]["arguments"]["parameters"] = [
        {"name": p["name"]} for p in template["spec"]["arguments"]["parameters"]
    ]
    findings = lint.lint_documents([workflow, template])
    assert [f.message for f in findings] == ["job-id.value is required"]
    assert findings[0].document == f"Workflow/{workflow['metadata']['name']}"


def test_a_workflow_template_must_declare_the_parameters_it_uses(simulate_template):
    template = copy.deepcopy(simulate_template)
    template["spec"]["arguments"]["parameters"] = [
        p for p in template["spec"]["arguments"]["parameters"] if p["name"] != "timeout"
    ]
    messages = {f.message for f in lint.lint_document(template)}
    assert "failed to resolve {{workflow.parameters.timeout}}" in messages


def test_templates_may_leave_argument_values_to_the_workflow(simulate_template):
    assert all("value" not in p for p in simulate_template["spec"]["arguments"]["parameters"])
    assert lint.lint_document(simulate_template) == []


def test_a_global_output_is_usable_in_the_exit_handler_only_if_some_template_declares_it(
    simulate_template,
):
    template = copy.deepcopy(simulate_template)
    for step in template["spec"]["templates"]:
        for parameter in (step.get("outputs") or {}).get("parameters", []):
            parameter.pop("globalName", None)
    messages = {f.message for f in lint.lint_document(template)}
    assert "failed to resolve {{workflow.outputs.parameters.errors-warnings}}" in messages


def test_non_argo_documents_have_no_semantic_findings():
    assert (
        lint.lint_document({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
        == []
    )


def test_depends_expressions_are_parsed_for_task_names():
    assert lint.depends_targets("(a.Succeeded || b) && !c-d.Failed") == ["a", "b", "c-d"]
    assert lint.depends_targets("a.Finished") == ["a.Finished"]
