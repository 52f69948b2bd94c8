"""A model's image: a base Python image plus one layer, assembled without a
container runtime, root or a Dockerfile.

The publish flow's ``build`` step (``runtime/image_build.py``) runs as the
same unprivileged user as every other step. From the build context the
``clone`` step laid out (``sdk/builds/environments.py``):

- ``build.json``: the version's record (owner, title, content tag, Python, the config);
- ``requirements.lock``: the requirements resolved to exact pins;
- ``src/``: the model's source at the published revision;
- ``csflow/``: csflow's model-side programs and ``step_env.py``, the
  declaration of the variables they read (standard library only),

it makes one layer (``write_layer``): the Debian packages the config names
that the base image lacks (``sdk/builds/debian.py``), the locked packages installed by uv for
the image's Python and platform (``--target``, so no interpreter of that
version is needed here), the source, the programs and their wrappers on PATH.
``crane mutate`` (go-containerregistry) then appends the layer to the base
image, sets the environment and the user, and pushes the result
(``crane_mutate_command``). kaniko, the usual in-cluster builder, needs root
in its container and is archived; this needs neither.

The image runs as uid 1000 (the flows' pod security context requires it). The
model's secrets are never part of it: pods get them at run time by reference
(``envFrom``).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from csflow.runtime import step_env
from csflow.sdk.builds import debian
from csflow.sdk.builds.environments import build_wheels, install_folders
from csflow.sdk.core.errors import BadInput
from csflow.sdk.core.settings import BASE_IMAGE
from csflow.sdk.core.steps import PROGRAMS as STEP_PROGRAMS

# The model steps read job inputs from Redis on a cluster; this is the only
# package csflow adds to a model image.
REDIS_CLIENT = "redis==5.2.1"
# The images' platform: uv installs wheels for it, crane picks it from the base.
IMAGE_PLATFORM = "linux/amd64"
WHEEL_PLATFORM = "x86_64-manylinux_2_28"
RUNTIME_DIR = "/opt/csflow/runtime"
SOURCE_DIR = "/opt/csflow/model"
PACKAGES_DIR = "/opt/csflow/packages"
# On PATH in the official Python images (and csflow's stand-ins for them).
BIN_DIR = "/usr/local/bin"
# What the image puts on PATH -> the program file it runs (the standalone step programs).
PROGRAMS = {p.command: p.script.name for p in STEP_PROGRAMS.values() if p.standalone}
UID = 1000


def image_env(info: dict) -> dict[str, str]:
    """The image's environment, from a version's build record."""
    config = info["config"]
    env = {
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": f"{SOURCE_DIR}:{PACKAGES_DIR}",
        "HOME": "/tmp",
        step_env.MODEL_FUNCTIONS.name: config["functions"],
        step_env.WORK_DIR.name: step_env.POD_WORK_DIR,
        **config.get("env", {}),
    }
    for name, value in env.items():
        if "\n" in value or "\r" in value or "\0" in value:
            raise BadInput(f"env {name}: values with line breaks cannot go into an image")
    return env


def base_image(info: dict, template: str = BASE_IMAGE) -> str:
    """The model's own base image (config ``image.base``), else the installation's."""
    own = (info["config"].get("image") or {}).get("base")
    return own or template.format(python=info["python"])


def wrapper(program: str) -> str:
    return f'#!/bin/sh\nexec python {RUNTIME_DIR}/{program} "$@"\n'


def write_layer(
    context: Path,
    info: dict,
    layer: Path,
    uv: str,
    run: Callable[[list[str], str], object],
    debs: Sequence[Path] = (),
) -> list[str]:
    """Make the image's one layer (a tarball) from a build context, its build record
    (``build.json``) and the Debian packages the base lacks (``debs``, from
    ``debian.fetch_for_image``). ``run(command, what)`` runs a command and raises on
    failure. Returns the packages whose maintainer scripts were not run."""
    with tempfile.TemporaryDirectory(prefix="csflow-layer-") as tmp:
        root = Path(tmp)
        skipped = debian.unpack(debs, root, run)
        packages = root / PACKAGES_DIR.lstrip("/")
        target = [
            "--target",
            str(packages),
            "--python-version",
            info["python"],
            "--python-platform",
            WHEEL_PLATFORM,
            "--quiet",
        ]
        # The lock pins every package, so nothing is resolved here.
        run(
            [uv, "pip", "install", *target, "--no-deps", "-r", str(context / "requirements.lock")],
            "installing the locked requirements",
        )
        folders = install_folders(info, context / "src")
        if folders:  # the model's own packages: pure wheels built here, no dependencies
            wheels = build_wheels(folders, context / "src", root / "wheels", uv)
            run(
                [uv, "pip", "install", *target, "--no-deps", *map(str, wheels)],
                "installing the model's own packages",
            )
            shutil.rmtree(root / "wheels")
        run([uv, "pip", "install", *target, REDIS_CLIENT], "installing the Redis client")
        shutil.copytree(context / "src", root / SOURCE_DIR.lstrip("/"))
        shutil.copytree(context / "csflow", root / RUNTIME_DIR.lstrip("/"))
        bin_dir = root / BIN_DIR.lstrip("/")
        bin_dir.mkdir(parents=True, exist_ok=True)
        for name, program in PROGRAMS.items():
            (bin_dir / name).write_text(wrapper(program))
            (bin_dir / name).chmod(0o755)
        _tar(root, layer)
    return skipped


def _tar(root: Path, layer: Path) -> None:
    """A reproducible tarball of ``root``: sorted, owned by root, time 0, world-readable.
    (tarfile: the layer needs owners and modes set per entry, which a copy cannot.)"""

    def normalize(entry: tarfile.TarInfo) -> tarfile.TarInfo:
        entry.uid = entry.gid = 0
        entry.uname = entry.gname = ""
        entry.mtime = 0
        executable = entry.isdir() or entry.mode & 0o111
        entry.mode = 0o755 if executable else 0o644
        return entry

    partial = layer.with_suffix(".partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(root)), recursive=False, filter=normalize)
    os.replace(partial, layer)


def _env_flag(name: str, value: str) -> str:
    # crane parses each --env as CSV ("K=V,K2=V2"): quote so commas stay in the value.
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([f"{name}={value}"])
    return out.getvalue()


def crane_mutate_command(
    crane: str, info: dict, layer: Path, image: str, base: str, insecure: bool = False
) -> list[str]:
    """``crane mutate``: the base image plus the layer, its environment and user,
    pushed as ``image``."""
    command = [
        crane,
        "mutate",
        base,
        "--platform",
        IMAGE_PLATFORM,
        "--append",
        str(layer),
        "--user",
        f"{UID}:{UID}",
        "--tag",
        image,
    ]
    for name, value in image_env(info).items():
        command += ["--env", _env_flag(name, value)]
    return command + (["--insecure"] if insecure else [])


def build_step_arguments(prog: str) -> argparse.ArgumentParser:
    """The ``build`` step's arguments, the same for the image builder and the
    embedded engine's environment builder."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--context", required=True, help="the build context (a folder)")
    parser.add_argument("--image", required=True, help="REGISTRY/owner_title:TAG to build")
    parser.add_argument("--digest-file", default="", help="where to write the image's digest")
    return parser
