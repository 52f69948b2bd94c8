"""Detached submit latency: how long the SDK takes to hand back a job id.

The C/S 1.6 webapp allowed 1.7 s for its synchronous calls to the compute
cluster; the aim here is a median <= 0.2 s. Measures ``Client.simulate(...,
detach=True)`` 20 times on a published model (its environment built once,
before timing) and prints the median, the slowest, and median / 0.2 s. Each run
is cancelled as soon as it is submitted, so the engines do not compete with the
next submission for the cores.

    .venv/bin/python bench/submit_latency.py [--count 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MODEL, REPO, bench_home, example_inputs  # noqa: E402

from csflow.sdk.client import Client  # noqa: E402

AIM_SECONDS = 0.2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()
    home = bench_home("submit-latency")
    os.environ["CSFLOW_HOME"] = str(home)
    client = Client(home=home, config_dirs=[REPO / "config"])
    inputs = example_inputs()
    client.backend.resolve(*MODEL.split("/"), None, print)  # build once, untimed
    seconds = []
    for _ in range(args.count):
        started = time.perf_counter()
        # no_cache: each submit records a new run (identical inputs would otherwise
        # wait on the previous one's claim)
        run = client.simulate(MODEL, inputs, detach=True, no_cache=True)
        seconds.append(time.perf_counter() - started)
        client.cancel(run.id)
    median, slowest = statistics.median(seconds) * 1000, max(seconds) * 1000
    print(f"{args.count} detached submits: median {median:.1f} ms, slowest {slowest:.1f} ms")
    ratio = median / 1000 / AIM_SECONDS
    print(f"submit latency ratio: {ratio:.3f}  (median / {AIM_SECONDS}s; target <= 1.0)")


if __name__ == "__main__":
    main()
