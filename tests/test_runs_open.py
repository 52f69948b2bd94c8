"""``csflow runs open`` and ``Client.page`` on the test models: where the page is
written, what it holds for a success, a crash, an invalid run and a run whose
inputs the job store no longer has, when a browser is asked to show it, and the
one-line errors."""

from __future__ import annotations

import json
import os
import stat

import pytest
from paths import TOY_CONFIGS
from typer.testing import CliRunner

from csflow.cli.app import app

runner = CliRunner()
OK = {"meta_param_dict": {"year": 2024}, "adjustment": {"Knobs": {"x": [{"value": 3}]}}}


@pytest.fixture
def cli(home, monkeypatch):
    monkeypatch.setenv("CSFLOW_CONFIG_DIRS", json.dumps([str(TOY_CONFIGS)]))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("CI", "true")  # as in CI: no browser, unless a test says otherwise
    return lambda *args: runner.invoke(app, list(args))


def _simulate(cli, tmp_path, model: str, inputs=OK) -> str:
    path = tmp_path / f"{model.replace('/', '-')}.json"
    path.write_text(json.dumps(inputs))
    result = cli("simulate", model, "--inputs", str(path), "-o", "json")
    return json.loads(result.stdout)["job_id"]


def test_open_writes_the_page_under_the_home(cli, home, tmp_path):
    job_id = _simulate(cli, tmp_path, "tests/ToyOk")
    result = cli("runs", "open", job_id[:8])  # a prefix names the run, as elsewhere
    assert result.exit_code == 0, result.output
    path = home / "pages" / f"{job_id}.html"
    assert result.stdout.strip() == str(path)
    page = path.read_text()
    assert "<h3>Result</h3><table><tbody><tr><td>6.0</td></tr></tbody></table>" in page
    assert "src='data:image/png;base64," in page
    assert "download='Result.csv'" in page and "download='Result-2.csv'" in page
    assert "<td>Knobs</td><td>x</td><td>3</td>" in page
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the inputs are in it


def test_open_out_and_a_browser_where_there_is_one(cli, tmp_path, monkeypatch):
    job_id = _simulate(cli, tmp_path, "tests/ToyOk")
    opened = tmp_path / "opened"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    browser.chmod(0o755)
    monkeypatch.delenv("CI")
    monkeypatch.setenv("BROWSER", f"{browser} %s")
    out = tmp_path / "sub" / "page.html"
    assert cli("runs", "open", job_id, "--out", str(out), "--no-browser").exit_code == 0
    assert out.is_file() and not opened.exists()
    result = cli("runs", "open", job_id, "--out", str(out))
    assert result.exit_code == 0 and result.stdout.strip() == str(out)
    assert opened.read_text().strip() == out.resolve().as_uri()


def test_no_browser_in_ci_or_without_a_display(cli, tmp_path, monkeypatch):
    job_id = _simulate(cli, tmp_path, "tests/ToyOk")
    for name in ("BROWSER", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("CI")
    result = cli("runs", "open", job_id, "--out", str(tmp_path / "p.html"))
    assert result.exit_code == 0 and result.stdout.strip() == str(tmp_path / "p.html")


def test_a_crashed_run_has_a_page(cli, home, tmp_path):
    job_id = _simulate(cli, tmp_path, "tests/ToyCrash")
    result = cli("runs", "open", job_id)
    assert result.exit_code == 0, result.output
    page = (home / "pages" / f"{job_id}.html").read_text()
    assert "status-FAIL'>FAIL<" in page and "ZeroDivisionError" in page
    assert "<h2>Outputs</h2>" not in page and "<h2>Steps</h2>" in page


def test_an_invalid_run_has_its_errors(cli, home, tmp_path):
    bad = {"meta_param_dict": {"year": 2024}, "adjustment": {"Knobs": {"x": [{"value": -1}]}}}
    job_id = _simulate(cli, tmp_path, "tests/ToyOk", bad)
    assert cli("runs", "open", job_id).exit_code == 0
    page = (home / "pages" / f"{job_id}.html").read_text()
    assert "INVALID" in page and "<b>error</b> in Knobs, x: x must be at least 0" in page
    assert "<h2>Outputs</h2>" not in page


def test_inputs_gone_from_the_job_store(toy, home):
    run = toy.simulate("tests/ToyOk", OK)
    for job in (home / "jobs").glob("*.json"):
        os.remove(job)
    page = toy.page(run.id)
    assert "The job store no longer has this run&#x27;s inputs (job " in page
    assert "<h3>Result</h3>" in page


def test_an_unreadable_chart_is_a_note(toy):
    run = toy.simulate("tests/ToyCsTitles", OK)
    page = toy.page(run.id)
    assert "this chart cannot be drawn: its data is not the output of bokeh.embed.json_item" in page
    assert "BEGIN bokeh.min.js" not in page
    assert "download='Policy Report.pdf'" in page


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_an_unknown_run_is_one_line(cli):
    result = cli("runs", "open", "00000000-0000-4000-8000-000000000000", "--no-browser")
    assert _one_line_error(result).startswith("error: no run")


def test_out_as_a_folder_is_one_line(cli, tmp_path):
    result = cli("runs", "open", "anything", "--out", str(tmp_path))
    assert "is a folder: name the page's file" in _one_line_error(result)
