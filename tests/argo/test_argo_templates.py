"""``csflow simulate ... --backend argo --dry-run`` shows a Workflow that meets
every bullet of the issue's "Templates" list, on its own and merged with the
csflow-simulate template it refers to (as Argo runs it)."""

from __future__ import annotations

import math

import pytest
import yaml
from typer.testing import CliRunner

from csflow.cli.app import app
from csflow.flows import simulate
from csflow.sdk.argo import lint, schema
from csflow.sdk.argo.semantics import merge_workflow
from csflow.sdk.core import names, steps
from csflow.sdk.core.errors import BadInput
from csflow.sdk.core.model_config import find_model_config

from .conftest import REPO

runner = CliRunner()
LABELS = ("csflow.io/owner", "csflow.io/title", "csflow.io/job-id", "csflow.io/tag")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[str, dict]:
    home = tmp_path_factory.mktemp("dry-run-home")
    result = runner.invoke(
        app,
        [
            "simulate",
            "PSLmodels/Tax-Cruncher",
            "--inputs",
            str(REPO / "examples/tax-cruncher/inputs.json"),
            "--backend",
            "argo",
            "--dry-run",
            "--tag",
            "42ce5647434e",
            "-o",
            "yaml",
        ],
        env={"CSFLOW_HOME": str(home), "CSFLOW_REGISTRY": "gcr.io/cs-test"},
    )
    assert result.exit_code == 0, result.output
    return result.stdout, yaml.safe_load(result.stdout)


def parameters(workflow: dict) -> dict[str, str]:
    return {p["name"]: p.get("value") for p in workflow["spec"]["arguments"]["parameters"]}


def test_the_dry_run_workflow_is_small_and_refers_to_the_template(dry_run):
    text, workflow = dry_run
    assert len(text.encode()) < 4096
    assert workflow["kind"] == "Workflow"
    assert workflow["spec"]["workflowTemplateRef"] == {"name": simulate.NAME}
    assert "templates" not in workflow["spec"]
    assert set(parameters(workflow)) == set(simulate.PARAMETERS)
    assert schema.schema_findings(workflow) == []


def test_it_is_named_after_its_job_and_labelled(dry_run):
    _, workflow = dry_run
    labels = workflow["metadata"]["labels"]
    assert set(LABELS) <= set(labels)
    assert labels["csflow.io/owner"] == "PSLmodels" and labels["csflow.io/title"] == "Tax-Cruncher"
    assert labels["csflow.io/tag"] == "42ce5647434e"
    assert workflow["metadata"]["name"] == f"sim-{labels['csflow.io/job-id']}"
    annotations = workflow["metadata"]["annotations"]
    assert "PSLmodels/Tax-Cruncher" in annotations["workflows.argoproj.io/title"]
    assert labels["csflow.io/job-id"] in annotations["workflows.argoproj.io/description"]


def test_it_cleans_up_after_itself_and_has_a_deadline_from_the_model_timeout(dry_run):
    _, workflow = dry_run
    spec = workflow["spec"]
    config = find_model_config("PSLmodels", "Tax-Cruncher", [REPO / "config"])
    assert spec["podGC"] == {"strategy": "OnPodCompletion"}
    assert (
        spec["ttlStrategy"]["secondsAfterSuccess"] > 0
        and spec["ttlStrategy"]["secondsAfterFailure"] > 0
    )
    assert spec["activeDeadlineSeconds"] == config.timeout + simulate.WORKFLOW_DEADLINE_MARGIN
    assert parameters(workflow)["timeout"] == str(config.timeout)


def test_resources_come_from_the_model_config_with_a_1_2x_memory_limit(dry_run):
    _, workflow = dry_run
    config = find_model_config("PSLmodels", "Tax-Cruncher", [REPO / "config"])
    values = parameters(workflow)
    request = int(values["memory-request"].removesuffix("Mi"))
    assert request == config.resources.memory_mib
    assert values["memory-limit"] == f"{math.ceil(request * 1.2)}Mi"
    assert values["cpu"] == f"{config.resources.cpu:g}"


def test_images_model_from_the_registry_platform_from_csflow(dry_run, simulate_template):
    _, workflow = dry_run
    assert parameters(workflow)["image"] == "gcr.io/cs-test/pslmodels_tax-cruncher:42ce5647434e"
    for step in simulate_template["spec"]["templates"]:
        if "container" not in step:
            continue
        environment = step["metadata"]["labels"][steps.ENVIRONMENT_LABEL]
        if environment == steps.MODEL:
            assert step["container"]["image"] == "{{workflow.parameters.image}}"
        else:
            assert step["container"]["image"] == "gcr.io/csflow/csflow:0.1.0"


def test_the_merged_workflow_meets_every_template_bullet(dry_run, simulate_template):
    _, workflow = dry_run
    merged = merge_workflow(workflow, simulate_template)
    spec = merged["spec"]
    assert lint.lint_documents([workflow, simulate_template]) == []
    # A dedicated service account, pod security context, no token in any step.
    assert spec["serviceAccountName"] == steps.WORKFLOW_SERVICE_ACCOUNT
    assert spec["executor"]["serviceAccountName"] == steps.EXECUTOR_SERVICE_ACCOUNT
    assert spec["automountServiceAccountToken"] is False
    context = spec["securityContext"]
    assert context["runAsNonRoot"] is True and context["seccompProfile"]["type"] == "RuntimeDefault"
    containers = {t["name"]: t for t in spec["templates"] if "container" in t}
    model = {
        n
        for n, t in containers.items()
        if t["metadata"]["labels"][steps.ENVIRONMENT_LABEL] == steps.MODEL
    }
    platform = set(containers) - model
    assert model == {"inputs", "run"} and platform == {"outputs", "upload", "notify"}
    for name in model:
        step = containers[name]
        assert step["automountServiceAccountToken"] is False
        assert step["serviceAccountName"] == steps.MODEL_SERVICE_ACCOUNT
        assert "retryStrategy" not in step, "a model that failed on its own is never re-run"
        # Model secrets by reference only, never platform credentials.
        sources = [s["secretRef"]["name"] for s in step["container"]["envFrom"]]
        assert sources == ["{{workflow.parameters.model-secret}}", steps.MODEL_JOB_STORE_SECRET]
        assert "env" not in step["container"]
        assert '"memory":"{{workflow.parameters.memory-limit}}"' in step["podSpecPatch"]
    assert containers["run"]["activeDeadlineSeconds"] == "{{workflow.parameters.timeout}}"
    for name in platform:
        refs = {
            s.get("secretRef", s.get("configMapRef"))["name"]
            for s in containers[name]["container"]["envFrom"]
        }
        assert refs == {steps.PLATFORM_SECRET, steps.PLATFORM_CONFIG}
    retried = {n for n, t in containers.items() if t.get("retryStrategy")}
    assert retried == {"upload", "notify"}
    for name in retried:
        assert containers[name]["retryStrategy"]["backoff"]["duration"]
    # The exit handler reports every end, with the status and the failures.
    assert spec["onExit"] == "notify"
    args = " ".join(containers["notify"]["container"]["args"])
    assert "{{workflow.status}}" in args and "{{workflow.failures}}" in args


def test_the_model_image_name_is_validated():
    assert (
        names.model_image("gcr.io/x/", "PSLmodels", "Tax-Cruncher", "v1")
        == "gcr.io/x/pslmodels_tax-cruncher:v1"
    )
    with pytest.raises(BadInput):
        names.model_image("gcr.io/x", "PSLmodels", "Tax-", "v1")
    with pytest.raises(BadInput):
        names.model_image("gcr.io/x", "PSLmodels", "Tax-Cruncher", "../latest")


def test_an_unknown_model_is_one_line_and_exit_2(tmp_path):
    result = runner.invoke(
        app,
        ["simulate", "Nobody/Nothing", "--backend", "argo", "--dry-run"],
        env={"CSFLOW_HOME": str(tmp_path)},
    )
    assert result.exit_code == 2
    assert "unknown model Nobody/Nothing" in result.output
