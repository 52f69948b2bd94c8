"""Run records of the embedded engine, in SQLite under ``$CSFLOW_HOME``.

SQLite gives atomic, durable writes and safe concurrent access from several
engine processes (WAL mode). Each run records the pid of the engine process
that owns it; a RUNNING run whose engine is gone is reported INTERRUPTED, so a
killed engine never leaves a run looking alive.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from csflow.sdk.core.errors import NotFound
from csflow.sdk.core.run import Run
from csflow.sdk.core.status import ACTIVE, RunStatus

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL DEFAULT 'simulate',
    owner TEXT NOT NULL,
    title TEXT NOT NULL,
    tag TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    engine_pid INTEGER,
    model_version TEXT NOT NULL DEFAULT '',
    steps TEXT NOT NULL DEFAULT '{}',
    errors_warnings TEXT NOT NULL DEFAULT '{}',
    results_uri TEXT NOT NULL DEFAULT '',
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created);
"""


_JSON_FIELDS = ("steps", "errors_warnings", "extra")


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed engine whose parent has not reaped it yet is a zombie: dead.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class RunStore:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.row_factory = sqlite3.Row
            yield db
        finally:
            db.close()

    def create(self, run: Run) -> Run:
        run.created = run.created or time.time()
        values = {k: getattr(run, k) for k in Run.__dataclass_fields__}
        for key in _JSON_FIELDS:
            values[key] = json.dumps(values[key])
        columns = ", ".join(values)
        marks = ", ".join(f":{k}" for k in values)
        with self._connect() as db:
            db.execute(f"INSERT INTO runs ({columns}) VALUES ({marks})", values)
        return run

    def update(self, run_id: str, **changes: Any) -> None:
        for key in _JSON_FIELDS:
            if key in changes:
                changes[key] = json.dumps(changes[key])
        assignments = ", ".join(f"{k} = :{k}" for k in changes)
        with self._connect() as db:
            db.execute(f"UPDATE runs SET {assignments} WHERE id = :_id", {**changes, "_id": run_id})

    def update_if(self, run_id: str, expected_status: str, **changes: Any) -> bool:
        """Apply ``changes`` only if the run is in ``expected_status`` (one caller wins)."""
        for key in _JSON_FIELDS:
            if key in changes:
                changes[key] = json.dumps(changes[key])
        assignments = ", ".join(f"{k} = :{k}" for k in changes)
        with self._connect() as db:
            cursor = db.execute(
                f"UPDATE runs SET {assignments} WHERE id = :_id AND status = :_expected",
                {**changes, "_id": run_id, "_expected": expected_status},
            )
            return cursor.rowcount == 1

    def finish(self, run_id: str, status: str, reason: str = "", **changes: Any) -> bool:
        """Move a run to a final status once; a run already final keeps its status."""
        for key in _JSON_FIELDS:
            if key in changes:
                changes[key] = json.dumps(changes[key])
        values = {**changes, "status": status, "reason": reason, "finished": time.time()}
        assignments = ", ".join(f"{k} = :{k}" for k in values)
        placeholders = ", ".join(f"'{s}'" for s in ACTIVE)
        with self._connect() as db:
            cursor = db.execute(
                f"UPDATE runs SET {assignments} WHERE id = :_id AND status IN ({placeholders})",
                {**values, "_id": run_id},
            )
            return cursor.rowcount == 1

    def set_step(self, run_id: str, step: str, **info: Any) -> None:
        """Merge one step's record (status, timings) inside one transaction."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT steps FROM runs WHERE id = ?", (run_id,)).fetchone()
            steps = json.loads(row["steps"]) if row else {}
            steps.setdefault(step, {}).update(info)
            db.execute("UPDATE runs SET steps = ? WHERE id = ?", (json.dumps(steps), run_id))
            db.execute("COMMIT")

    def _row(self, row: sqlite3.Row) -> Run:
        data = dict(row)
        for key in _JSON_FIELDS:
            data[key] = json.loads(data[key])
        run = Run(**data)
        if run.status in ACTIVE and run.engine_pid and not _pid_alive(run.engine_pid):
            reason = "the engine running it stopped before it finished"
            if self.finish(run.id, RunStatus.INTERRUPTED, reason):
                run.status, run.reason = RunStatus.INTERRUPTED, reason
        return run

    def get(self, run_id: str) -> Run:
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                matches = db.execute(
                    "SELECT * FROM runs WHERE id LIKE ? LIMIT 2", (f"{run_id}%",)
                ).fetchall()
                if len(matches) != 1 or len(run_id) < 4:
                    raise NotFound(f"no run {run_id!r}")
                row = matches[0]
        return self._row(row)

    def list(self, limit: int = 50, kind: str | None = None) -> list[Run]:
        query = "SELECT * FROM runs"
        args: list[str | int] = []
        if kind:
            query += " WHERE kind = ?"
            args.append(kind)
        query += " ORDER BY created DESC LIMIT ?"
        args.append(limit)
        with self._connect() as db:
            rows = db.execute(query, args).fetchall()
        return [self._row(r) for r in rows]
