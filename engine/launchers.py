"""How a step's process starts: the one small interface behind every step.

``Launcher.start(args, cwd, log, env)`` returns a ``StepProcess`` with a pid,
``wait(timeout)`` and ``kill()``. Two launchers exist:

- ``SubprocessLauncher``: a fresh interpreter per step (nothing shared);
- ``WarmLauncher``: a warm worker (``runtime/worker.py``) that imported the
  step program and the model once and forks a fresh child per step.

A result cache keyed by (tag, inputs), or workers kept across simulations,
would be further launchers; the flows and the runner do not change.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Protocol

from csflow.sdk.core.errors import CsflowError
from csflow.sdk.core.steps import RUNTIME_DIR


class LaunchError(CsflowError):
    """A step's process could not be started (e.g. the model does not import)."""


class StepProcess(Protocol):
    pid: int

    def wait(self, timeout: float | None) -> int | None:
        """The exit code (negative: killed by that signal), or None on timeout."""

    def kill(self) -> None: ...


class Launcher(Protocol):
    def start(self, args: list[str], cwd: Path, log: Path, env: dict[str, str]) -> StepProcess: ...

    def close(self) -> None: ...


def _kill_group(pid: int) -> None:
    for send in (os.killpg, os.kill):
        try:
            send(pid, signal.SIGKILL)
            return
        except (ProcessLookupError, PermissionError):
            continue


class _Subprocess:
    def __init__(self, popen: subprocess.Popen):
        self.popen = popen
        self.pid = popen.pid

    def wait(self, timeout: float | None) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        _kill_group(self.pid)
        self.popen.wait()


class SubprocessLauncher:
    def __init__(self, command: list[str], env: dict[str, str]):
        self.command = command
        self.env = env

    def start(self, args: list[str], cwd: Path, log: Path, env: dict[str, str]) -> StepProcess:
        with open(log, "ab") as handle:
            popen = subprocess.Popen(
                [*self.command, *args],
                cwd=cwd,
                env={**self.env, **env},
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return _Subprocess(popen)

    def close(self) -> None:
        pass


class _WorkerStep:
    def __init__(self, worker: WarmLauncher, pid: int):
        self.worker = worker
        self.pid = pid
        self.code: int | None = None

    def wait(self, timeout: float | None) -> int | None:
        if self.code is None:
            message = self.worker._read(timeout)
            if message is None:
                return None
            self.code = int(message["exit"])
        return self.code

    def kill(self) -> None:
        _kill_group(self.pid)
        self.wait(None)


class WarmLauncher:
    """Starts the worker at once (in the background) so its imports overlap with
    the engine's own set-up; ``start`` waits for it to be ready."""

    # Set by WorkerPool.acquire (engine/pool.py): the idle list it goes back to.
    key: str

    def __init__(self, python: str, entry: str, preload: list[str], env: dict[str, str], log: Path):
        self.log = log
        self._stderr = open(log, "ab")
        command = [python, str(RUNTIME_DIR / "worker.py"), "--entry", entry]
        for module in preload:
            command += ["--preload", module]
        self.process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            start_new_session=True,
        )
        self._buffer = b""
        self._ready = False
        self._lock = threading.Lock()

    def _read(self, timeout: float | None) -> dict | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        stdout = self.process.stdout
        assert stdout is not None
        while b"\n" not in self._buffer:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([stdout], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(stdout.fileno(), 65536)
            if not chunk:
                raise LaunchError(self._failure())
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def _failure(self) -> str:
        self.process.wait()
        lines = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        return (
            f"the step worker exited before starting: {lines[-1].strip() if lines else 'no output'}"
        )

    def wait_ready(self, timeout: float | None = None) -> None:
        with self._lock:
            if not self._ready:
                message = self._read(timeout)
                if message is None:
                    self.close()
                    raise LaunchError(f"the step worker did not start within {timeout:.0f}s")
                self._ready = bool(message.get("ready"))

    def start(self, args: list[str], cwd: Path, log: Path, env: dict[str, str]) -> StepProcess:
        self.wait_ready()
        request = {"args": args, "cwd": str(cwd), "log": str(log), "env": env}
        assert self.process.stdin is not None
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        except BrokenPipeError:
            raise LaunchError(self._failure()) from None
        message = self._read(None)
        assert message is not None
        return _WorkerStep(self, int(message["pid"]))

    def close(self) -> None:
        if self.process.poll() is None:
            _kill_group(self.process.pid)
            self.process.wait()
        self._stderr.close()
