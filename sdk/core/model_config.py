"""Model publish configs: ``config/OWNER/TITLE.yaml``.

One file says everything csflow needs to build, test and run a model: where
its code comes from, its Python and requirements, its functions module,
resources, timeout, environment, secret names and the contract tests'
adjustments. The README documents the format; unknown keys are errors.
"""

from __future__ import annotations

import math
import re
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from csflow.sdk.core import names
from csflow.sdk.core.errors import BadInput, NotFound


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GitSource(_Strict):
    url: str
    ref: str = "HEAD"
    subdir: str = "."

    @field_validator("subdir")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value.startswith("/") or ".." in Path(value).parts:
            raise ValueError("subdir must be a relative path inside the repository")
        return value


class Source(_Strict):
    """Exactly one of ``path`` (relative to the config file) or ``git``."""

    path: str | None = None
    git: GitSource | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Source:
        if (self.path is None) == (self.git is None):
            raise ValueError("give exactly one of source.path or source.git")
        return self


_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)\s*(Mi|Gi|M|G)?$")


class Resources(_Strict):
    cpu: float = Field(default=1.0, gt=0, le=64)
    memory: str = Field(default="2G", description="request, e.g. '2G', '512Mi'")

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        if not _MEMORY.match(str(value)):
            raise ValueError("memory must look like '2G', '1.5G', '512M' or '512Mi'")
        return str(value)

    @property
    def memory_mib(self) -> int:
        number, unit = _MEMORY.match(self.memory).groups()  # type: ignore[union-attr]
        factor = {"G": 1000**3, "Gi": 1024**3, "M": 1000**2, "Mi": 1024**2, None: 1024**3}[unit]
        return math.ceil(float(number) * factor / 1024**2)

    def kubernetes(self) -> dict[str, dict[str, str]]:
        """Requests from the config; the memory limit is ceil(1.2 x request), as C/S did."""
        request = self.memory_mib
        return {
            "requests": {"cpu": f"{self.cpu:g}", "memory": f"{request}Mi"},
            "limits": {"cpu": f"{self.cpu:g}", "memory": f"{math.ceil(request * 1.2)}Mi"},
        }


class ContractTests(_Strict):
    meta_param_dict: dict[str, Any] = Field(default_factory=dict)
    ok_adjustment: dict[str, dict[str, Any]]
    bad_adjustment: dict[str, dict[str, Any]]
    # The test step's budget in seconds (default: the model's timeout and room
    # for get_inputs over the meta-parameter grid).
    timeout: int | None = Field(default=None, gt=0, le=7 * 24 * 3600)
    # For a model whose run_model takes longer than a publish should (OG-USA: C/S's
    # publish needed --skip-test): run_model and the outputs check are skipped,
    # and the version records that they were.
    skip_run_model: bool = False


# Debian policy 5.6.1 (package names) and 5.6.12 (versions): "name" or "name=version".
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$")


def system_package_name(spec: str) -> str:
    """A ``system_packages`` entry checked (it reaches apt's command line); its name."""
    if not _PACKAGE.match(spec):
        raise ValueError(
            f"system_packages: {spec!r} is not a Debian package name "
            "(lowercase letters, digits, + - .; optionally =VERSION)"
        )
    return spec.partition("=")[0]


_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}$")


class Image(_Strict):
    """The model's image on a cluster. ``base``: a base image of the model's own
    (e.g. one with TeX Live installed) instead of the installation's Python image;
    it must run the config's Python as ``python`` and hold the model's system
    packages, or be Debian so the build can add them."""

    base: str | None = None

    @field_validator("base")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        if value is not None and not _IMAGE.match(value):
            raise ValueError(f"image.base: {value!r} is not an image reference")
        return value


class ModelConfig(_Strict):
    owner: str
    title: str
    description: str = ""
    source: Source
    python: str = Field(default="3.12", pattern=r"^3\.\d{1,2}$")
    requirements: list[str] = Field(default_factory=list)
    # The model's own packages, built from its source and installed (folders of the
    # source, each with a pyproject.toml or setup.py): [".", "cs-config"] for a
    # repository that keeps its package at the root and cs_config in cs-config/.
    install: list[str] = Field(default_factory=list)
    # Debian packages whose programs the model runs (pandoc, ...): "name" or
    # "name=version". Added to the model's image on a cluster; required on the
    # machine for the embedded engine (sdk/builds/debian.py).
    system_packages: list[str] = Field(default_factory=list)
    image: Image = Field(default_factory=Image)
    functions: str = Field(default="cs_config.functions", pattern=r"^[A-Za-z_][\w.]*$")
    resources: Resources = Field(default_factory=Resources)
    timeout: int = Field(default=600, gt=0, le=7 * 24 * 3600, description="seconds")
    env: dict[str, str] = Field(default_factory=dict)
    secrets: list[str] = Field(default_factory=list)
    tests: ContractTests

    # Where the file was read from, to resolve source.path.
    config_path: Path | None = Field(default=None, exclude=True)

    @field_validator("owner")
    @classmethod
    def _owner(cls, value: str) -> str:
        return names.check_project_part("owner", value)

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        return names.check_project_part("title", value)

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            names.check_env_name(key)
        return {k: str(v) for k, v in value.items()}

    @field_validator("install")
    @classmethod
    def _install(cls, value: list[str]) -> list[str]:
        for folder in value:
            parts = PurePosixPath(folder).parts
            if not folder.strip() or folder.startswith("/") or "\\" in folder or ".." in parts:
                raise ValueError(
                    f"install: {folder!r} must be a folder of the source, "
                    "relative to it (e.g. '.' or 'cs-config')"
                )
        return value

    @field_validator("system_packages")
    @classmethod
    def _system_packages(cls, value: list[str]) -> list[str]:
        for spec in value:
            system_package_name(spec)
        return value

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, value: list[str]) -> list[str]:
        return [names.check_env_name(v) for v in value]

    @property
    def name(self) -> str:
        return f"{self.owner}/{self.title}"

    def source_dir(self) -> Path:
        """The local source folder (for ``source.path``)."""
        if self.source.path is None:
            raise BadInput(f"{self.name}: source is a git repository, not a local path")
        base = self.config_path.parent if self.config_path else Path.cwd()
        path = (base / self.source.path).resolve()
        if not path.is_dir():
            raise BadInput(f"{self.name}: source path {path} does not exist")
        return path

    def canonical(self) -> dict[str, Any]:
        """The fields that define a build, for content tags. Fields added since
        tags were first made count only when set, so a version keeps its tag."""
        data = self.model_dump(mode="json", exclude={"description", "config_path"})
        for fields, later in ((data, _ADDED_LATER), (data["tests"], _ADDED_LATER_TESTS)):
            for name, default in later.items():
                if fields.get(name) == default:
                    del fields[name]
        return data


_ADDED_LATER: dict[str, Any] = {"install": [], "system_packages": [], "image": {"base": None}}
_ADDED_LATER_TESTS: dict[str, Any] = {"timeout": None, "skip_run_model": False}


def load_model_config(path: str | Path) -> ModelConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise NotFound(f"config file not found: {path}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise BadInput(f"cannot read config {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise BadInput(f"config {path} must be a mapping")
    try:
        config = ModelConfig.model_validate({**raw, "config_path": path.resolve()})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise BadInput(f"config {path}: {where}: {first['msg']}") from None
    expected = Path(config.owner) / f"{config.title}.yaml"
    if path.parent.name != config.owner or path.name != f"{config.title}.yaml":
        raise BadInput(f"config {path}: owner/title {config.name} must match its path {expected}")
    return config


def find_model_config(owner: str, title: str, config_dirs: list[Path]) -> ModelConfig:
    names.check_project_part("owner", owner)
    names.check_project_part("title", title)
    for directory in config_dirs:
        candidate = directory / owner / f"{title}.yaml"
        if candidate.is_file():
            return load_model_config(candidate)
    raise NotFound(f"unknown model {owner}/{title}: no config/{owner}/{title}.yaml")
