"""The embedded engine's builder: what kaniko does on Argo, as a uv environment.

The publish flow's ``build`` step is a kaniko container
(``/kaniko/executor --context=dir:///tmp/csflow/context --destination=IMAGE``).
The embedded engine runs this program with the same arguments instead. It
reads the same build context (``build.json``, ``requirements.lock``,
``src/``; the Dockerfile is for kaniko) and builds the model's uv environment
under ``$CSFLOW_HOME/envs/OWNER/TITLE/TAG/`` (``engine/environments.py``), the
local stand-in for the image ``--destination`` names.

Paths under ``/tmp/csflow`` (the pod's work folder) map to ``CSFLOW_WORK_DIR``.
It runs with a scrubbed environment (no platform credentials): installing
packages may run their build scripts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

POD_WORK_DIR = "/tmp/csflow"


def local_path(path: str) -> Path:
    path = path.removeprefix("dir://")
    work = os.environ.get("CSFLOW_WORK_DIR")
    if work and (path == POD_WORK_DIR or path.startswith(POD_WORK_DIR + "/")):
        return Path(work) / os.path.relpath(path, POD_WORK_DIR)
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    # kaniko's flags (https://github.com/GoogleContainerTools/kaniko#additional-flags);
    # the ones that only matter to an image build are accepted and ignored.
    parser = argparse.ArgumentParser(prog="kaniko (csflow embedded engine)")
    parser.add_argument("--context", required=True)
    parser.add_argument("--dockerfile", default="")
    parser.add_argument("--destination", required=True)
    parser.add_argument("--digest-file", default="")
    parser.add_argument("--snapshot-mode", default="")
    parser.add_argument("--use-new-run", action="store_true")
    args = parser.parse_args(argv)

    from csflow.engine.environments import BuildError, install_environment
    from csflow.sdk.errors import CsflowError
    from csflow.sdk.settings import default_home

    context = local_path(args.context)
    try:
        info = json.loads((context / "build.json").read_text())
        lock = (context / "requirements.lock").read_text()
    except (OSError, json.JSONDecodeError) as exc:
        print(f"csflow: the build context is incomplete: {exc}", file=sys.stderr)
        return 1
    if not args.destination.endswith(f":{info['tag']}"):
        print(f"csflow: destination {args.destination} does not carry the context's tag {info['tag']}",
              file=sys.stderr)
        return 1
    try:
        record = install_environment(info, context / "src", lock, default_home(), progress=print)
    except (BuildError, CsflowError) as exc:
        print(f"csflow: {exc}", file=sys.stderr)
        return 1
    if args.digest_file:
        digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
        local_path(args.digest_file).write_text(f"sha256:{digest}")
    print(f"built {args.destination} as a uv environment")
    return 0


if __name__ == "__main__":
    sys.exit(main())
