"""``Client``: the one API under the CLI and the webapp.

    from csflow.sdk import Client
    client = Client()                       # settings from CSFLOW_* and the config file
    run = client.simulate(
        "PSLmodels/Tax-Cruncher", {"meta_param_dict": {"year": 2024}, "adjustment": {...}}
    )
    client.wait(run.id); client.results(run.id)

The backend (``local`` by default: the embedded engine) comes from settings; every
call is the backend's (``sdk/backends/base.py``: the ``Backend`` contract), which
refuses in one line what it cannot do. A call about an existing run goes to the
backend that holds it: the configured one, else the other one set up (the embedded
engine; Argo when ``CSFLOW_ARGO_HOST`` is set), as ``sdk/backends/lookup.py`` finds
it; ``Client(look_elsewhere=False)`` asks the configured backend only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from csflow.sdk.backends.base import Backend, open_backend
from csflow.sdk.backends.lookup import RunLookup
from csflow.sdk.core import jsonio
from csflow.sdk.core.contract import InputsError, JobInputs
from csflow.sdk.core.errors import BadInput, CsflowError, NotFound
from csflow.sdk.core.run import Run
from csflow.sdk.core.settings import Settings
from csflow.sdk.core.status import RunStatus
from csflow.sdk.core.sweep import PointState, parse_axis, point_states
from csflow.sdk.views.diff import NoResults, RunDiff, diff_runs

_MAX_INPUTS_BYTES: int = Settings.model_fields["max_inputs_bytes"].default


def parse_inputs(data: Any, max_bytes: int | None = None, what: str = "inputs") -> JobInputs:
    """A simulation's inputs, given as a dict, as JSON text (``str`` or ``bytes``) or
    as ``JobInputs``: strict JSON at most ``max_bytes`` long (``sdk/core/jsonio.py``;
    default: the setting's default), then the contract's shape. One-line
    ``BadInput`` otherwise (``what`` names the inputs), before anything is stored."""
    limit = max_bytes or _MAX_INPUTS_BYTES
    if isinstance(data, JobInputs):
        data = data.model_dump()
    if isinstance(data, (str, bytes, bytearray)):
        data = jsonio.loads(data, what, limit)
    else:
        jsonio.check_value(data, what, limit)
    try:
        return JobInputs.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where, message = list(first["loc"]), first["msg"]
        error = first.get("ctx", {}).get("error")
        if isinstance(error, InputsError):
            where, message = [*where, *error.where], error.problem
        raise BadInput(f"{what}: {jsonio.location(where)}: {message}") from None


class Client:
    def __init__(
        self, settings: Settings | None = None, *, look_elsewhere: bool = True, **overrides: Any
    ):
        self.settings = settings or Settings(**overrides)
        self.backend: Backend = open_backend(self.settings)
        self.runs = RunLookup(self.settings, self.backend, elsewhere=look_elsewhere)

    def _on(self, job_id: str) -> Backend:
        """The backend that holds run ``job_id`` (``RunLookup``)."""
        return self.runs.holder(job_id)

    def _started(self, run: Run) -> Run:
        self.runs.remember(run.id, self.backend)
        return run

    def submit(
        self,
        model: str,
        inputs: Any,
        tag: str | None = None,
        progress=lambda _: None,
        warm_up: bool = False,
        no_cache: bool = False,
    ) -> Run:
        """Record the job and return at once (the run has not started), unless the
        result cache has its results (``no_cache``: run anyway): then the run is
        already ``SUCCESS`` and ``run.cached_from`` names the run they came from."""
        return self._started(
            self.backend.submit(
                model,
                parse_inputs(inputs, self.settings.max_inputs_bytes),
                tag=tag,
                progress=progress,
                warm_up=warm_up,
                no_cache=no_cache,
            )
        )

    def simulate(
        self,
        model: str,
        inputs: Any,
        tag: str | None = None,
        detach: bool = False,
        progress=lambda _: None,
        events=None,
        no_cache: bool = False,
    ) -> Run:
        run = self.submit(
            model, inputs, tag=tag, progress=progress, warm_up=not detach, no_cache=no_cache
        )
        return self._go(run, detach, events)

    def sweep(
        self,
        model: str,
        inputs: Any,
        sweep: str,
        tag: str | None = None,
        detach: bool = False,
        progress=lambda _: None,
        events=None,
    ) -> Run:
        """One simulation per point of ``sweep`` (``year=2025..2034`` or
        ``SECTION.PARAM=V1,V2``) as one run; its results are the points' combined
        (``sdk/core/sweep.py``), its points' states ``sweep_points(run)``."""
        run = self.backend.submit_sweep(
            model,
            parse_inputs(inputs, self.settings.max_inputs_bytes),
            parse_axis(sweep, self.settings.max_sweep_points),
            tag=tag,
            progress=progress,
            warm_up=not detach,
        )
        return self._go(self._started(run), detach, events)

    def render_sweep(
        self, model: str, inputs: Any, sweep: str, tag: str | None = None
    ) -> dict[str, Any]:
        """The Workflow a sweep would submit (``--dry-run``)."""
        return self.backend.render_sweep(
            model,
            parse_inputs(inputs, self.settings.max_inputs_bytes),
            parse_axis(sweep, self.settings.max_sweep_points),
            tag=tag,
        )

    @staticmethod
    def sweep_points(run: Run) -> list[PointState]:
        """Each point of a sweep run: done / running / queued / invalid / failed (why)."""
        points = (run.extra.get("sweep") or {}).get("points") or []
        return point_states(points, run.steps)

    def _go(self, run: Run, detach: bool, events) -> Run:
        """Run a submitted run here until it ends (or waits for approval), or let it go on."""
        if run.done:  # a cache hit: nothing to run
            return run
        backend = self._on(run.id)
        if detach:
            backend.detach(run.id)
            return backend.status(run.id)
        return backend.execute(run.id, events=events)

    def render(self, model: str, inputs: Any, tag: str | None = None) -> dict[str, Any]:
        """The Workflow a simulation would submit (``--dry-run``)."""
        return self.backend.render(
            model, parse_inputs(inputs, self.settings.max_inputs_bytes), tag=tag
        )

    def status(self, job_id: str) -> Run:
        return self._on(job_id).status(job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> Run:
        return self._on(job_id).wait(job_id, timeout=timeout)

    def logs(self, job_id: str, step: str | None = None) -> str:
        return self._on(job_id).logs(job_id, step)

    def results(self, job_id: str) -> dict[str, Any]:
        return self._on(job_id).results(job_id)

    def run_inputs(self, job_id: str) -> dict[str, Any]:
        """The inputs a simulation was submitted with, while the job store keeps them."""
        return self._on(job_id).run_inputs(job_id)

    def diff(self, a: str, b: str) -> RunDiff:
        """Two simulations compared: their inputs, and their tables when both succeeded
        (``sdk/views/diff.py``)."""
        return diff_runs(*self._diff_side(a), *self._diff_side(b))

    def _diff_side(self, job_id: str) -> tuple[Run, dict[str, Any], dict[str, Any] | NoResults]:
        backend = self._on(job_id)
        run = backend.status(job_id)
        inputs = backend.run_inputs(run.id)
        try:
            outputs: dict[str, Any] | NoResults = backend.results(run.id)
        except BadInput as exc:
            if run.status == RunStatus.SUCCESS:  # a success's results must be readable
                raise
            outputs = NoResults(str(exc))  # the backend's "run X has no results: it is FAIL"
        return run, inputs, outputs

    def page(self, job_id: str) -> str:
        """A run's results page, one self-contained HTML file (``sdk/views/page.py``):
        its record, its inputs (or a note when the job store no longer has them)
        and, for a ``SUCCESS`` run, its outputs."""
        from csflow.sdk.views.page import run_page

        run = self.status(job_id)
        inputs, note = None, ""
        try:
            inputs = self.run_inputs(run.id)
        except NotFound as exc:  # expired: the page says so, and still shows the run
            note = f"The job store no longer has this run's inputs ({exc})."
        except CsflowError as exc:  # a publish run, a job store that cannot be read
            note = f"No inputs to show: {exc}."
        outputs = self.results(run.id) if run.status == RunStatus.SUCCESS else None
        return run_page(run, inputs, outputs, inputs_note=note)

    def download(self, job_id: str, out: Path) -> list[Path]:
        return self._on(job_id).download(job_id, out)

    def cancel(self, job_id: str) -> Run:
        return self._on(job_id).cancel(job_id)

    # -- publishing and the model registry ------------------------------------------

    def publish(
        self, config: str | Path, require_approval: bool = False, detach: bool = False, events=None
    ) -> Run:
        """Publish a model from its config (``config/OWNER/TITLE.yaml``): build, test,
        push to ``staging``, then (after approval, if asked) deploy to ``latest``."""
        run = self.backend.submit_publish(config, require_approval=require_approval)
        return self._go(self._started(run), detach, events)

    def approve(self, run_id: str, detach: bool = False, events=None) -> Run:
        """Approve a publish waiting at its approval step, and let it deploy."""
        return self._go(self._on(run_id).approve(run_id), detach, events)

    def publish_report(self, run_id: str) -> dict[str, Any] | None:
        """A publish's contract-test results (None if the tests never ran)."""
        return self._on(run_id).publish_report(run_id)

    def models(self) -> list[dict[str, Any]]:
        return self.backend.models()

    def model(self, model: str) -> dict[str, Any]:
        """A model's versions (build records, test summaries), tags and tag history."""
        return self.backend.model(*_model_name(model))

    def inputs(
        self, model: str, meta_param_dict: dict[str, Any] | None = None, tag: str | None = None
    ) -> dict[str, Any]:
        """``get_version`` and ``get_inputs`` of a model version (default: latest),
        from the inputs cache for the default meta parameters."""
        if meta_param_dict:  # the rules of a simulation's meta parameters
            parse_inputs({"meta_param_dict": meta_param_dict}, self.settings.max_inputs_bytes)
        return self.backend.model_inputs(*_model_name(model), meta_param_dict, tag=tag)

    def promote(self, model: str, tag: str, to: str = "latest") -> dict[str, Any]:
        """Point ``to`` (latest or staging) at ``tag`` (a version or a tag name)."""
        return self.backend.promote(*_model_name(model), tag, to=to)

    def rollback(self, model: str, tag: str = "latest") -> dict[str, Any]:
        """Move ``tag`` back to the version it pointed at before."""
        return self.backend.rollback(*_model_name(model), tag)

    # (last: below it, ``list`` in an annotation would mean this method)
    def list(self, limit: int = 50) -> list[Run]:
        """The latest runs of the configured backend, newest first."""
        return self.backend.list(limit)


def _model_name(model: str) -> tuple[str, str]:
    from csflow.sdk.core.names import parse_model_name

    return parse_model_name(model)
