"""Before it creates a Workflow, the argo backend has the Argo Server lint it
(``POST /api/v1/workflows/{namespace}/lint``): Argo's own schema and semantics,
with the templates on the cluster, so an installed csflow needs no copy of
Argo's schema. Against the Argo Server double, which implements the endpoint
as Argo v4.0.5 answers it (argo_server_double.py)."""

from __future__ import annotations

import pytest
import requests

from csflow.sdk.backends.argo import ArgoBackend, ArgoError
from csflow.sdk.core.errors import CsflowError

from .conftest import TOKEN, submit

LINT = ("POST", "/api/v1/workflows/csflow/lint")
CREATE = ("POST", "/api/v1/workflows/csflow")


def lint_request(double, body: dict) -> requests.Response:
    return requests.post(
        f"{double.url}/api/v1/workflows/csflow/lint",
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )


def test_the_double_lints_as_argo_server_does(double, sim_workflow):
    linted = lint_request(double, {"namespace": "csflow", "workflow": sim_workflow})
    assert linted.status_code == 200 and linted.json() == sim_workflow
    assert sim_workflow["metadata"]["name"] not in double.workflows  # lint creates nothing
    # The envelope is a WorkflowLintRequest; anything else is refused.
    assert lint_request(double, {"workflow": sim_workflow, "dryRun": True}).status_code == 400
    # A template the Workflow refers to and the cluster lacks: the API's NotFound,
    # as a real v4.0.5 server answers (tests/cluster/test_schema_from_the_cluster.py).
    sim_workflow["spec"]["workflowTemplateRef"]["name"] = "csflow-nothing"
    refused = lint_request(double, {"namespace": "csflow", "workflow": sim_workflow})
    assert refused.status_code == 404 and refused.json()["code"] == 5
    assert "csflow-nothing" in refused.json()["message"]
    # Argo's validation errors are not Kubernetes statuses: 500, gRPC code 2 (Unknown).
    sim_workflow["spec"]["workflowTemplateRef"]["name"] = "csflow-simulate"
    sim_workflow["spec"]["entrypoint"] = "nope"
    refused = lint_request(double, {"namespace": "csflow", "workflow": sim_workflow})
    assert refused.status_code == 500 and refused.json()["code"] == 2
    assert "nope" in refused.json()["message"]


def test_templates_resolve_in_the_workflow_s_own_namespace(double, sim_workflow):
    sim_workflow["metadata"]["namespace"] = "elsewhere"
    refused = lint_request(double, {"namespace": "csflow", "workflow": sim_workflow})
    assert refused.status_code == 404 and "csflow-simulate" in refused.json()["message"]
    del sim_workflow["metadata"]["namespace"]  # the server's managed namespace
    assert lint_request(double, {"namespace": "csflow", "workflow": sim_workflow}).ok


def test_submit_has_the_server_lint_the_workflow_before_creating_it(backend, double):
    run = submit(backend)
    assert double.requests[-2:] == [LINT, CREATE] and double.rejected == []
    assert f"sim-{run.id}" in double.workflows


def test_a_workflow_the_server_s_lint_refuses_is_never_created(
    backend,
    double,
    monkeypatch,
    redis_server,
):
    original = backend.workflow

    def unresolvable(version, job_id):
        workflow = original(version, job_id)  # valid for hera's models; not for the cluster
        workflow["spec"]["workflowTemplateRef"]["name"] = "csflow-nothing"
        return workflow

    monkeypatch.setattr(backend, "workflow", unresolvable)
    with pytest.raises(
        CsflowError, match="invalid Workflow: the Argo Server's lint of Workflow/sim-"
    ):
        submit(backend)
    assert CREATE not in double.requests and LINT in double.requests
    assert redis_server.client("admin").keys("job-*") == []


def test_a_value_only_argo_refuses_is_caught_by_the_server(backend, double, monkeypatch):
    original = backend.workflow

    def sometimes(version, job_id):
        workflow = original(version, job_id)
        workflow["spec"]["podGC"]["strategy"] = "Sometimes"  # a string to hera; not to Argo
        return workflow

    monkeypatch.setattr(backend, "workflow", sometimes)
    with pytest.raises(CsflowError, match="lint of .* says: .*podGC.strategy"):
        submit(backend)
    assert CREATE not in double.requests


def test_a_value_of_the_wrong_type_is_one_line_before_any_request(backend, double, monkeypatch):
    original = backend.workflow

    def soon(version, job_id):
        workflow = original(version, job_id)
        workflow["spec"]["activeDeadlineSeconds"] = "soon"
        return workflow

    monkeypatch.setattr(backend, "workflow", soon)
    with pytest.raises(CsflowError, match="invalid Workflow: .*spec.activeDeadlineSeconds: "):
        submit(backend)
    assert not any(method == "POST" for method, _ in double.requests)


def test_an_unreachable_server_at_submit_is_one_line_and_writes_nothing(
    settings,
    redis_server,
):
    backend = ArgoBackend(settings.model_copy(update={"argo_host": "http://127.0.0.1:9"}))
    with pytest.raises(ArgoError, match="lint Workflow/sim-.*cannot reach the Argo Server"):
        submit(backend)
    assert redis_server.client("admin").keys("job-*") == []
