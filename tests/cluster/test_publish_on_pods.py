"""The publish flow on real pods: clone from git, build the image in the cluster,
test it, push and deploy it, then run a simulation on what was published.

Needs what ``test_simulate_on_pods`` needs, and from ``cluster/dev/up``:
``CSFLOW_DEV_REGISTRY`` (a registry pods push to and pull from) and
``CSFLOW_MODEL_REGISTRY_URL`` (the model registry the publish steps share with
the SDK). The model's source is served by ``git daemon`` on the address pods
reach this machine at (the registry's), as a model's repository on GitHub would
be. The build step reaches the package index through the node's network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from csflow.sdk.backends.argo import ArgoBackend
from csflow.sdk.client import Client
from csflow.sdk.core.status import RunStatus
from csflow.sdk.dataplane.secrets import LocalSecretStore

from .conftest import REPO, TOY_INPUTS, eventually, settled, submit

pytestmark = pytest.mark.cluster

OWNER, TITLE = "tests", "ToyPublished"


@pytest.fixture
def registry(node) -> str:
    for name in ("CSFLOW_DEV_REGISTRY", "CSFLOW_MODEL_REGISTRY_URL"):
        if not os.environ.get(name):
            pytest.skip(f"{name} is not set (cluster/dev/up writes it)")
    return os.environ["CSFLOW_DEV_REGISTRY"]


def _serve_git(host: str, source: Path, tmp_path: Path, name: str):
    """``source`` as a git repository that pods can clone (``git://``), as a model's
    repository on GitHub would be; yields its URL."""
    work = tmp_path / name
    # The symlinked module of the laid-out model becomes a file, as in a real repository.
    shutil.copytree(source, work, ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-c", "user.name=csflow tests", "-c", "user.email=tests@csflow.invalid"]
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", name]):
        subprocess.run([*git, "-C", str(work), *args], check=True)
    served = tmp_path / f"served-{name}"
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(work), str(served / f"{name}.git")], check=True
    )
    with socket.socket() as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            f"--base-path={served}",
            f"--listen={host}",
            f"--port={port}",
            str(served),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"git://{host}:{port}/{name}.git"
    eventually(
        lambda: subprocess.run(["git", "ls-remote", url], capture_output=True).returncode == 0,
        timeout=20,
        what=f"git daemon serves {name}",
    )
    yield url
    daemon.terminate()
    daemon.wait(10)


@pytest.fixture
def git_url(registry, tmp_path):
    """The toy model in a git repository that pods can clone."""
    host = registry.rsplit(":", 1)[0]
    yield from _serve_git(host, REPO / "tests" / "models" / "toy", tmp_path, "toy")


@pytest.fixture
def laid_out_git_url(registry, tmp_path):
    """A model laid out as PSLmodels/Tax-Cruncher is (tests/publish/models/laid-out)."""
    host = registry.rsplit(":", 1)[0]
    source = REPO / "tests" / "publish" / "models" / "laid-out"
    yield from _serve_git(host, source, tmp_path, "laid-out")


def publishing_client(pods_client, registry: str, configs: Path) -> Client:
    """The pods client, pushing to the dev registry, with the test's configs."""
    return Client(
        pods_client.settings.model_copy(
            update={"registry": f"{registry}/csflow", "config_dirs": [configs]}
        )
    )


def write_config(folder: Path, git_url: str, title: str = TITLE, **fields) -> Path:
    path = folder / OWNER / f"{title}.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(
        yaml.safe_dump(
            {
                "owner": OWNER,
                "title": title,
                "source": {"git": {"url": git_url, "ref": "main"}},
                "python": "3.11",
                "requirements": [],
                "functions": "toy_model",
                "timeout": 120,
                "env": {"TOY_MODE": "ok"},
                "tests": {
                    "ok_adjustment": {"Knobs": {"x": [{"value": 2}]}},
                    "bad_adjustment": {"Knobs": {"x": [{"value": -1}]}},
                },
                **fields,
            }
        )
    )
    return path


@pytest.mark.timeout(2400)
def test_a_model_published_from_git_on_real_pods_runs_simulations(
    pods_client, cluster, workflows, webapp, registry, git_url, tmp_path
):
    configs = tmp_path / "config"
    config = write_config(configs, git_url)
    client = publishing_client(pods_client, registry, configs)

    run = client.publish(config, detach=True)
    workflows.append(run.extra["workflow"])
    published = client.wait(run.id, timeout=1800)
    failed = {
        s: i["message"] for s, i in published.steps.items() if i["phase"] in ("Failed", "Error")
    }
    assert published.status == RunStatus.SUCCESS, f"{published.status}: {published.reason} {failed}"
    assert {"clone", "build", "test", "verify", "push", "deploy"} <= set(published.steps)
    assert "approve" not in published.steps or published.steps["approve"]["phase"] == "Skipped"

    # The registry records the version, both tags moved, and the webapp heard of both.
    model = client.model(f"{OWNER}/{TITLE}")
    tag = model["tags"]["latest"]
    assert model["tags"]["staging"] == tag
    [version] = [v for v in model["versions"] if v["tag"] == tag]
    assert (
        version["tags"] == ["latest", "staging"] and version["publish_run"] == run.extra["workflow"]
    )
    assert version["image"] == f"{registry}/csflow/{OWNER.lower()}_{TITLE.lower()}:{tag}"
    assert version["origin"]["git"] == git_url and version["tests"]["failed"] == 0
    deployments = [
        r for r in webapp.reports if r["path"] == f"/publish/api/{OWNER}/{TITLE}/deployments/"
    ]
    assert {"staging_tag": tag} in [
        {k: v for k, v in r.items() if k != "path"} for r in deployments
    ]
    assert {"latest_tag": tag} in [{k: v for k, v in r.items() if k != "path"} for r in deployments]

    # A simulation of `latest` runs the image the build step pushed.
    sim = settled(client, submit(client, workflows, f"{OWNER}/{TITLE}", TOY_INPUTS).id, timeout=600)
    assert sim.status == RunStatus.SUCCESS, f"{sim.status}: {sim.reason} {sim.steps}"
    workflow = eventually(
        lambda: cluster.workflow(sim.extra["workflow"]), what="the simulation's workflow"
    )
    parameters = {p["name"]: p.get("value") for p in workflow["spec"]["arguments"]["parameters"]}
    assert parameters["image"] == version["image"]

    # The same inputs again: the result cache answers (the version is one a publish
    # recorded), with a run of its own and no Workflow. No pod runs, so the webapp
    # hears of it from its own SDK, which knows where its callbacks go and their token.
    assert client.wait(sim.id).status == RunStatus.SUCCESS  # keeps the entry
    LocalSecretStore(client.settings.home).set("CS_API_TOKEN", "the-webapps-callback-token")
    listen = os.environ["CSFLOW_DEV_WEBAPP_LISTEN"]
    webapp_sdk = Client(client.settings.model_copy(update={"webapp_url": f"http://{listen}"}))
    again = webapp_sdk.submit(f"{OWNER}/{TITLE}", TOY_INPUTS)
    assert again.status == RunStatus.SUCCESS and again.cached_from == sim.id, again
    assert "workflow" not in again.extra
    assert cluster.workflow(ArgoBackend.workflow_name(again.id)) is None
    assert client.results(again.id) == client.results(sim.id)
    assert client.status(again.id).cached_from == sim.id
    assert [r["status"] for r in webapp.for_job(again.id)] == [RunStatus.SUCCESS]


@pytest.mark.timeout(2400)
def test_a_model_laid_out_as_tax_cruncher_publishes_on_real_pods(
    pods_client, workflows, webapp, registry, laid_out_git_url, tmp_path
):
    """``install: [".", "cs-config"]``: the build pod builds the model's own packages
    from its clone (no absolute path anywhere) into the image, which then simulates,
    once the publish is approved."""
    configs = tmp_path / "config"
    path = configs / OWNER / "LaidOut.yaml"
    path.parent.mkdir(parents=True)
    knobs = {"Knobs": {"rate": [{"value": 0.25}]}, "Extras": {"label": [{"value": "hi"}]}}
    path.write_text(
        yaml.safe_dump(
            {
                "owner": OWNER,
                "title": "LaidOut",
                "source": {"git": {"url": laid_out_git_url, "ref": "main"}},
                "python": "3.11",
                "install": [".", "cs-config"],
                "functions": "cs_config.functions",
                "timeout": 120,
                "tests": {
                    "meta_param_dict": {"year": 2024},
                    "ok_adjustment": knobs,
                    "bad_adjustment": {
                        "Knobs": {"rate": [{"value": 2}]},
                        "Extras": {"label": [{"value": 7}]},
                    },
                },
            }
        )
    )
    client = publishing_client(pods_client, registry, configs)
    # With an approval: the submitter's resume of that one step is an update the
    # admission policy must let through (it changes only that node's status).
    run = client.publish(path, require_approval=True, detach=True)
    workflows.append(run.extra["workflow"])
    waiting = client.backend.wait(run.id, timeout=1800, until_suspended=True)
    assert waiting.status == RunStatus.SUSPENDED, f"{waiting.reason} {waiting.steps}"
    client.approve(run.id, detach=True)
    published = client.wait(run.id, timeout=600)
    assert published.status == RunStatus.SUCCESS, f"{published.reason} {published.steps}"
    assert published.steps["approve"]["phase"] == "Succeeded"
    inputs = {
        "meta_param_dict": {"year": 2024},
        "adjustment": {"Knobs": {"rate": [{"value": 0.75}]}},
    }
    sim = settled(client, submit(client, workflows, f"{OWNER}/LaidOut", inputs).id, timeout=600)
    assert sim.status == RunStatus.SUCCESS, f"{sim.status}: {sim.reason} {sim.steps}"
    assert "0.75" in client.results(sim.id)["downloadable"][0]["data"]


@pytest.fixture
def crane() -> str:
    """The crane cluster/dev builds (lib.sh's GGCR_VERSION, in csflow's cache)."""
    version = re.search(r"GGCR_VERSION=(\S+)", (REPO / "cluster/dev/lib.sh").read_text())
    cache = os.environ.get("CSFLOW_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "csflow"
    )
    path = Path(cache, "bin", f"crane-{version.group(1) if version else '?'}")
    if not path.is_file():
        pytest.skip(f"{path} is not built (cluster/dev/up builds it)")
    return str(path)


def _own_base(crane: str, registry: str, tmp_path: Path) -> str:
    """The installation's base image plus one marker layer: a base of the model's own."""
    marker = tmp_path / "marker"
    (marker / "etc").mkdir(parents=True)
    (marker / "etc" / "csflow-own-base").write_text("a base image of the model's own\n")
    layer = tmp_path / "marker.tar"
    with tarfile.open(layer, "w") as tar:
        tar.add(marker / "etc", arcname="etc")
    own = f"{registry}/tests/own-base-python:3.11"
    base = f"{registry}/library/python:3.11-slim-bookworm"
    subprocess.run(
        [crane, "append", "--insecure", "-b", base, "-f", str(layer), "-t", own],
        check=True,
        capture_output=True,
    )
    return own


def _layers(crane: str, image: str) -> list[str]:
    manifest = subprocess.run(
        [crane, "manifest", "--insecure", image], check=True, capture_output=True, text=True
    ).stdout
    return [layer["digest"] for layer in json.loads(manifest)["layers"]]


@pytest.mark.timeout(2400)
def test_a_model_built_as_tax_brain_is_gets_its_debian_program_in_its_image(
    pods_client, workflows, registry, git_url, crane, tmp_path
):
    """tests/models/config/tests/ToyTaxBrain.yaml from git: an empty title, titles
    ending in .csv and .pdf, and a report written by cmark, a Debian package the base
    image lacks, on a base image of the model's own (image.base). The build pod
    fetches and unpacks cmark as the build user; the contract tests in the test pod
    run it; so does the simulation."""
    own_base = _own_base(crane, registry, tmp_path)
    configs = tmp_path / "config"
    toy_tax_brain = yaml.safe_load(
        (REPO / "tests/models/config/tests/ToyTaxBrain.yaml").read_text()
    )
    config = write_config(
        configs,
        git_url,
        title="ToyTaxBrain",
        env=toy_tax_brain["env"],
        system_packages=toy_tax_brain["system_packages"],
        image={"base": own_base},
    )
    client = publishing_client(pods_client, registry, configs)
    run = client.publish(config, detach=True)
    workflows.append(run.extra["workflow"])
    published = client.wait(run.id, timeout=1800)
    assert published.status == RunStatus.SUCCESS, f"{published.reason} {published.steps}"
    # Its tests passed in the built image: run_model ran cmark there (check=True).
    assert published.steps["test"]["phase"] == "Succeeded"
    # Built FROM the model's own base: its layers, then the one csflow adds.
    model = client.model(f"{OWNER}/ToyTaxBrain")
    [image] = [v["image"] for v in model["versions"] if v["tag"] == model["tags"]["latest"]]
    assert _layers(crane, image)[:-1] == _layers(crane, own_base)

    sim = submit(client, workflows, f"{OWNER}/ToyTaxBrain", TOY_INPUTS)
    sim = settled(client, sim.id, timeout=600)
    assert sim.status == RunStatus.SUCCESS, f"{sim.status}: {sim.reason} {sim.steps}"
    renderable = client.results(sim.id)["renderable"]
    assert [r["title"] for r in renderable] == ["", "Policy Report"]
    assert "<strong>2.0</strong>" in renderable[1]["data"]
