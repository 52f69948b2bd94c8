"""``csflow runs diff``: sdk/views/diff.py on hand-made outputs, the command on a
small model whose strings are rich markup, and the issue's done criterion on the
real Tax-Cruncher."""

from __future__ import annotations

import copy
import json

import pytest
from typer.testing import CliRunner

from csflow.cli.app import app
from csflow.sdk.core.run import Run
from csflow.sdk.core.tables import Grid, write_csv, write_html
from csflow.sdk.views.diff import NoResults, diff_runs, format_change

INPUTS = {
    "meta_param_dict": {"year": [{"value": 2024}]},
    "adjustment": {
        "Policy": {
            "STD": [
                {"MARS": "single", "year": 2024, "value": 14600},
                {"MARS": "mjoint", "year": 2024, "value": 29200},
            ]
        },
        "Tax Information": {"pwages": [{"value": 100000}]},
    },
}
LIABILITIES = Grid(
    header=["", "Baseline", "Reform"],
    rows=[["Income Tax", "8,032.00", "8,032.00"], ["Filing", "joint", "joint"]],
)


def _run(job_id: str, **fields) -> Run:
    defaults = {"owner": "PSLmodels", "title": "Tax-Cruncher", "tag": "v1", "status": "SUCCESS"}
    return Run(id=job_id, **{**defaults, **fields})


def _outputs(*tables: tuple[str, str, Grid]) -> dict:
    """Outputs holding ``(media_type, title, grid)`` tables: ``table`` as HTML
    renderables, ``CSV`` as downloadables."""
    outputs: dict = {"renderable": [], "downloadable": []}
    for media_type, title, grid in tables:
        kind, data = (
            ("renderable", write_html(grid))
            if media_type == "table"
            else ("downloadable", write_csv(grid))
        )
        outputs[kind].append({"media_type": media_type, "title": title, "data": data})
    return outputs


def _diff(inputs_b=None, outputs_a=None, outputs_b=None, run_b=None):
    both = _outputs(("table", "Liabilities", LIABILITIES), ("CSV", "Liabilities", LIABILITIES))
    return diff_runs(
        _run("a"),
        INPUTS,
        both if outputs_a is None else outputs_a,
        run_b or _run("b"),
        INPUTS if inputs_b is None else inputs_b,
        both if outputs_b is None else outputs_b,
    )


def _changed(grid: Grid, row: int, column: int, cell: str) -> Grid:
    changed = copy.deepcopy(grid)
    changed.rows[row][column] = cell
    return changed


# -- diff_runs ----------------------------------------------------------------------


def test_equal_runs_have_no_change():
    diff = _diff()
    assert not diff.changed and diff.inputs == [] and diff.notes == []
    assert [(t.title, t.occurrence, t.media_type_a, t.changed) for t in diff.tables] == [
        ("Liabilities", 1, "table", False),
        ("Liabilities", 2, "CSV", False),
    ]
    assert json.loads(json.dumps(diff.to_dict()))["changed"] is False


def test_reordered_value_objects_and_flat_meta_parameters_are_no_change():
    reordered = copy.deepcopy(INPUTS)
    reordered["adjustment"]["Policy"]["STD"].reverse()
    reordered["adjustment"]["Policy"]["STD"][0] = {"value": 29200, "year": 2024, "MARS": "mjoint"}
    reordered["meta_param_dict"] = {"year": 2024}
    assert _diff(inputs_b=reordered).inputs == []


def test_input_changes_only_in_a_only_in_b_and_changed():
    b = copy.deepcopy(INPUTS)
    b["meta_param_dict"]["year"] = [{"value": 2025}]
    b["adjustment"]["Policy"]["STD"][1]["value"] = 40000
    del b["adjustment"]["Tax Information"]
    b["adjustment"]["Policy"]["II_em"] = [{"value": 0}]
    changes = {c.parameter: c for c in _diff(inputs_b=b).inputs}
    assert list(changes) == ["year", "Policy.STD", "Policy.II_em", "Tax Information.pwages"]
    assert changes["year"].section is None and changes["year"].change == "changed"
    std = changes["Policy.STD"]
    assert std.only_in_a == [{"MARS": "mjoint", "year": 2024, "value": 29200}]
    assert std.only_in_b == [{"MARS": "mjoint", "year": 2024, "value": 40000}]
    assert changes["Policy.II_em"].change == "only in B" and changes["Policy.II_em"].a is None
    assert changes["Tax Information.pwages"].change == "only in A"


@pytest.mark.parametrize("media_type", ["table", "CSV"])
def test_changed_numeric_and_text_cells(media_type):
    reform = _changed(_changed(LIABILITIES, 0, 2, "6,736.00"), 1, 2, "single")
    diff = _diff(
        outputs_a=_outputs((media_type, "Liabilities", LIABILITIES)),
        outputs_b=_outputs((media_type, "Liabilities", reform)),
    )
    [table] = diff.tables
    assert diff.changed and table.changed
    assert [c.to_dict() for c in table.cells] == [
        {
            "row": "Income Tax",
            "column": "Reform",
            "a": "8,032.00",
            "b": "6,736.00",
            "difference": -1296.0,
            "change": "-1,296.00",
        },
        {
            "row": "Filing",
            "column": "Reform",
            "a": "joint",
            "b": "single",
            "difference": None,
            "change": "",
        },
    ]


def test_one_number_written_two_ways_is_no_change():
    plain = _changed(LIABILITIES, 0, 1, "8032")
    diff = _diff(outputs_b=_outputs(("table", "Liabilities", plain), ("CSV", "Liabilities", plain)))
    assert not diff.changed


def test_rows_columns_and_tables_only_on_one_side():
    wider = Grid(
        header=[*LIABILITIES.header, "Change"],
        rows=[[*row, "0"] for row in LIABILITIES.rows[:1]] + [["Payroll Tax", "1", "1", "0"]],
    )
    diff = _diff(
        outputs_a=_outputs(("CSV", "Liabilities", LIABILITIES), ("CSV", "Old", LIABILITIES)),
        outputs_b=_outputs(("CSV", "Liabilities", wider), ("table", "New", LIABILITIES)),
    )
    [table] = diff.tables
    assert table.cells == []
    assert (table.rows_only_in_a, table.rows_only_in_b) == (["Filing"], ["Payroll Tax"])
    assert (table.columns_only_in_a, table.columns_only_in_b) == ([], ["Change"])
    assert (diff.tables_only_in_a, diff.tables_only_in_b) == (["Old"], ["New"])
    assert diff.changed


def test_duplicate_titles_pair_by_order_of_appearance():
    reform = _changed(LIABILITIES, 0, 2, "7,000.00")
    diff = _diff(
        outputs_a=_outputs(("CSV", "T", LIABILITIES), ("CSV", "T", LIABILITIES)),
        outputs_b=_outputs(("CSV", "T", LIABILITIES), ("CSV", "T", reform), ("CSV", "T", reform)),
    )
    assert [(t.occurrence, t.changed) for t in diff.tables] == [(1, False), (2, True)]
    assert diff.tables[1].cells[0].change == "-1,032.00"
    assert diff.tables_only_in_b == ["T"]


def test_repeated_and_empty_labels_pair_by_position():
    a = Grid(header=["", "x", "x", ""], rows=[["", "1", "2", "3"], ["", "4", "5", "6"]])
    b = Grid(header=["", "x", "x", ""], rows=[["", "1", "2", "3"], ["", "4", "9", "6"]])
    [table] = _diff(outputs_a=_outputs(("CSV", "T", a)), outputs_b=_outputs(("CSV", "T", b))).tables
    [cell] = table.cells
    assert (cell.row, cell.column, cell.change) == ("#2", "x #2", "+4")


def test_model_version_and_status_are_noted_and_no_results_are_said():
    failed = _run("b", status="FAIL", model_version="taxcalc 6.9.0")
    diff = _diff(run_b=failed, outputs_b=NoResults("run b has no results: it is FAIL"), inputs_b={})
    assert diff.notes == [
        "model version differs: - (A), taxcalc 6.9.0 (B)",
        "status differs: SUCCESS (A), FAIL (B)",
    ]
    assert diff.no_results == ["run b has no results: it is FAIL"]
    assert diff.tables == [] and diff.tables_only_in_a == []
    assert {c.change for c in diff.inputs} == {"only in A"}


@pytest.mark.parametrize(
    "difference, a, b, text",
    [
        (-1296.0, "8032.00", "6736.00", "-1,296.00"),
        (0.5, "1.5%", "2.0%", "+0.5%"),
        (3, "1", "4", "+3"),
    ],
)
def test_changes_are_written_like_the_models_numbers(difference, a, b, text):
    assert format_change(difference, a, b) == text


# -- the command --------------------------------------------------------------------

# Strings that are rich markup, and cells that change with the input x.
MARKUP_MODEL = """
import os


def get_version():
    return "markup [dev]"


def get_inputs(meta_param_dict):
    x = {"title": "x", "description": "a number", "type": "float", "value": 1.0}
    return {"meta_parameters": {}, "model_parameters": {"Knobs [main]": {"x": x}}}


def validate_inputs(meta_param_dict, adjustment, errors_warnings):
    return {"errors_warnings": errors_warnings}


def run_model(meta_param_dict, adjustment):
    if os.environ.get("MARKUP_MODE") == "crash":
        raise RuntimeError("no")
    x = float(adjustment["Knobs [main]"]["x"][0]["value"])
    csv = f'name,[bold]v[/bold]\\n[red]row[/red],"{x * 1000:,.2f}"\\n'
    return {
        "renderable": [],
        "downloadable": [{"media_type": "CSV", "title": "[red]x[/red]", "data": csv}],
    }
"""


@pytest.fixture
def cli(home, tmp_path, monkeypatch):
    """``tests/Markup`` and ``tests/MarkupCrash``, and the CLI to run them."""
    source = tmp_path / "markup"
    source.mkdir()
    (source / "markup_model.py").write_text(MARKUP_MODEL)
    configs = tmp_path / "config"
    (configs / "tests").mkdir(parents=True)
    for title, mode in (("Markup", "ok"), ("MarkupCrash", "crash")):
        config = {
            "owner": "tests",
            "title": title,
            "source": {"path": str(source)},
            "python": "3.11",
            "requirements": [],
            "functions": "markup_model",
            "timeout": 600,
            "env": {"MARKUP_MODE": mode},
            "tests": {"ok_adjustment": {}, "bad_adjustment": {}},
        }
        (configs / "tests" / f"{title}.yaml").write_text(json.dumps(config))
    monkeypatch.setenv("CSFLOW_CONFIG_DIRS", json.dumps([str(configs)]))
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def _simulate(cli, tmp_path, model: str, x: float) -> str:
    path = tmp_path / f"x{x}.json"
    path.write_text(json.dumps({"adjustment": {"Knobs [main]": {"x": [{"value": x}]}}}))
    result = cli("simulate", model, "--inputs", str(path), "-o", "json")
    return json.loads(result.stdout)["job_id"]


def test_the_command_shows_changes_verbatim_and_as_json(cli, tmp_path):
    a = _simulate(cli, tmp_path, "tests/Markup", 1)
    b = _simulate(cli, tmp_path, "tests/Markup", 2.5)

    shown = cli("runs", "diff", a, b)
    assert shown.exit_code == 0, shown.output
    for text in ("Knobs [main].x", "[red]x[/red] (CSV)", "[red]row[/red]", "[bold]v[/bold]"):
        assert text in shown.output, text
    assert "1,000.00" in shown.output and "2,500.00" in shown.output
    assert "+1,500.00" in shown.output

    data = json.loads(cli("runs", "diff", a, b, "-o", "json").stdout)
    assert data["a"]["job_id"] == a and data["changed"] is True
    [table] = data["tables"]
    assert table["title"] == "[red]x[/red]"
    assert table["cells"] == [
        {
            "row": "[red]row[/red]",
            "column": "[bold]v[/bold]",
            "a": "1,000.00",
            "b": "2,500.00",
            "difference": 1500.0,
            "change": "+1,500.00",
        }
    ]

    same = cli("runs", "diff", a, a)
    assert "inputs: no change" in same.output and "[red]x[/red] (CSV): no change" in same.output


def test_the_command_compares_inputs_of_a_failed_run_and_refuses_bad_ids(cli, tmp_path):
    a = _simulate(cli, tmp_path, "tests/Markup", 1)
    crashed = _simulate(cli, tmp_path, "tests/MarkupCrash", 1)
    shown = cli("runs", "diff", a, crashed)
    assert shown.exit_code == 0, shown.output
    assert f"run {crashed} has no results: it is FAIL" in shown.output
    assert "inputs: no change" in shown.output

    missing = cli("runs", "diff", a, "00000000-0000-4000-8000-000000000000")
    lines = [line for line in missing.output.splitlines() if line.strip()]
    assert missing.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ")


# -- the done criterion -------------------------------------------------------------


@pytest.mark.slow
def test_tax_cruncher_reform_against_baseline(tax, tax_inputs):
    """The reform (joint standard deduction 40,000) against current law: the
    income tax under the reform falls by 1,296.00 (8,032 → 6,736)."""
    baseline_inputs = copy.deepcopy(tax_inputs)
    del baseline_inputs["adjustment"]["Policy"]
    baseline = tax.simulate("PSLmodels/Tax-Cruncher", baseline_inputs)
    reform = tax.simulate("PSLmodels/Tax-Cruncher", tax_inputs)
    assert baseline.status == reform.status == "SUCCESS", (baseline.reason, reform.reason)

    diff = tax.diff(baseline.id, reform.id)
    [std] = diff.inputs
    assert (std.parameter, std.change, std.a) == ("Policy.STD", "only in B", None)
    basic = [t for t in diff.tables if t.title == "Basic Liabilities"]
    assert {t.media_type_a for t in basic} == {"table", "CSV"}
    for table in basic:
        cells = {(c.row, c.column): c for c in table.cells}
        income_tax = cells[("Individual Income Tax", "Reform")]
        assert income_tax.change == "-1,296.00" and income_tax.difference == -1296.0
        assert ("Individual Income Tax", "Baseline") not in cells
    assert diff.tables_only_in_a == diff.tables_only_in_b == []
