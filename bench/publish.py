"""Publish time for the example (Tax-Cruncher), cold and warm, and their ratio.

Each measurement is one whole ``csflow publish config/PSLmodels/Tax-Cruncher.yaml``
process, timed from outside, all in this run:

- **cold**: a fresh ``CSFLOW_HOME`` *and* a fresh, empty ``UV_CACHE_DIR``: the
  requirements are resolved anew and every wheel (Tax-Calculator, numba,
  pandas, bokeh, ...) is downloaded from PyPI, then the environment is built.
  Not cold: the Python interpreter (pyenv's, on disk), the OS file cache, and
  csflow's own environment.
- **cold home**: a fresh ``CSFLOW_HOME`` with the machine's uv cache: no lock, no
  environment, no registry, but wheels come from the cache (uv hard-links them).
- **warm**: the cold home's ``CSFLOW_HOME`` again, nothing changed: the lock
  comes from csflow's cache and the build is skipped. The contract tests
  still run in full (they are most of a publish: get_inputs over eight years,
  run_model).

    .venv/bin/python bench/publish.py [--rounds 2] [--no-download]

``--no-download`` skips the cold measurement (it downloads ~100 MB).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, bench_home  # noqa: E402

CONFIG = REPO / "config" / "PSLmodels" / "Tax-Cruncher.yaml"
CSFLOW = str(Path(sys.executable).parent / "csflow")
STEPS = ("clone", "build", "test", "verify", "push", "approve", "deploy")


def publish(home: Path, extra_env: dict[str, str] | None = None) -> tuple[float, dict]:
    env = {**os.environ, "CSFLOW_HOME": str(home), **(extra_env or {})}
    started = time.perf_counter()
    result = subprocess.run(
        [CSFLOW, "publish", str(CONFIG), "-o", "json"], env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        detail = result.stderr.strip() or result.stdout[-2000:]
        sys.exit(f"publish failed ({result.returncode}): {detail}")
    return seconds, json.loads(result.stdout)


def steps_text(run: dict) -> str:
    parts = []
    for name in STEPS:
        step = run["steps"].get(name, {})
        if step.get("phase") == "Skipped":
            parts.append(f"{name} skipped")
        elif step.get("seconds") is not None:
            parts.append(f"{name} {step['seconds']:.1f}s")
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="warm publishes (median)")
    parser.add_argument(
        "--no-download", action="store_true", help="skip the cold run with an empty uv cache"
    )
    args = parser.parse_args()

    rows: list[tuple[str, float, dict]] = []
    homes = []
    if not args.no_download:
        with tempfile.TemporaryDirectory(prefix="csflow-bench-uv-") as uv_cache:
            homes.append(bench_home("publish-cold"))
            seconds, run = publish(homes[-1], {"UV_CACHE_DIR": uv_cache})
            rows.append(("cold (fresh home, empty uv cache)", seconds, run))
    home = bench_home("publish-warm")
    homes.append(home)
    seconds, first = publish(home)
    rows.append(("cold home (fresh home, warm uv cache)", seconds, first))
    warm = [publish(home) for _ in range(max(1, args.rounds))]
    for _, run in warm:
        assert run["tag"] == first["tag"] and run["steps"]["build"]["phase"] == "Skipped", run[
            "steps"
        ]
    median = statistics.median(s for s, _ in warm)
    rows.append((f"warm (nothing changed; median of {len(warm)})", median, warm[0][1]))

    print(
        f"csflow publish {CONFIG.relative_to(REPO)} -> {first['tag']} "
        f"({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})"
    )
    width = max(len(label) for label, _, _ in rows)
    for label, seconds, run in rows:
        print(f"  {label:{width}}  {seconds:6.1f}s   {steps_text(run)}")
    for label, seconds, _ in rows[:-1]:
        print(f"warm/{label.split(' (')[0]} = {median / seconds:.2f}")
    if os.environ.get("CSFLOW_BENCH_HOME") is None:  # temp homes: ~1 GB of environments
        for path in homes:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
