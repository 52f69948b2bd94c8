"""Against a real Argo Server (v4.0.5), when CSFLOW_ARGO_HOST points at one
(with CSFLOW_ARGO_TOKEN, CSFLOW_ARGO_NAMESPACE); skipped otherwise. Apply
`csflow svc config -o - | kubectl apply -f -` first. Simulations and publishes
end to end, on real pods: tests/cluster."""

from __future__ import annotations

import os

import pytest

from csflow.sdk.backends.argo import ArgoBackend
from csflow.sdk.core.settings import Settings

from .conftest import REPO

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        not os.environ.get("CSFLOW_ARGO_HOST"), reason="CSFLOW_ARGO_HOST is not set"
    ),
]


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path, backend="argo", config_dirs=[REPO / "config"])


def test_the_server_lints_every_template(settings, templates):
    from hera.workflows.models import WorkflowTemplate, WorkflowTemplateLintRequest

    backend = ArgoBackend(settings)
    for template in templates:
        request = WorkflowTemplateLintRequest(template=WorkflowTemplate.model_validate(template))
        backend._call(
            f"lint {template['metadata']['name']}",
            lambda request=request: backend.service.lint_workflow_template(request),
        )


def test_the_templates_are_installed(settings, templates):
    backend = ArgoBackend(settings)
    for template in templates:
        name = template["metadata"]["name"]
        backend._call(
            f"template {name}", lambda name=name: backend.service.get_workflow_template(name)
        )
