"""Run records of the embedded engine, in SQLite under ``$CSFLOW_HOME``.

SQLite gives atomic, durable writes and safe concurrent access from several
engine processes (WAL mode). Each run records the pid of the engine process
that owns it; a RUNNING run whose engine is gone is reported INTERRUPTED, so a
killed engine never leaves a run looking alive.

The home and the store under faults (every failure is one line naming the file
or the home, and what to do):

- Opening the store writes nothing once its schema exists. A store that cannot
  be written (a read-only home) is opened read-only (``mode=ro``), so reading
  commands still work; a write then fails in one line (``BadInput``: the
  home chosen is at fault).
- A ``runs.db`` emptied to 0 bytes while run folders exist, or one that is not a
  SQLite database, is never recreated or touched: ``StoreError`` says so, and
  how to restore the backup (``runs.db.bak``, refreshed as runs finish: each time
  while the store is small, else every ``BACKUP_SECONDS``) or start afresh. The run
  folders are kept.
- A full disk (``StoreFull``): ``runs.db.reserve``, ``RESERVE_BYTES`` kept
  beside the store, is let go the first time a record of a run already under
  way cannot be written, so its end (and why: the disk is full) is still
  recorded; it is made again once there is room. A new run is refused instead.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from csflow.sdk.core.errors import BadInput, CsflowError, NotFound
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


_HEADER = b"SQLite format 3\x00"
# Kept beside the store, let go when the disk is full so a run's end is still recorded.
RESERVE_BYTES = 2 * 1024 * 1024
# The backup (runs.db.bak) is refreshed when a run finishes: each time while the store
# is small (a copy of a few milliseconds), else at most every BACKUP_SECONDS.
BACKUP_SMALL_BYTES = 4 * 1024 * 1024
BACKUP_SECONDS = 600
# SQLite's primary result codes (sqlite3.Error.sqlite_errorcode & 0xFF).
_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_CORRUPT = 3, 8, 10, 11
_SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 13, 14, 26
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)

_HINT = "set CSFLOW_HOME (or --home) to a folder you can write"

T = TypeVar("T")


class StoreError(CsflowError):
    """The run store cannot be used as it is: emptied, not a database, damaged."""


class StoreFull(StoreError):
    """The disk holding the run store is full."""


def home_error(home: Path, exc: OSError) -> CsflowError:
    """An OS error met making or writing under CSFLOW_HOME, as one line naming the
    home and what to do: exit 2 when the home chosen is at fault (read-only, not
    writable, under a file), 1 when its disk is full or the system failed."""
    path = exc.filename or home
    if exc.errno in _DISK_FULL:
        what = f" (cannot write {exc.filename})" if exc.filename else ""
        return StoreFull(
            f"the disk holding CSFLOW_HOME {home} is full{what}: free some space and try again"
        )
    if exc.errno == errno.EROFS:
        return BadInput(
            f"CSFLOW_HOME {home} is on a read-only file system (cannot write {path}); {_HINT}"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return BadInput(f"CSFLOW_HOME {home}: permission denied on {path}; {_HINT}")
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = next((p for p in (home, *home.parents) if p.exists()), home)
        if not blocker.is_dir():
            return BadInput(f"CSFLOW_HOME {home} cannot be a folder: {blocker} is a file; {_HINT}")
    return BadInput(f"CSFLOW_HOME {home} cannot be used ({path}: {exc.strerror}); {_HINT}")


def prepare_home(home: Path) -> None:
    """Make CSFLOW_HOME if it is missing. One line naming it if it cannot be a folder:
    it is a file, sits under a file, or its parent cannot be written. An existing
    home that cannot be written is left to the store (read-only: reading works)."""
    if home.is_dir():
        return
    if home.exists():
        raise BadInput(f"CSFLOW_HOME {home} is a file, not a folder; {_HINT}")
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise home_error(home, exc) from None


def no_space_left(path: Path, below: int = 1024 * 1024) -> bool:
    """Whether the disk holding ``path`` has less than ``below`` bytes free (for
    root, counting the blocks kept for root, which root may still use)."""
    try:
        space = os.statvfs(path)
    except OSError:
        return False
    free = space.f_bfree if os.geteuid() == 0 else space.f_bavail
    return free * space.f_frsize < below


def _writable(path: Path) -> bool:
    """Whether this process may write ``path`` (a file, or a folder to create files
    in); ``access`` answers no on a read-only file system too, for root as well."""
    return os.access(path, os.W_OK)


class RunStore:
    def __init__(self, path: Path, runs_dir: Path | None = None):
        """Open the store at ``path``; ``runs_dir``: the run folders beside it (a
        store emptied while they exist is refused, not recreated)."""
        self.path = path
        self.home = path.parent
        self.runs_dir = runs_dir or self.home / "runs"
        self.reserve = path.with_name(path.name + ".reserve")
        self.backup = path.with_name(path.name + ".bak")
        # Read-only: the store, or its folder, cannot be written (mode=ro connections).
        self.read_only = False
        # Read-only with no store at all: nothing recorded yet, nothing to read.
        self._absent = False
        if not self.home.is_dir():
            prepare_home(self.home)
        size = self._check_file()
        writable = _writable(self.home) and (size is None or _writable(self.path))
        if size and self._has_schema(writable):
            self.read_only = not writable
        elif not writable:
            self.read_only = self._absent = True
        else:
            with self._connect(write=True) as db:
                db.execute("PRAGMA journal_mode=WAL")  # persistent: set once, with the schema
                db.executescript(_SCHEMA)
        if not self.read_only:
            self._keep_reserve()

    # -- opening ----------------------------------------------------------------

    def _check_file(self) -> int | None:
        """The store's size (None: no file yet). Refuses, touching nothing, a store
        emptied while run folders exist, and a file that is not a SQLite database."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise home_error(self.home, exc) from None
        if size == 0:
            folders = self._run_folders()
            if folders:
                raise StoreError(
                    f"the run store {self.path} is empty (0 bytes) while {folders} run "
                    f"folder{'s exist' if folders > 1 else ' exists'} in {self.runs_dir}: "
                    f"its records were lost; it was left as it is: {self._what_to_do()}"
                )
            return 0
        try:
            with open(self.path, "rb") as handle:
                header = handle.read(len(_HEADER))
        except OSError as exc:
            raise home_error(self.home, exc) from None
        if header != _HEADER:
            raise StoreError(
                f"the run store {self.path} is not a SQLite database (overwritten or "
                f"damaged); it was left as it is: {self._what_to_do()}"
            )
        return size

    def _run_folders(self) -> int:
        try:
            return sum(1 for entry in self.runs_dir.iterdir() if entry.is_dir())
        except OSError:
            return 0

    def _what_to_do(self) -> str:
        aside = f"mv {self.path} {self.path}.broken"
        if self.backup.is_file():
            taken = datetime.fromtimestamp(self.backup.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
            return (
                f"restore its backup of {taken} ({aside} && cp {self.backup} {self.path}), "
                f"or move it aside ({aside}) to start an empty one"
            )
        return f"move it aside ({aside}) to start an empty one; the run folders are kept"

    def _has_schema(self, writable: bool) -> bool:
        """Whether the store has its table (read only, if it cannot be written)."""
        with self._connect(read_only=not writable) as db:
            row = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'runs'"
            ).fetchone()
        return row is not None

    @contextmanager
    def _connect(
        self, write: bool = False, read_only: bool = False
    ) -> Iterator[sqlite3.Connection]:
        """One connection; SQLite's errors as one line naming the store (``_error``)."""
        if write and self.read_only:
            raise self._read_only_error()
        db: sqlite3.Connection | None = None
        try:
            db = self._open_read_only() if read_only or self.read_only else self._open(write)
            db.row_factory = sqlite3.Row
            yield db
        except sqlite3.Error as exc:
            raise self._error(exc, write) from None
        except OSError as exc:
            raise home_error(self.home, exc) from None
        finally:
            if db is not None:
                db.close()

    def _open(self, write: bool) -> sqlite3.Connection:
        """A connection, opened now: the WAL's index (-shm) is made or mapped here. A
        reader whose index cannot be made (a full disk) reads through ``_open_read_only``."""
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("SELECT 1 FROM sqlite_master LIMIT 1")
            return db
        except sqlite3.Error as exc:
            db.close()
            if write or not isinstance(self._error(exc, write), (StoreFull, BadInput)):
                raise
        return self._open_read_only()

    def _open_read_only(self) -> sqlite3.Connection:
        """A connection that writes nothing. In WAL mode a reader needs the WAL's
        index (-shm): when it cannot be opened or made (a read-only folder, a full
        disk), the store is read as an immutable file; it then has no WAL to read
        either (writers who closed it checkpointed it), but for a writer under way."""
        uri = f"{self.path.absolute().as_uri()}?mode=ro"
        try:
            db = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
        except sqlite3.OperationalError:
            pass
        else:
            try:
                db.execute("SELECT 1 FROM sqlite_master LIMIT 1")
                return db
            except sqlite3.OperationalError as exc:
                db.close()
                if (exc.sqlite_errorcode & 0xFF) not in (_SQLITE_CANTOPEN, _SQLITE_IOERR):
                    raise
        return sqlite3.connect(f"{uri}&immutable=1", uri=True, isolation_level=None)

    def _read_only_error(self) -> BadInput:
        if _writable(self.home):  # the folder can be written, the file cannot
            return BadInput(
                f"the run store {self.path} cannot be written: runs can be read but not "
                f"recorded; make it writable, or {_HINT}"
            )
        return BadInput(
            f"CSFLOW_HOME {self.home} is read-only: runs can be read but not recorded "
            f"(the run store {self.path.name} cannot be written); {_HINT}"
        )

    def _error(self, exc: sqlite3.Error, write: bool) -> Exception:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        # A full disk is SQLITE_FULL, or an I/O error making the WAL's index (-shm).
        full = code in (_SQLITE_IOERR, _SQLITE_CANTOPEN) and no_space_left(self.home)
        if code == _SQLITE_FULL or full:
            return StoreFull(
                f"the disk holding CSFLOW_HOME {self.home} is full: its run store "
                f"{self.path.name} cannot be written; free some space and try again"
            )
        if code in (_SQLITE_READONLY, _SQLITE_PERM) or (
            code == _SQLITE_CANTOPEN and not _writable(self.home)
        ):
            return self._read_only_error()
        if code in (_SQLITE_NOTADB, _SQLITE_CORRUPT):
            return StoreError(
                f"the run store {self.path} is damaged ({exc}); it was left as it is: "
                f"{self._what_to_do()}"
            )
        if code in (_SQLITE_IOERR, _SQLITE_CANTOPEN):
            return StoreError(
                f"the run store {self.path} cannot be {'written' if write else 'read'} ({exc}); "
                "check the disk holding it"
            )
        return exc

    # -- writing ------------------------------------------------------------------

    def _write(self, work: Callable[[sqlite3.Connection], T], new: bool = False) -> T:
        """Run ``work`` on a writing connection. On a full disk the reserve is let go
        once, for a run under way (not a ``new`` one), so its end is still recorded."""
        try:
            with self._connect(write=True) as db:
                return work(db)
        except StoreFull:
            if new or not self._release_reserve():
                raise
        with self._connect(write=True) as db:
            return work(db)

    def _release_reserve(self) -> bool:
        try:
            self.reserve.unlink()
            return True
        except OSError:
            return False

    def _keep_reserve(self) -> None:
        """Make the reserve again once the disk has room for it (and some more)."""
        if self.reserve.exists():
            return
        tmp = self.reserve.with_name(f"{self.reserve.name}.{os.getpid()}.tmp")
        try:
            space = os.statvfs(self.home)
            if space.f_bavail * space.f_frsize < 4 * RESERVE_BYTES:
                return
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            finally:
                os.close(fd)
            os.replace(tmp, self.reserve)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _back_up(self) -> None:
        """Refresh ``runs.db.bak`` (SQLite's online backup, then a rename): while the
        store is small, else if it is older than BACKUP_SECONDS. Best effort: never
        fails a write."""
        try:
            recent = time.time() - self.backup.stat().st_mtime < BACKUP_SECONDS
            if recent and self.path.stat().st_size > BACKUP_SMALL_BYTES:
                return
        except OSError:
            pass
        tmp = self.backup.with_name(f"{self.backup.name}.{os.getpid()}-{threading.get_ident()}.tmp")
        try:
            with self._connect() as db:
                target = sqlite3.connect(tmp)
                try:
                    db.backup(target)
                finally:
                    target.close()
            os.replace(tmp, self.backup)
        except (OSError, sqlite3.Error, CsflowError):
            with contextlib.suppress(OSError):
                tmp.unlink()

    def create(self, run: Run) -> Run:
        run.created = run.created or time.time()
        values = {k: getattr(run, k) for k in Run.__dataclass_fields__}
        for key in _JSON_FIELDS:
            values[key] = json.dumps(values[key])
        columns = ", ".join(values)
        marks = ", ".join(f":{k}" for k in values)
        self._write(
            lambda db: db.execute(f"INSERT INTO runs ({columns}) VALUES ({marks})", values),
            new=True,
        )
        return run

    def update(self, run_id: str, **changes: Any) -> None:
        for key in _JSON_FIELDS:
            if key in changes:
                changes[key] = json.dumps(changes[key])
        assignments = ", ".join(f"{k} = :{k}" for k in changes)
        self._write(
            lambda db: db.execute(
                f"UPDATE runs SET {assignments} WHERE id = :_id", {**changes, "_id": run_id}
            )
        )

    def update_if(self, run_id: str, expected_status: str, **changes: Any) -> bool:
        """Apply ``changes`` only if the run is in ``expected_status`` (one caller wins)."""
        for key in _JSON_FIELDS:
            if key in changes:
                changes[key] = json.dumps(changes[key])
        assignments = ", ".join(f"{k} = :{k}" for k in changes)
        cursor = self._write(
            lambda db: db.execute(
                f"UPDATE runs SET {assignments} WHERE id = :_id AND status = :_expected",
                {**changes, "_id": run_id, "_expected": expected_status},
            )
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
        cursor = self._write(
            lambda db: db.execute(
                f"UPDATE runs SET {assignments} WHERE id = :_id AND status IN ({placeholders})",
                {**values, "_id": run_id},
            )
        )
        if cursor.rowcount != 1:
            return False
        self._back_up()
        self._keep_reserve()
        return True

    def set_step(self, run_id: str, step: str, **info: Any) -> None:
        """Merge one step's record (status, timings) inside one transaction."""

        def merge(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT steps FROM runs WHERE id = ?", (run_id,)).fetchone()
            steps = json.loads(row["steps"]) if row else {}
            steps.setdefault(step, {}).update(info)
            db.execute("UPDATE runs SET steps = ? WHERE id = ?", (json.dumps(steps), run_id))
            db.execute("COMMIT")

        self._write(merge)

    def _row(self, row: sqlite3.Row) -> Run:
        data = dict(row)
        for key in _JSON_FIELDS:
            data[key] = json.loads(data[key])
        run = Run(**data)
        if run.status in ACTIVE and run.engine_pid and not _pid_alive(run.engine_pid):
            reason = "the engine running it stopped before it finished"
            recorded = False
            if not self.read_only:
                try:
                    recorded = self.finish(run.id, RunStatus.INTERRUPTED, reason)
                except CsflowError:  # a full disk: reported as it is, recorded later
                    recorded = True
            if recorded or self.read_only:
                run.status, run.reason = RunStatus.INTERRUPTED, reason
        return run

    def get(self, run_id: str) -> Run:
        if self._absent:
            raise NotFound(f"no run {run_id!r} (CSFLOW_HOME {self.home} has no run store)")
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
        if self._absent:
            return []
        with self._connect() as db:
            rows = db.execute(query, args).fetchall()
        return [self._row(r) for r in rows]
