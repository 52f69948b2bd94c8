"""The publish WorkflowTemplate and what its build step gets: Argo's strict
schema and lint checks, the DAG's shape, the build context and the image
layer made from it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from csflow import flows
from csflow.flows import _common as c
from csflow.flows import publish
from csflow.runtime.image_build import _run as run_or_fail
from csflow.sdk.argo import lint, schema, semantics
from csflow.sdk.builds import model_image
from csflow.sdk.builds.environments import (
    build_process_env,
    plan_build,
    uv_bin,
    write_build_context,
)
from csflow.sdk.core import steps
from csflow.sdk.core.errors import BadInput
from csflow.sdk.core.model_config import load_model_config

from .conftest import REPO, TINY, tiny_config

ARGO = (
    Path(os.environ.get("CSFLOW_CACHE_DIR", Path.home() / ".cache" / "csflow"))
    / "bin"
    / "argo-v4.0.5"
)


@pytest.fixture(scope="module")
def template() -> dict:
    return flows.build("publish").to_dict()


def _workflow(**overrides) -> dict:
    config = load_model_config(REPO / "config" / "PSLmodels" / "Tax-Cruncher.yaml")
    arguments = dict(
        config=config.model_dump(mode="json"),
        config_dir="",
        run_id="4c1e5d5e-0000-4000-8000-000000000000",
        registry="gcr.io/csflow",
        require_approval=True,
        resources=config.resources.kubernetes(),
        test_timeout=1200,
        model_secret="pslmodels-tax-cruncher-secrets",
    )
    return publish.publish_workflow(**{**arguments, **overrides}).to_dict()


def test_the_template_passes_the_strict_schema_and_lint(template):
    assert schema.schema_findings(template) == []
    assert lint.lint_document(template) == []


def test_a_publish_workflow_passes_with_its_template(template):
    workflow = _workflow()
    assert schema.schema_findings(workflow) == []
    assert lint.lint_documents([template, workflow]) == []
    merged = semantics.merge_workflow(workflow, template)  # every parameter has a value
    values = {p["name"]: p["value"] for p in merged["spec"]["arguments"]["parameters"]}
    assert (
        values["require-approval"] == "true"
        and json.loads(values["config"])["title"] == "Tax-Cruncher"
    )


@pytest.mark.skipif(not ARGO.is_file(), reason="argo v4.0.5 not built (cluster/tools/build-argo)")
def test_argo_lints_the_template_and_a_workflow(template, tmp_path):
    path = tmp_path / "publish.yaml"
    path.write_text(yaml.safe_dump_all([template, _workflow()]))
    result = subprocess.run(
        [str(ARGO), "lint", "--offline", "--output", "simple", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dag_is_clone_build_test_verify_push_approve_deploy(template):
    spec = template["spec"]
    tasks = {t.name: t for t in semantics.dag_tasks(spec, spec["entrypoint"])}
    assert list(tasks) == ["clone", "build", "test", "verify", "push", "approve", "deploy"]
    assert tasks["build"].when == "{{tasks.clone.outputs.parameters.built}} != true"
    assert (
        tasks["verify"].depends == "test.Succeeded" and tasks["push"].depends == "verify.Succeeded"
    )
    assert tasks["deploy"].depends == "push.Succeeded && approve"
    templates = {t["name"]: t for t in spec["templates"]}
    assert templates["approve"]["suspend"] == {}
    assert "activeDeadlineSeconds" not in spec  # a publish may wait days for approval


def test_each_step_runs_where_it_should(template):
    templates = {t["name"]: t for t in template["spec"]["templates"]}

    def environment(name):
        return templates[name]["metadata"]["labels"][steps.ENVIRONMENT_LABEL]

    assert {n: environment(n) for n in ("clone", "build", "test", "verify", "push", "deploy")} == {
        "clone": steps.PLATFORM,
        "build": steps.BUILD,
        "test": steps.MODEL,
        "verify": steps.PLATFORM,
        "push": steps.PLATFORM,
        "deploy": steps.PLATFORM,
    }
    # The build runs unprivileged, as every step, with no platform secrets.
    build = templates["build"]
    assert build["container"]["command"] == steps.IMAGE_BUILD_COMMAND
    assert "--image={{inputs.parameters.image}}" in build["container"]["args"]
    assert build["container"]["securityContext"] == c.container_security_context().model_dump(
        by_alias=True, exclude_none=True
    )
    assert "securityContext" not in build  # the workflow's: non-root, uid 1000
    assert build["container"]["envFrom"] == [{"configMapRef": {"name": steps.PLATFORM_CONFIG}}]
    assert build["automountServiceAccountToken"] is False
    # The model runs in the image just built, with its own secrets only: no
    # platform credentials, no job store, no Kubernetes token.
    test = templates["test"]
    assert test["container"]["image"] == "{{inputs.parameters.image}}"
    assert test["container"]["envFrom"] == [
        {"secretRef": {"name": "{{workflow.parameters.model-secret}}", "optional": True}}
    ]
    assert test["automountServiceAccountToken"] is False
    # Locking may run a requirement's build scripts: clone has no platform secret.
    assert templates["clone"]["container"]["envFrom"] == [
        {"configMapRef": {"name": steps.PLATFORM_CONFIG}}
    ]
    assert {"configMapRef": {"name": steps.PLATFORM_CONFIG}} in templates["deploy"]["container"][
        "envFrom"
    ]


def _info(config_path: Path) -> dict:
    config = load_model_config(config_path)
    return {"python": config.python, "tag": "0123456789ab", "config": config.canonical()}


def test_the_image_is_the_base_plus_one_layer_with_the_configs_environment(tmp_path):
    info = _info(REPO / "config" / "PSLmodels" / "Tax-Cruncher.yaml")
    image = "gcr.io/csflow/pslmodels_tax-cruncher:0123456789ab"
    command = model_image.crane_mutate_command(
        "crane", info, tmp_path / "layer.tar", image, model_image.base_image(info)
    )
    assert command[:3] == ["crane", "mutate", "python:3.12-slim-bookworm"]
    flags = dict(zip(command[3::2], command[4::2], strict=True))
    assert flags["--append"] == str(tmp_path / "layer.tar") and flags["--tag"] == image
    assert flags["--user"] == f"{steps.RUN_AS_USER}:{steps.RUN_AS_USER}"
    env = [command[i + 1] for i, flag in enumerate(command) if flag == "--env"]
    assert "NOTAXCALCJIT=1" in env and "CSFLOW_MODEL_FUNCTIONS=cs_config.functions" in env
    assert "--insecure" not in command


def test_env_values_stay_whole_in_crane_flags(configs, tmp_path):
    info = _info(tiny_config(configs, GREETING='say "$HOME", then done'))
    command = model_image.crane_mutate_command("crane", info, tmp_path / "l.tar", "r/i:t", "b")
    # crane reads each --env as CSV: the comma and quotes survive as one value.
    assert '"GREETING=say ""$HOME"", then done"' in command
    info = _info(tiny_config(configs, GREETING="two\nlines"))
    with pytest.raises(BadInput, match="line breaks"):
        model_image.crane_mutate_command("crane", info, tmp_path / "l.tar", "r/i:t", "b")


def test_the_layer_runs_the_model_on_the_images_python(configs, tmp_path):
    """A real layer (uv installs for the config's Python), unpacked and used the way
    the image uses it: its wrappers, on the base image's Python."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    config_path = tiny_config(configs)
    config_path.write_text(config_path.read_text().replace('python: "3.11"', f'python: "{python}"'))
    with plan_build(load_model_config(config_path), tmp_path / "cache") as plan:
        write_build_context(plan, tmp_path / "context")
    layer = tmp_path / "layer.tar"
    info = json.loads((tmp_path / "context" / "build.json").read_text())
    model_image.write_layer(tmp_path / "context", info, layer, uv_bin(), run_or_fail)

    with tarfile.open(layer) as tar:
        entries = {m.name: m for m in tar.getmembers()}
        assert {(m.uid, m.gid, m.mtime) for m in entries.values()} == {(0, 0, 0)}
        for name in model_image.PROGRAMS:
            assert entries[f"usr/local/bin/{name}"].mode == 0o755
        assert "opt/csflow/model/tiny_model.py" in entries
        assert f"{model_image.RUNTIME_DIR.lstrip('/')}/step_env.py" in entries
        assert any(n.startswith("opt/csflow/packages/redis/") for n in entries)
        tar.extractall(tmp_path / "root", filter="tar")
    root = tmp_path / "root"
    env = model_image.image_env(info)
    env["PYTHONPATH"] = ":".join(f"{root}{p}" for p in env["PYTHONPATH"].split(":"))
    shim = tmp_path / "bin"  # the image's `python` is the base image's
    shim.mkdir()
    (shim / "python").symlink_to(sys.executable)
    wrapper = (
        (root / "usr/local/bin/csflow-model-step")
        .read_text()
        .replace(model_image.RUNTIME_DIR, f"{root}{model_image.RUNTIME_DIR}")
    )
    done = subprocess.run(
        ["sh", "-c", wrapper.split("\n", 1)[1].replace('"$@"', "--help")],
        env={**env, "PATH": f"{shim}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    imported = subprocess.run(
        [sys.executable, "-c", "import redis, tiny_model; print(tiny_model.get_version())"],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imported.returncode == 0 and imported.stdout.strip(), imported.stderr


def test_the_build_context_holds_what_the_image_and_uv_builds_need(configs, tmp_path):
    config = load_model_config(tiny_config(configs))
    with plan_build(config, tmp_path / "cache") as plan:
        write_build_context(plan, tmp_path / "context")
    context = tmp_path / "context"
    assert sorted(p.name for p in context.iterdir()) == [
        "build.json",
        "csflow",
        "requirements.lock",
        "src",
    ]
    assert sorted(p.name for p in (context / "csflow").iterdir()) == [
        "contract_tests.py",
        "model_step.py",
        "step_env.py",  # the variables they read, imported as a sibling file
    ]
    assert (context / "src" / "tiny_model.py").read_text() == (TINY / "tiny_model.py").read_text()
    info = json.loads((context / "build.json").read_text())
    assert (info["owner"], info["title"], info["tag"]) == ("publish-tests", "Tiny", plan.tag)


def test_the_content_tag_follows_config_source_and_lock(configs, tmp_path):
    def tag(config_path) -> str:
        with plan_build(load_model_config(config_path), tmp_path / "cache") as plan:
            return plan.tag

    source = tmp_path / "tiny"
    shutil.copytree(TINY, source)
    first = tag(tiny_config(configs, source=source))
    assert tag(tiny_config(configs, source=source)) == first
    assert (
        tag(tiny_config(configs / "elsewhere", source=source)) == first
    )  # where the config sits is not content
    assert tag(tiny_config(configs, source=source, TINY_VERSION="2")) != first
    (source / "extra.py").write_text("x = 1\n")
    assert tag(tiny_config(configs, source=source)) != first


def test_builds_run_without_csflow_credentials(monkeypatch):
    monkeypatch.setenv("CSFLOW_WEBAPP_TOKEN", "secret")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/key.json")
    monkeypatch.setenv("UV_INDEX_URL", "https://pypi.example/simple")
    env = build_process_env()
    assert "CSFLOW_WEBAPP_TOKEN" not in env and "GOOGLE_APPLICATION_CREDENTIALS" not in env
    assert env["UV_INDEX_URL"] == "https://pypi.example/simple" and "PATH" in env
