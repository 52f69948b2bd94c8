"""The real ``argo lint --offline`` (Argo v4.0.5, built from its Go module by
cluster/tools/build-argo) on everything csflow generates, and on the broken
manifests of test_argo_lint.py: Argo must agree with csflow's own checks.
Skipped when no argo binary is available (CSFLOW_ARGO_CLI, CSFLOW_BUILD_ARGO=1)."""

from __future__ import annotations

import subprocess

import pytest

from csflow.sdk.argo import schema

from .test_argo_lint import BROKEN, broken


def argo_lint(argo_cli: str, docs: list[dict], tmp_path) -> subprocess.CompletedProcess:
    path = tmp_path / "manifests.yaml"
    path.write_text(schema.dump_documents(docs))
    return subprocess.run(
        [argo_cli, "lint", "--offline", "--output", "simple", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_argo_lint_passes_everything_csflow_generates(
    argo_cli, service_docs, sim_workflow, tmp_path
):
    done = argo_lint(argo_cli, [*service_docs, sim_workflow], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("case_id", [c[0] for c in BROKEN if not c[3]])
def test_argo_lint_rejects_what_csflow_lint_rejects(argo_cli, case_id, tmp_path):
    done = argo_lint(argo_cli, [broken(case_id)], tmp_path)
    assert done.returncode != 0, f"argo lint accepted {case_id}: {done.stdout}"
