"""The csflow CLI as a user meets it: exit codes and one-line errors."""

from __future__ import annotations

import json

import pytest
from paths import TOY_CONFIGS
from typer.testing import CliRunner

from csflow.cli.app import app

runner = CliRunner()
OK = {
    "meta_param_dict": {"year": [{"value": 2024}]},
    "adjustment": {"Knobs": {"x": [{"value": 3}]}},
}


@pytest.fixture
def cli(home, monkeypatch):
    monkeypatch.setenv("CSFLOW_CONFIG_DIRS", json.dumps([str(TOY_CONFIGS)]))
    monkeypatch.setenv("COLUMNS", "200")

    def invoke(*args: str, stdin: str | None = None):
        return runner.invoke(app, list(args), input=stdin)

    return invoke


def _inputs(tmp_path, data) -> str:
    path = tmp_path / "inputs.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def _one_line_error(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


def test_success_prints_tables_and_exits_0(cli, tmp_path):
    result = cli("simulate", "tests/ToyOk", "--inputs", _inputs(tmp_path, OK))
    assert result.exit_code == 0, result.output
    assert "SUCCESS" in result.output and "triple" in result.output


def test_json_output_is_one_object_with_outputs_and_timings(cli, tmp_path):
    result = cli("simulate", "tests/ToyOk", "--inputs", _inputs(tmp_path, OK), "-o", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "SUCCESS"
    assert set(data["timings"]) == {"inputs", "run", "outputs", "upload", "notify"}
    assert data["errors_warnings"] == {"Knobs": {"errors": {}, "warnings": {}}}
    assert data["outputs"]["downloadable"][0]["data"] == "x,double\n3.0,6.0\n"
    assert data["outputs"]["renderable"][1]["media_type"] == "PNG"


@pytest.mark.parametrize(
    "args, text, fragment",
    [
        (["tests/ToyOk"], "{not json", "is not valid JSON"),
        (
            ["tests/ToyOk"],
            json.dumps({"adjustment": [], "meta_param_dict": {}}),
            "inputs: adjustment",
        ),
        (["tests/Nobody"], json.dumps(OK), "unknown model tests/Nobody"),
        (["../etc/passwd"], json.dumps(OK), "invalid model name"),
        (["tests/ToyOk", "--tag", "../x"], json.dumps(OK), "invalid tag"),
        (["tests/ToyOk", "--tag", "v9"], json.dumps(OK), "unknown tag 'v9'"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, tmp_path, args, text, fragment):
    result = cli("simulate", *args[:1], "--inputs", _inputs(tmp_path, text), *args[1:])
    assert result.exit_code == 2, result.output
    assert fragment in _one_line_error(result)


def test_unreadable_inputs_file_exits_2(cli, tmp_path):
    result = cli("simulate", "tests/ToyOk", "--inputs", str(tmp_path / "missing.json"))
    assert result.exit_code == 2
    assert "cannot read inputs file" in _one_line_error(result)


def test_invalid_adjustment_exits_2_and_shows_errors(cli, tmp_path):
    bad = {"adjustment": {"Knobs": {"x": [{"value": -5}]}}}
    result = cli("simulate", "tests/ToyOk", "--inputs", _inputs(tmp_path, bad))
    assert result.exit_code == 2
    assert "INVALID" in result.output and "x must be at least 0" in result.output


def test_model_failure_exits_1_with_a_short_reason(cli, tmp_path):
    result = cli("simulate", "tests/ToyCrash", "--inputs", _inputs(tmp_path, OK))
    assert result.exit_code == 1
    assert "reason: run: ZeroDivisionError" in result.output
    job_id = json.loads(cli("runs", "list", "-o", "json").stdout)[0]["job_id"]
    logs = cli("runs", "logs", job_id, "--step", "run")
    assert logs.exit_code == 0 and "Traceback" in logs.output


def test_runs_commands(cli, tmp_path):
    result = cli("simulate", "tests/ToyOk", "--inputs", _inputs(tmp_path, OK), "--detach")
    assert result.exit_code == 0
    job_id = result.stdout.strip()
    waited = cli("runs", "wait", job_id, "--timeout", "60", "-o", "json")
    assert waited.exit_code == 0 and json.loads(waited.stdout)["status"] == "SUCCESS"
    shown = cli("runs", "show", job_id, "-o", "yaml")
    assert f"job_id: {job_id}" in shown.stdout
    assert job_id in cli("runs", "list").output
    out = tmp_path / "out"
    assert cli("runs", "results", job_id, "--out", str(out)).exit_code == 0
    assert (out / "Result.csv").read_text() == "x,double\n3.0,6.0\n"
    missing = cli("runs", "show", "00000000-0000-4000-8000-000000000000")
    assert missing.exit_code == 2 and "no run" in _one_line_error(missing)
    step = cli("runs", "logs", job_id, "--step", "nope")
    assert step.exit_code == 2


def test_help_everywhere(cli):
    for args in (
        ["--help"],
        ["simulate", "--help"],
        ["runs", "--help"],
        ["runs", "logs", "--help"],
    ):
        result = cli(*args)
        assert result.exit_code == 0 and "Usage" in result.output


def test_errors_with_brackets_are_printed_verbatim(cli, tmp_path):
    result = cli("simulate", "tests/ToyOk", "--tag", "[/bold]", "--inputs", _inputs(tmp_path, OK))
    assert result.exit_code == 2
    assert "[/bold]" in _one_line_error(result)


# A model whose strings hold square brackets, as Tax-Brain's reasons do: rich would
# read "[tinytex]" as markup and print "pip install pypandoc".
BRACKETS_MODEL = """
import os


def get_version():
    return "brackets [dev]"


def get_inputs(meta_param_dict):
    x = {"title": "x [units]", "description": "a number", "type": "float", "value": 1.0}
    return {"meta_parameters": {}, "model_parameters": {"Knobs [main]": {"x": x}}}


def validate_inputs(meta_param_dict, adjustment, errors_warnings):
    return {"errors_warnings": errors_warnings}


def run_model(meta_param_dict, adjustment):
    if os.environ.get("BRACKETS_MODE") == "crash":
        raise RuntimeError("pdflatex is missing: pip install pypandoc[tinytex]")
    return {
        "renderable": [{"media_type": "Markdown", "title": "Notes [draft]", "data": "x"}],
        "downloadable": [
            {"media_type": "CSV", "title": "Table [a]", "data": "name,[v]\\n[bold]row,1\\n"}
        ],
    }
"""


def _brackets_model(tmp_path, monkeypatch) -> None:
    """``tests/Brackets`` and ``tests/BracketsCrash`` in a config folder of the test's."""
    source = tmp_path / "brackets"
    source.mkdir()
    (source / "brackets_model.py").write_text(BRACKETS_MODEL)
    configs = tmp_path / "config"
    (configs / "tests").mkdir(parents=True)
    for title, mode in (("Brackets", "ok"), ("BracketsCrash", "crash")):
        config = {
            "owner": "tests",
            "title": title,
            "source": {"path": str(source)},
            "python": "3.11",
            "requirements": [],
            "functions": "brackets_model",
            "timeout": 600,
            "env": {"BRACKETS_MODE": mode},
            "tests": {"ok_adjustment": {}, "bad_adjustment": {}},
        }
        (configs / "tests" / f"{title}.yaml").write_text(json.dumps(config))
    monkeypatch.setenv("CSFLOW_CONFIG_DIRS", json.dumps([str(configs)]))


def test_a_models_strings_with_brackets_print_intact(cli, tmp_path, monkeypatch):
    _brackets_model(tmp_path, monkeypatch)
    crashed = cli("simulate", "tests/BracketsCrash")
    assert crashed.exit_code == 1, crashed.output
    reason = "reason: run: RuntimeError: pdflatex is missing: pip install pypandoc[tinytex]"
    assert reason in crashed.output
    # As it ran (the step's message) and in the steps table.
    assert crashed.output.count("pip install pypandoc[tinytex]") >= 3, crashed.output
    job_id = json.loads(cli("runs", "list", "-o", "json").stdout)[0]["job_id"]
    assert reason in cli("runs", "show", job_id).output

    result = cli("simulate", "tests/Brackets")
    assert result.exit_code == 0, result.output
    for text in ("Notes [draft]", "Table [a]", "[v]", "[bold]row", "model version: brackets [dev]"):
        assert text in result.output, text
    inputs = cli("models", "inputs", "tests/Brackets")
    assert inputs.exit_code == 0, inputs.output
    assert "brackets [dev]" in inputs.output and "Knobs [main]" in inputs.output
