"""Model environments for the embedded engine: one uv environment per model version.

The embedded engine's stand-in for a model image. A version is identified by
its content tag: a hash of the config's build fields, the source tree and the
locked requirements, so the same inputs give the same tag and the build is
skipped. Environments live in ``$CSFLOW_HOME/envs/OWNER/TITLE/TAG/``:

- ``src/``: a snapshot of the model's source (put on PYTHONPATH);
- ``venv/``: the uv environment, installed from ``requirements.lock``;
- ``version.json``: written last; an environment without it is incomplete and
  is rebuilt.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from csflow.sdk.errors import BadInput, CsflowError
from csflow.sdk.fileutil import file_lock, write_json_atomic, write_text_atomic
from csflow.sdk.model_config import ModelConfig
from csflow.sdk.registry import version_dir

Progress = Callable[[str], None]
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".git", ".venv", "*.egg-info")


class BuildError(CsflowError):
    """An environment could not be built (resolution or installation failed)."""


def uv_bin() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


def _run(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        tail = next((line for line in reversed(detail) if line.strip()), "no output")
        raise BuildError(f"{what} failed: {tail.strip()}")
    return result


def find_python(version: str) -> str:
    """An interpreter for ``3.X``: uv's discovery first, then pyenv's folders, whose
    shims uv cannot query for versions other than the global one."""
    found = subprocess.run(
        [uv_bin(), "python", "find", "--no-python-downloads", version],
        capture_output=True,
        text=True,
    )
    if found.returncode == 0 and found.stdout.strip():
        return found.stdout.strip()
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"))
    candidates += [f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]
    for candidate in reversed(candidates):
        if os.access(candidate, os.X_OK):
            return candidate
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
        _run(["git", "clone", "--quiet", "--no-checkout", git.url, tmp], "git clone")
        _run(["git", "-C", tmp, "checkout", "--quiet", git.ref], f"git checkout {git.ref}")
        source = (Path(tmp) / git.subdir).resolve()
        if not source.is_dir() or Path(tmp).resolve() not in (source, *source.parents):
            raise BadInput(f"{config.name}: subdir {git.subdir!r} not found in {git.url}")
        yield source


def lock_requirements(config: ModelConfig, python: str, cache_dir: Path, refresh: bool = False) -> str:
    """Resolve the requirements to exact pins, once per (requirements, Python)."""
    key = hashlib.sha256(json.dumps([config.python, sorted(config.requirements)]).encode())
    cached = cache_dir / "locks" / f"{key.hexdigest()[:24]}.txt"
    if cached.is_file() and not refresh:
        return cached.read_text()
    result = _run(
        [uv_bin(), "pip", "compile", "--quiet", "--no-header", "--python", python, "-"],
        f"resolving the requirements of {config.name}",
        input="\n".join(config.requirements) + "\n",
    )
    write_text_atomic(cached, result.stdout)
    return result.stdout


def content_tag(config: ModelConfig, source_hash: str, lock: str) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(config.canonical(), sort_keys=True).encode())
    digest.update(source_hash.encode())
    digest.update(lock.encode())
    return digest.hexdigest()[:12]


def is_built(path: Path) -> bool:
    return (path / "version.json").is_file()


def build_environment(
    config: ModelConfig, home: Path, progress: Progress = lambda _: None, refresh: bool = False
) -> dict:
    """Build (or reuse) the environment for the config's current content; return its
    version record."""
    python = find_python(config.python)
    with checkout_source(config, progress) as source:
        progress(f"locking requirements for {config.name}")
        lock = lock_requirements(config, python, home / "cache", refresh=refresh)
        tag = content_tag(config, tree_hash(source), lock)
        target = version_dir(home, config.owner, config.title, tag)
        with file_lock(home / "locks" / f"env-{config.owner}-{config.title}-{tag}"):
            if is_built(target):
                progress(f"environment {tag} already built")
                return json.loads((target / "version.json").read_text())
            shutil.rmtree(target, ignore_errors=True)  # an incomplete earlier build
            target.mkdir(parents=True)
            started = time.time()
            shutil.copytree(source, target / "src", ignore=_IGNORED)
            write_text_atomic(target / "requirements.lock", lock)
            progress(f"creating a Python {config.python} environment")
            _run([uv_bin(), "venv", "--quiet", "--python", python, str(target / "venv")], "uv venv")
            packages = [ln for ln in lock.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
            progress(f"installing {len(packages)} locked packages")
            if packages:
                _run(
                    [uv_bin(), "pip", "sync", "--quiet", "--python", str(target / "venv" / "bin" / "python"),
                     str(target / "requirements.lock")],
                    f"installing the requirements of {config.name}",
                )
            record = {
                "owner": config.owner,
                "title": config.title,
                "tag": tag,
                "python": config.python,
                "functions": config.functions,
                "config": config.canonical(),
                "source": str(config.config_path or ""),
                "built": time.time(),
                "build_seconds": round(time.time() - started, 2),
            }
            write_json_atomic(target / "version.json", record)
            progress(f"environment {tag} built in {record['build_seconds']:.1f}s")
            return record
