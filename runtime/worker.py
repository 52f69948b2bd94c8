"""A warm worker: imports a step program (and the model) once, forks per step.

Importing a model is often most of its cost (Tax-Calculator: ~4 s). The worker
pays it once, then runs every step in a fresh forked child: each step still
has its own process, environment, working folder, log file and exit code,
and a crash or a kill takes down only that child.

Protocol, one JSON object per line:
  stdin  <- {"args": [...], "cwd": "...", "log": "...", "env": {...}}
  stdout -> {"pid": N}            once the child is forked
  stdout -> {"pid": N, "exit": C} when it ends (C < 0: killed by signal -C)
  stdout -> {"ready": true}       once, after the preload

Standard library only: it runs in the model's environment too. The
multiprocessing forkserver would preload the same way, but it pickles work
items through its own process tree and cannot hand the engine the pid it
needs to enforce deadlines, nor redirect a child's raw stdout to a file.

A step's processes never outlive it, nor the engine: the child leads its own
process group, which is killed when the child ends (what it left running) and
when the engine goes away (its end of our stdin closes: ``kill -9``, a crash);
the child also gets SIGKILL if this worker dies (``PR_SET_PDEATHSIG``, Linux).

``worker.py --exec COMMAND...`` is the same watch over a fresh interpreter (the
engine's ``SubprocessLauncher``): it runs COMMAND as its child, in its own
process group, exits as the child does, and kills the group if the engine goes
away first.
"""

from __future__ import annotations

import importlib
import os
import resource
import select
import signal
import sys

# (Few imports: a fresh step's supervisor, --exec, starts with this file.)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn, TextIO

# A step that writes more than this to any one file (its log included) is
# stopped with SIGXFSZ instead of filling the disk.
MAX_FILE_BYTES = 2 * 1024**3

# The protocol channel: the real stdout, kept here while sys.stdout points at
# stderr (main), so nothing a model prints can corrupt the protocol.
_channel: TextIO = sys.stdout


def _load_entry(spec: str):
    module_name, _, function = spec.partition(":")
    return getattr(importlib.import_module(module_name), function or "main")


def _death_signal() -> Callable[[int], None] | None:
    """Linux: a function for a new child to call first, so that it gets SIGKILL
    when this process (its parent, single-threaded) dies (``PR_SET_PDEATHSIG``);
    it leaves at once if that has happened already. None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    kill, zero = ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0)

    def die_with(parent: int) -> None:
        prctl(1, kill, zero, zero, zero)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before that: leave now
            os._exit(1)

    return die_with


_die_with = _death_signal()


def _run_child(entry, request: dict, parent: int) -> None:
    """In the forked child: never returns."""
    code = 1
    try:
        if _die_with is not None:
            _die_with(parent)
        os.setsid()  # its own process group, so a kill reaches its children too
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
        log_fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
        os.environ.update(request.get("env") or {})
        if request.get("cwd"):
            os.chdir(request["cwd"])
        code = int(entry(list(request["args"])) or 0)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _reply(message: dict) -> None:
    import json

    _channel.write(json.dumps(message) + "\n")
    _channel.flush()


def _exited(pid: int) -> bool:
    """Whether child ``pid`` has ended, leaving it unreaped: while it is a zombie its
    pid, and its process group's id, cannot be reused."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _watch(pid: int) -> bool:
    """Wait until child ``pid`` ends (True; not reaped) or the engine goes away
    (False): its end of our stdin closed, as it does however the engine dies."""
    try:
        pidfd: int | None = os.pidfd_open(pid)  # readable once it ends (Linux 5.3)
    except (AttributeError, OSError):
        pidfd = None
    stdin = sys.stdin.fileno()
    poller = select.poll()
    poller.register(stdin, select.POLLIN)
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    try:
        while not _exited(pid):
            for fd, _ in poller.poll(None if pidfd is not None else 50):
                if fd == stdin and not os.read(stdin, 1):
                    return False
        return True
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _kill_group(group: int) -> None:
    try:
        os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_or_orphaned(pid: int) -> int:
    """Wait for the child, then kill what it left running in its process group. If
    the engine goes away first, kill the child's group and leave, so a killed
    engine never leaves a model running."""
    engine_alive = _watch(pid)
    _kill_group(pid)
    _, status = os.waitpid(pid, 0)
    if not engine_alive:
        sys.exit(0)
    return os.waitstatus_to_exitcode(status)


def supervise(command: list[str]) -> NoReturn:
    """``--exec COMMAND...``: run COMMAND as this process's child, in this process's
    group (made its own), and exit as it does (killed by a signal: by the same one).
    If the engine goes away first (stdin closes), kill the whole group, this
    process included. The engine kills the group to stop the step, and kills what
    is left in it once this process has ended."""
    if os.getpgrp() != os.getpid():
        os.setsid()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        _exec_child(command, parent)
    if not _watch(pid):
        os.killpg(0, signal.SIGKILL)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code >= 0:
        sys.exit(code)
    # Killed by a signal: end by the same one (without a core file), so the engine
    # sees what the step saw.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        signal.signal(-code, signal.SIG_DFL)
    except (OSError, ValueError):  # SIGKILL, SIGSTOP: not to be handled, nor ignored
        pass
    os.kill(os.getpid(), -code)
    os._exit(128 - code)


def _exec_child(command: list[str], parent: int) -> NoReturn:
    """In the supervisor's forked child: become COMMAND (stdin: /dev/null; the
    signals Python ignores back to their defaults), or say why not (exit 127)."""
    try:
        if _die_with is not None:
            _die_with(parent)
        for ignored in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(ignored, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.execvp(command[0], command)
    except BaseException as exc:
        reason = getattr(exc, "strerror", None) or exc
        os.write(2, f"csflow: cannot run {command[0] if command else '?'}: {reason}\n".encode())
    os._exit(127)


def serve(entry_spec: str, preload: list[str]) -> None:
    import json

    entry = _load_entry(entry_spec)
    for module in preload:
        importlib.import_module(module)
    _reply({"ready": True})
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        if not line.strip():
            continue
        request = json.loads(line)
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            _run_child(entry, request, parent)
        _reply({"pid": pid})
        _reply({"pid": pid, "exit": _wait_or_orphaned(pid)})


def main() -> None:
    if sys.argv[1:2] == ["--exec"]:  # --exec [--] COMMAND...
        supervise(sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:])
    import argparse

    parser = argparse.ArgumentParser(prog="csflow-worker")
    parser.add_argument("--entry", required=True, help="module:function taking argv")
    parser.add_argument("--preload", action="append", default=[])
    args = parser.parse_args()
    # Keep the protocol channel clean: anything printed while importing goes to stderr.
    global _channel
    _channel = sys.stdout
    sys.stdout = sys.stderr
    try:
        serve(args.entry, args.preload)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
