"""The publish flow's ``build`` step on a cluster: ``csflow-image-build``.

Builds ``REGISTRY/owner_title:TAG`` from the build context (``sdk/builds/model_image.py``:
one layer installed by uv, appended to the base image and pushed by crane), as
the unprivileged user every step runs as. The embedded engine runs
``runtime/local_build.py`` with the same arguments instead.

The config's ``system_packages`` are fetched by apt (the base image's dpkg database
decides what is missing) and unpacked into that layer (``sdk/builds/debian.py``);
its ``image.base`` replaces the installation's base image.

Configuration (the ``csflow-platform`` ConfigMap): ``CSFLOW_MODEL_BASE_IMAGE``
(default ``python:{python}-slim-bookworm``) and ``CSFLOW_REGISTRY_INSECURE``
(plain-HTTP registries, for a development cluster). Registry credentials come
from ``$DOCKER_CONFIG/config.json`` (the ``csflow-registry-push`` Secret).
The step gets no platform credentials: installing packages may run code the
model's author chose.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from csflow.runtime.local_build import local_path
from csflow.sdk.builds import debian, model_image
from csflow.sdk.core.errors import CsflowError


class BuildFailed(Exception):
    pass


def _run(command: list[str], what: str) -> subprocess.CompletedProcess:
    print(f"{what}: {' '.join(command[:3])} ...", flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        raise BuildFailed(
            f"{what} failed: {lines[-1].strip() if lines else f'exit {done.returncode}'}"
        )
    return done


def main(argv: list[str] | None = None) -> int:
    args = model_image.build_step_arguments("csflow-image-build").parse_args(argv)
    from csflow.sdk.builds.environments import uv_bin
    from csflow.sdk.core.settings import Settings

    settings = Settings()
    context = local_path(args.context)
    crane = shutil.which("crane")
    try:
        info = json.loads((context / "build.json").read_text())
        if not args.image.endswith(f":{info['tag']}"):
            raise BuildFailed(f"image {args.image} does not carry the context's tag {info['tag']}")
        if crane is None:
            raise BuildFailed("crane is not on PATH (the csflow image carries it)")
        base = model_image.base_image(info, settings.model_base_image)
        insecure = ["--insecure"] if settings.registry_insecure else []
        packages = info["config"].get("system_packages") or []
        with tempfile.TemporaryDirectory(prefix="csflow-build-") as tmp:
            debs = []
            if packages:
                export = [crane, "export", "--platform", model_image.IMAGE_PLATFORM, *insecure]
                debs = debian.fetch_for_image(
                    packages,
                    [*export, base, "-"],
                    Path(tmp) / "debian",
                    model_image.IMAGE_PLATFORM.partition("/")[2],
                    _run,
                )
                fetched = ", ".join(deb.name for deb in debs) or "none"
                print(f"Debian packages the base lacks: {fetched}", flush=True)
            layer = Path(tmp) / "layer.tar"
            skipped = model_image.write_layer(context, info, layer, uv_bin(), _run, debs)
            if skipped:
                print(f"unpacked without running their maintainer scripts: {', '.join(skipped)}")
            print(f"layer: {layer.stat().st_size / 1e6:.1f} MB", flush=True)
            pushed = _run(
                model_image.crane_mutate_command(
                    crane, info, layer, args.image, base, insecure=settings.registry_insecure
                ),
                f"appending the layer to {base} and pushing {args.image}",
            ).stdout.strip()
    except (OSError, KeyError, json.JSONDecodeError) as exc:
        print(f"csflow: the build context is incomplete: {exc}", file=sys.stderr)
        return 1
    except (BuildFailed, CsflowError) as exc:
        print(f"csflow: {exc}", file=sys.stderr)
        return 1
    digest = pushed.rpartition("@")[2]
    if args.digest_file:
        local_path(args.digest_file).write_text(digest)
    print(f"built {args.image} ({digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
