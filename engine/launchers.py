"""How a step's process starts: the one small interface behind every step.

``Launcher.start(args, cwd, log, env)`` returns a ``StepProcess`` with a pid,
``wait(timeout)`` and ``kill()``. Two launchers exist:

- ``SubprocessLauncher``: a fresh interpreter per step (nothing shared);
- ``WarmLauncher``: a warm worker (``runtime/worker.py``) that imported the
  step program and the model once and forks a fresh child per step.

A step's processes end with it and with the engine, whatever kills the engine
(``kill -9`` included): each step leads its own process group, killed when the
step ends (what it left running) or is stopped; and a small process that
watches the engine through a pipe kills the group if the engine goes away: the
warm worker itself, or, for a fresh interpreter, its supervisor
(``runtime/worker.py --exec``). No ``PR_SET_PDEATHSIG`` is set from the engine:
it starts processes from its steps' threads, and that signal follows the death
of the starting thread, not of the process; the single-threaded worker and
supervisor set it for the step they start.

A result cache keyed by (tag, inputs), or workers kept across simulations,
would be further launchers; the flows and the runner do not change.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

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


def open_log(path: Path) -> BinaryIO:
    """A log to append to, made 0600 as the warm worker makes a step's (it may hold
    what a model prints, secrets included); appends (O_APPEND) let the engine cut a
    flooded log in place while the step writes it."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")


def _kill_group(pid: int) -> None:
    for send in (os.killpg, os.kill):
        try:
            send(pid, signal.SIGKILL)
            return
        except (ProcessLookupError, PermissionError):
            continue


def _group_members_stopped(pgid: int) -> bool:
    """Whether every process of group ``pgid`` is stopped (or has ended)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # it ended meanwhile
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("T", "t", "Z", "X"):
            return False
    return True


@contextlib.contextmanager
def group_stopped(pgid: int, timeout: float = 1.0) -> Iterator[bool]:
    """Stop a step's process group (SIGSTOP) for the block, then resume it (SIGCONT).
    Yields whether every member stopped within ``timeout``: only then can nothing it
    writes fall between a read of its log and the cut. A write under way when the
    signal comes ends first, so the wait looks at /proc until each shows stopped."""
    try:
        os.killpg(pgid, signal.SIGSTOP)
    except OSError:  # the group has ended: nothing writes
        yield True
        return
    try:
        deadline = time.monotonic() + timeout
        while not (stopped := _group_members_stopped(pgid)) and time.monotonic() < deadline:
            time.sleep(0.0005)
        yield stopped
    finally:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGCONT)


# A fresh interpreter's step runs under this supervisor (standard library only; -I -S:
# it reads no PYTHON* variable of the step's environment and imports no site).
SUPERVISOR = [sys.executable, "-I", "-S", str(RUNTIME_DIR / "worker.py"), "--exec", "--"]


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)  # readable once the process ends (Linux 5.3)
    except (AttributeError, OSError):
        return None


def _ended(pid: int, pidfd: int | None, timeout: float | None) -> bool:
    """Whether our child ``pid`` ends within ``timeout`` seconds (None: no limit),
    leaving it unreaped: while it is a zombie its process group's id stays ours."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return False
        if pidfd is None:  # no pidfd: look again shortly
            time.sleep(0.01 if remaining is None else min(0.01, remaining))
            continue
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.poll(None if remaining is None else max(1, int(remaining * 1000)))


class _Subprocess:
    """A step in a fresh interpreter, under its supervisor (``pid``, the leader of
    the step's process group). Its stdin is a pipe the engine never writes: when the
    engine dies, however, the pipe closes and the supervisor kills the group."""

    def __init__(self, popen: subprocess.Popen):
        self.popen = popen
        self.pid = popen.pid
        self._pidfd = _pidfd(popen.pid)

    def wait(self, timeout: float | None) -> int | None:
        if self.popen.returncode is None:
            if not _ended(self.pid, self._pidfd, timeout):
                return None
            _kill_group(self.pid)  # what the step left running ends with it
            self.popen.wait()
            self._release()
        return self.popen.returncode

    def kill(self) -> None:
        _kill_group(self.pid)
        self.wait(None)

    def _release(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if self.popen.stdin is not None:
            try:
                self.popen.stdin.close()
            except OSError:
                pass


class SubprocessLauncher:
    def __init__(self, command: list[str], env: dict[str, str]):
        self.command = command
        self.env = env

    def start(self, args: list[str], cwd: Path, log: Path, env: dict[str, str]) -> StepProcess:
        with open_log(log) as handle:
            popen = subprocess.Popen(
                [*SUPERVISOR, *self.command, *args],
                cwd=cwd,
                env={**self.env, **env},
                stdin=subprocess.PIPE,  # the supervisor's watch on the engine
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
        self._stderr = open_log(log)
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

    def let_go(self) -> None:
        """End the worker's input: it leaves (stopping a step still running, with its
        process group). ``close`` waits for it."""
        try:
            assert self.process.stdin is not None
            self.process.stdin.close()
        except OSError:  # it is gone already
            pass

    def close(self) -> None:
        """Let the worker go and wait for it; killed if it has not left within 3 s."""
        if self.process.poll() is None:
            self.let_go()
            try:
                self.process.wait(3)
            except subprocess.TimeoutExpired:
                _kill_group(self.process.pid)
                self.process.wait()
        self._stderr.close()
