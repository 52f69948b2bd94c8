"""Warm workers kept per (model, tag) within one engine process.

A worker that imported a model serves one simulation at a time (it forks a
child per step), then goes back to the pool for the next simulation of the
same model version. Starting one early (``prestart``) lets the model import
overlap with the engine's own set-up. Workers are keyed by everything that
shapes their process (interpreter, preloads, environment), so a changed
secret or config never reuses a stale worker. A run borrows a worker with
``lend``: closing the launcher it gets gives the worker back.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import threading
from pathlib import Path

from csflow.engine.launchers import StepProcess, WarmLauncher


def _key(python: str, entry: str, preload: list[str], env: dict[str, str]) -> str:
    blob = json.dumps([python, entry, preload, sorted(env.items())])
    return hashlib.sha256(blob.encode()).hexdigest()


class WorkerPool:
    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self._idle: dict[str, list[WarmLauncher]] = {}
        self._lock = threading.Lock()
        self._count = 0
        atexit.register(self.close)

    def acquire(
        self, python: str, entry: str, preload: list[str], env: dict[str, str]
    ) -> WarmLauncher:
        """An idle live worker for this key, or a newly started one."""
        key = _key(python, entry, preload, env)
        with self._lock:
            idle = self._idle.get(key, [])
            while idle:
                worker = idle.pop()
                if worker.process.poll() is None:
                    worker.key = key
                    return worker
                worker.close()
            self._count += 1
            number = self._count
        self.log_dir.mkdir(parents=True, exist_ok=True)
        worker = WarmLauncher(python, entry, preload, env, self.log_dir / f"worker-{number}.log")
        worker.key = key
        return worker

    def lend(
        self, python: str, entry: str, preload: list[str], env: dict[str, str]
    ) -> PooledLauncher:
        """A worker for one run: its ``close`` gives the worker back to the pool."""
        return PooledLauncher(self, self.acquire(python, entry, preload, env))

    def prestart(self, python: str, entry: str, preload: list[str], env: dict[str, str]) -> None:
        """Start a worker now so its imports run while the caller does other work."""
        self.release(self.acquire(python, entry, preload, env))

    def release(self, worker: WarmLauncher) -> None:
        if worker.process.poll() is not None:
            worker.close()
            return
        with self._lock:
            self._idle.setdefault(worker.key, []).append(worker)

    def close(self) -> None:
        with self._lock:
            workers = [w for idle in self._idle.values() for w in idle]
            self._idle.clear()
        for worker in workers:  # all leave at once
            worker.let_go()
        for worker in workers:
            worker.close()


class PooledLauncher:
    """A ``Launcher`` lent by a ``WorkerPool``: closing it returns the worker."""

    def __init__(self, pool: WorkerPool, worker: WarmLauncher):
        self.pool = pool
        self.worker = worker

    def start(self, args: list[str], cwd: Path, log: Path, env: dict[str, str]) -> StepProcess:
        return self.worker.start(args, cwd, log, env)

    def close(self) -> None:
        self.pool.release(self.worker)
