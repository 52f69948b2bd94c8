"""The cluster's manifests: what ``csflow svc config`` prints and an operator applies.

``service_manifests`` reads ``cluster/argo/kustomization.yaml`` and puts the
flows' WorkflowTemplates, built fresh, in place of their golden files.

``cluster/argo`` is a kustomize base in the checkout and, as the package
``csflow.cluster.argo``, package data in the wheel (pyproject.toml), so an
installed csflow (a wheel, the csflow image) reads the same files, found with
``importlib.resources``; an editable install reads the checkout's folder.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from csflow.sdk.argo.schema import load_documents
from csflow.sdk.core.steps import PLATFORM_CONFIG

CLUSTER_PACKAGE = "csflow.cluster.argo"
# A real folder: csflow is installed unzipped (pip, uv), and in a checkout it is cluster/argo.
CLUSTER_DIR = Path(str(resources.files(CLUSTER_PACKAGE)))
GOLDEN_DIR = CLUSTER_DIR / "golden"
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "PriorityClass",
        "CustomResourceDefinition",
        "ClusterWorkflowTemplate",
    }
)


def flow_templates(platform_image: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Every flow's WorkflowTemplate, built fresh, and the names of flows whose
    module does not exist yet (skipped)."""
    import importlib
    import inspect

    from csflow import flows

    templates, missing = [], []
    for name in flows.FLOW_NAMES:
        module_name = f"csflow.flows.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            missing.append(name)
            continue
        kwargs = {}
        if platform_image and "platform_image" in inspect.signature(module.build).parameters:
            kwargs["platform_image"] = platform_image
        templates.append(module.build(**kwargs).to_dict())
    return templates, missing


def golden_path(template_name: str) -> Path:
    return GOLDEN_DIR / f"{template_name}.yaml"


def service_manifests(
    platform_image: str | None = None,
    artifact_bucket: str | None = None,
    platform_env: dict[str, str] | None = None,
    artifact_key_secret: str | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every document an operator applies, in ``cluster/argo/kustomization.yaml``'s
    order, with the flows' WorkflowTemplates built fresh in place of their golden
    files; and the flows skipped because their module does not exist yet.

    This reads the kustomization's ``resources`` and ``namespace`` only: csflow's
    base uses no other kustomize feature, and the kustomize binary is not a
    Python dependency (``kubectl apply -k cluster/argo`` gives the same set).

    ``artifact_key_secret`` names a Secret holding a GCS key for Argo's artifact
    repository; without it artifacts use the pods' own identity (keyless), because
    Argo v4.0.5's executor logs that key (GHSA-7vf8-2cr6-54mf)."""
    kustomization = yaml.safe_load((CLUSTER_DIR / "kustomization.yaml").read_text())
    namespace = kustomization.get("namespace")
    templates, missing = flow_templates(platform_image)
    fresh = {t["metadata"]["name"]: t for t in templates}
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        path = CLUSTER_DIR / resource
        if path.parent == GOLDEN_DIR:
            template = fresh.pop(path.stem, None)
            if template is not None:
                docs.append(template)
            continue
        docs.extend(load_documents(path.read_text(), str(path)))
    docs.extend(fresh.values())  # a flow not yet listed in the kustomization
    for doc in docs:
        if namespace and doc.get("kind") not in CLUSTER_SCOPED_KINDS:
            doc.setdefault("metadata", {})["namespace"] = namespace
        if (
            (artifact_bucket or artifact_key_secret)
            and doc.get("kind") == "ConfigMap"
            and doc["metadata"]["name"] == "workflow-controller-configmap"
        ):
            repository = yaml.safe_load(doc["data"]["artifactRepository"])
            if artifact_bucket:
                repository["gcs"]["bucket"] = artifact_bucket
            if artifact_key_secret:
                repository["gcs"]["serviceAccountKeySecret"] = {
                    "name": artifact_key_secret,
                    "key": "serviceAccountKey",
                }
            doc["data"]["artifactRepository"] = yaml.safe_dump(repository, sort_keys=False)
        if (
            platform_env
            and doc.get("kind") == "ConfigMap"
            and doc["metadata"]["name"] == PLATFORM_CONFIG
        ):
            doc["data"].update(platform_env)
    return docs, missing
