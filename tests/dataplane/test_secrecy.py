"""No secret value anywhere but the secret store (and `get`).

Real simulations on the embedded engine with a model that reads its declared
secret and a webapp that needs its token. Then every file under CSFLOW_HOME,
except the secret store itself, is searched for the values (inside zip
archives too), and so is every CLI output other than `get`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import uuid
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from csflow.cli.app import app as csflow_app
from csflow.sdk.client import Client

from .conftest import MODEL_CONFIGS, OK_INPUTS

VALUE = f"model-secret-{uuid.uuid4().hex}"
TOKEN = f"webapp-token-{uuid.uuid4().hex}"


def forms(value: str) -> list[bytes]:
    """A value as it could be written: plain, base64, JSON-escaped."""
    raw = value.encode()
    return [raw, base64.b64encode(raw), json.dumps(value).encode()]


def file_contents(path: Path) -> list[bytes]:
    data = path.read_bytes()
    contents = [data]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            contents += [archive.read(name) for name in archive.namelist()]
    return contents


def leaks(home: Path, values: list[str]) -> list[str]:
    """Files under ``home`` (outside the secret store) that hold a value."""
    store = home / "secrets"
    found = []
    for path in sorted(home.rglob("*")):
        if not path.is_file() or store in path.parents:
            continue
        for content in file_contents(path):
            for value in values:
                if any(form in content for form in forms(value)):
                    found.append(f"{path.relative_to(home)} holds {value[:12]}…")
    return found


def report_of(client: Client, job_id: str) -> dict:
    outputs = client.results(job_id)
    return json.loads(outputs["renderable"][0]["data"])


@pytest.mark.slow
def test_secrets_reach_only_their_model_and_appear_nowhere_else(home, webapp, monkeypatch):
    monkeypatch.setenv("CSFLOW_CONFIG_DIRS", json.dumps([str(MODEL_CONFIGS)]))
    runner = CliRunner()
    outputs: list[str] = []

    def cli(*args: str, input: str | None = None) -> str:
        done = runner.invoke(csflow_app, list(args), input=input)
        assert done.exit_code == 0, done.output
        return done.output

    # set through the real `csflow` app, as mounted by `models` and `svc`
    outputs.append(
        cli("models", "-n", "dataplane/SecretReader", "secrets", "set", "DP_API_KEY", VALUE)
    )
    outputs.append(
        cli("models", "-n", "dataplane/Crash", "secrets", "set", "DP_API_KEY", input=VALUE + "\n")
    )
    outputs.append(cli("svc", "secrets", "set", "CS_API_TOKEN", TOKEN))
    outputs.append(cli("models", "-n", "dataplane/SecretReader", "secrets", "list"))
    outputs.append(cli("models", "-n", "dataplane/SecretReader", "secrets", "list", "-o", "json"))
    outputs.append(cli("svc", "secrets", "list", "-o", "yaml"))
    outputs.append(cli("svc", "secrets", "sync"))
    assert (
        cli("models", "-n", "dataplane/SecretReader", "secrets", "get", "DP_API_KEY")
        == VALUE + "\n"
    )
    assert cli("svc", "secrets", "get", "CS_API_TOKEN") == TOKEN + "\n"

    client = Client(home=home, config_dirs=[MODEL_CONFIGS], webapp_url=webapp.url)
    monkeypatch.setenv("CSFLOW_WEBAPP_BACKOFF", "0.01")

    # the model that declares the secret sees it (by hash), and no platform credential
    reader = client.simulate("dataplane/SecretReader", OK_INPUTS)
    assert reader.status == "SUCCESS", reader.reason
    seen = report_of(client, reader.id)
    assert seen["secret_sha256"] == hashlib.sha256(VALUE.encode()).hexdigest()
    assert seen["visible"] == ["DP_API_KEY"]  # no webapp token, storage URL or Redis user

    # a model that declares nothing gets nothing
    neighbour = client.simulate("dataplane/Neighbour", OK_INPUTS)
    assert neighbour.status == "SUCCESS", neighbour.reason
    assert report_of(client, neighbour.id) == {
        "secret_sha256": None,
        "visible": [],
        "redis_user": None,
    }

    # a crash is reported to the webapp with its reason
    crash = client.simulate("dataplane/Crash", OK_INPUTS)
    assert crash.status == "FAIL"

    calls = {call.body["job_id"]: call for call in webapp.calls}
    assert calls[reader.id].body["status"] == "SUCCESS"
    assert calls[neighbour.id].body["status"] == "SUCCESS"
    assert calls[crash.id].body["status"] == "FAIL"
    assert "run" in calls[crash.id].body["traceback"]
    assert all(call.headers["Authorization"] == f"Token {TOKEN}" for call in webapp.calls)

    # what a user sees of the runs
    for run in (reader, neighbour, crash):
        outputs.append(cli("runs", "show", run.id))
        outputs.append(cli("runs", "show", run.id, "-o", "json"))
        outputs.append(cli("runs", "logs", run.id))
    outputs.append(cli("runs", "list", "-o", "json"))
    outputs.append(cli("runs", "results", reader.id))
    outputs.append(json.dumps(client.render("dataplane/SecretReader", OK_INPUTS)))
    outputs.append(cli("svc", "config", "-o", "-", "--no-check"))

    for output in outputs:
        for value in (VALUE, TOKEN):
            assert not any(form.decode() in output for form in forms(value)), output[:500]
    assert leaks(home, [VALUE, TOKEN]) == []
    assert (home / "runs").is_dir() and any(
        (home / "runs").rglob("*.log")
    )  # the search saw the logs


@pytest.mark.slow
def test_the_embedded_engine_on_a_redis_job_store(home, redis_server, redis_admin, monkeypatch):
    """The submitter writes as the scheduler (its user from the environment);
    the model reads as the model user, whose password the engine takes from
    the secret store. Neither password lands under CSFLOW_HOME."""
    from csflow.sdk.dataplane.secrets import LocalSecretStore

    monkeypatch.setenv("CSFLOW_REDIS_USER", "scheduler")
    monkeypatch.setenv("CSFLOW_REDIS_PASSWORD", redis_server.passwords["scheduler"])
    store = LocalSecretStore(home)
    store.set("REDIS_MODEL_PW", redis_server.passwords["model"])
    store.set("DP_API_KEY", VALUE, "dataplane", "RedisReader")
    client = Client(home=home, config_dirs=[MODEL_CONFIGS], job_store_url=redis_server.url)
    run = client.simulate("dataplane/RedisReader", OK_INPUTS)
    assert run.status == "SUCCESS", run.reason
    seen = report_of(client, run.id)
    assert seen["redis_user"] == "model"
    assert seen["visible"] == ["CSFLOW_REDIS_PASSWORD", "CSFLOW_REDIS_USER", "DP_API_KEY"]
    assert 0 < redis_admin.ttl(f"job-{run.id}")  # written with an expiry
    assert not (home / "jobs").exists()  # nothing went to the file store
    assert leaks(home, [VALUE, *redis_server.passwords.values()]) == []

    # a missing model password is one clear line, before anything runs
    from csflow.sdk.core.errors import NotFound

    store.delete("REDIS_MODEL_PW")
    try:  # refused at submit (when the engine warms up) or when the run starts
        # (no_cache: the same inputs would otherwise be answered from the result cache)
        run = client.simulate("dataplane/RedisReader", OK_INPUTS, no_cache=True)
        assert run.status == "FAIL"
        message = run.reason
    except NotFound as exc:
        message = str(exc)
    assert "needs the model user's password: csflow svc secrets set REDIS_MODEL_PW" in message


def test_the_search_finds_a_value_in_plain_files_zips_and_base64(tmp_path):
    """The leak search itself: it must see what a careless writer would leave."""
    home = tmp_path / "home"
    (home / "runs" / "x" / "logs").mkdir(parents=True)
    (home / "secrets").mkdir()
    (home / "secrets" / "service.json").write_text(json.dumps({"A": VALUE}))  # the store: allowed
    assert leaks(home, [VALUE]) == []
    (home / "runs" / "x" / "logs" / "run.log").write_text(
        f"token={base64.b64encode(VALUE.encode()).decode()}"
    )
    with zipfile.ZipFile(home / "runs" / "x" / "out.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.txt", f"{VALUE}" * 50)
    assert sorted(leak.split()[0] for leak in leaks(home, [VALUE])) == [
        "runs/x/logs/run.log",
        "runs/x/out.zip",
    ]
