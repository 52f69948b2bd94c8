"""Against a real Argo Server (v4.0.5), when CSFLOW_ARGO_HOST points at one
(with CSFLOW_ARGO_TOKEN, CSFLOW_ARGO_NAMESPACE, and, for the end-to-end run,
CSFLOW_JOB_STORE_URL + CSFLOW_REDIS_USER/PASSWORD and CSFLOW_STORAGE_URL);
skipped otherwise. Apply `csflow svc config -o - | kubectl apply -f -` first."""

from __future__ import annotations

import os

import pytest

from csflow.sdk.backends.argo import ArgoBackend
from csflow.sdk.client import Client
from csflow.sdk.settings import Settings

from .conftest import REPO

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not os.environ.get("CSFLOW_ARGO_HOST"), reason="CSFLOW_ARGO_HOST is not set"),
]


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path, backend="argo", config_dirs=[REPO / "config"])


def test_the_server_lints_every_template(settings, templates):
    from hera.workflows.models import WorkflowTemplate, WorkflowTemplateLintRequest

    backend = ArgoBackend(settings)
    for template in templates:
        request = WorkflowTemplateLintRequest(template=WorkflowTemplate.model_validate(template))
        backend._call(f"lint {template['metadata']['name']}",
                      lambda: backend.service.lint_workflow_template(request))


def test_the_templates_are_installed(settings, templates):
    backend = ArgoBackend(settings)
    for template in templates:
        name = template["metadata"]["name"]
        backend._call(f"template {name}", lambda: backend.service.get_workflow_template(name))


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("CSFLOW_JOB_STORE_URL"), reason="CSFLOW_JOB_STORE_URL is not set")
def test_a_simulation_runs_end_to_end(settings, tax_inputs):
    client = Client(settings)
    run = client.submit("PSLmodels/Tax-Cruncher", tax_inputs, tag=os.environ.get("CSFLOW_TEST_TAG"))
    finished = client.wait(run.id, timeout=1800)
    assert finished.status == "SUCCESS", f"{finished.status}: {finished.reason}"
    assert set(finished.steps) >= {"inputs", "run", "outputs", "upload", "notify"}
    assert "8,032.00" in str(client.results(run.id))
    assert "==> run <==" in client.logs(run.id)
