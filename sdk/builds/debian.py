"""The Debian packages a model config names (``system_packages``), as programs
its steps can run.

- **Cluster** (``runtime/image_build.py``): apt, run as the unprivileged build
  user with its state in a scratch folder, resolves the packages against the
  *base image's* dpkg database (so only what the base lacks is fetched) and
  downloads them; ``dpkg-deb -x`` unpacks them into the model's one layer.
  Maintainer scripts are not run (nothing can run inside an image being
  assembled without a container runtime): packages that need them (TeX Live's
  format files, for one) belong in a base image of the model's own
  (``image.base``), and the build log names every package whose scripts were
  skipped.
- **Embedded engine**: the host is the image. The packages must be installed
  on this machine; a build or a run that lacks one stops before any model code
  runs, naming the missing packages.

apt and dpkg do the work (resolution, signatures, unpacking); this module only
points them at the right folders.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from csflow.sdk.core.errors import CsflowError
from csflow.sdk.core.model_config import system_package_name

__all__ = [
    "SystemPackagesError",
    "base_system",
    "codename",
    "download",
    "fetch_for_image",
    "missing_on_host",
    "require_on_host",
    "unpack",
]

# Bookworm and later are merged-/usr: /bin, /lib, ... are symlinks into /usr. A layer
# with a real directory there would hide the base's symlink (and /bin/sh with it).
_MERGED_USR = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_MAINTAINER_SCRIPTS = ("preinst", "postinst")

Run = Callable[[list[str], str], object]


class SystemPackagesError(CsflowError):
    """A model's Debian packages cannot be provided (exit 1: the machine, not the input)."""


def _checked(specs: Iterable[str]) -> list[tuple[str, str]]:
    """(spec, name) of each entry; an entry that is no package name stops here, before
    it reaches apt's command line (a build context is the model author's to shape)."""
    try:
        return [(spec, system_package_name(spec)) for spec in specs]
    except ValueError as exc:
        raise SystemPackagesError(str(exc)) from None


def codename(os_release: str) -> str:
    """The Debian release an os-release file names (bookworm, trixie, ...)."""
    match = re.search(r"^VERSION_CODENAME=\"?(\w+)", os_release, re.M)
    return match.group(1) if match else ""


def missing_on_host(packages: Iterable[str]) -> list[str]:
    """The packages (names or name=version) not installed on this machine, by dpkg's
    own database; all of them where the machine has no dpkg."""
    wanted = {name: spec.partition("=")[2] for spec, name in _checked(packages)}
    if not wanted:
        return []
    if shutil.which("dpkg-query") is None:
        return sorted(wanted)
    listed = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\n", *wanted],
        capture_output=True,
        text=True,
    ).stdout
    installed = {}
    for line in listed.splitlines():
        name, version, status = (line.split("\t") + ["", ""])[:3]
        if status.strip() == "ii":
            installed[name] = version
    return sorted(
        name
        for name, version in wanted.items()
        if name not in installed or (version and installed[name] != version)
    )


def require_on_host(packages: Iterable[str], model: str) -> None:
    """Stop a build or a run on the embedded engine that lacks a package."""
    missing = missing_on_host(packages)
    if missing:
        raise SystemPackagesError(
            f"{model} needs Debian packages that are not installed on this machine: "
            f"{', '.join(missing)} (install them: sudo apt-get install {' '.join(missing)}; "
            "on a cluster the build adds them to the model's image)"
        )


def base_system(image: IO[bytes], folder: Path) -> tuple[Path, str]:
    """The base image's dpkg database and Debian codename, read from ``image``: its
    flattened file system as a tar stream (``crane export``).
    Returns (the status file, written into ``folder``; the codename)."""
    folder.mkdir(parents=True, exist_ok=True)
    status, release = folder / "status", ""
    wanted = {"var/lib/dpkg/status", "etc/os-release", "usr/lib/os-release"}
    with tarfile.open(fileobj=image, mode="r|") as files:
        for entry in files:
            name = entry.name.removeprefix("./")
            if name not in wanted or not entry.isfile():
                continue
            data = files.extractfile(entry).read()  # type: ignore[union-attr]
            if name.endswith("status"):
                status.write_bytes(data)
            elif not release:
                release = codename(data.decode(errors="replace"))
    if not status.is_file():
        raise SystemPackagesError(
            "system_packages need a Debian base image (the base has no dpkg database); "
            "or give the model a base image of its own with them installed (image.base)"
        )
    return status, release


def download(packages: list[str], status: Path, work: Path, arch: str, run: Run) -> list[Path]:
    """Resolve ``packages`` against the dpkg database ``status`` (the base image's)
    and download every package it lacks, with this machine's apt sources, as
    whoever runs this. Returns the downloaded ``.deb`` files."""
    _checked(packages)
    lists, cache = work / "lists", work / "cache"
    for folder in (lists / "partial", cache / "archives" / "partial"):
        folder.mkdir(parents=True, exist_ok=True)
    apt = [
        "apt-get",
        "-q",
        "-o", f"Dir::State::Lists={lists}",
        "-o", f"Dir::State::status={status}",
        "-o", f"Dir::Cache={cache}",
        "-o", f"Dir::Log={work}",
        "-o", "Debug::NoLocking=1",  # the locks live in /var, which only root may write
        "-o", f"APT::Architecture={arch}",
        "-o", f"APT::Architectures={arch}",
    ]  # fmt: skip
    run([*apt, "update"], "reading the Debian package index")
    run(
        [*apt, "-y", "--no-install-recommends", "--download-only", "install", *packages],
        f"downloading the Debian packages {' '.join(packages)}",
    )
    return sorted((cache / "archives").glob("*.deb"))


def unpack(debs: Iterable[Path], root: Path, run: Run) -> list[str]:
    """Unpack ``debs`` into ``root`` (a layer's file system), merged-/usr. Returns
    the packages whose maintainer scripts were not run."""
    skipped = []
    for deb in debs:
        run(["dpkg-deb", "-x", str(deb), str(root)], f"unpacking {deb.name}")
        scripts = [
            script
            for script in _MAINTAINER_SCRIPTS
            if subprocess.run(
                ["dpkg-deb", "--info", str(deb), script], capture_output=True
            ).returncode
            == 0
        ]
        if scripts:
            package = subprocess.run(
                ["dpkg-deb", "--field", str(deb), "Package"], capture_output=True, text=True
            ).stdout.strip()
            skipped.append(f"{package or deb.name} ({', '.join(scripts)})")
    for top in _MERGED_USR:
        folder = root / top
        if folder.is_dir() and not folder.is_symlink():
            shutil.copytree(folder, root / "usr" / top, symlinks=True, dirs_exist_ok=True)
            shutil.rmtree(folder)
    return skipped


def fetch_for_image(
    packages: list[str], export_command: list[str], work: Path, arch: str, run: Run
) -> list[Path]:
    """The ``.deb`` files a base image needs for ``packages``: its dpkg database read
    through ``export_command`` (``crane export BASE -``), then :func:`download`."""
    work.mkdir(parents=True, exist_ok=True)
    with (work / "export.err").open("w+") as errors:
        export = subprocess.Popen(export_command, stdout=subprocess.PIPE, stderr=errors)
        assert export.stdout is not None
        try:
            status, release = base_system(export.stdout, work / "base")
        except tarfile.TarError as exc:
            status, release = None, f"not a file system ({exc})"
        finally:
            export.stdout.close()
            if export.wait() != 0:
                errors.seek(0)
                said = [line for line in errors.read().splitlines() if line.strip()]
                raise SystemPackagesError(
                    f"reading the base image failed: {said[-1] if said else 'crane export'}"
                )
    if status is None:
        raise SystemPackagesError(f"reading the base image failed: {release}")
    os_release = Path("/etc/os-release")
    here = codename(os_release.read_text()) if os_release.is_file() else ""
    if release and here and release != here:
        raise SystemPackagesError(
            f"the base image is Debian {release}, but this builder fetches {here} packages: "
            "use a base image of that release, or one with the packages installed (image.base)"
        )
    return download(packages, status, work / "apt", arch, run)
