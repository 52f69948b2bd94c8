"""The DAGs, each declared once with hera, and their compiled form.

``compiled(name)`` returns a flow's WorkflowTemplate as a dict. The embedded
engine executes exactly that; Argo receives the same document. Compiling
imports hera (~0.5 s), so the result is cached under ``$CSFLOW_HOME/cache``,
keyed by the flows' source, and rebuilt whenever a flow changes.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path
from typing import Any

FLOW_NAMES = ("simulate", "publish", "sweep")
_HERE = Path(__file__).resolve().parent


def _source_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(_HERE.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def build(name: str, **kwargs: Any):
    if name not in FLOW_NAMES:
        raise KeyError(f"unknown flow {name!r}")
    return importlib.import_module(f"csflow.flows.{name}").build(**kwargs)


def compiled(name: str, cache_dir: Path | None = None, **kwargs: Any) -> dict[str, Any]:
    if cache_dir is None:
        return build(name, **kwargs).to_dict()
    key = hashlib.sha256(json.dumps([name, _source_hash(), kwargs], sort_keys=True).encode())
    path = cache_dir / "flows" / f"{name}-{key.hexdigest()[:16]}.json"
    if path.is_file():
        return json.loads(path.read_text())
    document = build(name, **kwargs).to_dict()
    from csflow.sdk.core.fileutil import write_json_atomic

    write_json_atomic(path, document)
    return document
