"""Hostile and malformed inputs (issue 12, "Inputs"): through `csflow simulate
--inputs` (a real `csflow` process), the SDK (a dict, JSON text or bytes) and
`csflow models inputs --meta`, each is exit 2 (BadInput) with one bounded line,
before anything runs or is stored: no run record, no job in the job store, no
run folder, no process left. Meta parameters of the wrong type or out of the
model's declared range end the run INVALID (exit 2) on both launchers, also in
a model environment without ParamTools (the toy model's)."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from paths import TOY_CONFIGS

from csflow.runtime import model_step
from csflow.sdk.client import Client, parse_inputs
from csflow.sdk.core import names
from csflow.sdk.core.errors import BadInput

from .harness import CSFLOW, cli_env, no_orphans, store_intact

OK = {"meta_param_dict": {"year": 2024}, "adjustment": {"Knobs": {"x": [{"value": 3}]}}}
# An error line: "error: " and a bounded message (user values are excerpts).
MAX_LINE = 300
DEEP = "[" * 100_000


def csflow(home: Path, *args: str, stdin: bytes | None = None, **env: str):
    return subprocess.run(
        [CSFLOW, *args],
        input=stdin,
        capture_output=True,
        env=cli_env(home, **env),
        timeout=300,
    )


def one_line_error(result) -> str:
    output = (result.stdout + result.stderr).decode(errors="replace")
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output[:2000]
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in output
    assert len(lines[0]) <= MAX_LINE, lines[0]
    return lines[0]


def assert_nothing_stored(home: Path) -> None:
    """No run record, no job in the job store, no run folder."""
    jobs, runs = home / "jobs", home / "runs"
    assert not (jobs.exists() and any(jobs.iterdir())), list(jobs.iterdir())
    assert not (runs.exists() and any(runs.iterdir())), list(runs.iterdir())
    db = home / "runs.db"
    if db.exists():
        with sqlite3.connect(db) as connection:
            assert connection.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
    store_intact(home)


# -- the hostile inputs ---------------------------------------------------------------

# (id, file contents, extra environment, what the error line must say)
FILE_CASES = [
    (
        "over-the-limit",
        json.dumps({**OK, "meta_param_dict": {"pad": "x" * 5000}}).encode(),
        {"CSFLOW_MAX_INPUTS_BYTES": "1000"},
        "over the limit of 1000 bytes (setting max_inputs_bytes, CSFLOW_MAX_INPUTS_BYTES)",
    ),
    ("nan", b'{"meta_param_dict": {"year": NaN}}', {}, "meta_param_dict.year: NaN is not allowed"),
    (
        "infinity",
        b'{"adjustment": {"Knobs": {"x": [{"value": Infinity}]}}}',
        {},
        "adjustment.Knobs.x[0].value: Infinity is not allowed",
    ),
    (
        "minus-infinity",
        b'{"adjustment": {"Knobs": {"x": [{"value": -Infinity}]}}}',
        {},
        "-Infinity is not allowed",
    ),
    (
        "float-out-of-range",
        b'{"adjustment": {"Knobs": {"x": [{"value": 1e400}]}}}',
        {},
        "number '1e400' is out of range",
    ),
    (
        "duplicate-key",
        b'{"adjustment": {"Knobs": {"x": [{"value": 1}]}}, "adjustment": {}}',
        {},
        "top level: duplicate key 'adjustment'",
    ),
    (
        "duplicate-nested-key",
        b'{"adjustment": {"Knobs": {"x": [{"value": 1, "value": -1}]}}}',
        {},
        "adjustment.Knobs.x[0]: duplicate key 'value'",
    ),
    ("deep-nesting", DEEP.encode(), {}, "nested more than 32 levels deep"),
    (
        "deep-but-valid-json",
        json.dumps(
            {"adjustment": {"Knobs": {"x": [{"value": json.loads("[" * 40 + "]" * 40)}]}}}
        ).encode(),
        {},
        "nested more than 32 levels deep",
    ),
    ("not-utf-8", b'{"meta_param_dict": {"year": "\xff\xfe"}}', {}, "is not UTF-8 text: byte 0xff"),
    (
        "huge-integer",
        b'{"meta_param_dict": {"year": ' + b"9" * 5000 + b"}}",
        {},
        "meta_param_dict.year: an integer of 5000 digits is too long (at most 4300)",
    ),
    (
        "value-object-without-value",
        b'{"adjustment": {"Policy": {"STD": [{"year": 2024}]}}}',
        {},
        "adjustment.Policy.STD[0]: a value object needs a 'value' key (it has 'year')",
    ),
    (
        "long-meta-shape-error",
        json.dumps({"meta_param_dict": {"year": {"nested": "y" * 5000}}}).encode(),
        {},
        "meta_param_dict.year: must be a value or [{'value': ...}]",
    ),
    (
        "long-unknown-key",
        json.dumps({"k" * 5000: 1}).encode(),
        {},
        "Extra inputs are not permitted",
    ),
]


@pytest.mark.parametrize(
    "contents, env, fragment", [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES]
)
def test_hostile_inputs_file_exits_2_in_one_line_and_stores_nothing(
    home, tmp_path, contents, env, fragment
):
    path = tmp_path / "inputs.json"
    path.write_bytes(contents)
    result = csflow(home, "simulate", "tests/ToyOk", "--inputs", str(path), **env)
    assert result.returncode == 2, result.stderr[-2000:]
    assert fragment in one_line_error(result)
    assert_nothing_stored(home)
    no_orphans(home)


def test_a_huge_file_is_refused_from_its_size_before_it_is_read(home, tmp_path):
    """200 MB (sparse: no disk used) with the default limit: refused at once,
    without reading it (today: 10 GB of memory and 143 s)."""
    path = tmp_path / "huge.json"
    with open(path, "wb") as handle:
        handle.truncate(200 * 1024 * 1024)
    started = time.monotonic()
    result = csflow(home, "simulate", "tests/ToyOk", "--inputs", str(path))
    assert result.returncode == 2
    line = one_line_error(result)
    assert "is 209715200 bytes, over the limit of 8388608 bytes" in line
    assert time.monotonic() - started < 20
    assert_nothing_stored(home)


def test_stdin_over_the_limit_is_refused_after_limit_bytes(home):
    result = csflow(
        home,
        "simulate",
        "tests/ToyOk",
        "--inputs",
        "-",
        stdin=b" " * 5000 + b"{}",
        CSFLOW_MAX_INPUTS_BYTES="4096",
    )
    assert result.returncode == 2
    assert "inputs on stdin is over the limit of 4096 bytes" in one_line_error(result)
    assert_nothing_stored(home)


def test_a_long_tag_is_echoed_as_an_excerpt(home, tmp_path):
    path = tmp_path / "inputs.json"
    path.write_text(json.dumps(OK))
    result = csflow(home, "simulate", "tests/ToyOk", "--inputs", str(path), "--tag", "x" * 5000)
    assert result.returncode == 2
    line = one_line_error(result)
    assert "invalid tag 'xxxx" in line and "(5000 characters)" in line
    assert_nothing_stored(home)


@pytest.mark.parametrize(
    "check, value",
    [
        (names.check_tag, "t" * 5000),
        (lambda v: names.check_project_part("owner", v), "o" * 5000),
        (names.parse_model_name, "o/" + "t" * 5000),
        (names.parse_model_name, "n" * 5000),
        (names.check_env_name, "E " * 2500),
        (names.check_job_id, "j" * 5000),
    ],
)
def test_every_name_validator_echoes_a_bounded_excerpt(check, value):
    with pytest.raises(BadInput) as caught:
        check(value)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 250, message
    assert "(5000 characters)" in message or "(4998 characters)" in message


# -- the SDK: dicts, JSON text and bytes ------------------------------------------------


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


SDK_CASES = [
    ("text-nan", '{"meta_param_dict": {"year": NaN}}', "NaN is not allowed"),
    ("bytes-duplicate", b'{"adjustment": {"A": {}, "A": {}}}', "duplicate key 'A'"),
    ("bytes-not-utf-8", b'{"adjustment": {"\xc3\x28": {}}}', "is not UTF-8 text: byte 0xc3"),
    ("text-deep", DEEP, "nested more than 32 levels deep"),
    ("text-huge-integer", '{"meta_param_dict": {"year": ' + "1" * 4301 + "}}", "4301 digits"),
    ("dict-nan", {"meta_param_dict": {"year": float("nan")}}, "nan is not allowed"),
    (
        "dict-infinity",
        {"adjustment": {"Knobs": {"x": [{"value": float("-inf")}]}}},
        "adjustment.Knobs.x[0].value: -inf is not allowed",
    ),
    ("dict-int-key", {"adjustment": {"Knobs": {1: [{"value": 1}]}}}, "key 1 is not a string"),
    ("dict-deep", {"adjustment": {"Knobs": {"x": _nested(10_000)}}}, "nested more than 32"),
    ("dict-huge-integer", {"meta_param_dict": {"year": 10**5000}}, "too long (at most 4300)"),
    ("dict-set", {"adjustment": {"Knobs": {"x": {1, 2}}}}, "a set is not JSON"),
    ("dict-bytes", {"meta_param_dict": {"year": b"2024"}}, "a bytes is not JSON"),
    ("dict-lone-surrogate", {"meta_param_dict": {"year": "\ud800"}}, "lone surrogate"),
    (
        "dict-value-object-without-value",
        {"adjustment": {"Policy": {"STD": [{"year": 2024}]}}},
        "inputs: adjustment.Policy.STD[0]: a value object needs a 'value' key",
    ),
    (
        "dict-over-the-limit",
        {"adjustment": {"Knobs": {"x": [{"value": "x" * 9 * 1024 * 1024}]}}},
        "over the limit of 8388608 bytes",
    ),
    (
        "text-over-the-limit",
        json.dumps({"adjustment": {"Knobs": {"x": [{"value": "x" * 9 * 1024 * 1024}]}}}),
        "over the limit of 8388608 bytes",
    ),
]


@pytest.fixture
def toy_cold(home) -> Client:
    return Client(home=home, config_dirs=[TOY_CONFIGS], warm_workers=False)


@pytest.mark.parametrize(
    "inputs, fragment", [c[1:] for c in SDK_CASES], ids=[c[0] for c in SDK_CASES]
)
def test_the_sdk_refuses_hostile_inputs_before_storing_anything(toy_cold, home, inputs, fragment):
    for call in (toy_cold.submit, toy_cold.simulate, toy_cold.render):
        with pytest.raises(BadInput) as caught:
            call("tests/ToyOk", inputs)
        message = str(caught.value)
        assert fragment in message, message
        assert "\n" not in message and len(message) <= MAX_LINE, message
    assert toy_cold.list() == []
    assert_nothing_stored(home)


def test_the_sdk_takes_json_text_and_bytes_and_a_later_run_succeeds(toy_cold, home):
    assert parse_inputs(json.dumps(OK)) == parse_inputs(OK) == parse_inputs(json.dumps(OK).encode())
    # a UTF-8 byte-order mark (Windows editors write one) is not an error
    assert parse_inputs(b"\xef\xbb\xbf" + json.dumps(OK).encode()) == parse_inputs(OK)
    for hostile, _ in [c[1:] for c in SDK_CASES[:3]]:
        with pytest.raises(BadInput):
            toy_cold.simulate("tests/ToyOk", hostile)
    run = toy_cold.simulate("tests/ToyOk", json.dumps(OK))
    assert run.status == "SUCCESS", run.reason
    store_intact(home)
    no_orphans(home)


# -- csflow models inputs --meta -------------------------------------------------------

META_CASES = [
    (["year=NaN"], "--meta 'year': top level: NaN is not allowed"),
    (["year=-Infinity"], "-Infinity is not allowed"),
    (["year=1e400"], "number '1e400' is out of range"),
    (["year=" + "7" * 5000], "an integer of 5000 digits is too long"),
    (['year={"a": 1, "a": 2}'], "duplicate key 'a'"),
    (["year=" + "[" * 50 + "]" * 50], "nested more than 32 levels deep"),
    (["year=2024", "year=2025"], "--meta 'year' is given twice"),
    (["n" * 5000], "expected NAME=VALUE"),
]


@pytest.mark.parametrize(
    "pairs, fragment", META_CASES, ids=[str(i) for i in range(len(META_CASES))]
)
def test_models_inputs_meta_refuses_hostile_values_in_one_line(home, pairs, fragment):
    args = [a for pair in pairs for a in ("--meta", pair)]
    result = csflow(home, "models", "inputs", "tests/ToyOk", *args)
    assert result.returncode == 2, result.stderr[-2000:]
    assert fragment in one_line_error(result)
    assert_nothing_stored(home)


@pytest.mark.parametrize(
    "meta, fragment",
    [
        ("year=2000", "year 2000 < min 2020"),  # the model's range
        ("year=soon", "year"),  # the model's type
    ],
)
def test_models_inputs_checks_meta_parameters_as_simulate_does(home, meta, fragment):
    """A year outside the model's range is the user's to fix: exit 2 with the
    model's own message, as simulate's INVALID says it, not a crash inside get_inputs."""
    result = csflow(home, "models", "inputs", "tests/ToyOk", "--meta", meta)
    assert result.returncode == 2, result.stderr[-2000:]
    line = one_line_error(result)
    assert "meta parameters: year:" in line and fragment in line, line
    ok = csflow(home, "models", "inputs", "tests/ToyOk", "--meta", "year=2025")
    assert ok.returncode == 0, ok.stderr[-2000:]


@pytest.mark.parametrize(
    "meta, fragment",
    [
        ({"year": float("nan")}, "meta_param_dict.year: nan is not allowed"),
        ({"year": [2024]}, "meta_param_dict.year: must be a value or [{'value': ...}]"),
        ({2024: 1}, "key 2024 is not a string"),
    ],
)
def test_the_sdk_refuses_hostile_meta_for_a_models_inputs(toy_cold, home, meta, fragment):
    with pytest.raises(BadInput, match=re.escape(fragment)):
        toy_cold.inputs("tests/ToyOk", meta)
    assert_nothing_stored(home)


def test_meta_values_that_are_not_json_are_still_text():
    from csflow.cli.models import parse_meta

    assert parse_meta(["year=2024", "mode=fast", "flag=true", "empty="]) == {
        "year": 2024,
        "mode": "fast",
        "flag": True,
        "empty": "",
    }


# -- meta parameters: type and range, without ParamTools in the model's environment ----

LAUNCHERS = {"warm": "true", "fresh": "false"}


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_meta_parameters_of_the_wrong_type_or_range_end_invalid(home, tmp_path, launcher):
    """The toy model declares ``year: int`` with ``range: {min: 2020, max: 2030}``
    and does not install ParamTools: the inputs step checks both by hand, the run
    ends INVALID with the errors under API (exit 2), nothing is left running, the
    store is intact and a later simulation succeeds."""
    env = {"CSFLOW_WARM_WORKERS": LAUNCHERS[launcher]}
    cases = {
        1999: "year 1999 < min 2020",
        2031: "year 2031 > max 2030",
        "abc": "year: 'abc' is not an integer (type int)",
        True: "year: True is not an integer (type int)",
        "y" * 5000: "yyy...yyy",
    }
    path = tmp_path / "inputs.json"
    for year, message in cases.items():
        path.write_text(json.dumps({**OK, "meta_param_dict": {"year": year}}))
        result = csflow(home, "simulate", "tests/ToyOk", "--inputs", str(path), "-o", "json", **env)
        assert result.returncode == 2, result.stderr[-2000:]
        run = json.loads(result.stdout)
        assert run["status"] == "INVALID"
        errors = run["errors_warnings"]["API"]["errors"]
        assert list(errors) == ["meta_parameters.year"]
        assert message in errors["meta_parameters.year"][0]
        assert len(errors["meta_parameters.year"][0]) < 200
        assert "run" not in {k for k, v in run["steps"].items() if v["phase"] == "Succeeded"}
    path.write_text(json.dumps(OK))
    ok = csflow(home, "simulate", "tests/ToyOk", "--inputs", str(path), "-o", "json", **env)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert json.loads(ok.stdout)["status"] == "SUCCESS"
    no_orphans(home)
    store_intact(home)


SPEC = {
    "year": {
        "title": "Year",
        "description": "Year",
        "type": "int",
        "value": 2024,
        "validators": {"range": {"min": 2020, "max": "last"}},
    },
    "last": {"title": "Last", "description": "", "type": "int", "value": 2030},
    "rate": {
        "title": "Rate",
        "description": "",
        "type": "float",
        "value": 0.5,
        "validators": {"range": {"min": 0, "max": 1}},
    },
    "soft": {
        "title": "Soft",
        "description": "",
        "type": "int",
        "value": 1,
        "validators": {"range": {"min": 0, "level": "warn"}},
    },
    "mode": {
        "title": "Mode",
        "description": "",
        "type": "str",
        "value": "fast",
        "validators": {"choice": {"choices": ["fast", "exact"]}},
    },
    "flag": {"title": "Flag", "description": "", "type": "bool", "value": False},
    "start": {
        "title": "Start",
        "description": "",
        "type": "date",
        "value": "2024-01-01",
        "validators": {"date_range": {"min": "2020-01-01", "max": "2030-12-31"}},
    },
    "weights": {
        "title": "Weights",
        "description": "",
        "type": "float",
        "number_dims": 1,
        "value": [[1.0]],
        "validators": {"range": {"min": 0}},
    },
    "other": {"title": "Other", "description": "", "type": "exotic", "value": None},
}


@pytest.mark.parametrize(
    "meta, errors",
    [
        ({"year": 2024, "rate": 0.25, "mode": "exact", "flag": True}, {}),
        ({"start": "2025-06-30", "weights": [0.5, 2.0], "other": {"any": 1}}, {}),
        ({"rate": 1}, {}),  # an int is a float
        ({"soft": -5}, {}),  # level "warn": not an error
        ({"year": 2019}, {"year": ["year 2019 < min 2020"]}),
        ({"year": 2031}, {"year": ["year 2031 > max 2030"]}),  # max names "last"
        ({"year": 2031, "last": 2040}, {}),
        ({"year": 2024.0}, {"year": ["year: 2024.0 is not an integer (type int)"]}),
        ({"year": "2024"}, {"year": ["year: '2024' is not an integer (type int)"]}),
        ({"year": None}, {"year": ["year: None is not an integer (type int)"]}),
        ({"rate": True}, {"rate": ["rate: True is not a number (type float)"]}),
        ({"rate": 1.5}, {"rate": ["rate 1.5 > max 1"]}),
        ({"flag": 1}, {"flag": ["flag: 1 is not true or false (type bool)"]}),
        ({"mode": "slow"}, {"mode": ["mode 'slow' must be one of ['fast', 'exact']"]}),
        ({"mode": 3}, {"mode": ["mode: 3 is not text (type str)"]}),
        ({"start": "2031-01-01"}, {"start": ["start '2031-01-01' > max '2030-12-31'"]}),
        ({"start": "soon"}, {"start": ["start: 'soon' is not a date, YYYY-MM-DD (type date)"]}),
        ({"weights": 1.0}, {"weights": ["weights: 1.0 is not a list of 1 dimension(s)"]}),
        ({"weights": [1.0, -1.0]}, {"weights": ["weights -1.0 < min 0"]}),
        ({"year": [2024]}, {"year": ["year: [2024] is not a single value"]}),
        ({"nope": 1}, {"nope": ["unknown meta parameter"]}),
    ],
)
def test_meta_errors_by_hand(meta, errors):
    """``meta_errors`` where ParamTools is not importable (the csflow venv, like the
    toy model's environment), on the form ``JobInputs`` hands over."""
    try:
        import paramtools  # noqa: F401

        pytest.skip("ParamTools is installed here: meta_errors would use it")
    except ImportError:
        pass
    spec_form = {name: [{"value": value}] for name, value in meta.items()}
    assert model_step.meta_errors(SPEC, spec_form) == errors


def test_meta_error_messages_are_bounded():
    errors = model_step.meta_errors(SPEC, {"mode": [{"value": "m" * 5000}]})
    assert len(errors["mode"][0]) < 200


@pytest.mark.slow
def test_with_paramtools_meta_of_the_wrong_type_ends_invalid(tax, tax_inputs):
    """Tax-Cruncher's environment has ParamTools: the same checks, by ParamTools."""
    for year in ("abc", 1999):
        tax_inputs["meta_param_dict"] = {"year": year}
        run = tax.simulate("PSLmodels/Tax-Cruncher", tax_inputs)
        assert run.status == "INVALID", run.reason
        assert "meta_parameters.year" in run.errors_warnings["API"]["errors"]
