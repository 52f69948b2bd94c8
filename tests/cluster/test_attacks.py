"""Attacks with a leaked webapp token, tried on the real cluster: each one fails.

The webapp's identity is ``csflow-submitter`` (cluster/argo/rbac.yaml). It may
create, watch, stop and resume Workflows and read their pods' logs. These tests
hold its token and try what an attacker would: a Workflow that is not csflow's
(inline templates, a service account with API rights, a pod spec patch,
artifact GC, a preset stored spec in the status, another image, another
model's Secret, ...), the same through the Argo Server, a later update of a
running Workflow, and the Kubernetes API around them (pods, secrets, tokens,
exec). The admission policy ``csflow-workflows`` (cluster/argo/admission-policy.yaml)
and RBAC refuse them in the API server; Argo's ``templateReferencing: Strict``
refuses the same Workflows again in the controller, tested as an operator who
is outside the policy.

Creates are dry runs where a refusal is expected (the API server runs
validating admission for dry runs too), so a failed defence leaves nothing
running; the control test proves the same request shape is admitted when it
is csflow's own.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

import pytest

from csflow.flows import publish, simulate
from csflow.sdk.core import steps
from csflow.sdk.core.model_config import find_model_config

from .conftest import REPO, eventually, new_job_id
from .conftest import simulation_workflow as simulation

pytestmark = pytest.mark.cluster

POLICY = "ValidatingAdmissionPolicy 'csflow-workflows'"
GROUP, VERSION = "argoproj.io", "v1alpha1"


def publish_run() -> dict:
    config = find_model_config("PSLmodels", "Tax-Cruncher", [REPO / "config"])
    return publish.publish_workflow_for(config, new_job_id(), "gcr.io/csflow", False, "").to_dict()


def create(api_client, namespace: str, workflow: dict, dry_run: bool = True) -> dict:
    from kubernetes import client

    return client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "workflows", workflow, dry_run="All" if dry_run else None
    )


def refusal(call: Callable[[], object]) -> tuple[int, str]:
    from kubernetes.client.rest import ApiException

    with pytest.raises(ApiException) as refused:
        call()
    body = refused.value.body or ""
    try:
        message = json.loads(body).get("message", body)
    except ValueError:
        message = body
    return refused.value.status, message


def _set(path: str, value):
    def change(workflow: dict) -> None:
        *parents, leaf = path.split(".")
        node = workflow
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value

    return change


def _parameter(name: str, value: str):
    def change(workflow: dict) -> None:
        for parameter in workflow["spec"]["arguments"]["parameters"]:
            if parameter["name"] == name:
                parameter["value"] = value

    return change


def _inline(workflow: dict) -> None:
    del workflow["spec"]["workflowTemplateRef"]
    workflow["spec"]["entrypoint"] = "steal"
    workflow["spec"]["serviceAccountName"] = "argo"
    workflow["spec"]["templates"] = [
        {"name": "steal", "container": {"image": "alpine", "command": ["cat", "/var/run/x"]}}
    ]


def _drop_parameter(name: str):
    def change(workflow: dict) -> None:
        parameters = workflow["spec"]["arguments"]["parameters"]
        workflow["spec"]["arguments"]["parameters"] = [p for p in parameters if p["name"] != name]

    return change


def _add_parameter(parameter: dict):
    def change(workflow: dict) -> None:
        workflow["spec"]["arguments"]["parameters"].append(parameter)

    return change


def _value_from(workflow: dict) -> None:
    parameter = workflow["spec"]["arguments"]["parameters"][0]
    parameter["valueFrom"] = {"configMapKeyRef": {"name": "csflow-platform", "key": "x"}}


_STOLEN_SPEC = {
    "entrypoint": "steal",
    "serviceAccountName": "argo",
    "templates": [{"name": "steal", "container": {"image": "alpine"}}],
}
_ANOTHER_POD = {"podSpecPatch": json.dumps({"serviceAccountName": "argo"})}

# (what the attacker changes in csflow's own simulation, what the refusal says)
SIMULATION_ATTACKS = {
    "inline-templates": (_inline, "must reference the WorkflowTemplate"),
    "another-template": (_set("spec.workflowTemplateRef.name", "csflow-x"), "must reference"),
    "cluster-template": (_set("spec.workflowTemplateRef.clusterScope", True), "must reference"),
    "service-account": (_set("spec.serviceAccountName", "argo"), "it sets serviceAccountName"),
    "pod-spec-patch": (_set("spec.podSpecPatch", '{"hostNetwork":true}'), "it sets podSpecPatch"),
    "host-network": (_set("spec.hostNetwork", True), "it sets hostNetwork"),
    "security-context": (_set("spec.securityContext", {"runAsUser": 0}), "it sets securityContext"),
    "volumes": (
        _set("spec.volumes", [{"name": "h", "hostPath": {"path": "/"}}]),
        "it sets volumes",
    ),
    "extra-templates": (_set("spec.templates", _STOLEN_SPEC["templates"]), "it sets templates"),
    "entrypoint": (_set("spec.entrypoint", "run"), "it sets entrypoint"),
    "executor": (_set("spec.executor", {"serviceAccountName": "argo"}), "it sets executor"),
    "hooks": (_set("spec.hooks", {"exit": {"template": "run"}}), "it sets hooks"),
    "workflow-metadata": (
        _set("spec.workflowMetadata", {"labels": {"a": "b"}}),
        "workflowMetadata",
    ),
    # GHSA-48p8-g2fx-3wwm: Strict lets artifactGC through, with its own pod.
    "artifact-gc": (
        _set("spec.artifactGC", {"strategy": "OnWorkflowDeletion", **_ANOTHER_POD}),
        "it sets artifactGC",
    ),
    # Strict checks the spec; the controller runs a stored spec it finds in the status.
    "stored-spec": (_set("status.storedWorkflowTemplateSpec", _STOLEN_SPEC), "status is the"),
    "stored-templates": (
        _set("status.storedTemplates", {"namespaced/csflow-x/steal": _STOLEN_SPEC["templates"][0]}),
        "status is the",
    ),
    "artifacts": (
        _set("spec.arguments.artifacts", [{"name": "x", "raw": {"data": "x"}}]),
        "parameters only",
    ),
    "value-from": (_value_from, "each parameter is a name and a value"),
    "extra-parameter": (_add_parameter({"name": "x", "value": "y"}), "are exactly"),
    "missing-parameter": (_drop_parameter("timeout"), "are exactly"),
    "templated-value": (
        _parameter("cpu", "{{workflow.serviceAccountName}}"),
        "values csflow does not write: cpu",
    ),
    "tag": (_parameter("tag", "../../x"), "values csflow does not write: tag"),
    "memory": (_parameter("memory-limit", "1Ei"), "values csflow does not write: memory-limit"),
    "other-registry": (
        _parameter("image", "evil.example/pslmodels_tax-cruncher:1"),
        "own model's image",
    ),
    "other-model-image": (
        _parameter("image", "gcr.io/csflow/pslmodels_tax-brain:1"),
        "own model's image",
    ),
    "image-suffix": (
        _parameter("image", "gcr.io/csflow/pslmodels_tax-cruncher-evil:1"),
        "own model's image",
    ),
    "platform-secret": (_parameter("model-secret", steps.PLATFORM_SECRET), "model's own Secret"),
    "name": (_set("metadata.name", "sim-other"), "named sim-JOB_ID"),
}


def test_csflow_s_own_workflows_are_admitted_for_the_submitter(cluster, submitter):
    """The control: the requests below differ from these only in the attack."""
    for workflow in (simulation(), publish_run()):
        admitted = create(submitter, cluster.namespace, workflow)
        assert admitted["metadata"]["name"] == workflow["metadata"]["name"]


@pytest.mark.parametrize("attack", sorted(SIMULATION_ATTACKS))
def test_the_submitter_cannot_create_a_workflow_that_is_not_csflows(cluster, submitter, attack):
    change, reason = SIMULATION_ATTACKS[attack]
    workflow = simulation()
    change(workflow)
    status, message = refusal(lambda: create(submitter, cluster.namespace, workflow))
    assert status in (403, 422), (status, message)
    assert POLICY in message and reason in message, message


@pytest.mark.parametrize(
    "change, reason",
    [
        (_parameter("registry", "evil.example/x"), "pushes to one of the registries"),
        (_parameter("config-dir", "/etc"), "values csflow does not write: config-dir"),
        (_parameter("model-secret", "csflow-redis-acl"), "model's own Secret"),
        (_set("spec.entrypoint", "build"), "it sets entrypoint"),
    ],
    ids=["registry", "config-dir", "secret", "entrypoint"],
)
def test_the_submitter_cannot_create_a_publish_that_is_not_csflows(
    cluster, submitter, change, reason
):
    workflow = publish_run()
    change(workflow)
    status, message = refusal(lambda: create(submitter, cluster.namespace, workflow))
    assert POLICY in message and reason in message, (status, message)


def test_stored_templates_in_the_status_must_be_csflows_own(cluster, submitter):
    """The Argo Server stores the referenced templates in a new Workflow's status, and
    the controller runs a stored template before the WorkflowTemplate's: one of an
    attacker's (another command beside the platform secrets) would pass Strict. Only
    copies of csflow's own are admitted (policy csflow-stored-templates)."""
    live = cluster.custom.get_namespaced_custom_object(
        GROUP, VERSION, cluster.namespace, "workflowtemplates", simulate.NAME
    )
    own = {f"namespaced/{simulate.NAME}/{t['name']}": t for t in live["spec"]["templates"]}
    workflow = simulation()
    workflow["status"] = {"storedTemplates": copy.deepcopy(own)}
    create(submitter, cluster.namespace, workflow)  # admitted: csflow's own
    for change in (
        lambda t: t["container"].update(command=["sh", "-c", "env"]),
        lambda t: t.update(serviceAccountName="argo", automountServiceAccountToken=True),
        lambda t: t.update(podSpecPatch='{"hostNetwork":true}'),
    ):
        workflow = simulation()
        stored = copy.deepcopy(own)
        change(stored[f"namespaced/{simulate.NAME}/outputs"])
        workflow["status"] = {"storedTemplates": stored}
        status, message = refusal(lambda w=workflow: create(submitter, cluster.namespace, w))
        assert "csflow-stored-templates" in message and "own templates" in message, message


def test_a_submitted_workflow_can_be_stopped_but_not_rewritten(cluster, submitter, workflows):
    from kubernetes import client

    workflow = simulation()
    workflow["spec"]["suspend"] = True  # nothing of it runs
    name = workflow["metadata"]["name"]
    create(submitter, cluster.namespace, workflow, dry_run=False)
    workflows.append(name)
    api = client.CustomObjectsApi(submitter)

    def patch(body: dict):
        return api.patch_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, "workflows", name, body
        )

    eventually(
        lambda: (cluster.workflow(name) or {}).get("status", {}).get("phase"),
        what="the controller takes the workflow up",
    )
    for attack, reason in [
        ({"spec": {"serviceAccountName": "argo"}}, "may change only in shutdown and suspend"),
        ({"spec": {"workflowTemplateRef": {"name": publish.NAME}}}, "may change only"),
        ({"spec": {"podSpecPatch": '{"hostNetwork":true}'}}, "may change only"),
        ({"status": {"storedWorkflowTemplateSpec": _STOLEN_SPEC}}, "status is the controller's"),
    ]:
        status, message = refusal(lambda body=attack: patch(body))
        assert POLICY in message and reason in message, (attack, status, message)
    stopped = patch({"spec": {"shutdown": "Stop"}})
    assert stopped["spec"]["shutdown"] == "Stop"
    live = cluster.workflow(name)
    assert "serviceAccountName" not in live["spec"] and "podSpecPatch" not in live["spec"]


def test_the_argo_server_relays_the_refusal(cluster, argo_client):
    """The Argo Server submits with the caller's token, so the policy judges it too."""
    from hera.workflows.models import Workflow as WorkflowModel
    from hera.workflows.models import WorkflowCreateRequest

    workflow = simulation()
    _inline(workflow)
    service = argo_client.backend.service
    with pytest.raises(Exception) as refused:
        service.create_workflow(
            WorkflowCreateRequest(workflow=WorkflowModel.model_validate(workflow)),
            namespace=cluster.namespace,
        )
    assert "csflow-workflows" in str(refused.value), refused.value
    assert cluster.workflow(workflow["metadata"]["name"]) is None


def test_the_submitter_token_reaches_no_pod_secret_token_or_shell(cluster, submitter):
    from kubernetes import client
    from kubernetes.stream import stream

    core = client.CoreV1Api(submitter)
    namespace = cluster.namespace
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "csflow-attack"},
        "spec": {
            "serviceAccountName": "argo",
            "containers": [{"name": "x", "image": "gcr.io/csflow/csflow:0.1.0"}],
        },
    }
    attempts = {
        "create a pod": lambda: core.create_namespaced_pod(namespace, pod, dry_run="All"),
        "read the platform secret": lambda: core.read_namespaced_secret(
            steps.PLATFORM_SECRET, namespace
        ),
        "list secrets": lambda: core.list_namespaced_secret(namespace),
        "read the controller's config": lambda: core.read_namespaced_config_map(
            "workflow-controller-configmap", namespace
        ),
        "list config maps": lambda: core.list_namespaced_config_map(namespace),
        "mint a token for the controller": lambda: core.create_namespaced_service_account_token(
            "argo", namespace, {"spec": {"audiences": ["https://kubernetes.default.svc"]}}
        ),
        "patch a template": lambda: client.CustomObjectsApi(
            submitter
        ).patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "workflowtemplates", simulate.NAME, {"spec": {}}
        ),
        "delete a workflow": lambda: client.CustomObjectsApi(
            submitter
        ).delete_namespaced_custom_object(GROUP, VERSION, namespace, "workflows", "any"),
    }
    for what, attempt in attempts.items():
        status, message = refusal(attempt)
        assert status == 403, (what, status, message)
    some_pod = next(iter(cluster.core.list_namespaced_pod(namespace).items), None)
    if some_pod is not None:  # exec needs a pod to aim at; any will do
        with pytest.raises(Exception) as refused:
            stream(
                core.connect_get_namespaced_pod_exec,
                some_pod.metadata.name,
                namespace,
                command=["sh", "-c", "id"],
                stderr=True,
                stdout=True,
                stdin=False,
                tty=False,
            )
        assert "403" in str(refused.value) or "Forbidden" in str(refused.value), refused.value


@pytest.mark.parametrize(
    "change, error",
    [
        (_inline, "must use workflowTemplateRef"),
        (_set("spec.serviceAccountName", "argo"), "ServiceAccountName"),
    ],
    ids=["inline", "service-account"],
)
def test_the_controller_runs_only_references_under_strict(cluster, workflows, change, error):
    """Argo's own fence, behind the policy: an operator (outside the policy) submits
    what the policy would refuse, and the controller errors the Workflow, no pod made."""
    workflow = simulation()
    change(workflow)
    name = workflow["metadata"]["name"]
    cluster.custom.create_namespaced_custom_object(
        GROUP, VERSION, cluster.namespace, "workflows", copy.deepcopy(workflow)
    )
    workflows.append(name)
    ended = eventually(
        lambda: (
            (cluster.workflow(name) or {}).get("status", {}).get("phase") in ("Error", "Failed")
            and cluster.workflow(name)
        ),
        what=f"the controller refuses {name}",
    )
    assert error in ended["status"].get("message", ""), ended["status"]
    assert cluster.pods(name) == []
