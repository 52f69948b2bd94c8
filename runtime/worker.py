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
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import select
import signal
import sys
from typing import TextIO

# A step that writes more than this to any one file (its log included) is
# stopped with SIGXFSZ instead of filling the disk.
MAX_FILE_BYTES = 2 * 1024**3

# The protocol channel: the real stdout, kept here while sys.stdout points at
# stderr (main), so nothing a model prints can corrupt the protocol.
_channel: TextIO = sys.stdout


def _load_entry(spec: str):
    module_name, _, function = spec.partition(":")
    return getattr(importlib.import_module(module_name), function or "main")


def _run_child(entry, request: dict) -> None:
    """In the forked child: never returns."""
    code = 1
    try:
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
    _channel.write(json.dumps(message) + "\n")
    _channel.flush()


def _wait_or_orphaned(pid: int) -> int:
    """Wait for the child; if the engine goes away (stdin closes), kill the child's
    process group and leave, so a killed engine never leaves a model running."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        readable, _, _ = select.select([sys.stdin], [], [], 0.2)
        if readable and not os.read(sys.stdin.fileno(), 1):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            sys.exit(0)


def serve(entry_spec: str, preload: list[str]) -> None:
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
        pid = os.fork()
        if pid == 0:
            _run_child(entry, request)
        _reply({"pid": pid})
        _reply({"pid": pid, "exit": _wait_or_orphaned(pid)})


def main() -> None:
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
