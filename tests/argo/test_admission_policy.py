"""The admission policy ``csflow-workflows`` agrees with what csflow submits.

The policy is CEL that the API server runs; the cluster tests
(tests/cluster/test_attacks.py) try the attacks on a real one. These check,
without a cluster, that its lists name exactly the templates, parameters, spec
fields, ConfigMap key and controller account the rest of csflow uses, so the
policy cannot drift from the flows and refuse csflow's own Workflows."""

from __future__ import annotations

import json
import re
import uuid
from types import SimpleNamespace

import pytest
import yaml

from csflow.flows import publish, simulate, sweep
from csflow.runtime import step_env
from csflow.sdk.core import names, steps
from csflow.sdk.core.model_config import load_model_config
from csflow.sdk.ops import manifests

from .conftest import JOB_ID, REPO, find, make_simulation_workflow

POLICY_FILE = manifests.CLUSTER_DIR / "admission-policy.yaml"


@pytest.fixture(scope="module")
def policy() -> dict:
    docs = list(yaml.safe_load_all(POLICY_FILE.read_text()))
    return find(docs, "ValidatingAdmissionPolicy", "csflow-workflows")


@pytest.fixture(scope="module")
def binding() -> dict:
    docs = list(yaml.safe_load_all(POLICY_FILE.read_text()))
    return find(docs, "ValidatingAdmissionPolicyBinding", "csflow-workflows")


def _variable(policy: dict, name: str) -> str:
    return next(v["expression"] for v in policy["spec"]["variables"] if v["name"] == name)


def _quoted(cel: str) -> list[str]:
    return re.findall(r"'([^']*)'", cel)


def _publish_workflow() -> dict:
    config = load_model_config(REPO / "config" / "PSLmodels" / "Tax-Cruncher.yaml")
    return publish.publish_workflow_for(
        config, "4c1e5d5e-0000-4000-8000-000000000000", "gcr.io/csflow", True, ""
    ).to_dict()


def _sweep_workflow(points: int = 3) -> dict:
    """A sweep of the Tax-Cruncher config's version, as the backends submit it."""
    config = load_model_config(REPO / "config" / "PSLmodels" / "Tax-Cruncher.yaml")
    version = SimpleNamespace(
        owner="PSLmodels",
        title="Tax-Cruncher",
        tag="42ce5647434e",
        config=config.model_dump(),
        record={"image": "gcr.io/csflow/pslmodels_tax-cruncher:42ce5647434e"},
    )
    jobs = [str(uuid.UUID(int=i + 1, version=4)) for i in range(points)]
    labels = [str(2024 + i) for i in range(points)]
    return sweep.sweep_workflow_for(
        version, JOB_ID, "year", jobs, labels, "gcr.io/csflow"
    ).to_dict()


def _parameter_names(workflow: dict) -> list[str]:
    return [p["name"] for p in workflow["spec"]["arguments"]["parameters"]]


def test_the_expected_parameters_are_those_the_flows_submit(policy):
    expected = _variable(policy, "expected")
    simulate_part, sweep_part, publish_part = expected.split(": variables.template ==")
    simulate_names = _quoted(simulate_part)
    assert simulate_names[0] == simulate.NAME
    assert sorted(simulate_names[1:]) == sorted(_parameter_names(make_simulation_workflow()))
    sweep_names = _quoted(sweep_part)
    assert sweep_names[0] == sweep.NAME
    assert sorted(sweep_names[1:]) == sorted(_parameter_names(_sweep_workflow()))
    publish_names = _quoted(publish_part)
    assert publish_names[0] == publish.NAME
    assert sorted(publish_names[1:]) == sorted(_parameter_names(_publish_workflow()))


def test_csflow_workflows_set_only_the_fields_the_policy_admits(policy):
    allowed_rule = next(
        v["expression"]
        for v in policy["spec"]["validations"]
        if v["expression"].startswith("object.spec.all(k, k in ['workflowTemplateRef'")
    )
    allowed = set(_quoted(allowed_rule))
    for workflow in (make_simulation_workflow(), _sweep_workflow(), _publish_workflow()):
        assert set(workflow["spec"]) <= allowed, set(workflow["spec"]) - allowed
        assert set(workflow["spec"]["arguments"]) == {"parameters"}
        assert all(set(p) == {"name", "value"} for p in workflow["spec"]["arguments"]["parameters"])
        assert "status" not in workflow
    # Nothing that reaches a pod is among them.
    assert allowed.isdisjoint(
        {"serviceAccountName", "podSpecPatch", "templates", "artifactGC", "hooks", "volumes"}
    )


def test_the_simulation_image_and_secret_follow_the_policys_names():
    workflow = make_simulation_workflow()
    values = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
    # The policy's expectedSecret and repository, for a name kube_name leaves as it is.
    owner, title = values["owner"], values["title"]
    assert values["model-secret"] == names.kube_name(owner, title) + "-secrets"
    assert values["model-secret"] == (
        f"{owner}-{title}".lower().replace("_", "-").replace(".", "-") + "-secrets"
    )
    assert values["image"].startswith(f"gcr.io/csflow/{owner}_{title}:".lower())
    assert workflow["metadata"]["name"] == "sim-" + values["job-id"]


def test_the_policy_reads_the_registries_from_the_platform_configmap(policy, binding):
    assert policy["spec"]["paramKind"] == {"apiVersion": "v1", "kind": "ConfigMap"}
    assert binding["spec"]["paramRef"]["name"] == steps.PLATFORM_CONFIG
    assert binding["spec"]["paramRef"]["namespace"] == steps.NAMESPACE
    assert binding["spec"]["paramRef"]["parameterNotFoundAction"] == "Deny"
    assert step_env.IMAGE_REGISTRIES.name in _variable(policy, "registries")
    platform = yaml.safe_load((manifests.CLUSTER_DIR / "platform-config.yaml").read_text())
    assert platform["data"][step_env.IMAGE_REGISTRIES.name] == "gcr.io/csflow"
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": steps.NAMESPACE
    }


def test_only_the_workflow_controller_is_left_out(policy):
    controller = yaml.safe_load((manifests.CLUSTER_DIR / "workflow-controller.yaml").read_text())
    account = controller["spec"]["template"]["spec"]["serviceAccountName"]
    conditions = [c["expression"] for c in policy["spec"]["matchConditions"]]
    assert conditions == [
        f"request.userInfo.username != 'system:serviceaccount:{steps.NAMESPACE}:{account}'",
        "!('system:masters' in request.userInfo.groups)",
    ]
    assert policy["spec"]["failurePolicy"] == "Fail"
    rules = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rules == [
        {
            "apiGroups": ["argoproj.io"],
            "apiVersions": ["*"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["workflows"],
        }
    ]


def test_stored_templates_are_judged_against_every_csflow_template(templates):
    docs = list(yaml.safe_load_all(POLICY_FILE.read_text()))
    policy = find(docs, "ValidatingAdmissionPolicy", "csflow-stored-templates")
    binding = find(docs, "ValidatingAdmissionPolicyBinding", "csflow-stored-templates")
    assert policy["spec"]["paramKind"] == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
    }
    assert binding["spec"]["paramRef"]["parameterNotFoundAction"] == "Deny"
    (selector,) = binding["spec"]["paramRef"]["selector"]["matchExpressions"]
    assert selector["operator"] == "Exists"
    # Every csflow template is a param, so each one's stored copies are compared.
    assert {t["metadata"]["name"] for t in templates} == {simulate.NAME, sweep.NAME, publish.NAME}
    assert all(selector["key"] in t["metadata"]["labels"] for t in templates)


def _value_rule(policy: dict, name: str):
    """What badValues admits for a parameter: its regular expression (CEL's string
    escapes undone; RE2 and Python read these the same) and its length bound."""
    bad = _variable(policy, "badValues")
    rule = re.search(
        rf"p.name == '{name}'\s*\? p.value.matches\('((?:[^'\\]|\\.)*)'\)"
        r"(?:\s*&& size\(p.value\) <= (\d+))?",
        bad,
    )
    assert rule, name
    pattern = re.compile(rule.group(1).encode().decode("unicode_escape"))
    longest = int(rule.group(2) or 10**9)
    return lambda value: bool(pattern.fullmatch(value)) and len(value) <= longest


def test_a_sweeps_parameters_are_admitted_as_csflow_writes_them_and_nothing_else(policy):
    admits = {name: _value_rule(policy, name) for name in ("axis", "points", "labels")}
    for size in (1, 3, 100):
        parameters = _sweep_workflow(size)["spec"]["arguments"]["parameters"]
        values = {p["name"]: p["value"] for p in parameters}
        assert all(admits[name](values[name]) for name in admits), size
    assert admits["axis"]("Tax Information.pwages")
    assert admits["labels"](json.dumps(["x" * 64] * 100))
    refused = {
        "points": [
            "[]",
            json.dumps([str(uuid.UUID(int=i + 1, version=4)) for i in range(101)]),
            '["../../etc"]',
            '["00000000-0000-4000-8000-000000000001", "job-1"]',
        ],
        "labels": [
            '["a\\"]',
            '["{{workflow.name}}"]',
            '["x" , "y"]',
            "not json",
            json.dumps(["x"] * 1500),
        ],
        "axis": ["", "-year", "year;rm", "a" * 200],
    }
    for name, values in refused.items():
        for value in values:
            assert not admits[name](value), (name, value)


def test_a_sweep_is_named_and_runs_its_image_as_a_simulation_does():
    workflow = _sweep_workflow()
    values = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
    assert workflow["metadata"]["name"] == "sweep-" + values["job-id"]
    assert workflow["spec"]["workflowTemplateRef"] == {"name": sweep.NAME}
    assert values["model-secret"] == "pslmodels-tax-cruncher-secrets"
