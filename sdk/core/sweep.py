"""What a sweep is: one parameter over a range, a job per point, one combined result.

``--sweep`` takes one axis:

- ``NAME=START..END``: integers, both ends included (``year=2025..2034``);
- ``NAME=V1,V2,...``: the values listed (JSON numbers and booleans as such, else text).

A ``NAME`` without a dot is a meta parameter (``year``); ``SECTION.PARAM`` is an
adjustment (``Policy.STD``, ``Tax Information.pwages``): a point sets ``value`` in
each of the parameter's value objects in the inputs (keeping their labels, such
as ``MARS`` or ``year``), or adds ``[{"value": V}]`` when the inputs have none.
A sweep has at most ``max_sweep_points`` points (a setting), checked before
anything is stored or run.

The fan-in (``combine_outputs``) builds the sweep's outputs from the points':
every table (``table`` renderables and ``CSV`` downloadables, matched by title and
position) with one column per point when the table has one value column, else one
block of rows per point; and a summary of the points. ``point_states`` reads each
point's progress and reason from the sweep's step records (Argo's node names:
``point(0:JOB)``, ``point(0:JOB).run``).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

from csflow.sdk.core.errors import BadInput
from csflow.sdk.core.jsonio import excerpt
from csflow.sdk.core.status import StepPhase
from csflow.sdk.core.tables import Grid, read_table, write_csv, write_html

__all__ = [
    "SweepAxis",
    "parse_axis",
    "point_inputs",
    "combine_outputs",
    "PointState",
    "point_states",
    "POINT_TASK",
    "SUMMARY_TITLE",
]

POINT_TASK = "point"  # the loop's task in flows/sweep.py
SUMMARY_TITLE = "Sweep summary"
_FAILED = (StepPhase.FAILED, StepPhase.ERRORED)
_RANGE = re.compile(r"^\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*$")


@dataclass(frozen=True)
class SweepAxis:
    """``name`` (``year`` or ``SECTION.PARAM``) over ``values``, in order."""

    name: str
    values: tuple[Any, ...]

    @property
    def section(self) -> str | None:
        """The adjustment's section, or None for a meta parameter."""
        return self.name.rsplit(".", 1)[0] if "." in self.name else None

    @property
    def parameter(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    def labels(self) -> list[str]:
        return [_text(value) for value in self.values]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _value(text: str) -> Any:
    """A listed value: a JSON number or boolean as such, anything else as text."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return value if isinstance(value, (int, float, bool)) else text


def parse_axis(spec: str, max_points: int) -> SweepAxis:
    """``NAME=START..END`` or ``NAME=V1,V2,...``; a one-line ``BadInput`` otherwise."""
    name, equals, values = spec.partition("=")
    name = name.strip()
    usage = "use NAME=START..END or SECTION.PARAM=V1,V2,..."
    if not equals or not name or not values.strip():
        raise BadInput(f"bad --sweep {excerpt(spec)}: {usage}")
    if "." in name and not all(part.strip() for part in name.rsplit(".", 1)):
        raise BadInput(f"bad --sweep {excerpt(spec)}: {usage}")
    span = _RANGE.match(values)
    if span:
        start, end = int(span.group(1)), int(span.group(2))
        if end < start:
            raise BadInput(f"bad --sweep {excerpt(spec)}: the range ends before it starts")
        count = end - start + 1
        if count > max_points:
            raise BadInput(_too_many(count, max_points))
        return SweepAxis(name, tuple(range(start, end + 1)))
    listed = [part.strip() for part in values.split(",")]
    if any(not part for part in listed):
        raise BadInput(f"bad --sweep {excerpt(spec)}: an empty value in the list")
    if len(listed) > max_points:
        raise BadInput(_too_many(len(listed), max_points))
    parsed = tuple(_value(part) for part in listed)
    if len(set(map(_text, parsed))) != len(parsed):
        raise BadInput(f"bad --sweep {excerpt(spec)}: a value is listed twice")
    return SweepAxis(name, parsed)


def _too_many(count: int, max_points: int) -> str:
    return (
        f"a sweep of {count} points is more than the limit of {max_points} "
        "(CSFLOW_MAX_SWEEP_POINTS)"
    )


def point_inputs(inputs: dict[str, Any], axis: SweepAxis) -> list[dict[str, Any]]:
    """Each point's inputs (``JobInputs``' dump form): the base inputs with the axis
    parameter set to the point's value."""
    points = []
    for value in axis.values:
        point = copy.deepcopy(inputs)
        point.setdefault("meta_param_dict", {})
        point.setdefault("adjustment", {})
        if axis.section is None:
            point["meta_param_dict"][axis.parameter] = [{"value": value}]
        else:
            section = point["adjustment"].setdefault(axis.section, {})
            objects = section.get(axis.parameter)
            if isinstance(objects, list) and objects and all(isinstance(o, dict) for o in objects):
                section[axis.parameter] = [{**o, "value": value} for o in objects]
            else:
                section[axis.parameter] = [{"value": value}]
        points.append(point)
    return points


# -- the fan-in -------------------------------------------------------------------

_TABLE_KINDS = (("renderable", "table"), ("downloadable", "CSV"))


def combine_outputs(
    axis_name: str, labels: list[str], results: list[dict[str, Any] | None]
) -> dict[str, Any]:
    """The sweep's outputs (the model contract's shape) from each point's outputs
    (None: the point has no results). Tables are taken in the first succeeded
    point's order; a point lacking one of them leaves its cells empty."""
    done = [(label, outputs) for label, outputs in zip(labels, results, strict=True) if outputs]
    combined: dict[str, list[dict[str, Any]]] = {"renderable": [], "downloadable": []}
    combined["renderable"].append(_summary(labels, results))
    if not done:
        return combined
    first = done[0][1]
    for kind, media in _TABLE_KINDS:
        seen: dict[str, int] = {}
        for output in first.get(kind, []):
            if output.get("media_type") != media:
                continue
            title = output.get("title", "")
            position = seen[title] = seen.get(title, -1) + 1
            grids = [
                (label, _nth_table(outputs, kind, media, title, position))
                for label, outputs in done
            ]
            grid = _combined(axis_name, grids)
            data = write_html(grid) if media == "table" else write_csv(grid)
            combined[kind].append({"media_type": media, "title": title, "data": data})
    return combined


def _nth_table(
    outputs: dict[str, Any], kind: str, media: str, title: str, position: int
) -> Grid | None:
    same = [
        o for o in outputs.get(kind, []) if o.get("media_type") == media and o.get("title") == title
    ]
    if position >= len(same):
        return None
    return read_table(media, same[position].get("data"))


def _combined(axis_name: str, grids: list[tuple[str, Grid | None]]) -> Grid:
    present = [grid for _, grid in grids if grid is not None]
    same_rows = all(grid.row_labels() == present[0].row_labels() for grid in present)
    if present and same_rows and all(len(grid.header) == 2 for grid in present):
        # One value column, the same rows: one column per point.
        order: list[str] = []
        for grid in present:
            order += [label for label in grid.row_labels() if label not in order]
        header = [present[0].header[0], *(label for label, _ in grids)]
        columns = [
            {row[0]: (row[1] if len(row) > 1 else "") for row in table.rows} if table else {}
            for _, table in grids
        ]
        rows = [[row_label, *(c.get(row_label, "") for c in columns)] for row_label in order]
        return Grid(header=header, rows=rows)
    # Several value columns: a block of rows per point, the point first.
    header = [axis_name, *(present[0].header if present else [])]
    rows = [[label, *row] for label, grid in grids if grid is not None for row in grid.rows]
    return Grid(header=header, rows=rows)


def _summary(labels: list[str], results: list[dict[str, Any] | None]) -> dict[str, Any]:
    grid = Grid(
        header=["point", "results"],
        rows=[
            [label, "yes" if outputs else "none (failed or invalid: csflow runs show)"]
            for label, outputs in zip(labels, results, strict=True)
        ],
    )
    return {"media_type": "table", "title": SUMMARY_TITLE, "data": write_html(grid)}


# -- progress ---------------------------------------------------------------------


@dataclass
class PointState:
    """One point's progress: ``queued``, ``running``, ``done``, ``invalid`` or
    ``failed`` (with the failed step's reason)."""

    label: str
    job_id: str
    state: str
    reason: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "label": self.label,
            "job_id": self.job_id,
            "state": self.state,
            "reason": self.reason,
        }


def point_states(
    points: list[dict[str, str]], steps: dict[str, dict[str, Any]]
) -> list[PointState]:
    """Each point's state from the sweep's step records; ``points``: the sweep's
    ``[{"job_id", "label"}]`` in order."""
    states = []
    for index, point in enumerate(points):
        node = f"{POINT_TASK}({index}:{point['job_id']})"
        own = steps.get(node, {})
        phase = own.get("phase", "")
        inner = {
            name[len(node) + 1 :]: step
            for name, step in steps.items()
            if name.startswith(node + ".")
        }
        reason = ""
        if phase in (StepPhase.FAILED, StepPhase.ERRORED):
            state = "failed"
            failed = [(n, s) for n, s in inner.items() if s.get("phase") in _FAILED]
            if failed:
                step, record = failed[0]
                reason = f"{step}: {record.get('message') or record['phase']}"
            else:
                reason = own.get("message", "") or phase
        elif phase == StepPhase.SUCCEEDED:
            ran = inner.get("upload", {}).get("phase") == StepPhase.SUCCEEDED
            state = "done" if ran else "invalid"
            if not ran:
                reason = "the model found the inputs invalid"
        elif phase or inner:
            state = "running"
        else:
            state = "queued"
        states.append(PointState(point["label"], point["job_id"], state, reason))
    return states
