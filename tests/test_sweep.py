"""Sweeps: the axis grammar, each point's inputs, the fan-in's combined tables, the
points' states, and whole sweeps of the test models and Tax-Cruncher on the
embedded engine (one Workflow: csflow-sweep)."""

from __future__ import annotations

import json
import re

import pytest
from paths import TOY_CONFIGS
from typer.testing import CliRunner

from csflow import flows
from csflow.cli.app import app
from csflow.sdk.core.errors import BadInput
from csflow.sdk.core.sweep import (
    SUMMARY_TITLE,
    combine_outputs,
    parse_axis,
    point_inputs,
    point_states,
)
from csflow.sdk.core.tables import read_csv, read_html_table, write_csv
from csflow.sdk.dataplane.jobstore import open_job_store

BASE = {
    "meta_param_dict": {"year": [{"value": 2024}]},
    "adjustment": {"Knobs": {"x": [{"value": 2}]}},
}


# -- the axis ------------------------------------------------------------------------


def test_a_range_and_a_list_read_as_the_points_in_order():
    years = parse_axis("year=2025..2028", 50)
    assert (years.name, years.values, years.section) == ("year", (2025, 2026, 2027, 2028), None)
    listed = parse_axis("Tax Information.mstat=Single,Joint", 50)
    assert (listed.section, listed.parameter, listed.values) == (
        "Tax Information",
        "mstat",
        ("Single", "Joint"),
    )
    assert parse_axis("Policy.STD=1.5, 30000 ,true", 50).values == (1.5, 30000, True)
    assert parse_axis("Policy.STD=30000,40000", 50).labels() == ["30000", "40000"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("year", "bad --sweep 'year': use NAME=START..END or SECTION.PARAM=V1,V2,..."),
        ("=1,2", "bad --sweep '=1,2': use NAME=START..END or SECTION.PARAM=V1,V2,..."),
        ("year=", "bad --sweep 'year=': use NAME=START..END or SECTION.PARAM=V1,V2,..."),
        (".x=1", "bad --sweep '.x=1': use NAME=START..END or SECTION.PARAM=V1,V2,..."),
        ("year=2030..2025", "bad --sweep 'year=2030..2025': the range ends before it starts"),
        ("year=1,,2", "bad --sweep 'year=1,,2': an empty value in the list"),
        ("year=1,2,1", "bad --sweep 'year=1,2,1': a value is listed twice"),
        (
            "year=2000..2100",
            "a sweep of 101 points is more than the limit of 50 (CSFLOW_MAX_SWEEP_POINTS)",
        ),
        ("x=" + ",".join(map(str, range(51))), "a sweep of 51 points is more than the limit of 50"),
    ],
)
def test_a_bad_axis_is_one_line_before_anything_runs(spec, message):
    with pytest.raises(BadInput) as refused:
        parse_axis(spec, 50)
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)


def test_each_point_sets_the_value_and_keeps_the_value_objects_labels():
    base = {
        "meta_param_dict": {"year": [{"value": 2024}]},
        "adjustment": {"Policy": {"STD": [{"MARS": "mjoint", "year": 2024, "value": 40000}]}},
    }
    std = point_inputs(base, parse_axis("Policy.STD=30000,50000", 50))
    assert [p["adjustment"]["Policy"]["STD"] for p in std] == [
        [{"MARS": "mjoint", "year": 2024, "value": 30000}],
        [{"MARS": "mjoint", "year": 2024, "value": 50000}],
    ]
    years = point_inputs(base, parse_axis("year=2025..2026", 50))
    assert [p["meta_param_dict"]["year"] for p in years] == [[{"value": 2025}], [{"value": 2026}]]
    new = point_inputs(base, parse_axis("Tax Information.pwages=1,2", 50))
    assert new[1]["adjustment"]["Tax Information"] == {"pwages": [{"value": 2}]}
    assert base["adjustment"]["Policy"]["STD"][0]["value"] == 40000  # the base is untouched


# -- the fan-in ------------------------------------------------------------------------

LIABILITIES = """<table><thead><tr><th></th><th>Baseline</th><th>Reform</th></tr></thead>
<tbody><tr><td>Individual Income Tax</td><td>{a}</td><td>{b}</td></tr></tbody></table>"""


def _outputs(a: str, b: str, total: str) -> dict:
    return {
        "renderable": [
            {"media_type": "table", "title": "Liabilities", "data": LIABILITIES.format(a=a, b=b)},
            {"media_type": "bokeh", "title": "Chart", "data": {}},
        ],
        "downloadable": [
            {"media_type": "CSV", "title": "Total", "data": f"item,value\ntax,{total}\nfee,1\n"}
        ],
    }


def test_the_fan_in_combines_tables_by_point_and_lists_the_points_without_results():
    combined = combine_outputs(
        "year",
        ["2024", "2025", "2026"],
        [_outputs("8,032.00", "6,736.00", "10"), None, _outputs("7,640.00", "6,425.52", "12")],
    )
    summary, liabilities = combined["renderable"]
    assert summary["title"] == SUMMARY_TITLE
    assert read_html_table(summary["data"]).rows == [
        ["2024", "yes"],
        ["2025", "none (failed or invalid: csflow runs show)"],
        ["2026", "yes"],
    ]
    # Several value columns: a block of rows per point, the point first.
    grid = read_html_table(liabilities["data"])
    assert grid.header == ["year", "", "Baseline", "Reform"]
    assert grid.rows == [
        ["2024", "Individual Income Tax", "8,032.00", "6,736.00"],
        ["2026", "Individual Income Tax", "7,640.00", "6,425.52"],
    ]
    # One value column and the same rows: a column per point that has results.
    (total,) = combined["downloadable"]
    assert read_csv(total["data"]).header == ["item", "2024", "2026"]
    assert read_csv(total["data"]).rows == [["tax", "10", "12"], ["fee", "1", "1"]]
    assert [o["media_type"] for o in combined["renderable"]] == ["table", "table"]  # no chart


def test_a_fan_in_with_no_results_has_only_its_summary():
    combined = combine_outputs("x", ["1"], [None])
    assert [o["title"] for o in combined["renderable"]] == [SUMMARY_TITLE]
    assert combined["downloadable"] == []


def test_rows_that_differ_between_points_are_blocks_not_a_diagonal():
    one = {"downloadable": [{"media_type": "CSV", "title": "R", "data": "x,double\n1,2\n"}]}
    two = {"downloadable": [{"media_type": "CSV", "title": "R", "data": "x,double\n2,4\n"}]}
    grid = read_csv(combine_outputs("Knobs.x", ["1", "2"], [one, two])["downloadable"][0]["data"])
    assert grid.header == ["Knobs.x", "x", "double"]
    assert grid.rows == [["1", "1", "2"], ["2", "2", "4"]]
    assert write_csv(grid).splitlines()[0] == "Knobs.x,x,double"


def test_point_states_read_the_nodes_as_argo_names_them():
    points = [{"job_id": f"j{i}", "label": str(i)} for i in range(5)]
    steps = {
        "point(0:j0)": {"phase": "Succeeded"},
        "point(0:j0).upload": {"phase": "Succeeded"},
        "point(1:j1)": {"phase": "Succeeded"},
        "point(1:j1).run": {"phase": "Skipped"},
        "point(2:j2)": {"phase": "Failed", "message": "child 'point(2:j2).run' failed"},
        "point(2:j2).run": {"phase": "Failed", "message": "RuntimeError: thirteen is unlucky"},
        "point(3:j3)": {"phase": "Running"},
        "point(3:j3).inputs": {"phase": "Running"},
    }
    states = [(p.state, p.reason) for p in point_states(points, steps)]
    assert states == [
        ("done", ""),
        ("invalid", "the model found the inputs invalid"),
        ("failed", "run: RuntimeError: thirteen is unlucky"),
        ("running", ""),
        ("queued", ""),
    ]


# -- whole sweeps on the embedded engine -------------------------------------------------


def test_the_sweep_flow_runs_each_point_as_the_simulate_flows_steps():
    """One declaration: a point's steps are the simulate flow's, reading the point's job."""
    simulate, sweep = flows.compiled("simulate"), flows.compiled("sweep")
    steps = {t["name"]: t for t in simulate["spec"]["templates"]}
    for template in sweep["spec"]["templates"]:
        if template["name"] in ("inputs", "run", "outputs", "upload"):
            own = steps[template["name"]]
            assert template["container"]["command"] == own["container"]["command"]
            assert template["metadata"] == own["metadata"]
            assert "{{inputs.parameters.job-id}}" in template["container"]["args"]
    upload = next(t for t in sweep["spec"]["templates"] if t["name"] == "upload")
    assert "--no-webapp" in upload["container"]["args"]  # the webapp knows only its jobs
    assert "onExit" not in sweep["spec"]


def test_a_sweep_with_a_crashing_and_an_invalid_point_still_combines_the_rest(toy):
    run = toy.sweep("tests/ToyOk", BASE, "Knobs.x=1,13,-1,3")
    assert run.status == "SUCCESS", run.reason
    assert run.kind == "sweep" and run.model_version == "toy 1.0"
    states = {p.label: (p.state, p.reason) for p in toy.sweep_points(run)}
    assert states == {
        "1": ("done", ""),
        "13": ("failed", "run: RuntimeError: thirteen is unlucky"),
        "-1": ("invalid", "the model found the inputs invalid"),
        "3": ("done", ""),
    }
    outputs = toy.results(run.id)
    doubles = read_csv(outputs["downloadable"][0]["data"])
    assert doubles.rows == [["1", "1.0", "2.0"], ["3", "3.0", "6.0"]]
    # Each point is a job of its own, with its own inputs in the job store.
    jobs = open_job_store(toy.settings.jobs_url)
    for point in toy.sweep_points(run):
        x = jobs.get(point.job_id)["inputs"]["adjustment"]["Knobs"]["x"]
        assert x == [{"value": int(point.label)}]


def test_a_sweep_whose_every_point_failed_fails_and_says_why(toy):
    run = toy.sweep("tests/ToyCrash", BASE, "Knobs.x=1,2")
    assert run.status == "FAIL"
    # The first step that failed says why (the points run at once: either may be first);
    # the fan-in ran, found nothing, and failed too.
    assert re.match(r"point\([01]:[0-9a-f-]{36}\)\.run: ZeroDivisionError", run.reason), run.reason
    assert run.steps["combine"]["phase"] == "Failed"
    assert [p.state for p in toy.sweep_points(run)] == ["failed", "failed"]


@pytest.fixture
def cli(home, monkeypatch):
    monkeypatch.setenv("CSFLOW_CONFIG_DIRS", json.dumps([str(TOY_CONFIGS)]))
    monkeypatch.setenv("COLUMNS", "200")
    return lambda *args: CliRunner().invoke(app, list(args))


def test_the_cli_sweeps_with_progress_per_point_and_json_for_scripts(cli):
    done = cli("simulate", "tests/ToyOk", "--sweep", "Knobs.x=1,13", "-o", "json")
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["kind"] == "sweep" and data["status"] == "SUCCESS"
    assert [(p["label"], p["state"]) for p in data["points"]] == [("1", "done"), ("13", "failed")]
    assert data["outputs"]["renderable"][0]["title"] == SUMMARY_TITLE
    shown = cli("simulate", "tests/ToyOk", "--sweep", "Knobs.x=1,2")
    assert shown.exit_code == 0, shown.output
    assert "Knobs.x=1: done" in shown.output and "Knobs.x=2: done" in shown.output
    assert "Points" in shown.output
    refused = cli("simulate", "tests/ToyOk", "--sweep", "Knobs.x=" + ",".join(map(str, range(60))))
    assert refused.exit_code == 2
    assert refused.output.strip() == (
        "error: a sweep of 60 points is more than the limit of 50 (CSFLOW_MAX_SWEEP_POINTS)"
    )


@pytest.mark.slow
def test_a_tax_cruncher_sweep_over_years_gives_income_tax_by_year(tax, tax_inputs):
    run = tax.sweep("PSLmodels/Tax-Cruncher", tax_inputs, "year=2024..2028")
    assert run.status == "SUCCESS", run.reason
    assert [p.state for p in tax.sweep_points(run)] == ["done"] * 5
    outputs = tax.results(run.id)
    basic = next(o for o in outputs["downloadable"] if o["title"] == "Basic Liabilities")
    grid = read_csv(basic["data"])
    income_tax = [row for row in grid.rows if row[1] == "Individual Income Tax"]
    assert [row[0] for row in income_tax] == ["2024", "2025", "2026", "2027", "2028"]
    assert income_tax[0][2:] == ["8032.00", "6736.00", "-1296.00"]


def test_a_sweep_shows_its_points_later_and_dry_runs_without_writing_a_job(cli, home):
    shown = cli("simulate", "tests/ToyOk", "--sweep", "Knobs.x=1,13", "-o", "json")
    job = json.loads(shown.stdout)["job_id"]
    again = cli("runs", "show", job, "-o", "json")
    assert again.exit_code == 0, again.output
    assert [p["state"] for p in json.loads(again.stdout)["points"]] == ["done", "failed"]
    table = cli("runs", "show", job)
    assert "Points" in table.output and "thirteen is unlucky" in table.output
    inputs = cli("runs", "open", job, "--no-browser")  # a sweep's page: no single inputs
    assert inputs.exit_code == 0, inputs.output
    jobs_before = sorted((home / "jobs").iterdir())
    dry = cli("simulate", "tests/ToyOk", "--sweep", "year=2025..2027", "--dry-run", "-o", "json")
    assert dry.exit_code == 0, dry.output
    workflow = json.loads(dry.stdout)
    assert workflow["spec"]["workflowTemplateRef"] == {"name": "csflow-sweep"}
    parameters = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
    assert len(json.loads(parameters["points"])) == 3
    assert json.loads(parameters["labels"]) == ["2025", "2026", "2027"]
    assert sorted((home / "jobs").iterdir()) == jobs_before


@pytest.mark.parametrize(
    ("points", "labels"),
    [('["a", "b"]', '["1"]'), ('{"a": 1}', '["1"]'), ("[", "[]")],
    ids=["lengths", "not-a-list", "not-json"],
)
def test_the_fan_in_refuses_points_and_labels_it_cannot_pair_in_one_line(
    points, labels, tmp_path, monkeypatch, capsys
):
    from csflow.runtime import platform_step

    monkeypatch.setenv("CSFLOW_STORAGE_URL", f"file://{tmp_path}")
    monkeypatch.setenv("CSFLOW_WORK_DIR", str(tmp_path / "work"))
    argv = ["combine", "--job-id", "j", "--owner", "o", "--title", "t"]
    assert platform_step.main([*argv, "--points", points, "--labels", labels]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("csflow: the sweep's points")
