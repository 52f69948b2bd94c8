"""A step's log cut while the step writes it itself (no pipe): nothing it writes
after the kept tail is lost, however fast it writes. A real writer process."""

from __future__ import annotations

import os
import subprocess
import sys

from csflow.engine import runner

WRITER = """
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
for i in range(int(sys.argv[2])):
    os.write(fd, b"%d\\n" % i)
"""


def test_a_log_cut_while_its_writer_writes_loses_nothing_after_the_cut(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "MAX_LOG_BYTES", 64 * 1024)
    monkeypatch.setattr(runner, "LOG_KEEP_BYTES", 16 * 1024)
    path = tmp_path / "run.log"
    lines = 400_000
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(lines)], start_new_session=True
    )
    log = runner._StepLog(path)
    cuts = 0
    while writer.poll() is None:
        before = log.cut
        log.enforce(writer.pid)
        cuts += log.cut > before
    assert writer.returncode == 0
    assert cuts >= 3, cuts  # it was cut while it wrote, more than once
    assert os.stat(path).st_size < 2 * runner.MAX_LOG_BYTES
    text = path.read_bytes()
    assert text.startswith(b"0\n1\n2\n")
    after = text.rsplit(b"bytes of output cut]\n", 1)[1].split(b"\n")
    numbers = [int(n) for n in after[1:-1]]  # the first may be a line cut in two
    assert numbers, after
    assert numbers[-1] == lines - 1  # its last words
    assert numbers == list(range(numbers[0], lines)), "a write was lost in a cut"
