"""The platform side of a simulation: the ``outputs``, ``upload`` and ``notify`` steps.

These run in csflow's own environment (the csflow image on Argo), never in the
model's: storage and webapp credentials live only here.

- ``outputs``: validate the model's raw outputs against the schema, assign
  ids, serialize, zip, summarize into ``results/``;
- ``upload``: write ``results/`` to storage under ``OWNER/TITLE/JOB_ID/``,
  then tell the webapp (``SUCCESS``, with the model's version, ``run_model``'s
  time and where the zips are);
- ``notify``: the exit handler; reports every other end: invalid inputs to the
  webapp's inputs callback, failures (a crash, a deadline, a cancel, a lost pod)
  as ``FAIL``.

What each report holds, and why invalid inputs take the inputs callback, is
``sdk/dataplane/webapp.py``'s to say.

Environment (declared in ``runtime/step_env.py``): ``CSFLOW_WORK_DIR``
(``/tmp/csflow`` in a pod), ``CSFLOW_STORAGE_URL``, ``CSFLOW_WEBAPP_URL``
(optional) and the webapp token.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import uuid
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from csflow.runtime import step_env
from csflow.sdk.core.contract import ModelResult, RemoteResult, output_filenames
from csflow.sdk.core.errors import CsflowError
from csflow.sdk.core.fileutil import write_bytes_atomic, write_json_atomic
from csflow.sdk.core.status import RunStatus, classify, failure_reason
from csflow.sdk.dataplane.storage import (
    RESULT_FILES,
    Storage,
    bucket_key,
    open_storage,
    run_prefix,
)

if TYPE_CHECKING:
    import requests

    from csflow.sdk.dataplane.webapp import WebappClient

CATEGORIES = ("renderable", "downloadable")


class StepError(Exception):
    """A platform step failed for a reason worth one line."""


def work_dir() -> Path:
    path = Path(step_env.WORK_DIR.get())
    path.mkdir(parents=True, exist_ok=True)
    return path


def schema_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"outputs break the schema at {where or 'top level'}: {first['msg']}{more}"


def build_results(raw: Any) -> dict[str, bytes]:
    """Raw ``run_model`` output -> the files of ``results/``."""
    try:
        result = ModelResult.model_validate(raw)
    except ValidationError as exc:
        raise StepError(schema_error(exc)) from None
    serialized: dict[str, list[dict[str, Any]]] = {}
    remote: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    for category in CATEGORIES:
        outputs = getattr(result, category)
        for output in outputs:
            output.id = output.id or str(uuid.uuid4())
        filenames = output_filenames(outputs)
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
            for output, filename in zip(outputs, filenames, strict=True):
                zipped.writestr(filename, output.content())
        files[f"{category}.zip"] = archive.getvalue()
        serialized[category] = [o.model_dump(mode="json") for o in outputs]
        remote[category] = {
            "ziplocation": f"{category}.zip",
            "outputs": [
                {"id": o.id, "title": o.title, "media_type": o.media_type, "filename": f}
                for o, f in zip(outputs, filenames, strict=True)
            ],
        }
    RemoteResult.model_validate(remote)
    files["outputs.json"] = json.dumps(serialized).encode()
    files["remote.json"] = json.dumps(remote, indent=1).encode()
    return files


def step_outputs(args: argparse.Namespace) -> None:
    work = work_dir()
    raw_path = work / "raw-outputs.json"
    try:
        raw = json.loads(raw_path.read_text())
    except FileNotFoundError:
        raise StepError("the run step produced no outputs") from None
    except json.JSONDecodeError as exc:
        raise StepError(f"the run step's outputs are not JSON: {exc}") from None
    files = build_results(raw)
    for name, data in files.items():
        write_bytes_atomic(work / "results" / name, data)
    counts = {c: len(raw.get(c, [])) for c in CATEGORIES}
    print(
        f"outputs valid: {counts['renderable']} renderable, {counts['downloadable']} downloadable"
    )


def webapp_outputs(remote: dict[str, Any], storage: Storage, prefix: str) -> dict[str, Any]:
    """The remote result as the webapp reads it: each category's ``ziplocation``
    is where its zip was written, within the bucket (``remote.json`` keeps the
    names relative to the run's prefix); the outputs listed are the zip's files."""
    return {
        category: {**entry, "ziplocation": bucket_key(storage, f"{prefix}/{entry['ziplocation']}")}
        for category, entry in remote.items()
    }


def seconds(text: str) -> float | None:
    """The run step's ``task-time`` (empty from an older model image: unknown)."""
    try:
        return float(text) if text and not text.startswith("{{") else None
    except ValueError:
        return None


def store_results(storage: Storage, prefix: str, files: dict[str, bytes]) -> None:
    """A run's result files, written under its prefix (``RESULT_FILES``)."""
    for name in RESULT_FILES:
        content_type = "application/zip" if name.endswith(".zip") else "application/json"
        uri = storage.put(f"{prefix}/{name}", files[name], content_type)
        print(f"wrote {uri}")
    write_json_atomic(work_dir() / "results-uri.json", {"uri": storage.uri(prefix)})


def step_upload(args: argparse.Namespace) -> None:
    storage = open_storage(step_env.STORAGE_URL.require())
    prefix = run_prefix(args.owner, args.title, args.job_id)
    results = work_dir() / "results"
    store_results(storage, prefix, {name: (results / name).read_bytes() for name in RESULT_FILES})
    remote = json.loads((results / "remote.json").read_text())
    client = None if args.no_webapp else _webapp()
    if client is None:
        return
    task_seconds = seconds(args.task_time)
    if task_seconds is None:
        print("note: the run step did not say how long run_model took; reporting 0 s")
    reply = client.report_success(
        args.job_id, webapp_outputs(remote, storage, prefix), task_seconds, args.model_version
    )
    _accepted(client, RunStatus.SUCCESS, args.job_id, reply)


def step_combine(args: argparse.Namespace) -> None:
    """A sweep's fan-in: its points' results (those that have them) combined into
    the sweep's own, under the sweep's job id (``sdk/core/sweep.py``)."""
    from csflow.sdk.core import sweep
    from csflow.sdk.dataplane.storage import read_outputs

    try:
        points, labels = json.loads(args.points), json.loads(args.labels)
    except json.JSONDecodeError as exc:
        raise StepError(f"the sweep's points are not JSON: {exc}") from None
    if not isinstance(points, list) or not isinstance(labels, list) or len(points) != len(labels):
        raise StepError("the sweep's points and labels are not two lists of one length")
    storage = open_storage(step_env.STORAGE_URL.require())
    results: list[dict[str, Any] | None] = []
    for job_id in points:
        try:
            results.append(read_outputs(storage, args.owner, args.title, job_id))
        except CsflowError:  # a point that failed or was invalid stored nothing
            results.append(None)
    if not any(results):
        raise StepError(
            f"no point of the sweep has results (all {len(points)} failed or were invalid)"
        )
    files = build_results(sweep.combine_outputs(args.axis or "point", labels, results))
    store_results(storage, run_prefix(args.owner, args.title, args.job_id), files)
    print(f"combined {sum(1 for r in results if r)} of {len(points)} points")


def step_notify(args: argparse.Namespace) -> None:
    def load(text: str, empty: Any) -> Any:
        try:
            return json.loads(text) if text and not text.startswith("{{") else empty
        except json.JSONDecodeError:
            return empty

    errors_warnings = load(args.errors_warnings, {})
    status = classify(args.status, errors_warnings)
    reason = failure_reason(load(args.failures, []))
    if (
        status == RunStatus.FAIL and not reason
    ):  # e.g. a deleted pod or a deadline with no step failure
        reason = f"the workflow ended {args.status or 'without a status'}"
    print(f"job {args.job_id}: {status}{' - ' + reason if reason else ''}")
    if status == RunStatus.SUCCESS:  # upload already told the webapp of a success
        return
    client = _webapp()
    if client is None:
        return
    if status == RunStatus.INVALID:
        reply = client.report_invalid_inputs(args.job_id, errors_warnings)
    else:
        # A failure's model time does not reach the exit handler (a failed step's
        # outputs are not collected): nothing is billed for it.
        reply = client.report_failure(args.job_id, reason, task_seconds=0.0)
    _accepted(client, status, args.job_id, reply)


def _webapp() -> WebappClient | None:
    """The webapp's client, or None when no webapp is to be told."""
    if not step_env.WEBAPP_URL.get():
        return None
    from csflow.sdk.dataplane.webapp import WebappClient

    return WebappClient.from_env()


def _accepted(client: WebappClient, status: str, job_id: str, reply: requests.Response) -> None:
    print(f"webapp {client.url} accepted {status} for job {job_id} (HTTP {reply.status_code})")


STEPS = {
    "outputs": step_outputs,
    "upload": step_upload,
    "notify": step_notify,
    "combine": step_combine,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="csflow-step")
    parser.add_argument("step", choices=sorted(STEPS))
    parser.add_argument("--job-id", required=True)
    parser.add_argument("--owner", required=True)
    parser.add_argument("--title", required=True)
    parser.add_argument("--status", default="")
    parser.add_argument("--failures", default="")
    parser.add_argument("--errors-warnings", default="")
    parser.add_argument("--task-time", default="")  # upload: seconds run_model took
    parser.add_argument("--model-version", default="")  # upload: the model's get_version()
    parser.add_argument("--no-webapp", action="store_true")  # upload: a sweep's point
    parser.add_argument("--points", default="[]")  # combine: the points' job ids (JSON)
    parser.add_argument("--labels", default="[]")  # combine: their labels (JSON)
    parser.add_argument("--axis", default="")  # combine: the swept parameter's name
    args = parser.parse_args(argv)
    try:
        STEPS[args.step](args)
    except (StepError, CsflowError) as exc:  # storage or webapp failures: one line, no traceback
        print(f"csflow: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
