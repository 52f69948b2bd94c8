"""The home folder and the run store under faults (issue 12, "The home folder and the
run store"), through real `csflow` processes on real file systems: a home under a
file, a file, read-only (a read-only bind mount; an immutable folder or store), full
(a small tmpfs); a `runs.db` emptied, overwritten or damaged; a step flooding its log
or filling the disk, on both launchers. Each failure is one line naming the home or
the file and saying what to do, with its exit code (2: the home chosen is at fault,
1: the disk or the store is); nothing is recreated or lost; no process is left; the
store passes ``PRAGMA integrity_check``; and a later simulation succeeds.

Mounting needs root (the tests skip without it); every mount is undone in teardown.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from paths import TOY_CONFIGS

from csflow.engine.runner import LOG_KEEP_BYTES, MAX_LOG_BYTES
from csflow.sdk.client import Client

from .harness import CSFLOW, cli_env, no_orphans, query_store, store_intact

OK_INPUTS = {"meta_param_dict": {"year": 2024}, "adjustment": {"Knobs": {"x": [{"value": 2}]}}}
LAUNCHERS = [pytest.param("true", id="warm"), pytest.param("false", id="fresh")]

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")


# -- helpers --------------------------------------------------------------------------


def csflow(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CSFLOW, *args], capture_output=True, env=cli_env(home, **env), timeout=300, text=True
    )


def simulate(home: Path, tmp_path: Path, model: str = "tests/ToyOk", **env: str):
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps(OK_INPUTS))
    return csflow(home, "simulate", model, "--inputs", str(inputs), "-o", "json", **env)


def run_of(result: subprocess.CompletedProcess) -> dict:
    """The run a `simulate -o json` printed (it prints the run also when it failed)."""
    return json.loads(result.stdout)


def error_line(result: subprocess.CompletedProcess, code: int, *names: str) -> str:
    """The command failed with ``code`` and said why in one line naming ``names``."""
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output
    assert "Traceback" not in output and "unexpected" not in output, output
    assert "run with --debug" not in errors[0], errors[0]
    for name in names:
        assert str(name) in errors[0], errors[0]
    return errors[0]


def run_ids(home: Path) -> list[str]:
    return [row[0] for row in query_store(home, "SELECT id FROM runs ORDER BY created")]


def later_simulation_succeeds(home: Path, tmp_path: Path) -> None:
    result = simulate(home, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert run_of(result)["status"] == "SUCCESS"
    store_intact(home)
    no_orphans(home)


def _unmount(path: Path) -> None:
    for _ in range(100):  # a process that just exited may still hold it for a moment
        if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    subprocess.run(["umount", "-l", str(path)], check=True)


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A file system of ``size`` at ``path``, as small a disk as a test needs."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        _unmount(path)


@contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """``path`` made read-only in place: a read-only bind mount of itself (EROFS, for
    root as well)."""
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True)
        yield path
    finally:
        _unmount(path)


@contextmanager
def immutable(path: Path) -> Iterator[Path]:
    """``path`` made immutable (``chattr +i``): not even root may write it (EPERM)."""
    if shutil.which("chattr") is None:
        pytest.skip("no chattr")
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip(f"{path}'s file system has no immutable attribute")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def fill(disk: Path) -> Path:
    """Fill a disk to the last block: a ballast file, written until it is refused."""
    ballast = disk / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for block in (1 << 20, 4096, 1):
            try:
                while os.write(fd, b"\0" * block):
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)
    return ballast


def snapshot(home: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under the home: size, mtime and, for the store, its digest."""
    files = {}
    for path in sorted(home.rglob("*")):
        if path.is_file():
            info = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.suffix == ".db" else ""
            files[str(path.relative_to(home))] = (info.st_size, info.st_mtime_ns, digest)
    return files


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def finished_home(home, tmp_path) -> tuple[Path, str]:
    """A home with one successful run."""
    result = simulate(home, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return home, run_of(result)["job_id"]


# -- a home that cannot be a folder -------------------------------------------------------


@pytest.mark.parametrize("command", [["runs", "list"], ["simulate"]])
def test_a_home_under_a_file_is_one_line_naming_both(tmp_path, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    home = blocker / "home"
    result = simulate(home, tmp_path) if command == ["simulate"] else csflow(home, *command)
    line = error_line(result, 2, home, blocker)
    assert "is a file" in line and "CSFLOW_HOME" in line
    assert blocker.read_text() == "not a folder"
    no_orphans(home)
    later_simulation_succeeds(tmp_path / "good", tmp_path)


@pytest.mark.parametrize("command", [["runs", "list"], ["simulate"]])
def test_a_home_that_is_a_file_is_one_line(tmp_path, command):
    home = tmp_path / "home"
    home.write_text("not a folder")
    result = simulate(home, tmp_path) if command == ["simulate"] else csflow(home, *command)
    assert "is a file, not a folder" in error_line(result, 2, home)
    assert home.read_text() == "not a folder"
    later_simulation_succeeds(tmp_path / "good", tmp_path)


@needs_root
def test_a_home_that_cannot_be_made_is_one_line(tmp_path):
    parent = tmp_path / "parent"
    parent.mkdir()
    home = parent / "home"
    with read_only(parent):
        line = error_line(simulate(home, tmp_path), 2, home)
        assert "read-only" in line and "CSFLOW_HOME" in line
        assert "read-only" in error_line(csflow(home, "runs", "list"), 2, home)
    assert not home.exists()
    later_simulation_succeeds(tmp_path / "good", tmp_path)


# -- a read-only home: reading works, writing is one line -----------------------------------


def _reading_commands_work(home: Path, job_id: str) -> None:
    listed = csflow(home, "runs", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert [run["job_id"] for run in json.loads(listed.stdout)] == [job_id]
    shown = csflow(home, "runs", "show", job_id, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "SUCCESS"
    logs = csflow(home, "runs", "logs", job_id, "--step", "run")
    assert logs.returncode == 0 and "run_model finished" in logs.stdout, logs.stderr
    results = csflow(home, "runs", "results", job_id, "-o", "json")
    assert results.returncode == 0, results.stderr
    assert json.loads(results.stdout)["downloadable"][0]["data"] == "x,double\n2.0,4.0\n"


@needs_root
def test_a_read_only_home_reads_and_refuses_writes_in_one_line(finished_home, tmp_path):
    home, job_id = finished_home
    before = snapshot(home)
    with read_only(home):
        assert not os.access(home / "runs.db", os.W_OK)
        _reading_commands_work(home, job_id)
        line = error_line(simulate(home, tmp_path), 2, home)
        assert "read-only" in line and "CSFLOW_HOME" in line
        store_intact(home)
        no_orphans(home)
    assert snapshot(home) == before  # opening the store wrote nothing
    later_simulation_succeeds(home, tmp_path)


@needs_root
def test_a_store_that_cannot_be_written_is_read_only(finished_home, tmp_path):
    """The home can be written, its store cannot (immutable): reading works, a new
    run is refused in one line naming the store, the store is not touched."""
    home, job_id = finished_home
    db = home / "runs.db"
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    with immutable(db):
        _reading_commands_work(home, job_id)
        line = error_line(simulate(home, tmp_path), 2, db)
        assert "cannot be written" in line
        no_orphans(home)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    store_intact(home)
    later_simulation_succeeds(home, tmp_path)


@needs_root
def test_a_home_folder_that_cannot_be_written_reads_and_refuses_writes(finished_home, tmp_path):
    """An existing home whose folder cannot be written (immutable: EPERM, as a folder
    without write permission is for its users)."""
    home, job_id = finished_home
    with immutable(home):
        _reading_commands_work(home, job_id)
        error_line(simulate(home, tmp_path), 2, home)
        no_orphans(home)
    store_intact(home)
    later_simulation_succeeds(home, tmp_path)


# -- a full home ------------------------------------------------------------------------------


@needs_root
def test_a_full_home_refuses_a_new_run_in_one_line_and_still_reads(tmp_path):
    with tmpfs(tmp_path / "disk", "16m") as disk:
        home = disk / "home"
        first = simulate(home, tmp_path)
        assert first.returncode == 0, first.stderr
        job_id = run_of(first)["job_id"]
        ballast = fill(disk)
        line = error_line(simulate(home, tmp_path), 1, home)
        assert "is full" in line and "free some space" in line
        _reading_commands_work(home, job_id)
        assert run_ids(home) == [job_id]  # the refused run left no record
        store_intact(home)
        no_orphans(home)
        ballast.unlink()
        later_simulation_succeeds(home, tmp_path)


# -- the step's log: held under its limit while the step runs ---------------------------------


class _LargestLog:
    """The largest the run step's log of any run under ``home`` ever was, sampled every
    millisecond or so while a simulation runs."""

    def __init__(self, home: Path):
        self.pattern = str(home / "runs" / "*" / "logs" / "run.log")
        self.largest = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            for path in glob.glob(self.pattern):
                try:
                    self.largest = max(self.largest, os.stat(path).st_size)
                except OSError:
                    pass
            time.sleep(0.001)

    def __enter__(self) -> _LargestLog:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._done.set()
        self._thread.join()


@needs_root
@pytest.mark.parametrize("warm", LAUNCHERS)
def test_a_flood_of_output_is_held_under_the_log_limit_while_the_step_runs(tmp_path, warm):
    """200 MB of output on a 64 MB disk: without a limit held while the step runs the
    log fills the disk; held, it never passes the limit (and a read's worth), and
    keeps its head, its tail (the step's last words) and mode 0600."""
    with tmpfs(tmp_path / "disk", "64m") as disk:
        home = disk / "home"
        with _LargestLog(home) as log_size:
            result = simulate(home, tmp_path, "tests/ToyFlood", CSFLOW_WARM_WORKERS=warm)
        assert result.returncode == 0, result.stdout + result.stderr
        run = run_of(result)
        assert run["status"] == "SUCCESS", run
        assert 0 < log_size.largest <= MAX_LOG_BYTES + 64 * 1024, log_size.largest
        logs = home / "runs" / run["job_id"] / "logs"
        log = logs / "run.log"
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
        text = log.read_bytes()
        assert len(text) < 2 * LOG_KEEP_BYTES + 1024
        cut = 200 * 1024 * 1024 - 2 * LOG_KEEP_BYTES
        marker = [line for line in text.splitlines() if b"bytes of output cut" in line]
        assert len(marker) == 1 and int(marker[0].split()[1]) >= cut, marker
        assert b"y" * 1023 + b"\n" in text[:LOG_KEEP_BYTES]  # its head
        assert b"flood: done" in text[-4096:]
        assert sorted(p.name for p in logs.iterdir()) == [
            "inputs.log",
            "notify.log",
            "outputs.log",
            "run.log",
            "upload.log",
        ]  # the pipe the step wrote through is gone
        store_intact(home)
        no_orphans(home)
        later_simulation_succeeds(home, tmp_path)


@pytest.mark.parametrize("warm", LAUNCHERS)
def test_where_no_pipe_can_be_made_the_log_is_still_cut_while_the_step_runs(
    home, tmp_path, warm, monkeypatch
):
    """A file system where the pipe cannot be made (here: a folder in its place): the
    step writes its log itself and the engine cuts it as it grows, long before the
    flood ends; the log ends as it would through the pipe. A real detached engine."""
    monkeypatch.setenv("CSFLOW_HOME", str(home))
    monkeypatch.setenv("CSFLOW_WARM_WORKERS", warm)
    client = Client(home=home, config_dirs=[TOY_CONFIGS])
    run = client.submit("tests/ToyFlood", OK_INPUTS)
    logs = home / "runs" / run.id / "logs"
    (logs / "run.log.pipe").mkdir(parents=True)
    with _LargestLog(home) as log_size:
        client.backend.detach(run.id)
        run = client.wait(run.id, timeout=240)
    assert run.status == "SUCCESS", run.reason
    assert log_size.largest < 100 * 1024 * 1024, log_size.largest  # not the whole flood
    text = (logs / "run.log").read_bytes()
    assert len(text) < 2 * LOG_KEEP_BYTES + 1024 and b"bytes of output cut" in text
    assert b"flood: done" in text[-4096:]
    assert stat.S_IMODE((logs / "run.log").stat().st_mode) == 0o600
    store_intact(home)
    no_orphans(home)
    later_simulation_succeeds(home, tmp_path)


@pytest.mark.parametrize("warm", LAUNCHERS)
def test_a_trimmed_log_keeps_mode_0600(tmp_path, warm):
    """30 MB of output (ToyChatty): the log is cut to its head and tail, and stays
    0600 as every step log is, on both launchers."""
    home = tmp_path / "home"
    result = simulate(home, tmp_path, "tests/ToyChatty", CSFLOW_WARM_WORKERS=warm)
    assert result.returncode == 0, result.stdout + result.stderr
    logs = home / "runs" / run_of(result)["job_id"] / "logs"
    assert b"bytes of output cut" in (logs / "run.log").read_bytes()
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in logs.iterdir()}
    assert set(modes.values()) == {0o600}, modes
    store_intact(home)
    no_orphans(home)
    later_simulation_succeeds(home, tmp_path)


# -- the disk fills during a step: the run says so --------------------------------------------


@needs_root
@pytest.mark.parametrize("warm", LAUNCHERS)
@pytest.mark.parametrize(
    "model",
    [
        pytest.param("tests/ToyFlood", id="its-log"),  # 200 MB of output on a 16 MB disk
        pytest.param("tests/ToyFill", id="a-file"),  # a file in its work folder
    ],
)
def test_a_disk_filled_during_a_step_is_the_runs_reason(tmp_path, model, warm):
    with tmpfs(tmp_path / "disk", "16m") as disk:
        home = disk / "home"
        result = simulate(home, tmp_path, model, CSFLOW_WARM_WORKERS=warm)
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        run = run_of(result)
        assert run["status"] == "FAIL", run
        assert run["reason"].startswith("run: the disk is full"), run["reason"]
        assert str(home / "runs" / run["job_id"]) in run["reason"]
        assert "free some space" in run["reason"]
        assert run["steps"]["notify"]["phase"] == "Succeeded"  # the end was reported
        shown = csflow(home, "runs", "show", run["job_id"], "-o", "json")
        assert json.loads(shown.stdout)["status"] == "FAIL"  # recorded, not INTERRUPTED
        store_intact(home)
        no_orphans(home)
        # Free the space the run took; the next simulation succeeds, the reserve is back.
        shutil.rmtree(home / "runs" / run["job_id"] / "work")
        later_simulation_succeeds(home, tmp_path)
        assert (home / "runs.db.reserve").is_file()


# -- a run store emptied, overwritten or damaged: never recreated, history recoverable ------------


def _damage_cases():
    def empty(db: Path) -> None:
        db.write_bytes(b"")

    def garbage(db: Path) -> None:
        db.write_bytes(os.urandom(5000))

    def damaged(db: Path) -> None:
        data = bytearray(db.read_bytes())
        data[100:] = os.urandom(len(data) - 100)  # SQLite's header stays
        db.write_bytes(bytes(data))

    return [
        pytest.param(empty, "is empty (0 bytes) while 1 run folder exists", id="emptied"),
        pytest.param(garbage, "is not a SQLite database", id="overwritten"),
        pytest.param(damaged, "is damaged", id="damaged"),
    ]


@pytest.mark.parametrize("damage, says", _damage_cases())
def test_a_broken_store_is_left_as_it_is_and_its_history_recoverable(
    finished_home, tmp_path, damage, says
):
    home, job_id = finished_home
    db, backup = home / "runs.db", home / "runs.db.bak"
    assert backup.is_file()  # taken when the run finished
    damage(db)
    broken = db.read_bytes()
    for command in (["runs", "list"], ["runs", "show", job_id]):
        line = error_line(csflow(home, *command), 1, db)
        assert says in line, line
        assert f"cp {backup} {db}" in line, line  # how to restore its backup
    error_line(simulate(home, tmp_path), 1, db)
    assert db.read_bytes() == broken  # not recreated, not touched
    assert (home / "runs" / job_id / "workflow.json").is_file()  # the run folders are kept
    no_orphans(home)
    # As the line says: set it aside, restore the backup; the history is back.
    db.rename(home / "runs.db.broken")
    shutil.copy(backup, db)
    store_intact(home)
    listed = csflow(home, "runs", "list", "-o", "json")
    assert [run["job_id"] for run in json.loads(listed.stdout)] == [job_id]
    later_simulation_succeeds(home, tmp_path)
    assert (home / "runs.db.broken").read_bytes() == broken


def test_a_store_emptied_with_no_run_folders_is_simply_a_new_store(home, tmp_path):
    home.mkdir()
    (home / "runs.db").write_bytes(b"")
    listed = csflow(home, "runs", "list", "-o", "json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stderr
    later_simulation_succeeds(home, tmp_path)


def test_a_store_moved_aside_without_a_backup_starts_empty(finished_home, tmp_path):
    """No backup: the line says to move it aside, and once it is, a new store starts
    while the old file and the run folders stay."""
    home, job_id = finished_home
    db = home / "runs.db"
    (home / "runs.db.bak").unlink()
    db.write_bytes(b"")
    line = error_line(csflow(home, "runs", "list"), 1, db)
    assert f"mv {db} {db}.broken" in line and "the run folders are kept" in line
    db.rename(home / "runs.db.broken")
    later_simulation_succeeds(home, tmp_path)
    assert (home / "runs" / job_id).is_dir()
