"""Names that become Kubernetes objects, file paths and bucket keys.

Owner, title and tag come from users. They are validated here, once, before
any of them reaches a path, a manifest or a storage key (RFC 1123 for the
Kubernetes side: https://kubernetes.io/docs/concepts/overview/working-with-objects/names/).
"""

from __future__ import annotations

import re
import uuid

from csflow.sdk.core.errors import BadInput
from csflow.sdk.core.jsonio import excerpt

# C/S owners and titles keep their case ("PSLmodels/Tax-Cruncher"); they may
# hold letters, digits, '-', '_' and '.', but never start with a dot, so no
# name can climb out of a folder.
_PROJECT_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# A Docker tag: https://docs.docker.com/reference/cli/docker/image/tag/
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_RFC1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def check_project_part(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _PROJECT_PART.match(value) or ".." in value:
        raise BadInput(
            f"invalid {kind} {excerpt(value)}: use 1-63 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit"
        )
    return value


def parse_model_name(name: str) -> tuple[str, str]:
    """'OWNER/TITLE' -> (owner, title), both validated."""
    parts = name.split("/") if isinstance(name, str) else []
    if len(parts) != 2:
        raise BadInput(f"invalid model name {excerpt(name)}: expected OWNER/TITLE")
    return check_project_part("owner", parts[0]), check_project_part("title", parts[1])


def check_tag(tag: str) -> str:
    if not isinstance(tag, str) or not _TAG.match(tag) or ".." in tag:
        raise BadInput(
            f"invalid tag {excerpt(tag)}: use 1-128 letters, digits, '_', '.' or '-', "
            "not starting with '.' or '-'"
        )
    return tag


def check_env_name(name: str) -> str:
    if not isinstance(name, str) or not _ENV_NAME.match(name):
        raise BadInput(f"invalid environment variable or secret name {excerpt(name)}")
    return name


def check_job_id(job_id: str) -> str:
    try:
        return str(uuid.UUID(str(job_id)))
    except ValueError:
        raise BadInput(f"invalid job id {excerpt(job_id)}: job ids are UUIDs") from None


_CACHE_KEY = re.compile(r"^[0-9a-f]{64}$")  # a SHA-256 in hex (sdk/dataplane/result_cache.py)


def check_cache_key(key: str) -> str:
    """A result cache key: it names objects and job-store keys, so nothing else passes."""
    if not isinstance(key, str) or not _CACHE_KEY.match(key):
        raise BadInput(f"not a cache key: {excerpt(key)}")
    return key


def kube_name(*parts: str) -> str:
    """A valid RFC 1123 label built from validated parts ('PSLmodels', 'Tax-Cruncher'
    -> 'pslmodels-tax-cruncher')."""
    raw = "-".join(parts).lower()
    label = re.sub(r"[^a-z0-9-]+", "-", raw).strip("-")[:63].strip("-")
    if not _RFC1123_LABEL.match(label):
        raise BadInput(f"cannot derive a Kubernetes name from {excerpt('/'.join(parts))}")
    return label


def is_rfc1123_label(value: str) -> bool:
    return bool(_RFC1123_LABEL.match(value))


# Argo names the pods of a step with a retryStrategy after the attempt: "upload(0)".
_ATTEMPT = re.compile(r"\(\d+\)$")


def without_attempt(display_name: str) -> str:
    """A workflow node's step name without Argo's attempt suffix."""
    return _ATTEMPT.sub("", display_name)


def model_image(registry: str, owner: str, title: str, tag: str) -> str:
    """The model's image, ``REGISTRY/owner_title:TAG`` (as C/S named them). Owner,
    title and tag are validated names; the repository part must also fit Docker's
    grammar (lowercase, no separator at either end)."""
    repository = f"{owner}_{title}".lower()
    if not _DOCKER_PATH_COMPONENT.match(repository):
        raise BadInput(f"cannot derive an image name from {excerpt(f'{owner}/{title}')}")
    return f"{registry.rstrip('/')}/{repository}:{check_tag(tag)}"


_DOCKER_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
