"""Record the learning curves of every configuration of a discrete space: real training on the real
data, every epoch's validation accuracy and loss, training accuracy and loss, and seconds, to the
space's full budget, one JSON line a run (fashion_tune/recording.py). Searches over the space are
then replayed from the recording (`search --replay`), scheduler by scheduler, seed by seed, in
seconds instead of hours.

Every configuration trains with seed 0; --noise-configs of them (spread over the table by their
index) also train with seeds 1..--noise-seeds, so the replay knows how far a rerun of the same
configuration moves. Each run trains alone in its process with --threads TensorFlow threads,
--parallel runs at a time. The data are the training images' stratified --subset, split into
training and validation (--val-fraction) with seed 0; the test images are never loaded.

Resumable: runs already in --out are skipped, so the same command continues an interrupted
recording (a run cut short is trained again from its start).

    python benchmarks/record_curves.py --data-dir ../shared/data/fashion-mnist --space tabular \
        --out results/reference/replay/curves.jsonl [--subset 12000 --val-fraction 0.25] \
        [--parallel 2 --threads 1] [--noise-configs 4 --noise-seeds 4]

Under KERAS_BACKEND=jax on a GPU machine the same command records there; each line says which
back-end, device and host recorded it.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fashion_tune import recording  # noqa: E402
from fashion_tune.space import load_space  # noqa: E402


def table(space) -> list[dict]:
    """Every configuration of a space whose searched parameters are all categorical, in a fixed order."""
    if any(p.type != "categorical" for p in space.params):
        sys.exit(f"{space.path}: every searched parameter must be categorical to be recorded as a table")
    names = [p.name for p in space.params]
    return [dict(zip(names, values)) for values in itertools.product(*(p.choices for p in space.params))]


def planned_runs(configs: list[dict], noise_configs: int, noise_seeds: int) -> list[tuple[dict, int]]:
    """(configuration, seed): seed 0 for all, then the extra seeds of evenly spaced configurations."""
    runs = [(c, 0) for c in configs]
    step = max(1, len(configs) // max(1, noise_configs))
    for config in configs[step // 2::step][:noise_configs]:
        runs += [(config, seed) for seed in range(1, noise_seeds + 1)]
    return runs


_splits = None


def _start_worker(data_settings: dict, threads: int) -> None:
    global _splits
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from fashion_tune import data
    from fashion_tune.config import DataSettings
    from fashion_tune.quiet_tensorflow import configure_tensorflow

    configure_tensorflow(threads)
    _splits = data.prepare(DataSettings(**data_settings))


def train_one(job: tuple[dict, dict, int, str]) -> recording.RecordedRun:
    """Train one configuration to its budget, keeping every epoch."""
    config, fixed, seed, backend = job
    import keras

    from fashion_tune import batches
    from fashion_tune.config import TrainParams
    from fashion_tune.model import compiled_model

    keras.backend.clear_session(free_memory=True)
    params = TrainParams.from_config({**fixed, **config, "seed": seed})
    model = compiled_model(params, len(_splits.y_train))
    epochs, started = [], [0.0]

    class Keep(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            started[0] = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            metrics = {"val_accuracy": logs["val_accuracy"], "val_loss": logs["val_loss"],
                       "train_accuracy": logs["accuracy"], "train_loss": logs["loss"]}
            epochs.append({**{k: round(float(v), 6) for k, v in metrics.items()},
                           "epoch_time_s": round(time.perf_counter() - started[0], 3)})

    model.fit(**batches.for_fit(_splits.x_train, _splits.y_train, params.batch_size, _splits.validation),
              epochs=params.epochs, callbacks=[Keep()], verbose=0)
    return recording.RecordedRun(config=config, seed=seed, epochs=epochs, fixed=fixed, backend=backend)


def backend_name(threads: int) -> str:
    import keras

    device = "gpu" if os.environ.get("CUDA_VISIBLE_DEVICES", "") not in ("", "-1") else "cpu"
    return f"keras {keras.__version__} {keras.backend.backend()} {device}, {threads} threads, {platform.node()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--space", default="tabular")
    parser.add_argument("--out", default="results/reference/replay/curves.jsonl")
    parser.add_argument("--subset", type=int, default=12000)
    parser.add_argument("--val-fraction", type=float, default=0.25)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--noise-configs", type=int, default=4)
    parser.add_argument("--noise-seeds", type=int, default=4)
    parser.add_argument("--limit", type=int, help="record at most this many runs now (the rest next time)")
    args = parser.parse_args()

    space = load_space(args.space)
    fixed = {k: v for k, v in space.fixed.items()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {(r.key(), r.seed) for r in recording.read(out)} if out.is_file() and out.stat().st_size else set()
    runs = [(c, s) for c, s in planned_runs(table(space), args.noise_configs, args.noise_seeds)
            if (recording.config_key(c, c), s) not in done]
    print(f"{len(done)} runs recorded in {out}; {len(runs)} to go", flush=True)
    runs = runs[:args.limit] if args.limit else runs
    data_settings = {"data_dir": args.data_dir, "subset": args.subset, "val_fraction": args.val_fraction, "seed": 0}
    recorded_data = {k: v for k, v in data_settings.items() if k != "data_dir"}
    with multiprocessing.get_context("spawn").Pool(args.parallel, _start_worker,
                                                   (data_settings, args.threads)) as pool:
        backend = pool.apply(backend_name, (args.threads,))
        jobs = [(config, fixed, seed, backend) for config, seed in runs]
        started = time.time()
        for n, run in enumerate(pool.imap_unordered(train_one, jobs), 1):
            recording.append(out, recording.RecordedRun(**{**run.__dict__, "data": recorded_data}))
            seconds = sum(e["epoch_time_s"] for e in run.epochs)
            print(f"{n}/{len(jobs)} {run.key()} seed {run.seed}: val_accuracy {run.epochs[-1]['val_accuracy']:.4f} "
                  f"after {len(run.epochs)} epochs, {seconds:.0f} s; {(time.time() - started) / 60:.1f} min so far",
                  flush=True)


if __name__ == "__main__":
    main()
