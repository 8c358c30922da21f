"""Model choices compared on validation data: each variant of a configuration trained on the
54,000-image training split, over several seeds, and scored on the 5,400 validation images alone
(the test images are never loaded), plain, with horizontal-flip averaging (TTA), and as an
ensemble of its seeds. With --tiers, also on the validation images rendered under each of
`evaluate`'s photo tiers (photo_views.tier_views; rendered once here, then cached): the options that
change how a model does on product photos (photo_share, issue 32) are chosen there.

The grid is a YAML file: a base configuration (a best_config.json), default epochs and seeds,
and named variants, each a set of TrainParams overrides (optionally its own epochs and seeds):

    base: results/reference/best_config.json
    epochs: 30
    seeds: [0, 1, 2]
    variants:
      reference: {}
      label smoothing 0.1: {label_smoothing: 0.1}
      ...

Runs train as separate processes, --parallel at a time (a GPU shared as --gpus-per-trial 1/k
would share it; under JAX each takes 0.9/k of its memory). Meant for a GPU machine under
KERAS_BACKEND=jax, where a 30-epoch run takes about a minute; on 2 CPU cores one run takes ~35 min.

    KERAS_BACKEND=jax python benchmarks/model_choices.py --data-dir ../shared/data/fashion-mnist \
        --grid benchmarks/model_choices.yaml --parallel 10 --out model_choices.json [--tiers]

Rendered images are cached in $FASHION_TUNE_CACHE/photo_views (photo_views.py): render them on this
machine first and carry that folder with a run elsewhere (the GPU machine), so that it reads them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def worker(args) -> None:
    """One run: train the configuration in --run, save the validation probabilities (plain and of
    the flipped images, and under each photo tier with --tiers) and each epoch's validation accuracy
    to --probabilities."""
    from benchmarks.keras_backend_gpu import backend_model
    from fashion_tune.config import DataSettings
    from fashion_tune.data import prepare

    config = json.loads(args.run)
    from fashion_tune import photo_views

    splits = prepare(DataSettings(data_dir=args.data_dir, subset=args.subset))
    if config.get("photo_share"):
        splits = photo_views.with_views(splits)
    params, model = backend_model(config, train_images=len(splits.y_train))
    started = time.time()
    history = _fit(model, params, splits)
    seconds = time.time() - started
    plain = model.predict(splits.x_val, batch_size=1024, verbose=0)
    flipped = model.predict(splits.x_val[:, :, ::-1, :], batch_size=1024, verbose=0)
    tiers = {f"tier_{name}": model.predict(images, batch_size=1024, verbose=0).astype(np.float32)
             for name, images in validation_tiers(splits).items()} if args.tiers else {}
    np.savez(args.probabilities, plain=plain.astype(np.float32), flipped=flipped.astype(np.float32),
             labels=splits.y_val, epoch_accuracy=np.array(history["val_accuracy"]), seconds=seconds,
             parameters=model.count_params(), **tiers)


def _fit(model, params, splits) -> dict:
    """Keras fit on the arrays; with photo_share, epoch by epoch, each image its photo view with that
    probability, drawn afresh each epoch (batches.shuffled's rule, in NumPy: no tf.data under JAX)."""
    data = {"batch_size": params.batch_size, "validation_data": splits.validation, "verbose": 0}
    if not params.photo_share:
        return model.fit(splits.x_train, splits.y_train, epochs=params.epochs, **data).history
    draws = np.random.default_rng(params.seed)
    history: dict[str, list] = {}
    for epoch in range(params.epochs):
        shown = draws.random(len(splits.x_train)) < params.photo_share
        x = np.where(shown[:, None, None, None], splits.x_train_photos, splits.x_train)
        for key, values in model.fit(x, splits.y_train, epochs=epoch + 1, initial_epoch=epoch, **data).history.items():
            history.setdefault(key, []).extend(values)
    return history


def validation_tiers(splits) -> dict:
    """The validation images under each of evaluate's tiers, as model input (cached)."""
    from fashion_tune import photo_views, robustness

    images = photo_views.as_uint8(splits.x_val)
    return {tier.name: photo_views.tier_views(images, tier.name) for tier in robustness.TIERS}


def runs_of(grid: dict) -> list[dict]:
    """Every (variant, seed) run the grid asks for, with its full configuration."""
    base = json.loads((ROOT / grid["base"]).read_text())["params"]
    runs = []
    for name, overrides in grid["variants"].items():
        overrides = dict(overrides or {})
        epochs = overrides.pop("epochs", grid["epochs"])
        for seed in overrides.pop("seeds", grid["seeds"]):
            runs.append({"variant": name, "seed": seed, "config": {**base, **overrides, "epochs": epochs,
                                                                   "seed": seed}})
    return runs


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(probabilities, axis=1) == labels))


def summarise(variant: str, done: list[dict]) -> dict:
    """A variant's figures: per seed, mean over seeds, with flip TTA, and its seeds as one ensemble."""
    labels = done[0]["labels"]
    plain = [r["plain"] for r in done]
    tta = [(r["plain"] + r["flipped"]) / 2 for r in done]
    per_seed = [accuracy(p, labels) for p in plain]
    return {
        "variant": variant, "seeds": [r["seed"] for r in done], "epochs": done[0]["epochs"],
        "parameters": int(done[0]["parameters"]), "seconds": float(np.mean([r["seconds"] for r in done])),
        "accuracy": per_seed, "mean": float(np.mean(per_seed)),
        "spread": float(np.max(per_seed) - np.min(per_seed)),
        "tta_mean": float(np.mean([accuracy(p, labels) for p in tta])),
        "ensemble": accuracy(np.mean(plain, axis=0), labels) if len(done) > 1 else None,
        "ensemble_tta": accuracy(np.mean(tta, axis=0), labels) if len(done) > 1 else None,
        "epoch_accuracy": [r["epoch_accuracy"].round(4).tolist() for r in done],
        "tiers": {key.removeprefix("tier_"): _mean_and_interval([accuracy(r[key], labels) for r in done])
                  for key in done[0] if key.startswith("tier_")},
    }


def _mean_and_interval(values: list[float]) -> dict:
    """Mean over seeds with its 95% t interval (none from one seed)."""
    from scipy import stats

    mean = float(np.mean(values))
    if len(values) < 2:
        return {"mean": mean, "interval": None, "seeds": values}
    half = float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values)))
    return {"mean": mean, "interval": [mean - half, mean + half], "seeds": values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--grid", default=str(ROOT / "benchmarks/model_choices.yaml"))
    parser.add_argument("--parallel", type=int, default=1, help="runs at once")
    parser.add_argument("--subset", type=int, help="train on a stratified subset of N images (a quick check)")
    parser.add_argument("--only", nargs="+", help="run only these variants")
    parser.add_argument("--out", default="model_choices.json", help="the summary, as JSON (rewritten as runs end)")
    parser.add_argument("--keep-probabilities", metavar="NPZ",
                        help="also save every run's validation probabilities (plain and flipped) here, for other "
                             "ensembles")
    parser.add_argument("--tiers", action="store_true",
                        help="also score each run on the validation images rendered under evaluate's photo tiers")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--probabilities", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        worker(args)
        return
    grid = yaml.safe_load(Path(args.grid).read_text())
    runs = [r for r in runs_of(grid) if not args.only or r["variant"] in args.only]
    render_once(args, runs)
    env = {**os.environ, "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{0.9 / args.parallel:.3f}"}
    print(f"{len(runs)} runs, {args.parallel} at a time, KERAS_BACKEND={os.environ.get('KERAS_BACKEND', 'tensorflow')}",
          flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="model_choices-"))
    waiting, running, finished = list(enumerate(runs)), {}, {}
    started = time.time()
    while waiting or running:
        while waiting and len(running) < args.parallel:
            i, run = waiting.pop(0)
            run["file"] = scratch / f"run{i}.npz"
            cmd = [sys.executable, __file__, "--data-dir", args.data_dir, "--run", json.dumps(run["config"]),
                   "--probabilities", str(run["file"])]
            cmd += ["--subset", str(args.subset)] if args.subset else []
            cmd += ["--tiers"] if args.tiers else []
            running[i] = (run, subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                                text=True))
        time.sleep(2)
        for i, (run, process) in list(running.items()):
            if process.poll() is None:
                continue
            del running[i]
            if process.returncode:
                tail = process.stderr.read().strip().splitlines()[-3:]
                print(f"{run['variant']} seed {run['seed']}: failed (exit {process.returncode}): {tail}", flush=True)
                continue
            saved = np.load(run["file"])
            finished[i] = {"variant": run["variant"], "seed": run["seed"], "epochs": run["config"]["epochs"],
                           **{k: saved[k] for k in saved.files}}
            print(f"{time.time() - started:6.0f} s  {run['variant']} seed {run['seed']}: validation accuracy "
                  f"{accuracy(saved['plain'], saved['labels']):.4f}", flush=True)
            by_variant: dict[str, list[dict]] = {}
            for r in finished.values():
                by_variant.setdefault(r["variant"], []).append(r)
            summary = [summarise(v, rs) for v, rs in by_variant.items()]
            Path(args.out).write_text(json.dumps({"grid": grid, "variants": summary}, indent=1))
            if args.keep_probabilities:
                np.savez_compressed(args.keep_probabilities, labels=saved["labels"], **{
                    f"{r['variant']}|{r['seed']}|{kind}": r[kind].astype(np.float16)
                    for r in finished.values() for kind in ("plain", "flipped")})
    print("\nvariant                         epochs  seeds  params   mean    spread  +flip TTA  ensemble  ens.+TTA")
    for s in json.loads(Path(args.out).read_text())["variants"]:
        ensemble = f"{s['ensemble']:.4f}    {s['ensemble_tta']:.4f}" if s["ensemble"] is not None else "-"
        print(f"{s['variant']:<32}{s['epochs']:>6}  {len(s['seeds']):>5}  {s['parameters']:>7}  {s['mean']:.4f}  "
              f"{s['spread']:.4f}  {s['tta_mean']:.4f}     {ensemble}")
        for tier, figures in s["tiers"].items():
            low, high = figures["interval"] or (figures["mean"], figures["mean"])
            print(f"    {tier:<28}{figures['mean']:.4f} [{low:.4f}, {high:.4f}]")


def render_once(args, runs: list[dict]) -> None:
    """The photo views the runs need, rendered here, once, before the runs start (each run would
    otherwise render them itself, all at once): the training images' when a run sets photo_share,
    the validation images' tiers with --tiers."""
    import logging

    from fashion_tune import photo_views
    from fashion_tune.config import DataSettings
    from fashion_tune.data import prepare

    if not (args.tiers or any(r["config"].get("photo_share") for r in runs)):
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    splits = prepare(DataSettings(data_dir=args.data_dir, subset=args.subset))
    if any(r["config"].get("photo_share") for r in runs):
        photo_views.with_views(splits)
    if args.tiers:
        validation_tiers(splits)


if __name__ == "__main__":
    main()
