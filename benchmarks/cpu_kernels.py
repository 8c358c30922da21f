"""What oneDNN's CPU kernels buy: the same training steps and predictions with TensorFlow's
oneDNN kernels off and on (TF_ENABLE_ONEDNN_OPTS=0 / 1), each in a fresh process (the variable is
read at import), alternated A B A B so a shared host's drift lands on both.

TensorFlow turns oneDNN on by itself only on CPUs with AVX-512 VNNI or newer; fashion_tune turns
it on everywhere (fashion_tune/__init__.py) unless TF_ENABLE_ONEDNN_OPTS is set. Two workloads:
a search trial (the default model, 1 thread, its batch size) and the retrain (the reference
configuration, 2 threads, batch 256), on random images (only their shape matters to the time).
Each process also reports its CPU seconds over wall seconds, to show that oneDNN keeps to the
threads it was given.

    python benchmarks/cpu_kernels.py [--pairs 3] [--steps 12]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from common import ROOT, alternate, paired_ratios

sys.path.insert(0, str(ROOT))

WORKLOADS = {  # name: (configuration, TensorFlow threads)
    "trial": (None, 1),  # TrainParams() defaults: what a search trial trains on one CPU
    "retrain": (ROOT / "results" / "reference" / "best_config.json", 2),
}


def measure(workload: str, steps: int) -> None:
    """In this process: time `steps` training steps and as many predicted batches; print json."""
    import numpy as np

    from fashion_tune import batches
    from fashion_tune.config import TrainParams
    from fashion_tune.model import compiled_model
    from fashion_tune.quiet_tensorflow import configure_tensorflow

    config, threads = WORKLOADS[workload]
    configure_tensorflow(threads)
    from tensorflow.python.util import _pywrap_util_port  # the one place TensorFlow says whether oneDNN is on

    params = TrainParams.from_config(json.loads(config.read_text())["params"]) if config else TrainParams()
    rng = np.random.default_rng(0)
    images = rng.random((params.batch_size * steps, 28, 28, 1), dtype=np.float32)
    labels = rng.integers(0, 10, len(images))
    model = compiled_model(params, len(images))
    # Fed as every fit and predict of the package is (batches.py), traced first, untimed.
    model.fit(**batches.for_fit(images[: 2 * params.batch_size], labels[: 2 * params.batch_size], params.batch_size),
              epochs=1, verbose=0)
    cpu, wall = time.process_time(), time.perf_counter()
    model.fit(**batches.for_fit(images, labels, params.batch_size), epochs=1, verbose=0)
    fit_s = time.perf_counter() - wall
    predict_began = time.perf_counter()
    model.predict(batches.in_order(images, batch_size=params.batch_size), verbose=0)
    predict_s = time.perf_counter() - predict_began
    print(json.dumps({"onednn": bool(_pywrap_util_port.IsMklEnabled()), "train_step_ms": 1000 * fit_s / steps,
                      "predict_batch_ms": 1000 * predict_s / steps,
                      "cpu_per_wall": (time.process_time() - cpu) / (time.perf_counter() - wall)}))


def in_fresh_process(workload: str, steps: int, onednn: str) -> dict:
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn}
    done = subprocess.run([sys.executable, __file__, "--measure", workload, "--steps", str(steps)], env=env,
                          capture_output=True, text=True, check=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["onednn"] == (onednn == "1"), f"TF_ENABLE_ONEDNN_OPTS={onednn} but oneDNN on: {found['onednn']}"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12, help="training steps (and predicted batches) timed")
    parser.add_argument("--measure", choices=list(WORKLOADS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measure(args.measure, args.steps)
    for workload, (_, threads) in WORKLOADS.items():
        figures = alternate({"off": lambda: in_fresh_process(workload, args.steps, "0"),
                             "on": lambda: in_fresh_process(workload, args.steps, "1")}, args.pairs)
        print(f"\n{workload} ({threads} thread{'s' * (threads > 1)}), oneDNN off -> on, "
              f"median over {args.pairs} pairs:")
        for key in ("train_step_ms", "predict_batch_ms", "cpu_per_wall"):
            off, on = ([f[key] for f in figures[v]] for v in ("off", "on"))
            print(f"  {key:<17} off {statistics.median(off):8.1f}  on {statistics.median(on):8.1f}")
        for key in ("train_step_ms", "predict_batch_ms"):
            print("  " + paired_ratios(f"{key} off/on (speed-up)", [f[key] for f in figures["off"]],
                                       [f[key] for f in figures["on"]]))


if __name__ == "__main__":
    main()
