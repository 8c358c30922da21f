"""What the schedulers and TPE buy: the same space, seeds and number of trials searched several ways.

  tpe-asha       Optuna's TPE proposes, ASHA stops weak trials early (the default)
  tpe-halving    TPE, synchronous successive halving
  tpe-hyperband  TPE, HyperBand
  tpe-full       TPE, every trial trained for its full budget
  random-asha    random proposals (Optuna's seeded RandomSampler), ASHA

For each variant and seed: total trial-epochs, wall time, best val accuracy, how many trials
reached each rung, and the best val accuracy reached as a function of trial-epochs spent; then,
over the seeds, the mean and range of each, and each variant against tpe-full (how many times
fewer trial-epochs, how many points of best val accuracy). Prints the tables; writes
search_efficiency.{json,csv}, a search_efficiency-seed<S>.png per seed, and the studies under
--out/seed-<S>/.

    python benchmarks/search_efficiency.py --data-dir ../shared/data/fashion-mnist [--space quick]
        [--epochs 9] [--num-samples 16] [--seeds 0 1 2] [--variants tpe-asha tpe-full ...]
        [--subset N] [--val-fraction F] [--reduction-factor N] [--grace-period N]
        [--out results/benchmarks/search_efficiency]

--epochs sets every trial's budget (ASHA's max_t; the space's own by default) in a copy of the
space written to --out: what early stopping saves grows with the budget, and with grace period 1
and reduction factor 3 a budget of 9 gives ASHA rungs at 1, 3 and 9 epochs. --reduction-factor
and --grace-period override the space's for the variants that stop trials (not tpe-full). The copy
leaves out the space's max_concurrent, which the pausing schedulers refuse: the trials at once then
follow cpus_per_trial, for every variant alike. A variant whose folder under --out holds a finished
study is reused, not run again, and an interrupted one is resumed: to try other settings against
the same tpe-full runs, copy its folders into the new --out.

Runs recorded in --out's search_efficiency.json for other seeds and variants are kept and
counted, so seeds can be added a session at a time. Seeds run one after another, each seed's
variants in the order given: on a shared host, drift lands on wall times (said beside them), not
on trial-epochs or accuracies.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import yaml
from common import ROOT, resume_study, run_study

sys.path.insert(0, str(ROOT))
from fashion_tune.search.schedulers import rungs  # noqa: E402

VARIANTS = {
    "tpe-asha": ["--searcher", "tpe", "--scheduler", "asha"],
    "tpe-halving": ["--searcher", "tpe", "--scheduler", "halving"],
    "tpe-hyperband": ["--searcher", "tpe", "--scheduler", "hyperband"],
    "tpe-full": ["--searcher", "tpe", "--scheduler", "none"],
    "random-asha": ["--searcher", "random", "--scheduler", "asha"],
}


def curve(study: Path) -> tuple[list[int], list[float]]:
    """Every reported epoch of every trial in the order they happened -> (trial-epochs, best so far)."""
    from fashion_tune import results
    from fashion_tune.layout import StudyDir
    from fashion_tune.records import StudyRecord

    study = StudyDir(study)
    progress = [p for p in results.search_progress(study, "val_accuracy", "max", StudyRecord.read(study.record))
                if p.best is not None]
    return [p.trial_epochs for p in progress], [p.best for p in progress]


def trials_per_rung(study: Path, rungs: list[int]) -> list[int]:
    """How many of the study's trials trained at least as far as each rung (epochs)."""
    with open(study / "leaderboard.csv", newline="") as f:
        trained = [int(row["epochs_trained"]) for row in csv.DictReader(f)]
    return [sum(epochs >= rung for epochs in trained) for rung in rungs]


def space_with_budget(space: str, epochs: int | None, out: Path) -> str:
    """The space file to search: a copy in `out` with fixed.epochs set (when given) and no max_concurrent."""
    from fashion_tune.space import resolve_space_path

    path = resolve_space_path(space)
    spec = yaml.safe_load(path.read_text())
    if epochs is not None:
        spec.setdefault("fixed", {})["epochs"] = epochs
    spec.get("search", {}).pop("max_concurrent", None)
    epochs = spec.get("fixed", {}).get("epochs")
    copy = out / f"{path.stem}-{epochs}-epochs.yaml"
    copy.write_text(f"# {path.name} with every trial's budget set to {epochs} epochs and no max_concurrent, "
                    "by search_efficiency.py\n"
                    + yaml.safe_dump(spec, sort_keys=False))
    return str(copy)


def run_seed(seed: int, variants: list[str], space: str, budget: int, args) -> dict[str, dict]:
    """Every variant's study for one seed (reused when already finished), and what each found."""
    out = Path(args.out).resolve() / f"seed-{seed}"
    found = {}
    for name in variants:
        flags, study = VARIANTS[name], out / name
        record = study / "study.json"
        if record.is_file() and not json.loads(record.read_text()).get("finished_at"):
            print(f"seed {seed} {name}: resuming the interrupted study ...", flush=True)
            resume_study(name, out)
        elif not record.is_file():  # a finished variant is reused: rerun with a fresh --out
            print(f"seed {seed} {name}: searching ...", flush=True)
            given = {"--subset": args.subset, "--val-fraction": args.val_fraction}
            if "none" not in flags:
                given |= {"--reduction-factor": args.reduction_factor, "--grace-period": args.grace_period}
            run_study(Path(space), name, out, args.data_dir, "--num-samples", str(args.num_samples),
                      "--seed", str(seed), *flags,
                      *(str(x) for flag, value in given.items() if value is not None for x in (flag, value)))
        record = json.loads((study / "study.json").read_text())
        epochs, best = curve(study)
        settings = record["settings"]
        at = rungs(settings["grace_period"], settings["reduction_factor"], budget)
        reached = trials_per_rung(study, at)
        found[name] = {"trial_epochs": epochs[-1], "wall_s": record["wall_s"], "best_val_accuracy": best[-1],
                       "trials_per_rung": dict(zip(at, reached)), "curve": list(zip(epochs, best)),
                       "command": record["command"]}
        print(f"seed {seed} {name:<14} trial-epochs {epochs[-1]:>5}  wall {record['wall_s'] / 60:6.1f} min  "
              f"best val accuracy {best[-1]:.4f}  trials reaching epoch {'/'.join(map(str, at))}: "
              f"{'/'.join(map(str, reached))}", flush=True)
    return found


def over_seeds(runs: dict[int, dict[str, dict]]) -> dict[str, dict]:
    """Per variant: mean and range over the seeds, and against tpe-full (where it ran for the same seeds)."""
    import statistics

    table = {}
    variants = dict.fromkeys(name for found in runs.values() for name in found)
    for name in variants:
        seeds = [s for s in runs if name in runs[s]]
        epochs = [runs[s][name]["trial_epochs"] for s in seeds]
        best = [runs[s][name]["best_val_accuracy"] for s in seeds]
        row = {"seeds": seeds, "trial_epochs_mean": statistics.mean(epochs),
               "trial_epochs_range": [min(epochs), max(epochs)],
               "best_mean": statistics.mean(best), "best_range": [min(best), max(best)],
               "wall_min_mean": statistics.mean(runs[s][name]["wall_s"] for s in seeds) / 60}
        paired = [s for s in seeds if "tpe-full" in runs[s]]
        if paired and name != "tpe-full":
            full_epochs = statistics.mean(runs[s]["tpe-full"]["trial_epochs"] for s in paired)
            spent = statistics.mean(runs[s][name]["trial_epochs"] for s in paired)
            row["fewer_trial_epochs_than_tpe_full"] = full_epochs / spent
            row["points_vs_tpe_full"] = 100 * statistics.mean(
                runs[s][name]["best_val_accuracy"] - runs[s]["tpe-full"]["best_val_accuracy"] for s in paired)
        table[name] = row
    return table


def main() -> None:
    from fashion_tune import atomic, plots
    from fashion_tune.space import load_space

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--space", default="quick")
    parser.add_argument("--epochs", type=int, help="every trial's budget (default: the space's)")
    parser.add_argument("--num-samples", type=int, default=16)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--subset", type=int, help="training images (default: all)")
    parser.add_argument("--val-fraction", type=float, help="of them held out for validation (default: the search's)")
    parser.add_argument("--reduction-factor", type=int, help="for the variants that stop trials (default: the space's)")
    parser.add_argument("--grace-period", type=int, help="for the variants that stop trials (default: the space's)")
    parser.add_argument("--out", default="results/benchmarks/search_efficiency")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    space = space_with_budget(args.space, args.epochs, out)
    budget = load_space(space).max_epochs

    recorded = out / "search_efficiency.json"  # seeds measured before (another session) count too
    recorded_runs = json.loads(recorded.read_text())["runs"] if recorded.is_file() else {}
    runs = {int(seed): found for seed, found in recorded_runs.items()}
    for seed in args.seeds:
        runs[seed] = {**runs.get(seed, {}), **run_seed(seed, args.variants, space, budget, args)}
        curves = {name: tuple(zip(*s["curve"])) for name, s in runs[seed].items()}
        atomic.write_bytes(out / f"search_efficiency-seed{seed}.png", plots.best_so_far_curves(
            curves, "val_accuracy", f"search efficiency ({Path(space).stem}, {args.num_samples} trials, seed {seed})"))
    runs = dict(sorted(runs.items()))
    table = over_seeds(runs)
    print(f"\nover seeds {' '.join(map(str, runs))}:")
    for name, row in table.items():
        against = (f"  {row['fewer_trial_epochs_than_tpe_full']:.2f}x fewer trial-epochs than tpe-full, "
                   f"{row['points_vs_tpe_full']:+.2f} points" if "points_vs_tpe_full" in row else "")
        print(f"{name:<14} trial-epochs {row['trial_epochs_mean']:6.1f} ({row['trial_epochs_range'][0]}-"
              f"{row['trial_epochs_range'][1]})  best {row['best_mean']:.4f} ({row['best_range'][0]:.4f}-"
              f"{row['best_range'][1]:.4f})  wall {row['wall_min_mean']:.1f} min{against}")
    (out / "search_efficiency.json").write_text(json.dumps({"runs": runs, "over_seeds": table}, indent=2))
    with open(out / "search_efficiency.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["seed", "variant", "trial_epochs", "wall_s", "best_val_accuracy", "trials_per_rung"])
        for seed, found in runs.items():
            for name, s in found.items():
                reached = " ".join(f"{rung}:{n}" for rung, n in s["trials_per_rung"].items())
                writer.writerow([seed, name, s["trial_epochs"], round(s["wall_s"], 1), s["best_val_accuracy"], reached])
    print(f"written to {out}")


if __name__ == "__main__":
    main()
