"""Shared set-up for the benchmarks: a data home and the example's environment."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_INPUTS = REPO / "examples" / "tax-cruncher" / "inputs.json"
MODEL = "PSLmodels/Tax-Cruncher"


def bench_home(name: str) -> Path:
    """CSFLOW_HOME for a benchmark: $CSFLOW_BENCH_HOME if set, else a temp folder."""
    root = os.environ.get("CSFLOW_BENCH_HOME")
    path = Path(root) / name if root else Path(tempfile.mkdtemp(prefix=f"csflow-bench-{name}-"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def example_inputs() -> dict:
    return json.loads(EXAMPLE_INPUTS.read_text())
