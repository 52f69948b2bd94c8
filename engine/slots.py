"""At most N simulations at once on this machine, across engine processes.

Each running simulation holds one of N slot files under an exclusive
``flock``; the kernel releases it if the engine dies, so a crash never leaks a
slot. (A semaphore that spans unrelated processes and survives their crashes
is not in the standard library; flock on N files is the smallest one.)
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def slot(directory: Path, count: int, poll: float = 0.05) -> Iterator[int]:
    directory.mkdir(parents=True, exist_ok=True)
    handles = [open(directory / f"slot-{i}", "a") for i in range(count)]
    try:
        while True:
            for index, handle in enumerate(handles):
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                try:
                    yield index
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
                return
            time.sleep(poll)
    finally:
        for handle in handles:
            handle.close()
