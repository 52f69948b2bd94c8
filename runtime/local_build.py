"""The embedded engine's builder: the publish flow's ``build`` step as a uv environment.

On a cluster the ``build`` step is ``csflow-image-build`` (``runtime/image_build.py``):
it makes the model's image from the build context. The embedded engine runs
this program with the same arguments instead. It reads the same build context
(``build.json``, ``requirements.lock``, ``src/``) and builds the model's uv
environment under ``$CSFLOW_HOME/envs/OWNER/TITLE/TAG/``
(``sdk/builds/environments.py``), the local stand-in for the image ``--image`` names.

Paths under ``/tmp/csflow`` (the pod's work folder) map to ``CSFLOW_WORK_DIR``.
It runs with a scrubbed environment (no platform credentials): installing
packages may run their build scripts.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from csflow.runtime import step_env
from csflow.runtime.step_env import POD_WORK_DIR


def local_path(path: str) -> Path:
    path = path.removeprefix("dir://")
    work = step_env.WORK_DIR.get()
    if work and (path == POD_WORK_DIR or path.startswith(POD_WORK_DIR + "/")):
        return Path(work) / os.path.relpath(path, POD_WORK_DIR)
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    from csflow.sdk.builds.model_image import build_step_arguments

    args = build_step_arguments("csflow-image-build (embedded engine)").parse_args(argv)

    from csflow.sdk.builds.environments import BuildError, install_environment
    from csflow.sdk.core.errors import CsflowError
    from csflow.sdk.core.settings import default_home

    context = local_path(args.context)
    try:
        info = json.loads((context / "build.json").read_text())
        lock = (context / "requirements.lock").read_text()
    except (OSError, json.JSONDecodeError) as exc:
        print(f"csflow: the build context is incomplete: {exc}", file=sys.stderr)
        return 1
    if not args.image.endswith(f":{info['tag']}"):
        print(
            f"csflow: image {args.image} does not carry the context's tag {info['tag']}",
            file=sys.stderr,
        )
        return 1
    try:
        record = install_environment(info, context / "src", lock, default_home(), progress=print)
    except (BuildError, CsflowError) as exc:
        print(f"csflow: {exc}", file=sys.stderr)
        return 1
    if args.digest_file:
        digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
        local_path(args.digest_file).write_text(f"sha256:{digest}")
    print(f"built {args.image} as a uv environment")
    return 0


if __name__ == "__main__":
    sys.exit(main())
