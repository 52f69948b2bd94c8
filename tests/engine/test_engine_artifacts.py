"""Artifacts that a step declares optional and does not produce, as Argo handles
them (workflow/controller/dag.go, resolveDependencyReferences; ProcessArgs in
workflow/common/util.go): an optional argument is left out, and the step runs
without the file; an argument that is not optional cannot be resolved, and the
step errs naming the task and the artifact; an input the template needs that no
argument supplies errs the step too. Never a crash of the engine: the run goes
on and ends with a one-line reason. Real runs of the embedded engine on small
Workflows."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from csflow.sdk.core.status import RunStatus, StepPhase

from .test_engine_loops import engine, step_template  # noqa: F401 - the fixture

WORK = "/tmp/csflow"


def _document(
    argument_optional: bool,
    input_optional: bool = True,
    producer_value: str = "1",
    depends: str = "a",
) -> dict[str, Any]:
    """Task ``a`` writes ``given`` but not its optional ``extra`` (and fails for the
    value "fail", producing neither); task ``b`` takes both."""
    producer = step_template("0")
    producer["name"] = "produce"
    producer["outputs"]["artifacts"] = [
        {"name": "given", "path": f"{WORK}/out"},  # the step writes it
        {"name": "extra", "path": f"{WORK}/extra", "optional": True},  # it does not
    ]
    consumer = copy.deepcopy(step_template("0"))
    consumer["name"] = "consume"
    consumer["inputs"]["artifacts"] = [
        {"name": "given", "path": f"{WORK}/given", "optional": True},
        {"name": "extra", "path": f"{WORK}/extra", "optional": input_optional},
    ]
    extra: dict[str, Any] = {"name": "extra", "from": "{{tasks.a.outputs.artifacts.extra}}"}
    if argument_optional:
        extra["optional"] = True
    tasks = [
        {
            "name": "a",
            "template": "produce",
            "arguments": {"parameters": [{"name": "x", "value": producer_value}]},
        },
        {
            "name": "b",
            "template": "consume",
            "depends": depends,
            "arguments": {
                "parameters": [{"name": "x", "value": "2"}],
                "artifacts": [
                    {
                        "name": "given",
                        "from": "{{tasks.a.outputs.artifacts.given}}",
                        "optional": True,
                    },
                    extra,
                ],
            },
        },
    ]
    return {
        "metadata": {"name": "artifacts"},
        "spec": {
            "entrypoint": "main",
            "templates": [{"name": "main", "dag": {"tasks": tasks}}, producer, consumer],
        },
    }


def test_an_optional_artifact_not_produced_is_left_out_and_the_step_runs(engine):  # noqa: F811
    status, reason, run, run_dir = engine.run(_document(argument_optional=True))
    assert (status, reason) == (RunStatus.SUCCESS, "")
    assert run.steps["b"]["phase"] == StepPhase.SUCCEEDED
    work = run_dir / "work" / "b"
    assert (work / "given").is_file() and not (work / "extra").exists()


def test_a_failed_step_produced_nothing_and_optional_arguments_of_it_are_left_out(
    engine,  # noqa: F811
):
    document = _document(argument_optional=True, producer_value="fail", depends="a.Failed")
    status, _reason, run, run_dir = engine.run(document)
    assert run.steps["a"]["phase"] == StepPhase.FAILED
    assert run.steps["b"]["phase"] == StepPhase.SUCCEEDED, run.steps["b"]
    # Argo's rule (assessDAGPhase): b, the target task, handled a's failure and
    # succeeded, so the DAG succeeds; a is still listed as failed.
    assert status == RunStatus.SUCCESS
    work = run_dir / "work" / "b"
    assert not (work / "given").exists() and not (work / "extra").exists()


@pytest.mark.parametrize(
    "document, step_message",
    [
        (
            _document(argument_optional=False),
            "task 'a' did not produce artifact 'extra' and argument 'extra' is not optional "
            "(failed to resolve {{tasks.a.outputs.artifacts.extra}})",
        ),
        (
            # Optional as an argument, but the template needs the file.
            _document(argument_optional=True, input_optional=False),
            "template 'consume': inputs.artifacts.extra was not supplied",
        ),
    ],
    ids=["argument-not-optional", "input-not-optional"],
)
def test_an_artifact_that_is_needed_and_not_produced_errs_the_step_in_one_line(
    engine,  # noqa: F811
    document,
    step_message,
):
    status, reason, run, run_dir = engine.run(document)
    assert run.steps["a"]["phase"] == StepPhase.SUCCEEDED
    assert run.steps["b"]["phase"] == StepPhase.ERRORED
    assert run.steps["b"]["message"] == step_message
    assert (status, reason) == (RunStatus.FAIL, f"b: {step_message}")
    assert not (run_dir / "work" / "b").exists()  # it never ran
