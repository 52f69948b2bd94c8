"""Two runs compared: what changed in their inputs and in their tables.

``diff_runs`` is a pure function of the two ``Run`` records, their inputs (as
``Client.run_inputs`` returns them) and their outputs (as ``Client.results``
does, or ``NoResults`` saying why there are none). Inputs compare per meta
parameter and per ``SECTION.PARAM``, a parameter's value objects as a set (their
order means nothing to ParamTools). Outputs compare table by table (CSV
downloadables and ``table`` renderables, read by ``sdk/core/tables.py``), paired
by title; cells are matched by row label (the first column) and column header.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from csflow.sdk.core.run import Run
from csflow.sdk.core.tables import Grid, number, read_table

__all__ = [
    "NoResults",
    "RunSide",
    "InputChange",
    "CellChange",
    "TableDiff",
    "RunDiff",
    "diff_runs",
    "format_change",
]

ONLY_IN_A, ONLY_IN_B, CHANGED = "only in A", "only in B", "changed"


@dataclass(frozen=True)
class NoResults:
    """A run's outputs cannot be compared: ``reason`` is the backend's one line
    (``run X has no results: it is FAIL``)."""

    reason: str


@dataclass
class RunSide:
    job_id: str
    model: str
    tag: str
    model_version: str
    status: str

    @classmethod
    def of(cls, run: Run) -> RunSide:
        return cls(run.id, run.model, run.tag, run.model_version, run.status)


@dataclass
class InputChange:
    """One parameter that differs. ``section`` is None for a meta parameter;
    ``a``/``b`` are its value objects (None: absent from that run), ``only_in_a``
    and ``only_in_b`` the value objects the other run does not have."""

    section: str | None
    name: str
    a: list[Any] | None
    b: list[Any] | None
    only_in_a: list[Any]
    only_in_b: list[Any]

    @property
    def parameter(self) -> str:
        return self.name if self.section is None else f"{self.section}.{self.name}"

    @property
    def change(self) -> str:
        return ONLY_IN_B if self.a is None else ONLY_IN_A if self.b is None else CHANGED

    def to_dict(self) -> dict[str, Any]:
        return {
            "parameter": self.parameter,
            "section": self.section,
            "name": self.name,
            "change": self.change,
            "a": self.a,
            "b": self.b,
            "only_in_a": self.only_in_a,
            "only_in_b": self.only_in_b,
        }


@dataclass
class CellChange:
    """A cell that differs. ``difference`` is B−A when both cells are numbers
    (``change`` is it written like the model's numbers), else None (text)."""

    row: str
    column: str
    a: str
    b: str
    difference: float | None = None
    change: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "column": self.column,
            "a": self.a,
            "b": self.b,
            "difference": self.difference,
            "change": self.change,
        }


@dataclass
class TableDiff:
    """One table present in both runs. ``occurrence`` counts tables of the same
    title (1 for the first), which pair by order of appearance."""

    title: str
    occurrence: int
    media_type_a: str
    media_type_b: str
    cells: list[CellChange] = field(default_factory=list)
    rows_only_in_a: list[str] = field(default_factory=list)
    rows_only_in_b: list[str] = field(default_factory=list)
    columns_only_in_a: list[str] = field(default_factory=list)
    columns_only_in_b: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.cells
            or self.rows_only_in_a
            or self.rows_only_in_b
            or self.columns_only_in_a
            or self.columns_only_in_b
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "occurrence": self.occurrence,
            "media_type_a": self.media_type_a,
            "media_type_b": self.media_type_b,
            "changed": self.changed,
            "cells": [cell.to_dict() for cell in self.cells],
            "rows_only_in_a": self.rows_only_in_a,
            "rows_only_in_b": self.rows_only_in_b,
            "columns_only_in_a": self.columns_only_in_a,
            "columns_only_in_b": self.columns_only_in_b,
        }


@dataclass
class RunDiff:
    """``notes``: differences of the runs themselves (model, tag, model version,
    status); ``no_results``: why outputs were not compared (then ``tables`` and
    the ``tables_only_in_*`` lists are empty)."""

    a: RunSide
    b: RunSide
    notes: list[str]
    inputs: list[InputChange]
    no_results: list[str]
    tables: list[TableDiff]
    tables_only_in_a: list[str]
    tables_only_in_b: list[str]

    @property
    def changed(self) -> bool:
        return bool(
            self.inputs
            or any(t.changed for t in self.tables)
            or self.tables_only_in_a
            or self.tables_only_in_b
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": vars(self.a).copy(),
            "b": vars(self.b).copy(),
            "notes": self.notes,
            "changed": self.changed,
            "inputs": [change.to_dict() for change in self.inputs],
            "no_results": self.no_results,
            "tables": [table.to_dict() for table in self.tables],
            "tables_only_in_a": self.tables_only_in_a,
            "tables_only_in_b": self.tables_only_in_b,
        }


def diff_runs(
    run_a: Run,
    inputs_a: Mapping[str, Any],
    outputs_a: Mapping[str, Any] | NoResults,
    run_b: Run,
    inputs_b: Mapping[str, Any],
    outputs_b: Mapping[str, Any] | NoResults,
) -> RunDiff:
    """What changed from run A to run B (differences are B−A); outputs are compared
    only when neither side is ``NoResults``."""
    a, b = RunSide.of(run_a), RunSide.of(run_b)
    no_results = [o.reason for o in (outputs_a, outputs_b) if isinstance(o, NoResults)]
    tables: list[TableDiff] = []
    only_a: list[str] = []
    only_b: list[str] = []
    if not isinstance(outputs_a, NoResults) and not isinstance(outputs_b, NoResults):
        tables, only_a, only_b = _diff_outputs(outputs_a, outputs_b)
    return RunDiff(
        a=a,
        b=b,
        notes=_run_notes(a, b),
        inputs=_diff_inputs(inputs_a, inputs_b),
        no_results=no_results,
        tables=tables,
        tables_only_in_a=only_a,
        tables_only_in_b=only_b,
    )


def _run_notes(a: RunSide, b: RunSide) -> list[str]:
    notes = []
    for what, left, right in (
        ("model", a.model, b.model),
        ("tag", a.tag, b.tag),
        ("model version", a.model_version, b.model_version),
        ("status", a.status, b.status),
    ):
        if left != right:
            notes.append(f"{what} differs: {left or '-'} (A), {right or '-'} (B)")
    return notes


# -- inputs ----------------------------------------------------------------------------


def _value_objects(value: Any) -> list[Any]:
    """A parameter's value objects; a flat meta parameter (``2024``) is one."""
    return value if isinstance(value, list) else [{"value": value}]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _compare_parameter(section: str | None, name: str, a: Any, b: Any) -> InputChange | None:
    objects_a = None if a is None else _value_objects(a)
    objects_b = None if b is None else _value_objects(b)
    keys_a = {_canonical(o) for o in objects_a or []}
    keys_b = {_canonical(o) for o in objects_b or []}
    if objects_a is not None and objects_b is not None and keys_a == keys_b:
        return None
    return InputChange(
        section,
        name,
        objects_a,
        objects_b,
        only_in_a=[o for o in objects_a or [] if _canonical(o) not in keys_b],
        only_in_b=[o for o in objects_b or [] if _canonical(o) not in keys_a],
    )


def _union(a: Iterable[str], b: Iterable[str]) -> list[str]:
    """Keys of both, in A's order then B's new ones."""
    return list(dict.fromkeys([*a, *b]))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _diff_inputs(inputs_a: Mapping[str, Any], inputs_b: Mapping[str, Any]) -> list[InputChange]:
    changes: list[InputChange | None] = []
    meta_a = _mapping(inputs_a.get("meta_param_dict"))
    meta_b = _mapping(inputs_b.get("meta_param_dict"))
    for name in _union(meta_a, meta_b):
        changes.append(_compare_parameter(None, name, meta_a.get(name), meta_b.get(name)))
    adjustment_a = _mapping(inputs_a.get("adjustment"))
    adjustment_b = _mapping(inputs_b.get("adjustment"))
    for section in _union(adjustment_a, adjustment_b):
        params_a = _mapping(adjustment_a.get(section))
        params_b = _mapping(adjustment_b.get(section))
        for name in _union(params_a, params_b):
            changes.append(
                _compare_parameter(section, name, params_a.get(name), params_b.get(name))
            )
    return [change for change in changes if change is not None]


# -- outputs ---------------------------------------------------------------------------


@dataclass
class _Table:
    title: str
    media_type: str
    grid: Grid


def _tables(outputs: Mapping[str, Any]) -> dict[str, list[_Table]]:
    """The outputs that are tables, by title, in order of appearance."""
    by_title: dict[str, list[_Table]] = {}
    for kind in ("renderable", "downloadable"):
        for output in outputs.get(kind) or []:
            media_type, title = str(output.get("media_type", "")), str(output.get("title", ""))
            grid = read_table(media_type, output.get("data"))
            if grid is not None:
                by_title.setdefault(title, []).append(_Table(title, media_type, grid))
    return by_title


def _diff_outputs(
    outputs_a: Mapping[str, Any], outputs_b: Mapping[str, Any]
) -> tuple[list[TableDiff], list[str], list[str]]:
    tables_a, tables_b = _tables(outputs_a), _tables(outputs_b)
    diffs: list[TableDiff] = []
    only_a: list[str] = []
    only_b: list[str] = []
    for title in _union(tables_a, tables_b):
        left, right = tables_a.get(title, []), tables_b.get(title, [])
        # The extra tables of a title, on one side only, are listed below.
        for occurrence, (table_a, table_b) in enumerate(zip(left, right, strict=False), start=1):
            diffs.append(_diff_table(occurrence, table_a, table_b))
        only_a += [t.title for t in left[len(right) :]]
        only_b += [t.title for t in right[len(left) :]]
    return diffs, only_a, only_b


# A row or a column is known by its label and, when the label repeats (or is empty),
# by which of those labels it is: such ones pair by position among themselves.
_Key = tuple[str, int]


def _keyed(labels: list[str]) -> dict[_Key, int]:
    """Each label's key → its position."""
    seen: dict[str, int] = {}
    keys: dict[_Key, int] = {}
    for position, label in enumerate(labels):
        seen[label] = seen.get(label, 0) + 1
        keys[(label, seen[label])] = position
    return keys


def _shown(key: _Key, labels: list[str], ordinal: int) -> str:
    """How a row or column is named to people: its label, ``label #2`` when the
    label repeats, ``#ordinal`` (its place in the table) when it has none."""
    label, nth = key
    if not label:
        return f"#{ordinal}"
    return label if labels.count(label) == 1 else f"{label} #{nth}"


def _column_labels(grid: Grid) -> list[str]:
    """Header labels of every column but the first (the row labels), padded to
    the widest row."""
    width = max([len(grid.header), *(len(row) for row in grid.rows)])
    return [grid.header[i] if i < len(grid.header) else "" for i in range(1, width)]


def _cell(row: list[str], column: int) -> str:
    return row[column + 1] if column + 1 < len(row) else ""


def _diff_table(occurrence: int, table_a: _Table, table_b: _Table) -> TableDiff:
    diff = TableDiff(table_a.title, occurrence, table_a.media_type, table_b.media_type)
    grid_a, grid_b = table_a.grid, table_b.grid
    rows_a, rows_b = grid_a.row_labels(), grid_b.row_labels()
    columns_a, columns_b = _column_labels(grid_a), _column_labels(grid_b)
    row_keys_a, row_keys_b = _keyed(rows_a), _keyed(rows_b)
    column_keys_a, column_keys_b = _keyed(columns_a), _keyed(columns_b)

    # Ordinals as people count them: body rows from 1; columns from 1 with the labels'.
    diff.rows_only_in_a = [
        _shown(k, rows_a, i + 1) for k, i in row_keys_a.items() if k not in row_keys_b
    ]
    diff.rows_only_in_b = [
        _shown(k, rows_b, i + 1) for k, i in row_keys_b.items() if k not in row_keys_a
    ]
    diff.columns_only_in_a = [
        _shown(k, columns_a, i + 2) for k, i in column_keys_a.items() if k not in column_keys_b
    ]
    diff.columns_only_in_b = [
        _shown(k, columns_b, i + 2) for k, i in column_keys_b.items() if k not in column_keys_a
    ]
    for row_key, row_a in row_keys_a.items():
        if row_key not in row_keys_b:
            continue
        row_b = row_keys_b[row_key]
        for column_key, column_a in column_keys_a.items():
            if column_key not in column_keys_b:
                continue
            column_b = column_keys_b[column_key]
            a = _cell(grid_a.rows[row_a], column_a)
            b = _cell(grid_b.rows[row_b], column_b)
            change = _compare_cells(a, b)
            if change is not None:
                change.row = _shown(row_key, rows_a, row_a + 1)
                change.column = _shown(column_key, columns_a, column_a + 2)
                diff.cells.append(change)
    return diff


def _compare_cells(a: str, b: str) -> CellChange | None:
    value_a, value_b = number(a), number(b)
    if value_a is not None and value_b is not None:
        if value_a == value_b:  # "8032.00" and "8,032.00" are one number
            return None
        difference = value_b - value_a
        return CellChange("", "", a, b, difference, format_change(difference, a, b))
    if a.strip() == b.strip():
        return None
    return CellChange("", "", a, b)


_DECIMALS = re.compile(r"\.(\d+)")


def format_change(difference: float, a: str, b: str) -> str:
    """B−A written like the model's cells: as many decimals as the more precise
    of them, thousands grouped, a sign always (``-1,296.00``, ``+5.0%``)."""
    decimals = max((len(m.group(1)) for m in map(_DECIMALS.search, (a, b)) if m), default=0)
    text = f"{difference:+,.{decimals}f}"
    if a.strip().endswith("%") and b.strip().endswith("%"):
        text += "%"
    return text
