"""The embedded engine runs loops and bounds them by parallelism: small real Workflows
(a Python program as the step, started as a fresh process per child), their run
records, work folders and logs; a refused field; a cancel mid-sweep; retries."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from csflow.engine.launchers import SubprocessLauncher
from csflow.engine.runner import WorkflowRunner
from csflow.engine.store import RunStore
from csflow.sdk.core.run import Run
from csflow.sdk.core.status import RunStatus

# The step program: sleeps as long as its item says, records when it ran, and
# fails for the item "fail". Its output parameter is that record, as JSON.
CHILD = """
import json, os, sys, time
value, seconds = sys.argv[1], float(sys.argv[2])
started = time.time()
time.sleep(seconds)
record = {"value": value, "started": started, "ended": time.time()}
with open(os.path.join(os.environ["CSFLOW_WORK_DIR"], "out"), "w") as out:
    json.dump(record, out)
print("ran", value)
sys.exit(3 if value == "fail" else 0)
"""


def step_template(seconds: str = "0.8") -> dict[str, Any]:
    return {
        "name": "step",
        "inputs": {"parameters": [{"name": "x"}]},
        "container": {
            "image": "python:3.11",
            "command": ["csflow-step"],
            "args": ["{{inputs.parameters.x}}", seconds],
        },
        "outputs": {"parameters": [{"name": "out", "valueFrom": {"path": "/tmp/csflow/out"}}]},
    }


def task(name: str, value: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "template": "step",
        "arguments": {"parameters": [{"name": "x", "value": value}]},
        **fields,
    }


def workflow(
    tasks: list[dict], parallelism: int | None = None, seconds: str = "0.8", **spec: Any
) -> dict[str, Any]:
    main: dict[str, Any] = {"name": "main", "dag": {"tasks": tasks}}
    if parallelism is not None:
        main["parallelism"] = parallelism
    return {
        "metadata": {"name": "loops"},
        "spec": {
            "entrypoint": "main",
            "arguments": {"parameters": [{"name": "items", "value": '["p", "q"]'}]},
            "templates": [main, step_template(seconds)],
            **spec,
        },
    }


class Engine:
    def __init__(self, root: Path):
        self.root = root
        self.store = RunStore(root / "runs.db")
        self.child = root / "child.py"
        self.child.write_text(CHILD)

    def run(self, document: dict[str, Any]) -> tuple[str, str, Run, Path]:
        run_id = str(uuid.uuid4())
        self.store.create(Run(id=run_id, owner="o", title="t", tag="x", status="PENDING"))
        run_dir = self.root / run_id

        def launch(program, image):
            return SubprocessLauncher([sys.executable, str(self.child)], dict(os.environ))

        runner = WorkflowRunner(self.store, run_dir, launch)
        try:
            status, reason = runner.execute(run_id, document)
        finally:
            runner.close()
        return status, reason, self.store.get(run_id), run_dir


@pytest.fixture
def engine(tmp_path) -> Engine:
    return Engine(tmp_path)


def outputs(run_dir: Path, step: str) -> Any:
    return json.loads((run_dir / "work" / step / "out").read_text())


def most_at_once(records: list[dict[str, float]]) -> int:
    """The most children that ran at the same moment."""
    moments = sorted([(r["started"], 1) for r in records] + [(r["ended"], -1) for r in records])
    running = peak = 0
    for _, change in moments:
        running += change
        peak = max(peak, running)
    return peak


YEARS = [2025, 2026, 2027, 2028, 2029]


def test_a_sweep_runs_every_child_at_most_parallelism_at_once(engine):
    document = workflow(
        [
            task("sweep", "{{item}}", withItems=YEARS),
            task("report", "{{tasks.sweep.outputs.parameters.out}}", depends="sweep"),
        ],
        parallelism=2,
    )
    status, reason, run, run_dir = engine.run(document)
    assert (status, reason) == (RunStatus.SUCCESS, "")
    children = [f"sweep({i}:{year})" for i, year in enumerate(YEARS)]
    # The loop is recorded first, the task after it last; children as they start.
    steps = list(run.steps)
    assert (steps[0], sorted(steps[1:-1]), steps[-1]) == ("sweep", sorted(children), "report")
    assert all(run.steps[name]["phase"] == "Succeeded" for name in run.steps)
    # Each child has its own work folder and log.
    records = [outputs(run_dir, child) for child in children]
    assert [r["value"] for r in records] == [str(year) for year in YEARS]
    for child, year in zip(children, YEARS, strict=True):
        assert f"ran {year}" in (run_dir / "logs" / f"{child}.log").read_text()
    assert most_at_once(records) == 2  # side by side, never more than parallelism
    # The report got the loop's output parameter, aggregated in item order.
    assert json.loads(outputs(run_dir, "report")["value"]) == records


def test_the_workflows_parallelism_bounds_the_loop_too(engine):
    document = workflow([task("sweep", "{{item}}", withItems=YEARS[:3])], parallelism=3)
    document["spec"]["parallelism"] = 1
    status, _, run, run_dir = engine.run(document)
    assert status == RunStatus.SUCCESS
    records = [outputs(run_dir, f"sweep({i}:{y})") for i, y in enumerate(YEARS[:3])]
    assert most_at_once(records) == 1


def test_independent_tasks_run_side_by_side(engine):
    document = workflow([task("a", "a"), task("b", "b"), task("c", "c", depends="a && b")])
    status, _, run, run_dir = engine.run(document)
    assert status == RunStatus.SUCCESS
    assert most_at_once([outputs(run_dir, name) for name in ("a", "b")]) == min(
        2, os.cpu_count() or 1
    )
    assert outputs(run_dir, "c")["started"] >= max(outputs(run_dir, n)["ended"] for n in "ab")


def test_with_param_from_a_workflow_parameter_and_depends_on_a_loops_results(engine):
    document = workflow(
        [
            task("sweep", "{{item}}", withParam='["ok", "fail", "fine"]'),
            task("any", "any", depends="sweep.AnySucceeded"),
            task("all-failed", "all", depends="sweep.AllFailed"),
            task("after", "after", depends="sweep"),
            task("param", "{{item}}", withParam="{{workflow.parameters.items}}"),
        ],
        parallelism=2,
        seconds="0.1",
    )
    status, reason, run, _ = engine.run(document)
    phases = {name: step["phase"] for name, step in run.steps.items()}
    assert phases == {
        "sweep": "Failed",
        "sweep(0:ok)": "Succeeded",
        "sweep(1:fail)": "Failed",
        "sweep(2:fine)": "Succeeded",
        "param": "Succeeded",
        "param(0:p)": "Succeeded",
        "param(1:q)": "Succeeded",
        "any": "Succeeded",
        "all-failed": "Omitted",
        "after": "Omitted",
    }
    assert status == RunStatus.FAIL
    assert reason == "sweep(1:fail): ran fail"


def test_a_loop_over_a_tasks_output_and_an_empty_loop(engine):
    document = workflow(
        [
            task("list", "list"),
            task(
                "sweep",
                "{{item.value}}",
                depends="list",
                withParam="[{{tasks.list.outputs.parameters.out}}]",
            ),
            task("none", "{{item}}", withParam="[]"),
            task("after-none", "x", depends="none"),
        ],
        seconds="0.1",
    )
    status, _, run, run_dir = engine.run(document)
    assert status == RunStatus.SUCCESS
    child = next(name for name in run.steps if name.startswith("sweep("))
    assert child.startswith("sweep(0:ended:") and child.endswith(",value:list)")
    assert outputs(run_dir, child)["value"] == "list"
    assert run.steps["none"]["phase"] == "Skipped"  # Argo: an empty loop is Skipped
    assert run.steps["after-none"]["phase"] == "Succeeded"


def test_a_refused_field_fails_the_run_before_anything_runs(engine):
    document = workflow([task("a", "a", continueOn={"failed": True}), task("b", "b")])
    status, reason, run, run_dir = engine.run(document)
    assert status == RunStatus.FAIL
    assert reason == (
        "the embedded engine does not implement 'continueOn' (template 'main', task 'a')"
    )
    assert run.steps == {} and not (run_dir / "work").exists()


def test_a_cancel_kills_every_running_child_and_the_exit_handler_still_runs(engine):
    document = workflow(
        [task("sweep", "{{item}}", withItems=YEARS)], parallelism=2, seconds="60", onExit="bye"
    )
    document["spec"]["templates"].append({**step_template("0"), "name": "bye", "inputs": {}})
    document["spec"]["templates"][-1]["container"]["args"] = ["bye", "0"]
    threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
    started = time.monotonic()
    status, reason, run, _ = engine.run(document)
    assert (status, reason) == (RunStatus.CANCELLED, "cancelled")
    assert time.monotonic() - started < 20
    ran = {name: step for name, step in run.steps.items() if name.startswith("sweep(")}
    assert len(ran) == 2  # the third never started
    assert all(
        step["phase"] == "Failed" and step["message"] == "cancelled" for step in ran.values()
    )
    assert run.steps["bye"]["phase"] == "Succeeded"


@pytest.mark.parametrize(
    "retry, attempts",
    [
        ({"limit": 3, "retryPolicy": "OnError", "backoff": {"duration": "0.05"}}, 1),
        ({"limit": 3, "retryPolicy": "OnFailure", "backoff": {"duration": "0.05"}}, 4),
        ({"limit": "3", "retryPolicy": "Always", "backoff": {"duration": "0.05"}}, 4),
        # Argo's maxDuration: the second retry's backoff (1s * 10) would end past 3s.
        ({"limit": 5, "backoff": {"duration": "1", "factor": "10", "maxDuration": "3s"}}, 2),
    ],
)
def test_retries_follow_the_retry_policy_and_max_duration(engine, retry, attempts):
    document = workflow([task("a", "fail")], seconds="0")
    document["spec"]["templates"][1]["retryStrategy"] = retry
    status, reason, run, _ = engine.run(document)
    assert (status, reason) == (RunStatus.FAIL, "a: ran fail")
    assert run.steps["a"]["attempts"] == attempts


def point_loop(items: dict[str, Any]) -> dict[str, Any]:
    """A loop whose children run the DAG template ``chain`` with their item as ``x``."""
    return {
        "name": "point",
        "template": "chain",
        "arguments": {"parameters": [{"name": "x", "value": "{{item}}"}]},
        **items,
    }


def with_chain(document: dict[str, Any], tasks: list[dict]) -> dict[str, Any]:
    """The document with the DAG template ``chain`` (input ``x``) of ``tasks``."""
    chain = {"name": "chain", "inputs": {"parameters": [{"name": "x"}]}, "dag": {"tasks": tasks}}
    document["spec"]["templates"].append(chain)
    return document


def test_a_loop_over_a_nested_dag_runs_each_point_in_order_and_a_fan_in_decides(engine):
    """A sweep's shape: a loop whose template is a DAG (first -> second per point, the
    point's item as the DAG's input), then a fan-in after AnySucceeded. Nodes are
    named as Argo names them (``point(1:fail).first``); a point's failure omits its
    own second step only; the fan-in, the DAG's target task, decides the run."""
    outer = [
        point_loop({"withParam": '["ok", "fail", "fine"]'}),
        task("combine", "combine", depends="point.AnySucceeded || point.AllFailed"),
    ]
    document = with_chain(
        workflow(outer, seconds="0.1"),
        [
            task("first", "{{inputs.parameters.x}}"),
            task("second", "{{inputs.parameters.x}}-2", depends="first.Succeeded"),
        ],
    )
    status, reason, run, run_dir = engine.run(document)
    phases = {name: step["phase"] for name, step in run.steps.items()}
    assert phases == {
        "point": "Failed",
        "point(0:ok)": "Succeeded",
        "point(0:ok).first": "Succeeded",
        "point(0:ok).second": "Succeeded",
        "point(1:fail)": "Failed",
        "point(1:fail).first": "Failed",
        "point(1:fail).second": "Omitted",
        "point(2:fine)": "Succeeded",
        "point(2:fine).first": "Succeeded",
        "point(2:fine).second": "Succeeded",
        "combine": "Succeeded",
    }
    assert run.steps["point(1:fail)"]["message"] == "child 'point(1:fail).first' failed"
    assert (status, reason) == (RunStatus.SUCCESS, "")
    # Each point's steps got the point's own input, in their own folders.
    assert outputs(run_dir, "point(2:fine).second")["value"] == "fine-2"
    first, second = (outputs(run_dir, f"point(0:ok).{s}") for s in ("first", "second"))
    assert second["started"] >= first["ended"]


def test_a_nested_dags_failure_no_task_handled_fails_the_run(engine):
    document = with_chain(
        workflow([point_loop({"withItems": ["fail"]})], seconds="0.1"),
        [task("first", "{{inputs.parameters.x}}")],
    )
    status, reason, run, _ = engine.run(document)
    assert (status, reason) == (RunStatus.FAIL, "point(0:fail).first: ran fail")
