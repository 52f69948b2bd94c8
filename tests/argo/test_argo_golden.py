"""Golden YAML for every flow's WorkflowTemplate (cluster/argo/golden/), which
the kustomize base applies as is. A change to a flow shows up here as a diff
to review. Rewrite the files only on purpose, with CSFLOW_REGENERATE=1 (never
when CI is set)."""

from __future__ import annotations

import difflib
import os

import pytest
import yaml

from csflow import flows
from csflow.sdk.argo import schema
from csflow.sdk.ops import manifests

REGENERATE = os.environ.get("CSFLOW_REGENERATE") == "1" and not os.environ.get("CI")


def render(document: dict) -> str:
    return yaml.safe_dump(
        document, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100
    )


@pytest.mark.parametrize("flow", flows.FLOW_NAMES)
def test_golden_template(flow):
    templates, missing = manifests.flow_templates()
    if flow in missing:
        pytest.skip(f"flows/{flow}.py does not exist yet")
    template = next(
        t
        for t in templates
        if t["metadata"]["labels"].get("csflow.io/flow") == flow
        or t["metadata"]["name"] == f"csflow-{flow}"
    )
    path = manifests.golden_path(template["metadata"]["name"])
    fresh = render(template)
    if REGENERATE:
        from csflow.sdk.core.fileutil import write_bytes_atomic

        write_bytes_atomic(path, fresh.encode())
    assert path.is_file(), f"no golden file {path}; run CSFLOW_REGENERATE=1 pytest {__file__}"
    golden = path.read_text()
    if yaml.safe_load(golden) != template:
        diff = "".join(
            difflib.unified_diff(
                golden.splitlines(True), fresh.splitlines(True), str(path), "built from flows/"
            )
        )
        pytest.fail(
            f"{path.name} differs from the flow (review, then CSFLOW_REGENERATE=1):\n{diff}"
        )


def test_the_kustomization_lists_every_golden_file():
    kustomization = yaml.safe_load((manifests.CLUSTER_DIR / "kustomization.yaml").read_text())
    listed = {r for r in kustomization["resources"] if r.startswith("golden/")}
    on_disk = {f"golden/{p.name}" for p in manifests.GOLDEN_DIR.glob("*.yaml")}
    assert on_disk, "no golden files"
    assert listed == on_disk


def test_golden_files_are_valid_and_lint_clean():
    from csflow.sdk.argo import lint

    docs = [yaml.safe_load(p.read_text()) for p in sorted(manifests.GOLDEN_DIR.glob("*.yaml"))]
    assert [str(f) for d in docs for f in schema.schema_findings(d)] == []
    assert lint.lint_documents(docs) == []
