"""The model side of a simulation: the ``inputs`` and ``run`` steps.

This file runs inside the model's own environment (its image on Argo, its uv
environment in the embedded engine), next to code csflow does not control. It
uses the standard library only, so it needs nothing from csflow's environment,
and it sees nothing but the model's secrets and its own job key.

Environment (declared in ``step_env.py``, the sibling file that travels with
this one):
- ``CSFLOW_MODEL_FUNCTIONS``: the functions module (``cs_config.functions``);
- ``CSFLOW_JOB_STORE_URL``: where the job's inputs are, ``file:///dir`` or
  ``redis://host:port/db`` (with ``CSFLOW_REDIS_USER``/``CSFLOW_REDIS_PASSWORD``,
  the model's read-only ACL user);
- ``CSFLOW_WORK_DIR``: where step files go (``/tmp/csflow`` in a pod).

Each step writes its results as files in the work dir; the flow declares them
as output parameters and artifacts (``run``: ``raw-outputs.json``, and
``task-time``, the seconds ``run_model`` took, which the webapp is told).
"""

from __future__ import annotations

import argparse
import base64
import datetime
import importlib
import json
import os
import reprlib
import sys
import time
import traceback
from pathlib import Path
from urllib.parse import unquote, urlparse

try:  # csflow.runtime.model_step (tests)
    from . import step_env
except ImportError:  # a copy run as a script, or imported by the warm worker
    import step_env  # type: ignore[no-redef]

EXIT_OK, EXIT_MODEL_ERROR, EXIT_BAD_JOB = 0, 1, 3


class JobError(Exception):
    """The job's inputs are missing, expired or unreadable."""


def work_dir() -> Path:
    path = Path(step_env.WORK_DIR.get())
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_atomic(path: Path, data: str | bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_job(job_id: str) -> dict:
    url = step_env.JOB_STORE_URL.get()
    parsed = urlparse(url)
    key = f"job-{job_id}"
    raw: str | bytes | None
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path)) / f"{key}.json"
        try:
            raw = path.read_text()
        except FileNotFoundError as exc:
            raise JobError(
                f"job {job_id} not found in the job store (expired or never written)"
            ) from exc
    elif parsed.scheme in ("redis", "rediss"):
        import redis  # installed in model images for this purpose only

        user = step_env.REDIS_USER.get() or None
        try:
            client = redis.Redis.from_url(
                url,
                username=user,
                password=step_env.REDIS_PASSWORD.get() or None,
                socket_timeout=30,
                socket_connect_timeout=30,
            )
            raw = client.get(key)  # the model user may only GET job-*; an expired key is gone
        except redis.AuthenticationError as exc:
            raise JobError(
                f"the job store refused user {user!r}: wrong password, or the user is disabled"
            ) from exc
        except redis.RedisError as exc:
            raise JobError(
                f"cannot read job {job_id} from the job store as user {user!r}: {exc}"
            ) from exc
        if raw is None:
            raise JobError(f"job {job_id} not found in the job store (expired or never written)")
    else:
        raise JobError(f"unsupported job store {url!r}")
    job = json.loads(raw)
    if job.get("expires", float("inf")) < time.time():
        raise JobError(f"job {job_id} has expired")
    return job.get("inputs", job)


def functions():
    return importlib.import_module(step_env.MODEL_FUNCTIONS.get())


def meta_errors(meta_parameters: dict, meta_param_dict: dict) -> dict:
    """Check meta parameters against the model's own ParamTools spec, as the C/S
    webapp did before calling the model (real models crash on bad years)."""
    try:
        import paramtools
    except ImportError:  # a model without ParamTools: its declarations, checked here
        return _meta_errors_by_hand(meta_parameters, meta_param_dict)

    class Meta(paramtools.Parameters):
        defaults = meta_parameters

    meta = Meta()
    meta.adjust(meta_param_dict, raise_errors=False)
    return dict(meta.errors)


# ParamTools' types, and what each one accepts (JSON values: no conversion, since a
# model without ParamTools gets the value as it is).
_TYPES = {
    "int": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "float": ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "str": ("text", lambda v: isinstance(v, str)),
    "date": ("a date, YYYY-MM-DD", lambda v: _date(v) is not None),
}


def _date(value):
    if not isinstance(value, str):
        return None
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        return None


def _shown(value) -> str:
    """A user's value in a message, bounded (a long string is not echoed whole)."""
    short = reprlib.Repr()
    short.maxstring = short.maxother = short.maxlong = 60
    short.maxlist = short.maxdict = 4
    return short.repr(value)


def _meta_values(given) -> list:
    """The values in ``[{"value": v, ...labels}]`` (the form ``JobInputs`` hands over)."""
    if not isinstance(given, list):
        return [given]
    return [item["value"] if isinstance(item, dict) and "value" in item else item for item in given]


def _default_value(spec: dict):
    value = spec.get("value")
    if isinstance(value, list) and value and isinstance(value[0], dict) and "value" in value[0]:
        return value[0]["value"]
    return value


def _leaves(value, dims: int) -> list | None:
    """The scalars of a value with ``number_dims`` dimensions (None: the wrong shape)."""
    if dims <= 0:
        return None if isinstance(value, (list, dict)) else [value]
    if not isinstance(value, list):
        return None
    leaves = []
    for item in value:
        inner = _leaves(item, dims - 1)
        if inner is None:
            return None
        leaves.extend(inner)
    return leaves


def _meta_errors_by_hand(meta_parameters: dict, meta_param_dict: dict) -> dict:
    """What ParamTools would refuse, for a model that does not install it: unknown
    names, values not of the declared ``type`` (int, float, bool, str, date; other
    types are the model's business), and values outside the ``range``,
    ``date_range`` or ``choice`` validators declared at level ``error`` (the
    default; ``warn`` is not an error). A bound may name another meta parameter
    (its value as given, else its default) or be ``"default"``."""
    specs = {n: s for n, s in meta_parameters.items() if n != "schema" and isinstance(s, dict)}
    errors: dict[str, list[str]] = {}
    for name in sorted(set(meta_param_dict) - set(meta_parameters) - {"schema"}):
        errors[name] = ["unknown meta parameter"]
    given = {n: _meta_values(v) for n, v in meta_param_dict.items() if n in specs}
    current = {n: _default_value(s) for n, s in specs.items()}
    current.update({n: values[0] for n, values in given.items() if values})
    for name, values in given.items():
        problems = []
        for value in values:
            problems.extend(_meta_value_errors(name, value, specs[name], current))
        if problems:
            errors[name] = problems
    return errors


def _meta_value_errors(name: str, value, spec: dict, current: dict) -> list[str]:
    kind = spec.get("type")
    if kind not in _TYPES:  # a type ParamTools does not declare: the model's business
        return []
    word, accepts = _TYPES[kind]
    dims = spec.get("number_dims") or 0
    leaves = _leaves(value, dims if isinstance(dims, int) else 0)
    if leaves is None:
        shape = f"a list of {dims} dimension(s)" if dims else "a single value"
        return [f"{name}: {_shown(value)} is not {shape}"]
    bad = [v for v in leaves if not accepts(v)]
    if bad:
        return [f"{name}: {_shown(bad[0])} is not {word} (type {kind})"]
    problems: list[str] = []
    validators = spec.get("validators")
    for rule_name, rule in (validators if isinstance(validators, dict) else {}).items():
        if not isinstance(rule, dict) or rule.get("level", "error") != "error":
            continue
        for leaf in leaves:
            if rule_name in ("range", "date_range"):
                dates = kind == "date" or rule_name == "date_range"
                problems.extend(_range_errors(name, leaf, rule, spec, current, dates))
            elif rule_name == "choice":
                choices = rule.get("choices")
                if isinstance(choices, list) and leaf not in choices:
                    problems.append(f"{name} {_shown(leaf)} must be one of {_shown(choices)}")
    return problems


def _range_errors(name: str, value, rule: dict, spec: dict, current: dict, dates: bool) -> list:
    problems = []
    for bound, word, outside in (
        ("min", "<", lambda v, b: v < b),
        ("max", ">", lambda v, b: v > b),
    ):
        raw = rule.get(bound)
        if raw == "default":
            raw = _default_value(spec)
        elif isinstance(raw, str) and raw in current:
            raw = current[raw]  # another meta parameter's value
        v, limit = (_date(value), _date(raw)) if dates else (value, raw)
        comparable = (
            v is not None and limit is not None
            if dates
            else all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (v, limit))
        )
        if comparable and outside(v, limit):
            problems.append(f"{name} {_shown(value)} {word} {bound} {_shown(raw)}")
    return problems


def step_inputs(job_id: str) -> int:
    out = work_dir()
    job = load_job(job_id)
    meta, adjustment = job.get("meta_param_dict", {}), job.get("adjustment", {})
    model = functions()
    write_atomic(out / "model-version", str(model.get_version()))
    spec = model.get_inputs({})
    sections = list(spec["model_parameters"])
    errors_warnings: dict[str, dict[str, dict]] = {
        name: {"errors": {}, "warnings": {}} for name in sections
    }
    api_errors = {}
    bad_meta = meta_errors(spec["meta_parameters"], meta)
    if bad_meta:
        api_errors.update({f"meta_parameters.{k}": v for k, v in bad_meta.items()})
    unknown = sorted(set(adjustment) - set(sections))
    if unknown:
        api_errors["extra_keys"] = [f"unknown section(s): {', '.join(unknown)}"]
    if not api_errors:
        result = model.validate_inputs(meta, adjustment, errors_warnings)
        errors_warnings = result["errors_warnings"]
        if "custom_adjustment" in result:
            write_atomic(out / "custom-adjustment.json", json.dumps(result["custom_adjustment"]))
    else:
        errors_warnings["API"] = {"errors": api_errors, "warnings": {}}
    valid = not any(section.get("errors") for section in errors_warnings.values())
    write_atomic(out / "errors-warnings", json.dumps(errors_warnings))
    write_atomic(out / "valid", "true" if valid else "false")
    print(f"inputs {'valid' if valid else 'INVALID'} for job {job_id}")
    return EXIT_OK


def _json_default(value):
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def step_run(job_id: str) -> int:
    """Call ``run_model`` and write its outputs, and ``task-time``: the seconds
    ``run_model`` took (wall time, as C/S timed it and billed on: the model's own
    time, not the step's or the pod's)."""
    out = work_dir()
    job = load_job(job_id)
    model = functions()
    write_atomic(out / "model-version", str(model.get_version()))
    started = time.monotonic()
    result = model.run_model(job.get("meta_param_dict", {}), job.get("adjustment", {}))
    seconds = time.monotonic() - started
    write_atomic(out / "raw-outputs.json", json.dumps(result, default=_json_default))
    write_atomic(out / "task-time", f"{seconds:.3f}")
    print(f"run_model finished for job {job_id} in {seconds:.3f}s")
    return EXIT_OK


STEPS = {"inputs": step_inputs, "run": step_run}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="csflow-model-step")
    parser.add_argument("step", choices=sorted(STEPS))
    parser.add_argument("--job-id", required=True)
    args = parser.parse_args(argv)
    try:
        return STEPS[args.step](args.job_id)
    except JobError as exc:
        print(f"csflow: {exc}", file=sys.stderr)
        return EXIT_BAD_JOB
    except BaseException:  # the model's own failure: keep its traceback in the log
        traceback.print_exc()
        return EXIT_MODEL_ERROR
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
