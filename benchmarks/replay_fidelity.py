"""Does a replayed study do what the real one does? Real studies of the recorded space, on the
recording's own data (its subset and split), beside the same studies replayed from the recording.

For each seed: a real study (`search --space tabular --subset 12000 --val-fraction 0.25 ...`,
real TensorFlow training) and the replayed one (`search --replay ...`, the same seed, scheduler and
trials, each epoch taking its recorded seconds times --time-scale so the asynchronous schedulers
see trials arrive in the real order). Compared: how many trials reached each rung, the trial-epochs,
the best val accuracy, and the full-budget val accuracy (in the recording) of the configuration
each would hand to retrain. With seed 0 the real trials train exactly as recorded (the same split
and weights seed), so the two should agree trial for trial; other seeds differ in their split and
weights, and measure whether the replay's seed-to-seed spread is the real one. These are also the
real confirmation runs of a scheduler chosen on the replay (issue 31).

    python benchmarks/replay_fidelity.py --data-dir ../shared/data/fashion-mnist [--seeds 0 1 2]
        [--scheduler asha] [--num-samples 64] [--time-scale 1] [--out results/benchmarks/fidelity]
        [--kinds real replay]

Finished studies are skipped, so a run can be resumed, and --kinds lets the replays (which mostly
wait out their recorded seconds) run in another process beside the real studies.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import ROOT, run_study

sys.path.insert(0, str(ROOT))
from fashion_tune import recording  # noqa: E402
from fashion_tune.search.replay import Curves  # noqa: E402
from fashion_tune.search.schedulers import rungs  # noqa: E402
from fashion_tune.space import load_space  # noqa: E402


def outcome(study: Path, curves: Curves, budget: int, at: list[int]) -> dict:
    """What a finished study did: trials per rung, trial-epochs, its best, what it hands to retrain."""
    best = json.loads((study / "best_config.json").read_text())
    trained = [len((folder / "result.json").read_text().splitlines()) for folder in study.glob("trial_*")]
    return {"trials_per_rung": {rung: sum(t >= rung for t in trained) for rung in at},
            "trial_epochs": sum(trained), "best_val_accuracy": best["value"],
            "handed_to_retrain": {n: best["params"][n] for n in curves.names},
            "its_full_budget_val_accuracy": curves.full_budget_accuracy(best["params"], budget)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--recording", default="results/reference/replay/curves.jsonl")
    parser.add_argument("--space", default="tabular")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--scheduler", default="asha")
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--out", default="results/benchmarks/fidelity")
    parser.add_argument("--kinds", nargs="+", choices=["real", "replay"], default=["real", "replay"])
    args = parser.parse_args()

    space = load_space(args.space)
    recording_path = Path(args.recording).resolve()
    curves = Curves.for_space(recording_path, space)
    data = recording.read(recording_path)[0].data  # the recording's subset and split
    at = rungs(space.search_defaults.get("grace_period", 1), space.search_defaults.get("reduction_factor", 3),
               space.max_epochs)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    flags = ["--num-samples", str(args.num_samples), "--scheduler", args.scheduler]
    if args.scheduler in ("halving", "hyperband"):
        flags += ["--max-concurrent", "0"]
    found = {}
    for seed in args.seeds:
        for kind in args.kinds:
            name = f"{kind}-{args.scheduler}-seed{seed}"
            if not (out / name / "best_config.json").is_file():
                extra = (["--subset", str(data["subset"]), "--val-fraction", str(data["val_fraction"])]
                         if kind == "real" else
                         ["--replay", str(recording_path), "--replay-time-scale", str(args.time_scale)])
                print(f"seed {seed}: {kind} study ...", flush=True)
                run_study(Path(args.space), name, out, args.data_dir if kind == "real" else None,
                          "--seed", str(seed), *flags, *extra)
            found[name] = outcome(out / name, curves, space.max_epochs, at)
            print(name, json.dumps(found[name]), flush=True)
    (out / "fidelity.json").write_text(json.dumps(found, indent=1) + "\n")


if __name__ == "__main__":
    main()
