"""``Run``: one simulation or publish, as every backend reports it.

The embedded engine keeps runs in SQLite (``engine/store.py``); the argo
backend reads them from Workflows. Both return this record, and both read what
a finished simulation said of itself with ``output_fields``: the global outputs
its ``inputs`` step sets (Argo's ``status.outputs.parameters``; on the embedded
engine, the same step's output files).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from csflow.sdk.core.status import FINAL

__all__ = ["Run", "RUN_OUTPUTS", "output_fields"]

# The simulate flow's global outputs (flows/simulate.py, its inputs step): the
# model's own version, and its verdict on the inputs.
MODEL_VERSION_OUTPUT = "model-version"
ERRORS_WARNINGS_OUTPUT = "errors-warnings"
RUN_OUTPUTS = (MODEL_VERSION_OUTPUT, ERRORS_WARNINGS_OUTPUT)


def output_fields(outputs: Mapping[str, str]) -> dict[str, Any]:
    """A run's ``model_version`` and ``errors_warnings``, from its global outputs
    (absent or unreadable ones: empty)."""
    try:
        errors_warnings = json.loads(outputs.get(ERRORS_WARNINGS_OUTPUT) or "{}")
    except json.JSONDecodeError:
        errors_warnings = {}
    return {
        "model_version": (outputs.get(MODEL_VERSION_OUTPUT) or "").strip(),
        "errors_warnings": errors_warnings if isinstance(errors_warnings, dict) else {},
    }


@dataclass
class Run:
    id: str
    owner: str
    title: str
    tag: str
    status: str
    kind: str = "simulate"
    reason: str = ""
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    engine_pid: int | None = None
    model_version: str = ""
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors_warnings: dict[str, Any] = field(default_factory=dict)
    results_uri: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return f"{self.owner}/{self.title}"

    @property
    def done(self) -> bool:
        return self.status in FINAL

    @property
    def duration(self) -> float | None:
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started

    @property
    def cached_from(self) -> str:
        """The run whose results a cache hit returns ("" for a run that ran)."""
        return str((self.extra.get("cached") or {}).get("from") or "")

    def to_dict(self) -> dict[str, Any]:
        data = {
            "job_id": self.id,
            "kind": self.kind,
            "model": self.model,
            "tag": self.tag,
            "status": self.status,
            "reason": self.reason,
            "model_version": self.model_version,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "duration": self.duration,
            "steps": self.steps,
            "errors_warnings": self.errors_warnings,
            "results_uri": self.results_uri,
        }
        if self.cached_from:  # a cache hit: marked, with the run it came from
            data.update(cached=True, cached_from=self.cached_from)
        return data
