"""``csflow runs`` finds a run wherever it ran: a run on the Argo Server (the double,
argo_server_double.py) without ``CSFLOW_BACKEND=argo``, a run of the embedded engine
(real, with the toy models) with it; ``--backend`` looks on one only. And a server
whose certificate is not checked is one warning line per process, not urllib3's
warning per request."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from paths import TOY_CONFIGS
from typer.testing import CliRunner
from urllib3.exceptions import InsecureRequestWarning

from csflow.cli.app import app
from csflow.sdk.backends.argo import UNVERIFIED_TLS_WARNING, ArgoBackend, pod_name

from .argo_server_double import ArgoServerDouble
from .conftest import TOKEN, submit
from .test_argo_backend import nodes, retried_nodes

UNKNOWN = "00000000-0000-4000-8000-000000000000"
TOY_INPUTS = {
    "meta_param_dict": {"year": [{"value": 2024}]},
    "adjustment": {"Knobs": {"x": [{"value": 3}]}},
}


@pytest.fixture
def cli(settings, double, monkeypatch):
    """The csflow command as an operator runs it: the home the argo backend's settings
    use, the Argo Server (the double) and its token in the environment, and no
    CSFLOW_BACKEND unless a test sets one."""
    monkeypatch.setenv("CSFLOW_HOME", str(settings.home))
    monkeypatch.setenv("CSFLOW_ARGO_HOST", double.url)
    monkeypatch.setenv("CSFLOW_ARGO_TOKEN", TOKEN)
    monkeypatch.setenv("CSFLOW_CONFIG_DIRS", json.dumps([str(TOY_CONFIGS)]))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("CSFLOW_BACKEND", raising=False)

    def invoke(*args: str):
        return CliRunner().invoke(app, list(args))

    return invoke


def one_line_error(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def local_run(cli, tmp_path: Path) -> str:
    """A simulation of the toy model on the embedded engine (forced: --backend local)."""
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps(TOY_INPUTS))
    done = cli(
        "simulate", "tests/ToyOk", "--inputs", str(inputs), "--backend", "local", "-o", "json"
    )
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)["job_id"]


def test_an_argo_run_is_found_without_csflow_backend(cli, backend, double):
    """The operator's case: the hint after an argo run, ``csflow runs logs ID``, works
    with only CSFLOW_ARGO_HOST set; so do show, wait and cancel."""
    run = submit(backend)
    name = f"sim-{run.id}"
    workflow_nodes = nodes(name, {"inputs": "Succeeded", "run": "Failed"}, message="boom")
    double.set_status(name, "Failed", workflow_nodes)
    pod = next(
        pod_name(double.workflows[name], n)
        for n in workflow_nodes.values()
        if n.get("displayName") == "run"
    )
    double.add_logs(name, pod, ["Traceback (most recent call last):", "RuntimeError: boom"])

    shown = cli("runs", "show", run.id, "-o", "json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["status"] == "FAIL"
    logs = cli("runs", "logs", run.id, "--step", "run")
    assert logs.exit_code == 0, logs.output
    assert logs.stdout == "Traceback (most recent call last):\nRuntimeError: boom\n"
    waited = cli("runs", "wait", run.id, "-o", "json")
    assert waited.exit_code == 1 and json.loads(waited.stdout)["status"] == "FAIL"
    assert cli("runs", "show", run.id, "--backend", "argo").exit_code == 0

    forced = cli("runs", "show", run.id, "--backend", "local")
    assert forced.exit_code == 2
    assert one_line_error(forced) == f"error: no run '{run.id}'"

    pending = submit(backend)
    cancelled = cli("runs", "cancel", pending.id)
    assert cancelled.exit_code == 0 and "CANCELLED" in cancelled.output
    assert double.workflows[f"sim-{pending.id}"]["status"]["message"].startswith("Stopped")


def test_a_local_run_is_found_when_csflow_backend_is_argo(cli, double, tmp_path, monkeypatch):
    job_id = local_run(cli, tmp_path)
    monkeypatch.setenv("CSFLOW_BACKEND", "argo")
    shown = cli("runs", "show", job_id, "-o", "json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["status"] == "SUCCESS"
    assert ("GET", f"/api/v1/workflows/csflow/sim-{job_id}") in double.requests  # argo first
    results = cli("runs", "results", job_id, "-o", "json")
    assert results.exit_code == 0, results.output
    assert json.loads(results.stdout)["downloadable"][0]["data"] == "x,double\n3.0,6.0\n"
    assert cli("runs", "logs", job_id, "--step", "run").exit_code == 0
    page = tmp_path / "page.html"
    opened = cli("runs", "open", job_id, "--out", str(page), "--no-browser")
    assert opened.exit_code == 0 and page.is_file(), opened.output
    compared = cli("runs", "diff", job_id, job_id, "-o", "json")
    assert compared.exit_code == 0, compared.output

    forced = cli("runs", "show", job_id, "--backend", "argo")
    assert forced.exit_code == 2 and "not found on the Argo Server" in one_line_error(forced)


def test_an_id_unknown_everywhere_is_the_one_line_no_run(cli, double, tmp_path):
    local_run(cli, tmp_path)  # (a run store that has other runs)
    for job_id in (UNKNOWN, "zzzz"):  # a UUID, and a name that is not one
        for command in (("show",), ("logs",), ("results",), ("cancel",), ("wait",)):
            missing = cli("runs", *command, job_id)
            assert missing.exit_code == 2, (command, missing.output)
            assert one_line_error(missing) == f"error: no run '{job_id}'"
    assert ("GET", f"/api/v1/workflows/csflow/sim-{UNKNOWN}") in double.requests
    assert not any("zzzz" in path for _, path in double.requests)


def test_runs_list_lists_one_backend(cli, backend, tmp_path, monkeypatch):
    """``runs list`` is not merged: the configured backend's runs, or --backend's."""
    local_id, argo_id = local_run(cli, tmp_path), submit(backend).id

    def listed(*args: str) -> set[str]:
        result = cli("runs", "list", "-o", "json", *args)
        assert result.exit_code == 0, result.output
        return {run["job_id"] for run in json.loads(result.stdout)}

    assert listed() == {local_id}
    assert listed("--backend", "argo") == {argo_id}
    monkeypatch.setenv("CSFLOW_BACKEND", "argo")
    assert listed() == {argo_id} and listed("--backend", "local") == {local_id}
    bogus = cli("runs", "list", "--backend", "bogus")
    assert bogus.exit_code == 2 and "bogus" in bogus.output


def test_runs_show_has_the_attempts_of_a_retried_step(cli, backend, double):
    run = submit(backend)
    name = f"sim-{run.id}"
    tries = {
        "inputs": ["Succeeded"],
        "run": ["Succeeded"],
        "outputs": ["Succeeded"],
        "upload": ["Failed", "Failed", "Failed", "Failed", "Succeeded"],
        "notify": ["Succeeded"],
    }
    double.set_status(
        name, "Succeeded", retried_nodes(name, tries, "Succeeded"), {"errors-warnings": "{}"}
    )
    shown = cli("runs", "show", run.id, "-o", "json")
    assert shown.exit_code == 0, shown.output
    steps = json.loads(shown.stdout)["steps"]
    assert {step: info["attempts"] for step, info in steps.items()} == {
        "inputs": 1,
        "run": 1,
        "outputs": 1,
        "upload": 5,
        "notify": 1,
    }
    table = cli("runs", "show", run.id)
    upload = next(line for line in table.output.splitlines() if "upload" in line)
    assert "Succeeded" in upload and " 5 " in upload, table.output


# -- an Argo Server whose certificate is not checked ----------------------------------


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, as ``argo server`` makes
    one for itself, and its key."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "argo-server")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert, private = folder / "server.crt", folder / "server.key"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, private


@pytest.fixture
def tls_double(templates, tmp_path):
    with ArgoServerDouble(TOKEN, templates, tls=self_signed(tmp_path)) as server:
        yield server


def test_an_unverified_server_is_one_warning_line_per_process(
    tls_double, settings, tmp_path, monkeypatch
):
    """Each request of a run's reading (show: one per Workflow name tried; logs: the
    Workflow and its log stream) once printed urllib3's InsecureRequestWarning."""
    https = settings.model_copy(update={"argo_host": tls_double.url, "argo_verify_ssl": False})
    run = submit(ArgoBackend(https))
    name = f"sim-{run.id}"
    tls_double.set_status(name, "Running", nodes(name, {"inputs": "Running"}))
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CSFLOW_") and key != "PYTHONWARNINGS"
    }
    environment.update(
        CSFLOW_HOME=str(settings.home),
        CSFLOW_ARGO_HOST=tls_double.url,
        CSFLOW_ARGO_TOKEN=TOKEN,
        CSFLOW_ARGO_VERIFY_SSL="false",
        COLUMNS="200",
    )
    csflow = Path(sys.executable).with_name("csflow")
    for args in (["runs", "show", run.id], ["runs", "logs", run.id], ["runs", "show", UNKNOWN]):
        done = subprocess.run(
            [str(csflow), *args], capture_output=True, text=True, env=environment, timeout=120
        )
        assert done.returncode == (2 if UNKNOWN in args else 0), done.stderr
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert lines[0] == UNVERIFIED_TLS_WARNING, done.stderr
        assert "InsecureRequestWarning" not in done.stderr and "Unverified" not in done.stderr
        assert len(lines) == (2 if UNKNOWN in args else 1), done.stderr  # (+ "no run")
    assert len([r for r in tls_double.requests if r[0] == "GET"]) > 3


def test_urllib3s_warning_is_silenced_for_the_argo_server_only(tls_double, settings):
    https = settings.model_copy(update={"argo_host": tls_double.url, "argo_verify_ssl": False})
    backend = ArgoBackend(https)
    other = tls_double.url.replace("127.0.0.1", "localhost")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert backend.find(UNKNOWN) is None
        assert not [w for w in caught if issubclass(w.category, InsecureRequestWarning)]
        requests.get(f"{other}/api/v1/workflows/csflow", verify=False, timeout=10)
    insecure = [w for w in caught if issubclass(w.category, InsecureRequestWarning)]
    assert len(insecure) == 1 and "'localhost'" in str(insecure[0].message)
