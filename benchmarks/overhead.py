"""What running a model as a Tune trial costs, against the same model in plain `model.fit`.

Same model (TrainParams defaults), same data split and input pipeline (batches.py), same epochs,
same TensorFlow threads. The plain run is a fresh Python process; the Tune run is the real
`fashion_tune search` CLI with a one-trial space. The two alternate, plain then Tune, --pairs
times, so a shared host's drift falls on both; each pair gives a ratio, and the median and range of
those are the result (too wide a range is said, not averaged away). Per-epoch times leave out the
first epoch, which traces the graph.

    python benchmarks/overhead.py --data-dir ../shared/data/fashion-mnist [--epochs 3] [--threads 2] [--pairs 3]
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

from common import ROOT, alternate, epoch_rows, one_model_space, paired_ratios, run_study

sys.path.insert(0, str(ROOT))


def plain_fit(args) -> None:
    """Child process: train with plain model.fit and print the epoch times as JSON."""
    from fashion_tune import batches, data
    from fashion_tune.config import DataSettings, TrainParams
    from fashion_tune.quiet_tensorflow import configure_tensorflow

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

    model.fit(**batches.for_fit(splits.x_train, splits.y_train, params.batch_size, splits.validation),
              epochs=params.epochs, callbacks=[Timer()], verbose=0)
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
    parser.add_argument("--pairs", type=int, default=3, help="plain-then-Tune rounds (at least 3 to judge the spread)")
    parser.add_argument("--plain-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_child:
        return plain_fit(args)

    child = [sys.executable, __file__, "--plain-child", "--data-dir", args.data_dir, "--epochs", str(args.epochs),
             "--threads", str(args.threads)] + (["--subset", str(args.subset)] if args.subset else [])

    def plain() -> dict:
        began = time.perf_counter()
        done = subprocess.run(child, cwd=ROOT, check=True, capture_output=True, text=True)
        return {"wall_s": time.perf_counter() - began, **json.loads(done.stdout.strip().splitlines()[-1])}

    def tuned() -> dict:
        with tempfile.TemporaryDirectory() as workdir:
            return tune_fit(args, Path(workdir))

    runs = alternate({"plain model.fit": plain, "Tune trial": tuned}, args.pairs)

    def steady(values):
        return statistics.mean(values[1:]) if len(values) > 1 else values[0]

    plain_epoch = [steady(r["epoch_s"]) for r in runs["plain model.fit"]]
    trial_epoch = [steady(r["epoch_s"]) for r in runs["Tune trial"]]
    trial_iter = [steady(r["iteration_s"]) for r in runs["Tune trial"]]
    print(f"model: TrainParams defaults, {args.epochs} epochs, {args.threads} TensorFlow threads, "
          f"{'all' if not args.subset else args.subset} training images; {args.pairs} pairs, plain first in each")
    for i, (p, e, it) in enumerate(zip(plain_epoch, trial_epoch, trial_iter)):
        print(f"pair {i + 1}: plain epoch {p:6.2f} s, Tune epoch {e:6.2f} s, Tune iteration {it:6.2f} s "
              "(epoch + checkpoint + report)")
    print(paired_ratios("per epoch, Tune iteration / plain epoch", trial_iter, plain_epoch))
    print(paired_ratios("whole run, CLI wall / plain process wall", [r["wall_s"] for r in runs["Tune trial"]],
                        [r["wall_s"] for r in runs["plain model.fit"]]))
    startup_plain = statistics.median(r["wall_s"] - sum(r["epoch_s"]) for r in runs["plain model.fit"])
    startup_tune = statistics.median(r["wall_s"] - sum(r["iteration_s"]) for r in runs["Tune trial"])
    print(f"start-up and wind-down (medians): plain {startup_plain:.1f} s, Tune {startup_tune:.1f} s "
          f"(Ray start, trial process, TensorFlow import, data from the object store, reports)")
    print(f"`python -m fashion_tune --help`: {cli_help_s():.2f} s (median of 5)")


if __name__ == "__main__":
    main()
