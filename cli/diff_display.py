"""How ``csflow runs diff`` looks in a terminal: the two runs, the inputs that
changed, then each compared table's changed cells. Every string from a model or
a user (titles, labels, cells, parameter names and values) is shown as
``rich.text.Text``, never read as markup."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console, JustifyMethod
from rich.table import Table
from rich.text import Text

from csflow.sdk.views.diff import InputChange, RunDiff, TableDiff

__all__ = ["show_diff"]


def show_diff(console: Console, diff: RunDiff) -> None:
    console.print(_runs_table(diff))
    for note in diff.notes:
        console.print(Text(note), style="yellow")
    _show_inputs(console, diff.inputs)
    for reason in diff.no_results:
        console.print(Text(f"outputs not compared: {reason}"), style="yellow")
    for table in diff.tables:
        _show_table(console, table)
    for side, titles in (("A", diff.tables_only_in_a), ("B", diff.tables_only_in_b)):
        for title in titles:
            console.print(Text(f"table only in {side}: {title}"))


def _runs_table(diff: RunDiff) -> Table:
    table = Table(title="Runs", header_style="bold")
    for column in ("", "job id", "model", "tag", "model version", "status"):
        table.add_column(column, overflow="fold")  # a job id is copied whole, never cut
    for name, side in (("A", diff.a), ("B", diff.b)):
        table.add_row(
            name,
            *(Text(v) for v in (side.job_id, side.model, side.tag, side.model_version or "-")),
            Text(side.status),
        )
    return table


def _value_objects(objects: list[Any] | None) -> Text:
    """Value objects one a line; a bare ``{"value": v}`` as ``v``."""
    if objects is None:
        return Text("(not set)", style="dim")
    lines = [
        json.dumps(o["value"] if isinstance(o, dict) and set(o) == {"value"} else o, default=str)
        for o in objects
    ]
    return Text("\n".join(lines))


def _show_inputs(console: Console, changes: list[InputChange]) -> None:
    if not changes:
        console.print("inputs: no change")
        return
    table = Table(title="Inputs", header_style="bold")
    for column in ("parameter", "A", "B"):
        table.add_column(column)
    for change in changes:
        # Only the value objects that differ: a parameter may hold dozens.
        a = change.only_in_a if change.a is not None else None
        b = change.only_in_b if change.b is not None else None
        table.add_row(Text(change.parameter), _value_objects(a), _value_objects(b))
    console.print(table)


def _table_name(table: TableDiff) -> str:
    kinds = sorted({table.media_type_a, table.media_type_b})
    nth = f" #{table.occurrence}" if table.occurrence > 1 else ""
    return f"{table.title}{nth} ({', '.join(kinds)})"


def _show_table(console: Console, table: TableDiff) -> None:
    name = _table_name(table)
    if not table.changed:
        console.print(Text(f"{name}: no change"))
        return
    if table.cells:
        cells = Table(title=Text(name), header_style="bold")
        columns: list[tuple[str, JustifyMethod]] = [
            ("row", "left"),
            ("column", "left"),
            ("A", "right"),
            ("B", "right"),
            ("change", "right"),
        ]
        for column, justify in columns:
            cells.add_column(column, justify=justify)
        for cell in table.cells:
            change = cell.change if cell.difference is not None else "text"
            cells.add_row(*(Text(v) for v in (cell.row, cell.column, cell.a, cell.b, change)))
        console.print(cells)
    else:
        console.print(Text(name))
    for what, side, labels in (
        ("rows", "A", table.rows_only_in_a),
        ("rows", "B", table.rows_only_in_b),
        ("columns", "A", table.columns_only_in_a),
        ("columns", "B", table.columns_only_in_b),
    ):
        if labels:
            console.print(Text(f"  {what} only in {side}: {', '.join(labels)}"))
