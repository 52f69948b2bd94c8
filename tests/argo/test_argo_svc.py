"""``csflow svc config``: the full set of manifests, valid, lint-clean, with
least privilege in RBAC and NetworkPolicies, and no secret value anywhere."""

from __future__ import annotations

import json
import re

import yaml
from typer.testing import CliRunner

from csflow.cli.app import app
from csflow.sdk.argo import lint, schema
from csflow.sdk.core import steps
from csflow.sdk.ops import manifests, redis_acl

from .conftest import find

runner = CliRunner()


def svc_config(*args: str, env: dict | None = None):
    return runner.invoke(app, ["svc", "config", *args], env=env)


def test_svc_config_prints_the_full_set_for_kubectl(tmp_path):
    result = svc_config("-o", "-", env={"CSFLOW_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for expected in [
        ("Namespace", "csflow"),
        ("Role", "argo-controller"),
        ("Role", "argo-server"),
        ("Role", "csflow-executor"),
        ("ConfigMap", "workflow-controller-configmap"),
        ("Deployment", "workflow-controller"),
        ("Deployment", "argo-server"),
        ("Deployment", "csflow-redis"),
        ("Service", "csflow-redis"),
        ("NetworkPolicy", "model-egress"),
        ("NetworkPolicy", "default-deny-ingress"),
        ("WorkflowTemplate", "csflow-simulate"),
        ("ValidatingAdmissionPolicy", "csflow-workflows"),
        ("ValidatingAdmissionPolicyBinding", "csflow-workflows"),
    ]:
        assert expected in kinds, expected
    templates, missing = manifests.flow_templates()
    assert {("WorkflowTemplate", t["metadata"]["name"]) for t in templates} <= kinds
    assert docs[0]["kind"] == "Namespace"  # applied first
    namespaced = [d for d in docs if d["kind"] not in manifests.CLUSTER_SCOPED_KINDS]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"csflow"}
    cluster_scoped = [d for d in docs if d["kind"] in manifests.CLUSTER_SCOPED_KINDS]
    assert all("namespace" not in d["metadata"] for d in cluster_scoped)
    # Everything in it passes the strict schema and the lint.
    assert [str(f) for d in docs for f in schema.schema_findings(d)] == []
    assert lint.lint_documents(docs) == []


def test_svc_config_writes_a_file_atomically_and_takes_settings(tmp_path):
    out = tmp_path / "out" / "csflow.yaml"
    env = {
        "CSFLOW_HOME": str(tmp_path),
        "CSFLOW_STORAGE_URL": "gs://results-bucket",
        "CSFLOW_WEBAPP_URL": "https://compute.studio",
        "CSFLOW_IMAGE": "registry.example/csflow:9",
    }
    result = svc_config("-o", str(out), "--artifact-bucket", "my-artifacts", env=env)
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(out.read_text()))
    config = find(docs, "ConfigMap", "csflow-platform")["data"]
    assert config["CSFLOW_STORAGE_URL"] == "gs://results-bucket"
    assert config["CSFLOW_WEBAPP_URL"] == "https://compute.studio"
    assert config["CSFLOW_IMAGE_REGISTRIES"] == "gcr.io/csflow"  # the configured registry
    repository = yaml.safe_load(
        find(docs, "ConfigMap", "workflow-controller-configmap")["data"]["artifactRepository"]
    )
    assert repository["gcs"]["bucket"] == "my-artifacts"
    simulate = find(docs, "WorkflowTemplate", "csflow-simulate")
    platform_images = {
        t["container"]["image"]
        for t in simulate["spec"]["templates"]
        if t.get("metadata", {}).get("labels", {}).get(steps.ENVIRONMENT_LABEL) == steps.PLATFORM
    }
    assert platform_images == {"registry.example/csflow:9"}
    assert not list(out.parent.glob(".*tmp"))


def test_no_secret_value_is_in_the_manifests(service_docs):
    secrets = [d for d in service_docs if d["kind"] == "Secret"]
    # Only service-account token Secrets, which Kubernetes fills in itself.
    assert secrets and all(s["type"] == "kubernetes.io/service-account-token" for s in secrets)
    assert all("data" not in s and "stringData" not in s for s in secrets)
    text = json.dumps(service_docs).lower()
    for word in ("password", "passwd", "privatekey", "private_key", "bearer "):
        assert word not in text
    # Any variable that looks like a credential comes from a Secret, never a value.
    containers = [
        c
        for d in service_docs
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
    ]
    containers += [
        t["container"]
        for d in service_docs
        if d["kind"] == "WorkflowTemplate"
        for t in d["spec"]["templates"]
        if "container" in t
    ]
    for container in containers:
        for variable in container.get("env", []):
            if re.search(r"PASSWORD|TOKEN|SECRET|KEY", variable["name"]):
                assert "value" not in variable, variable["name"]


def test_rbac_is_namespaced_and_least_privilege(service_docs):
    kinds = {d["kind"] for d in service_docs}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    roles = {d["metadata"]["name"]: d["rules"] for d in service_docs if d["kind"] == "Role"}
    bindings = {d["metadata"]["name"]: d for d in service_docs if d["kind"] == "RoleBinding"}
    # The executor may only report task results.
    assert roles["csflow-executor"] == [
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["workflowtaskresults"],
            "verbs": ["create", "patch"],
        }
    ]
    # With client auth the server's own account only reads: configuration, and
    # the workflows and templates its informers watch.
    assert roles["argo-server"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "watch", "list"]},
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["workflows", "workflowtemplates"],
            "verbs": ["get", "watch", "list"],
        },
    ]
    # No role may read secrets except the controller (artifact credentials).
    for name, rules in roles.items():
        if name != "argo-controller":
            assert not any("secrets" in r["resources"] for r in rules), name
    # The submitter cannot delete workflows or write templates.
    for rule in roles["csflow-submitter"]:
        assert "delete" not in rule["verbs"]
        if "workflowtemplates" in rule["resources"]:
            assert set(rule["verbs"]) <= {"get", "list"}
    # Step pods' accounts have no role at all, and mount no token.
    bound = {s["name"] for b in bindings.values() for s in b["subjects"]}
    for account in (steps.WORKFLOW_SERVICE_ACCOUNT, steps.MODEL_SERVICE_ACCOUNT):
        assert account not in bound
        assert (
            find(service_docs, "ServiceAccount", account)["automountServiceAccountToken"] is False
        )
    # Argo finds the executor's token by name (<account>.service-account-token).
    token = find(service_docs, "Secret", f"{steps.EXECUTOR_SERVICE_ACCOUNT}.service-account-token")
    assert (
        token["metadata"]["annotations"]["kubernetes.io/service-account.name"]
        == steps.EXECUTOR_SERVICE_ACCOUNT
    )


def test_controller_defaults_and_executor_config_are_valid(service_docs):
    data = find(service_docs, "ConfigMap", "workflow-controller-configmap")["data"]
    defaults = yaml.safe_load(data["workflowDefaults"])
    as_workflow = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", **defaults}
    as_workflow["metadata"] = {**defaults["metadata"], "name": "defaults"}
    assert schema.schema_findings(as_workflow) == []
    spec = defaults["spec"]
    assert spec["podGC"]["strategy"] == "OnPodCompletion" and spec["ttlStrategy"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["executor"]["serviceAccountName"] == steps.EXECUTOR_SERVICE_ACCOUNT
    executor = yaml.safe_load(data["executor"])
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x"},
        "spec": {"containers": [{"name": "wait", "image": "argoexec", **executor}]},
    }
    assert schema.schema_findings(pod) == []
    assert executor["securityContext"]["allowPrivilegeEscalation"] is False
    repository = yaml.safe_load(data["artifactRepository"])
    # Keyless: Argo v4.0.5's executor logs a key secret (GHSA-7vf8-2cr6-54mf).
    assert set(repository["gcs"]) == {"bucket", "keyFormat"}
    assert "{{workflow.name}}" in repository["gcs"]["keyFormat"]
    # Only Workflows that reference a WorkflowTemplate run.
    assert yaml.safe_load(data["workflowRestrictions"]) == {"templateReferencing": "Strict"}


def test_an_artifact_key_secret_is_an_opt_in(tmp_path):
    result = svc_config(
        "-o", "-", "--artifact-key-secret", "gcs-key", env={"CSFLOW_HOME": str(tmp_path)}
    )
    assert result.exit_code == 0, result.output
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    data = find(docs, "ConfigMap", "workflow-controller-configmap")["data"]
    repository = yaml.safe_load(data["artifactRepository"])
    assert repository["gcs"]["serviceAccountKeySecret"] == {
        "name": "gcs-key",
        "key": "serviceAccountKey",
    }


def test_redis_matches_the_acl_users_as_data(service_docs):
    deployment = find(service_docs, "Deployment", redis_acl.REDIS_SERVICE)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == redis_acl.redis_server_args()
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == redis_acl.ACL_DIR)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == redis_acl.ACL_SECRET
    service = find(service_docs, "Service", redis_acl.REDIS_SERVICE)
    assert service["spec"]["ports"][0]["port"] == redis_acl.REDIS_PORT
    assert pod["automountServiceAccountToken"] is False


def test_network_policies_fence_model_pods(service_docs):
    policies = {
        d["metadata"]["name"]: d["spec"] for d in service_docs if d["kind"] == "NetworkPolicy"
    }
    assert policies["default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    model = policies["model-egress"]
    assert model["podSelector"] == {"matchLabels": {steps.ENVIRONMENT_LABEL: steps.MODEL}}
    blocks = [
        to["ipBlock"] for rule in model["egress"] for to in rule.get("to", []) if "ipBlock" in to
    ]
    assert blocks and all(b["cidr"] == "0.0.0.0/0" for b in blocks)
    for private in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"):
        assert all(private in b["except"] for b in blocks)
    redis = policies["redis"]
    allowed = redis["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][0]
    assert allowed["key"] == steps.ENVIRONMENT_LABEL and set(allowed["values"]) == {
        "model",
        "platform",
    }
    assert "Egress" in redis["policyTypes"] and not redis.get("egress")


def test_every_pod_meets_the_restricted_pod_security_level(service_docs, templates):
    namespace = find(service_docs, "Namespace", "csflow")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for deployment in (d for d in service_docs if d["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"][
                "drop"
            ] == ["ALL"]
    for template in templates:
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True
        for step in template["spec"]["templates"]:
            if "container" in step:
                context = step["container"]["securityContext"]
                assert context["allowPrivilegeEscalation"] is False, step["name"]
                assert context["capabilities"]["drop"] == ["ALL"], step["name"]
