"""Benchmark: how small a simulation Workflow is, and how fast csflow builds and checks them.

Prints, measured in this run:
- the bytes of one simulation Workflow (a workflowTemplateRef plus parameters)
  against the same DAG inlined (the Workflow merged with csflow-simulate, as
  one self-contained Workflow), and their ratio;
- the time to build and validate 1,000 simulation Workflows (hera build, the
  strict CRD schema, the semantic lint against the template), per workflow.

Run: .venv/bin/python bench/argo_workflows.py [COUNT]
"""

from __future__ import annotations

import sys
import time
import uuid

import yaml

from csflow import flows
from csflow.flows import simulate
from csflow.sdk.argo import lint, schema
from csflow.sdk.argo.semantics import merge_workflow

RESOURCES = {
    "requests": {"cpu": "1", "memory": "1908Mi"},
    "limits": {"cpu": "1", "memory": "2290Mi"},
}


def workflow(job_id: str) -> dict:
    return simulate.simulation_workflow(
        owner="PSLmodels",
        title="Tax-Cruncher",
        tag="42ce5647434e",
        image="gcr.io/csflow/pslmodels_tax-cruncher:42ce5647434e",
        job_id=job_id,
        resources=RESOURCES,
        timeout=600,
        model_secret="pslmodels-tax-cruncher-secrets",
    ).to_dict()


def size(document: dict) -> int:
    return len(yaml.safe_dump(document, sort_keys=False).encode())


def main(count: int = 1000) -> None:
    template = flows.compiled("simulate")
    one = workflow(str(uuid.uuid4()))
    merged = merge_workflow(one, template)
    inlined = {
        "apiVersion": one["apiVersion"],
        "kind": "Workflow",
        "metadata": one["metadata"],
        "spec": merged["spec"],
    }
    small, big = size(one), size(inlined)
    print(f"one simulation Workflow: {small:,} bytes (YAML)")
    print(
        f"the same DAG inlined:    {big:,} bytes (YAML); "
        f"the reference is {small / big:.2f}x its size"
    )
    print(
        f"headroom under etcd's 1 MiB object limit: {2**20 / small:,.0f}x (reference), "
        f"{2**20 / big:,.0f}x (inlined)"
    )

    library = lint.library_of([template])
    schema.crd_validator("Workflow")  # built once per process; not part of the per-workflow cost
    started = time.perf_counter()
    built = [workflow(str(uuid.uuid4())) for _ in range(count)]
    after_build = time.perf_counter()
    problems = 0
    for document in built:
        problems += len(schema.schema_findings(document)) + len(
            lint.lint_document(document, library)
        )
    finished = time.perf_counter()
    build_ms = (after_build - started) * 1000 / count
    check_ms = (finished - after_build) * 1000 / count
    print(
        f"{count} simulation Workflows built and validated in {finished - started:.2f} s: "
        f"{build_ms + check_ms:.2f} ms each "
        f"({build_ms:.2f} ms build, {check_ms:.2f} ms schema + lint); "
        f"problems found: {problems}"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
