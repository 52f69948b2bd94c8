"""The secrets commands, through typer's CliRunner on a small app that mounts
them as ``models`` and ``svc`` do (``-n OWNER/TITLE`` on the parent group)."""

from __future__ import annotations

import json
import stat

import pytest
import typer
import yaml
from typer.testing import CliRunner

from csflow.cli.secrets import model_app, service_app
from csflow.sdk.ops import redis_acl, secret_sync

from .conftest import MODEL_CONFIGS

VALUE = "s3cr3t-Value-5f2e"
TOKEN = "webapp-Token-77ab"


def wrapper() -> typer.Typer:
    app = typer.Typer()
    models = typer.Typer()

    @models.callback()
    def models_group(names: str | None = typer.Option(None, "-n", "--names")) -> None:
        """Like `csflow models -n OWNER/TITLE`."""

    models.add_typer(model_app, name="secrets")
    svc = typer.Typer()

    @svc.callback()
    def svc_group() -> None:
        """Like `csflow svc`."""

    svc.add_typer(service_app, name="secrets")
    app.add_typer(models, name="models")
    app.add_typer(svc, name="svc")
    return app


@pytest.fixture
def cli(home, monkeypatch):
    monkeypatch.setenv("CSFLOW_CONFIG_DIRS", json.dumps([str(MODEL_CONFIGS)]))
    runner = CliRunner()
    app = wrapper()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), input=input)

    return invoke


def model(*args: str) -> list[str]:
    return ["models", "-n", "dataplane/SecretReader", "secrets", *args]


def test_set_get_list_delete_a_model_secret(cli, home):
    done = cli(*model("set", "DP_API_KEY", VALUE))
    assert done.exit_code == 0, done.output
    assert VALUE not in done.output
    assert cli(*model("get", "DP_API_KEY")).output == VALUE + "\n"
    listed = cli(*model("list", "-o", "json"))
    assert json.loads(listed.output) == [{"name": "DP_API_KEY", "set": True, "declared": True}]
    assert VALUE not in cli(*model("list")).output
    done = cli(*model("delete", "DP_API_KEY"))
    assert done.exit_code == 0 and VALUE not in done.output
    assert json.loads(cli(*model("list", "-o", "json")).output) == [
        {"name": "DP_API_KEY", "set": False, "declared": True}
    ]
    # the store file is the only place the value ever was
    assert (
        stat.S_IMODE(
            (home / "secrets" / "models" / "dataplane" / "SecretReader.json").stat().st_mode
        )
        == 0o600
    )


def test_the_model_can_also_follow_secrets(cli):
    assert (
        cli(
            "models", "secrets", "-n", "dataplane/SecretReader", "set", "DP_API_KEY", VALUE
        ).exit_code
        == 0
    )
    assert (
        cli("models", "secrets", "-n", "dataplane/SecretReader", "get", "DP_API_KEY").output
        == VALUE + "\n"
    )


def test_an_undeclared_secret_gets_a_note(cli):
    done = cli(*model("set", "UNDECLARED", VALUE))
    assert done.exit_code == 0
    assert "does not declare UNDECLARED" in done.output and VALUE not in done.output


def test_the_value_can_come_from_stdin_or_be_generated(cli):
    assert cli(*model("set", "DP_API_KEY"), input=VALUE + "\n").exit_code == 0
    assert cli(*model("get", "DP_API_KEY")).output == VALUE + "\n"
    done = cli("svc", "secrets", "set", "REDIS_MODEL_PW", "--generate")
    assert done.exit_code == 0
    generated = cli("svc", "secrets", "get", "REDIS_MODEL_PW").output.strip()
    assert len(generated) == 64 and generated not in done.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["models", "secrets", "get", "X"], "give -n OWNER/TITLE"),
        (["models", "-n", "a/b,c/d", "secrets", "get", "X"], "secrets act on one model"),
        (["models", "-n", "../x/y", "secrets", "get", "X"], "invalid model name"),
        (model("get", "NOPE"), "no secret 'NOPE' for dataplane/SecretReader"),
        (model("set", "bad-name", "v"), "invalid environment variable or secret name"),
        (model("set", "CSFLOW_JOB_STORE_URL", "v"), "CSFLOW_ are csflow's own"),
        (model("set", "X", "v", "--generate"), "not both"),
        (["svc", "secrets", "delete", "NOPE"], "no secret 'NOPE' in the service scope"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, args, message):
    done = cli(*args)
    assert done.exit_code == 2, done.output
    assert message in done.output
    assert done.output.startswith("error: ") and done.output.count("\n") <= 2  # rich may wrap once


def test_service_secrets_and_what_they_are_for(cli):
    assert cli("svc", "secrets", "set", "CS_API_TOKEN", TOKEN).exit_code == 0
    rows = json.loads(cli("svc", "secrets", "list", "-o", "json").output)
    assert {"name": "CS_API_TOKEN", "set": True, "used_for": "webapp token"} in rows
    assert {"name": "REDIS_MODEL_PW", "set": False, "used_for": "Redis user model"} in rows
    assert TOKEN not in cli("svc", "secrets", "list").output
    assert cli("svc", "secrets", "get", "CS_API_TOKEN").output == TOKEN + "\n"


# -- sync ------------------------------------------------------------------------


def set_everything(cli) -> dict[str, str]:
    values = {"DP_API_KEY": VALUE, "CS_API_TOKEN": TOKEN}
    assert cli(*model("set", "DP_API_KEY", VALUE)).exit_code == 0
    assert cli("svc", "secrets", "set", "CS_API_TOKEN", TOKEN).exit_code == 0
    for name in redis_acl.password_secret_names():
        assert cli("svc", "secrets", "set", name, "--generate").exit_code == 0
        values[name] = cli("svc", "secrets", "get", name).output.strip()
    return values


def test_sync_without_flags_shows_names_only(cli):
    values = set_everything(cli)
    done = cli("svc", "secrets", "sync", "--format", "json")
    assert done.exit_code == 0, done.output
    for value in values.values():
        assert value not in done.output
    summary = json.loads(done.output[done.output.index("[") :])
    by_name = {row["secret"]: row for row in summary}
    assert by_name["dataplane-secretreader-secrets"]["keys"] == ["DP_API_KEY"]
    assert by_name["dataplane-neighbour-secrets"]["keys"] == []  # declares nothing: gets nothing
    assert by_name["csflow-model-jobs"]["keys"] == [
        "CSFLOW_JOB_STORE_URL",
        "CSFLOW_REDIS_PASSWORD",
        "CSFLOW_REDIS_USER",
    ]
    assert by_name["csflow-platform"]["keys"] == [
        "CSFLOW_REDIS_PASSWORD",
        "CSFLOW_REDIS_USER",
        "CSFLOW_WEBAPP_TOKEN",
    ]
    assert by_name["csflow-redis-acl"]["keys"] == ["users.acl"]


def test_sync_renders_valid_secrets_and_values_only_inside_them(cli, tmp_path):
    import kubernetes_validate

    values = set_everything(cli)
    out = tmp_path / "secrets.yaml"
    done = cli("svc", "secrets", "sync", "-o", str(out))
    assert done.exit_code == 0, done.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    for value in values.values():
        assert value not in done.output
    documents = list(yaml.safe_load_all(out.read_text()))
    for document in documents:
        kubernetes_validate.validate(document, "1.30", strict=True)
        assert document["kind"] == "Secret"
        # outside stringData, no value appears (names, labels, annotations)
        outside = yaml.safe_dump({k: v for k, v in document.items() if k != "stringData"})
        assert not any(value in outside for value in values.values())
    secrets = {d["metadata"]["name"]: d["stringData"] for d in documents}
    assert secrets["dataplane-secretreader-secrets"] == {"DP_API_KEY": VALUE}
    assert (
        secrets["dataplane-crash-secrets"] == {}
    )  # declares DP_API_KEY too, but has none of its own
    assert secrets["csflow-model-jobs"] == {
        "CSFLOW_JOB_STORE_URL": redis_acl.CLUSTER_JOB_STORE_URL,
        "CSFLOW_REDIS_USER": "model",
        "CSFLOW_REDIS_PASSWORD": values["REDIS_MODEL_PW"],
    }
    assert secrets["csflow-platform"]["CSFLOW_WEBAPP_TOKEN"] == TOKEN
    assert secrets["csflow-platform"]["CSFLOW_REDIS_USER"] == "scheduler"
    acl = secrets["csflow-redis-acl"]["users.acl"]
    assert all(values[n] not in acl for n in redis_acl.password_secret_names())  # hashes only


def test_sync_warns_by_name_about_what_is_missing(cli):
    done = cli("svc", "secrets", "sync")
    assert done.exit_code == 0
    assert "dataplane/SecretReader: declared secret DP_API_KEY is not set" in done.output
    assert (
        "Redis passwords not set: REDIS_ADMIN_PW, REDIS_SCHEDULER_PW, REDIS_MODEL_PW" in done.output
    )


def test_sync_one_model_only(cli):
    set_everything(cli)
    done = cli("svc", "secrets", "sync", "-n", "dataplane/SecretReader", "-o", "-")
    documents = list(yaml.safe_load_all(done.output[done.output.index("apiVersion") :]))
    assert [d["metadata"]["name"] for d in documents] == ["dataplane-secretreader-secrets"]
    assert cli("svc", "secrets", "sync", "-n", "dataplane/Nope").exit_code == 2


def test_the_names_match_what_the_workflows_reference():
    from csflow.flows import simulate

    workflow = simulate.simulation_workflow(
        owner="dataplane",
        title="SecretReader",
        tag="t1",
        image="i",
        job_id="2f1c6d1e-8a51-4f7e-9f5e-2c3f4d5e6a7b",
        resources={
            "requests": {"cpu": "1", "memory": "1G"},
            "limits": {"cpu": "1", "memory": "2G"},
        },
        timeout=60,
        model_secret=secret_sync.model_secret_name("dataplane", "SecretReader"),
    ).to_dict()
    params = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
    assert params["model-secret"] == "dataplane-secretreader-secrets"


def test_sync_applies_with_the_kubernetes_client(cli, kube, tmp_path):
    values = set_everything(cli)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "test",
                "clusters": [{"name": "test", "cluster": {"server": kube.url}}],
                "users": [{"name": "test", "user": {"token": "kube-token"}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
            }
        )
    )
    first = cli("svc", "secrets", "sync", "--apply", "--kubeconfig", str(kubeconfig))
    assert first.exit_code == 0, first.output
    assert "created Secret dataplane-secretreader-secrets" in first.output
    assert kube.objects[("csflow", "dataplane-secretreader-secrets")]["stringData"] == {
        "DP_API_KEY": VALUE
    }
    assert cli(*model("set", "DP_API_KEY", "rotated-value-1")).exit_code == 0
    second = cli("svc", "secrets", "sync", "--apply", "--kubeconfig", str(kubeconfig))
    assert second.exit_code == 0, second.output
    assert "replaced Secret dataplane-secretreader-secrets" in second.output
    assert kube.objects[("csflow", "dataplane-secretreader-secrets")]["stringData"] == {
        "DP_API_KEY": "rotated-value-1"
    }
    for output in (first.output, second.output):
        assert not any(value in output for value in [*values.values(), "rotated-value-1"])
    assert ("PUT", "/api/v1/namespaces/csflow/secrets/csflow-platform") in kube.calls


def test_sync_apply_without_a_cluster_is_one_line(cli, tmp_path):
    from .conftest import free_port

    set_everything(cli)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "test",
                "clusters": [
                    {"name": "test", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}
                ],
                "users": [{"name": "test", "user": {}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
            }
        )
    )
    done = cli("svc", "secrets", "sync", "--apply", "--kubeconfig", str(kubeconfig))
    assert done.exit_code == 1
    assert "cannot reach the Kubernetes API" in done.output


def test_through_the_installed_csflow_command(home, monkeypatch):
    import os
    import subprocess
    import sys
    from pathlib import Path

    csflow = Path(sys.executable).parent / "csflow"
    env = {
        **os.environ,
        "CSFLOW_HOME": str(home),
        "CSFLOW_CONFIG_DIRS": json.dumps([str(MODEL_CONFIGS)]),
    }

    def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(csflow), *args], env=env, input=input, capture_output=True, text=True, timeout=60
        )

    done = run(
        "models", "-n", "dataplane/SecretReader", "secrets", "set", "DP_API_KEY", input=VALUE
    )
    assert done.returncode == 0, done.stderr
    assert VALUE not in done.stdout + done.stderr
    assert (
        run("models", "-n", "dataplane/SecretReader", "secrets", "get", "DP_API_KEY").stdout
        == VALUE + "\n"
    )
    listed = run("models", "-n", "dataplane/SecretReader", "secrets", "list", "-o", "json")
    assert json.loads(listed.stdout) == [{"name": "DP_API_KEY", "set": True, "declared": True}]
    missing = run("svc", "secrets", "get", "NOPE")
    assert missing.returncode == 2 and missing.stderr.startswith("error: no secret 'NOPE'")
