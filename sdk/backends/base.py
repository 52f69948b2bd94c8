"""The ``Backend`` contract: everything ``Client`` asks of a backend, and what both share.

``LocalBackend`` (``local.py``: the embedded engine) and ``ArgoBackend``
(``argo.py``: the Argo Server) implement every method. A backend that cannot do
something yet says so from that method, in one line (``cannot``); the client
never probes. Both share ``SimulationWorkflows`` (the Workflow a simulation
submits) and ``RunResults`` (a finished run's results).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from csflow.flows import simulate, sweep
from csflow.sdk.core import names
from csflow.sdk.core.contract import JobInputs
from csflow.sdk.core.errors import BadInput
from csflow.sdk.core.run import Run
from csflow.sdk.core.settings import Settings
from csflow.sdk.core.status import RunStatus
from csflow.sdk.core.sweep import SweepAxis, point_inputs
from csflow.sdk.dataplane.jobstore import JobStore, open_job_store
from csflow.sdk.dataplane.storage import open_storage, read_outputs, run_prefix, write_downloadables
from csflow.sdk.registry.local import ModelVersion

Progress = Callable[[str], None]
EventSink = Callable[[str, str, dict[str, Any]], None]
Meta = dict[str, Any] | None  # a meta_param_dict

__all__ = [
    "Backend",
    "EventSink",
    "Progress",
    "RunResults",
    "SimulationWorkflows",
    "cannot",
    "open_backend",
]


@runtime_checkable
class Backend(Protocol):
    settings: Settings

    # -- simulations
    def submit(
        self,
        model: str,
        inputs: JobInputs,
        tag: str | None = None,
        progress: Progress = ...,
        warm_up: bool = False,
    ) -> Run:
        """Record the job and return at once (``warm_up``: start what the run will
        need now, if the backend keeps anything warm)."""

    def submit_sweep(
        self,
        model: str,
        inputs: JobInputs,
        axis: SweepAxis,
        tag: str | None = None,
        progress: Progress = ...,
        warm_up: bool = False,
    ) -> Run:
        """Record a sweep (one job per point of ``axis``, one Workflow) and return at once."""

    def render(self, model: str, inputs: JobInputs, tag: str | None = None) -> dict[str, Any]:
        """The Workflow ``submit`` would send (``--dry-run``)."""

    def render_sweep(
        self, model: str, inputs: JobInputs, axis: SweepAxis, tag: str | None = None
    ) -> dict[str, Any]:
        """The Workflow ``submit_sweep`` would send (``--dry-run``; no job is written)."""

    def execute(self, job_id: str, events: EventSink | None = None) -> Run:
        """Run (or follow) a submitted run until it ends or waits for approval."""

    def detach(self, job_id: str) -> None:
        """Let a submitted run go on without this process."""

    # -- reading runs
    def status(self, job_id: str) -> Run: ...

    def find(self, job_id: str) -> Run | None:
        """The run if this backend holds it, None if it does not; raises only when it
        cannot tell (a server it cannot reach). ``RunLookup`` asks it."""

    def wait(self, job_id: str, timeout: float | None = None) -> Run: ...

    def logs(self, job_id: str, step: str | None = None) -> str: ...

    def results(self, job_id: str) -> dict[str, Any]: ...

    def download(self, job_id: str, out: Path) -> list[Path]: ...

    def run_inputs(self, job_id: str) -> dict[str, Any]:
        """The inputs a simulation was submitted with (``meta_param_dict``,
        ``adjustment``), from the job store while the job is kept there."""

    def cancel(self, job_id: str) -> Run: ...

    # -- publishing
    def submit_publish(self, config_path: str | Path, require_approval: bool = False) -> Run: ...

    def approve(self, run_id: str) -> Run: ...

    def publish_report(self, run_id: str) -> dict[str, Any] | None: ...

    # -- the model registry
    def models(self) -> list[dict[str, Any]]: ...

    def model(self, owner: str, title: str) -> dict[str, Any]: ...

    def model_inputs(
        self, owner: str, title: str, meta_param_dict: Meta = None, tag: str | None = None
    ) -> dict[str, Any]:
        """``get_version`` and ``get_inputs`` of a version (default: latest)."""

    def promote(self, owner: str, title: str, tag: str, to: str = "latest") -> dict[str, Any]: ...

    def rollback(self, owner: str, title: str, tag_name: str = "latest") -> dict[str, Any]: ...

    # (last: below it, ``list`` in an annotation would mean this method)
    def list(self, limit: int = 50) -> list[Run]:
        """The latest runs, newest first."""


def open_backend(settings: Settings) -> Backend:
    """The backend ``settings.backend`` names."""
    if settings.backend == "local":
        from csflow.sdk.backends.local import LocalBackend

        return LocalBackend(settings)
    from csflow.sdk.backends.argo import ArgoBackend

    return ArgoBackend(settings)


def cannot(backend: str, what: str) -> BadInput:
    """The one-line refusal of a backend that cannot do ``what`` yet."""
    return BadInput(f"the {backend} backend cannot {what} yet; use the local backend")


class SimulationWorkflows:
    """The simulation Workflow of a model version, as both backends build it
    (each brings ``settings`` and ``resolve``)."""

    settings: Settings

    if TYPE_CHECKING:

        def resolve(self, owner: str, title: str, tag: str | None) -> ModelVersion: ...

    def workflow(self, version: ModelVersion, job_id: str) -> dict[str, Any]:
        """The simulation Workflow, exactly as Argo receives it."""
        return simulate.simulation_workflow_for(version, job_id, self.settings.registry).to_dict()

    def sweep_workflow(
        self, version: ModelVersion, job_id: str, axis: SweepAxis, points: list[dict[str, str]]
    ) -> dict[str, Any]:
        """A sweep's Workflow, exactly as Argo receives it."""
        return sweep.sweep_workflow_for(
            version,
            job_id,
            axis.name,
            [point["job_id"] for point in points],
            [point["label"] for point in points],
            self.settings.registry,
        ).to_dict()

    def render(self, model: str, inputs: JobInputs, tag: str | None = None) -> dict[str, Any]:
        owner, title = names.parse_model_name(model)
        return self.workflow(self.resolve(owner, title, tag), str(uuid.uuid4()))

    def render_sweep(
        self, model: str, inputs: JobInputs, axis: SweepAxis, tag: str | None = None
    ) -> dict[str, Any]:
        owner, title = names.parse_model_name(model)
        points, _ = sweep_jobs(inputs, axis)  # (checked as a submit checks them)
        return self.sweep_workflow(self.resolve(owner, title, tag), str(uuid.uuid4()), axis, points)


def sweep_jobs(
    inputs: JobInputs, axis: SweepAxis
) -> tuple[list[dict[str, str]], dict[str, dict[str, Any]]]:
    """Each point of a sweep as a job of its own: ``[{"job_id", "label"}]`` in order,
    and each job's inputs by job id (checked as any simulation's inputs)."""
    points = [{"job_id": str(uuid.uuid4()), "label": label} for label in axis.labels()]
    checked = [
        JobInputs.model_validate(point).model_dump()
        for point in point_inputs(inputs.model_dump(), axis)
    ]
    return points, {point["job_id"]: job for point, job in zip(points, checked, strict=True)}


def put_jobs(store: JobStore, owner: str, title: str, jobs: dict[str, dict[str, Any]]) -> None:
    """Jobs' inputs (by job id) into the job store, where the model steps read them."""
    for job_id, inputs in jobs.items():
        store.put(job_id, {"owner": owner, "title": title, "inputs": inputs})


class RunResults:
    """A finished run's results, read from the results storage, and its inputs,
    read from the job store, for both backends (each brings ``status``,
    ``results_url``: where results are stored, or a ``BadInput`` if it cannot tell,
    and ``job_store_url``)."""

    if TYPE_CHECKING:

        def status(self, job_id: str) -> Run: ...

        def results_url(self) -> str: ...

        @property
        def job_store_url(self) -> str: ...

    def run_inputs(self, job_id: str) -> dict[str, Any]:
        run = self.status(job_id)
        if run.kind == "sweep":
            raise BadInput(f"run {run.id} is a sweep: each of its points has its inputs")
        if run.kind != "simulate":
            raise BadInput(f"run {run.id} is a {run.kind} run: it has no simulation inputs")
        job = open_job_store(self.job_store_url).get(run.id)
        return dict(job.get("inputs") or {})

    def results_uri(self, run: Run) -> str:
        """Where a successful run's results are."""
        return open_storage(self.results_url()).uri(run_prefix(run.owner, run.title, run.id))

    def finished(self, job_id: str) -> Run:
        run = self.status(job_id)
        if run.status != RunStatus.SUCCESS:
            raise BadInput(f"run {run.id} has no results: it is {run.status}")
        return run

    def results(self, job_id: str) -> dict[str, Any]:
        run = self.finished(job_id)
        return read_outputs(open_storage(self.results_url()), run.owner, run.title, run.id)

    def download(self, job_id: str, out: Path) -> list[Path]:
        """Write the downloadable outputs of a run as files under ``out``."""
        run = self.finished(job_id)
        return write_downloadables(
            open_storage(self.results_url()), run.owner, run.title, run.id, out
        )
