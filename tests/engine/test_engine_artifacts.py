"""Artifacts that a step declares optional and does not produce, as Argo handles
them (workflow/controller/dag.go, resolveDependencyReferences): an optional
argument is left out, and the step runs without the file; an argument that is not
optional cannot be resolved, and the step errs naming it. Real runs of the
embedded engine on small Workflows."""

from __future__ import annotations

import copy
from typing import Any

from csflow.sdk.core.status import RunStatus, StepPhase

from .test_engine_loops import engine, step_template  # noqa: F401 - the fixture

WORK = "/tmp/csflow"


def _document(argument_optional: bool) -> dict[str, Any]:
    producer = step_template("0")
    producer["name"] = "produce"
    producer["outputs"]["artifacts"] = [
        {"name": "given", "path": f"{WORK}/out"},  # the step writes it
        {"name": "extra", "path": f"{WORK}/extra", "optional": True},  # it does not
    ]
    consumer = copy.deepcopy(step_template("0"))
    consumer["name"] = "consume"
    consumer["inputs"]["artifacts"] = [
        {"name": "given", "path": f"{WORK}/given"},
        {"name": "extra", "path": f"{WORK}/extra", "optional": True},
    ]
    extra: dict[str, Any] = {"name": "extra", "from": "{{tasks.a.outputs.artifacts.extra}}"}
    if argument_optional:
        extra["optional"] = True
    tasks = [
        {
            "name": "a",
            "template": "produce",
            "arguments": {"parameters": [{"name": "x", "value": "1"}]},
        },
        {
            "name": "b",
            "template": "consume",
            "depends": "a",
            "arguments": {
                "parameters": [{"name": "x", "value": "2"}],
                "artifacts": [
                    {"name": "given", "from": "{{tasks.a.outputs.artifacts.given}}"},
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
    assert status == RunStatus.SUCCESS, reason
    assert run.steps["b"]["phase"] == StepPhase.SUCCEEDED
    work = run_dir / "work" / "b"
    assert (work / "given").is_file() and not (work / "extra").exists()


def test_an_artifact_argument_not_optional_and_not_produced_errs_naming_it(engine):  # noqa: F811
    status, _reason, run, _ = engine.run(_document(argument_optional=False))
    assert status != RunStatus.SUCCESS
    assert run.steps["b"]["phase"] == StepPhase.ERRORED
    assert run.steps["b"]["message"] == "failed to resolve {{tasks.a.outputs.artifacts.extra}}"
