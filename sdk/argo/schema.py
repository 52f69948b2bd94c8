"""Manifests, checked as a Kubernetes API server with Argo's CRDs would check them.

Since Argo Workflows v4 the official install ships the *full* CRDs, so a
cluster rejects a Workflow or WorkflowTemplate that breaks the schema. This
module runs the same check offline, and a stricter one: every object in the
CRD's ``openAPIV3Schema`` is closed (``additionalProperties: false``), so a
misspelt field (``secondsAfterCompletin``) is an error here, not a silently
ignored key on the cluster. Core Kubernetes objects (Namespace, Role,
Deployment, NetworkPolicy, ...) are checked with ``kubernetes-validate``,
strict as well.

The CRDs are data files of Argo v4.0.5 (the version hera 7 targets), found at
``$CSFLOW_ARGO_SCHEMA_DIR`` or ``../shared/argo-schema/v4.0.5`` beside the
checkout. Loading one takes under a second; each validator is built once per
process and cached.

Argo docs: https://argo-workflows.readthedocs.io/en/latest/installation/ and
https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema.exceptions import best_match

from csflow.sdk.core.errors import BadInput, CsflowError
from csflow.sdk.core.settings import REPO_ROOT

ARGO_VERSION = "v4.0.5"
ARGO_GROUP = "argoproj.io"
# The Kubernetes minor version core objects are checked against (GKE's regular
# channel at the time of writing; kubernetes-validate ships the schemas).
KUBERNETES_VERSION = "1.33"

# Which CRD file validates which kind. A ClusterWorkflowTemplate has the same
# shape as a WorkflowTemplate (its CRD is not among the shared data files).
_CRD_FILES = {
    "Workflow": "argoproj.io_workflows.yaml",
    "WorkflowTemplate": "argoproj.io_workflowtemplates.yaml",
    "ClusterWorkflowTemplate": "argoproj.io_workflowtemplates.yaml",
}
ARGO_KINDS = frozenset(_CRD_FILES)


_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
# Kubernetes' ObjectMeta (meta/v1), the fields a client may send.
OBJECT_META = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 253},
        "generateName": {"type": "string"},
        "namespace": {"type": "string", "maxLength": 63},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
        "uid": {"type": "string"},
        "resourceVersion": {"type": "string"},
        "generation": {"type": "integer"},
        "creationTimestamp": {"type": ["string", "null"]},
        "deletionTimestamp": {"type": ["string", "null"]},
        "deletionGracePeriodSeconds": {"type": "integer"},
        "managedFields": {"type": "array", "items": {"type": "object"}},
        "selfLink": {"type": "string"},
    },
}


@dataclass(frozen=True)
class Finding:
    """One problem in one document: where it is and what is wrong, on one line."""

    document: str  # "Kind/name"
    path: str  # "spec.templates[2].container" or "" for the whole document
    message: str

    def __str__(self) -> str:
        where = f" {self.path}:" if self.path else ""
        return f"{self.document}:{where} {self.message}"


class SchemaUnavailable(CsflowError):
    """Argo's CRD files are not where csflow looks for them."""


def schema_dir() -> Path:
    configured = os.environ.get("CSFLOW_ARGO_SCHEMA_DIR")
    if configured:
        return Path(configured)
    return REPO_ROOT.parent / "shared" / "argo-schema" / ARGO_VERSION


def document_name(doc: Any) -> str:
    if not isinstance(doc, dict):
        return "(not a mapping)"
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    name = metadata.get("name") or metadata.get("generateName") or "?"
    return f"{doc.get('kind', '?')}/{name}"


def close_objects(schema: Any) -> Any:
    """A copy of an OpenAPI v3 schema where every object with ``properties`` refuses
    unknown keys, unless Kubernetes marks it as free-form."""
    if isinstance(schema, list):
        return [close_objects(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: close_objects(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        closed["additionalProperties"] = False
    return closed


@functools.cache
def crd_validator(kind: str) -> jsonschema.protocols.Validator:
    """The strict validator for an Argo kind, built once per process."""
    path = schema_dir() / _CRD_FILES[kind]
    try:
        with open(path, "rb") as handle:
            crd = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except FileNotFoundError:
        raise SchemaUnavailable(
            f"Argo {ARGO_VERSION} CRD not found at {path} (set CSFLOW_ARGO_SCHEMA_DIR)"
        ) from None
    version = next(v for v in crd["spec"]["versions"] if v.get("served", True))
    schema = close_objects(version["schema"]["openAPIV3Schema"])
    # CRDs leave metadata opaque (the API server checks ObjectMeta itself); close it too.
    schema["properties"]["metadata"] = OBJECT_META
    # Kubernetes validates CRs with OpenAPI v3 rules, which Draft 7 matches for
    # everything these CRDs use (types, enums, anyOf for int-or-string).
    return jsonschema.Draft7Validator(schema)


def _path(error: jsonschema.ValidationError) -> str:
    parts: list[str] = []
    for part in error.absolute_path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts)


def _short(message: str, limit: int = 200) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 3] + "..."


def argo_schema_findings(doc: dict[str, Any]) -> list[Finding]:
    """Strict CRD-schema problems of an Argo object (empty when it is valid)."""
    validator = crd_validator(doc["kind"])
    name = document_name(doc)
    findings = []
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        if error.context:  # anyOf/oneOf: report the branch that came closest
            error = best_match(error.context)
        findings.append(Finding(name, _path(error), _short(error.message)))
    return findings


def kubernetes_findings(doc: dict[str, Any]) -> list[Finding]:
    """Strict schema problems of a core Kubernetes object, via kubernetes-validate."""
    try:
        import kubernetes_validate
    except ModuleNotFoundError:  # a dev dependency; say so rather than pass silently
        return [
            Finding(document_name(doc), "", "cannot check: kubernetes-validate is not installed")
        ]
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [
            Finding(
                document_name(doc),
                "",
                f"no Kubernetes {KUBERNETES_VERSION} schema for "
                f"{doc.get('apiVersion')} {doc.get('kind')}",
            )
        ]
    except kubernetes_validate.ValidationError as exc:
        error = exc  # a copy of the first jsonschema error
        if error.context:
            error = best_match(error.context)
        return [Finding(document_name(doc), _path(error), _short(error.message))]
    return []


def schema_findings(doc: Any) -> list[Finding]:
    """Schema problems of any manifest: Argo kinds against the strict CRDs, the
    rest against Kubernetes' own schemas."""
    if not isinstance(doc, dict) or not doc.get("kind") or not doc.get("apiVersion"):
        return [
            Finding(document_name(doc), "", "not a Kubernetes object (needs apiVersion and kind)")
        ]
    if str(doc["apiVersion"]).startswith(ARGO_GROUP + "/"):
        if doc["kind"] not in ARGO_KINDS:
            return [
                Finding(document_name(doc), "", f"no {ARGO_VERSION} schema for {doc['kind']} here")
            ]
        return argo_schema_findings(doc)
    return kubernetes_findings(doc)


def load_documents(text: str, source: str = "<input>") -> list[dict[str, Any]]:
    """The YAML (or JSON) documents of a file, skipping empty ones."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise BadInput(f"{source}: not valid YAML: {' '.join(str(exc).split())}") from None
    for doc in docs:
        if not isinstance(doc, dict):
            raise BadInput(f"{source}: each document must be a mapping, got {type(doc).__name__}")
    return docs


def dump_documents(docs: Iterable[dict[str, Any]]) -> str:
    """Documents as one multi-document YAML stream, as ``kubectl apply -f -`` reads it."""
    return "".join(
        "---\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)
        for doc in docs
    )
