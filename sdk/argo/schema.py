"""Manifests, checked as a Kubernetes API server with Argo's CRDs would check them.

Since Argo Workflows v4 the official install ships the *full* CRDs, so a
cluster rejects a Workflow or WorkflowTemplate that breaks the schema. This
module runs the same check offline, and a stricter one: every object in the
CRD's ``openAPIV3Schema`` is closed (``additionalProperties: false``), so a
misspelt field (``secondsAfterCompletin``) is an error here, not a silently
ignored key on the cluster. Core Kubernetes objects (Namespace, Role,
Deployment, NetworkPolicy, ...) are checked with ``kubernetes-validate``,
strict as well, when it is installed (a dev dependency, and the ``lint`` extra:
``pip install 'csflow[lint]'``; it carries every Kubernetes version's schemas).

csflow ships no copy of Argo's schema: the CRDs come from their source of
truth, an ``ArgoSchema`` built from one of

- a folder of Argo's CRD files as Argo publishes them
  (``manifests/base/crds/full/argoproj.io_workflows.yaml`` and
  ``argoproj.io_workflowtemplates.yaml``): ``crds_in_folder``, ``csflow lint
  --crds DIR``, or ``$CSFLOW_ARGO_SCHEMA_DIR`` (``default_schema``);
- a cluster's apiextensions API, read with the ``kubernetes`` client and a
  kubeconfig: ``crds_in_cluster``, ``csflow lint --kubeconfig PATH``.

Loading a CRD takes under a second; each source builds its validators once,
on first use.

Argo docs: https://argo-workflows.readthedocs.io/en/latest/installation/ and
https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema.exceptions import best_match

from csflow.sdk.core.errors import BadInput

# The Argo release hera 7 targets (its models are generated from it), and the
# CRDs csflow's own manifests are tested against.
ARGO_VERSION = "v4.0.5"
ARGO_GROUP = "argoproj.io"
# The Kubernetes minor version core objects are checked against (GKE's regular
# channel at the time of writing; kubernetes-validate ships the schemas).
KUBERNETES_VERSION = "1.33"

# Which CRD validates which kind, by its plural: Argo publishes each CRD as
# manifests/base/crds/full/argoproj.io_<plural>.yaml and a cluster serves it as
# <plural>.argoproj.io. A ClusterWorkflowTemplate has a WorkflowTemplate's shape.
_CRD_PLURALS = {
    "Workflow": "workflows",
    "WorkflowTemplate": "workflowtemplates",
    "ClusterWorkflowTemplate": "workflowtemplates",
}
ARGO_KINDS = frozenset(_CRD_PLURALS)


def crd_file(plural: str) -> str:
    return f"{ARGO_GROUP}_{plural}.yaml"


def crd_name(plural: str) -> str:
    return f"{plural}.{ARGO_GROUP}"


# The files a CRD folder must hold.
CRD_FILES = tuple(sorted({crd_file(plural) for plural in _CRD_PLURALS.values()}))
# What to give when no CRDs were: said in one line wherever they are missing.
GIVE_CRDS = (
    f"give --crds DIR (with {' and '.join(CRD_FILES)} from Argo's manifests/base/crds/full), "
    "--kubeconfig PATH (the cluster's CRDs) or CSFLOW_ARGO_SCHEMA_DIR=DIR"
)
LINT_EXTRA = "pip install 'csflow[lint]'"


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


class SchemaUnavailable(BadInput):
    """The schema a check needs is not at hand: no CRDs given, or not where they were
    said to be, or kubernetes-validate not installed."""


def schema_dir() -> Path | None:
    """``$CSFLOW_ARGO_SCHEMA_DIR``, a folder of Argo's CRD files, if set."""
    configured = os.environ.get("CSFLOW_ARGO_SCHEMA_DIR")
    return Path(configured) if configured else None


def document_name(doc: Any) -> str:
    if not isinstance(doc, dict):
        return "(not a mapping)"
    metadata = doc.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
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


def _strict_validator(crd: Any, kind_plural: str, where: str) -> jsonschema.protocols.Validator:
    """The strict validator of one CRD document: the served version's schema, every
    object closed, with Kubernetes' ObjectMeta for metadata."""
    names = crd.get("spec", {}).get("names", {}) if isinstance(crd, dict) else {}
    if (
        not isinstance(crd, dict)
        or crd.get("kind") != "CustomResourceDefinition"
        or names.get("plural") != kind_plural
    ):
        raise SchemaUnavailable(f"{where} is not Argo's {crd_name(kind_plural)} CRD")
    try:
        version = next(v for v in crd["spec"]["versions"] if v.get("served", True))
        openapi = version["schema"]["openAPIV3Schema"]
        spec = openapi["properties"]["spec"]
    except (KeyError, StopIteration, TypeError):
        spec = None
    if not isinstance(spec, dict) or "properties" not in spec:
        # Argo's minimal CRDs (v3's default install) leave spec opaque: nothing to check.
        raise SchemaUnavailable(
            f"{where} has no schema for spec (Argo's minimal CRD?): "
            "give the full CRDs (manifests/base/crds/full)"
        )
    schema = close_objects(openapi)
    # CRDs leave metadata opaque (the API server checks ObjectMeta itself); close it too.
    schema.setdefault("properties", {})["metadata"] = OBJECT_META
    # Kubernetes validates CRs with OpenAPI v3 rules, which Draft 7 matches for
    # everything these CRDs use (types, enums, anyOf for int-or-string).
    return jsonschema.Draft7Validator(schema)


class ArgoSchema:
    """The strict validators of Argo's kinds, from the CRDs of one source (a folder
    of Argo's CRD files, a cluster's apiextensions API). Each CRD is read on first
    use and its validator built once; safe to share between threads."""

    def __init__(
        self, source: str, read_crd: Callable[[str], Any], where: Callable[[str], str] | None = None
    ):
        self.source = source  # "folder DIR", "the cluster at https://..."
        self._read_crd = read_crd  # plural -> the CRD document
        self._where = where or (lambda plural: f"{crd_name(plural)} from {source}")
        self._validators: dict[str, jsonschema.protocols.Validator] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ArgoSchema({self.source})"

    def validator(self, kind: str) -> jsonschema.protocols.Validator:
        plural = _CRD_PLURALS[kind]
        with self._lock:
            if plural not in self._validators:
                crd = self._read_crd(plural)
                self._validators[plural] = _strict_validator(crd, plural, self._where(plural))
            return self._validators[plural]

    def findings(self, doc: dict[str, Any]) -> list[Finding]:
        """Strict CRD-schema problems of an Argo object (empty when it is valid)."""
        validator = self.validator(doc["kind"])
        name = document_name(doc)
        findings = []
        for error in sorted(
            validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))
        ):
            if error.context:  # anyOf/oneOf: report the branch that came closest
                error = best_match(error.context)
            findings.append(Finding(name, _path(error), _short(error.message)))
        return findings


def crds_in_folder(folder: str | Path) -> ArgoSchema:
    """Argo's CRD files in a folder, as Argo publishes them (manifests/base/crds/full)."""
    folder = Path(folder)
    missing = [name for name in CRD_FILES if not (folder / name).is_file()]
    if missing:
        raise SchemaUnavailable(
            f"no Argo CRDs in {folder}: it needs {', '.join(missing)} "
            "(Argo's manifests/base/crds/full, from the release you run)"
        )

    def read(plural: str) -> Any:
        path = folder / crd_file(plural)
        try:
            with open(path, "rb") as handle:
                return yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as exc:
            raise SchemaUnavailable(f"{path}: not valid YAML: {_short(str(exc))}") from None
        except OSError as exc:
            raise SchemaUnavailable(f"cannot read {path}: {exc.strerror or exc}") from None

    return ArgoSchema(f"folder {folder}", read, lambda plural: str(folder / crd_file(plural)))


def crds_in_cluster(kubeconfig: str | Path | None = None, context: str | None = None) -> ArgoSchema:
    """Argo's CRDs as a cluster serves them (``GET /apis/apiextensions.k8s.io/v1/
    customresourcedefinitions/<plural>.argoproj.io``), with a kubeconfig's
    credentials (default: ``$KUBECONFIG``, else ``~/.kube/config``; its current
    context unless one is named). Reading CRDs needs the cluster-scoped right to
    ``get customresourcedefinitions``."""
    import urllib3
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    where = f"kubeconfig {kubeconfig}" if kubeconfig else "the default kubeconfig"
    if context:
        where += f" (context {context})"
    configuration = client.Configuration()
    try:
        config.load_kube_config(
            config_file=str(kubeconfig) if kubeconfig else None,
            context=context,
            client_configuration=configuration,
            persist_config=False,  # never write refreshed credentials back
        )
    except Exception as exc:  # ConfigException, a missing file, a malformed one
        raise SchemaUnavailable(
            f"cannot use {where}: {_short(str(exc) or type(exc).__name__)}"
        ) from None
    configuration.retries = 1  # an unreachable cluster is one line, soon
    api = client.ApiextensionsV1Api(client.ApiClient(configuration))
    host = configuration.host

    def read(plural: str) -> Any:
        name = crd_name(plural)
        try:
            # The raw response (not the client's models): the CRD exactly as served.
            response: Any = api.read_custom_resource_definition(
                name, _preload_content=False, _request_timeout=(10, 120)
            )
            return json.loads(response.data)
        except ApiException as exc:
            if exc.status == 404:
                raise SchemaUnavailable(
                    f"the cluster at {host} has no CRD {name}: install Argo's CRDs first"
                ) from None
            raise SchemaUnavailable(
                f"the cluster at {host} refused to read CRD {name} "
                f"(HTTP {exc.status} {exc.reason}; with {where})"
            ) from None
        except urllib3.exceptions.HTTPError as exc:
            raise SchemaUnavailable(
                f"cannot reach the cluster at {host} ({type(exc).__name__}; with {where})"
            ) from None
        except ValueError:
            raise SchemaUnavailable(f"the cluster at {host} sent CRD {name} as non-JSON") from None

    return ArgoSchema(
        f"the cluster at {host}", read, lambda plural: f"CRD {crd_name(plural)} at {host}"
    )


@functools.cache
def _folder_schema(folder: str) -> ArgoSchema:
    return crds_in_folder(folder)


def configured_schema() -> ArgoSchema | None:
    """The CRDs of ``$CSFLOW_ARGO_SCHEMA_DIR`` (one ArgoSchema per folder, per
    process), or None when it is not set."""
    folder = schema_dir()
    return _folder_schema(str(folder)) if folder else None


def default_schema() -> ArgoSchema:
    """``configured_schema()``, or a one-line error saying what to give."""
    schema = configured_schema()
    if schema is None:
        raise SchemaUnavailable(f"no Argo CRDs to check against: {GIVE_CRDS}")
    return schema


def open_schema(
    crds: str | Path | None = None,
    kubeconfig: str | Path | None = None,
    context: str | None = None,
) -> ArgoSchema | None:
    """The CRDs a command is pointed at: a folder (``--crds``), else a cluster
    (``--kubeconfig``/``--context``), else ``$CSFLOW_ARGO_SCHEMA_DIR``; None if none."""
    if crds and (kubeconfig or context):
        raise BadInput("give --crds or --kubeconfig/--context, not both")
    if crds:
        return crds_in_folder(crds)
    if kubeconfig or context:
        return crds_in_cluster(kubeconfig, context)
    return configured_schema()


def crd_validator(kind: str) -> jsonschema.protocols.Validator:
    """The strict validator for an Argo kind from ``$CSFLOW_ARGO_SCHEMA_DIR``, built
    once per process."""
    return default_schema().validator(kind)


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


def argo_schema_findings(doc: dict[str, Any], schema: ArgoSchema | None = None) -> list[Finding]:
    """Strict CRD-schema problems of an Argo object (empty when it is valid), against
    ``schema`` (default: ``$CSFLOW_ARGO_SCHEMA_DIR``'s CRDs)."""
    return (schema or default_schema()).findings(doc)


def kubernetes_validate_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("kubernetes_validate") is not None


def kubernetes_findings(doc: dict[str, Any]) -> list[Finding]:
    """Strict schema problems of a core Kubernetes object, via kubernetes-validate."""
    try:
        import kubernetes_validate
    except ModuleNotFoundError:  # say so rather than pass silently
        raise SchemaUnavailable(
            f"cannot check {document_name(doc)}: core Kubernetes objects are checked with "
            f"kubernetes-validate, which is not installed ({LINT_EXTRA})"
        ) from None
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


def is_argo_document(doc: Any) -> bool:
    return isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith(ARGO_GROUP + "/")


def schema_findings(doc: Any, schema: ArgoSchema | None = None) -> list[Finding]:
    """Schema problems of any manifest: Argo kinds against the strict CRDs of
    ``schema`` (default: ``$CSFLOW_ARGO_SCHEMA_DIR``'s), the rest against
    Kubernetes' own schemas. Raises SchemaUnavailable when the schema it needs is
    not at hand."""
    if not isinstance(doc, dict) or not doc.get("kind") or not doc.get("apiVersion"):
        return [
            Finding(document_name(doc), "", "not a Kubernetes object (needs apiVersion and kind)")
        ]
    if is_argo_document(doc):
        if doc["kind"] not in ARGO_KINDS:
            return [
                Finding(
                    document_name(doc),
                    "",
                    f"csflow checks no {doc['kind']}: only {', '.join(sorted(ARGO_KINDS))}",
                )
            ]
        return argo_schema_findings(doc, schema)
    return kubernetes_findings(doc)


def check_documents(
    docs: Iterable[Any], schema: ArgoSchema | None
) -> tuple[list[Finding], list[str]]:
    """The schema findings of every document that can be checked here, and one note
    per group of documents that cannot be (which, why, and what to give): Argo kinds
    when ``schema`` is None, core kinds when kubernetes-validate is not installed."""
    findings: list[Finding] = []
    no_crds: list[str] = []
    no_validate: list[str] = []
    can_validate = kubernetes_validate_installed()
    for doc in docs:
        if is_argo_document(doc) and doc.get("kind") in ARGO_KINDS and schema is None:
            no_crds.append(document_name(doc))
        elif (
            isinstance(doc, dict)
            and doc.get("kind")
            and doc.get("apiVersion")
            and not is_argo_document(doc)
            and not can_validate
        ):
            no_validate.append(document_name(doc))
        else:
            findings.extend(schema_findings(doc, schema))
    notes = []
    if no_crds:
        notes.append(
            f"{len(no_crds)} Argo document(s) not schema-checked: no CRDs to check against; "
            f"{GIVE_CRDS}"
        )
    if no_validate:
        notes.append(
            f"{len(no_validate)} core Kubernetes document(s) not schema-checked: "
            f"kubernetes-validate is not installed ({LINT_EXTRA})"
        )
    return findings, notes


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
