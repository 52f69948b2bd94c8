"""The detached engine: `python -m csflow.sdk.backends.local_engine JOB_ID` runs one
submitted run in its own process (`--detach`), with the local backend."""

from __future__ import annotations

import sys

from csflow.sdk.backends.local import LocalBackend
from csflow.sdk.core.settings import Settings
from csflow.sdk.core.status import RunStatus


def main() -> int:
    try:
        run = LocalBackend(Settings()).execute(sys.argv[1])
    except KeyboardInterrupt:  # SIGINT: the run was cancelled and recorded
        return 130
    return 0 if run.status == RunStatus.SUCCESS else 1


if __name__ == "__main__":
    sys.exit(main())
