"""What the fault-injection tests share: the CLI as a real process, and what /proc and
the run store say after a fault."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from pathlib import Path

from paths import TOY_CONFIGS

__all__ = ["CSFLOW", "cli_env", "no_orphans", "processes_of", "query_store", "store_intact"]

CSFLOW = str(Path(sys.executable).with_name("csflow"))


def cli_env(home: Path, *config_dirs: Path, **extra: str) -> dict[str, str]:
    """The environment of a `csflow` process on ``home``: none of the caller's CSFLOW_*
    settings, model configs from ``config_dirs`` (default: the toy models)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSFLOW_")}
    env.update(
        CSFLOW_HOME=str(home),
        CSFLOW_CONFIG_DIRS=json.dumps([str(d) for d in config_dirs or (TOY_CONFIGS,)]),
        COLUMNS="200",
        **extra,
    )
    if os.environ.get("CSFLOW_ARGO_SCHEMA_DIR"):
        env["CSFLOW_ARGO_SCHEMA_DIR"] = os.environ["CSFLOW_ARGO_SCHEMA_DIR"]
    return env


def processes_of(home: Path) -> dict[int, str]:
    """Every live process (not a zombie; not this one) whose command line, environment
    or working folder names the home: engine, workers, supervisors, steps, their children."""
    marker = str(home).encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
            cwd = os.readlink(entry / "cwd").encode()
        except (OSError, IndexError):  # gone, or a kernel thread
            continue
        if state != "Z" and (marker in cmdline or marker in environ or cwd.startswith(marker)):
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return found


def no_orphans(home: Path, timeout: float = 15.0) -> None:
    """No process of the home is left (waiting up to ``timeout`` for them to end)."""
    deadline = time.monotonic() + timeout
    while (left := processes_of(home)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes left after the run: {left}"


def query_store(home: Path, sql: str) -> list[tuple]:
    """Read the store without writing it: read-only, or as an immutable file where
    SQLite cannot make its WAL index (a read-only home, a full disk)."""
    uri = f"{(home / 'runs.db').as_uri()}?mode=ro"
    for target in (uri, f"{uri}&immutable=1"):
        try:
            connection = sqlite3.connect(target, uri=True, timeout=30)
            try:
                return connection.execute(sql).fetchall()
            finally:
                connection.close()
        except sqlite3.OperationalError:
            if target != uri:
                raise
    raise AssertionError("unreachable")


def store_intact(home: Path) -> None:
    """The store, where it exists, passes SQLite's integrity check."""
    db = home / "runs.db"
    if db.exists() and db.stat().st_size:
        assert query_store(home, "PRAGMA integrity_check") == [("ok",)]
