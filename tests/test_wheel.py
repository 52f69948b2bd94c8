"""An installed csflow deploys itself: the wheel, in a fresh virtual environment,
away from any checkout, runs ``csflow svc config``, ``csflow lint`` and a
``--dry-run`` simulation on the argo backend.

The wheel is built from exactly what the Dockerfile copies into the csflow
image's build stage (its ``COPY`` lines), so a file the image would miss is
missed here too. Dependencies are installed at uv.lock's versions from uv's
cache (offline when it is warm). The commands run in a cleared environment
(no ``CSFLOW_*``, no ``../shared``), from a folder with no checkout beside it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from paths import REPO, TAX_INPUTS

UV = [sys.executable, "-m", "uv"]


def uv(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CSFLOW_", "VIRTUAL_ENV"))}
    return subprocess.run(
        [*UV, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def dockerfile_sources() -> list[str]:
    """What the Dockerfile's build stage copies from the build context."""
    stages = (REPO / "Dockerfile").read_text().split("\nFROM ")
    [build] = [stage for stage in stages if re.match(r"\S+ AS build\n", stage)]
    sources = []
    for line in re.findall(r"^COPY (?!--)(.+)$", build, re.M):
        *parts, _destination = line.split()
        for part in parts:
            sources += sorted(str(p.relative_to(REPO)) for p in REPO.glob(part))
    return sources


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the csflow wheel in it; returns its bin folder."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    for name in dockerfile_sources():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, target)
    built = uv("build", "--wheel", "--out-dir", str(root / "dist"), ".", cwd=source)
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = (root / "dist").glob("csflow-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "csflow/cluster/argo/kustomization.yaml" in names
        assert "csflow/cluster/argo/golden/csflow-simulate.yaml" in names
        assert "csflow/cluster/argo/golden/csflow-sweep.yaml" in names
        # No copy of Argo's schema, and nothing that looks for one beside a checkout.
        assert not [n for n in names if "argo-schema" in n or n.endswith("schema.json")]
        for name in names:
            if name.endswith((".py", ".yaml")):
                assert b"shared/argo-schema" not in archive.read(name), name
    constraints = root / "constraints.txt"
    exported = uv(
        "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes",
        "--output-file", str(constraints), cwd=source,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr[-3000:]
    venv = root / "venv"
    made = uv("venv", "--python", sys.executable, str(venv), cwd=root)
    assert made.returncode == 0, made.stderr[-3000:]
    install = ["pip", "install", "--python", str(venv / "bin" / "python"), "-c", str(constraints)]
    done = uv(*install, "--offline", str(wheel), cwd=root)
    if done.returncode != 0:  # a cold cache: fetch from the index
        done = uv(*install, str(wheel), cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv / "bin"


@pytest.fixture
def run(installed, tmp_path):
    """Runs an installed command from an empty folder, in a cleared environment."""
    work = tmp_path / "work"
    work.mkdir()
    env = {
        "PATH": f"{installed}:/usr/bin:/bin",
        "HOME": str(work),
        "CSFLOW_HOME": str(work / "home"),
        "LANG": "C.UTF-8",
    }

    def run(*args: str, **extra_env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(installed / args[0]), *args[1:]],
            cwd=work,
            env={**env, **extra_env},
            capture_output=True,
            text=True,
            timeout=120,
        )

    run.work = work
    return run


def test_the_installed_wheel_prints_the_manifests_and_lints_them(run, crds):
    printed = run("csflow", "svc", "config", "-o", "-")
    assert printed.returncode == 0, printed.stderr
    docs = [d for d in yaml.safe_load_all(printed.stdout) if d]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert docs[0]["kind"] == "Namespace"
    assert {"Namespace", "Role", "ConfigMap", "Deployment", "NetworkPolicy"} <= {
        kind for kind, _ in kinds
    }
    assert {
        ("WorkflowTemplate", "csflow-simulate"),
        ("WorkflowTemplate", "csflow-publish"),
        ("WorkflowTemplate", "csflow-sweep"),
    } <= kinds
    # What it could not check here, it says (no CRDs given, no kubernetes-validate).
    assert "not schema-checked" in printed.stderr
    manifests = run.work / "csflow.yaml"
    manifests.write_text(printed.stdout)
    linted = run("csflow", "lint", "--crds", str(crds), str(manifests))
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert f"{len(docs)} document(s), no problems found" in linted.stderr
    broken = manifests.read_text().replace("entrypoint: simulate", "entrypoint: simulat", 1)
    (run.work / "broken.yaml").write_text(broken)
    refused = run("csflow", "lint", "--crds", str(crds), str(run.work / "broken.yaml"))
    assert refused.returncode == 2 and "simulat" in refused.stdout
    missing = run("csflow", "lint", str(manifests))
    assert missing.returncode == 2 and "--crds DIR" in missing.stderr


def test_the_installed_wheel_renders_a_simulation_for_argo(run, crds, tmp_path):
    config = tmp_path / "config"
    shutil.copytree(REPO / "config", config)
    rendered = run(
        "csflow", "simulate", "PSLmodels/Tax-Cruncher", "--inputs", str(TAX_INPUTS),
        "--backend", "argo", "--dry-run",
        CSFLOW_CONFIG_DIRS=f'["{config}"]',
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    workflow = yaml.safe_load(rendered.stdout)
    assert workflow["kind"] == "Workflow"
    assert workflow["spec"]["workflowTemplateRef"] == {"name": "csflow-simulate"}
    path = run.work / "workflow.yaml"
    path.write_text(rendered.stdout)
    linted = run("csflow", "lint", "--crds", str(crds), str(path))
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_the_installed_wheel_sweeps_and_writes_the_results_page(run, crds, tmp_path):
    """A sweep on the embedded engine with no checkout beside it: the points and the
    fan-in run csflow's installed programs; then its page and its Workflow for Argo."""
    models = tmp_path / "models"
    shutil.copytree(REPO / "tests" / "models", models)
    configs = {"CSFLOW_CONFIG_DIRS": f'["{models / "config"}"]'}
    swept = run(
        "csflow", "simulate", "tests/ToyOk", "--sweep", "Knobs.x=1,2", "-o", "json", **configs
    )
    assert swept.returncode == 0, swept.stderr
    data = json.loads(swept.stdout)
    assert [(p["label"], p["state"]) for p in data["points"]] == [("1", "done"), ("2", "done")]
    assert data["outputs"]["renderable"][0]["title"] == "Sweep summary"
    page = run.work / "page.html"
    opened = run("csflow", "runs", "open", data["job_id"], "--out", str(page), "--no-browser")
    assert opened.returncode == 0, opened.stderr
    assert "Sweep summary" in page.read_text()
    rendered = run(
        "csflow", "simulate", "tests/ToyOk", "--sweep", "Knobs.x=1,2", "--backend", "argo",
        "--dry-run", **configs,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    path = run.work / "sweep.yaml"
    path.write_text(rendered.stdout)
    linted = run("csflow", "lint", "--crds", str(crds), str(path))
    assert linted.returncode == 0, linted.stdout + linted.stderr
