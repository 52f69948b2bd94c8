"""Result cache: how fast a hit answers, and how many model runs five identical
submissions at once make.

A hit returns the stored results as a run of its own (sdk/dataplane/result_cache.py).
Aims: a hit's CLI ``csflow simulate`` wall time <= 0.5 s (the whole command, its
start-up included), the SDK's ``Client.simulate`` <= 0.05 s; five identical
submissions at once (five CLI processes) -> one model run. Uses the Tax-Cruncher
example (its environment built once, and one run made to fill the cache, untimed),
then times ``--count`` hits each way (median) and prints the ratios to the aims.

    .venv/bin/python bench/result_cache.py [--count 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import EXAMPLE_INPUTS, MODEL, REPO, bench_home, example_inputs  # noqa: E402

from csflow.sdk.client import Client  # noqa: E402

CLI_AIM, SDK_AIM = 0.5, 0.05
CSFLOW = Path(sys.executable).with_name("csflow")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10)
    args = parser.parse_args()
    home = bench_home("result-cache")
    os.environ["CSFLOW_HOME"] = str(home)
    env = {**os.environ, "CSFLOW_CONFIG_DIRS": json.dumps([str(REPO / "config")])}
    client = Client(home=home, config_dirs=[REPO / "config"])
    inputs = example_inputs()
    client.backend.resolve(*MODEL.split("/"), None, print)  # build once, untimed
    first = client.simulate(MODEL, inputs)  # fills the cache, untimed
    print(f"first run {first.id}: {first.status}")

    sdk = []
    for _ in range(args.count):
        started = time.perf_counter()
        run = client.simulate(MODEL, inputs)
        sdk.append(time.perf_counter() - started)
        assert run.cached_from == first.id, run
    command = [str(CSFLOW), "simulate", MODEL, "-i", str(EXAMPLE_INPUTS), "-o", "json"]
    cli = []
    for _ in range(args.count):
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, check=True)
        cli.append(time.perf_counter() - started)
        assert json.loads(done.stdout).get("cached_from") == first.id
    sdk_median, cli_median = statistics.median(sdk), statistics.median(cli)
    for what, times in (("SDK", sdk), ("CLI", cli)):
        median, slowest = statistics.median(times) * 1000, max(times) * 1000
        print(f"{args.count} {what} hits: median {median:.1f} ms, slowest {slowest:.1f} ms")
    print(f"sdk hit ratio: {sdk_median / SDK_AIM:.3f}  (median / {SDK_AIM}s; target <= 1.0)")
    print(f"cli hit ratio: {cli_median / CLI_AIM:.3f}  (median / {CLI_AIM}s; target <= 1.0)")

    # Single flight: new inputs (a miss), five CLI submissions at once.
    fresh = json.loads(EXAMPLE_INPUTS.read_text())
    fresh.setdefault("meta_param_dict", {})["year"] = 2023
    path = home / "single-flight.json"
    path.write_text(json.dumps(fresh))
    command = [str(CSFLOW), "simulate", MODEL, "-i", str(path), "-o", "json"]
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE) for _ in range(5)]
    runs = [json.loads(p.communicate()[0]) for p in processes]
    model_runs = sum(1 for r in runs if not r.get("cached"))
    print(f"single flight: 5 identical submissions at once -> {model_runs} model run(s)")
    print(f"single flight ratio: {model_runs / 1:.3f}  (model runs / 1; target <= 1.0)")


if __name__ == "__main__":
    main()
