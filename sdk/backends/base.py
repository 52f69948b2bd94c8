"""The ``Backend`` contract: everything ``Client`` asks of a backend, and what both share.

``LocalBackend`` (``local.py``: the embedded engine) and ``ArgoBackend``
(``argo.py``: the Argo Server) implement every method. A backend that cannot do
something yet says so from that method, in one line (``cannot``); the client
never probes. Both share ``SimulationWorkflows`` (the Workflow a simulation
submits) and ``RunResults`` (a finished run's results).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from csflow.sdk.core import names
from csflow.sdk.core.contract import JobInputs
from csflow.sdk.core.errors import BadInput, CsflowError, NotFound
from csflow.sdk.core.run import Run
from csflow.sdk.core.settings import Settings
from csflow.sdk.core.status import RunStatus
from csflow.sdk.core.sweep import SweepAxis, point_inputs
from csflow.sdk.dataplane.jobstore import JobStore, open_job_store
from csflow.sdk.dataplane.result_cache import Entry, ResultCache, cache_key
from csflow.sdk.dataplane.storage import open_storage, read_outputs, run_prefix, write_downloadables
from csflow.sdk.registry.local import ModelVersion

Progress = Callable[[str], None]
EventSink = Callable[[str, str, dict[str, Any]], None]
Meta = dict[str, Any] | None  # a meta_param_dict

__all__ = [
    "Backend",
    "EventSink",
    "Progress",
    "ResultCaching",
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
        no_cache: bool = False,
    ) -> Run:
        """Record the job and return at once (``warm_up``: start what the run will
        need now, if the backend keeps anything warm). Through the result cache
        (``ResultCaching``) unless ``no_cache``: a hit is a run of its own, already
        ``SUCCESS``; an identical submission in flight is waited for first."""

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
        from csflow.flows import simulate  # (imports hera, ~1 s: not on a cache hit's path)

        return simulate.simulation_workflow_for(version, job_id, self.settings.registry).to_dict()

    def sweep_workflow(
        self, version: ModelVersion, job_id: str, axis: SweepAxis, points: list[dict[str, str]]
    ) -> dict[str, Any]:
        """A sweep's Workflow, exactly as Argo receives it."""
        from csflow.flows import sweep

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


# How long a submission waits for an identical one whose claim names a run that
# cannot be found yet (it is being recorded) before it takes the claim over.
LEADER_GRACE_SECONDS = 30.0


class ResultCaching:
    """The result cache (``sdk/dataplane/result_cache.py``) around a submission,
    for both backends: each brings ``settings``, ``status``, ``results_url``,
    ``results_uri``, ``job_store_url``, ``record_cached`` (keep a hit's ``Run``
    where its runs are read) and ``cache_poll`` (seconds between looks at a run
    in flight). The claims (single flight) live in the job store, the entries
    beside the results; ``submit`` calls ``through_cache``, and a backend calls
    ``keep_result`` when a run it knows the key of succeeds (before it reads
    ``SUCCESS``), then ``release_claim``."""

    settings: Settings
    cache_poll: float = 0.2

    @property
    def _flights(self) -> dict[str, str]:
        """Run id -> its cache key, for the runs this object submitted."""
        return self.__dict__.setdefault("_cache_flights", {})

    if TYPE_CHECKING:

        def status(self, job_id: str) -> Run: ...

        def results_url(self) -> str: ...

        def results_uri(self, run: Run) -> str: ...

        @property
        def job_store_url(self) -> str: ...

        def record_cached(self, run: Run) -> Run: ...

    def cache_key_for(
        self, version: ModelVersion, inputs: JobInputs, no_cache: bool = False
    ) -> str | None:
        """The submission's cache key, or None when it bypasses the cache:
        ``no_cache``, the cache turned off, no results storage, or a version the
        registry has no record of (an image tag that may move)."""
        if no_cache or not self.settings.result_cache:
            return None
        if version.record.get("tag") != version.tag:
            return None
        try:
            self.results_url()
        except BadInput:
            return None
        identity = {
            "tag": version.tag,
            "image": str(version.record.get("image") or ""),
            "digest": str(version.record.get("digest") or ""),
        }
        return cache_key(version.owner, version.title, identity, inputs.model_dump())

    def result_cache(self) -> ResultCache:
        return ResultCache(open_storage(self.results_url()), self.settings.result_cache_max_bytes)

    def through_cache(
        self,
        version: ModelVersion,
        inputs: JobInputs,
        key: str | None,
        tag: str | None,
        run: Callable[[str], Run],
        progress: Progress = lambda _: None,
    ) -> Run:
        """A submission's run: a cache hit (a run of its own, ``SUCCESS``, marked
        cached), else ``run(job_id)`` once this submission holds the key's claim;
        while another run holds it, that run is waited for (and its results, once
        it succeeds, are the hit)."""
        job_id = str(uuid.uuid4())
        if key is None:
            return run(job_id)
        store = open_job_store(self.job_store_url)
        cache = self.result_cache()
        ttl = self.settings.result_cache_claim_seconds
        while True:
            entry = cache.hit(key, job_id)
            if entry is not None:
                return self._cached_run(version, inputs, job_id, key, entry, tag)
            holder = store.claim(key, job_id, ttl)
            if holder == job_id:
                entry = cache.hit(key, job_id)  # kept by a run that ended meanwhile
                if entry is not None:
                    store.release(key, job_id)
                    return self._cached_run(version, inputs, job_id, key, entry, tag)
                return self._lead(store, key, job_id, run)
            if not holder:
                continue
            progress(f"the same inputs are running as job {holder}: waiting for it")
            leader = self._wait_for(holder, time.monotonic() + ttl)
            if leader is not None and leader.status == RunStatus.SUCCESS:
                if cache.lookup(key) is None:  # (its own submitter may be gone)
                    self._keep(key, leader)
                continue
            if store.replace_claim(key, holder, job_id, ttl):
                return self._lead(store, key, job_id, run)

    def _lead(self, store: JobStore, key: str, job_id: str, run: Callable[[str], Run]) -> Run:
        self._flights[job_id] = key
        try:
            return run(job_id)
        except BaseException:
            self._flights.pop(job_id, None)
            store.release(key, job_id)
            raise

    def _wait_for(self, holder: str, deadline: float) -> Run | None:
        """The run ``holder`` once it has ended; None if it cannot be found (after a
        grace while it is recorded) or has not ended by ``deadline``."""
        lost = time.monotonic() + LEADER_GRACE_SECONDS
        while time.monotonic() < deadline:
            try:
                leader = self.status(holder)
            except NotFound:
                if time.monotonic() > lost:
                    return None
            else:
                if leader.done:
                    return leader
            time.sleep(self.cache_poll)
        return None

    def _cached_run(
        self,
        version: ModelVersion,
        inputs: JobInputs,
        job_id: str,
        key: str,
        entry: Entry,
        tag: str | None,
    ) -> Run:
        """A hit as a run of its own: its inputs in the job store, the webapp told
        (a SUCCESS marked cached), its record kept by the backend."""
        now = time.time()
        run = Run(
            id=job_id,
            owner=version.owner,
            title=version.title,
            tag=version.tag,
            status=RunStatus.SUCCESS,
            created=now,
            started=now,
            finished=now,
            model_version=entry.model_version,
            errors_warnings=entry.errors_warnings,
            extra={"requested_tag": tag or "latest", "cached": {"from": entry.job_id, "key": key}},
        )
        run.results_uri = self.results_uri(run)
        put_jobs(
            open_job_store(self.job_store_url),
            version.owner,
            version.title,
            {job_id: inputs.model_dump()},
        )
        self._tell_webapp(run)
        return self.record_cached(run)

    def _tell_webapp(self, run: Run) -> None:
        """The webapp hears of a hit as of any success, marked (``meta.cached_from``)."""
        if not self.settings.webapp_url:
            return
        from csflow.runtime.platform_step import webapp_outputs
        from csflow.sdk.dataplane.secrets import open_secret_store
        from csflow.sdk.dataplane.webapp import WebappClient
        from csflow.sdk.registry.views import webapp_token

        token = webapp_token(self.settings, open_secret_store(self.settings))
        storage = open_storage(self.results_url())
        prefix = run_prefix(run.owner, run.title, run.id)
        remote = json.loads(storage.get(f"{prefix}/remote.json"))
        client = WebappClient.from_env(url=self.settings.webapp_url, token=token)
        client.report_success(
            run.id,
            webapp_outputs(remote, storage, prefix),
            0.0,
            run.model_version,
            cached_from=run.cached_from,
        )

    def _key_of(self, run: Run) -> str:
        return str(run.extra.get("cache_key") or self._flights.get(run.id) or "")

    def _keep(self, key: str, run: Run) -> None:
        try:
            self.result_cache().store(
                key, run.owner, run.title, run.id, run.model_version, run.errors_warnings
            )
        except (CsflowError, OSError, ValueError):  # the run stands; it is only not kept
            pass

    def keep_result(self, run: Run) -> None:
        """Keep a successful run's results under its cache key (if it has one)."""
        key = self._key_of(run)
        if key:
            self._keep(key, run)

    def release_claim(self, run: Run) -> None:
        """Drop the claim of a run that ended (later submissions need not wait)."""
        key = self._key_of(run)
        if key:
            try:
                open_job_store(self.job_store_url).release(key, run.id)
            except CsflowError:  # it expires anyway, and a waiter takes over an ended run's
                pass
            self._flights.pop(run.id, None)
