"""Epoch time and trials per GPU of the project's model under any Keras 3 backend, without Ray.

For a GPU machine where TensorFlow's CUDA build cannot be installed: the machine lent to this
project has JAX and PyTorch built for CUDA 13, and no network; TensorFlow 2.21 with its CUDA 12
wheels is about 2 GB. The model (fashion_tune.model, the configuration that --config names) is
pure Keras, so it trains as it is under KERAS_BACKEND=jax or torch. Each packing k starts k
training processes at once on one GPU (k trials sharing it, as --gpus-per-trial 1/k would), each on
the training split that search and retrain use (54,000 images), and reports trial-epochs per
minute and the median epoch time after the first. What it does not measure: Ray Tune and
TensorFlow's own GPU path (benchmarks/gpu_throughput.py measures those where TensorFlow's GPU build
is installed).

    KERAS_BACKEND=jax python benchmarks/keras_backend_gpu.py --data-dir ../shared/data/fashion-mnist
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PACKINGS = (1, 2, 4, 8)


def train(args) -> dict:
    """One trial: build, train for args.epochs, time each epoch; the validation accuracy shows it learnt."""
    import keras

    from fashion_tune.config import DataSettings
    from fashion_tune.data import prepare

    config = json.loads(Path(args.config).read_text())["params"]
    splits = prepare(DataSettings(data_dir=args.data_dir))
    params, model = backend_model({**config, "epochs": args.epochs, "mixed_precision": args.mixed_precision},
                                  train_images=len(splits.y_train))

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.started)

    seconds: list[float] = []
    fit_started = time.time()
    history = model.fit(splits.x_train, splits.y_train, batch_size=params.batch_size, epochs=params.epochs,
                        validation_data=splits.validation, callbacks=[EpochTimes()], verbose=0)
    return {"epoch_s": seconds, "fit_start": fit_started, "fit_end": time.time(),
            "val_accuracy": history.history["val_accuracy"][-1], "backend": keras.backend.backend(),
            "jit_compile": params.jit_compile}


def backend_model(config: dict, train_images: int):
    """TrainParams from `config` and its model, seeded, built and compiled for the running backend."""
    import keras

    from fashion_tune.config import TrainParams
    from fashion_tune.model import build_model, compile_model

    # Keras runs the JAX backend op by op unless the step is compiled; compiling is JAX's normal way.
    jax = keras.backend.backend() == "jax"
    params = TrainParams.from_config({**config, "jit_compile": jax})
    keras.utils.set_random_seed(params.seed)
    model = build_model(params)
    if jax:
        # Keras marks its geometric augmentation layers (RandomTranslation, RandomRotation, RandomZoom)
        # as not compilable, for TensorFlow's sake (its transform op has no XLA kernel), and would
        # then run the whole step eagerly; their JAX ops compile.
        for layer in model.layers:
            layer.supports_jit = True
    return params, compile_model(model, params, train_images=train_images)


def run_packing(k: int, args) -> dict:
    """k trials at once, each in its own process, each allowed 1/k of the GPU's memory (JAX)."""
    env = {**os.environ, "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{0.9 / k:.3f}"}
    command = [sys.executable, __file__, "--worker", "--data-dir", args.data_dir, "--config", args.config,
               "--epochs", str(args.epochs)] + (["--mixed-precision"] if args.mixed_precision else [])
    started = time.time()
    workers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(k)]
    outputs = [w.communicate()[0] for w in workers]
    wall = time.time() - started
    if any(w.returncode for w in workers):
        sys.exit(f"packing {k}: a training process failed (exit codes {[w.returncode for w in workers]})")
    trials = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    epochs = sum(len(t["epoch_s"]) for t in trials)
    fitting = max(t["fit_end"] for t in trials) - min(t["fit_start"] for t in trials)
    steady = [s for t in trials for s in t["epoch_s"][1:]] or [s for t in trials for s in t["epoch_s"]]
    return {"k": k, "epochs": epochs, "wall_s": wall, "per_min_wall": 60 * epochs / wall,
            "per_min_fit": 60 * epochs / fitting, "epoch_s": statistics.median(steady),
            "first_epoch_s": statistics.median(t["epoch_s"][0] for t in trials),
            "val_accuracy": min(t["val_accuracy"] for t in trials), "backend": trials[0]["backend"],
            "jit_compile": trials[0]["jit_compile"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--config", default=str(ROOT / "results/reference/best_config.json"),
                        help="a best_config.json whose params name the model (default: the reference model's)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--packings", type=int, nargs="+", default=PACKINGS, help="trials per GPU to measure")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(train(args)), flush=True)
        return
    try:
        gpus = subprocess.run(["nvidia-smi", "-L"], check=False, capture_output=True, text=True).stdout.strip()
    except FileNotFoundError:
        gpus = "none visible here (no nvidia-smi)"
    print(f"GPU: {gpus}\nKERAS_BACKEND={os.environ.get('KERAS_BACKEND', 'tensorflow (default)')}, "
          f"config {args.config}, {args.epochs} epochs, mixed precision {args.mixed_precision}")
    print("trials/GPU  trial-epochs  wall (s)  trial-epochs/min (wall, fitting)  epoch (s, first)  "
          "lowest val acc")
    for k in args.packings:
        r = run_packing(k, args)
        print(f"{k:>10}  {r['epochs']:>12}  {r['wall_s']:>8.1f}  {r['per_min_wall']:>16.1f}, "
              f"{r['per_min_fit']:>5.1f}  {r['epoch_s']:>10.2f}, {r['first_epoch_s']:.1f}  "
              f"{r['val_accuracy']:.4f}   [{r['backend']}, jit_compile {r['jit_compile']}]", flush=True)


if __name__ == "__main__":
    main()
