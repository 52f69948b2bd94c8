"""Statuses: a run's (C/S's words) and a step's (Argo's words), defined once.

A run ends ``SUCCESS``, ``INVALID`` (the inputs step rejected the inputs),
``FAIL``, ``CANCELLED`` or ``INTERRUPTED`` (its engine died); ``SUSPENDED`` is a
publish waiting for approval. Both enums are ``str`` enums, so they compare
equal to, and serialize as, the plain strings stored in run records, Argo's
answers and the webapp's callbacks.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from csflow.sdk.core.contract import ErrorsWarnings
from csflow.sdk.core.names import without_attempt

__all__ = ["RunStatus", "StepPhase", "ACTIVE", "FINAL", "classify", "failure_reason"]


class RunStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUSPENDED = "SUSPENDED"
    SUCCESS = "SUCCESS"
    INVALID = "INVALID"
    FAIL = "FAIL"
    CANCELLED = "CANCELLED"
    INTERRUPTED = "INTERRUPTED"


ACTIVE = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.SUSPENDED})
FINAL = frozenset(RunStatus) - ACTIVE


class StepPhase(StrEnum):
    """A step's phase, as Argo names node phases and ``depends`` results.
    ``Suspended`` is csflow's name for a suspend step that waits (Argo says Running)."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ERRORED = "Errored"
    SKIPPED = "Skipped"
    OMITTED = "Omitted"
    SUSPENDED = "Suspended"


def classify(workflow_status: str, errors_warnings: dict[str, Any]) -> RunStatus:
    """Argo's workflow status plus the inputs step's verdict -> the C/S status."""
    if workflow_status == StepPhase.SUCCEEDED:
        if ErrorsWarnings.of(errors_warnings).has_errors:
            return RunStatus.INVALID
        return RunStatus.SUCCESS
    return RunStatus.FAIL


def failure_reason(failures: Any) -> str:
    """One line from Argo's ``{{workflow.failures}}``: the failed nodes, which a real
    Argo v4 hands over JSON-encoded once more (a JSON string of the list), in no
    particular order, with the DAG around a failed step listed too ("child '...'
    failed"). The step that failed first says why."""
    while isinstance(failures, str):
        try:
            failures = json.loads(failures)
        except json.JSONDecodeError:
            return ""
    listed = [f for f in failures if isinstance(f, dict)] if isinstance(failures, list) else []
    own = [f for f in listed if not str(f.get("message") or "").startswith("child ")] or listed
    for failure in sorted(own, key=lambda f: str(f.get("finishedAt") or "")):
        name = without_attempt(failure.get("displayName") or failure.get("name") or "a step")
        message = failure.get("message") or failure.get("phase") or "failed"
        return f"{name}: {message}"
    return ""
