"""GPU figures: the default model's epoch time, and trial throughput with 1, 2, 4 and 8 trials
sharing one GPU (--gpus-per-trial 1, 0.5, 0.25, 0.125).

Each packing runs a real study through the CLI (local Ray, the full training set) with the same
model in every trial, and reports trial-epochs per minute of the Tuner's wall time. Needs a
machine with an NVIDIA GPU and the `gpu` extra installed (pip install -e ".[gpu]").

    python benchmarks/gpu_throughput.py --data-dir ../shared/data/fashion-mnist [--epochs 3] [--mixed-precision]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from common import epoch_rows, one_model_space, run_study

PACKINGS = (1, 2, 4, 8)


def run_packing(trials_per_gpu: int, args, workdir: Path) -> dict:
    space = one_model_space(workdir / "one.yaml", args.epochs, num_samples=2 * trials_per_gpu)
    name = f"gpu{trials_per_gpu}"
    cpus = max(1, (os.cpu_count() or 2) // trials_per_gpu) if not args.address else 1
    flags = (["--gpus-per-trial", str(1 / trials_per_gpu), "--cpus-per-trial", str(cpus)]
             + (["--mixed-precision"] if args.mixed_precision else [])
             + (["--address", args.address] if args.address else [])
             + (["--subset", str(args.subset)] if args.subset else []))
    study = run_study(space, name, workdir, args.data_dir, *flags)
    rows = epoch_rows(workdir / name)
    steady = [r["epoch_time_s"] for r in rows if r["training_iteration"] > 1] or [r["epoch_time_s"] for r in rows]
    return {"trials_per_gpu": trials_per_gpu, "trial_epochs": len(rows), "wall_s": study["wall_s"],
            "trial_epochs_per_min": 60 * len(rows) / study["wall_s"], "epoch_s": statistics.median(steady)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--packings", type=int, nargs="+", default=PACKINGS, help="trials per GPU to measure")
    parser.add_argument("--address", help="a Ray cluster with GPUs (default: local Ray on this machine)")
    parser.add_argument("--subset", type=int, help="training images (default: all)")
    args = parser.parse_args()
    try:
        gpus = subprocess.run(["nvidia-smi", "-L"], check=False, capture_output=True, text=True).stdout.strip()
    except FileNotFoundError:
        gpus = "none visible here (no nvidia-smi)"
    print(f"GPU: {gpus}")
    print("trials/GPU  trial-epochs  wall (s)  trial-epochs/min  median epoch (s)")
    with tempfile.TemporaryDirectory() as workdir:
        for k in args.packings:
            r = run_packing(k, args, Path(workdir))
            print(f"{k:>10}  {r['trial_epochs']:>12}  {r['wall_s']:>8.1f}  {r['trial_epochs_per_min']:>16.1f}  "
                  f"{r['epoch_s']:>16.2f}", flush=True)


if __name__ == "__main__":
    main()
