"""The model-side contract tests (runtime/contract_tests.py) on small models
written by each test: each rule fails when broken, and the harness keeps
going, recording the model's own output."""

from __future__ import annotations

import json
import textwrap

import pytest

from csflow.runtime import contract_tests

from .conftest import TESTS_SECTION, TINY

GOOD = (TINY / "tiny_model.py").read_text()


@pytest.fixture
def run_tests(tmp_path, monkeypatch):
    """Run the harness on a model module's source; return {test name: result}."""

    def run(source: str, tests: dict | None = None) -> dict[str, dict]:
        name = f"model_{abs(hash(source)) % 10**8}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.setenv("CSFLOW_MODEL_FUNCTIONS", name)
        work = tmp_path / "work"
        work.mkdir(exist_ok=True)
        (work / "tests.json").write_text(json.dumps(tests or TESTS_SECTION))
        monkeypatch.setenv("CSFLOW_WORK_DIR", str(work))
        assert contract_tests.main(["test"]) == 0
        results = json.loads((work / "test-results.json").read_text())
        return {t["name"]: t for t in results["tests"]}

    return run


def status(results: dict[str, dict]) -> dict[str, str]:
    return {name: r["status"] for name, r in results.items()}


def test_a_good_model_passes_everything(run_tests):
    assert set(status(run_tests(GOOD)).values()) == {"passed"}


def test_a_missing_function_fails_and_the_rest_is_not_run(run_tests):
    results = run_tests(GOOD.replace("def run_model(", "def run_modle("))
    assert results["functions"]["status"] == "failed"
    assert results["functions"]["detail"].endswith("lacks run_model")
    assert {s for n, s in status(results).items() if n != "functions"} == {"not run"}


def test_a_module_that_does_not_import_shows_its_traceback(run_tests):
    results = run_tests("import not_a_package\n")
    assert results["functions"]["status"] == "failed"
    assert "ModuleNotFoundError" in results["functions"]["output"]


def test_get_version_must_be_truthy(run_tests):
    results = run_tests(
        GOOD.replace("return f\"tiny {os.environ.get('TINY_VERSION', '1.0')}\"", "return ''")
    )
    assert results["get_version"]["status"] == "failed"


def test_get_inputs_must_have_exactly_the_two_keys_and_be_json(run_tests):
    extra = GOOD.replace(
        '    return {\n        "meta_parameters"',
        '    return {\n        "extra": 1,\n        "meta_parameters"',
    )
    assert run_tests(extra)["get_inputs"]["status"] == "failed"
    not_json = GOOD.replace('"value": 0.5,', '"value": {0.5},')
    result = run_tests(not_json)["get_inputs"]
    assert result["status"] == "failed" and "not JSON-serializable" in result["detail"]


def test_parameters_need_the_paramtools_fields(run_tests):
    result = run_tests(GOOD.replace('"title": "Label", ', ""))["paramtools"]
    assert result["status"] == "failed" and "Extras.label lacks title" in result["detail"]


def test_every_meta_parameter_combination_is_tried(run_tests):
    assert run_tests(GOOD)["meta_grid"]["detail"].startswith("3 combination(s): year=2023")
    broken = GOOD.replace(
        '"Extras": {} if MODE == "empty-section" else {', '"Extras": {} if year == 2025 else {'
    )
    result = run_tests(broken)["meta_grid"]
    assert (
        result["status"] == "failed"
        and "year=2025" in result["detail"]
        and "Extras" in result["detail"]
    )


def test_both_meta_shapes_must_agree(run_tests):
    source = GOOD.replace(
        '    if isinstance(value, list):\n        value = value[0]["value"]\n',
        "    if isinstance(value, list):\n        value = 2023\n",
    )
    assert run_tests(source)["meta_shapes"]["status"] == "failed"


def test_validate_inputs_may_return_only_the_known_keys(run_tests):
    source = GOOD.replace(
        '    return {"errors_warnings": errors_warnings}\n\n\ndef run_model',
        '    return {"errors_warnings": errors_warnings, "extra": 1}\n\n\ndef run_model',
    )
    result = run_tests(source)["ok_adjustment"]
    assert result["status"] == "failed" and "unknown key(s): extra" in result["detail"]


def test_an_ok_adjustment_with_errors_fails(run_tests):
    tests = {**TESTS_SECTION, "ok_adjustment": {"Knobs": {"rate": [{"value": 5}]}}}
    result = run_tests(GOOD, tests)["ok_adjustment"]
    assert result["status"] == "failed" and "rate must be between 0 and 1" in result["detail"]


def test_a_bad_adjustment_must_break_every_section(run_tests):
    tests = {**TESTS_SECTION, "bad_adjustment": {"Knobs": {"rate": [{"value": 5}]}}}
    result = run_tests(GOOD, tests)["bad_adjustment"]
    assert result["status"] == "failed" and result["detail"].endswith("without errors in: Extras")


def test_a_crashing_run_model_shows_its_output_and_traceback(run_tests):
    source = GOOD.replace(
        "    rate = adjustment",
        "    print('computing...')\n    raise RuntimeError('boom')\n    rate = adjustment",
    )
    result = run_tests(source)["run_model"]
    assert result["status"] == "failed" and result["detail"] == "RuntimeError: boom"
    assert "computing..." in result["output"] and "Traceback" in result["output"]


def test_run_model_must_return_both_lists(run_tests):
    source = GOOD.replace(
        '        "downloadable": [{"media_type": "CSV"', '        "download": [{"media_type": "CSV"'
    )
    result = run_tests(source)["run_model"]
    assert result["status"] == "failed" and "downloadable" in result["detail"]


@pytest.mark.parametrize(
    "spec, values",
    [
        (
            {"type": "int", "value": 2024, "validators": {"range": {"min": 2020, "max": 2022}}},
            [2020, 2021, 2022],
        ),
        (
            {"type": "str", "value": "a", "validators": {"choice": {"choices": ["a", "b"]}}},
            ["a", "b"],
        ),
        ({"type": "bool", "value": [{"value": True}]}, [True, False]),
        ({"type": "float", "value": 0.5, "validators": {"range": {"min": 0, "max": 1}}}, [0.5]),
        ({"type": "int", "value": 5, "validators": {"range": {"min": 0, "max": 10**6}}}, [5]),
    ],
)
def test_meta_values(spec, values):
    assert contract_tests.meta_values(spec) == values


def test_big_grids_take_every_third_combination_as_cs_kit_did():
    meta = {
        "year": {"type": "int", "value": 2013, "validators": {"range": {"min": 2013, "max": 2035}}}
    }
    assert [c["year"] for c in contract_tests.meta_grid(meta)] == list(range(2013, 2036, 3))
    small = {
        "year": {"type": "int", "value": 1, "validators": {"range": {"min": 1, "max": 3}}},
        "full": {"type": "bool", "value": True},
        "schema": {},
    }
    assert len(contract_tests.meta_grid(small)) == 6


def test_inputs_command_computes_for_given_meta(tmp_path, monkeypatch):
    (tmp_path / "tiny_model.py").write_text(GOOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("CSFLOW_MODEL_FUNCTIONS", "tiny_model")
    out = tmp_path / "inputs.json"
    assert contract_tests.main(["inputs", "--meta", '{"year": 2023}', "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["meta_param_dict"] == {"year": 2023} and data["version"] == "tiny 1.0"
    assert data["inputs"]["model_parameters"]["Knobs"]["rate"]["description"] == "A rate in 2023"
