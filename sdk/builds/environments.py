"""Model environments for the embedded engine: one uv environment per model version.

The embedded engine's stand-in for a model image. A version is identified by
its content tag: a hash of the config's build fields, the source tree and the
locked requirements, so the same inputs give the same tag and the build is
skipped. Environments live in ``$CSFLOW_HOME/envs/OWNER/TITLE/TAG/``:

- ``src/``: a snapshot of the model's source (put on PYTHONPATH);
- ``venv/``: the uv environment, installed from ``requirements.lock``;
- ``version.json``: written last; an environment without it is incomplete and
  is rebuilt.

A build is planned (``plan_build``: source, lock, content tag), laid out as a
build context (``write_build_context``: what a cluster builds the model's image
from, ``sdk/builds/model_image.py``) and installed
(``install_environment``: the embedded engine's uv environment, from the same
source and lock). ``build_environment`` does all three for a simulation of a
model that was never published.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from csflow.runtime import step_env
from csflow.sdk.builds import debian
from csflow.sdk.core.errors import BadInput, CsflowError
from csflow.sdk.core.fileutil import file_lock, write_json_atomic, write_text_atomic
from csflow.sdk.core.model_config import ModelConfig
from csflow.sdk.core.reasons import reason_line
from csflow.sdk.core.steps import MODEL_SIDE_FILES, RUNTIME_DIR
from csflow.sdk.registry.local import version_dir

Progress = Callable[[str], None]
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".git", ".venv", "*.egg-info")


class BuildError(CsflowError):
    """An environment could not be built (resolution or installation failed)."""


def uv_bin() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


# What a build's processes inherit. Resolving and installing requirements may
# build a source distribution, i.e. run code the model's author chose: it gets
# the network, uv's settings and caches, and no csflow credentials.
_BUILD_ENV_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "TMPDIR",
        "TZ",
        "PYENV_ROOT",
        "XDG_CACHE_HOME",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        step_env.HOME.name,
    }
)


def build_process_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in _BUILD_ENV_NAMES or k.startswith("UV_")}


# git reports some failures (an object it cannot read: an incomplete checkout) on
# stderr and still exits 0.
_REPORTED_ERROR = re.compile(r"^(error|fatal):", re.MULTILINE)


def _run(
    cmd: list[str], what: str, errors_fail: bool = False, **kwargs
) -> subprocess.CompletedProcess:
    """``cmd``, or a BuildError with the reason line; ``errors_fail``: an ``error:``
    or ``fatal:`` line on stderr fails it even when it exits 0."""
    kwargs.setdefault("env", build_process_env())
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0 or (errors_fail and _REPORTED_ERROR.search(result.stderr)):
        why = reason_line(result.stderr or result.stdout) or "no output"
        raise BuildError(f"{what} failed: {why}")
    return result


@functools.cache
def find_python(version: str) -> str:
    """An interpreter for ``3.X``: installed interpreters in the usual folders first
    (a file check; pyenv's shims cannot be queried for versions other than the
    global one), then uv's own discovery (slower: it runs every Python on PATH)."""
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"))
    candidates += [f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]
    for candidate in reversed(candidates):
        if os.access(candidate, os.X_OK):
            return candidate
    found = subprocess.run(
        [uv_bin(), "python", "find", "--no-python-downloads", version],
        capture_output=True,
        text=True,
    )
    if found.returncode == 0 and found.stdout.strip():
        return found.stdout.strip()
    raise BuildError(f"no Python {version} interpreter found on this machine")


def tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in ("__pycache__", ".git", ".venv") for part in rel.parts):
            continue
        if path.is_file() and not path.name.endswith(".pyc"):
            digest.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@contextmanager
def checkout_source(config: ModelConfig, progress: Progress) -> Iterator[Path]:
    """The model's source folder: the local path, or a git clone at the ref."""
    if config.source.path is not None:
        yield config.source_dir()
        return
    git = config.source.git
    assert git is not None
    with tempfile.TemporaryDirectory(prefix="csflow-clone-") as tmp:
        progress(f"cloning {git.url} at {git.ref}")
        _run(["git", "clone", "--quiet", "--no-checkout", git.url, tmp], "git clone", True)
        _run(["git", "-C", tmp, "checkout", "--quiet", git.ref], f"git checkout {git.ref}", True)
        source = (Path(tmp) / git.subdir).resolve()
        if not source.is_dir() or Path(tmp).resolve() not in (source, *source.parents):
            raise BadInput(f"{config.name}: subdir {git.subdir!r} not found in {git.url}")
        yield source


def lock_requirements(
    config: ModelConfig,
    cache_dir: Path,
    refresh: bool = False,
    source: Path | None = None,
    source_hash: str = "",
) -> str:
    """Resolve the requirements to exact pins, once per (requirements, Python, and
    the source when the config installs packages from it: their dependencies are
    locked too, they themselves are not). For the config's Python version, which
    need not be installed here (a cluster's clone step runs in the csflow image)."""
    local = bool(config.install) and source is not None
    parts: list = [config.python, sorted(config.requirements)]
    if local:  # (without: the key locks were cached under before ``install`` existed)
        parts += [config.install, source_hash]
    key = hashlib.sha256(json.dumps(parts).encode())
    cached = cache_dir / "locks" / f"{key.hexdigest()[:24]}.txt"
    if cached.is_file() and not refresh:
        return cached.read_text()
    command = [uv_bin(), "pip", "compile", "--quiet", "--no-header"]
    command += ["--python-version", config.python, "-"]
    what = f"resolving the requirements of {config.name}"
    if not local:
        lock = _run(command, what, input="\n".join(config.requirements) + "\n").stdout
    else:
        assert source is not None
        with scratch_copy(source) as copy:  # resolving builds their metadata
            wanted = [*config.requirements, *(_as_requirement(f) for f in config.install)]
            lock = _run(command, what, input="\n".join(wanted) + "\n", cwd=copy).stdout
        lock = _without_local_packages(lock)
    write_text_atomic(cached, lock)
    return lock


def _as_requirement(folder: str) -> str:
    return "." if folder.strip("./") == "" else f"./{folder.strip('/').removeprefix('./')}"


def _without_local_packages(lock: str) -> str:
    """The lock less the model's own packages (``./cs-config`` and its ``# via``
    lines): they are built from the source, which the content tag covers."""
    kept: list[str] = []
    skipping = False
    for line in lock.splitlines():
        if line.startswith((".", "/", "file:")):
            skipping = True
            continue
        if skipping and line.startswith((" ", "\t")):
            continue
        skipping = False
        kept.append(line)
    return "\n".join(kept) + "\n"


@contextmanager
def scratch_copy(source: Path) -> Iterator[Path]:
    """A throwaway copy of the source to build packages in: setuptools writes
    ``build/`` and ``*.egg-info`` beside the code, never into the maintainer's."""
    with tempfile.TemporaryDirectory(prefix="csflow-src-") as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(source, copy, ignore=_IGNORED, symlinks=True)
        yield copy


def install_folders(config_or_info: ModelConfig | dict, source: Path) -> list[Path]:
    """The config's ``install`` folders inside ``source``, each a package to build."""
    if isinstance(config_or_info, dict):
        name = f"{config_or_info['owner']}/{config_or_info['title']}"
        folders = config_or_info.get("config", {}).get("install", [])
    else:
        name, folders = config_or_info.name, config_or_info.install
    root = source.resolve()
    paths = []
    for folder in folders:
        path = (root / folder).resolve()
        if root not in (path, *path.parents) or not path.is_dir():
            raise BadInput(f"{name}: install folder {folder!r} is not a folder of the source")
        if not any((path / marker).is_file() for marker in ("pyproject.toml", "setup.py")):
            raise BadInput(f"{name}: install folder {folder!r} has no pyproject.toml or setup.py")
        paths.append(path)
    return paths


def build_wheels(
    folders: list[Path], source: Path, out: Path, uv: str, python: str | None = None
) -> list[Path]:
    """Wheels of the model's own packages, built in a scratch copy of ``source``
    (with ``python``, or whichever uv finds), to install without their dependencies:
    the lock holds those."""
    root = source.resolve()
    wheels: list[Path] = []
    with scratch_copy(source) as copy:
        for number, folder in enumerate(folders):
            where = folder.relative_to(root).as_posix()
            built = out / str(number)
            command = [uv, "build", "--wheel", "--quiet", "--out-dir", str(built)]
            command += ["--python", python] if python else []
            _run([*command, str(copy / where)], f"building the package in {where}")
            wheels.extend(sorted(built.glob("*.whl")))
    return wheels


def content_tag(config: ModelConfig, source_hash: str, lock: str) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(config.canonical(), sort_keys=True).encode())
    digest.update(source_hash.encode())
    digest.update(lock.encode())
    return digest.hexdigest()[:12]


def is_built(path: Path) -> bool:
    return (path / "version.json").is_file()


def _git(source: Path, *args: str) -> str | None:
    result = subprocess.run(["git", "-C", str(source), *args], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def source_origin(config: ModelConfig, source: Path) -> dict:
    """Where a version's source came from, for its build record: the git URL, ref
    and commit, or the local path (with its commit when it is a git work tree)."""
    commit = _git(source, "rev-parse", "HEAD")
    if config.source.git is not None:
        git = config.source.git
        return {"git": git.url, "ref": git.ref, "subdir": git.subdir, "commit": commit}
    origin: dict = {"path": str(source)}
    if commit:
        origin["commit"] = commit
        origin["dirty"] = bool(_git(source, "status", "--porcelain", "--", "."))
    return origin


@dataclass
class BuildPlan:
    """What one build is made of: the checked-out source, the lock and the content
    tag they give. Only valid inside ``plan_build``'s block (a git checkout is
    a temporary folder)."""

    config: ModelConfig
    source: Path
    lock: str
    tag: str
    info: dict


@contextmanager
def plan_build(
    config: ModelConfig, cache_dir: Path, progress: Progress = lambda _: None, refresh: bool = False
) -> Iterator[BuildPlan]:
    with checkout_source(config, progress) as source:
        install_folders(config, source)  # each one there, before anything is resolved
        source_hash = tree_hash(source)
        progress(f"locking requirements for {config.name}")
        lock = lock_requirements(config, cache_dir, refresh, source, source_hash)
        tag = content_tag(config, source_hash, lock)
        info = {
            "owner": config.owner,
            "title": config.title,
            "tag": tag,
            "python": config.python,
            "functions": config.functions,
            "config": config.canonical(),
            "source": str(config.config_path or ""),
            "origin": source_origin(config, source),
            "source_hash": source_hash,
            "lock_sha256": hashlib.sha256(lock.encode()).hexdigest(),
            "requirements": len(_packages(lock)),
        }
        yield BuildPlan(config, source, lock, tag, info)


def write_build_context(plan: BuildPlan, context: Path) -> None:
    """Lay out the build context: what a cluster builds the model's image from
    (``sdk/builds/model_image.py``), and the embedded engine its uv environment."""
    context.mkdir(parents=True, exist_ok=True)
    shutil.copytree(plan.source, context / "src", ignore=_IGNORED, dirs_exist_ok=True)
    write_text_atomic(context / "requirements.lock", plan.lock)
    (context / "csflow").mkdir(exist_ok=True)
    for name in MODEL_SIDE_FILES:
        shutil.copy2(RUNTIME_DIR / name, context / "csflow" / name)
    write_json_atomic(context / "build.json", plan.info)


def _packages(lock: str) -> list[str]:
    return [ln for ln in lock.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def install_environment(
    info: dict, source: Path, lock: str, home: Path, progress: Progress = lambda _: None
) -> dict:
    """Build the uv environment for a planned version (or reuse it); return its
    version record. Two builders of the same version wait for each other."""
    owner, title, tag = info["owner"], info["title"], info["tag"]
    debian.require_on_host(info["config"].get("system_packages", []), f"{owner}/{title}")
    target = version_dir(home, owner, title, tag)
    with file_lock(home / "locks" / f"env-{owner}-{title}-{tag}"):
        if is_built(target):
            progress(f"environment {tag} already built")
            return json.loads((target / "version.json").read_text())
        shutil.rmtree(target, ignore_errors=True)  # an incomplete earlier build
        target.mkdir(parents=True)
        started = time.time()
        shutil.copytree(source, target / "src", ignore=_IGNORED)
        write_text_atomic(target / "requirements.lock", lock)
        progress(f"creating a Python {info['python']} environment")
        python = find_python(info["python"])
        _run([uv_bin(), "venv", "--quiet", "--python", python, str(target / "venv")], "uv venv")
        packages = _packages(lock)
        progress(f"installing {len(packages)} locked packages")
        if packages:
            _run(
                [
                    uv_bin(),
                    "pip",
                    "sync",
                    "--quiet",
                    "--python",
                    str(target / "venv" / "bin" / "python"),
                    str(target / "requirements.lock"),
                ],
                f"installing the requirements of {owner}/{title}",
            )
        folders = install_folders(info, target / "src")
        if folders:
            progress(f"installing {len(folders)} package(s) from the source")
            with tempfile.TemporaryDirectory(prefix="csflow-wheels-") as wheels_dir:
                venv_python = str(target / "venv" / "bin" / "python")
                wheels = build_wheels(
                    folders, target / "src", Path(wheels_dir), uv_bin(), venv_python
                )
                _run(
                    [
                        uv_bin(),
                        "pip",
                        "install",
                        "--quiet",
                        "--no-deps",
                        "--python",
                        venv_python,
                        *map(str, wheels),
                    ],
                    f"installing the packages of {owner}/{title}",
                )
        record = {
            **info,
            "built": time.time(),
            "build_seconds": round(time.time() - started, 2),
        }
        write_json_atomic(target / "version.json", record)
        progress(f"environment {tag} built in {record['build_seconds']:.1f}s")
        return record


def build_environment(
    config: ModelConfig, home: Path, progress: Progress = lambda _: None, refresh: bool = False
) -> dict:
    """Build (or reuse) the environment for the config's current content; return its
    version record."""
    debian.require_on_host(config.system_packages, config.name)  # before anything is locked
    with plan_build(config, home / "cache", progress, refresh=refresh) as plan:
        target = version_dir(home, config.owner, config.title, plan.tag)
        if is_built(target):
            progress(f"environment {plan.tag} already built")
            return json.loads((target / "version.json").read_text())
        return install_environment(plan.info, plan.source, plan.lock, home, progress)
