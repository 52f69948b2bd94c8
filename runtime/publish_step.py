"""The platform side of publishing: the ``clone``, ``verify``, ``push`` and
``deploy`` steps of the publish flow (``flows/publish.py``).

These run in csflow's own environment (the csflow image on Argo), never in the
model's: the model registry, the inputs cache and the webapp token live only
here. The model's code runs only in the ``test`` step
(``runtime/contract_tests.py``) and in its own build.

- ``clone``: source at the config's ref (or the local path) -> build context,
  lock, content tag, image name; says whether that version is already built;
- ``verify``: checks ``run_model``'s outputs against csflow's schema, adds
  that to the model-side results, prints every test's result and fails the
  flow if any test failed;
- ``push``: records the version (build record and test summary) in the
  registry and moves ``staging`` to it; tells the webapp;
- ``deploy``: stores the default inputs in the inputs cache, moves ``latest``
  and tells the webapp.

Environment (declared in ``runtime/step_env.py``): ``CSFLOW_WORK_DIR``
(``/tmp/csflow`` in a pod), ``CSFLOW_HOME``,
``CSFLOW_BUILDER`` (``uv`` in the embedded engine, where a version is built
when its environment exists; otherwise a version is built once the registry
knows its image), ``CSFLOW_MODEL_REGISTRY_URL`` (where the registry and inputs
cache live outside the embedded engine: ``gs://BUCKET/PREFIX`` on a cluster,
whose pods share no files; the embedded engine keeps them under
``CSFLOW_HOME``), ``CSFLOW_WEBAPP_URL`` (optional) and the webapp token.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from csflow.runtime import step_env
from csflow.runtime.contract_tests import PASSING
from csflow.sdk.core.errors import CsflowError

if TYPE_CHECKING:
    from csflow.sdk.registry.local import Registry

REPORT = "test-report.json"


class StepError(Exception):
    """A publish step failed for a reason worth one line."""


def work_dir() -> Path:
    path = Path(step_env.WORK_DIR.get())
    path.mkdir(parents=True, exist_ok=True)
    return path


def home() -> Path:
    from csflow.sdk.core.settings import default_home

    return default_home()


def local_builds() -> bool:
    return step_env.BUILDER.get() == "uv"


def registry_url() -> str:
    """Where the registry and the inputs cache are: under ``CSFLOW_HOME`` in the
    embedded engine; ``CSFLOW_MODEL_REGISTRY_URL`` anywhere else. A pod's own
    files vanish with it, so the steps refuse to use them (clone too: better
    than a build whose push has nowhere to go)."""
    if local_builds():
        return ""
    from csflow.sdk.core.settings import Settings

    url = Settings().model_registry_url
    if not url:
        raise StepError(
            "no shared model registry: set CSFLOW_MODEL_REGISTRY_URL=gs://BUCKET/PREFIX "
            "(the csflow-platform ConfigMap); this pod's CSFLOW_HOME vanishes with it"
        )
    return url


def model_registry() -> Registry:
    from csflow.sdk.registry.local import open_registry

    return open_registry(registry_url(), home())


def inputs_cache():
    from csflow.sdk.registry.local import open_inputs_cache

    return open_inputs_cache(registry_url(), home())


def _write(name: str, text: str) -> None:
    from csflow.sdk.core.fileutil import write_text_atomic

    write_text_atomic(work_dir() / name, text)


# -- clone ----------------------------------------------------------------------


def load_config(raw: str, owner: str, title: str, config_dir: str):
    from csflow.sdk.core.model_config import ModelConfig

    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StepError(f"the config parameter is not JSON: {exc}") from None
    config_path = Path(config_dir) / f"{title}.yaml" if config_dir else None
    try:
        config = ModelConfig.model_validate({**data, "config_path": config_path})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise StepError(f"config: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    if (config.owner, config.title) != (owner, title):
        raise StepError(f"the config is for {config.name}, not {owner}/{title}")
    if config.source.path is not None and not config_dir:
        raise StepError(
            f"{config.name}: source.path is a local folder; a cluster publishes from source.git"
        )
    return config


def step_clone(args: argparse.Namespace) -> None:
    from csflow.sdk.builds.environments import is_built, plan_build, write_build_context
    from csflow.sdk.core.names import model_image
    from csflow.sdk.registry.local import version_dir

    config = load_config(args.config, args.owner, args.title, args.config_dir)
    # Before the lock, so a missing one fails fast; none when the builds stay local.
    registry = None if local_builds() else model_registry()
    work = work_dir()
    with plan_build(config, home() / "cache", progress=print) as plan:
        write_build_context(plan, work / "context")
    image = model_image(args.registry, config.owner, config.title, plan.tag)
    if registry is None:
        built = is_built(version_dir(home(), config.owner, config.title, plan.tag))
    else:
        known = registry.document(config.owner, config.title)["versions"].get(plan.tag, {})
        built = known.get("image") == image
    info = {**plan.info, "image": image}
    _write("build-info.json", json.dumps(info, indent=1, sort_keys=True))
    _write("tests.json", json.dumps(config.tests.model_dump(mode="json")))
    _write("content-tag", plan.tag)
    _write("image", image)
    _write("built", "true" if built else "false")
    origin = info["origin"]
    where = (
        origin.get("git")
        and f"{origin['git']}@{origin.get('commit') or origin['ref']}"
        or origin.get("path")
    )
    print(
        f"{config.name}: content tag {plan.tag} "
        f"({info['requirements']} locked packages) from {where}"
    )
    print(f"image {image}: {'already built, the build is skipped' if built else 'to build'}")


# -- verify -----------------------------------------------------------------------


def outputs_check(raw_path: Path, model_output: str = "") -> dict[str, Any]:
    """The platform-side test: run_model's outputs against csflow's schema, as the
    simulate flow's ``outputs`` step will check them (and zip them)."""
    from csflow.runtime.platform_step import StepError as OutputsError
    from csflow.runtime.platform_step import build_results

    result = _outputs_schema_result("failed")
    started = time.perf_counter()
    try:
        raw = json.loads(raw_path.read_text())
        files = build_results(raw)
        counts = {c: len(raw.get(c, [])) for c in ("renderable", "downloadable")}
        size = sum(len(data) for data in files.values())
        result["status"] = "passed"
        result["detail"] = (
            f"{counts['renderable']} renderable, {counts['downloadable']} downloadable; "
            f"{size:,} bytes of results"
        )
    except OutputsError as exc:
        result["detail"] = str(exc)
        printed = f"{model_output.rstrip()}\n" if model_output.strip() else ""
        result["output"] = f"{printed}run_model returned: {_outputs_excerpt(raw_path)}"
    except (OSError, json.JSONDecodeError) as exc:
        result["detail"] = f"cannot read run_model's outputs: {exc}"
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def _outputs_schema_result(status: str, detail: str = "") -> dict[str, Any]:
    """The platform-side test's entry in the report, as the model-side tests' are."""
    return {
        "name": "outputs_schema",
        "title": "run_model()'s outputs pass the schema",
        "status": status,
        "seconds": 0.0,
        "detail": detail,
        "warnings": [],
        "output": "",
    }


def _outputs_excerpt(raw_path: Path, limit: int = 2000) -> str:
    """The start of what the model returned, so its author sees what broke."""
    text = raw_path.read_text(errors="replace")
    return text[:limit] + (f"... ({len(text):,} characters)" if len(text) > limit else "")


def summarize(tests: list[dict[str, Any]]) -> dict[str, int]:
    counts = {"passed": 0, "skipped": 0, "failed": 0, "not run": 0}
    for test in tests:
        counts[test["status"]] = counts.get(test["status"], 0) + 1
    return {**counts, "total": len(tests)}


def format_report(report: dict[str, Any]) -> str:
    """Every test's result, as plain text for the step's log."""
    lines = []
    width = max((len(t["title"]) for t in report["tests"]), default=10)
    for test in report["tests"]:
        lines.append(
            f"{test['status'].upper():8} {test['title']:{width}}  "
            f"{test['seconds']:7.2f}s  {test['detail']}"
        )
        for warning in test.get("warnings", []):
            lines.append(f"{'':8} warning: {warning}")
        if test["status"] == "failed" and test.get("output"):
            lines.append("         model output:")
            lines.extend("           " + line for line in test["output"].rstrip().splitlines())
    counts = report["summary"]
    lines.append(
        f"{counts['passed']} of {counts['total']} contract tests passed"
        + (f", {counts['skipped']} skipped" if counts["skipped"] else "")
        + ("" if report["passed"] else f"; {counts['failed']} failed, {counts['not run']} not run")
    )
    return "\n".join(lines)


def step_verify(args: argparse.Namespace) -> None:
    work = work_dir()
    try:
        results = json.loads((work / "test-results.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise StepError(f"the test step left no results: {exc}") from None
    tests = list(results["tests"])
    ran_model = next(
        (t for t in tests if t["name"] == "run_model" and t["status"] == "passed"), None
    )
    raw = work / "raw-outputs.json"
    skipped = any(t["name"] == "run_model" and t["status"] == "skipped" for t in tests)
    if ran_model and raw.is_file():
        tests.append(outputs_check(raw, ran_model.pop("output", "")))
    elif skipped:
        detail = "run_model is skipped by the model's config (tests.skip_run_model)"
        tests.append(_outputs_schema_result("skipped", detail))
    else:
        tests.append(_outputs_schema_result("not run", "needs run_model"))
    passed = all(t["status"] in PASSING for t in tests)
    report = {
        "model": f"{args.owner}/{args.title}",
        "version": results.get("version", ""),
        "passed": passed,
        "tests": tests,
        "summary": summarize(tests),
    }
    _write(REPORT, json.dumps(report, indent=1))
    print(format_report(report))
    if not passed:
        failed = [t["name"] for t in tests if t["status"] == "failed"]
        raise StepError(
            f"{len(failed)} of {len(tests)} contract tests failed: {', '.join(failed)}; "
            "nothing was promoted"
        )


# -- push and deploy ------------------------------------------------------------------


def _tell_webapp(owner: str, title: str, body: dict[str, Any]) -> None:
    """The webapp keeps each project's tags (C/S: ``/publish/api/O/T/deployments/``).
    PUT, not C/S's POST: setting a tag is idempotent, so a retry is harmless."""
    if not step_env.WEBAPP_URL.get():
        return
    from csflow.sdk.dataplane.webapp import WebappClient

    client = WebappClient.from_env()
    reply = client.put(f"/publish/api/{owner}/{title}/deployments/", body)
    print(f"webapp {client.url} accepted {body} (HTTP {reply.status_code})")


def step_push(args: argparse.Namespace) -> None:
    from csflow.sdk.registry.local import version_dir

    work = work_dir()
    info = json.loads((work / "build-info.json").read_text())
    report = json.loads((work / REPORT).read_text())
    if info["tag"] != args.tag or (info["owner"], info["title"]) != (args.owner, args.title):
        raise StepError(
            f"build info is for {info['owner']}/{info['title']}:{info['tag']}, "
            f"not {args.owner}/{args.title}:{args.tag}"
        )
    if not report.get("passed"):
        raise StepError("the contract tests did not pass; nothing is pushed")
    record = dict(info)
    if local_builds():
        environment = version_dir(home(), args.owner, args.title, args.tag) / "version.json"
        if not environment.is_file():
            raise StepError(f"no built environment for {args.owner}/{args.title}:{args.tag}")
        record.update(json.loads(environment.read_text()))
    record.update(
        {
            "image": args.image,
            "model_version": report.get("version", ""),
            "tests": report["summary"],
            "skipped_tests": [
                t["name"] for t in report.get("tests", []) if t["status"] == "skipped"
            ],
            "pushed": time.time(),
            "publish_run": args.run,
        }
    )
    registry = model_registry()
    registry.record_version(record)
    previous = registry.move_tag(
        args.owner, args.title, "staging", args.tag, action="push", run=args.run
    )
    print(
        f"{args.owner}/{args.title}: version {args.tag} recorded ({args.image}); "
        f"staging {previous or '(none)'} -> {args.tag}"
    )
    _tell_webapp(args.owner, args.title, {"staging_tag": args.tag})


def step_deploy(args: argparse.Namespace) -> None:
    registry = model_registry()
    entry_path = work_dir() / "inputs-cache.json"
    if entry_path.is_file():
        entry = json.loads(entry_path.read_text())
        path = inputs_cache().put(args.owner, args.title, args.tag, entry)
        print(f"inputs cache: {path}")
    else:
        print(
            "inputs cache: the test step left no default inputs; "
            "`csflow models inputs` will compute them"
        )
    # Last, and alone: the one write that changes what simulations run.
    previous = registry.move_tag(
        args.owner, args.title, "latest", args.tag, action="deploy", run=args.run
    )
    print(f"{args.owner}/{args.title}: latest {previous or '(none)'} -> {args.tag}")
    _tell_webapp(args.owner, args.title, {"latest_tag": args.tag})


STEPS = {"clone": step_clone, "verify": step_verify, "push": step_push, "deploy": step_deploy}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="csflow-publish-step")
    parser.add_argument("step", choices=sorted(STEPS))
    parser.add_argument("--owner", required=True)
    parser.add_argument("--title", required=True)
    parser.add_argument("--config", default="")
    parser.add_argument("--config-dir", default="")
    parser.add_argument("--registry", default="")
    parser.add_argument("--tag", default="")
    parser.add_argument("--image", default="")
    parser.add_argument("--run", default="")
    args = parser.parse_args(argv)
    try:
        STEPS[args.step](args)
    except (StepError, CsflowError) as exc:
        print(f"csflow: {exc}", file=sys.stderr)
        return 1
    finally:
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
