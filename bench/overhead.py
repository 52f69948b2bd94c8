"""Overhead of the embedded engine on one simulation.

Compares ``csflow simulate`` of the example (the whole CLI process: engine,
four steps, storage) with calling the same four model functions directly in
one fresh Python process of the same model environment. Prints the ratio,
both measured in this run (median of N alternating rounds). Target: <= 1.15.

    .venv/bin/python bench/overhead.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import EXAMPLE_INPUTS, MODEL, REPO, bench_home  # noqa: E402

from csflow.sdk.client import Client  # noqa: E402

DIRECT = """
import json, sys
from importlib import import_module
functions = import_module(sys.argv[1])
job = json.load(open(sys.argv[2]))
meta, adjustment = job["meta_param_dict"], job["adjustment"]
functions.get_version()
sections = functions.get_inputs(meta)["model_parameters"]
template = {name: {"errors": {}, "warnings": {}} for name in sections}
functions.validate_inputs(meta, adjustment, template)
functions.run_model(meta, adjustment)
"""


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    home = bench_home("overhead")
    client = Client(home=home, config_dirs=[REPO / "config"])
    version = client.backend.resolve(*MODEL.split("/"), None, print)  # builds the env once
    env = {**os.environ, "CSFLOW_HOME": str(home)}
    model_env = {**env, **version.config["env"], "PYTHONPATH": str(version.source)}
    csflow = [
        str(Path(sys.executable).parent / "csflow"),
        "simulate",
        MODEL,
        "--inputs",
        str(EXAMPLE_INPUTS),
        "-o",
        "json",
        "--no-cache",  # every round runs the model (a hit would measure the result cache)
    ]
    direct = [str(version.python), "-c", DIRECT, version.config["functions"], str(EXAMPLE_INPUTS)]
    timed(csflow, env)  # warm the OS file cache and the compiled-flow cache
    engine_times, direct_times = [], []
    for _ in range(args.rounds):
        direct_times.append(timed(direct, model_env))
        engine_times.append(timed(csflow, env))
    engine, plain = statistics.median(engine_times), statistics.median(direct_times)
    direct_rounds = ", ".join(f"{t:.2f}" for t in direct_times)
    engine_rounds = ", ".join(f"{t:.2f}" for t in engine_times)
    print(f"direct four functions: {plain:.2f}s  (rounds: {direct_rounds})")
    print(f"csflow simulate:       {engine:.2f}s  (rounds: {engine_rounds})")
    print(f"overhead ratio: {engine / plain:.3f}  (target <= 1.15)")


if __name__ == "__main__":
    main()
