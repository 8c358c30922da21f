"""What running a model as a Tune trial costs, against the same model in plain `model.fit`.

Same model (TrainParams defaults), same data split, same epochs, same TensorFlow threads. The
plain run is a fresh Python process; the Tune run is the real `fashion_tune search` CLI with a
one-trial space. Prints per-epoch times (the first epoch, which traces the graph, is left out of
the means), their ratio, start-up costs, and the CLI's --help time.

    python benchmarks/overhead.py --data-dir ../shared/data/fashion-mnist [--epochs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, epoch_rows, one_model_space, run_study

sys.path.insert(0, str(ROOT))


def plain_fit(args) -> None:
    """Child process: train with plain model.fit and print the epoch times as JSON."""
    from fashion_tune import data
    from fashion_tune.config import DataSettings, TrainParams
    from fashion_tune.trainable import configure_tensorflow

    configure_tensorflow(args.threads)
    import keras

    from fashion_tune.model import compiled_model

    params = TrainParams(epochs=args.epochs)
    splits = data.prepare(DataSettings(data_dir=args.data_dir, subset=args.subset, seed=params.seed))
    model = compiled_model(params, len(splits.y_train))
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    model.fit(splits.x_train, splits.y_train, batch_size=params.batch_size, epochs=params.epochs,
              validation_data=splits.validation, callbacks=[Timer()], verbose=0)
    print(json.dumps({"epoch_s": times}))


def tune_fit(args, workdir: Path) -> dict:
    """The same model as a one-trial study through the real CLI."""
    space = one_model_space(workdir / "one.yaml", args.epochs)
    began = time.perf_counter()
    run_study(space, "one", workdir, args.data_dir, "--cpus-per-trial", str(args.threads),
              *(["--subset", str(args.subset)] if args.subset else []))
    wall = time.perf_counter() - began
    rows = epoch_rows(workdir / "one")
    return {
        "wall_s": wall,
        "epoch_s": [r["epoch_time_s"] for r in rows],  # Keras's epoch inside the trial
        "iteration_s": [r["time_this_iter_s"] for r in rows],  # epoch + checkpoint + report to Tune
    }


def cli_help_s(repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fashion_tune", "--help"], cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--subset", type=int, help="training images (default: all 60,000)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plain-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_child:
        return plain_fit(args)

    child = [sys.executable, __file__, "--plain-child", "--data-dir", args.data_dir, "--epochs", str(args.epochs),
             "--threads", str(args.threads)] + (["--subset", str(args.subset)] if args.subset else [])
    began = time.perf_counter()
    done = subprocess.run(child, cwd=ROOT, check=True, capture_output=True, text=True)
    plain = {"wall_s": time.perf_counter() - began, **json.loads(done.stdout.strip().splitlines()[-1])}
    with tempfile.TemporaryDirectory() as workdir:
        tuned = tune_fit(args, Path(workdir))

    def steady(values):
        return statistics.mean(values[1:]) if len(values) > 1 else values[0]

    plain_epoch, trial_epoch, trial_iter = steady(plain["epoch_s"]), steady(tuned["epoch_s"]), steady(tuned["iteration_s"])
    print(f"model: TrainParams defaults, {args.epochs} epochs, {args.threads} TensorFlow threads, "
          f"{'all' if not args.subset else args.subset} training images")
    print(f"plain model.fit   per epoch: {plain_epoch:7.2f} s   process wall: {plain['wall_s']:7.1f} s")
    print(f"Tune trial        per epoch: {trial_epoch:7.2f} s   (Keras epoch inside the trial)")
    print(f"Tune trial   per iteration: {trial_iter:7.2f} s   (epoch + checkpoint + report)   CLI wall: {tuned['wall_s']:7.1f} s")
    print(f"ratio per epoch (iteration / plain epoch): {trial_iter / plain_epoch:.3f}")
    print(f"ratio whole run (CLI wall / plain wall):   {tuned['wall_s'] / plain['wall_s']:.3f}")
    startup_plain = plain["wall_s"] - sum(plain["epoch_s"])
    startup_tune = tuned["wall_s"] - sum(tuned["iteration_s"])
    print(f"start-up and wind-down: plain {startup_plain:.1f} s, Tune {startup_tune:.1f} s "
          f"(Ray start, trial process, TensorFlow import, data from the object store, reports)")
    print(f"`python -m fashion_tune --help`: {cli_help_s():.2f} s (median of 5)")


if __name__ == "__main__":
    main()
