"""Sweeps on real pods: one Workflow (csflow-sweep) fans its points out with Argo's
own withParam, each point the simulate flow's four steps, then a fan-in combines
them. Argo decides the sweep's phase by its DAG rule (the fan-in, the target
task, handled a point's failure), as the embedded engine does; the admission policy
admits csflow's sweeps and refuses forged ones."""

from __future__ import annotations

import json
import uuid

import pytest

from csflow.sdk.core.status import RunStatus
from csflow.sdk.core.tables import read_csv

from .conftest import REPO, TOY_INPUTS
from .test_attacks import POLICY, create, refusal

pytestmark = pytest.mark.cluster

TAX_INPUTS = json.loads((REPO / "examples" / "tax-cruncher" / "inputs.json").read_text())


def _sweep(client, workflows, model: str, inputs: dict, axis: str, timeout: float = 900):
    run = client.sweep(model, inputs, axis, detach=True)
    workflows.append(run.extra["workflow"])
    assert run.extra["workflow"] == f"sweep-{run.id}"
    return client.wait(run.id, timeout=timeout)


@pytest.mark.timeout(1500)
def test_a_tax_cruncher_sweep_gives_income_tax_by_year_on_pods(pods_client, workflows, webapp):
    run = _sweep(pods_client, workflows, "PSLmodels/Tax-Cruncher", TAX_INPUTS, "year=2024..2028")
    assert run.status == RunStatus.SUCCESS, f"{run.reason} {run.steps}"
    points = pods_client.sweep_points(run)
    assert [(p.label, p.state) for p in points] == [(str(y), "done") for y in range(2024, 2029)]
    # Each point ran the four steps as pods of its own, named by its path.
    for index, point in enumerate(points):
        node = f"point({index}:{point.job_id})"
        assert {f"{node}.{s}" for s in ("inputs", "run", "outputs", "upload")} <= set(run.steps)
    basic = next(
        o for o in pods_client.results(run.id)["downloadable"] if o["title"] == "Basic Liabilities"
    )
    income_tax = [row for row in read_csv(basic["data"]).rows if row[1] == "Individual Income Tax"]
    assert [row[0] for row in income_tax] == [str(year) for year in range(2024, 2029)]
    assert income_tax[0][2:] == ["8032.00", "6736.00", "-1296.00"]
    # The webapp knows only its own jobs: no point, and not the sweep, was reported.
    for job in [run.id, *(p.job_id for p in points)]:
        assert webapp.for_job(job) == []


@pytest.mark.timeout(900)
def test_a_crashing_point_does_not_fail_the_sweep_on_argo_either(pods_client, workflows):
    """The engine's DAG rule checked against Argo's: the point that crashed is failed,
    the fan-in ran after AnySucceeded, so the workflow succeeded."""
    run = _sweep(pods_client, workflows, "tests/ToyOk", TOY_INPUTS, "Knobs.x=1,13", timeout=600)
    assert run.extra["phase"] == "Succeeded", run.steps
    assert run.status == RunStatus.SUCCESS, run.reason
    states = {p.label: (p.state, p.reason) for p in pods_client.sweep_points(run)}
    assert states["1"] == ("done", "")
    # (Argo's node message is the container's exit; the model's words are in its log.)
    assert states["13"][0] == "failed" and states["13"][1].startswith("run: "), states
    # One point has results: its one value column is the combined table's column.
    doubles = read_csv(pods_client.results(run.id)["downloadable"][0]["data"])
    assert (doubles.header, doubles.rows) == (["x", "1"], [["1.0", "2.0"]])


def test_the_submitter_may_create_csflows_sweeps_and_no_forged_one(cluster, submitter, pods_client):
    from csflow.sdk.core.sweep import parse_axis

    backend = pods_client.backend
    version = backend.resolve("PSLmodels", "Tax-Cruncher", None)
    points = [{"job_id": str(uuid.uuid4()), "label": str(year)} for year in (2024, 2025)]
    axis = parse_axis("year=2024..2025", 50)

    def sweep_workflow() -> dict:
        return backend.sweep_workflow(version, str(uuid.uuid4()), axis, points)

    admitted = create(submitter, cluster.namespace, sweep_workflow())
    assert admitted["metadata"]["name"].startswith("sweep-")
    forged = {
        "points": ('["../../other-job"]', "values csflow does not write: points"),
        "labels": ('["{{workflow.name}}", "x"]', "values csflow does not write: labels"),
        "axis": ("year; rm -rf /", "values csflow does not write: axis"),
    }
    for name, (value, reason) in forged.items():
        workflow = sweep_workflow()
        for parameter in workflow["spec"]["arguments"]["parameters"]:
            if parameter["name"] == name:
                parameter["value"] = value
        status, message = refusal(lambda w=workflow: create(submitter, cluster.namespace, w))
        assert status in (403, 422) and POLICY in message and reason in message, message
    renamed = sweep_workflow()
    renamed["metadata"]["name"] = "sim-" + renamed["metadata"]["name"].removeprefix("sweep-")
    status, message = refusal(lambda: create(submitter, cluster.namespace, renamed))
    assert POLICY in message and "sweep-JOB_ID" in message, message
