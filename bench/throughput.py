"""Throughput of the embedded engine: 10 simulations submitted at once.

Prints wall time / (10 x one simulation / cores), all measured in this run.
1.0 means the cores were kept busy with no overhead; target <= 1.2. The
engine bounds concurrency by the cores (``max_parallel``).

    .venv/bin/python bench/throughput.py [--count 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MODEL, REPO, bench_home, example_inputs  # noqa: E402

from csflow.sdk.client import Client  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    home = bench_home("throughput")
    os.environ["CSFLOW_HOME"] = str(home)
    client = Client(home=home, config_dirs=[REPO / "config"])
    inputs = example_inputs()  # the same each time: no_cache, so each one runs the model
    client.backend.resolve(*MODEL.split("/"), None, print)
    client.simulate(MODEL, inputs, no_cache=True)  # warm-up
    started = time.perf_counter()
    single = client.simulate(MODEL, inputs, no_cache=True)
    one = time.perf_counter() - started
    assert single.status == "SUCCESS", single.reason
    started = time.perf_counter()
    runs = [client.simulate(MODEL, inputs, detach=True, no_cache=True) for _ in range(args.count)]
    finished = [client.wait(run.id, timeout=3600) for run in runs]
    wall = time.perf_counter() - started
    statuses = {run.status for run in finished}
    ideal = args.count * one / cores
    print(
        f"one simulation: {one:.2f}s; cores: {cores}; max_parallel: {client.settings.max_parallel}"
    )
    print(
        f"{args.count} at once: {wall:.2f}s wall (ideal {ideal:.2f}s); statuses: {sorted(statuses)}"
    )
    print(f"throughput ratio: {wall / ideal:.3f}  (target <= 1.2)")


if __name__ == "__main__":
    main()
