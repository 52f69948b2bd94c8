"""Strict schema checks: every generated Workflow and WorkflowTemplate against
Argo v4.0.5's CRD schema with every object closed; core Kubernetes objects
with kubernetes-validate. Broken documents must be rejected."""

from __future__ import annotations

import copy

import pytest

from csflow.sdk.argo import schema as argo_schema

from .conftest import find, make_simulation_workflow


def test_closing_the_schema_adds_additional_properties_false_only_where_objects_are_typed():
    schema = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"a": {"type": "string"}}},
            "free": {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "properties": {"b": {}},
            },
            "map": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    closed = argo_schema.close_objects(schema)
    assert closed["additionalProperties"] is False
    assert closed["properties"]["spec"]["additionalProperties"] is False
    assert "additionalProperties" not in closed["properties"]["free"]
    assert closed["properties"]["map"]["additionalProperties"] == {"type": "string"}
    assert "additionalProperties" not in schema  # the input is left alone


def test_validators_are_built_once():
    assert argo_schema.crd_validator("Workflow") is argo_schema.crd_validator("Workflow")


def test_every_flow_template_passes_the_strict_schema(templates):
    assert templates, "no flow templates were built"
    for template in templates:
        assert argo_schema.schema_findings(template) == [], template["metadata"]["name"]


def test_the_simulation_workflow_passes_the_strict_schema(sim_workflow):
    assert argo_schema.schema_findings(sim_workflow) == []


def test_every_svc_config_document_passes_its_schema(service_docs):
    problems = [str(f) for doc in service_docs for f in argo_schema.schema_findings(doc)]
    assert problems == []


@pytest.mark.parametrize(
    "break_it, expected",
    [
        (
            lambda w: w["spec"]["ttlStrategy"].update(secondsAfterCompletin=10),
            "secondsAfterCompletin",
        ),
        (lambda w: w["spec"].update(activeDeadlineSeconds="soon"), "activeDeadlineSeconds"),
        (lambda w: w["spec"]["podGC"].update(strategy="Sometimes"), "podGC.strategy"),
        (lambda w: w["metadata"].update(labelz={"a": "b"}), "labelz"),
        (lambda w: w["spec"]["arguments"]["parameters"][0].update(valeu="x"), "valeu"),
    ],
    ids=[
        "typo-in-ttl",
        "deadline-not-a-number",
        "unknown-podgc-strategy",
        "typo-in-metadata",
        "typo-in-argument",
    ],
)
def test_a_broken_workflow_is_rejected(break_it, expected):
    workflow = make_simulation_workflow()
    break_it(workflow)
    findings = argo_schema.schema_findings(workflow)
    assert findings, "the broken workflow passed"
    assert any(expected in f"{f.path} {f.message}" for f in findings), findings


def test_a_broken_template_is_rejected_with_the_path_to_the_problem(simulate_template):
    template = copy.deepcopy(simulate_template)
    template["spec"]["templates"][0]["container"]["imagePullPolicy"] = 3
    template["spec"]["templates"][1]["retryStrategy"] = {"limit": "2", "backof": {}}
    findings = argo_schema.schema_findings(template)
    paths = {f.path for f in findings}
    assert "spec.templates[0].container.imagePullPolicy" in paths
    assert "spec.templates[1].retryStrategy" in paths


def test_a_broken_core_object_is_rejected(service_docs):
    deployment = find(service_docs, "Deployment", "csflow-redis")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRot"] = True
    findings = argo_schema.schema_findings(deployment)
    assert len(findings) == 1 and "runAsNonRot" in findings[0].message
    role = find(service_docs, "Role", "csflow-executor")
    role["rules"][0]["verb"] = ["get"]
    assert argo_schema.schema_findings(role)


def test_an_unknown_kind_or_a_non_object_is_a_finding():
    assert argo_schema.schema_findings(
        {"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor", "metadata": {"name": "x"}}
    )
    assert argo_schema.schema_findings({"metadata": {"name": "x"}})
    assert argo_schema.schema_findings(["not", "a", "mapping"])


def test_finding_lines_name_the_document_and_path(sim_workflow):
    sim_workflow["spec"]["podGC"]["strategi"] = "x"
    [finding] = argo_schema.schema_findings(sim_workflow)
    assert str(finding).startswith(f"Workflow/{sim_workflow['metadata']['name']}: spec.podGC: ")
