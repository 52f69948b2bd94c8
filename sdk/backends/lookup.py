"""Which backend holds a run: the one place a run id is looked up across backends.

A run id names a run on one backend, whichever ran it; the settings name one
backend (``CSFLOW_BACKEND``), but a run started with ``--backend argo`` is still
that run when someone asks for it later without the flag. ``RunLookup`` asks
the configured backend first, then the other one that is set up (the embedded
engine always is; the argo backend is when ``CSFLOW_ARGO_HOST`` is set), and
remembers where it found each run. Told to stay on the configured backend
(``elsewhere=False``, the CLI's ``--backend``), it asks nothing and the backend
answers as it always did.
"""

from __future__ import annotations

from csflow.sdk.backends.base import Backend, open_backend
from csflow.sdk.core.errors import CsflowError, NotFound
from csflow.sdk.core.settings import Settings

__all__ = ["RunLookup", "lookup_order"]

BACKENDS = ("local", "argo")


def lookup_order(settings: Settings) -> tuple[str, ...]:
    """The backends a run id is looked for on, in order: the configured one, then
    each other one that is set up."""

    def set_up(name: str) -> bool:
        return name == "local" or bool(settings.argo_host)

    others = [name for name in BACKENDS if name != settings.backend and set_up(name)]
    return (settings.backend, *others)


class RunLookup:
    def __init__(self, settings: Settings, configured: Backend, elsewhere: bool = True):
        self.settings = settings
        self.order = lookup_order(settings) if elsewhere else (settings.backend,)
        self._backends: dict[str, Backend] = {settings.backend: configured}
        self._holders: dict[str, Backend] = {}

    def backend(self, name: str) -> Backend:
        """The backend ``name``, opened on first use with the same settings."""
        if name not in self._backends:
            self._backends[name] = open_backend(self.settings.model_copy(update={"backend": name}))
        return self._backends[name]

    def remember(self, run_id: str, backend: Backend) -> None:
        """A run this client just started: no need to look for it."""
        self._holders[run_id] = backend

    def holder(self, job_id: str) -> Backend:
        """The backend that holds run ``job_id``. Unknown everywhere: ``no run 'ID'``;
        when a backend could not tell (an Argo Server it cannot reach, a missing
        setting) and no other has the run, that backend's error instead."""
        if job_id in self._holders:
            return self._holders[job_id]
        if len(self.order) == 1:  # one place to look: its own answers, unprobed
            return self.backend(self.order[0])
        error: CsflowError | None = None
        for name in self.order:
            try:
                backend = self.backend(name)
                run = backend.find(job_id)
            except CsflowError as exc:
                error = error or exc
                continue
            if run is not None:
                self._holders[job_id] = self._holders[run.id] = backend
                return backend
        if error is not None:
            raise error
        raise NotFound(f"no run {job_id!r}")
