"""The model contract tests, run inside the model's own environment.

This is the ``test`` step of the publish flow: it runs in the model's image on
Argo (as ``csflow-contract-tests``) and in the model's uv environment in the
embedded engine. Like ``model_step.py`` it uses the standard library only, so
it needs nothing from csflow's environment. It checks what C/S's cs-kit
checked (``CoreTestFunctions``), without its bugs, plus what cs-kit missed:

1. ``functions``: the four functions exist and are callable;
2. ``get_version``: returns something truthy;
3. ``get_inputs``: for the default meta parameters, exactly the keys
   ``meta_parameters`` and ``model_parameters``, JSON-serializable, and timed;
4. ``sections``: every section has at least one parameter (cs-kit let an
   empty "Policy" section through);
5. ``paramtools``: the meta parameters and every section load in ParamTools;
6. ``meta_grid``: ``get_inputs`` for each meta-parameter combination loads in
   ParamTools and serializes to JSON; each call's time is reported;
7. ``meta_shapes``: ``{"year": 2024}`` and ``{"year": [{"value": 2024}]}``
   give the same inputs;
8. ``ok_adjustment``: validates with no errors in any section; the result has
   no keys but ``errors_warnings`` and ``custom_adjustment`` (JSON);
9. ``bad_adjustment``: gives errors in every section;
10. ``run_model``: on the ok adjustment returns ``renderable`` and
    ``downloadable`` lists that serialize to JSON.

The schema of the outputs is checked on the platform side (the ``verify``
step), where csflow's pydantic schema lives: model environments do not have
pydantic.

Environment (declared in ``step_env.py``, the sibling file that travels with
this one): ``CSFLOW_MODEL_FUNCTIONS`` (``cs_config.functions``) and
``CSFLOW_WORK_DIR``.

Files (``CSFLOW_WORK_DIR``, ``/tmp/csflow`` in a pod):
- in: ``tests.json``, the config's ``tests`` section;
- out: ``test-results.json`` (every test: status, time, detail, warnings and,
  on failure, the model's own output and traceback), ``raw-outputs.json``
  (what ``run_model`` returned) and ``inputs-cache.json`` (``get_version`` and
  the default ``get_inputs``, for the inputs cache).

The program exits 0 once every test has run, passed or not (the ``verify``
step gives the verdict), and 1 only if the harness itself broke.

``contract_tests.py inputs --meta JSON --out FILE`` computes ``get_version``
and ``get_inputs`` for one set of meta parameters (``csflow models inputs``).
"""

from __future__ import annotations

import argparse
import base64
import importlib
import io
import itertools
import json
import os
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

try:  # csflow.runtime.contract_tests (tests)
    from . import model_step, step_env
except ImportError:  # a copy run as a script: its siblings travel with it
    import model_step  # type: ignore[no-redef]
    import step_env  # type: ignore[no-redef]

EXIT_BAD_META = 2  # as a simulation's bad inputs: the user's to fix

FUNCTIONS = ("get_version", "get_inputs", "validate_inputs", "run_model")
INPUT_KEYS = {"meta_parameters", "model_parameters"}
VALIDATE_KEYS = {"errors_warnings", "custom_adjustment"}
OUTPUT_KEYS = ("renderable", "downloadable")
# C/S's webapp waited 1.7 s for get_inputs; cs-kit warned above 1 s.
SLOW_INPUTS_SECONDS = 1.0
SLOW_NOTE = "cs-kit warned above 1s, and the C/S webapp waited 1.7s for it"
# cs-kit's rule for big grids: every third combination above nine.
GRID_LIMIT = 9
MAX_RANGE_VALUES = 50
MAX_OUTPUT_CHARS = 20_000
# Tests whose output is kept even when they pass: run_model's, in case its
# outputs then fail the schema (checked on the platform side).
KEEP_OUTPUT = ("run_model",)
# What a passing publish may hold: tests passed, or skipped by the model's config.
PASSING = ("passed", "skipped")


class Failed(Exception):
    """A contract test failed; the message says why in one line."""


def work_dir() -> Path:
    path = Path(step_env.WORK_DIR.get())
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _json_default(value):
    """What the simulate flow accepts in outputs: bytes (as base64), numpy values."""
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def spec_form(meta: dict) -> dict:
    """``{"year": 2024}`` -> ``{"year": [{"value": 2024}]}`` (what the C/S webapp sent)."""
    normalized = {}
    for name, value in (meta or {}).items():
        if isinstance(value, list) and all(isinstance(v, dict) and "value" in v for v in value):
            normalized[name] = value
        else:
            normalized[name] = [{"value": value}]
    return normalized


def flat_form(meta: dict) -> dict:
    return {k: v[0]["value"] if v else None for k, v in spec_form(meta).items()}


class _Tee(io.TextIOBase):
    """Writes to the step's log and keeps a copy, so a failure can show the
    model's own output next to the test that failed."""

    def __init__(self, stream, copy: io.StringIO):
        self.stream, self.copy = stream, copy

    def write(self, text: str) -> int:
        self.stream.write(text)
        if self.copy.tell() < MAX_OUTPUT_CHARS:
            self.copy.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def fileno(self) -> int:
        return self.stream.fileno()

    def isatty(self) -> bool:
        return False

    # typeshed declares TextIOBase.encoding a writable attribute; at runtime it is
    # a read-only property (a getset descriptor of _io._TextIOBase), as here.
    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")


class Harness:
    def __init__(self, tests: dict):
        self.tests = tests
        self.results: list[dict] = []
        self.module: ModuleType | None = None
        self.version = ""
        self.defaults: dict | None = None
        self.meta = spec_form(tests.get("meta_param_dict") or {})
        self.noted_no_paramtools = False

    @property
    def model(self) -> ModuleType:
        """The model's functions (``t_functions``; the later tests need it)."""
        if self.module is None:
            raise Failed("the model's functions are not imported")
        return self.module

    @property
    def default_inputs(self) -> dict:
        """``get_inputs({})`` (``t_get_inputs``; the later tests need it)."""
        if self.defaults is None:
            raise Failed("the default inputs are not computed")
        return self.defaults

    # -- running one test ---------------------------------------------------

    def run(self, name: str, title: str, check, needs: tuple[str, ...] = ()) -> None:
        status = {r["name"]: r["status"] for r in self.results}
        blocked = [n for n in needs if status.get(n) != "passed"]
        result: dict[str, Any] = {
            "name": name,
            "title": title,
            "status": "not run",
            "seconds": 0.0,
            "detail": "",
            "warnings": [],
            "output": "",
        }
        self.results.append(result)
        if blocked:
            result["detail"] = f"needs {', '.join(blocked)}"
            print(f"[not run] {title}: needs {', '.join(blocked)}", flush=True)
            return
        captured = io.StringIO()
        real_out, real_err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(real_out, captured), _Tee(real_err, captured)
        started = time.perf_counter()
        try:
            detail = check(result["warnings"])
            result["status"], result["detail"] = "passed", detail or ""
            if name in KEEP_OUTPUT:  # the platform-side check may need it
                result["output"] = captured.getvalue()
        except Failed as exc:
            result["status"], result["detail"] = "failed", str(exc)
            result["output"] = captured.getvalue()
        except BaseException as exc:  # the model's own error
            if isinstance(exc, KeyboardInterrupt):
                raise
            result["status"] = "failed"
            result["detail"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            result["output"] = captured.getvalue() + traceback.format_exc()
        finally:
            sys.stdout, sys.stderr = real_out, real_err
            result["seconds"] = round(time.perf_counter() - started, 3)
        line = f"[{result['status']}] {title} ({result['seconds']:.2f}s)"
        print(line + (f": {result['detail']}" if result["detail"] else ""), flush=True)
        for warning in result["warnings"]:
            print(f"  warning: {warning}", flush=True)
        if result["status"] == "failed" and result["output"]:
            print("  model output:\n" + _indent(result["output"]), flush=True)

    # -- the tests --------------------------------------------------------------

    def t_functions(self, warnings: list) -> str:
        name = step_env.MODEL_FUNCTIONS.get()
        module = self.module = importlib.import_module(name)
        missing = [f for f in FUNCTIONS if not callable(getattr(module, f, None))]
        if missing:
            raise Failed(f"{name} lacks {', '.join(missing)}")
        return f"{name}: {', '.join(FUNCTIONS)}"

    def t_get_version(self, warnings: list) -> str:
        version = self.model.get_version()
        if not version:
            raise Failed(f"get_version() returned {version!r}")
        self.version = str(version)
        return self.version

    def _get_inputs(self, meta: dict, warnings: list | None, label: str) -> tuple[dict, float]:
        started = time.perf_counter()
        inputs = self.model.get_inputs(meta)
        seconds = time.perf_counter() - started
        if not isinstance(inputs, dict) or set(inputs) != INPUT_KEYS:
            keys = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
            raise Failed(
                f"get_inputs({label}) must return exactly {sorted(INPUT_KEYS)}, got {keys}"
            )
        for key in INPUT_KEYS:
            if not isinstance(inputs[key], dict):
                raise Failed(f"get_inputs({label})[{key!r}] must be an object")
        for section, params in inputs["model_parameters"].items():
            if not isinstance(params, dict):
                raise Failed(f"get_inputs({label}): section {section!r} must be an object")
        try:
            json.dumps(inputs)
        except (TypeError, ValueError) as exc:
            raise Failed(f"get_inputs({label}) is not JSON-serializable: {exc}") from None
        if seconds > SLOW_INPUTS_SECONDS and warnings is not None:
            warnings.append(f"get_inputs({label}) took {seconds:.2f}s: {SLOW_NOTE}")
        return inputs, seconds

    def t_get_inputs(self, warnings: list) -> str:
        defaults, seconds = self._get_inputs({}, warnings, "{}")
        self.defaults = defaults
        sections = list(defaults["model_parameters"])
        return f"{len(sections)} section(s): {', '.join(sections)} in {seconds:.2f}s"

    def t_sections(self, warnings: list) -> str:
        counts = {
            name: len(_parameters(params))
            for name, params in self.default_inputs["model_parameters"].items()
        }
        if not counts:
            raise Failed("model_parameters has no sections")
        empty = [name for name, count in counts.items() if count == 0]
        if empty:
            raise Failed(f"section(s) without parameters: {', '.join(empty)}")
        return ", ".join(f"{name}: {count}" for name, count in counts.items())

    def _load_all(self, inputs: dict, label: str, warnings: list) -> None:
        problems = _structure_problems(inputs)
        if problems:
            raise Failed(f"get_inputs({label}): {problems[0]}")
        try:
            import paramtools  # noqa: F401
        except ImportError:
            if not self.noted_no_paramtools:
                self.noted_no_paramtools = True
                warnings.append(
                    "ParamTools is not installed in the model environment: "
                    "checked the structure only"
                )
            return
        for where, defaults in [
            ("meta_parameters", inputs["meta_parameters"]),
            *inputs["model_parameters"].items(),
        ]:
            try:
                _paramtools_load(defaults)
            except Exception as exc:
                message = " ".join(str(exc).split())[:300]
                raise Failed(
                    f"get_inputs({label}): {where} does not load in ParamTools: {message}"
                ) from None

    def t_paramtools(self, warnings: list) -> str:
        self._load_all(self.default_inputs, "{}", warnings)
        return f"meta_parameters and {len(self.default_inputs['model_parameters'])} section(s) load"

    def t_meta_grid(self, warnings: list) -> str:
        grid = meta_grid(self.default_inputs["meta_parameters"])
        timings = []
        for combination in grid:
            label = ", ".join(f"{k}={v}" for k, v in combination.items()) or "{}"
            inputs, seconds = self._get_inputs(spec_form(combination), None, label)
            self._load_all(inputs, label, warnings)
            empty = [s for s, p in inputs["model_parameters"].items() if not _parameters(p)]
            if empty:
                raise Failed(
                    f"get_inputs({label}): section(s) without parameters: {', '.join(empty)}"
                )
            timings.append((label, seconds))
            print(f"  get_inputs({label}): {seconds:.2f}s", flush=True)
        slow = [t for t in timings if t[1] > SLOW_INPUTS_SECONDS]
        if slow:
            warnings.append(
                f"get_inputs took over {SLOW_INPUTS_SECONDS:g}s for {len(slow)} of "
                f"{len(timings)} combinations ({SLOW_NOTE})"
            )
        return f"{len(grid)} combination(s): " + ", ".join(
            f"{label} {seconds:.2f}s" for label, seconds in timings
        )

    def t_meta_shapes(self, warnings: list) -> str:
        flat = flat_form(self.meta) or _default_meta(self.default_inputs["meta_parameters"])
        spec = spec_form(flat)
        by_flat, _ = self._get_inputs(flat, None, json.dumps(flat))
        by_spec, _ = self._get_inputs(spec, None, json.dumps(spec))
        if json.dumps(by_flat, sort_keys=True) != json.dumps(by_spec, sort_keys=True):
            raise Failed(
                f"get_inputs gives different inputs for {json.dumps(flat)} and {json.dumps(spec)}"
            )
        return f"{json.dumps(flat)} and {json.dumps(spec)} agree"

    def _validate(self, adjustment: dict, label: str) -> dict:
        template: dict[str, dict[str, dict]] = {
            name: {"errors": {}, "warnings": {}} for name in self.default_inputs["model_parameters"]
        }
        result = self.model.validate_inputs(self.meta, adjustment, template)
        if not isinstance(result, dict) or "errors_warnings" not in result:
            raise Failed(f"validate_inputs({label}) must return {{'errors_warnings': ...}}")
        extra = sorted(set(result) - VALIDATE_KEYS)
        if extra:
            raise Failed(f"validate_inputs({label}) returned unknown key(s): {', '.join(extra)}")
        if "custom_adjustment" in result:
            try:
                json.dumps(result["custom_adjustment"])
            except (TypeError, ValueError) as exc:
                raise Failed(
                    f"validate_inputs({label}): custom_adjustment is not JSON: {exc}"
                ) from None
        errors_warnings = result["errors_warnings"]
        if not isinstance(errors_warnings, dict):
            raise Failed(f"validate_inputs({label}): errors_warnings must be an object")
        missing = [s for s in template if not isinstance(errors_warnings.get(s), dict)]
        if missing:
            raise Failed(
                f"validate_inputs({label}): errors_warnings lacks section(s) {', '.join(missing)}"
            )
        return errors_warnings

    def t_ok_adjustment(self, warnings: list) -> str:
        errors_warnings = self._validate(self.tests["ok_adjustment"], "ok_adjustment")
        errors = {s: v.get("errors") for s, v in errors_warnings.items() if v.get("errors")}
        if errors:
            raise Failed(f"the ok adjustment has errors: {json.dumps(errors)[:400]}")
        for section, value in errors_warnings.items():
            if value.get("warnings"):
                warnings.append(f"{section}: {json.dumps(value['warnings'])[:200]}")
        return "no errors in any section"

    def t_bad_adjustment(self, warnings: list) -> str:
        errors_warnings = self._validate(self.tests["bad_adjustment"], "bad_adjustment")
        clean = [s for s, v in errors_warnings.items() if not v.get("errors")]
        if clean:
            raise Failed(f"the bad adjustment validates without errors in: {', '.join(clean)}")
        counts = {s: sum(len(m) for m in v["errors"].values()) for s, v in errors_warnings.items()}
        return "errors in every section: " + ", ".join(f"{s}: {n}" for s, n in counts.items())

    def t_run_model(self, warnings: list) -> str:
        started = time.perf_counter()
        result = self.model.run_model(self.meta, self.tests["ok_adjustment"])
        seconds = time.perf_counter() - started
        if not isinstance(result, dict):
            raise Failed(f"run_model returned {type(result).__name__}, not an object")
        missing = [k for k in OUTPUT_KEYS if not isinstance(result.get(k), list)]
        if missing:
            raise Failed(f"run_model's result lacks the list(s) {', '.join(missing)}")
        try:
            text = json.dumps(result, default=_json_default)
        except (TypeError, ValueError) as exc:
            raise Failed(f"run_model's result is not JSON-serializable: {exc}") from None
        write_atomic(work_dir() / "raw-outputs.json", text)
        counts = ", ".join(f"{len(result[k])} {k}" for k in OUTPUT_KEYS)
        return f"{counts} in {seconds:.2f}s"

    def run_all(self) -> None:
        self.run("functions", "the four functions exist", self.t_functions)
        self.run("get_version", "get_version() is truthy", self.t_get_version, ("functions",))
        self.run(
            "get_inputs",
            "get_inputs() returns the two keys, as JSON",
            self.t_get_inputs,
            ("functions",),
        )
        self.run(
            "sections", "every section has at least one parameter", self.t_sections, ("get_inputs",)
        )
        self.run(
            "paramtools", "the defaults load in ParamTools", self.t_paramtools, ("get_inputs",)
        )
        self.run(
            "meta_grid",
            "get_inputs() for each meta-parameter combination",
            self.t_meta_grid,
            ("get_inputs",),
        )
        self.run(
            "meta_shapes",
            "both meta_param_dict shapes give the same inputs",
            self.t_meta_shapes,
            ("get_inputs",),
        )
        self.run(
            "ok_adjustment",
            "the ok adjustment validates cleanly",
            self.t_ok_adjustment,
            ("get_inputs",),
        )
        self.run(
            "bad_adjustment",
            "the bad adjustment has errors in every section",
            self.t_bad_adjustment,
            ("get_inputs",),
        )
        if self.tests.get("skip_run_model"):
            self.skip("run_model", "run_model() on the ok adjustment returns outputs")
            return
        self.run(
            "run_model",
            "run_model() on the ok adjustment returns outputs",
            self.t_run_model,
            ("ok_adjustment",),
        )

    def skip(self, name: str, title: str) -> None:
        """A test the model's config skips (``tests.skip_run_model``)."""
        detail = "skipped by the model's config (tests.skip_run_model)"
        self.results.append(
            {
                "name": name,
                "title": title,
                "status": "skipped",
                "seconds": 0.0,
                "detail": detail,
                "warnings": [],
                "output": "",
            }
        )
        print(f"[skipped] {title}: {detail}", flush=True)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.rstrip().splitlines())


def _parameters(section: dict) -> list[str]:
    return [name for name in section if name != "schema"]


def _structure_problems(inputs: dict) -> list[str]:
    """What ParamTools would reject before loading: each parameter needs a title,
    a description, a type and a value."""
    problems = []
    places = [("meta_parameters", inputs["meta_parameters"]), *inputs["model_parameters"].items()]
    for where, section in places:
        for name in _parameters(section):
            spec = section[name]
            if not isinstance(spec, dict):
                problems.append(f"{where}.{name} must be an object")
                continue
            lacking = [k for k in ("title", "description", "type", "value") if k not in spec]
            if lacking:
                problems.append(f"{where}.{name} lacks {', '.join(lacking)}")
    return problems


def _paramtools_load(defaults: dict):
    import paramtools

    class Section(paramtools.Parameters):
        pass

    Section.defaults = defaults
    return Section()


def _first_value(spec: dict):
    value = spec.get("value")
    if isinstance(value, list) and value and isinstance(value[0], dict) and "value" in value[0]:
        return value[0]["value"]
    return value


def _default_meta(meta_parameters: dict) -> dict:
    return {
        name: _first_value(spec)
        for name, spec in meta_parameters.items()
        if name != "schema" and isinstance(spec, dict)
    }


def meta_values(spec: dict) -> list:
    """The values worth trying for one meta parameter: its choices, every value of
    a small integer range, both booleans; otherwise only its default."""
    validators = spec.get("validators") or {}
    choices = (validators.get("choice") or {}).get("choices")
    if isinstance(choices, list) and choices:
        return list(choices)
    if spec.get("type") == "bool":
        return [True, False]
    bounds = validators.get("range") or {}
    low, high = bounds.get("min"), bounds.get("max")
    if (
        spec.get("type") == "int"
        and isinstance(low, int)
        and isinstance(high, int)
        and 0 <= high - low < MAX_RANGE_VALUES
    ):
        return list(range(low, high + 1))
    return [_first_value(spec)]


def meta_grid(meta_parameters: dict) -> list[dict]:
    names = [n for n in meta_parameters if n != "schema" and isinstance(meta_parameters[n], dict)]
    # One value per name (product over the same names). No zip(strict=): this runs
    # on the model's Python, which may predate 3.10.
    combinations = [
        dict(zip(names, values))  # noqa: B905
        for values in itertools.product(*(meta_values(meta_parameters[n]) for n in names))
    ]
    if len(combinations) > GRID_LIMIT:
        combinations = combinations[::3]
    return combinations


def command_test() -> int:
    out = work_dir()
    tests = json.loads((out / "tests.json").read_text())
    harness = Harness(tests)
    try:
        harness.run_all()
    finally:
        passed = all(r["status"] in PASSING for r in harness.results)
        write_atomic(
            out / "test-results.json",
            json.dumps(
                {"version": harness.version, "passed": passed, "tests": harness.results}, indent=1
            ),
        )
        if harness.defaults is not None and harness.version:
            write_atomic(
                out / "inputs-cache.json",
                json.dumps(
                    {"version": harness.version, "meta_param_dict": {}, "inputs": harness.defaults}
                ),
            )
    failed = [r["name"] for r in harness.results if r["status"] not in PASSING]
    print(
        f"{len(harness.results) - len(failed)} of {len(harness.results)} model-side tests passed"
        + (f"; not passed: {', '.join(failed)}" if failed else ""),
        flush=True,
    )
    return 0


def command_inputs(meta_json: str, out_file: str) -> int:
    module = importlib.import_module(step_env.MODEL_FUNCTIONS.get())
    meta = spec_form(json.loads(meta_json or "{}"))
    started = time.perf_counter()
    version = str(module.get_version())
    if meta:  # checked as a simulation's are, before the model sees them
        problems = model_step.meta_errors(module.get_inputs({})["meta_parameters"], meta)
        if problems:
            said = "; ".join(f"{name}: {' '.join(map(str, why))}" for name, why in problems.items())
            print(f"csflow: meta parameters: {said}", file=sys.stderr)
            return EXIT_BAD_META
    inputs = module.get_inputs(meta)
    seconds = round(time.perf_counter() - started, 3)
    write_atomic(
        Path(out_file),
        json.dumps(
            {
                "version": version,
                "meta_param_dict": flat_form(meta),
                "inputs": inputs,
                "seconds": seconds,
            }
        ),
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="csflow-contract-tests")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("test", help="run the contract tests with the work dir's tests.json")
    inputs = commands.add_parser(
        "inputs", help="get_version and get_inputs for some meta parameters"
    )
    inputs.add_argument("--meta", default="{}", help="meta parameters as JSON")
    inputs.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "test":
            return command_test()
        return command_inputs(args.meta, args.out)
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
