"""The C/S model contract: job inputs, errors/warnings and outputs.

A model module (by convention ``cs_config.functions``) provides
``get_version``, ``get_inputs``, ``validate_inputs`` and ``run_model``, the
functions C/S models already implement (``get_inputs`` returns
``meta_parameters`` and ``model_parameters``; ``run_model`` returns
``renderable`` and ``downloadable`` lists; ``runtime/contract_tests.py``
checks them). This module owns the shapes that cross the boundary, in place of
the unmaintained cs-kit and cs-storage:

- ``JobInputs``: C/S job kwargs, ``{"meta_param_dict", "adjustment"}``;
- ``ErrorsWarnings``: ``{section: {"errors": {param: [msg]}, "warnings": {...}}}``;
- ``Output`` / ``ModelResult``: what ``run_model`` returns, with binary media
  carried as base64 in JSON;
- ``RemoteResult``: what the webapp stores once outputs are written.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from csflow.sdk.core.jsonio import excerpt

MediaType = Literal[
    "bokeh", "table", "CSV", "PNG", "JPEG", "MP3", "MP4", "HDF5", "PDF", "Markdown", "Text"
]

BINARY_MEDIA: frozenset[str] = frozenset({"PNG", "JPEG", "MP3", "MP4", "HDF5", "PDF"})

FILE_EXTENSIONS: dict[str, str] = {
    "bokeh": "json",
    "table": "html",
    "CSV": "csv",
    "PNG": "png",
    "JPEG": "jpeg",
    "MP3": "mp3",
    "MP4": "mp4",
    "HDF5": "h5",
    "PDF": "pdf",
    "Markdown": "md",
    "Text": "txt",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputsError(ValueError):
    """A shape error at a place inside one field of the inputs (``where``: keys and
    indexes below the field), reported as ``inputs: adjustment.Policy.STD[0]: ...``."""

    def __init__(self, where: tuple[str | int, ...], problem: str):
        super().__init__(problem)
        self.where = where
        self.problem = problem


def normalize_meta_param_dict(meta: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Both C/S shapes, ``{"year": 2024}`` and ``{"year": [{"value": 2024}]}``, become
    the ParamTools specification the C/S webapp sent to models."""
    if not isinstance(meta, dict):
        raise ValueError("meta_param_dict must be an object")
    normalized: dict[str, list[dict[str, Any]]] = {}
    for name, value in meta.items():
        if isinstance(value, list) and all(isinstance(v, dict) and "value" in v for v in value):
            normalized[name] = value
        elif isinstance(value, (dict, list)):
            raise InputsError(
                (name,), f"must be a value or [{{'value': ...}}], got {excerpt(value)}"
            )
        else:
            normalized[name] = [{"value": value}]
    return normalized


def check_value_objects(adjustment: dict[str, dict[str, Any]]) -> None:
    """Every value object in an adjustment (``{section: {param: [{..., "value": v}]}}``)
    has its ``value``: a model reads it blindly (``KeyError``)."""
    for section, params in adjustment.items():
        for name, given in params.items():
            objects = given if isinstance(given, list) else [given]
            for i, item in enumerate(objects):
                if isinstance(item, dict) and "value" not in item:
                    where: tuple[str | int, ...] = (
                        (section, name, i) if isinstance(given, list) else (section, name)
                    )
                    keys = ", ".join(excerpt(k, 20) for k in list(item)[:4])
                    raise InputsError(
                        where,
                        "a value object needs a 'value' key"
                        + (f" (it has {keys}{', ...' if len(item) > 4 else ''})" if item else ""),
                    )


def flat_meta_param_dict(meta: dict[str, Any]) -> dict[str, Any]:
    """The flat shape, ``{"year": 2024}``, for display and cache keys."""
    return {k: v[0]["value"] if v else None for k, v in normalize_meta_param_dict(meta).items()}


class JobInputs(_Strict):
    """One simulation's inputs: the shape of C/S job kwargs."""

    meta_param_dict: dict[str, Any] = Field(default_factory=dict)
    adjustment: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("meta_param_dict")
    @classmethod
    def _normalize_meta(cls, value: dict[str, Any]) -> dict[str, Any]:
        return normalize_meta_param_dict(value)

    @field_validator("adjustment")
    @classmethod
    def _check_adjustment(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        check_value_objects(value)
        return value


class SectionErrors(_Strict):
    errors: dict[str, list[str]] = Field(default_factory=dict)
    warnings: dict[str, list[str]] = Field(default_factory=dict)


class ErrorsWarnings(BaseModel):
    """``{section: {"errors": ..., "warnings": ...}}``; valid when no section has errors."""

    model_config = ConfigDict(extra="forbid")
    root: dict[str, SectionErrors] = Field(default_factory=dict)

    @classmethod
    def of(cls, data: dict[str, Any]) -> ErrorsWarnings:
        return cls(root={k: SectionErrors.model_validate(v) for k, v in (data or {}).items()})

    @property
    def has_errors(self) -> bool:
        return any(section.errors for section in self.root.values())

    def dump(self) -> dict[str, Any]:
        return {k: v.model_dump() for k, v in self.root.items()}


class Output(_Strict):
    """One output, held to the rules of cs-storage (the library C/S wrote outputs
    with): whatever it stored, csflow accepts (``tests/test_cs_storage_oracle.py``).
    ``data`` is text for text media and base64 for binary media in JSON; a model
    may hand over ``bytes`` and they are encoded here. The title may be empty: a
    file name is derived where one is needed (``output_filenames``)."""

    media_type: MediaType
    title: str
    data: Any
    id: str | None = None

    @model_validator(mode="after")
    def _check_data(self) -> Output:
        if self.media_type in BINARY_MEDIA:
            if isinstance(self.data, (bytes, bytearray)):
                self.data = base64.b64encode(bytes(self.data)).decode("ascii")
            elif isinstance(self.data, str):
                try:  # not validate=True: cs-storage decoded leniently
                    base64.b64decode(self.data)
                except (binascii.Error, ValueError):
                    raise ValueError(
                        f"{self.media_type} output {self.title!r} must be bytes or base64 text"
                    ) from None
            else:
                raise ValueError(f"{self.media_type} output {self.title!r} must be bytes")
        elif self.media_type == "bokeh":
            try:  # bokeh.embed.json_item() output, stored as JSON
                json.dumps(self.data, allow_nan=False)
            except (TypeError, ValueError):
                raise ValueError(f"bokeh output {self.title!r} must be JSON data") from None
        elif not isinstance(self.data, str):
            raise ValueError(f"{self.media_type} output {self.title!r} must be text")
        return self

    def content(self) -> bytes:
        """The bytes written to a file for this output."""
        if self.media_type in BINARY_MEDIA:
            return base64.b64decode(self.data)
        if self.media_type == "bokeh":
            return json.dumps(self.data).encode()
        return str(self.data).encode()


class ModelResult(_Strict):
    """What ``run_model`` returns."""

    renderable: list[Output]
    downloadable: list[Output]


# A name's stem is kept under this many bytes (file systems allow 255 per name).
MAX_STEM_BYTES = 200
_UNSAFE_IN_NAMES = re.compile(r"[/\\\x00-\x1f\x7f]+")


def output_filenames(outputs: list[Output]) -> list[str]:
    """File names for outputs inside one archive, as C/S made them (the title, with
    the media type's extension added only when it is missing) and unique: a repeated
    name gets ``-2``, ``-3`` before its extension. Path separators and control
    characters become ``_``, and leading dots are dropped, so every name is flat; an
    empty title is named after its media type and position (``bokeh-1.json``)."""
    used: set[str] = set()
    names = []
    for position, output in enumerate(outputs, 1):
        ext = FILE_EXTENSIONS[output.media_type]
        stem = _UNSAFE_IN_NAMES.sub("_", output.title).strip().lstrip(".").rstrip(". ")
        if stem.lower().endswith(f".{ext}"):
            stem, ext = stem[: -len(ext) - 1], stem[-len(ext) :]
        stem = _shortened(stem) or f"{output.media_type.lower()}-{position}"
        name, n = f"{stem}.{ext}", 1
        while name.casefold() in used:  # casefold: unpacked on a case-blind disk too
            n += 1
            name = f"{stem}-{n}.{ext}"
        used.add(name.casefold())
        names.append(name)
    return names


def _shortened(stem: str) -> str:
    """A stem past MAX_STEM_BYTES keeps its start and its end (the words that tell
    two tables apart are often last), joined by ``~``."""
    data = stem.encode()
    if len(data) <= MAX_STEM_BYTES:
        return stem
    half = (MAX_STEM_BYTES - 1) // 2
    head = data[:half].decode(errors="ignore")
    tail = data[-half:].decode(errors="ignore")
    return f"{head}~{tail}"


class RemoteOutput(_Strict):
    id: str
    title: str
    media_type: MediaType
    filename: str


class RemoteCategory(_Strict):
    ziplocation: str
    outputs: list[RemoteOutput]


class RemoteResult(_Strict):
    """Where a run's outputs were written: the webapp's ``sim.outputs["outputs"]``."""

    renderable: RemoteCategory
    downloadable: RemoteCategory
