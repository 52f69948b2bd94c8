"""``csflow lint`` and ``csflow svc config`` take Argo's CRDs from where Argo
publishes them, never from a copy in csflow: a folder (``--crds``), a cluster's
apiextensions API (``--kubeconfig``, here a small stand-in of the API server's
one endpoint, read by the real ``kubernetes`` client), else
``$CSFLOW_ARGO_SCHEMA_DIR``. Without any of them: one line saying what to give."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from paths import ARGO_SCHEMA
from typer.testing import CliRunner

from csflow.cli.app import app
from csflow.sdk.argo import schema

runner = CliRunner()
TOKEN = "kube-token-not-a-secret"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"


@pytest.fixture
def no_schema_dir(monkeypatch):
    monkeypatch.delenv("CSFLOW_ARGO_SCHEMA_DIR", raising=False)


def write(tmp_path, docs, name="manifests.yaml") -> str:
    path = tmp_path / name
    path.write_text(schema.dump_documents(docs))
    return str(path)


def lint(*args: str):
    return runner.invoke(app, ["lint", *args])


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_lint_with_a_crd_folder_passes_csflow_s_workflow_and_catches_a_typo(
    no_schema_dir, crds, tmp_path, sim_workflow, simulate_template
):
    good = lint("--crds", str(crds), write(tmp_path, [simulate_template, sim_workflow]))
    assert good.exit_code == 0, good.output
    assert "2 document(s), no problems found" in good.output
    sim_workflow["spec"]["ttlStrategy"]["secondsAfterCompletin"] = 10
    bad = lint("--crds", str(crds), write(tmp_path, [sim_workflow]))
    assert bad.exit_code == 2
    assert "spec.ttlStrategy" in bad.stdout and "secondsAfterCompletin" in bad.stdout


def test_lint_with_no_crds_says_in_one_line_what_to_give(no_schema_dir, tmp_path, sim_workflow):
    result = lint(write(tmp_path, [sim_workflow]))
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "no Argo CRDs" in line and "--crds DIR" in line and "--kubeconfig" in line
    assert "CSFLOW_ARGO_SCHEMA_DIR" in line


def test_the_semantic_lint_needs_no_schema(no_schema_dir, tmp_path, sim_workflow):
    assert lint("--no-schema", write(tmp_path, [sim_workflow])).exit_code == 0
    sim_workflow["spec"]["workflowTemplateRef"]["name"] = "csflow-nothing"
    result = lint("--no-schema", write(tmp_path, [sim_workflow]))
    assert result.exit_code == 2 and "csflow-nothing" in result.stdout


def test_the_environment_variable_is_the_fallback(crds, tmp_path, sim_workflow, monkeypatch):
    monkeypatch.setenv("CSFLOW_ARGO_SCHEMA_DIR", str(crds))
    sim_workflow["spec"]["podGC"]["strategi"] = "x"
    result = lint(write(tmp_path, [sim_workflow]))
    assert result.exit_code == 2 and "strategi" in result.stdout


def test_a_folder_without_argo_s_crds_is_one_line(no_schema_dir, tmp_path, sim_workflow):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = lint("--crds", str(empty), write(tmp_path, [sim_workflow]))
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "no Argo CRDs in" in line and "argoproj.io_workflows.yaml" in line
    (empty / "argoproj.io_workflows.yaml").write_text("kind: ConfigMap\n")
    (empty / "argoproj.io_workflowtemplates.yaml").write_text("kind: ConfigMap\n")
    result = lint("--crds", str(empty), write(tmp_path, [sim_workflow]))
    assert (
        result.exit_code == 2
        and "argoproj.io_workflows.yaml is not Argo's workflows.argoproj.io CRD"
        in one_error_line(result)
    )


def test_argo_s_minimal_crds_are_refused_not_passed(no_schema_dir, tmp_path, sim_workflow):
    """v3's default install has CRDs whose spec is opaque: checking against them
    would pass anything, so they are refused in one line."""
    folder = tmp_path / "minimal"
    folder.mkdir()
    for plural, kind in (("workflows", "Workflow"), ("workflowtemplates", "WorkflowTemplate")):
        crd = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": schema.crd_name(plural)},
            "spec": {
                "group": "argoproj.io",
                "names": {"kind": kind, "plural": plural},
                "scope": "Namespaced",
                "versions": [
                    {
                        "name": "v1alpha1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "properties": {
                                    "spec": {
                                        "type": "object",
                                        "x-kubernetes-preserve-unknown-fields": True,
                                    }
                                },
                            }
                        },
                    }
                ],
            },
        }
        (folder / schema.crd_file(plural)).write_text(yaml.safe_dump(crd))
    sim_workflow["spec"]["podGC"]["strategi"] = "x"
    result = lint("--crds", str(folder), write(tmp_path, [sim_workflow]))
    assert result.exit_code == 2 and "minimal CRD" in one_error_line(result)


# -- the cluster's CRDs ------------------------------------------------------------


class ApiServerDouble:
    """The one endpoint ``--kubeconfig`` reads, as kube-apiserver serves it:
    ``GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}`` with a
    bearer token, a CRD as JSON or a 404 Status."""

    def __init__(self, crds: dict[str, bytes]):
        self.crds = crds
        self.requests: list[str] = []
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_):
                pass

            def do_GET(self):  # noqa: N802 (http.server's naming)
                double.requests.append(self.path)
                name = self.path.split("?")[0].removeprefix(CRD_PATH)
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self.reply(401, status(401, "Unauthorized", "Unauthorized"))
                if not self.path.startswith(CRD_PATH) or name not in double.crds:
                    message = f'customresourcedefinitions.apiextensions.k8s.io "{name}" not found'
                    return self.reply(404, status(404, "NotFound", message))
                self.reply(200, double.crds[name])

            def reply(self, code: int, body: bytes):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def status(code: int, reason: str, message: str) -> bytes:
    return json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }  # fmt: skip
    ).encode()


@pytest.fixture(scope="module")
def served_crds() -> dict[str, bytes]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    served = {}
    for plural in ("workflows", "workflowtemplates"):
        crd = yaml.load((ARGO_SCHEMA / schema.crd_file(plural)).read_bytes(), Loader=loader)
        served[schema.crd_name(plural)] = json.dumps(crd).encode()
    return served


@pytest.fixture
def apiserver(served_crds):
    double = ApiServerDouble(dict(served_crds))
    yield double
    double.close()


def kubeconfig(tmp_path, server: str, token: str = TOKEN) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "dev", "cluster": {"server": server}},
                    {"name": "gone", "cluster": {"server": "http://127.0.0.1:9"}},
                ],
                "users": [{"name": "me", "user": {"token": token}}],
                "contexts": [
                    {"name": "dev", "context": {"cluster": "dev", "user": "me"}},
                    {"name": "gone", "context": {"cluster": "gone", "user": "me"}},
                ],
                "current-context": "dev",
            }
        )
    )
    return str(path)


def test_lint_reads_the_crds_from_the_cluster_of_a_kubeconfig(
    no_schema_dir, apiserver, tmp_path, sim_workflow
):
    config = kubeconfig(tmp_path, apiserver.url)
    good = lint("--kubeconfig", config, write(tmp_path, [sim_workflow]))
    assert good.exit_code == 0, good.output
    # Read when needed: a Workflow alone needs the Workflow CRD alone.
    assert apiserver.requests == [CRD_PATH + "workflows.argoproj.io"]
    sim_workflow["spec"]["podGC"]["strategy"] = "Sometimes"
    bad = lint("--kubeconfig", config, "--context", "dev", write(tmp_path, [sim_workflow]))
    assert bad.exit_code == 2 and "spec.podGC.strategy" in bad.stdout


def test_a_cluster_without_argo_s_crds_or_out_of_reach_is_one_line(
    no_schema_dir, apiserver, tmp_path, sim_workflow
):
    file = write(tmp_path, [sim_workflow])
    apiserver.crds.clear()
    missing = lint("--kubeconfig", kubeconfig(tmp_path, apiserver.url), file)
    assert missing.exit_code == 2
    assert "has no CRD workflows.argoproj.io: install Argo's CRDs" in one_error_line(missing)
    refused = lint("--kubeconfig", kubeconfig(tmp_path, apiserver.url, token="wrong"), file)
    assert refused.exit_code == 2 and "HTTP 401" in one_error_line(refused)
    gone = lint("--kubeconfig", kubeconfig(tmp_path, apiserver.url), "--context", "gone", file)
    assert gone.exit_code == 2 and "cannot reach the cluster at http://127.0.0.1:9" in (
        one_error_line(gone)
    )
    unknown = lint("--kubeconfig", kubeconfig(tmp_path, apiserver.url), "--context", "x", file)
    assert unknown.exit_code == 2 and "cannot use kubeconfig" in one_error_line(unknown)
    both = lint("--kubeconfig", "k", "--crds", str(tmp_path), file)
    assert both.exit_code == 2 and "not both" in one_error_line(both)


# -- svc config ------------------------------------------------------------------------


def test_svc_config_without_crds_prints_everything_and_notes_what_it_did_not_check(
    no_schema_dir, crds, tmp_path
):
    result = runner.invoke(app, ["svc", "config", "-o", "-"], env={"CSFLOW_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    kinds = {d["kind"] for d in yaml.safe_load_all(result.stdout) if d}
    assert {"Namespace", "Deployment", "WorkflowTemplate"} <= kinds
    assert "Argo document(s) not schema-checked: no CRDs to check against" in result.stderr
    checked = runner.invoke(
        app, ["svc", "config", "-o", "-", "--crds", str(crds)], env={"CSFLOW_HOME": str(tmp_path)}
    )
    assert checked.exit_code == 0, checked.output
    assert "not schema-checked" not in checked.stderr
    assert checked.stdout == result.stdout
