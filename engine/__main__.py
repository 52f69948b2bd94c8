"""``python -m csflow.engine JOB_ID``: run one submitted simulation (``--detach``)."""

from __future__ import annotations

import sys

from csflow.sdk.backends.local import LocalBackend
from csflow.sdk.settings import Settings


def main() -> int:
    run = LocalBackend(Settings()).execute(sys.argv[1])
    return 0 if run.status == "SUCCESS" else 1


if __name__ == "__main__":
    sys.exit(main())
