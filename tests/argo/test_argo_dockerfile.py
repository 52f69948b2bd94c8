"""The csflow platform image's Dockerfile (no Docker engine here, so its build
runs elsewhere): it runs as the user the flows expect, puts the step programs
the flows call on PATH, and installs exactly what uv.lock pins."""

from __future__ import annotations

import re
import tomllib

from csflow.sdk.core import steps

from .conftest import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()


def final_stage() -> str:
    return DOCKERFILE[DOCKERFILE.rindex("\nFROM ") :]


def test_the_image_runs_as_the_non_root_user_the_flows_expect():
    users = re.findall(r"^USER (\S+)", final_stage(), re.M)
    assert users == [f"{steps.RUN_AS_USER}:{steps.RUN_AS_USER}"]
    assert f"--uid {steps.RUN_AS_USER}" in final_stage()


def test_the_step_programs_are_on_path():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    for command in (
        steps.PLATFORM_STEP_COMMAND,
        steps.PUBLISH_STEP_COMMAND,
        steps.IMAGE_BUILD_COMMAND,
    ):
        assert command[0] in scripts  # installed into /opt/csflow/bin
    assert re.search(r"^ENV PATH=/opt/csflow/bin:\$PATH", final_stage(), re.M)
    assert "COPY --from=build /opt/csflow /opt/csflow" in final_stage()


def test_the_publish_steps_have_git_and_the_crane_the_dev_cluster_builds():
    assert re.search(r"apt-get install -y --no-install-recommends git\b", final_stage())
    assert "COPY --from=crane /ko-app/crane /usr/local/bin/crane" in final_stage()
    pinned = re.search(
        r"ARG CRANE_IMAGE=gcr.io/go-containerregistry/crane:(\S+)", DOCKERFILE
    ).group(1)
    dev = re.search(
        r"^readonly GGCR_VERSION=(\S+)", (REPO / "cluster/dev/lib.sh").read_text(), re.M
    ).group(1)
    assert pinned == dev


def test_dependencies_come_from_the_lock_without_dev_tools():
    syncs = re.findall(r"^RUN uv sync (.+)$", DOCKERFILE, re.M)
    assert syncs and all("--frozen" in s and "--no-dev" in s for s in syncs)


def test_every_package_folder_is_copied_and_images_are_pinned():
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    # A package folder is copied itself or with a folder above it (cluster/argo, not
    # all of cluster/: the dev cluster's scripts stay out of the image's build).
    copied = set(re.findall(r"^COPY ([\w/]+) ", DOCKERFILE, re.M))
    for folder in packages.values():
        assert any(folder == c or folder.startswith(c + "/") for c in copied), folder
    base = re.search(r"ARG PYTHON_IMAGE=(\S+)", DOCKERFILE).group(1)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base)
    assert ":latest" not in DOCKERFILE
