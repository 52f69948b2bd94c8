"""The simulate flow on real pods: csflow's images on a node, through a real Argo.

These need a cluster whose node runs csflow's images and reaches the job store
and storage: ``cluster/dev/up`` makes one here (images built from Debian and the
repo's Dockerfiles, Redis as csflow's own Deployment, results in a GCS
emulator). They read, from the environment ``up`` writes:

- ``CSFLOW_JOB_STORE_URL`` and ``CSFLOW_REDIS_USER``/``CSFLOW_REDIS_PASSWORD``
  (the scheduler user; the password is read from the Secret csflow-platform
  when not set);
- ``CSFLOW_STORAGE_URL`` (and ``STORAGE_EMULATOR_HOST`` for an emulator);
- ``CSFLOW_DEV_WEBAPP_LISTEN``: where the cluster's ``CSFLOW_WEBAPP_URL`` points;
  a recorder listens there and stands in for the C/S webapp's callback API.

Skipped when the cluster has no Ready node or these are not set. The exit
handler must report every end: success (upload reports it), a model crash, a
deadline, a deleted pod; Argo's podGC and TTL must clean up after them.
"""

from __future__ import annotations

import json

import pytest

from csflow.sdk.core.status import RunStatus

from .conftest import REPO, TOY_INPUTS, eventually, settled, submit

pytestmark = pytest.mark.cluster

TAX_INPUTS = json.loads((REPO / "examples" / "tax-cruncher" / "inputs.json").read_text())


@pytest.mark.timeout(1200)
def test_tax_cruncher_runs_on_real_pods_and_gives_8032(pods_client, cluster, workflows, webapp):
    run = settled(
        pods_client, submit(pods_client, workflows, "PSLmodels/Tax-Cruncher", TAX_INPUTS).id
    )
    failed = {s: i["message"] for s, i in run.steps.items() if i["phase"] in ("Failed", "Error")}
    assert not failed, f"steps failed: {failed}"
    assert run.status == RunStatus.SUCCESS, f"{run.status}: {run.reason} {run.steps}"
    assert {"inputs", "run", "outputs", "upload", "notify"} <= set(run.steps), sorted(run.steps)
    # The married couple with wages of 100,000 in 2024 (the anchor of tests/test_tax_cruncher.py).
    assert "8,032" in json.dumps(pods_client.results(run.id))
    reports = webapp.for_job(run.id)
    assert [r["status"] for r in reports] == [RunStatus.SUCCESS], reports
    # podGC (OnPodCompletion): no pod of the finished run is left.
    eventually(
        lambda: not cluster.pods(run.extra["workflow"]), timeout=60, what="podGC removes the pods"
    )


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    "model, step, words",
    [
        ("tests/ToyCrash", "run", ("run",)),  # run_model raises ZeroDivisionError
        (
            "tests/ToyHang",
            "run",
            ("deadline", "run"),
        ),  # timeout: 3 s, the step's activeDeadlineSeconds
    ],
)
def test_a_failed_run_is_reported_by_the_exit_handler(
    pods_client, workflows, webapp, model, step, words
):
    run = settled(pods_client, submit(pods_client, workflows, model, TOY_INPUTS).id, timeout=600)
    assert run.steps[step]["phase"] in ("Failed", "Error"), run.steps
    reports = eventually(
        lambda: webapp.for_job(run.id),
        timeout=120,
        every=2,
        what="the exit handler tells the webapp",
    )
    assert [r["status"] for r in reports] == [RunStatus.FAIL]
    assert any(word in (reports[0].get("traceback") or "").lower() for word in words), reports[0]
    assert pods_client.wait(run.id, timeout=300).status == RunStatus.FAIL


@pytest.mark.timeout(900)
def test_a_deleted_pod_is_reported_by_the_exit_handler(pods_client, cluster, workflows, webapp):
    run = submit(pods_client, workflows, "tests/ToySlow", TOY_INPUTS)
    name = run.extra["workflow"]

    def running_run_pod():
        # Argo must see the step running too: a pod deleted while its node is still
        # Pending is simply created again.
        if pods_client.status(run.id).steps.get("run", {}).get("phase") != "Running":
            return None
        return next(
            (
                p
                for p in cluster.pods(name)
                if "-run-" in p.metadata.name and p.status.phase == "Running"
            ),
            None,
        )

    pod = eventually(running_run_pod, timeout=300, every=1, what="the run step's pod runs")
    cluster.core.delete_namespaced_pod(pod.metadata.name, cluster.namespace, grace_period_seconds=0)
    settled(pods_client, run.id, timeout=300)
    reports = eventually(
        lambda: webapp.for_job(run.id),
        timeout=120,
        every=2,
        what="the exit handler tells the webapp",
    )
    assert [r["status"] for r in reports] == [RunStatus.FAIL]
    assert pods_client.wait(run.id, timeout=300).status == RunStatus.FAIL


@pytest.mark.timeout(900)
def test_ttl_deletes_a_finished_run_and_its_pods(pods_client, cluster, workflows):
    run = pods_client.submit("tests/ToyOk", TOY_INPUTS)
    name = run.extra["workflow"]
    workflows.append(name)
    # csflow keeps successes an hour; shorten this run's TTL to see the controller act on it.
    cluster.custom.patch_namespaced_custom_object(
        "argoproj.io",
        "v1alpha1",
        cluster.namespace,
        "workflows",
        name,
        {"spec": {"ttlStrategy": {"secondsAfterSuccess": 5, "secondsAfterFailure": 5}}},
        _content_type="application/merge-patch+json",
    )
    eventually(
        lambda: cluster.workflow(name) is None, timeout=600, every=2, what="TTL deletes the run"
    )
    assert not cluster.pods(name)
