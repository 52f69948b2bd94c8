"""sdk/core/tables.py: tables in outputs (CSV and pandas' HTML) read as cells."""

from __future__ import annotations

import pytest

from csflow.sdk.core.tables import (
    Grid,
    number,
    read_csv,
    read_html_table,
    read_table,
    write_csv,
    write_html,
)

# What pandas' DataFrame.to_html(index=False, border=0) writes (Tax-Cruncher's tables).
PANDAS_HTML = """<table border="0" class="dataframe">
  <thead>
    <tr style="text-align: right;">
      <th></th>
      <th>Baseline</th>
      <th>Reform</th>
      <th>Change</th>
    </tr>
  </thead>
  <tbody>
    <tr>
      <td>Individual Income Tax</td>
      <td>8,032.00</td>
      <td>6,736.00</td>
      <td>-1,296.00</td>
    </tr>
    <tr>
      <td>Payroll Tax &amp; Medicare</td>
      <td>15,300.00</td>
      <td>15,300.00</td>
      <td>0.00</td>
    </tr>
  </tbody>
</table>"""

# to_html() with the index: the body rows start with a <th>, and a named column
# index adds a second header row.
INDEXED_HTML = """<table><thead>
<tr><th></th><th colspan="2">Tax</th></tr>
<tr><th>year</th><th>2024</th><th>2025</th></tr>
</thead><tbody>
<tr><th>income</th><td>1.5</td><td>2.5</td></tr>
</tbody></table><table><tr><td>second table</td></tr></table>"""


def test_pandas_html_reads_as_header_and_rows():
    grid = read_html_table(PANDAS_HTML)
    assert grid.header == ["", "Baseline", "Reform", "Change"]
    assert grid.rows[0] == ["Individual Income Tax", "8,032.00", "6,736.00", "-1,296.00"]
    assert grid.row_labels() == ["Individual Income Tax", "Payroll Tax & Medicare"]


def test_the_last_all_th_row_is_the_header_and_only_the_first_table_counts():
    grid = read_html_table(INDEXED_HTML)
    assert grid.header == ["year", "2024", "2025"]
    assert grid.rows == [["income", "1.5", "2.5"]]


def test_csv_and_html_round_trip_with_escaping():
    grid = Grid(header=["", "a<b"], rows=[["x, y", "1"], ['"q"', "2"]])
    assert read_csv(write_csv(grid)) == grid
    assert read_html_table(write_html(grid)) == grid
    assert "<b" not in write_html(grid).replace("<tbody", "")


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        ("-1,296.00", -1296.0),
        ("8,032.00", 8032.0),
        ("(1,296.00)", -1296.0),
        ("5.2%", 5.2),
        ("$40", 40.0),
        ("1e3", 1000.0),
        ("2024", 2024.0),
        ("", None),
        ("Joint", None),
        ("1-2", None),
        ("nan", None),
    ],
)
def test_number_reads_the_forms_models_print(cell, value):
    assert number(cell) == value


def test_read_table_knows_only_table_media():
    assert read_table("CSV", "a,b\n1,2\n") == Grid(header=["a", "b"], rows=[["1", "2"]])
    assert read_table("table", PANDAS_HTML) is not None
    assert read_table("bokeh", {"doc": {}}) is None
    assert read_table("Markdown", "# x") is None
