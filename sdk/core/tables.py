"""Tables in a model's outputs, read as grids of cells.

A model returns tables two ways: CSV downloadables and ``table`` renderables,
which are HTML (pandas' ``to_html``, as Tax-Cruncher and Tax-Brain make them).
Comparing two runs and combining a sweep's points both need the cells, so both
forms are read here into one shape, a ``Grid``: a header row and body rows of
strings, as written (numbers are compared by ``number``, never reformatted).

HTML is read with the standard library's ``html.parser``: csflow's own
environment has no pandas or lxml, and only the first ``<table>``'s ``th``/``td``
cells matter (``colspan`` repeats a cell; nested tables are not read).
"""

from __future__ import annotations

import csv
import html
import io
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

__all__ = ["Grid", "read_csv", "read_html_table", "read_table", "number", "write_csv", "write_html"]

_NUMBER = re.compile(r"^\(?[-+]?[$€£]?\s*[\d,]*\.?\d+(?:[eE][-+]?\d+)?\)?%?$")


@dataclass
class Grid:
    """A table's cells: ``header`` (may be empty) and ``rows``; the first column
    labels the rows (Tax-Cruncher's ``""`` column, Tax-Brain's year rows)."""

    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)

    def row_labels(self) -> list[str]:
        return [row[0] if row else "" for row in self.rows]


def number(cell: str) -> float | None:
    """A cell's value as a number, or None: ``1,296.00``, ``-5.2%``, ``$40``, an
    accountant's ``(1,296.00)`` (negative). Anything else is text."""
    text = cell.strip()
    if not text or not _NUMBER.match(text):
        return None
    negative = text.startswith("(") and text.endswith(")")
    digits = re.sub(r"[(),$€£%\s+]", "", text)
    try:
        value = float(digits)
    except ValueError:
        return None
    return -value if negative else value


def read_csv(text: str) -> Grid:
    rows = [row for row in csv.reader(io.StringIO(text)) if row]
    if not rows:
        return Grid()
    return Grid(header=rows[0], rows=rows[1:])


class _FirstTable(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0  # nesting of <table>; cells are read at depth 1 only
        self.done = False
        self.rows: list[tuple[bool, list[str]]] = []  # (all cells are th, cells)
        self.cell: list[str] | None = None
        self.cell_is_header = False
        self.span = 1
        self.row: list[str] | None = None
        self.row_all_header = True

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.done:
            return
        if tag == "table":
            self.depth += 1
        elif self.depth == 1 and tag == "tr":
            self.row, self.row_all_header = [], True
        elif self.depth == 1 and tag in ("td", "th") and self.row is not None:
            self.cell, self.cell_is_header = [], tag == "th"
            span = dict(attrs).get("colspan") or "1"
            self.span = int(span) if span.isdigit() and 0 < int(span) <= 100 else 1

    def handle_endtag(self, tag: str) -> None:
        if self.done:
            return
        if tag == "table":
            self.depth -= 1
            self.done = self.depth == 0
        elif self.depth == 1 and tag in ("td", "th") and self.cell is not None:
            assert self.row is not None
            text = " ".join("".join(self.cell).split())
            self.row.extend([text] * self.span)
            self.row_all_header = self.row_all_header and self.cell_is_header
            self.cell = None
        elif self.depth == 1 and tag == "tr" and self.row is not None:
            if self.row:
                self.rows.append((self.row_all_header, self.row))
            self.row = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None and self.depth == 1:
            self.cell.append(data)


def read_html_table(text: str) -> Grid:
    """The first ``<table>`` of an HTML renderable; header rows are the leading
    rows made only of ``th`` cells (the last of them, when pandas writes two)."""
    parser = _FirstTable()
    parser.feed(text)
    parser.close()
    header: list[str] = []
    body = list(parser.rows)
    while body and body[0][0]:
        header = body.pop(0)[1]
    return Grid(header=header, rows=[cells for _, cells in body])


def read_table(media_type: str, data: object) -> Grid | None:
    """An output's grid when it is a table (``CSV`` or ``table``), else None."""
    if not isinstance(data, str):
        return None
    if media_type == "CSV":
        return read_csv(data)
    if media_type == "table":
        return read_html_table(data)
    return None


def write_csv(grid: Grid) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if grid.header:
        writer.writerow(grid.header)
    writer.writerows(grid.rows)
    return buffer.getvalue()


def write_html(grid: Grid) -> str:
    """A plain ``<table>`` (escaped cells), the shape ``read_html_table`` reads."""
    parts = ["<table>"]
    if grid.header:
        cells = "".join(f"<th>{html.escape(c)}</th>" for c in grid.header)
        parts.append(f"<thead><tr>{cells}</tr></thead>")
    parts.append("<tbody>")
    for row in grid.rows:
        parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)
