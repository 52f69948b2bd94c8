"""Publishing on the ``argo`` backend through hera's real WorkflowsService,
against the local test double of the Argo Server (argo_server_double.py says
what it stands in for), with the model registry on Cloud Storage through the
real google-cloud-storage client and gcp-storage-emulator.

``PublishingServerDouble`` below adds the two endpoints publishing uses to
that double: ``PUT .../{name}/resume`` (the body is checked against Argo's
``WorkflowResumeRequest``, closed; like Argo's ``updateSuspendedNode`` it marks
the active suspend nodes the ``nodeFieldSelector`` matches Succeeded, and
answers 500 when none matches) and ``GET /artifact-files/{namespace}/workflows/
{name}/{nodeId}/outputs/{artifact}`` (Argo Server's artifact endpoint; here it
serves what a test stored with ``set_artifact``).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from urllib.parse import unquote, urlparse

import pytest
import yaml
from dataplane.conftest import gcs_emulator  # noqa: F401  (gcp-storage-emulator, in process)
from typer.testing import CliRunner

from csflow.cli.app import app
from csflow.flows import publish
from csflow.flows.publish import TEST_TIMEOUT_MARGIN
from csflow.sdk.backends.argo import ArgoBackend, ArgoError, pod_name
from csflow.sdk.client import Client
from csflow.sdk.core.errors import BadInput, CsflowError
from csflow.sdk.core.settings import Settings
from csflow.sdk.registry.gcs import GCSInputsCache, GCSRegistry

from .argo_server_double import ArgoServerDouble, now, request_validator
from .conftest import JOB_ID, REPO, make_simulation_workflow
from .test_argo_backend import TOKEN, nodes

OWNER, TITLE = "PSLmodels", "Tax-Cruncher"
TAG = "42ce5647434e"
GIT = {"url": "https://github.com/PSLmodels/Tax-Cruncher.git", "ref": "v0.7.0", "subdir": "."}
REPORT = {
    "model": f"{OWNER}/{TITLE}",
    "version": "taxcalc 6.8.5",
    "passed": True,
    "tests": [
        {
            "name": "get_version",
            "title": "get_version()",
            "status": "passed",
            "seconds": 0.1,
            "detail": "",
            "warnings": [],
            "output": "",
        }
    ],
    "summary": {"passed": 1, "failed": 0, "not run": 0, "total": 1},
}


class PublishingServerDouble(ArgoServerDouble):
    """The Argo Server double, plus resume and the artifact endpoint (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.artifacts: dict[tuple[str, str, str], bytes] = {}
        self.resumes: list[dict] = []  # the bodies of resume requests

    def set_artifact(self, workflow: str, node_id: str, artifact: str, data: bytes) -> None:
        self.artifacts[(workflow, node_id, artifact)] = data

    def _dispatch(self, handler, method: str) -> None:
        path = urlparse(handler.path).path
        parts = [unquote(p) for p in path.split("/") if p]
        resume = (
            method == "PUT"
            and len(parts) == 6
            and parts[:4] == ["api", "v1", "workflows", self.namespace]
            and parts[5] == "resume"
        )
        artifact = (
            method == "GET"
            and len(parts) == 7
            and parts[0] == "artifact-files"
            and parts[1:3] == [self.namespace, "workflows"]
            and parts[5] == "outputs"
        )
        if not (resume or artifact):
            return super()._dispatch(handler, method)
        self.requests.append((method, path))
        if handler.headers.get("Authorization") != f"Bearer {self.token}":
            handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
            return self._error(handler, 401, "token not valid")
        name = parts[4] if resume else parts[3]
        if name not in self.workflows:
            return self._error(handler, 404, f'workflows.argoproj.io "{name}" not found')
        if resume:
            return self._resume(handler, name)
        data = self.artifacts.get((name, parts[4], parts[6]))
        if data is None:
            return self._error(handler, 404, f"artifact {parts[6]} of node {parts[4]} not found")
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _resume(self, handler, name: str) -> None:
        body = self._body(handler)
        self.resumes.append(body)
        errors = list(
            request_validator("io.argoproj.workflow.v1alpha1.WorkflowResumeRequest").iter_errors(
                body
            )
        )
        if errors:
            return self._error(handler, 400, f"bad WorkflowResumeRequest: {errors[0].message}")
        if body.get("name") not in (None, name):
            return self._error(
                handler, 400, f"WorkflowResumeRequest names {body.get('name')}, not {name}"
            )
        wanted = dict(
            term.split("=", 1) for term in body.get("nodeFieldSelector", "").split(",") if term
        )
        with self.lock:
            matched = [
                node
                for node in (self.workflows[name].get("status") or {}).get("nodes", {}).values()
                if node.get("type") == "Suspend"
                and node.get("phase") == "Running"
                and all(node.get(field) == value for field, value in wanted.items())
            ]
            for node in matched:
                node.update(phase="Succeeded", finishedAt=now())
        if wanted and not matched:
            return self._error(
                handler,
                500,
                "currently, set only targets suspend nodes: no suspend nodes "
                f"matching nodeFieldSelector: {body['nodeFieldSelector']}",
            )
        self._send(handler, 200, self.workflows[name])


@pytest.fixture
def double(templates):
    with PublishingServerDouble(TOKEN, templates) as server:
        yield server


@pytest.fixture
def registry_url(gcs_emulator, monkeypatch) -> str:  # noqa: F811
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    return f"gs://csflow-results/registry-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings(tmp_path, double, registry_url) -> Settings:
    return Settings(
        home=tmp_path / "home",
        backend="argo",
        argo_host=double.url,
        argo_token=TOKEN,
        config_dirs=[tmp_path / "config"],
        registry="gcr.io/cs-test",
        model_registry_url=registry_url,
        argo_poll_seconds=0.02,
    )


@pytest.fixture
def backend(settings) -> ArgoBackend:
    return ArgoBackend(settings)


def write_config(tmp_path, source: dict | None = None) -> str:
    path = tmp_path / "config" / OWNER / f"{TITLE}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(publish_config_text())
    config["source"] = source or {"git": GIT}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def publish_config_text() -> str:
    return (REPO / "config" / OWNER / f"{TITLE}.yaml").read_text()


def publish_nodes(workflow: str, phases: dict[str, str]) -> dict:
    """Argo's node status for the publish DAG: pods, a suspend node for
    ``approve``, the content tag on ``clone``, and the artifacts each step saved."""
    built = nodes(workflow, {step: phase for step, phase in phases.items()})
    for node in built.values():
        step = node.get("displayName")
        if step == "approve":
            node.update(type="Suspend")
        if step == "clone" and node["phase"] == "Succeeded":
            node["outputs"] = {
                "parameters": [
                    {"name": "content-tag", "value": TAG},
                    {"name": "built", "value": "false"},
                ]
            }
        if step == "verify" and node["phase"] in ("Succeeded", "Failed"):
            node["outputs"] = {
                "artifacts": [{"name": "test-report", "path": "/tmp/csflow/test-report.json"}]
            }
        if step == "test" and node["phase"] in ("Succeeded", "Failed"):
            node["outputs"] = {
                "artifacts": [{"name": "test-results", "path": "/tmp/csflow/test-results.json"}]
            }
    return built


WAITING = {
    "clone": "Succeeded",
    "build": "Succeeded",
    "test": "Succeeded",
    "verify": "Succeeded",
    "push": "Succeeded",
    "approve": "Running",
}


def parameters(workflow: dict) -> dict[str, str]:
    return {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}


# -- submitting ------------------------------------------------------------------------


def test_publish_creates_a_valid_workflow_with_the_configs_parameters(backend, double, tmp_path):
    config_path = write_config(tmp_path)
    run = backend.submit_publish(config_path, require_approval=True)
    name = f"publish-{run.id}"
    assert double.requests[-1] == ("POST", "/api/v1/workflows/csflow") and double.rejected == []
    assert run.kind == "publish" and run.status == "PENDING" and run.model == f"{OWNER}/{TITLE}"
    stored = double.workflows[name]
    assert stored["spec"]["workflowTemplateRef"] == {"name": publish.NAME}
    assert stored["metadata"]["labels"]["csflow.io/flow"] == "publish"
    params = parameters(stored)
    assert set(params) == set(publish.PARAMETERS)
    config = json.loads(params["config"])
    assert config["source"] == {"git": GIT, "path": None} and config["owner"] == OWNER
    assert "config_path" not in config  # nothing of this machine's folders
    assert params["config-dir"] == ""
    assert params["registry"] == "gcr.io/cs-test" and params["require-approval"] == "true"
    assert (params["cpu"], params["memory-request"], params["memory-limit"]) == (
        "1",
        "1908Mi",
        "2290Mi",
    )
    assert params["test-timeout"] == str(600 + TEST_TIMEOUT_MARGIN)
    assert params["model-secret"] == "pslmodels-tax-cruncher-secrets"
    assert run.extra["link"] == f"{double.url}/workflows/csflow/{name}?tab=workflow"
    # Without --require-approval the flow skips the suspend step.
    assert (
        parameters(double.workflows[f"publish-{backend.submit_publish(config_path).id}"])[
            "require-approval"
        ]
        == "false"
    )


def test_a_local_source_path_is_one_bad_input_line_and_nothing_is_sent(backend, double, tmp_path):
    config_path = write_config(tmp_path, source={"path": "../../examples/tax-cruncher"})
    with pytest.raises(
        BadInput, match="source.path is a folder on this machine, which a cluster cannot read"
    ):
        backend.submit_publish(config_path)
    assert not any(method == "POST" for method, _ in double.requests)


def test_a_publish_workflow_that_breaks_the_schema_is_never_sent(
    backend, double, tmp_path, monkeypatch
):
    original = backend.publish_workflow

    def broken(*args, **kwargs):
        workflow = original(*args, **kwargs)
        workflow["spec"]["podGC"]["strategi"] = "OnPodCompletion"  # hera's models would drop it
        return workflow

    monkeypatch.setattr(backend, "publish_workflow", broken)
    with pytest.raises(CsflowError, match="invalid Workflow: .*strategi"):
        backend.submit_publish(write_config(tmp_path))
    assert not any(method == "POST" for method, _ in double.requests)


def test_argo_lint_passes_the_publish_workflow(argo_cli, backend, templates, tmp_path):
    from .test_argo_cli import argo_lint

    workflow = backend.publish_workflow(write_config(tmp_path), require_approval=True)
    done = argo_lint(argo_cli, [*templates, workflow], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


# -- following and approving -------------------------------------------------------------


def test_a_waiting_publish_is_suspended_and_approve_resumes_only_that_step(
    backend, double, tmp_path
):
    run = backend.submit_publish(write_config(tmp_path), require_approval=True)
    name = f"publish-{run.id}"
    double.set_status(name, "Running", publish_nodes(name, WAITING))
    waiting = backend.status(run.id)
    assert (
        waiting.status == "SUSPENDED" and waiting.reason == "waiting for approval at step approve"
    )
    assert waiting.tag == TAG and waiting.steps["approve"]["phase"] == "Suspended"

    approved = backend.approve(run.id)
    assert double.resumes == [
        {"name": name, "namespace": "csflow", "nodeFieldSelector": "displayName=approve"}
    ]
    assert (
        "PUT",
        f"/api/v1/workflows/csflow/{name}/resume",
    ) in double.requests and double.rejected == []
    assert approved.status == "RUNNING" and approved.steps["approve"]["phase"] == "Succeeded"
    with pytest.raises(BadInput, match=f"publish {run.id} is RUNNING, not waiting for approval"):
        backend.approve(run.id)
    assert len(double.resumes) == 1


def test_approving_what_is_not_a_waiting_publish_is_bad_input(backend, double, tmp_path):
    simulation = make_simulation_workflow()
    double.workflows[simulation["metadata"]["name"]] = {
        **simulation,
        "status": {"phase": "Running"},
    }
    with pytest.raises(BadInput, match="is a simulate run, not a publish"):
        backend.approve(JOB_ID)
    run = backend.submit_publish(write_config(tmp_path))
    with pytest.raises(BadInput, match="is PENDING, not waiting for approval"):
        backend.approve(run.id)
    assert double.resumes == []


def test_an_approval_that_lost_a_race_is_one_line(backend, double, tmp_path, monkeypatch):
    """Approved elsewhere between csflow's check and its resume: Argo's answer, in one line."""
    run = backend.submit_publish(write_config(tmp_path), require_approval=True)
    name = f"publish-{run.id}"
    double.set_status(name, "Running", publish_nodes(name, WAITING))
    original = backend.get_workflow

    def approved_meanwhile(job_id):
        workflow = original(job_id)
        double.workflows[name]["status"]["nodes"] = publish_nodes(
            name, {**WAITING, "approve": "Succeeded"}
        )
        return workflow

    monkeypatch.setattr(backend, "get_workflow", approved_meanwhile)
    with pytest.raises(
        ArgoError, match="no suspend nodes matching nodeFieldSelector: displayName=approve"
    ):
        backend.approve(run.id)


@pytest.mark.timeout(60)  # a publish that never returns at its approval would poll forever
def test_client_publish_returns_at_the_approval_and_approve_runs_to_the_end(
    settings, double, tmp_path
):
    def cluster():  # the controller, as the test sees it: the publish runs to its approval step
        deadline = time.monotonic() + 10
        while not double.workflows and time.monotonic() < deadline:
            time.sleep(0.01)
        name = next(iter(double.workflows))
        double.set_status(name, "Running", publish_nodes(name, {"clone": "Running"}))
        time.sleep(0.1)
        double.set_status(name, "Running", publish_nodes(name, WAITING))

    threading.Thread(target=cluster, daemon=True).start()
    client = Client(settings)
    seen = []
    run = client.publish(
        write_config(tmp_path),
        require_approval=True,
        events=lambda step, phase, info: seen.append((step, phase)),
    )
    assert run.status == "SUSPENDED" and run.tag == TAG
    assert ("clone", "Running") in seen and ("approve", "Suspended") in seen

    name = f"publish-{run.id}"
    done = publish_nodes(name, {**WAITING, "approve": "Succeeded", "deploy": "Succeeded"})
    finish = threading.Timer(0.1, double.set_status, (name, "Succeeded", done))
    finish.start()
    try:
        finished = client.approve(run.id)
    finally:
        finish.cancel()
    assert finished.status == "SUCCESS" and finished.kind == "publish"
    assert finished.steps["deploy"]["phase"] == "Succeeded" and finished.results_uri == ""


def test_the_report_comes_from_the_verify_steps_artifact(backend, double, tmp_path):
    run = backend.submit_publish(write_config(tmp_path))
    name = f"publish-{run.id}"
    double.set_status(name, "Running", publish_nodes(name, {"clone": "Running"}))
    assert backend.publish_report(run.id) is None  # the tests never ran

    failed = publish_nodes(
        name, {"clone": "Succeeded", "build": "Succeeded", "test": "Succeeded", "verify": "Failed"}
    )
    ids = {node["displayName"]: node["id"] for node in failed.values()}
    verify_outputs = failed[ids["verify"]].pop("outputs")
    double.set_status(name, "Failed", failed, message="child failed")
    double.set_artifact(
        name, ids["test"], "test-results", json.dumps({"tests": [], "version": "v"}).encode()
    )
    # verify saved nothing: the model side's results
    assert backend.publish_report(run.id) == {"tests": [], "version": "v"}

    failed[ids["verify"]]["outputs"] = verify_outputs
    double.set_status(name, "Failed", failed)
    with pytest.raises(ArgoError, match="artifact test-report of run .* answered 404"):
        backend.publish_report(run.id)  # listed, but the server cannot serve it: said, not hidden
    report = {**REPORT, "passed": False}
    double.set_artifact(name, ids["verify"], "test-report", json.dumps(report).encode())
    assert backend.publish_report(run.id) == report
    assert (
        "GET",
        f"/artifact-files/csflow/workflows/{name}/{ids['verify']}/outputs/test-report",
    ) in double.requests
    result = backend.status(run.id)
    assert result.status == "FAIL" and result.reason.startswith("verify")


def test_logs_cancel_and_list_find_publishes_too(backend, double, tmp_path):
    run = backend.submit_publish(write_config(tmp_path))
    name = f"publish-{run.id}"
    workflow_nodes = publish_nodes(
        name, {"clone": "Succeeded", "build": "Succeeded", "test": "Succeeded", "verify": "Running"}
    )
    double.set_status(name, "Running", workflow_nodes)
    verify = next(n for n in workflow_nodes.values() if n.get("displayName") == "verify")
    double.add_logs(name, pod_name(double.workflows[name], verify), ["PASSED  get_version()"])
    fresh = ArgoBackend(backend.settings)  # knows nothing of the run: finds publish-<id> by itself
    assert fresh.logs(run.id, step="verify") == "PASSED  get_version()\n"
    assert [r.id for r in fresh.list()] == [run.id] and fresh.list()[0].kind == "publish"
    assert fresh.cancel(run.id).status == "CANCELLED"
    assert ("PUT", f"/api/v1/workflows/csflow/{name}/stop") in double.requests
    # Asked once (sim-<id> first, sweep-<id>, then publish-<id>), then remembered.
    assert double.rejected == [
        f'workflows.argoproj.io "{prefix}-{run.id}" not found' for prefix in ("sim", "sweep")
    ]


# -- the shared registry ----------------------------------------------------------------


def test_the_argo_backend_reads_and_moves_tags_in_the_shared_registry(
    backend, settings, double, monkeypatch
):
    """What the push and deploy pods wrote (gs://) is what the client reads: the
    version simulations run, csflow models, promote and rollback."""
    registry = GCSRegistry(settings.model_registry_url, settings.home)
    for tag in ("aaaaaaaaaaaa", TAG):
        registry.record_version(
            {
                "owner": OWNER,
                "title": TITLE,
                "tag": tag,
                "config": {"functions": "x"},
                "image": f"gcr.io/cs-test/pslmodels_tax-cruncher:{tag}",
            }
        )
        registry.move_tag(OWNER, TITLE, "latest", tag, action="deploy")
    assert backend.resolve(OWNER, TITLE, None).tag == TAG
    client = Client(settings)
    assert client.models() == [
        {
            "model": f"{OWNER}/{TITLE}",
            "latest": TAG,
            "staging": None,
            "versions": 2,
            "updated": client.models()[0]["updated"],
        }
    ]
    assert client.model(f"{OWNER}/{TITLE}")["tags"] == {"latest": TAG}
    assert client.rollback(f"{OWNER}/{TITLE}")["to"] == "aaaaaaaaaaaa"
    assert client.promote(f"{OWNER}/{TITLE}", TAG, to="staging")["to"] == TAG
    assert GCSRegistry(settings.model_registry_url, settings.home).document(OWNER, TITLE)[
        "tags"
    ] == {"latest": "aaaaaaaaaaaa", "staging": TAG}
    assert GCSInputsCache(settings.model_registry_url).get(OWNER, TITLE, TAG) is None


# -- the CLI --------------------------------------------------------------------------------


def cli_env(settings) -> dict[str, str]:
    return {
        "CSFLOW_HOME": str(settings.home),
        "CSFLOW_ARGO_HOST": settings.argo_host,
        "CSFLOW_ARGO_TOKEN": TOKEN,
        "CSFLOW_REGISTRY": settings.registry,
        "CSFLOW_MODEL_REGISTRY_URL": settings.model_registry_url,
        "CSFLOW_ARGO_POLL_SECONDS": "0.02",
    }


def test_csflow_publish_backend_argo(settings, double, tmp_path):
    runner = CliRunner()
    env = cli_env(settings)
    local = write_config(tmp_path, source={"path": "../../examples/tax-cruncher"})
    refused = runner.invoke(app, ["publish", local, "--backend", "argo"], env=env)
    assert refused.exit_code == 2, refused.output
    assert "cluster cannot read" in refused.output and "Traceback" not in refused.output

    detached = runner.invoke(
        app,
        ["publish", write_config(tmp_path), "--backend", "argo", "--require-approval", "--detach"],
        env=env,
    )
    assert detached.exit_code == 0, detached.output
    run_id = detached.output.strip().splitlines()[-1]
    name = f"publish-{run_id}"
    assert name in double.workflows
    double.set_status(name, "Running", publish_nodes(name, WAITING))
    ids = {n["displayName"]: n["id"] for n in double.workflows[name]["status"]["nodes"].values()}
    double.set_artifact(name, ids["verify"], "test-report", json.dumps(REPORT).encode())
    approved = runner.invoke(
        app, ["publish", "approve", run_id, "--backend", "argo", "-o", "json", "--detach"], env=env
    )
    assert approved.exit_code == 0, approved.output
    assert json.loads(approved.output)["status"] == "RUNNING"
    assert double.resumes[-1]["nodeFieldSelector"] == "displayName=approve"
