"""What ASHA and TPE buy: the same space, seed and number of trials searched three ways.

  tpe-asha     Optuna's TPE proposes, ASHA stops weak trials early (the default)
  tpe-full     TPE, every trial trained for its full budget
  random-asha  random proposals (Optuna's seeded RandomSampler), ASHA

For each: total trial-epochs, wall time, best val accuracy, how many trials reached each ASHA
rung, and the best val accuracy reached as a function of trial-epochs spent. Prints a table;
writes search_efficiency.{json,csv,png} and the three studies under --out.

    python benchmarks/search_efficiency.py --data-dir ../shared/data/fashion-mnist [--space quick]
        [--epochs 9] [--num-samples 16] [--seed 0] [--subset N] [--val-fraction F]
        [--reduction-factor N] [--grace-period N]
        [--out results/benchmarks/search_efficiency]

--epochs sets every trial's budget (ASHA's max_t; the space's own by default) in a copy of the
space written to --out: what early stopping saves grows with the budget, and with grace period 1
and reduction factor 3 a budget of 9 gives ASHA rungs at 1, 3 and 9 epochs. --reduction-factor
and --grace-period override the space's for the two ASHA variants (they do not touch tpe-full). A
variant whose folder under --out holds a finished study is reused, not run again: to try other
ASHA settings against the same tpe-full run, copy its folder into the new --out.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import yaml
from common import ROOT, run_study

sys.path.insert(0, str(ROOT))

VARIANTS = {
    "tpe-asha": ["--searcher", "tpe", "--scheduler", "asha"],
    "tpe-full": ["--searcher", "tpe", "--scheduler", "none"],
    "random-asha": ["--searcher", "random", "--scheduler", "asha"],
}


def curve(study: Path) -> tuple[list[int], list[float]]:
    """Every reported epoch of every trial in the order they happened -> (trial-epochs, best so far)."""
    from fashion_tune import results
    from fashion_tune.layout import StudyDir

    study = StudyDir(study)
    started = results.read_study(study)["started_at"]
    progress = [p for p in results.search_progress(study, "val_accuracy", "max", started) if p.best is not None]
    return [p.trial_epochs for p in progress], [p.best for p in progress]


def trials_per_rung(study: Path, rungs: list[int]) -> list[int]:
    """How many of the study's trials trained at least as far as each rung (epochs)."""
    with open(study / "leaderboard.csv", newline="") as f:
        trained = [int(row["epochs_trained"]) for row in csv.DictReader(f)]
    return [sum(epochs >= rung for epochs in trained) for rung in rungs]


def asha_rungs(grace_period: int, reduction_factor: int, budget: int) -> list[int]:
    """The epochs at which ASHA compares trials (grace_period * reduction_factor**k), then the budget."""
    rungs, rung = [], grace_period
    while rung < budget:
        rungs.append(rung)
        rung *= reduction_factor
    return rungs + [budget]


def space_with_budget(space: str, epochs: int | None, out: Path) -> str:
    """The space file to search: as given, or a copy in `out` with fixed.epochs set."""
    from fashion_tune.space import resolve_space_path

    path = resolve_space_path(space)
    if epochs is None:
        return str(path)
    spec = yaml.safe_load(path.read_text())
    spec.setdefault("fixed", {})["epochs"] = epochs
    copy = out / f"{path.stem}-{epochs}-epochs.yaml"
    copy.write_text(f"# {path.name} with every trial's budget set to {epochs} epochs by search_efficiency.py\n"
                    + yaml.safe_dump(spec, sort_keys=False))
    return str(copy)


def main() -> None:
    from fashion_tune import atomic, plots
    from fashion_tune.space import load_space

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--space", default="quick")
    parser.add_argument("--epochs", type=int, help="every trial's budget (default: the space's)")
    parser.add_argument("--num-samples", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--subset", type=int, help="training images (default: all)")
    parser.add_argument("--val-fraction", type=float, help="of them held out for validation (default: the search's)")
    parser.add_argument("--reduction-factor", type=int, help="ASHA's, for the ASHA variants (default: the space's)")
    parser.add_argument("--grace-period", type=int, help="ASHA's, for the ASHA variants (default: the space's)")
    parser.add_argument("--out", default="results/benchmarks/search_efficiency")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    space = space_with_budget(args.space, args.epochs, out)
    budget = load_space(space).max_epochs

    summary = {}
    for name, flags in VARIANTS.items():
        study = out / name
        if not (study / "summary.md").is_file():  # a finished variant is reused: rerun with a fresh --out
            print(f"{name}: searching ...", flush=True)
            given = {"--subset": args.subset, "--val-fraction": args.val_fraction}
            if "asha" in flags:
                given |= {"--reduction-factor": args.reduction_factor, "--grace-period": args.grace_period}
            run_study(Path(space), name, out, args.data_dir, "--num-samples", str(args.num_samples),
                      "--seed", str(args.seed), *flags,
                      *(str(x) for flag, value in given.items() if value is not None for x in (flag, value)))
        record = json.loads((study / "study.json").read_text())
        epochs, best = curve(study)
        settings = record["settings"]
        rungs = asha_rungs(settings["grace_period"], settings["reduction_factor"], budget)
        reached = trials_per_rung(study, rungs)
        summary[name] = {"trial_epochs": epochs[-1], "wall_s": record["wall_s"], "best_val_accuracy": best[-1],
                         "trials_per_rung": dict(zip(rungs, reached)), "curve": list(zip(epochs, best)),
                         "command": record["command"]}
        print(f"{name:<12} trial-epochs {epochs[-1]:>5}  wall {record['wall_s'] / 60:6.1f} min  "
              f"best val accuracy {best[-1]:.4f}  trials reaching epoch "
              f"{'/'.join(map(str, rungs))}: {'/'.join(map(str, reached))}", flush=True)

    base, full = summary["tpe-asha"], summary["tpe-full"]
    print(f"TPE without early stopping spent {full['trial_epochs'] / base['trial_epochs']:.2f}x the trial-epochs of "
          f"TPE + ASHA; best val accuracy differs by {100 * (full['best_val_accuracy'] - base['best_val_accuracy']):+.2f} points")
    (out / "search_efficiency.json").write_text(json.dumps(summary, indent=2))
    with open(out / "search_efficiency.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["variant", "trial_epochs", "wall_s", "best_val_accuracy", "trials_per_rung"])
        for name, s in summary.items():
            reached = " ".join(f"{rung}:{n}" for rung, n in s["trials_per_rung"].items())
            writer.writerow([name, s["trial_epochs"], round(s["wall_s"], 1), s["best_val_accuracy"], reached])
    curves = {name: tuple(zip(*s["curve"])) for name, s in summary.items()}
    atomic.write_bytes(out / "search_efficiency.png", plots.best_so_far_curves(
        curves, "val_accuracy", f"search efficiency ({Path(space).stem}, {args.num_samples} trials, seed {args.seed})"))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
