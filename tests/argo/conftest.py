"""Fixtures for the Argo tests: csflow's compiled templates, a simulation
Workflow, every manifest of ``csflow svc config``, the ``argo`` backend against
the Argo Server double with the job store on the real redis-server (``double``,
``settings``, ``backend``; a module may define its own), and the real ``argo``
CLI when one is available."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from csflow.flows import simulate
from csflow.sdk.backends.argo import ArgoBackend
from csflow.sdk.client import parse_inputs
from csflow.sdk.core.settings import Settings
from csflow.sdk.ops import manifests, redis_acl

from .argo_server_double import ArgoServerDouble

REPO = Path(__file__).resolve().parents[2]
JOB_ID = "0b4c1f0e-1d7b-4b7c-9d41-7f5cbb1f7c6e"
RESOURCES = {
    "requests": {"cpu": "1", "memory": "2048Mi"},
    "limits": {"cpu": "1", "memory": "2458Mi"},
}


def make_simulation_workflow(**overrides) -> dict:
    arguments = dict(
        owner="PSLmodels",
        title="Tax-Cruncher",
        tag="42ce5647434e",
        image="gcr.io/csflow/pslmodels_tax-cruncher:42ce5647434e",
        job_id=JOB_ID,
        resources=RESOURCES,
        timeout=600,
        model_secret="pslmodels-tax-cruncher-secrets",
    )
    arguments.update(overrides)
    return simulate.simulation_workflow(**arguments).to_dict()


@pytest.fixture(scope="session")
def templates() -> list[dict]:
    """Every flow's WorkflowTemplate that exists (a flow module not written yet is skipped)."""
    built, _missing = manifests.flow_templates()
    return built


@pytest.fixture(scope="session")
def simulate_template(templates) -> dict:
    return next(t for t in templates if t["metadata"]["name"] == simulate.NAME)


@pytest.fixture
def sim_workflow() -> dict:
    return make_simulation_workflow()


@pytest.fixture(scope="session")
def _service_docs() -> list[dict]:
    docs, _missing = manifests.service_manifests()
    return docs


@pytest.fixture
def service_docs(_service_docs) -> list[dict]:
    return copy.deepcopy(_service_docs)


def find(docs: list[dict], kind: str, name: str) -> dict:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(
        f"no {kind}/{name} among {[(d['kind'], d['metadata']['name']) for d in docs]}"
    )


@pytest.fixture(scope="session")
def argo_cli() -> str:
    """The real argo v4.0.5 CLI: $CSFLOW_ARGO_CLI, or built by cluster/tools/build-argo
    when CSFLOW_BUILD_ARGO=1 (slow the first time; cached after)."""
    path = os.environ.get("CSFLOW_ARGO_CLI")
    if not path and os.environ.get("CSFLOW_BUILD_ARGO") == "1":
        script = REPO / "cluster" / "tools" / "build-argo"
        if script.is_file():
            done = subprocess.run(
                ["bash", str(script)], capture_output=True, text=True, timeout=1800
            )
            if done.returncode == 0:
                path = done.stdout.strip().splitlines()[-1]
            else:
                pytest.skip(
                    f"cluster/tools/build-argo failed: {done.stderr.strip().splitlines()[-1:]}"
                )
    if not path:
        pytest.skip("no argo CLI: set CSFLOW_ARGO_CLI=/path/to/argo or CSFLOW_BUILD_ARGO=1")
    if not (Path(path).is_file() or shutil.which(path)):
        pytest.fail(f"CSFLOW_ARGO_CLI={path} does not exist")
    return path


TOKEN = "test-token-not-a-secret"
INPUTS = {"meta_param_dict": {"year": 2024}, "adjustment": {"Policy": {"STD": [{"value": 1}]}}}


@pytest.fixture
def double(templates):
    """The Argo Server double (argo_server_double.py), with csflow's templates."""
    with ArgoServerDouble(TOKEN, templates) as server:
        yield server


@pytest.fixture
def settings(tmp_path, double, redis_server, monkeypatch):
    """The argo backend's settings: the double, and the job store on the real
    redis-server as the scheduler user."""
    redis_server.client("admin").flushall()
    monkeypatch.setenv("CSFLOW_REDIS_USER", redis_acl.SCHEDULER)
    monkeypatch.setenv("CSFLOW_REDIS_PASSWORD", redis_server.passwords[redis_acl.SCHEDULER])
    return Settings(
        home=tmp_path / "home",
        backend="argo",
        argo_host=double.url,
        argo_token=TOKEN,
        job_store_url=redis_server.url,
        config_dirs=[REPO / "config"],
        storage_url=(tmp_path / "results").as_uri(),
        registry="gcr.io/cs-test",
    )


@pytest.fixture
def backend(settings) -> ArgoBackend:
    return ArgoBackend(settings)


def submit(backend: ArgoBackend, tag: str | None = "42ce5647434e"):
    return backend.submit("PSLmodels/Tax-Cruncher", parse_inputs(INPUTS), tag=tag)
