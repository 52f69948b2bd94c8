"""Argo's schema from its source of truth, on a real cluster: ``csflow lint
--kubeconfig`` reads the CRDs the API server serves, and the argo backend's
pre-submit lint is the real Argo Server's ``POST /api/v1/workflows/{ns}/lint``
(the offline tests run both against stand-ins)."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from csflow.cli.app import app
from csflow.sdk.argo import schema
from csflow.sdk.backends.argo import ArgoBackend
from csflow.sdk.core.errors import CsflowError
from csflow.sdk.core.settings import Settings
from csflow.sdk.ops import manifests

from .conftest import simulation_workflow

pytestmark = pytest.mark.cluster


def test_lint_checks_against_the_crds_the_cluster_serves(cluster, tmp_path, monkeypatch):
    monkeypatch.delenv("CSFLOW_ARGO_SCHEMA_DIR", raising=False)
    docs, _ = manifests.service_manifests()
    path = tmp_path / "all.yaml"
    path.write_text(schema.dump_documents([*docs, simulation_workflow()]))
    # The kubeconfig the cluster fixture uses: $KUBECONFIG, else the client's default.
    kubeconfig = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    result = CliRunner().invoke(app, ["lint", "--kubeconfig", kubeconfig, str(path)])
    assert result.exit_code == 0, result.output


def test_the_argo_server_lints_before_a_submit(cluster, argo_token, tmp_path):
    backend = ArgoBackend(
        Settings(
            home=tmp_path / "home",
            backend="argo",
            argo_host=cluster.argo_host,
            argo_token=argo_token,
            argo_namespace=cluster.namespace,
            argo_verify_ssl=cluster.verify_ssl,
        )
    )
    workflow = simulation_workflow()
    backend.create_request(workflow)  # the real server's lint accepts it
    workflow["spec"]["workflowTemplateRef"]["name"] = "csflow-nothing"
    with pytest.raises(CsflowError, match="the Argo Server's lint of .* says: .*csflow-nothing"):
        backend.create_request(workflow)
